//! Administrative subcommands: everything the binary does besides `serve`.
//!
//! They work on the same SQLite database as a running daemon (WAL mode and a
//! busy timeout make that safe), so operators never need to stop the service.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command, InitArgs, LogArgs, UserCommand};
use crate::config::Config;
use crate::store::{self, maildir, users, Store};

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve => crate::server::serve_main(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::User(u) => user(&cli.config, u),
        Command::Log(a) => log(&cli.config, a),
        Command::Init(a) => init(a),
        Command::Verify(a) => crate::server::verify_main(a),
        Command::Index(i) => crate::server::index_main(i),
        Command::Queue(q) => crate::server::queue_main(&cli.config, q),
        Command::Demo => crate::server::demo_main(),
        Command::Bench(b) => crate::server::bench_main(b),
        Command::Backup { dest } => backup(&cli.config, &dest),
        Command::Restore { src } => restore(&cli.config, &src),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pecd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors of admin commands: a message for the operator.
pub type AdminResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// Load a config or explain why not.
pub fn load_config(path: &Path) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::load(path)?)
}

fn check_config(path: &Path) -> AdminResult {
    // Key errors are collected rather than fatal: every problem is printed.
    let (cfg, mut problems) = Config::load_reporting(path);
    let Some(cfg) = cfg else {
        for p in &problems {
            println!("{p}");
        }
        return Ok(ExitCode::FAILURE);
    };
    problems.extend(cfg.validate(true));
    problems.extend(crate::server::check_trust(&cfg));
    if problems.is_empty() {
        println!("{}: ok", path.display());
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            println!("{p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn read_password(from_stdin: bool, address: &str) -> Result<String, Box<dyn std::error::Error>> {
    use std::io::IsTerminal;
    let pw = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = prompt_hidden(&format!("Password for {address}: "))?;
        let b = prompt_hidden("Again: ")?;
        if a != b {
            return Err("passwords do not match".into());
        }
        a
    };
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}

fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    crate::sys::termios::read_hidden(prompt)
}

fn user(config: &Path, cmd: UserCommand) -> AdminResult {
    let cfg = load_config(config)?;
    let st = Store::open(&cfg.data_dir())?;
    let now = store::now_ms();
    let code = match cmd {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let address = users::validate_new_address(&address)?;
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if !cfg.is_local_domain(domain) {
                return Err(format!(
                    "{address}: domain {domain:?} is not one of provider.domains {:?}",
                    cfg.provider.domains
                )
                .into());
            }
            maildir::mailbox_path(&st.paths().mail, &address)
                .map_err(|e| format!("{address}: {e}"))?;
            let pw = read_password(password_stdin, &address)?;
            let hash = users::hash_password(&pw)?;
            // The mailbox first (creating it is idempotent), the user row
            // last: a failure in between leaves no listed user without a
            // mailbox, and running the command again finishes the job.
            crate::server::create_mailbox(&st.paths().mail, &address)?;
            let a = address.clone();
            let added = st.write_blocking(move |c| Ok(users::add(c, &a, &hash, now)?))?;
            if !added {
                return Err(format!("{address}: user exists (use `user passwd`)").into());
            }
            println!("added {address}");
            ExitCode::SUCCESS
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = users::normalize(&address);
            let pw = read_password(password_stdin, &address)?;
            let hash = users::hash_password(&pw)?;
            let a = address.clone();
            if !st.write_blocking(move |c| Ok(users::set_password(c, &a, &hash)?))? {
                return Err(format!("{address}: no such user").into());
            }
            println!("password changed for {address}");
            ExitCode::SUCCESS
        }
        UserCommand::Del { address } => {
            let address = users::normalize(&address);
            let a = address.clone();
            if !st.write_blocking(move |c| Ok(users::delete(c, &a)?))? {
                return Err(format!("{address}: no such user").into());
            }
            println!("deleted {address} (its Maildir is kept)");
            ExitCode::SUCCESS
        }
        UserCommand::List => {
            for u in st.read_blocking(|c| Ok(users::list(c)?))? {
                println!("{u}");
            }
            ExitCode::SUCCESS
        }
    };
    st.close();
    Ok(code)
}

