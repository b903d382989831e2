//! Subcommands that need the provider machinery: `verify`, `index`,
//! `queue`, `demo`, `bench`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{BenchArgs, IndexCommand, QueueCommand, VerifyArgs};
use crate::cmd::{load_config, AdminResult};
use crate::pec::clock::{Clock, ItalianTime, SystemClock};
use crate::pec::daticert::{Certified, Daticert};
use crate::pec::envelope::Provider;
use crate::pec::ids::RandomIds;
use crate::pec::receipt::{self, Emitter};
use crate::pec::types::{Errore, Tipo};
use crate::pec::verify::{VerifyReport, VerifyRequest};
use crate::store;
use crate::store::log::{Event, EventKind};
use crate::store::queue::{self, Kind, NewJob};

use crate::lab::{self, Lab};

/// The trust anchors `pecd verify` judges by: `--ca`/`--index` first, else
/// those of the configuration found the usual way (`--config`,
/// `$PECD_CONFIG`, `./config/pecd.toml`, `/etc/pecd/pecd.toml`), so that
/// the command and the webmail verifier of the same provider agree.
struct Anchors {
    index: Option<crate::pec::index::ProviderIndex>,
    trust: Option<crate::pec::smime::Trust>,
    /// `[trust] revocation`, `crl` and `soft_fail` of the configuration.
    policy: Option<(crate::pec::revocation::Policy, Vec<std::path::PathBuf>)>,
    /// The configuration they came from, if any.
    from: Option<std::path::PathBuf>,
}

