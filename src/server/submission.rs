//! The access point (`pec-spec.md` §5.1): authenticated submission, formal
//! checks, busta di trasporto and ricevuta di accettazione.
//!
//! Both messages are built and signed before the reply, and stored together
//! with the queue rows and log events in one group-committed transaction:
//! when the client reads `250` everything the promise needs is on disk.

use std::sync::Arc;

use crate::pec::access::{self, Accepted, Limits};
use crate::pec::clock::ItalianTime;
use crate::pec::daticert::{Certified, Destinatario};
use crate::pec::envelope::{busta_di_trasporto, Provider};
use crate::pec::receipt::{self, Emitter};
use crate::pec::types::{RecipientType, Tipo};
use crate::smtp::{Backend, Envelope, Reply, SessionInfo, SmtpConfig};
use crate::store;
use crate::store::log::{Event, EventKind};
use crate::store::queue::{self, Kind, NewJob};

use super::Ctx;

/// SMTP settings for one listener of this provider.
pub fn smtp_config(
    cfg: &crate::config::Config,
    tls: crate::tls::Acceptor,
    implicit_tls: bool,
    mode: crate::smtp::Mode,
) -> SmtpConfig {
    let mut c = SmtpConfig::new(&cfg.provider.hostname, mode);
    c.implicit_tls = implicit_tls;
    c.tls = Some(tls);
    c.max_message_size = cfg.max_message_size();
    c.max_recipients = cfg.limits.max_recipients;
    c.max_connections = cfg.limits.max_connections;
    c.max_connections_per_ip = cfg.limits.max_connections_per_ip;
    if mode == crate::smtp::Mode::Inbound {
        // Peers deliver to the reception point only; everywhere else a
        // host of theirs is a client like any other.
        c.peer_networks = cfg.peer_networks();
        c.max_connections_per_peer = cfg.limits.max_connections_per_peer;
    }
    c.command_timeout = cfg.duration(&cfg.limits.command_timeout, c.command_timeout);
    c.data_timeout = cfg.duration(&cfg.limits.data_timeout, c.data_timeout);
    c.max_errors = cfg.limits.max_bad_commands;
    c
}

/// The submission listeners' backend.
pub struct SubmissionBackend {
    ctx: Arc<Ctx>,
    auth: super::auth::UserAuth,
}

impl SubmissionBackend {
    /// Backend for `ctx`.
    pub fn new(ctx: Arc<Ctx>) -> SubmissionBackend {
        SubmissionBackend {
            auth: super::auth::UserAuth::new(ctx.clone()),
            ctx,
        }
    }
}

impl Backend for SubmissionBackend {
    async fn authenticate(
        &self,
        info: &SessionInfo,
        user: &str,
        password: &str,
    ) -> Result<String, Reply> {
        self.auth.check(user, password, info.peer.ip()).await
    }

    async fn mail_from(&self, info: &SessionInfo, from: &str) -> Result<(), Reply> {
        match &info.auth_user {
            Some(u) if u.eq_ignore_ascii_case(from.trim()) => Ok(()),
            Some(_) => Err(Reply::sender_not_owned()),
            None => Err(Reply::auth_required()),
        }
    }

    async fn rcpt_to(&self, _info: &SessionInfo, _env: &Envelope, rcpt: &str) -> Result<(), Reply> {
        if valid_address(rcpt) {
            Ok(())
        } else {
            Err(Reply::bad_recipient(rcpt))
        }
    }

    async fn data(&self, info: &SessionInfo, env: &Envelope, message: Vec<u8>) -> Reply {
        let Some(user) = info.auth_user.clone() else {
            return Reply::auth_required();
        };
        match submit(&self.ctx, &user, &env.mail_from, &env.rcpt_to, message).await {
            Ok(s) => Reply::pec_accepted(&s.identificativo),
            Err(r) => r.reply,
        }
    }
}

/// A submission the access point accepted: the busta is on its way.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The identificativo of the busta (`pecd log --id`).
    pub identificativo: String,
    /// The Message-ID the user's message carried, if any.
    pub msgid: Option<String>,
}

/// A submission the access point did not accept.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What SMTP answers (code, enhanced status, English text).
    pub reply: Reply,
    /// The reason in the words of the non-accettazione (Italian), when the
    /// formal checks refused it; `None` for a local failure.
    pub reason: Option<String>,
}

impl Refusal {
    fn local() -> Refusal {
        Refusal {
            reply: Reply::local_error(),
            reason: None,
        }
    }
}

