//! Deadlines of the sender's provider (`pec-spec.md` §6) as pure functions.
//!
//! Per (message, certified recipient): a 12 h preavviso if neither presa in
//! carico nor consegna has arrived, and a 24 h final notice if no consegna
//! (or errore-consegna) has arrived. A presa in carico closes only the 12 h
//! timer; a consegna or an errore-consegna closes the recipient. `esterno`
//! recipients have no timers. The scheduler stores the due times as rows and
//! asks [`RecipientTimers::due`] what to emit; nothing here sleeps.

use super::types::RecipientType;

/// Timer durations, seconds.
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

/// What arrived back for a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Ricevuta di presa in carico covering the recipient.
    PresaInCarico,
    /// Ricevuta di avvenuta consegna.
    Consegna,
    /// Avviso di mancata consegna.
    ErroreConsegna,
}

/// A notice that has become due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send the 12 h preavviso.
    Preavviso,
    /// Send the 24 h final notice.
    Expiry,
}

/// Open timers of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientTimers {
    /// The 12 h timer is still running.
    pub preavviso_open: bool,
    /// The 24 h timer is still running.
    pub expiry_open: bool,
}

impl RecipientTimers {
    /// Timers for a freshly sent busta: both for certified recipients, none for esterno.
    pub fn start(tipo: RecipientType) -> RecipientTimers {
        let on = tipo == RecipientType::Certificato;
        RecipientTimers {
            preavviso_open: on,
            expiry_open: on,
        }
    }

    /// Apply an arrival.
    pub fn on(&mut self, a: Arrival) {
        match a {
            Arrival::PresaInCarico => self.preavviso_open = false,
            Arrival::Consegna | Arrival::ErroreConsegna => {
                self.preavviso_open = false;
                self.expiry_open = false;
            }
        }
    }

    /// Whether the recipient is settled (nothing left to wait for).
    pub fn closed(&self) -> bool {
        !self.preavviso_open && !self.expiry_open
    }

    /// Notices due at `now` for a busta sent at `sent`. The caller closes
    /// each one it emits (`preavviso_open`/`expiry_open = false`) so a restart
    /// never sends one twice. When both are overdue (e.g. after downtime) only
    /// the final notice is sent: a warning after the verdict would confuse.
    pub fn due(&self, sent: i64, now: i64, cfg: &TimerConfig) -> Option<Due> {
        if self.expiry_open && now >= expiry_due(sent, cfg) {
            Some(Due::Expiry)
        } else if self.preavviso_open && now >= preavviso_due(sent, cfg) {
            Some(Due::Preavviso)
        } else {
            None
        }
    }
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
    fn what_closes_what() {
        let c = TimerConfig::default();
        let mut t = RecipientTimers::start(RecipientType::Certificato);
        assert_eq!(t.due(0, 43199, &c), None);
        assert_eq!(t.due(0, 43200, &c), Some(Due::Preavviso));
        t.on(Arrival::PresaInCarico);
        assert_eq!(t.due(0, 50000, &c), None);
        assert_eq!(t.due(0, 86400, &c), Some(Due::Expiry));
        t.on(Arrival::Consegna);
        assert!(t.closed());
        assert_eq!(t.due(0, 999_999, &c), None);

        let mut t = RecipientTimers::start(RecipientType::Certificato);
        t.on(Arrival::ErroreConsegna);
        assert!(t.closed());
        assert!(RecipientTimers::start(RecipientType::Esterno).closed());
        // Both overdue: only the final notice.
        let t = RecipientTimers::start(RecipientType::Certificato);
        assert_eq!(t.due(0, 90000, &c), Some(Due::Expiry));
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