fn anchors(a: &VerifyArgs, config: Option<&Path>) -> Result<Anchors, Box<dyn std::error::Error>> {
    let mut out = Anchors {
        index: None,
        trust: None,
        policy: None,
        from: None,
    };
    if let Some(p) = &a.index {
        out.index = Some(crate::server::load_index(p)?);
    }
    let mut pems = Vec::new();
    for p in &a.ca {
        pems.push(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    if !pems.is_empty() {
        let refs: Vec<&[u8]> = pems.iter().map(Vec::as_slice).collect();
        out.trust =
            Some(crate::pec::smime::trust_store_from_pem(&refs).map_err(|e| format!("--ca: {e}"))?);
    }
    if out.index.is_some() && out.trust.is_some() {
        return Ok(out);
    }
    // A configuration named on purpose must load; one merely not found
    // leaves the message unverified (exit 3), never verified.
    let path = match (config, crate::config::locate(config)) {
        (_, Ok(p)) => p,
        (Some(p), Err(_)) => p.to_path_buf(),
        (None, Err(_)) => return Ok(out),
    };
    let within = |e: &dyn std::fmt::Display| {
        format!(
            "the trust anchors of {} (give --ca and --index to verify without it): {e}",
            path.display()
        )
    };
    let cfg = load_config(&path).map_err(|e| within(&e))?;
    if out.trust.is_none() {
        out.trust = Some(crate::server::load_trust(&cfg).map_err(|e| within(&e))?.0);
    }
    if out.index.is_none() {
        out.index = Some(
            crate::server::load_index(&cfg.resolve(&cfg.trust.index)).map_err(|e| within(&e))?,
        );
    }
    out.policy = Some((
        crate::pec::revocation::Policy {
            mode: cfg.trust.revocation,
            soft_fail: cfg.trust.soft_fail,
        },
        cfg.trust.crl.iter().map(|p| cfg.resolve(p)).collect(),
    ));
    out.from = Some(path);
    Ok(out)
}

/// `pecd verify FILE`.
pub fn verify_main(a: VerifyArgs, config: Option<&Path>) -> AdminResult {
    let raw = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let Anchors {
        index,
        trust,
        policy: configured,
        from,
    } = anchors(&a, config)?;
    if let Some(p) = &from {
        eprintln!("pecd verify: trust anchors from {}", p.display());
    }
    let (policy, crls) = match (&a.revocation, configured) {
        (Some(m), _) => {
            let mode = crate::pec::revocation::Mode::parse(m).ok_or_else(|| {
                format!("--revocation: {m:?} is not one of off, crl, ocsp, ocsp+crl")
            })?;
            let policy = crate::pec::revocation::Policy {
                mode,
                soft_fail: a.soft_fail,
            };
            (policy, a.crl.clone())
        }
        (None, Some((policy, mut crls))) => {
            crls.extend(a.crl.iter().cloned());
            (policy, crls)
        }
        (None, None) => (
            crate::pec::revocation::Policy {
                mode: crate::pec::revocation::Mode::Off,
                soft_fail: a.soft_fail,
            },
            a.crl.clone(),
        ),
    };
    let mode = policy.mode;
    if mode != crate::pec::revocation::Mode::Off && trust.is_none() {
        return Err("--revocation needs --ca: only a verified chain has an issuer to ask".into());
    }
    let checker =
        crate::trust_fetch::Checker::new(policy, &crls).map_err(|e| format!("--crl: {e}"))?;
    let report = VerifyReport::build(
        &raw,
        &VerifyRequest {
            index: index.as_ref(),
            trust: trust.as_ref(),
            inner: a.inner,
            now: SystemClock.now(),
            revocation: (mode != crate::pec::revocation::Mode::Off).then_some(&checker as _),
        },
    );
    // Through `?`, not `println!`: a reader that has seen enough (`| head`)
    // closes the pipe, and that is an ordinary end, not a panic.
    let out = std::io::stdout();
    let mut out = out.lock();
    if a.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    out.flush()?;
    Ok(ExitCode::from(report.exit_code() as u8))
}

/// `pecd index …`.
pub fn index_main(cmd: IndexCommand) -> AdminResult {
    match cmd {
        IndexCommand::ImportLdif { file } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let idx = crate::pec::index::ProviderIndex::from_ldif(&text)
                .map_err(|e| format!("{}: {}", file.display(), e.0))?;
            let out = std::io::stdout();
            let mut out = out.lock();
            write!(out, "{}", idx.to_toml())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Unix milliseconds as people read them (the form of `pecd log`).
pub(crate) fn human(ms: i64) -> String {
    crate::pec::clock::human_ms(ms)
}

/// Unix milliseconds as ISO 8601 with the Italian offset (every `--json`).
pub(crate) fn iso(ms: i64) -> String {
    crate::pec::clock::iso8601_ms(ms)
}

/// Rows padded to the widest cell of each column, so long identificativi
/// and addresses do not push the columns after them out of line. The last
/// column (free text) is not padded; `right` names the numeric columns.
pub(crate) fn write_table<const N: usize>(
    out: &mut impl Write,
    rows: &[[String; N]],
    right: [bool; N],
) -> std::io::Result<()> {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else if right[i] {
                line.push_str(&format!("{c:>w$}  ", w = width[i]));
            } else {
                line.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub(crate) fn age(ms: i64) -> String {
    let s = ((crate::cmd::now_unix_ms() - ms) / 1000).max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 3 * 86_400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// Who runs a job now and how long its claim holds unless renewed
/// (`node +12s`; `node lapsed` once its lease has run out: a dead node's,
/// which another node, or this one restarted, takes over); `-` for none.
fn claim_cell(j: &queue::Job, now: i64) -> String {
    match (&j.claimed_by, j.claimed_until) {
        (Some(node), Some(until)) if until > now => {
            format!("{node} +{}s", (until - now + 999) / 1000)
        }
        (Some(node), _) => format!("{node} lapsed"),
        (None, _) => "-".into(),
    }
}

/// `pecd queue list` in a table or JSON lines.
fn queue_list(cfg: &crate::config::Config, failed: bool, all: bool, json: bool) -> AdminResult {
    let which = if failed {
        queue::Listing::Failed
    } else if all {
        queue::Listing::All
    } else {
        queue::Listing::Waiting
    };
    let inspector = super::inspect_store(cfg)?;
    let (jobs, counts) = (inspector.jobs(which)?, inspector.job_counts()?);
    let n_failed = counts
        .iter()
        .find(|(s, _)| *s == queue::JobState::Failed)
        .map_or(0, |(_, n)| *n);
    // On stderr: stdout stays a table (or JSON lines) of jobs only. Failed
    // work is named even when nothing waits, so `/metrics` counting a
    // failed job never meets a list that says nothing is wrong.
    let failed_note = || {
        if which == queue::Listing::Waiting && n_failed > 0 {
            eprintln!(
                "{n_failed} job(s) failed for good: `pecd queue list --failed` shows them with their last error"
            );
        }
    };
    if jobs.is_empty() {
        match which {
            queue::Listing::Waiting => eprintln!("the queue is empty: no pending work"),
            queue::Listing::Failed => eprintln!("no failed jobs"),
            queue::Listing::All => eprintln!("the queue holds no jobs"),
        }
        failed_note();
        return Ok(ExitCode::SUCCESS);
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    if json {
        for j in jobs {
            let mut v = serde_json::to_value(&j)?;
            v["next_attempt"] = serde_json::json!(iso(j.due_at));
            v["created"] = serde_json::json!(iso(j.created_at));
            v["updated"] = serde_json::json!(iso(j.updated_at));
            v["claimed_until_iso"] = serde_json::json!(j.claimed_until.map(iso));
            v["age_seconds"] = serde_json::json!((crate::cmd::now_unix_ms() - j.created_at) / 1000);
            writeln!(out, "{v}")?;
        }
        failed_note();
        return Ok(ExitCode::SUCCESS);
    }
    let now = crate::cmd::now_unix_ms();
    let mut rows: Vec<[String; 11]> = vec![[
        "ID",
        "KIND",
        "STATE",
        "IDENTIFICATIVO",
        "RECIPIENT",
        "NEXT HOP",
        "TRY",
        "NEXT",
        "AGE",
        "CLAIMED BY",
        "LAST ERROR",
    ]
    .map(String::from)];
    for j in jobs {
        let next = match j.state {
            queue::JobState::Pending if j.due_at <= now => "now".to_string(),
            queue::JobState::Pending => format!("+{}s", (j.due_at - now) / 1000),
            // Nothing is due: when it stopped, for the operator to match
            // against the log.
            _ => human(j.updated_at),
        };
        rows.push([
            j.id.to_string(),
            j.kind.as_str().to_string(),
            j.state.to_string(),
            j.identificativo.clone().unwrap_or_default(),
            j.recipients.join(","),
            j.next_hop.clone().unwrap_or_else(|| "local".into()),
            j.attempts.to_string(),
            next,
            age(j.created_at),
            claim_cell(&j, now),
            j.last_error.clone().unwrap_or_default(),
        ]);
    }
    write_table(
        &mut out,
        &rows,
        [
            true, false, false, false, false, false, true, false, true, false, false,
        ],
    )?;
    drop(out);
    failed_note();
    Ok(ExitCode::SUCCESS)
}

/// `pecd queue …` (works beside a running daemon: SQLite WAL).
pub fn queue_main(config: &Path, cmd: QueueCommand) -> AdminResult {
    let cfg = load_config(config)?;
    match cmd {
        QueueCommand::List { failed, all, json } => queue_list(&cfg, failed, all, json),
        QueueCommand::Show { id, json } => {
            let Some(j) = super::inspect_store(&cfg)?.job(id)? else {
                return Err(format!("no job {id}").into());
            };
            let bytes = j
                .blob
                .as_deref()
                .and_then(|b| b.split_once('@'))
                .map(|(seg, range)| {
                    format!(
                        "{} at {range} (offset+length)",
                        cfg.data_dir().join("spool").join(seg).display()
                    )
                });
            let out = std::io::stdout();
            let mut out = out.lock();
            if json {
                // The numbers stay for scripts; the ISO 8601 forms are for people.
                let mut v = serde_json::to_value(&j)?;
                v["next_attempt"] = serde_json::json!(iso(j.due_at));
                v["created"] = serde_json::json!(iso(j.created_at));
                v["updated"] = serde_json::json!(iso(j.updated_at));
                v["claimed_until_iso"] = serde_json::json!(j.claimed_until.map(iso));
                v["message_bytes"] = serde_json::json!(bytes);
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            let next = if j.state == queue::JobState::Pending {
                human(j.due_at)
            } else {
                format!("- ({})", j.state)
            };
            let fields: Vec<(&str, String)> = vec![
                ("id", j.id.to_string()),
                ("kind", j.kind.as_str().to_string()),
                ("state", j.state.to_string()),
                ("identificativo", opt(&j.identificativo)),
                ("mail from", j.mail_from.clone()),
                ("recipients", j.recipients.join(", ")),
                (
                    "next hop",
                    j.next_hop.clone().unwrap_or_else(|| "local".into()),
                ),
                ("attempts", j.attempts.to_string()),
                ("last error", opt(&j.last_error)),
                ("next attempt", next),
                (
                    "claimed by",
                    match (&j.claimed_by, j.claimed_until) {
                        (Some(node), Some(until)) => {
                            format!("{node} until {} (fence {})", human(until), j.fence)
                        }
                        _ => "-".into(),
                    },
                ),
                ("created", human(j.created_at)),
                ("updated", human(j.updated_at)),
                ("key", j.key.clone()),
                ("data", opt(&j.data)),
            ];
            for (k, v) in fields {
                writeln!(out, "{:<15} {v}", format!("{k}:"))?;
            }
            match bytes {
                Some(b) => writeln!(out, "message bytes: {b}")?,
                None if j.state == queue::JobState::Failed => writeln!(
                    out,
                    "message bytes: released (kept a week after the failure): `queue retry` cannot run it again"
                )?,
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Retry { id, all, failed } => {
            if id.is_none() && !all && !failed {
                return Err("give a job ID, --all (every pending job) or --failed".into());
            }
            let st = super::open_store(&cfg)?;
            let now = crate::cmd::now_unix_ms();
            if let Some(id) = id {
                // Say why a job cannot run again rather than "0 jobs".
                let job = st.job_blocking(id)?;
                let why = match &job {
                    None => Some(format!("no job {id}")),
                    Some(j) if j.state == queue::JobState::Failed && j.blob.is_none() => Some(format!(
                        "job {id} failed for good and its message is no longer kept (a week after the failure): nothing to run again"
                    )),
                    Some(j) if matches!(j.state, queue::JobState::Done | queue::JobState::Cancelled) => {
                        Some(format!("job {id} is {}: nothing to retry", j.state))
                    }
                    Some(_) => None,
                };
                if let Some(why) = why {
                    st.close();
                    return Err(why.into());
                }
            }
            let n = if failed {
                st.retry_failed_blocking(now)?
            } else {
                st.retry_now_blocking(id, now)?
            };
            st.close();
            println!("{n} job(s) due now");
            Ok(if n == 0 && id.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        QueueCommand::Cancel { id } => cancel(&cfg, id),
    }
}

/// Cancel a job; for a busta the sender gets a signed non-delivery notice
/// per recipient, built and queued by this process.
fn cancel(cfg: &crate::config::Config, id: queue::JobId) -> AdminResult {
    let st = super::open_store(cfg)?;
    let job = st.job_blocking(id)?.ok_or_else(|| format!("no job {id}"))?;
    if job.state != queue::JobState::Pending {
        return Err(format!("job {id} is {}, not pending", job.state).into());
    }
    let mut notices: Vec<(NewJob, Event)> = Vec::new();
    let carries_busta = matches!(job.kind, Kind::LocalBusta)
        || (job.kind == Kind::Relay
            && job
                .data
                .as_deref()
                .is_some_and(|d| d.contains(Tipo::PostaCertificata.as_str())));
    let now = crate::cmd::now_unix_ms();
    if carries_busta {
        let ident = job.identificativo.clone().unwrap_or_default();
        let xml = st.daticert_blocking(&ident)?;
        if let Some(xml) = xml {
            let d = Daticert::parse(xml.as_bytes()).map_err(|e| format!("{e:?}"))?;
            let c = Certified::from(&d);
            let signer = crate::server::load_signer(cfg)?;
            let p = Provider {
                name: cfg.provider.name.clone(),
                domain: cfg.provider_domain().to_string(),
            };
            let ids = RandomIds;
            let e = Emitter {
                provider: &p,
                ids: &ids,
                when: ItalianTime::from_unix(SystemClock.now()),
            };
            let esteso = format!(
                "5.3.0 - {} - consegna annullata dal gestore",
                cfg.provider.name
            );
            let accepted = st.accepted_at_blocking(&ident)?.unwrap_or(now);
            let busta = job.blob.as_deref().and_then(|b| st.get_blob(b).ok());
            let busta_headers = busta
                .as_deref()
                .map(|b| &b[..crate::pec::headers::raw_fields(b).1]);
            for r in &job.recipients {
                let certified = c.destinatari.iter().any(|d| {
                    d.address.eq_ignore_ascii_case(r)
                        && d.tipo == crate::pec::types::RecipientType::Certificato
                });
                // An ordinary recipient has no certified receipt: the
                // sender gets the plain delivery-failure notice instead.
                let (bytes, msgid, tipo, kind) = if certified {
                    let msg = receipt::errore_consegna(&e, &c, r, Errore::Altro, &esteso);
                    let msgid = crate::flow::message_id_of(&msg);
                    let signed = signer
                        .sign(&msg, &crate::pec::ids::boundary(&ids))
                        .map_err(|e| e.to_string())?;
                    (
                        signed,
                        msgid,
                        Tipo::ErroreConsegna.as_str(),
                        EventKind::ErroreConsegna,
                    )
                } else {
                    let n = crate::pec::notice::esterno_failure(
                        &p,
                        &ids,
                        &e.when,
                        &crate::pec::notice::EsternoFailure {
                            certified: &c,
                            recipient: r,
                            error:
                                "5.3.0 consegna annullata dal gestore (cancelled by the operator)",
                            reporting_host: &cfg.provider.hostname,
                            accepted: ItalianTime::from_unix(accepted / 1000),
                            original_headers: busta_headers,
                        },
                    );
                    (
                        n.bytes,
                        Some(n.message_id),
                        crate::pec::notice::ESTERNO_FAILED,
                        EventKind::MancataConsegnaEsterno,
                    )
                };
                let blob = st.put_blob(&bytes)?;
                let mut ev = crate::flow::event_for(kind, now, &c);
                ev.generated_msgid = msgid.clone();
                ev.error = Some(esteso.clone());
                if !certified {
                    ev.recipients = Some(r.clone());
                }
                ev.detail = Some(format!("job {id} cancelled by the operator; recipient {r}"));
                let local = c
                    .mittente
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| cfg.is_local_domain(d));
                notices.push((
                    NewJob {
                        key: format!("annullamento:{ident}:{r}"),
                        kind: if local { Kind::Mailbox } else { Kind::Relay },
                        identificativo: Some(ident.clone()),
                        mail_from: format!("posta-certificata@{}", cfg.provider_domain()),
                        recipients: vec![c.mittente.clone()],
                        next_hop: (!local)
                            .then(|| c.mittente.rsplit_once('@').map(|(_, d)| d.to_string()))
                            .flatten(),
                        blob: Some(crate::flow::batch::BlobRef::Spooled(blob)),
                        data: Some(serde_json::json!({"tipo": tipo, "msgid": msgid}).to_string()),
                        due_at: now,
                    },
                    ev,
                ));
            }
        }
    }
    let rcpts = job.recipients.clone();
    let ident = job.identificativo.clone().unwrap_or_default();
    let n_notices = notices.len();
    let mut ev = Event::new(EventKind::Annullamento, now);
    ev.identificativo = Some(ident.clone()).filter(|s| !s.is_empty());
    ev.recipients = Some(rcpts.join(", "));
    ev.detail = Some(format!("job {id} cancelled by the operator"));
    let cancelled = st.cancel_job_blocking(
        queue::Cancellation {
            id,
            event: ev,
            notices,
            identificativo: ident,
            recipients: rcpts,
        },
        now,
    )?;
    st.close();
    if cancelled {
        println!("job {id} cancelled; {n_notices} non-delivery notice(s) queued for the sender");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("job {id} was no longer pending").into())
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Count `deposito` events on a provider whose detail starts with `tipo` and
/// that concern `address`.
fn deposits(p: &crate::server::Running, tipo: &str) -> Vec<Event> {
    let q = store::log::Query {
        events: vec![EventKind::Deposito],
        ..Default::default()
    };
    p.ctx
        .store
        .log_events_blocking(&q)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.detail.as_deref().is_some_and(|d| d.starts_with(tipo)))
        .collect()
}

fn events(p: &crate::server::Running, kind: EventKind) -> Vec<Event> {
    let q = store::log::Query {
        events: vec![kind],
        ..Default::default()
    };
    p.ctx.store.log_events_blocking(&q).unwrap_or_default()
}

/// `pecd demo`.
pub fn demo_main() -> AdminResult {
    let rt = runtime()?;
    rt.block_on(async {
        println!("Starting two providers on loopback (temporary folder, throwaway CA)...");
        let lab = Lab::alpha_beta(&["bob".into()], "").await?;
        let (a, b) = (&lab.providers[0], &lab.providers[1]);
        println!(
            "  Alpha PEC S.p.A.  pec.alpha.test  submission {}  inbound {}",
            a.bound
                .submission
                .map(|x| x.to_string())
                .unwrap_or_default(),
            a.bound.inbound.map(|x| x.to_string()).unwrap_or_default()
        );
        println!(
            "  Beta PEC S.p.A.   pec.beta.test   submission {}  inbound {}",
            b.bound
                .submission
                .map(|x| x.to_string())
                .unwrap_or_default(),
            b.bound.inbound.map(|x| x.to_string()).unwrap_or_default()
        );
        let submission = a.bound.submission.ok_or("no submission listener")?;
        let mut client =
            lab::session(submission, lab.client_tls()?, "alice@pec.alpha.test").await?;
        let t0 = Instant::now();
        let t0_ms = crate::cmd::now_unix_ms();
        println!("\nalice@pec.alpha.test -> bob@pec.beta.test: \"Saluti da Alpha\"");
        let id = lab::submit(
            &mut client,
            "alice@pec.alpha.test",
            &["bob@pec.beta.test".into()],
            "Saluti da Alpha",
            "Ciao Bob, questa e' una PEC.",
        )
        .await?;
        println!(
            "  {:>7.1} ms  250 from Alpha's access point, identificativo {id}",
            t0.elapsed().as_secs_f64() * 1000.0
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut shown = [false; 4];
        while Instant::now() < deadline && !shown.iter().all(|s| *s) {
            let steps: [(usize, Vec<Event>, &str); 4] = [
                (
                    0,
                    deposits(a, "accettazione"),
                    "ACCETTAZIONE in alice's mailbox (signed by Alpha)",
                ),
                (
                    1,
                    deposits(b, "posta-certificata")
                        .into_iter()
                        .chain(events(b, EventKind::AvvenutaConsegna))
                        .collect(),
                    "POSTA CERTIFICATA (busta) in bob's mailbox at Beta",
                ),
                (
                    2,
                    events(a, EventKind::Ricevuta(Tipo::PresaInCarico)),
                    "PRESA IN CARICO from Beta received and logged by Alpha",
                ),
                (
                    3,
                    deposits(a, "avvenuta-consegna"),
                    "CONSEGNA (ricevuta completa, signed by Beta) in alice's mailbox",
                ),
            ];
            for (i, evs, text) in steps {
                if !shown[i] {
                    if let Some(e) = evs.first() {
                        shown[i] = true;
                        println!("  {:>7.1} ms  {text}", (e.ts - t0_ms) as f64);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ok = shown.iter().all(|s| *s);
        if ok {
            println!(
                "\nThe whole chain took {:.0} ms.",
                t0.elapsed().as_secs_f64() * 1000.0
            );
            println!("Alpha's log for this message:");
            let q = store::log::Query {
                identificativo: Some(id.clone()),
                ..Default::default()
            };
            for e in a.ctx.store.log_events_blocking(&q).unwrap_or_default() {
                println!(
                    "  {} {:<26} {}",
                    human(e.ts),
                    e.event,
                    e.detail.unwrap_or_default()
                );
            }
        } else {
            println!("\nThe chain did not complete within 30 s.");
        }
        lab.stop().await;
        Ok::<_, Box<dyn std::error::Error>>(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// `pecd bench`.
pub fn bench_main(a: BenchArgs) -> AdminResult {
    super::bench_run::run(a)
}
