//! Administrative subcommands: everything the binary does besides `serve`.
//!
//! They work on the same SQLite database as a running daemon (WAL mode and a
//! busy timeout make that safe), so operators never need to stop the service.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command, InitArgs, LogArgs, UserCommand};
use crate::config::Config;
use crate::layout::{empty_index_text, provider_config_text_with};
use crate::pec::revocation::Mode;
use crate::store::{self, maildir, users, Store};

pub mod bench;
pub mod bench_postfix;
pub mod bench_run;
pub mod bench_web;
pub mod cluster;
pub mod logextract;
pub mod logverify;
pub mod percentiles;
pub mod quarantine;
pub mod serve;
pub mod tools;

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    // Only the commands that read a configuration look for one: `init`,
    // `verify` and the others work anywhere.
    let flag = cli.config;
    let config = || -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
        Ok(crate::config::locate(flag.as_deref())?)
    };
    let result = match cli.command {
        Command::Serve => config().and_then(|p| serve::serve_main(&p)),
        Command::CheckConfig => config().and_then(|p| check_config(&p)),
        Command::User(u) => config().and_then(|p| user(&p, u)),
        Command::Token(t) => config().and_then(|p| token(&p, t)),
        Command::Log(a) => config().and_then(|p| log(&p, a)),
        Command::Init(a) => init(a),
        Command::Verify(a) => tools::verify_main(a, flag.as_deref()),
        Command::Index(i) => tools::index_main(i),
        Command::Queue(q) => config().and_then(|p| tools::queue_main(&p, q)),
        Command::Cluster(c) => config().and_then(|p| cluster::main(&p, c)),
        Command::Quarantine(q) => config().and_then(|p| quarantine::main(&p, q)),
        Command::Demo => tools::demo_main(),
        Command::Bench(b) => tools::bench_main(b),
        Command::Backup { dest } => config().and_then(|p| backup(&p, &dest)),
        Command::Restore { src } => config().and_then(|p| restore(&p, &src)),
    };
    match result {
        Ok(code) => code,
        // `pecd verify … | head`: the reader has all it wanted. Say nothing
        // and end as a tool killed by SIGPIPE would (128 + 13), so a
        // pipeline under `pipefail` still sees that output was cut short.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::from(141),
        Err(e) => {
            eprintln!("pecd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Now, Unix ms: the commands' one clock (the system's; the daemon's is
/// `Ctx::clock`).
pub(crate) fn now_unix_ms() -> i64 {
    use crate::pec::clock::Clock;
    crate::pec::clock::SystemClock.unix_ms()
}

/// Errors of admin commands: a message for the operator.
pub type AdminResult = Result<ExitCode, Box<dyn std::error::Error>>;

/// The store of `cfg`: its files under `data_dir`, its rows where
/// `[store]` says (created and migrated if need be).
pub(crate) fn open_store(cfg: &Config) -> Result<Store, Box<dyn std::error::Error>> {
    Ok(Store::open_with(
        &cfg.data_dir(),
        &crate::server::database::database(cfg)?,
    )?)
}

/// A read-only look at the store of `cfg`, which a running daemon may own.
pub(crate) fn inspect_store(cfg: &Config) -> Result<store::Inspector, Box<dyn std::error::Error>> {
    Ok(store::Inspector::open_with(
        &cfg.data_dir(),
        &crate::server::database::database(cfg)?,
    )?)
}

/// Load a config or explain why not.
pub fn load_config(path: &Path) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::load(path)?)
}

fn check_config(path: &Path) -> AdminResult {
    // Key errors are collected rather than fatal: every problem is printed.
    let (cfg, mut problems) = Config::load_reporting(path);
    let mut notes = Vec::new();
    if let Some(cfg) = &cfg {
        problems.extend(cfg.validate(true));
        problems.extend(crate::server::check_trust(cfg));
        if !problems.iter().any(|p| p.starts_with("blobs.")) {
            blobs_check(cfg, &mut notes, &mut problems);
        }
        if !problems.iter().any(|p| p.starts_with("store.")) {
            store_check(cfg, &mut notes, &mut problems);
        }
    }
    if problems.is_empty() {
        println!("{}: ok", path.display());
        if let Some(cfg) = &cfg {
            println!("{}: {}", path.display(), listeners_note(cfg));
            println!(
                "{}: cluster: this node is {:?}; its claims on work hold {}s unless renewed",
                path.display(),
                cfg.cluster.node(),
                cfg.cluster.lease().as_secs()
            );
            // Valid but weaker than a provider should run: said, exit 0.
            for w in cfg.warnings() {
                println!("{}: warning: {w}", path.display());
            }
            for note in antivirus_notes(cfg).into_iter().chain(notes) {
                println!("{}: {note}", path.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Each line names the file, so a problem copied out of a long log still
    // says which configuration it is about.
    let name = path.display().to_string();
    let mut seen = std::collections::HashSet::new();
    let out = std::io::stdout();
    let mut out = out.lock();
    for p in problems.iter().filter(|p| seen.insert(p.as_str())) {
        if p.starts_with(&name) {
            writeln!(out, "{p}")?;
        } else {
            writeln!(out, "{name}: {p}")?;
        }
    }
    Ok(ExitCode::FAILURE)
}

/// An object store in `[blobs]` must answer (a LIST of one key with the
/// configured keys): a note when it does, else a problem in the server's
/// own words (`NoSuchBucket`, `SignatureDoesNotMatch`, a refused connection).
fn blobs_check(cfg: &Config, notes: &mut Vec<String>, problems: &mut Vec<String>) {
    let mut settings = match cfg.s3_settings() {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => return problems.push(e.to_string()),
    };
    // An operator waits for this answer; a store that is up answers at once.
    settings.timeout = std::time::Duration::from_secs(10);
    let bucket = crate::objstore::Bucket::new(settings);
    let s = bucket.settings();
    let at = format!("bucket {:?} at {}", s.bucket, s.endpoint);
    match bucket.check() {
        Ok(()) => notes.push(format!(
            "blobs: {at} answers to access key {}",
            s.keys.access_key
        )),
        Err(e) => problems.push(format!("blobs: {at} does not answer: {e}")),
    }
}

/// A PostgreSQL database in `[store]` must answer (a connection and its
/// schema version): a note when it does, else a problem in the driver's
/// own words (a refused connection, a failed password, no such database).
fn store_check(cfg: &Config, notes: &mut Vec<String>, problems: &mut Vec<String>) {
    let db = match crate::server::database::database(cfg) {
        Ok(db @ store::Database::Postgres(_)) => db,
        Ok(store::Database::Sqlite) => return,
        Err(e) => return problems.push(e.to_string()),
    };
    match db.probe() {
        Ok(()) => notes.push("store: the PostgreSQL database of store.url answers".into()),
        Err(e) => problems.push(format!("store: the PostgreSQL database of store.url: {e}")),
    }
}

/// Which listeners `serve` will open: only those whose address is written,
/// so an operator sees at once that, say, `/metrics` is off.
fn listeners_note(cfg: &Config) -> String {
    let l = &cfg.listen;
    let keys: [(&str, Option<String>); 9] = [
        ("submission", l.submission.clone()),
        ("submissions", l.submissions.clone()),
        ("inbound", l.inbound.clone()),
        ("imap", l.imap.clone()),
        ("imaps", l.imaps.clone()),
        ("pop3", l.pop3.clone()),
        ("pop3s", l.pop3s.clone()),
        ("web", cfg.web.address()),
        ("admin", cfg.admin.address()),
    ];
    let on: Vec<String> = keys
        .iter()
        .filter_map(|(k, a)| a.as_ref().map(|a| format!("{k} {a}")))
        .collect();
    let off: Vec<&str> = keys
        .iter()
        .filter(|(_, a)| a.is_none())
        .map(|(k, _)| *k)
        .collect();
    let mut note = if on.is_empty() {
        "listeners: none".to_string()
    } else {
        format!("listeners: {}", on.join(", "))
    };
    if !off.is_empty() {
        note.push_str(&format!("; off (no address written): {}", off.join(", ")));
    }
    note
}

/// What check-config says about scanning: off, or whether clamd answers,
/// takes streams of `max_scan_size` and flags what is nested deeper than
/// it looks (it is asked: a configuration file check cannot see clamd's
/// own settings).
fn antivirus_notes(cfg: &Config) -> Vec<String> {
    let s = match crate::antivirus::Scanner::from_config(cfg) {
        Ok(None) => return vec!["no [antivirus]: the provider runs without virus checks".into()],
        Ok(Some(s)) => s,
        Err(e) => return vec![e.to_string()],
    };
    let head = format!("antivirus: clamd at {}", s.endpoint);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![format!("{head}: not checked ({e})")],
    };
    rt.block_on(async {
        let version = match s.version().await {
            Ok(v) => v,
            Err(e) => {
                return vec![format!(
                    "warning: {head} does not answer ({e}); its StreamMaxLength must be at least {} bytes (antivirus.max_scan_size) and AlertExceedsMax on",
                    s.max_scan_size
                )]
            }
        };
        let stream = match s.check_stream_limit().await {
            Ok(None) => format!(
                "{head} ({version}) takes streams of antivirus.max_scan_size ({} bytes)",
                s.max_scan_size
            ),
            Ok(Some(problem)) => format!("warning: {problem}"),
            Err(e) => format!("warning: {head} ({version}): StreamMaxLength not checked: {e}"),
        };
        let depth = crate::antivirus::probe::PROBE_DEPTH;
        let nested = match s.check_recursion().await {
            Ok(None) => format!(
                "{head} flags the EICAR test file nested {depth} archives deep"
            ),
            Ok(Some(problem)) => format!("warning: {problem}"),
            Err(e) => format!("warning: {head}: MaxRecursion and AlertExceedsMax not checked: {e}"),
        };
        vec![stream, nested]
    })
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
    crate::auth::policy::check(&pw).map_err(|e| format!("{address}: {e}"))?;
    Ok(pw)
}

fn prompt_hidden(prompt: &str) -> std::io::Result<String> {
    crate::sys::termios::read_hidden(prompt)
}

fn user(config: &Path, cmd: UserCommand) -> AdminResult {
    let cfg = load_config(config)?;
    let st = open_store(&cfg)?;
    let now = crate::cmd::now_unix_ms();
    let code = match cmd {
        UserCommand::Add {
            address,
            password_stdin,
            quota,
        } => {
            let quota = quota
                .map(|q| user_quota(&q))
                .transpose()
                .map_err(|e| format!("--quota: {e}"))?;
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
            let added = st.add_user_blocking(&address, &hash, now)?;
            if !added {
                return Err(format!("{address}: user exists (use `user passwd`)").into());
            }
            if let Some(q) = quota {
                st.set_quota_blocking(&address, q)?;
            }
            println!("added {address}");
            ExitCode::SUCCESS
        }
        UserCommand::Quota { address, size } => {
            let q = user_quota(&size)?;
            let address = users::normalize(&address);
            if !st.set_quota_blocking(&address, q)? {
                return Err(format!("{address}: no such user").into());
            }
            match q.limit(None) {
                Some(n) => println!("quota of {address}: {}", human_size(n)),
                None => println!("quota of {address}: none"),
            }
            ExitCode::SUCCESS
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            let address = users::normalize(&address);
            let pw = read_password(password_stdin, &address)?;
            let hash = users::hash_password(&pw)?;
            if !st.set_password_blocking(&address, &hash)? {
                return Err(format!("{address}: no such user").into());
            }
            println!("password changed for {address} (its web sessions are ended)");
            ExitCode::SUCCESS
        }
        UserCommand::Del { address } => {
            let address = users::normalize(&address);
            if !st.delete_user_blocking(&address)? {
                return Err(format!("{address}: no such user").into());
            }
            println!("deleted {address} (its web sessions are ended; its Maildir is kept)");
            ExitCode::SUCCESS
        }
        UserCommand::Totp { action } => match action {
            crate::cli::TotpAction::Enable { address } => {
                let address = users::normalize(&address);
                let secret = crate::server::web::totp::new_secret();
                let key = crate::auth::totp_key::TotpKey::load_or_create(&cfg.totp_key_path())?;
                let sealed = key.seal(&address, &secret)?;
                if !st.enable_totp_blocking(&address, &sealed, now)? {
                    return Err(format!("{address}: no such user").into());
                }
                println!(
                    "{}",
                    crate::server::web::totp::uri(&cfg.provider.name, &address, &secret)
                );
                eprintln!("second factor enabled for {address}: the web login now asks for the code, and the web sessions open until now are ended");
                ExitCode::SUCCESS
            }
            crate::cli::TotpAction::Disable { address } => {
                let address = users::normalize(&address);
                if !st.disable_totp_blocking(&address)? {
                    return Err(format!("{address}: second factor was not enabled").into());
                }
                println!("second factor disabled for {address} (its web sessions are ended)");
                ExitCode::SUCCESS
            }
        },
        UserCommand::List => {
            let list = st.users_with_quotas_blocking()?;
            if list.is_empty() {
                // On stderr: a script reading addresses from stdout gets none.
                eprintln!("no users (add one with `pecd user add ADDRESS`)");
            }
            let out = std::io::stdout();
            let mut out = out.lock();
            let default = cfg.default_quota();
            for (u, q) in list {
                // The address first, alone in its column: scripts take the first word.
                let used = maildir::mailbox_path(&st.paths().mail, &u)
                    .ok()
                    .filter(|p| p.is_dir())
                    .map(|p| store::quota::usage(&p))
                    .transpose()?
                    .unwrap_or_default();
                let quota = match (q.limit(default), q) {
                    (None, _) => "quota none".to_string(),
                    (Some(n), users::Quota::Default) => format!(
                        "quota {} ({}%, provider default)",
                        human_size(n),
                        used.bytes.saturating_mul(100) / n
                    ),
                    (Some(n), _) => format!(
                        "quota {} ({}%)",
                        human_size(n),
                        used.bytes.saturating_mul(100) / n
                    ),
                };
                writeln!(
                    out,
                    "{u}  usage {} ({} bytes, {} messages)  {quota}",
                    human_size(used.bytes),
                    used.bytes,
                    used.messages
                )?;
            }
            ExitCode::SUCCESS
        }
    };
    st.close();
    Ok(code)
}

fn token(config: &Path, cmd: crate::cli::TokenCommand) -> AdminResult {
    use crate::cli::TokenCommand as T;
    use crate::store::api::{CreateRefused, Scopes, MAX_PER_USER};
    let cfg = load_config(config)?;
    let st = Store::open(&cfg.data_dir())?;
    let result = (|| -> AdminResult {
        match cmd {
            T::Create {
                address,
                name,
                scope,
            } => {
                let address = users::normalize(&address);
                let scopes =
                    Scopes::parse(scope.split(',')).map_err(|e| format!("--scope: {e}"))?;
                let name = crate::store::api::check_name(&name).map_err(|e| format!("--{e}"))?;
                let t = match st.create_token_blocking(&address, &name, scopes, now_unix_ms())? {
                    Ok(t) => t,
                    Err(CreateRefused::NoUser) => {
                        return Err(format!("{address}: no such user").into())
                    }
                    Err(CreateRefused::TooMany) => {
                        return Err(format!(
                            "{address}: already has {MAX_PER_USER} tokens (revoke one first)"
                        )
                        .into())
                    }
                };
                // The token alone on stdout, for a script to capture.
                println!("{}", t.token);
                eprintln!(
                    "token {} for {address} ({}): shown this once, keep it secret",
                    t.id,
                    scopes.names().join(",")
                );
                Ok(ExitCode::SUCCESS)
            }
            T::List { address } => {
                let list = st.tokens_blocking(address.map(|a| users::normalize(&a)).as_deref())?;
                if list.is_empty() {
                    eprintln!("no tokens (make one with `pecd token create ADDRESS --name N`)");
                }
                let iso = |ms: i64| crate::server::web::iso_ms(ms);
                let out = std::io::stdout();
                let mut out = out.lock();
                for t in list {
                    // The id first, alone in its column: scripts take the first word.
                    writeln!(
                        out,
                        "{}  {}  {:?}  scopes {}  created {}  last used {}",
                        t.id,
                        t.address,
                        t.name,
                        t.scopes.names().join(","),
                        iso(t.created_at),
                        t.last_used.map(iso).unwrap_or_else(|| "never".into())
                    )?;
                }
                Ok(ExitCode::SUCCESS)
            }
            T::Revoke { id } => {
                if !st.revoke_token_blocking(&id, None)? {
                    return Err(format!("{id}: no such token").into());
                }
                println!("revoked token {id}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })();
    st.close();
    result
}

/// A `--quota` / `user quota` argument: a size or `none`.
fn user_quota(s: &str) -> Result<users::Quota, crate::config::ValueError> {
    Ok(match crate::config::parse_quota(s)? {
        Some(n) => users::Quota::Bytes(n),
        None => users::Quota::Unlimited,
    })
}

/// Bytes in the units the configuration uses (SI: `kB`, `MB`, `GB`).
pub fn human_size(n: u64) -> String {
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

fn log(config: &Path, a: LogArgs) -> AdminResult {
    let cfg = load_config(config)?;
    match a.action {
        Some(crate::cli::LogAction::Verify(v)) => match &v.extract {
            Some(dir) => return logextract::verify(&cfg, dir, v.allow_unstamped),
            None => return logverify::verify(&cfg, &v),
        },
        Some(crate::cli::LogAction::Export(x)) => return logextract::export(&cfg, &x),
        None => {}
    }
    let mut events = Vec::new();
    for k in &a.events {
        match store::log::EventKind::parse(k.trim()) {
            store::log::EventKind::Other(_) => {
                return Err(format!(
                    "--event {k:?}: no such kind of event; the kinds are {}",
                    store::log::EventKind::known_names().join(", ")
                )
                .into())
            }
            kind => events.push(kind),
        }
    }
    let when = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(crate::pec::clock::parse_when)
            .transpose()
            .map_err(|e| format!("{flag} {e}"))
    };
    let from = when("--from", &a.from)?;
    let to = when("--to", &a.to)?;
    if let (Some(f), Some(t)) = (from, to) {
        if t.1 <= f.0 {
            return Err(format!(
                "--to {:?} is before --from {:?}",
                a.to.unwrap_or_default(),
                a.from.unwrap_or_default()
            )
            .into());
        }
    }
    let q = store::log::Query {
        identificativo: a.id,
        msgid: a.msgid,
        address: a.address,
        events,
        from_ms: from.map(|(first, _)| first * 1000),
        until_ms: to.map(|(_, end)| end * 1000),
    };
    let filtered = q.identificativo.is_some()
        || q.msgid.is_some()
        || q.address.is_some()
        || !q.events.is_empty()
        || q.from_ms.is_some()
        || q.until_ms.is_some();
    let rows = inspect_store(&cfg)?.log(&q)?;
    if rows.is_empty() {
        // On stderr, so `--json` output stays nothing but JSON lines.
        if filtered {
            eprintln!("no PEC log events match");
        } else {
            eprintln!("the PEC log is empty");
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    for e in rows {
        if a.json {
            let mut v = serde_json::to_value(&e)?;
            v["time"] = serde_json::json!(crate::pec::clock::iso8601_ms(e.ts));
            writeln!(out, "{v}")?;
        } else {
            let mut line = format!("{} {}", crate::pec::clock::human_ms(e.ts), e.event);
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

/// Why `d` cannot be a provider's certified domain, if it cannot: letters,
/// digits and hyphens in dot-separated labels (RFC 1035 §2.3.1, as DNS and
/// certificates want it), at least two labels, no trailing dot.
pub fn check_provider_domain(d: &str) -> Result<(), BadDomain> {
    let bad = |problem| {
        Err(BadDomain {
            domain: d.to_string(),
            problem,
        })
    };
    if d.is_empty() {
        return bad(DomainProblem::Empty);
    }
    if d.ends_with('.') {
        return bad(DomainProblem::TrailingDot);
    }
    if !d.is_ascii() {
        return bad(DomainProblem::NotAscii);
    }
    if d.len() > 200 {
        // Identificativi are `<~45 octets>@<domain>` and must fit in 250.
        return bad(DomainProblem::TooLong);
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return bad(DomainProblem::NoDot);
    }
    for l in &labels {
        if l.is_empty() {
            return bad(DomainProblem::EmptyLabel);
        }
        if l.len() > 63 {
            return bad(DomainProblem::LongLabel(l.to_string()));
        }
        if let Some(c) = l.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
            return bad(DomainProblem::BadCharacter(c));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return bad(DomainProblem::HyphenAtEdge(l.to_string()));
        }
    }
    if labels
        .last()
        .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad(DomainProblem::Numeric);
    }
    Ok(())
}

/// A domain [`check_provider_domain`] refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDomain {
    /// The domain as given.
    pub domain: String,
    /// What is wrong with it.
    pub problem: DomainProblem,
}

/// What makes a domain unfit to be a provider's certified domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainProblem {
    /// Nothing given.
    Empty,
    /// A trailing dot.
    TrailingDot,
    /// Not ASCII (an internationalized name not in its xn-- form).
    NotAscii,
    /// Longer than 200 characters.
    TooLong,
    /// One label only.
    NoDot,
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// A label longer than 63 characters.
    LongLabel(String),
    /// A character other than a letter, digit or hyphen.
    BadCharacter(char),
    /// A label starting or ending with a hyphen.
    HyphenAtEdge(String),
    /// The last label is all digits: an IP address, not a domain.
    Numeric,
}

impl std::fmt::Display for BadDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.domain;
        match &self.problem {
            DomainProblem::Empty => write!(f, "the domain is empty"),
            DomainProblem::TrailingDot => {
                write!(
                    f,
                    "{d:?} ends with a dot: write it without the trailing dot"
                )
            }
            DomainProblem::NotAscii => write!(
                f,
                "{d:?} is not ASCII: give an internationalized domain in its xn-- form"
            ),
            DomainProblem::TooLong => write!(f, "{d:?} is longer than 200 characters"),
            DomainProblem::NoDot => write!(
                f,
                "{d:?} has no dot: a PEC domain is a full domain name such as pec.example.it"
            ),
            DomainProblem::EmptyLabel => write!(
                f,
                "{d:?} has an empty label (two dots in a row, or a leading dot)"
            ),
            DomainProblem::LongLabel(l) => {
                write!(f, "{d:?}: label {l:?} is longer than 63 characters")
            }
            DomainProblem::BadCharacter(c) => write!(
                f,
                "{d:?}: {c:?} is not allowed (only letters, digits and hyphens)"
            ),
            DomainProblem::HyphenAtEdge(l) => {
                write!(f, "{d:?}: label {l:?} starts or ends with a hyphen")
            }
            DomainProblem::Numeric => write!(
                f,
                "{d:?} is an IP address or ends in a numeric label, not a domain"
            ),
        }
    }
}

impl std::error::Error for BadDomain {}

/// Ports `pecd init` writes: submission, submissions, inbound, imap, imaps,
/// pop3, pop3s, admin, web.
const PRODUCTION_PORTS: [u16; 9] = [587, 465, 25, 143, 993, 110, 995, 2980, 443];
/// The listeners in the order of the port arrays, with what each is for.
const LISTENERS: [(&str, &str); 9] = [
    ("listen.submission", "SMTP submission, STARTTLS"),
    ("listen.submissions", "SMTP submission, TLS"),
    ("listen.inbound", "reception point (MX)"),
    ("listen.imap", "IMAP, STARTTLS"),
    ("listen.imaps", "IMAP, TLS"),
    ("listen.pop3", "POP3, STLS"),
    ("listen.pop3s", "POP3, TLS"),
    ("admin.listen", "/metrics and /health, plain HTTP"),
    ("web.listen", "webmail, HTTPS"),
];

/// Why `init --dev` found no ports.
#[derive(Debug)]
pub enum DevPortsError {
    /// `--port-base N`: N..N+8 are not all port numbers.
    NoSuchPorts(u16),
    /// `--port-base`: one of its ports is taken.
    Taken {
        /// The `--port-base` given.
        base: u16,
        /// The port taken.
        port: u16,
        /// The listener that would have used it.
        key: &'static str,
        /// Why it cannot be bound.
        error: std::io::Error,
    },
    /// The system gave no free loopback port.
    NoFreePort(std::io::Error),
}

impl std::fmt::Display for DevPortsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DevPortsError::NoSuchPorts(b) => write!(
                f,
                "--port-base {b}: the ports {b} to {} do not all exist",
                u32::from(*b) + 8
            ),
            DevPortsError::Taken {
                base,
                port,
                key,
                error,
            } => write!(
                f,
                "--port-base {base}: port {port} ({key}) is not free on 127.0.0.1: {error}"
            ),
            DevPortsError::NoFreePort(e) => write!(f, "finding a free loopback port: {e}"),
        }
    }
}

impl std::error::Error for DevPortsError {}

/// Loopback ports for `init --dev`: N..N+8 from `--port-base N`, each
/// checked free, or nine the system picks (all held at once, so they
/// differ). Free now, not reserved: another program may take one later,
/// and `serve` then names the port it cannot bind.
fn dev_ports(base: Option<u16>) -> Result<[u16; 9], DevPortsError> {
    use std::net::{Ipv4Addr, TcpListener};
    let mut ports = [0u16; 9];
    match base {
        Some(b) => {
            if u32::from(b) + 8 > u32::from(u16::MAX) || b == 0 {
                return Err(DevPortsError::NoSuchPorts(b));
            }
            for (i, p) in ports.iter_mut().enumerate() {
                *p = b + i as u16;
                TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).map_err(|error| {
                    DevPortsError::Taken {
                        base: b,
                        port: *p,
                        key: LISTENERS[i].0,
                        error,
                    }
                })?;
            }
        }
        None => {
            let mut held = Vec::new();
            for p in ports.iter_mut() {
                let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                    .and_then(|l| Ok((l.local_addr()?.port(), l)))
                    .map_err(DevPortsError::NoFreePort)?;
                *p = l.0;
                held.push(l.1);
            }
        }
    }
    Ok(ports)
}

fn init(a: InitArgs) -> AdminResult {
    let domain = a.domain.trim().to_ascii_lowercase();
    check_provider_domain(&domain).map_err(|e| format!("--domain: {e}"))?;
    let name = a.name.unwrap_or_else(|| format!("PEC {domain}"));
    if a.dir.join("pecd.toml").exists() {
        return Err(format!("{}: already holds a pecd.toml", a.dir.display()).into());
    }
    // Ports first: a refused `--port-base` leaves nothing behind.
    let (host, ports, mx, revocation) = if a.dev {
        ("127.0.0.1", dev_ports(a.port_base)?, false, Mode::Off)
    } else {
        ("0.0.0.0", PRODUCTION_PORTS, true, Mode::OcspCrl)
    };
    // The CA key can issue certificates that this provider (and any peer
    // trusting its CA) believes; it must not travel with the provider's
    // files, be backed up with them, or be readable by the daemon. It goes
    // beside the provider's folder instead.
    let dir_name = a
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pecd".into());
    let ca_dir = a
        .dir
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .join(format!("{dir_name}-dev-ca"));
    if ca_dir.join("ca.key").exists() {
        return Err(format!(
            "{}: already holds a development CA key; move it away first",
            ca_dir.display()
        )
        .into());
    }
    let hostname = format!("mx.{domain}");
    let certs = a.dir.join("certs");
    std::fs::create_dir_all(&certs)?;
    crate::certs::write_dev_pki(
        &crate::certs::DevPkiPaths {
            ca_cert: &certs.join("ca.pem"),
            ca_key: Some(&ca_dir.join("ca.key")),
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
    std::fs::copy(certs.join("ca.pem"), ca_dir.join("ca.pem"))?;

    let dns = if mx {
        "\n[dns]\n# Relay to domains without a [[route]] by their MX records.\nmx_lookups = true\n"
    } else {
        "\n[dns]\n# A development provider sends nothing off the machine: only [[route]]\n# next hops are used, and mail for other domains fails for good.\nmx_lookups = false\n"
    };
    std::fs::write(
        a.dir.join("pecd.toml"),
        provider_config_text_with(&name, &domain, &hostname, host, ports, revocation)
            + dns
            + if a.dev {
                crate::layout::DEV_LOG_SECTION
            } else {
                crate::layout::PRODUCTION_LOG_SECTION
            },
    )?;
    std::fs::write(a.dir.join("index.toml"), empty_index_text(&name, &domain))?;
    let cfg_path = a.dir.join("pecd.toml");
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(
        out,
        "Created a provider for {domain} in {}:",
        a.dir.display()
    )?;
    if a.dev {
        writeln!(
            out,
            "  pecd.toml   configuration (development: loopback only, no MX lookups)"
        )?;
    } else {
        writeln!(
            out,
            "  pecd.toml   configuration (all addresses, the standard ports, MX lookups on)"
        )?;
    }
    writeln!(
        out,
        "  index.toml  provider index: empty (add your peers; your own entry is in a comment)"
    )?;
    writeln!(
        out,
        "  certs/      a development signing and TLS certificate and their CA certificate"
    )?;
    writeln!(
        out,
        "              (replace them with the AgID-issued signing certificate and a public"
    )?;
    writeln!(
        out,
        "              TLS certificate before going live: docs/operations.md, \"Going live\")"
    )?;
    writeln!(out, "Listeners:")?;
    for (i, (key, what)) in LISTENERS.iter().enumerate() {
        // The admin listener stays on loopback whatever `host` is.
        let h = if *key == "admin.listen" {
            "127.0.0.1"
        } else {
            host
        };
        writeln!(
            out,
            "  {key:<19} {:<22} {what}",
            format!("{h}:{}", ports[i])
        )?;
    }
    writeln!(out, "Next:")?;
    if !a.dev {
        writeln!(
            out,
            "  set [log] tsa_url and tsa_ca in pecd.toml: your time-stamping authority for the
              PEC log's daily time stamp (serve refuses to start without it)"
        )?;
    }
    writeln!(
        out,
        "  pecd --config {} user add alice@{domain}",
        cfg_path.display()
    )?;
    writeln!(out, "  pecd --config {} check-config", cfg_path.display())?;
    writeln!(out, "  pecd --config {} serve", cfg_path.display())?;
    eprintln!(
        "pecd: WARNING: the private key of the development CA is in {}, outside {}: \
         whoever holds it can issue certificates this provider trusts. Keep it away from \
         the provider's files and backups, and delete it once you no longer issue \
         development certificates.",
        ca_dir.join("ca.key").display(),
        a.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pecd backup`/`restore` copy a SQLite store; a PostgreSQL one is the
/// database's own tools' to copy (its rows are not under `data_dir`).
fn refuse_postgres(cfg: &Config, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if cfg.store.backend == crate::config::StoreBackend::Postgresql {
        return Err(format!(
            "pecd {what} copies a SQLite store; with store.backend = \"postgresql\" the rows are in PostgreSQL: \
             use pg_dump/pg_restore for the database and copy provider.data_dir's files (docs/operations.md)"
        )
        .into());
    }
    Ok(())
}

fn backup(config: &Path, dest: &Path) -> AdminResult {
    let cfg = load_config(config)?;
    refuse_postgres(&cfg, "backup")?;
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
    refuse_postgres(&cfg, "restore")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_domain_says_which_rule_it_breaks() {
        let problem = |d: &str| check_provider_domain(d).unwrap_err().problem;
        assert_eq!(problem(""), DomainProblem::Empty);
        assert_eq!(problem("pec"), DomainProblem::NoDot);
        assert_eq!(problem("pec.example.it."), DomainProblem::TrailingDot);
        assert_eq!(problem("pec..example.it"), DomainProblem::EmptyLabel);
        assert_eq!(
            problem("pec_mail.example.it"),
            DomainProblem::BadCharacter('_')
        );
        assert_eq!(
            problem("pec-.example.it"),
            DomainProblem::HyphenAtEdge("pec-".into())
        );
        assert_eq!(problem("10.0.0.1"), DomainProblem::Numeric);
        assert_eq!(
            check_provider_domain("pec").unwrap_err().to_string(),
            "\"pec\" has no dot: a PEC domain is a full domain name such as pec.example.it"
        );
        assert!(check_provider_domain("pec.example.it").is_ok());
    }
}
