//! `pecd log export` and `pecd log verify --extract`: one address's rows of
//! the sealed days, for a user's legal request, with what proves them part
//! of the sealed log without showing anyone else's rows (their digests
//! only, `docs/log-integrity.md`), signed by the provider; and the offline
//! check of such an extract (no database).
//!
//! The extract is a directory: `extract.txt` (the text below), its
//! detached signature `extract.p7s`, and `seals/` with each day's `.seal`,
//! `.p7s` and `.tsr`.
//!
//! ```text
//! pecd-log-extract 1
//! provider: pec.example.it
//! address: alice@pec.example.it
//! day: 2026-12-01
//! previous-hash: <hex>
//! digest 17 <hex>            another row: its id and SHA-256(canonical row)
//! row {"id":18,…}            a row of the address, whole (JSON)
//! end-day
//! ```

use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;

use super::logverify::{day_flag, pem_certs, CertFileError};
use super::AdminResult;
use crate::cli::LogExportArgs;
use crate::config::Config;
use crate::pec::logseal::{self, Day, SealText};
use crate::store::log;

const MAGIC: &str = "pecd-log-extract 1";

fn mentions(e: &log::Event, address: &str) -> bool {
    let a = address.to_ascii_lowercase();
    [&e.sender, &e.recipients]
        .into_iter()
        .flatten()
        .any(|v| v.to_ascii_lowercase().contains(&a))
}

fn hex(b: &[u8]) -> String {
    crate::pec::smime::hex_plain(b)
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Why an extract was not written or cannot be read.
#[derive(Debug)]
pub enum ExtractError {
    /// A file of the extract: the path and why.
    File(std::path::PathBuf, std::io::Error),
    /// `extract.txt` is not a pecd log extract, or breaks its form here.
    Malformed(&'static str),
    /// A line that should start with `key:` does not: the key.
    Expected(&'static str),
    /// A row that is not the JSON of a log row.
    BadRow(serde_json::Error),
    /// A line that is none of the extract's.
    UnexpectedLine(String),
}

impl std::fmt::Display for ExtractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtractError::File(p, e) => write!(f, "{}: {e}", p.display()),
            ExtractError::Malformed(what) => f.write_str(what),
            ExtractError::Expected(key) => write!(f, "extract.txt: expected {key}:"),
            ExtractError::BadRow(e) => write!(f, "extract.txt: bad row: {e}"),
            ExtractError::UnexpectedLine(l) => write!(f, "extract.txt: unexpected line {l:?}"),
        }
    }
}

impl std::error::Error for ExtractError {}

