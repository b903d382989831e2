//! The access point (`pec-spec.md` §5.1): authenticated submission, formal
//! checks, busta di trasporto and ricevuta di accettazione.
//!
//! Both messages are built and signed before the reply, and stored together
//! with the queue rows and log events in one group-committed transaction:
//! when the client reads `250` everything the promise needs is on disk.

use std::sync::Arc;

use crate::flow::{self, refusal::Refusal, submit::Screen};
use crate::pec::access::Defect;
use crate::smtp::{Backend, Envelope, Reply, SessionInfo, SmtpConfig};

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
        if flow::submit::valid_address(rcpt) {
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
            Err(r) => reply_for(&r),
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

/// The SMTP reply to a refusal: the one place a [`Refusal`] becomes a code
/// and an enhanced status (the webmail maps it to HTTP once, too).
pub fn reply_for(r: &Refusal) -> Reply {
    let (code, status) = match r {
        Refusal::Formal(d) => match d {
            Defect::TooBig | Defect::TooBigForRecipients => (552, "5.3.4"),
            Defect::NotRfc5322 | Defect::FromNotOneAddress | Defect::NoTo => (550, "5.6.0"),
            Defect::FromNotSender | Defect::Bcc | Defect::RecipientsDiffer => (550, "5.7.1"),
            Defect::BadRecipient(_) => (550, "5.1.3"),
            Defect::TooManyRecipients => (550, "5.5.3"),
            Defect::TooDeep => (554, "5.6.0"),
        },
        Refusal::Virus(_) | Refusal::Blocked { .. } => (550, "5.7.1"),
        Refusal::BustaTooBig { .. } => (552, "5.3.4"),
        Refusal::NotYourAddress => return Reply::sender_not_owned(),
        Refusal::BadEnvelopeRecipient(a) => return Reply::bad_recipient(a),
        Refusal::ScanUnavailable => return Reply::scan_unavailable(),
        Refusal::Local => return Reply::local_error(),
    };
    Reply::pec_refused(code, status, &r.english())
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
    let screen = screen(ctx, &message).await?;
    let c2 = ctx.clone();
    let (mail_from, rcpts, user) = (from.to_string(), recipients.to_vec(), user.to_string());
    let scanned = screen.clone();
    // Parsing and RSA signing are CPU work: keep them off the I/O threads.
    // The bytes are staged in the same trip through the blocking pool.
    let decided = tokio::task::spawn_blocking(move || {
        let mut outcome = decide(&c2, &message, &mail_from, &rcpts, &user, &scanned)?;
        let mut batch = std::mem::take(&mut outcome.batch);
        batch.taker = Some(c2.taker());
        let quarantined = batch.quarantine.is_some();
        Ok::<_, super::SignError>((outcome, quarantined, c2.store.stage(batch)))
    })
    .await;
    let (outcome, quarantined, staged) = match decided {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "submission failed before commit");
            return Err(Refusal::Local);
        }
        Err(e) => {
            tracing::error!(error = %e, "submission task failed");
            return Err(Refusal::Local);
        }
    };
    match async { ctx.store.commit_staged(staged?).await }.await {
        Ok(c) => ctx.hand_over(c.taken),
        Err(e) => {
            tracing::error!(error = %e, "submission commit failed");
            return Err(Refusal::Local);
        }
    }
    ctx.metrics.submission(outcome.result.is_ok());
    match outcome.result {
        Ok(a) => {
            if let Screen::Unscanned(e) = &screen {
                tracing::warn!(identificativo = %a.identificativo, error = %e,
                    "submission accepted without a virus scan (antivirus.on_error = \"accept\")");
            }
            tracing::info!(
                identificativo = %a.identificativo,
                from = %from,
                recipients = a.recipients,
                "submission accepted"
            );
            Ok(Submitted {
                identificativo: a.identificativo,
                msgid: a.msgid,
            })
        }
        Err(r) => {
            if quarantined {
                tracing::warn!(from = %from, refusal = %r, "infected submission refused and quarantined");
            }
            Err(r)
        }
    }
}

/// The access point's decision on the blocking pool: the flow, the busta
/// signed in between, and every message of the outcome signed.
fn decide(
    ctx: &Ctx,
    raw: &[u8],
    mail_from: &str,
    rcpts: &[String],
    user: &str,
    screen: &Screen,
) -> Result<flow::submit::Outcome, super::SignError> {
    let cfg = ctx.cfg();
    let index = ctx.index();
    let scanner = ctx.scanner();
    let blocked: &[String] = match &*scanner {
        Some(s) => &s.blocked_extensions,
        None => &[],
    };
    let facts = flow::submit::Facts {
        us: ctx.us(),
        index: &index,
        limits: crate::pec::access::Limits {
            max_message_size: cfg.max_message_size(),
            max_recipients: cfg.limits.max_recipients,
        },
        timers: ctx.timer_config(),
        blocked_extensions: blocked,
        now: ctx.now(),
    };
    let s = flow::submit::Submission {
        raw,
        mail_from,
        rcpts,
        user,
        screen,
    };
    let mut outcome = match flow::submit::decide(&facts, &s) {
        flow::submit::Decision::Done(o) => *o,
        flow::submit::Decision::Sign(b) => {
            let signed = ctx.sign(b.unsigned())?;
            b.finish(&facts, signed)
        }
    };
    ctx.sign_batch(&mut outcome.batch)?;
    Ok(outcome)
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
                Err(Refusal::ScanUnavailable)
            }
        },
    }
}
