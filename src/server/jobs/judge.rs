//! The reception point's job: scan the received message, run the checks of
//! `pec::reception` with the live index, trust roots and revocation checker,
//! then `flow::receive::judge`.

use std::sync::Arc;

use crate::flow::receive::{Facts, Outcome, Received};
use crate::pec::daticert::Daticert;
use crate::pec::reception::{self, ReceptionInput, Verdict};
use crate::store::queue::Job;

use super::{blob_of, commit, Ctx, Fail};

/// Judge the job's message and dispatch it.
pub(super) async fn run(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let bytes = blob_of(ctx, job)?;
    let virus = scan(ctx, job, &bytes).await?;
    let ctx2 = ctx.clone();
    let job2 = job.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<Outcome, Fail> {
        let verdict = verdict(&ctx2, &bytes);
        let ours = match crate::flow::receive::our_message(&verdict) {
            Some(id) => ctx2
                .store
                .accepted_blocking(id)?
                .and_then(|m| Daticert::parse(m.daticert.as_bytes()).ok()),
            None => None,
        };
        let index = ctx2.index();
        let facts = Facts {
            us: ctx2.us(),
            verdict,
            virus,
            index: &index,
            ours,
            now: ctx2.now(),
        };
        Ok(crate::flow::receive::judge(
            &facts,
            &Received {
                raw: &bytes,
                blob: job2.blob.as_deref().unwrap_or_default(),
                mail_from: &job2.mail_from,
                recipients: &job2.recipients,
                job: job2.id,
            },
        ))
    })
    .await??;
    let batch = match outcome {
        Outcome::Judged(b) => *b,
        // Like a scanner that cannot answer: the job waits and is judged again.
        Outcome::Postpone(reason) => return Err(Fail::Temporary(reason)),
    };
    let done = commit(ctx, job.claim(), batch).await?;
    let now = ctx.unix_ms();
    for sent in done.delivered_sent_at {
        ctx.metrics.consegna_after((now - sent) as f64 / 1000.0);
    }
    Ok(())
}

/// The reception point's verdict on `bytes` now, with the live index,
/// trust roots and revocation checker (its answers counted in the metrics).
fn verdict(ctx: &Ctx, bytes: &[u8]) -> Verdict {
    let checker = ctx.revocation.get();
    let revocation = Counted {
        inner: &*checker,
        metrics: &ctx.metrics,
    };
    let v = reception::receive(&ReceptionInput {
        raw: bytes,
        index: &ctx.index(),
        trust: Some(&ctx.trust.get()),
        revocation: Some(&revocation),
        our_domains: &ctx.provider().domains,
        now: ctx.unix_ms().div_euclid(1000),
    });
    if let Verdict::Busta { verified, .. } | Verdict::Receipt { verified, .. } = &v {
        if let Some(r) = &verified.revocation {
            if r.status == crate::pec::revocation::Status::Unavailable {
                tracing::warn!(signer = %verified.sha1_fingerprint, "accepted under soft_fail: revocation {r}");
            }
        }
    }
    v
}

/// The revocation checker with each answer counted in the metrics.
struct Counted<'a> {
    inner: &'a dyn crate::pec::revocation::RevocationCheck,
    metrics: &'a crate::metrics::Metrics,
}

impl crate::pec::revocation::RevocationCheck for Counted<'_> {
    fn policy(&self) -> crate::pec::revocation::Policy {
        self.inner.policy()
    }

    fn check(
        &self,
        req: &crate::pec::revocation::StatusRequest<'_>,
    ) -> crate::pec::revocation::Revocation {
        let r = self.inner.check(req);
        self.metrics.revocation_check(&r);
        r
    }
}

/// Step 1 of the reception point (`pec-spec.md` §5.2): scan the message as
/// received. clamd decodes the MIME parts itself, so this covers what a user
/// would open: `postacert.eml` and its attachments in a busta, or the parts
/// of ordinary mail before it is wrapped in a busta di anomalia.
/// `Some(virus)` when infected. A failed scan under `on_error = "tempfail"`
/// fails the job for now: it is retried later, and nothing unscanned is
/// delivered.
async fn scan(ctx: &Ctx, job: &Job, bytes: &[u8]) -> Result<Option<String>, Fail> {
    let scanner = ctx.scanner();
    let Some(s) = &*scanner else {
        return Ok(None);
    };
    let r = s.scan(bytes).await;
    ctx.metrics.virus_scan("reception", &r);
    match r {
        Ok(crate::antivirus::Verdict::Clean) => Ok(None),
        Ok(crate::antivirus::Verdict::Infected(v)) => Ok(Some(v)),
        Err(e) => match s.on_error {
            crate::config::OnError::Tempfail => Err(Fail::Temporary(format!(
                "virus scan failed, the message waits for clamd: {e}"
            ))),
            crate::config::OnError::Accept => {
                let identificativo = crate::pec::classify::classify(bytes)
                    .daticert
                    .map(|d| d.identificativo);
                tracing::warn!(job = %job.id, identificativo = ?identificativo, error = %e,
                    "received message judged without a virus scan (antivirus.on_error = \"accept\")");
                Ok(None)
            }
        },
    }
}