/// The access point: every submission, from SMTP or the web, goes through
/// here. `user` is the authenticated address; `from` must be it. Once `Ok`
/// is returned the busta, its acceptance (or the signed non-accettazione)
/// and their log rows are on disk.
pub async fn submit(
    ctx: &Arc<Ctx>,
    user: &str,
    from: &str,
    recipients: &[String],
    message: Vec<u8>,
) -> Result<Submitted, Refusal> {
    if !user.eq_ignore_ascii_case(from.trim()) {
        return Err(Refusal {
            reply: Reply::sender_not_owned(),
            reason: None,
        });
    }
    if let Some(bad) = recipients.iter().find(|r| !valid_address(r)) {
        return Err(Refusal {
            reply: Reply::bad_recipient(bad),
            reason: None,
        });
    }
    let screen = screen(ctx, &message).await?;
    let c2 = ctx.clone();
    let (mail_from, rcpts, user) = (from.to_string(), recipients.to_vec(), user.to_string());
    let scanned = screen.clone();
    // Parsing and RSA signing are CPU work: keep them off the I/O threads.
    let prepared = tokio::task::spawn_blocking(move || {
        prepare(&c2, &message, &mail_from, &rcpts, Some(&user), &scanned)
    })
    .await;
    let prepared = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "submission failed before commit");
            return Err(Refusal::local());
        }
        Err(e) => {
            tracing::error!(error = %e, "submission task failed");
            return Err(Refusal::local());
        }
    };
    let reply = prepared.reply.clone();
    let reason = prepared.reason.clone();
    // Taken before the commit consumes `prepared`, logged only after it
    // succeeds: the line promises that `pecd log --id` will find rows.
    let accepted = prepared
        .message_row
        .as_ref()
        .map(|m| (m.identificativo.clone(), m.sender.clone(), m.msgid.clone()));
    let n = prepared.recipient_count;
    let quarantined = prepared.quarantine.as_ref().map(|q| q.file.clone());
    let ok = ctx.store.write(move |c| prepared.commit(c)).await;
    if let Err(e) = ok {
        tracing::error!(error = %e, "submission commit failed");
        return Err(Refusal::local());
    }
    ctx.wake.notify_one();
    ctx.metrics.submission(reply.is_positive());
    if let Some(file) = quarantined {
        tracing::warn!(from = %from, file = %file, reply = %reply, "infected submission refused and quarantined");
    }
    match accepted {
        Some((identificativo, from, msgid)) if reply.is_positive() => {
            if let Screen::Unscanned(e) = &screen {
                tracing::warn!(identificativo = %identificativo, error = %e,
                    "submission accepted without a virus scan (antivirus.on_error = \"accept\")");
            }
            tracing::info!(
                identificativo = %identificativo,
                from = %from,
                recipients = n,
                "submission accepted"
            );
            Ok(Submitted {
                identificativo,
                msgid,
            })
        }
        _ => Err(Refusal { reply, reason }),
    }
}

/// What the scanner said before the formal checks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Screen {
    /// Scanned and clean, or no `[antivirus]`.
    Clean,
    /// clamd failed and `on_error = "accept"`: the reason.
    Unscanned(String),
    /// clamd found this virus.
    Infected(String),
}

/// Scan a submission; a scan failure under `on_error = "tempfail"` is the
/// refusal (451 4.7.0), so nothing unscanned gets in by default.
async fn screen(ctx: &Ctx, raw: &[u8]) -> Result<Screen, Refusal> {
    let scanner = ctx.scanner();
    let Some(s) = &*scanner else {
        return Ok(Screen::Clean);
    };
    let r = s.scan(raw).await;
    ctx.metrics.virus_scan("submission", &r);
    match r {
        Ok(crate::antivirus::Verdict::Clean) => Ok(Screen::Clean),
        Ok(crate::antivirus::Verdict::Infected(v)) => Ok(Screen::Infected(v)),
        Err(e) => match s.on_error {
            crate::config::OnError::Accept => Ok(Screen::Unscanned(e.to_string())),
            crate::config::OnError::Tempfail => {
                tracing::warn!(error = %e, "virus scan failed: submission deferred (451)");
                Err(Refusal {
                    reply: Reply::scan_unavailable(),
                    reason: None,
                })
            }
        },
    }
}

fn valid_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((l, d)) => !l.is_empty() && !d.is_empty() && !a.contains(char::is_whitespace),
        None => false,
    }
}

/// The ids and time shared by everything one submission produces.
struct Stamp {
    now_ms: i64,
    when: ItalianTime,
    identificativo: String,
}

