//! The relay: where a domain's mail goes, one attempt per next hop, and
//! `flow::relay::outcome` on how it ended.

use std::sync::Arc;

use crate::flow::relay::{Accepted, Attempt, Facts, Outcome, Relay};
use crate::pec::daticert::{Certified, Daticert};
use crate::relay::{NextHop, TlsPolicy};
use crate::store::queue::Job;

use super::{blob_of, commit, job_data, Ctx, Fail};

/// Send the job's message to its domain.
pub(super) async fn run(ctx: &Arc<Ctx>, job: &Job) -> Result<(), Fail> {
    let domain = job
        .next_hop
        .clone()
        .ok_or_else(|| Fail::Permanent("relay job without destination".into()))?;
    let bytes = blob_of(ctx, job)?;
    let attempt = attempt(ctx, job, &domain, &bytes).await?;
    let data = job_data(job);
    let batch = decide(ctx, job, &relay_of(job, &data), &bytes, Some(attempt)).await?;
    commit(ctx, job.claim(), batch).await?;
    Ok(())
}

/// A job held after it crashed the process again and again: its sender is
/// told as for a refusal, when it carries a busta of ours.
pub async fn held(ctx: &Arc<Ctx>, job: &Job) {
    let bytes = super::blob_of(ctx, job).unwrap_or_default();
    let data = job_data(job);
    let told = match decide(ctx, job, &relay_of(job, &data), &bytes, None).await {
        Ok(b) => commit(ctx, None, b).await.map(|_| ()),
        Err(e) => Err(e),
    };
    // A message we do not know (a peer's, delivered here) has no sender of
    // ours to tell.
    if let Err(Fail::Temporary(e)) = told {
        tracing::error!(job = %job.id, error = %e, "could not tell the sender of a held job");
    }
}

/// The job as the relay flow sees it (`data`: its `tipo` and Message-ID).
fn relay_of<'a>(job: &'a Job, data: &'a (Option<String>, Option<String>)) -> Relay<'a> {
    Relay {
        id: job.id,
        identificativo: job.identificativo.as_deref(),
        mail_from: &job.mail_from,
        recipients: &job.recipients,
        domain: job.next_hop.as_deref().unwrap_or_default(),
        tipo: data.0.as_deref(),
        msgid: data.1.as_deref(),
        created_at: job.created_at,
    }
}

/// The flow's decision for `attempt` (`None`: the job was held).
async fn decide(
    ctx: &Arc<Ctx>,
    job: &Job,
    r: &Relay<'_>,
    bytes: &[u8],
    attempt: Option<Attempt>,
) -> Result<crate::flow::batch::Batch, Fail> {
    // Only a failed busta needs its message's facts.
    let failing = match &attempt {
        Some(Attempt::Sent(_)) => false,
        Some(Attempt::Temporary(_)) => {
            r.is_busta() && ctx.unix_ms() > job.created_at + ctx.timer_config().expiry_after
        }
        Some(Attempt::Permanent(_)) => r.is_busta(),
        None => true,
    };
    let accepted = match (failing, job.identificativo.as_deref()) {
        (true, Some(id)) if !id.is_empty() => ctx.store.accepted(id).await?.and_then(|m| {
            Daticert::parse(m.daticert.as_bytes())
                .ok()
                .map(|d| (Certified::from(&d), m.accepted_at))
        }),
        _ => None,
    };
    let headers = &bytes[..crate::pec::headers::raw_fields(bytes).1];
    let facts = Facts {
        us: ctx.us(),
        now: ctx.now(),
        expire_after: ctx.timer_config().expiry_after,
        retry_at: ctx.unix_ms() + super::backoff(ctx, job.attempts).as_millis() as i64,
        accepted: accepted.as_ref().map(|(c, at)| Accepted {
            certified: c,
            at: *at,
            headers: (!headers.is_empty()).then_some(headers),
        }),
    };
    let out = match attempt {
        Some(a) => crate::flow::relay::outcome(&facts, r, a),
        None => crate::flow::relay::held(&facts, r),
    };
    match out {
        Outcome::Batch(b) => Ok(*b),
        Outcome::Unknown(e) => Err(Fail::Permanent(e)),
    }
}

/// One attempt at every next hop in turn until one answers for good.
async fn attempt(ctx: &Arc<Ctx>, job: &Job, domain: &str, bytes: &[u8]) -> Result<Attempt, Fail> {
    let cfg = ctx.cfg();
    if cfg.route_for(domain).is_none() && !cfg.dns.mx_lookups {
        // A refusal, not a retry: no later attempt could find a next hop,
        // and the sender is told now rather than after the 24 h deadline.
        return Ok(Attempt::Permanent(format!(
            "5.4.4 no route to {domain}: no [[route]] names it and [dns] mx_lookups = false \
             (this provider relays only along its configured routes)"
        )));
    }
    let hops = next_hops(ctx, domain).await?;
    let mut outcome = Attempt::Temporary(format!("{domain}: no next hop"));
    // One relay for the whole job, even if a reload replaces it meanwhile.
    let client = ctx.relay.get();
    for hop in &hops {
        let sent = client
            .send(hop, &job.mail_from, &job.recipients, bytes)
            .await;
        ctx.metrics.relay_attempt(match sent {
            crate::relay::Outcome::Sent => "ok",
            crate::relay::Outcome::Temporary(_) => "temporary",
            crate::relay::Outcome::Permanent(_) => "permanent",
        });
        outcome = match sent {
            crate::relay::Outcome::Sent => Attempt::Sent(format!("{}:{}", hop.host, hop.port)),
            crate::relay::Outcome::Temporary(e) => Attempt::Temporary(e),
            crate::relay::Outcome::Permanent(e) => Attempt::Permanent(e),
        };
        if !matches!(outcome, Attempt::Temporary(_)) {
            break;
        }
    }
    Ok(outcome)
}

/// Where mail for `domain` goes: a static route, else its MX hosts.
async fn next_hops(ctx: &Ctx, domain: &str) -> Result<Vec<NextHop>, Fail> {
    let tls = if ctx.index().is_certified(domain) {
        TlsPolicy::Required
    } else {
        TlsPolicy::Opportunistic
    };
    let cfg = ctx.cfg();
    if let Some(hop) = cfg.route_for(domain) {
        let (host, port) = hop
            .rsplit_once(':')
            .ok_or_else(|| Fail::Permanent(format!("route {hop}: no port")))?;
        let port = port
            .parse()
            .map_err(|_| Fail::Permanent(format!("route {hop}: bad port")))?;
        let host = host.trim_matches(['[', ']']).to_string();
        return Ok(vec![NextHop {
            tls_name: host.clone(),
            host,
            port,
            tls,
        }]);
    }
    let servers: Vec<std::net::SocketAddr> = if cfg.dns.nameservers.is_empty() {
        crate::relay::dns::system_nameservers()
    } else {
        cfg.dns
            .nameservers
            .iter()
            .filter_map(|s| {
                s.parse()
                    .ok()
                    .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
            })
            .collect()
    };
    let ips = crate::relay::dns::resolve_mx(&servers, domain)
        .await
        .map_err(|e| Fail::Temporary(e.to_string()))?;
    Ok(ips
        .into_iter()
        // Dial the address our resolver found, but check the certificate
        // against the exchanger's name: that is what a peer's certificate names.
        .map(|(name, ip)| NextHop {
            host: ip.to_string(),
            tls_name: name,
            port: cfg.dns.smtp_port,
            tls,
        })
        .collect())
}
