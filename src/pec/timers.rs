//! Deadlines of the sender's provider (`pec-spec.md` §6) as pure functions.
//!
//! Per (message, certified recipient): a 12 h preavviso if neither presa in
//! carico nor consegna has arrived, and a 24 h final notice if no consegna
//! (or errore-consegna) has arrived. A presa in carico closes only the 12 h
//! timer; a consegna or an errore-consegna closes the recipient. `esterno`
//! recipients have no timers. The due times computed here are stored as rows
//! (`store::queue::timer_*` carries the transitions above); nothing sleeps.

/// Timer durations (in the unit of the times they are added to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Delay of the preavviso (12 h).
    pub preavviso_after: i64,
    /// Delay of the final notice (24 h).
    pub expiry_after: i64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            preavviso_after: 12 * 3600,
            expiry_after: 24 * 3600,
        }
    }
}

/// Unix time the 12 h preavviso is due for a busta sent at `sent`.
pub fn preavviso_due(sent: i64, cfg: &TimerConfig) -> i64 {
    sent + cfg.preavviso_after
}

/// Unix time the 24 h final notice is due.
pub fn expiry_due(sent: i64, cfg: &TimerConfig) -> i64 {
    sent + cfg.expiry_after
}

/// Relay retry delay in seconds for the `attempt`-th retry (0-based):
/// `min(initial * 2^attempt, max)`, reduced by up to `jitter_fraction` of
/// itself using `unit` (a random sample in `[0, 1)` supplied by the caller, so
/// this stays pure). Never below 1 s.
pub fn retry_delay(attempt: u32, initial: u64, max: u64, jitter_fraction: f64, unit: f64) -> u64 {
    let base = initial
        .checked_shl(attempt.min(63))
        .filter(|&v| v >> attempt.min(63) == initial)
        .unwrap_or(u64::MAX)
        .min(max);
    let j = jitter_fraction.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
    let d = (base as f64 * (1.0 - j)).round() as u64;
    d.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        let c = TimerConfig::default();
        assert_eq!(preavviso_due(1000, &c), 1000 + 43200);
        assert_eq!(expiry_due(1000, &c), 1000 + 86400);
    }

    #[test]
    fn backoff() {
        assert_eq!(retry_delay(0, 60, 3600, 0.0, 0.5), 60);
        assert_eq!(retry_delay(3, 60, 3600, 0.0, 0.5), 480);
        assert_eq!(retry_delay(10, 60, 3600, 0.0, 0.5), 3600);
        assert_eq!(retry_delay(200, 60, 3600, 0.0, 0.5), 3600);
        assert_eq!(retry_delay(1, 60, 3600, 0.5, 1.0), 60);
        assert_eq!(retry_delay(1, 60, 3600, 0.25, 0.5), 105);
        assert_eq!(retry_delay(0, 0, 10, 0.0, 0.0), 1);
    }
}