/// What a submission will commit, prepared outside the store thread.
pub(crate) struct Prepared {
    reply: Reply,
    /// The Italian reason of a refusal by the formal checks.
    reason: Option<String>,
    log: Vec<Event>,
    jobs: Vec<NewJob>,
    message_row: Option<store::messages::Accepted>,
    timers: Vec<(String, String, i64, i64, i64)>,
    /// An infected message kept (its file is already written).
    quarantine: Option<store::quarantine::Quarantined>,
    /// Destinatari of an accepted message, for the operator's log line.
    recipient_count: usize,
}

impl Prepared {
    fn commit(self, c: &store::Db<'_>) -> store::Result<()> {
        if let Some(m) = &self.message_row {
            store::messages::insert(c, m)?;
        }
        for e in &self.log {
            store::log::append(c, e)?;
        }
        let now = self.log.first().map(|e| e.ts).unwrap_or_else(store::now_ms);
        for j in &self.jobs {
            queue::enqueue(c, j, now)?;
        }
        for (id, rcpt, sent, pre, exp) in &self.timers {
            queue::timer_start(c, id, rcpt, *sent, *pre, *exp)?;
        }
        if let Some(q) = &self.quarantine {
            store::quarantine::insert(c, q)?;
        }
        Ok(())
    }
}

