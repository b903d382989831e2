//! The operator's numbers, in the Prometheus exposition format (`GET
//! /metrics` on `[admin] listen`), kept with the official client crate.
//!
//! Counters move where the event happens (one call each, atomics only, so
//! the hot path pays nothing measurable); gauges that the database knows
//! (jobs by state) are read when scraped, never kept in step by hand.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One label, e.g. `result="accepted"`.
type Label = Vec<(&'static str, String)>;

fn label(name: &'static str, value: &str) -> Label {
    vec![(name, value.to_string())]
}

/// Every metric of one provider.
pub struct Metrics {
    registry: Registry,
    submissions: Family<Label, Counter>,
    receipts: Family<Label, Counter>,
    relay_attempts: Family<Label, Counter>,
    queue_jobs: Family<Label, Gauge<i64, AtomicI64>>,
    connections: Family<Label, Gauge<i64, AtomicI64>>,
    login_failures: Family<Label, Counter>,
    totp_lockouts: Counter<u64, AtomicU64>,
    virus_scans: Family<Label, Counter>,
    revocation_checks: Family<Label, Counter>,
    signatures: Counter<u64, AtomicU64>,
    to_consegna: Histogram,
    clock_synchronised: Gauge<i64, AtomicI64>,
    clock_error: Gauge<f64, AtomicU64>,
    log_unsealed_days: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with every pecd metric, all at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            submissions: Family::default(),
            receipts: Family::default(),
            relay_attempts: Family::default(),
            queue_jobs: Family::default(),
            connections: Family::default(),
            login_failures: Family::default(),
            totp_lockouts: Counter::default(),
            virus_scans: Family::default(),
            revocation_checks: Family::default(),
            signatures: Counter::default(),
            // 10 ms to ~3 days: local delivery takes milliseconds, a peer
            // that is down up to the 24 h limit (and a little beyond).
            to_consegna: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.01, 4.0, 13),
            ),
            clock_synchronised: Gauge::default(),
            clock_error: Gauge::default(),
            log_unsealed_days: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "pecd_submissions",
            "Messages submitted at the access point, by result",
            m.submissions.clone(),
        );
        registry.register(
            "pecd_receipts",
            "Receipts and notices signed by this provider, by X-Ricevuta type",
            m.receipts.clone(),
        );
        registry.register(
            "pecd_relay_attempts",
            "Attempts to hand a message to the next hop, by result",
            m.relay_attempts.clone(),
        );
        registry.register(
            "pecd_queue_jobs",
            "Jobs in the queue, by state",
            m.queue_jobs.clone(),
        );
        registry.register(
            "pecd_connections",
            "Open client connections, by listener",
            m.connections.clone(),
        );
        registry.register(
            "pecd_login_failures",
            "Failed logins, by protocol",
            m.login_failures.clone(),
        );
        registry.register(
            "pecd_totp_lockouts",
            "Accounts whose second factor was locked after too many consecutive wrong codes",
            m.totp_lockouts.clone(),
        );
        registry.register(
            "pecd_virus_scans",
            "clamd scans, by point (submission, reception) and result (clean, infected, error)",
            m.virus_scans.clone(),
        );
        registry.register(
            "pecd_revocation_checks",
            "Revocation checks of peers' signer certificates at the reception point, by status (good, revoked, revoked-after-signing, unavailable, not-checked) and source (ocsp, crl, cache, none)",
            m.revocation_checks.clone(),
        );
        registry.register(
            "pecd_signatures",
            "S/MIME signatures made",
            m.signatures.clone(),
        );
        registry.register(
            "pecd_submission_to_consegna_seconds",
            "Time from acceptance to the delivery receipt, per recipient",
            m.to_consegna.clone(),
        );
        registry.register(
            "pecd_log_unsealed_days",
            "Finished days of the PEC log not sealed (signed and, with a TSA, time-stamped) yet",
            m.log_unsealed_days.clone(),
        );
        registry.register(
            "pecd_clock_synchronised",
            "1 when the kernel clock is disciplined by a time daemon (adjtimex)",
            m.clock_synchronised.clone(),
        );
        registry.register(
            "pecd_clock_estimated_error_seconds",
            "The kernel's estimated clock error (adjtimex esterror)",
            m.clock_error.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A submission ended: `accepted` or `refused`.
    pub fn submission(&self, accepted: bool) {
        let r = if accepted { "accepted" } else { "refused" };
        self.submissions.get_or_create(&label("result", r)).inc();
    }

    /// We signed a receipt or notice of this `X-Ricevuta` type.
    pub fn receipt(&self, tipo: &str) {
        self.receipts.get_or_create(&label("tipo", tipo)).inc();
    }

    /// A relay attempt ended: `ok`, `temporary` or `permanent`.
    pub fn relay_attempt(&self, result: &str) {
        self.relay_attempts
            .get_or_create(&label("result", result))
            .inc();
    }

    /// A failed login over `protocol` (`smtp`, `imap`, …).
    pub fn login_failure(&self, protocol: &str) {
        self.login_failures
            .get_or_create(&label("protocol", protocol))
            .inc();
    }

    /// An account's second factor was locked after too many wrong codes.
    pub fn totp_lockout(&self) {
        self.totp_lockouts.inc();
    }

    /// A clamd scan ended at `point` (`submission`, `reception`).
    pub fn virus_scan<E>(&self, point: &str, r: &Result<crate::antivirus::Verdict, E>) {
        let result = match r {
            Ok(crate::antivirus::Verdict::Clean) => "clean",
            Ok(crate::antivirus::Verdict::Infected(_)) => "infected",
            Err(_) => "error",
        };
        self.virus_scans
            .get_or_create(&vec![
                ("point", point.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// One revocation check answered `r` (`source="cache"` when no
    /// responder or distribution point was asked).
    pub fn revocation_check(&self, r: &crate::pec::revocation::Revocation) {
        let source = match &r.source {
            Some(s) if s.cached => "cache",
            Some(s) => s.kind,
            None => "none",
        };
        self.revocation_checks
            .get_or_create(&vec![
                ("status", r.status.as_str().to_string()),
                ("source", source.to_string()),
            ])
            .inc();
    }

    /// One more signature.
    pub fn signature(&self) {
        self.signatures.inc();
    }

    /// A recipient's delivery receipt came `seconds` after acceptance.
    pub fn consegna_after(&self, seconds: f64) {
        self.to_consegna.observe(seconds.max(0.0));
    }

    /// The gauge of open connections on `listener`, for its accept loop.
    pub fn connections(&self, listener: &str) -> ConnectionGauge {
        ConnectionGauge(
            self.connections
                .get_or_create(&label("listener", listener))
                .clone(),
        )
    }

    /// Finished log days still owed a seal or its time stamp.
    pub fn log_unsealed_days(&self, n: i64) {
        self.log_unsealed_days.set(n);
    }

    /// The kernel clock's state, as read when scraped.
    pub fn clock(&self, synchronised: bool, estimated_error_us: i64) {
        self.clock_synchronised.set(i64::from(synchronised));
        self.clock_error.set(estimated_error_us as f64 / 1e6);
    }

    /// The exposition text, with the queue gauges set from `jobs`
    /// (state, count) first.
    pub fn render(&self, jobs: &[(String, i64)]) -> String {
        for (state, n) in jobs {
            self.queue_jobs
                .get_or_create(&label("state", state))
                .set(*n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Counts one listener's open connections; [`ConnectionGauge::open`] per
/// connection, the count drops when the returned guard does.
#[derive(Clone, Debug)]
pub struct ConnectionGauge(Gauge<i64, AtomicI64>);

impl ConnectionGauge {
    /// A gauge no one reads (tests, in-process engines without a provider).
    pub fn detached() -> ConnectionGauge {
        ConnectionGauge(Gauge::default())
    }

    /// One more open connection, until the guard is dropped.
    pub fn open(&self) -> OpenConnection {
        self.0.inc();
        OpenConnection(self.0.clone())
    }
}

/// An open connection, counted in its listener's gauge.
#[derive(Debug)]
pub struct OpenConnection(Gauge<i64, AtomicI64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Shared handle to a provider's metrics.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.submission(true);
        m.submission(false);
        m.receipt("accettazione");
        m.relay_attempt("ok");
        m.login_failure("imap");
        m.signature();
        m.consegna_after(0.2);
        let g = m.connections("imaps");
        let open = g.open();
        let text = m.render(&[("pending".into(), 3)]);
        for line in [
            "pecd_submissions_total{result=\"accepted\"} 1",
            "pecd_submissions_total{result=\"refused\"} 1",
            "pecd_receipts_total{tipo=\"accettazione\"} 1",
            "pecd_relay_attempts_total{result=\"ok\"} 1",
            "pecd_login_failures_total{protocol=\"imap\"} 1",
            "pecd_signatures_total 1",
            "pecd_queue_jobs{state=\"pending\"} 3",
            "pecd_connections{listener=\"imaps\"} 1",
            "pecd_submission_to_consegna_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        drop(open);
        assert!(m
            .render(&[])
            .lines()
            .any(|l| l == "pecd_connections{listener=\"imaps\"} 0"));
    }
}