fn roots(cfg: &Config) -> Result<Vec<openssl::x509::X509>, CertFileError> {
    let mut r = pem_certs(cfg, &cfg.trust.ca)?;
    r.extend(pem_certs(cfg, &cfg.signing.chain)?);
    Ok(r)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ExtractError> {
    std::fs::write(path, bytes).map_err(|e| ExtractError::File(path.to_path_buf(), e))
}

/// Run `pecd log export`.
pub fn export(cfg: &Config, a: &LogExportArgs) -> AdminResult {
    let (from, to) = (day_flag(&a.from, "--from")?, day_flag(&a.to, "--to")?);
    if a.out.exists()
        && std::fs::read_dir(&a.out)
            .map_err(|e| format!("{}: {e}", a.out.display()))?
            .next()
            .is_some()
    {
        return Err(format!("{}: must be new or empty", a.out.display()).into());
    }
    let signer = crate::server::load_signer(cfg)?;
    let seals_out = a.out.join("seals");
    std::fs::create_dir_all(&seals_out).map_err(|e| format!("{}: {e}", seals_out.display()))?;
    let mut text = format!(
        "{MAGIC}\nprovider: {}\naddress: {}\n",
        cfg.provider_domain(),
        a.address
    );
    let address = a.address.clone();
    let inspector = super::inspect_store(cfg)?;
    let (mut days, mut rows) = (0, 0);
    for s in inspector.seals()? {
        let Some(d) = Day::parse(&s.date) else {
            continue;
        };
        if from.is_some_and(|f| d < f) || to.is_some_and(|t| d > t) {
            continue;
        }
        let mut body = format!("day: {}\nprevious-hash: {}\n", s.date, hex(&s.prev_hash));
        let mut mine = 0;
        inspector.for_each_chained(s.first_id, s.last_id, |e, _| {
            if mentions(e, &address) {
                mine += 1;
                body.push_str("row ");
                body.push_str(&serde_json::to_string(e).unwrap_or_default());
                body.push('\n');
            } else {
                body.push_str(&format!("digest {} {}\n", e.id, hex(&log::row_digest(e))));
            }
            true
        })?;
        body.push_str("end-day\n");
        // Days without a row of the address say nothing about it.
        if mine > 0 {
            text.push_str(&body);
            days += 1;
            rows += mine;
            let files = [
                ("seal", Some(&s.seal)),
                ("p7s", Some(&s.signature)),
                ("tsr", s.tsr.as_ref()),
            ];
            for (ext, bytes) in files {
                if let Some(b) = bytes {
                    write(&seals_out.join(format!("{}.{ext}", s.date)), b)?;
                }
            }
        }
    }
    let sig = signer
        .sign_detached(text.as_bytes())
        .map_err(|e| e.to_string())?;
    write(&a.out.join("extract.txt"), text.as_bytes())?;
    write(&a.out.join("extract.p7s"), &sig)?;
    println!(
        "{} row(s) of {} over {} sealed day(s) written to {} (rows after the last seal are not in it: they are not sealed yet)",
        rows,
        a.address,
        days,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A row as `pecd log --json` writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowJson {
    id: i64,
    ts: i64,
    event: String,
    identificativo: Option<String>,
    msgid: Option<String>,
    sender: Option<String>,
    recipients: Option<String>,
    subject: Option<String>,
    receipt_type: Option<String>,
    generated_msgid: Option<String>,
    error: Option<String>,
    detail: Option<String>,
}

impl RowJson {
    fn event(self) -> log::Event {
        log::Event {
            id: self.id,
            ts: self.ts,
            event: log::EventKind::parse(&self.event),
            identificativo: self.identificativo,
            msgid: self.msgid,
            sender: self.sender,
            recipients: self.recipients,
            subject: self.subject,
            receipt_type: self.receipt_type,
            generated_msgid: self.generated_msgid,
            error: self.error,
            detail: self.detail,
        }
    }
}

/// Run `pecd log verify --extract DIR [--allow-unstamped]`.
pub fn verify(cfg: &Config, dir: &Path, allow_unstamped: bool) -> AdminResult {
    let read = |name: &str| -> Result<Vec<u8>, ExtractError> {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| ExtractError::File(p, e))
    };
    let roots = roots(cfg)?;
    let tsa_roots = match &cfg.log.tsa_ca {
        Some(p) => Some(pem_certs(cfg, std::slice::from_ref(p))?),
        None => None,
    };
    let text = read("extract.txt")?;
    let mut problems = Vec::new();
    let mut unstamped = Vec::new();
    let mut notes = Vec::new();
    match logseal::verify_signature(&text, &read("extract.p7s")?, &roots, None) {
        Ok(who) => notes.push(format!("extract signed by {who}")),
        Err(e) => problems.push(format!("extract.txt: {e}")),
    }
    let text =
        String::from_utf8(text).map_err(|_| ExtractError::Malformed("extract.txt is not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(ExtractError::Malformed("extract.txt is not a pecd log extract").into());
    }
    let field = |l: Option<&str>, key: &'static str| -> Result<String, ExtractError> {
        l.and_then(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .map(str::to_string)
            .ok_or(ExtractError::Expected(key))
    };
    let _provider = field(lines.next(), "provider")?;
    let address = field(lines.next(), "address")?;
    let (mut days, mut rows) = (0, 0);
    while let Some(l) = lines.next() {
        let date = field(Some(l), "day")?;
        let prev = field(lines.next(), "previous-hash")?;
        let mut chain =
            unhex32(&prev).ok_or(ExtractError::Malformed("extract.txt: bad previous-hash"))?;
        let mut ids = Vec::new();
        loop {
            let l = lines.next().ok_or(ExtractError::Malformed(
                "extract.txt: a day without end-day",
            ))?;
            if l == "end-day" {
                break;
            }
            let (digest, id) = if let Some(rest) = l.strip_prefix("digest ") {
                let (id, h) = rest
                    .split_once(' ')
                    .ok_or(ExtractError::Malformed("extract.txt: bad digest line"))?;
                let id: i64 = id
                    .parse()
                    .map_err(|_| ExtractError::Malformed("extract.txt: bad digest id"))?;
                let digest =
                    unhex32(h).ok_or(ExtractError::Malformed("extract.txt: bad digest"))?;
                (digest, id)
            } else if let Some(json) = l.strip_prefix("row ") {
                let e = serde_json::from_str::<RowJson>(json)
                    .map_err(ExtractError::BadRow)?
                    .event();
                if !mentions(&e, &address) {
                    problems.push(format!(
                        "day {date}: row {} does not concern {address}",
                        e.id
                    ));
                }
                rows += 1;
                (log::row_digest(&e), e.id)
            } else {
                return Err(ExtractError::UnexpectedLine(l.to_string()).into());
            };
            ids.push(id);
            chain = log::chain_next(&chain, &digest);
        }
        days += 1;
        let seal_text = read(&format!("seals/{date}.seal"))?;
        let Some(st) = SealText::parse(&seal_text) else {
            problems.push(format!("day {date}: the seal cannot be read"));
            continue;
        };
        if st.date.to_string() != date
            || st.previous_hash != unhex32(&prev).map(|h| h.to_vec()).unwrap_or_default()
        {
            problems.push(format!("day {date}: the seal is for another day or chain"));
        }
        let contiguous = ids.windows(2).all(|w| w[1] == w[0] + 1);
        if ids.first() != Some(&st.first_row)
            || ids.last() != Some(&st.last_row)
            || ids.len() as i64 != st.rows
            || !contiguous
        {
            problems.push(format!(
                "day {date}: the extract's rows are not the {} row(s) {}..{} the seal covers",
                st.rows, st.first_row, st.last_row
            ));
        }
        if chain.as_slice() != st.last_hash.as_slice() {
            problems.push(format!(
                "day {date}: the rows do not chain to the sealed last-hash (a row was changed)"
            ));
        }
        let hash = openssl::sha::sha256(&seal_text);
        let mut at = None;
        match (read(&format!("seals/{date}.tsr")).ok(), &tsa_roots) {
            (Some(tsr), Some(tsa)) => {
                match crate::pec::tsa::token_of_response(&tsr)
                    .and_then(|t| crate::pec::tsa::verify_token(&t, tsa, &hash, None, None))
                {
                    Ok(info) => at = Some(info.gen_time),
                    Err(e) => problems.push(format!("day {date}: time stamp token: {e}")),
                }
            }
            (Some(_), None) => problems.push(format!(
                "day {date}: has a time stamp, but log.tsa_ca is not set to check it"
            )),
            (None, _) if allow_unstamped => notes.push(format!(
                "day {date}: sealed and signed, not time-stamped (allowed by --allow-unstamped)"
            )),
            (None, _) => unstamped.push(format!(
                "day {date}: sealed and signed, not time-stamped: whoever holds the signing key could have rewritten and resealed it"
            )),
        }
        let sig = read(&format!("seals/{date}.p7s"))?;
        if let Err(e) = logseal::verify_signature(&seal_text, &sig, &roots, at) {
            problems.push(format!("day {date}: seal signature: {e}"));
        }
    }
    for p in &problems {
        println!("MISMATCH {p}");
    }
    for u in &unstamped {
        println!("UNSTAMPED {u}");
    }
    for n in &notes {
        println!("note: {n}");
    }
    if problems.is_empty() && unstamped.is_empty() {
        println!("extract verified: {rows} row(s) of {address} in {days} sealed day(s)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "extract does NOT verify: {} problem(s), {} seal(s) not time-stamped",
            problems.len(),
            unstamped.len()
        );
        Ok(ExitCode::FAILURE)
    }
}