fn log(config: &Path, a: LogArgs) -> AdminResult {
    let cfg = load_config(config)?;
    let db = store::Paths::new(&cfg.data_dir()).db;
    if !db.exists() {
        return Err(format!("{}: no database yet (has the daemon run?)", db.display()).into());
    }
    let conn = store::open_connection(&db)?;
    let q = store::log::Query {
        identificativo: a.id,
        msgid: a.msgid,
        address: a.address,
        event: None,
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    for e in store::log::query(&conn, &q)? {
        if a.json {
            writeln!(out, "{}", serde_json::to_string(&e)?)?;
        } else {
            let mut line = format!("{} {}", store::log::iso_utc(e.ts), e.event);
            for (k, v) in [
                ("identificativo", &e.identificativo),
                ("msgid", &e.msgid),
                ("mittente", &e.sender),
                ("destinatari", &e.recipients),
                ("oggetto", &e.subject),
                ("tipo_ricevuta", &e.receipt_type),
                ("message-id", &e.generated_msgid),
                ("errore", &e.error),
                ("dettaglio", &e.detail),
            ] {
                if let Some(v) = v {
                    line.push_str(&format!(" {k}={v:?}"));
                }
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The config `pecd init` writes (also the shape of `config/pecd.toml`).
/// `ports`: submission, submissions, inbound, imap, imaps, admin.
pub fn provider_config_text(name: &str, domain: &str, hostname: &str, ports: [u16; 6]) -> String {
    format!(
        r#"# pecd provider configuration; every key is documented in docs/configuration.md.

[provider]
name = "{name}"
domains = ["{domain}"]
hostname = "{hostname}"
data_dir = "data"

[signing]
certificate = "certs/signing.pem"
key = "certs/signing.key"
chain = ["certs/ca.pem"]
generate_if_missing = false

[tls]
certificate = "certs/tls.pem"
key = "certs/tls.key"

[listen]
submission = "127.0.0.1:{}"
submissions = "127.0.0.1:{}"
inbound = "127.0.0.1:{}"
imap = "127.0.0.1:{}"
imaps = "127.0.0.1:{}"

[admin]
listen = "127.0.0.1:{}"

[trust]
ca = ["certs/ca.pem"]
index = "index.toml"

[limits]
max_message_size = "30MB"
max_recipients = 100
"#,
        ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
    )
}

/// An index file listing only ourselves.
pub fn own_index_text(name: &str, domain: &str) -> String {
    format!(
        r#"# Provider index (pec-spec.md §10). Add one [[provider]] per peer provider.
[[provider]]
name = "{name}"
domains = ["{domain}"]
receipt_mailbox = "posta-certificata@{domain}"
certificate = "certs/signing.pem"
"#
    )
}

/// The empty index `pecd init` writes: no peers yet, and this provider's own
/// entry as a comment, ready to hand to the peers for their indexes.
pub fn empty_index_text(name: &str, domain: &str) -> String {
    let own: String = own_index_text(name, domain)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("# {l}\n"))
        .collect();
    format!(
        "# Provider index (pec-spec.md §10): one [[provider]] table per peer provider.\n\
         # Empty for now. This provider's own entry, for the peers' indexes:\n{own}"
    )
}

fn init(a: InitArgs) -> AdminResult {
    let domain = a.domain.trim().to_ascii_lowercase();
    let name = a.name.unwrap_or_else(|| format!("PEC {domain}"));
    if a.dir.join("pecd.toml").exists() {
        return Err(format!("{}: already holds a pecd.toml", a.dir.display()).into());
    }
    let hostname = format!("mx.{domain}");
    let certs = a.dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    crate::certs::write_dev_pki(
        &crate::certs::DevPkiPaths {
            ca_cert: &certs.join("ca.pem"),
            ca_key: Some(&certs.join("ca.key")),
            signing_cert: &certs.join("signing.pem"),
            signing_key: &certs.join("signing.key"),
            tls_cert: &certs.join("tls.pem"),
            tls_key: &certs.join("tls.key"),
        },
        &name,
        &domain,
        &hostname,
    )
    .map_err(|e| format!("generating certificates: {e}"))?;
    std::fs::write(
        a.dir.join("pecd.toml"),
        provider_config_text(&name, &domain, &hostname, [587, 465, 25, 143, 993, 2980]),
    )?;
    std::fs::write(a.dir.join("index.toml"), empty_index_text(&name, &domain))?;
    let cfg_path = a.dir.join("pecd.toml");
    println!("Created a provider for {domain} in {}:", a.dir.display());
    println!("  pecd.toml   configuration (listens on 127.0.0.1, standard ports: edit [listen])");
    println!(
        "  index.toml  provider index: empty (add your peers; your own entry is in a comment)"
    );
    println!("  certs/      a freshly generated CA, signing and TLS certificate (replace the");
    println!("              signing certificate with the one AgID issues before going live)");
    println!("Next:");
    println!(
        "  pecd --config {} user add alice@{domain}",
        cfg_path.display()
    );
    println!("  pecd --config {} check-config", cfg_path.display());
    println!("  pecd --config {} serve", cfg_path.display());
    Ok(ExitCode::SUCCESS)
}

fn backup(config: &Path, dest: &Path) -> AdminResult {
    let cfg = load_config(config)?;
    let m = store::backup::backup(&cfg.data_dir(), dest)?;
    println!(
        "backed up {} into {}: {} files, {} bytes, schema {}, database as of {}",
        cfg.data_dir().display(),
        dest.display(),
        m.files,
        m.bytes,
        m.schema_version,
        m.created_at
    );
    Ok(ExitCode::SUCCESS)
}

fn restore(config: &Path, src: &Path) -> AdminResult {
    let cfg = load_config(config)?;
    let m = store::backup::restore(src, &cfg.data_dir())?;
    println!(
        "restored {} into {}: {} files, {} bytes, database as of {} (pecd {})",
        src.display(),
        cfg.data_dir().display(),
        m.files,
        m.bytes,
        m.created_at,
        m.pecd_version
    );
    Ok(ExitCode::SUCCESS)
}