/// Format recipients for the log: `a@x (certificato), b@y (esterno)`.
pub fn recipients_text(d: &[Destinatario]) -> String {
    d.iter()
        .map(|r| format!("{} ({})", r.address, r.tipo.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A log event pre-filled from a message's certification data.
pub fn event_for(kind: EventKind, ts: i64, c: &Certified) -> Event {
    let mut e = Event::new(kind, ts);
    e.identificativo = Some(c.identificativo.clone());
    e.msgid = c.msgid.clone();
    e.sender = Some(c.mittente.clone());
    e.recipients = Some(recipients_text(&c.destinatari));
    e.subject = Some(c.oggetto_str().to_string());
    e
}

/// The Message-ID header of a built message.
pub fn message_id_of(msg: &crate::pec::types::Unsigned) -> Option<String> {
    msg.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Message-ID"))
        .map(|(_, v)| v.clone())
}

/// Job that delivers a finished message to a local mailbox or relays it to
/// the recipient's provider.
pub fn route_job(
    ctx: &Ctx,
    key: String,
    identificativo: &str,
    to: &str,
    blob: &str,
    data: serde_json::Value,
    due: i64,
) -> NewJob {
    let local = ctx.is_local(to);
    NewJob {
        key,
        kind: if local { Kind::Mailbox } else { Kind::Relay },
        identificativo: Some(identificativo.to_string()),
        mail_from: ctx.receipt_address(),
        recipients: vec![to.to_ascii_lowercase()],
        next_hop: if local {
            None
        } else {
            to.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
        },
        blob: Some(blob.to_string()),
        data: Some(data.to_string()),
        due_at: due,
    }
}

fn provider(ctx: &Ctx) -> Provider {
    Provider {
        name: ctx.provider().name.clone(),
        domain: ctx.domain().to_string(),
    }
}

/// The emitting provider for builders.
pub fn our_provider(ctx: &Ctx) -> Provider {
    provider(ctx)
}

fn prepare(
    ctx: &Ctx,
    raw: &[u8],
    mail_from: &str,
    rcpts: &[String],
    user: Option<&str>,
    screen: &Screen,
) -> Result<Prepared, String> {
    let now = ctx.now_secs();
    let stamp = Stamp {
        now_ms: now * 1000 + (store::now_ms() % 1000),
        when: ItalianTime::from_unix(now),
        identificativo: crate::pec::ids::identificativo(
            ctx.ids.as_ref(),
            &ItalianTime::from_unix(now),
            ctx.domain(),
        ),
    };
    let cfg = ctx.cfg();
    let limits = Limits {
        max_message_size: cfg.max_message_size(),
        max_recipients: cfg.limits.max_recipients,
    };
    let checked = access::check(raw, mail_from, rcpts, user, &limits);
    if let Screen::Infected(virus) = screen {
        // The virus outranks any formal defect: it is what the sender must hear.
        let partial = match checked {
            Ok(acc) => Box::new(acc),
            Err(r) => r.partial,
        };
        let refusal = access::Refusal {
            reason: format!("virus {virus}"),
            reason_en: format!("virus {virus} detected, message refused"),
            code: 550,
            status: "5.7.1",
            notice: true,
            partial,
        };
        let mut p = refuse(ctx, &refusal, &stamp, true)?;
        let file = store::quarantine::keep(&ctx.store.paths().data_dir, stamp.now_ms, raw)
            .map_err(|e| format!("quarantine: {e}"))?;
        p.quarantine = Some(store::quarantine::Quarantined {
            id: 0,
            identificativo: Some(stamp.identificativo.clone()),
            virus: virus.clone(),
            sender: mail_from.to_string(),
            recipients: rcpts.join(", "),
            point: "submission".into(),
            file,
            size: raw.len() as i64,
            at: stamp.now_ms,
        });
        return Ok(p);
    }
    match checked {
        Ok(acc) => {
            let blocked = ctx.scanner().as_ref().as_ref().and_then(|s| {
                crate::antivirus::attachments::find_blocked(raw, &s.blocked_extensions)
            });
            if let Some(b) = blocked {
                let refusal = access::Refusal {
                    reason: format!(
                        "l'allegato \"{}\" ha un'estensione non ammessa (.{}): i file eseguibili non sono accettati",
                        b.name, b.extension
                    ),
                    reason_en: format!(
                        "attachment {:?} has a blocked extension (.{})",
                        b.name, b.extension
                    ),
                    code: 550,
                    status: "5.7.1",
                    notice: true,
                    partial: Box::new(acc),
                };
                return refuse(ctx, &refusal, &stamp, false);
            }
            let mut p = accept(ctx, raw, &acc, &stamp)?;
            if let (Screen::Unscanned(e), Some(first)) = (screen, p.log.first_mut()) {
                first.detail = Some(format!("not scanned for viruses: {e}"));
            }
            Ok(p)
        }
        Err(refusal) => refuse(ctx, &refusal, &stamp, false),
    }
}

fn classify(ctx: &Ctx, acc: &Accepted) -> Vec<Destinatario> {
    acc.recipients()
        .into_iter()
        .map(|a| Destinatario {
            tipo: ctx.recipient_type(&a),
            address: a,
        })
        .collect()
}

fn accept(ctx: &Ctx, raw: &[u8], acc: &Accepted, s: &Stamp) -> Result<Prepared, String> {
    let p = provider(ctx);
    let destinatari = classify(ctx, acc);
    let busta = busta_di_trasporto(
        &p,
        ctx.ids.as_ref(),
        &s.when,
        raw,
        acc,
        &s.identificativo,
        &destinatari,
    );
    let signed_busta = ctx.sign(&busta.unsigned)?;
    // What travels is the busta, a few KB larger than the original: a peer
    // with our limit would refuse it after we had certified the acceptance.
    let max = ctx.cfg().max_message_size();
    if signed_busta.len() > max {
        let refusal = access::Refusal {
            reason: format!(
                "la busta di trasporto ({} byte) supererebbe la dimensione massima consentita ({max} byte)",
                signed_busta.len()
            ),
            reason_en: format!(
                "the busta di trasporto would be {} bytes, over the {max}-byte limit",
                signed_busta.len()
            ),
            code: 552,
            status: "5.3.4",
            notice: false,
            partial: Box::new(acc.clone()),
        };
        return refuse(ctx, &refusal, s, false);
    }
    let emitter = Emitter {
        provider: &p,
        ids: ctx.ids.as_ref(),
        when: s.when,
    };
    let acc_msg = receipt::accettazione(&emitter, &busta.certified);
    ctx.metrics.receipt(Tipo::Accettazione.as_str());
    let acc_msgid = message_id_of(&acc_msg);
    let signed_acc = ctx.sign(&acc_msg)?;
    let busta_blob = ctx
        .store
        .put_blob(&signed_busta)
        .map_err(|e| e.to_string())?;
    let acc_blob = ctx.store.put_blob(&signed_acc).map_err(|e| e.to_string())?;
    let c = &busta.certified;
    let id = &s.identificativo;

    let mut log = Vec::new();
    let mut e = event_for(EventKind::Accettazione, s.now_ms, c);
    e.generated_msgid = acc_msgid.clone();
    log.push(e);
    let mut e = event_for(EventKind::BustaTrasporto, s.now_ms, c);
    e.generated_msgid = Some(format!("<{id}>"));
    e.receipt_type = Some(c.ricevuta.as_str().to_string());
    log.push(e);

    let mut jobs = vec![route_job(
        ctx,
        format!("accettazione:{id}"),
        id,
        &c.mittente,
        &acc_blob,
        serde_json::json!({"tipo": Tipo::Accettazione.as_str(), "msgid": acc_msgid}),
        s.now_ms,
    )];
    let mut timers = Vec::new();
    let tcfg = timer_config(ctx);
    let mut remote: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for d in &destinatari {
        if ctx.is_local(&d.address) {
            jobs.push(NewJob {
                key: format!("busta:{id}:{}", d.address),
                kind: Kind::LocalBusta,
                identificativo: Some(id.clone()),
                mail_from: c.mittente.clone(),
                recipients: vec![d.address.clone()],
                next_hop: None,
                blob: Some(busta_blob.clone()),
                data: None,
                due_at: s.now_ms,
            });
        } else {
            let domain = d.address.rsplit_once('@').map(|(_, x)| x).unwrap_or("");
            remote
                .entry(domain.to_string())
                .or_default()
                .push(d.address.clone());
            if d.tipo == RecipientType::Certificato {
                timers.push((
                    id.clone(),
                    d.address.clone(),
                    s.now_ms,
                    crate::pec::timers::preavviso_due(s.now_ms, &tcfg),
                    crate::pec::timers::expiry_due(s.now_ms, &tcfg),
                ));
            }
        }
    }
    for (domain, rcpts) in remote {
        jobs.push(NewJob {
            key: format!("relay:{id}:{domain}"),
            kind: Kind::Relay,
            identificativo: Some(id.clone()),
            mail_from: c.mittente.clone(),
            recipients: rcpts,
            next_hop: Some(domain),
            blob: Some(busta_blob.clone()),
            data: Some(serde_json::json!({"tipo": Tipo::PostaCertificata.as_str()}).to_string()),
            due_at: s.now_ms,
        });
    }
    Ok(Prepared {
        reply: Reply::pec_accepted(id),
        reason: None,
        log,
        jobs,
        message_row: Some(store::messages::Accepted {
            identificativo: id.clone(),
            msgid: c.msgid.clone(),
            sender: c.mittente.clone(),
            subject: c.oggetto_str().to_string(),
            recipients: recipients_text(&destinatari),
            receipt_type: c.ricevuta.as_str().to_string(),
            daticert: busta.daticert.to_xml(),
            accepted_at: s.now_ms,
        }),
        timers,
        quarantine: None,
        recipient_count: destinatari.len(),
    })
}

/// `[timers]` in milliseconds.
pub fn timer_config(ctx: &Ctx) -> crate::pec::timers::TimerConfig {
    let cfg = ctx.cfg();
    let t = &cfg.timers;
    let pre = cfg.duration(
        &t.preavviso_after,
        std::time::Duration::from_secs(12 * 3600),
    );
    let exp = cfg.duration(&t.expire_after, std::time::Duration::from_secs(24 * 3600));
    crate::pec::timers::TimerConfig {
        preavviso_after: pre.as_millis() as i64,
        expiry_after: exp.as_millis() as i64,
    }
}
fn refuse(ctx: &Ctx, r: &access::Refusal, s: &Stamp, virus: bool) -> Result<Prepared, String> {
    let reply = Reply::pec_refused(r.code, r.status, &r.reason_en);
    let p = provider(ctx);
    let partial = &r.partial;
    let c = Certified {
        mittente: partial.from.clone(),
        destinatari: classify(ctx, partial),
        risposte: partial.risposte(),
        oggetto: partial.subject.clone(),
        identificativo: s.identificativo.clone(),
        msgid: partial.msgid.clone(),
        ricevuta: partial.receipt_type,
    };
    let mut e = event_for(EventKind::NonAccettazione, s.now_ms, &c);
    e.error = Some(r.reason.clone());
    if !r.notice || !ctx.is_local(&c.mittente) {
        e.detail = Some(format!("refused at SMTP: {}", r.reason_en));
        return Ok(Prepared {
            reply,
            reason: Some(r.reason.clone()),
            log: vec![e],
            jobs: vec![],
            message_row: None,
            timers: vec![],
            quarantine: None,
            recipient_count: 0,
        });
    }
    let emitter = Emitter {
        provider: &p,
        ids: ctx.ids.as_ref(),
        when: s.when,
    };
    let notice = receipt::non_accettazione(&emitter, &c, &r.reason, virus);
    ctx.metrics.receipt(Tipo::NonAccettazione.as_str());
    let notice_id = message_id_of(&notice);
    let signed = ctx.sign(&notice)?;
    let blob = ctx.store.put_blob(&signed).map_err(|e| e.to_string())?;
    e.generated_msgid = notice_id.clone();
    let job = route_job(
        ctx,
        format!("non-accettazione:{}", s.identificativo),
        &s.identificativo,
        &c.mittente,
        &blob,
        serde_json::json!({"tipo": Tipo::NonAccettazione.as_str(), "msgid": notice_id}),
        s.now_ms,
    );
    Ok(Prepared {
        reply,
        reason: Some(r.reason.clone()),
        log: vec![e],
        jobs: vec![job],
        message_row: None,
        timers: vec![],
        quarantine: None,
        recipient_count: 0,
    })
}
