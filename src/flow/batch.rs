//! What one step of the provider decided, as data: the vocabulary the PEC
//! flows speak and the store commits. A flow returns these values; it never
//! writes them. Log events are the legal record (`pec-spec.md` §8), jobs the
//! durable work that follows (each with an idempotency key), timers the
//! 12 h / 24 h deadlines.

use serde::Serialize;

use crate::pec::types::Tipo;

/// What a log row records. The names are the `event` column and what
/// `pecd log` prints: operators' scripts rely on them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventKind {
    /// A message stored in a local mailbox.
    #[default]
    Deposito,
    /// A submission accepted (ricevuta di accettazione emitted).
    Accettazione,
    /// A submission refused (avviso di non accettazione).
    NonAccettazione,
    /// The busta di trasporto of an accepted submission.
    BustaTrasporto,
    /// A busta stored for its recipient (avvenuta consegna emitted).
    AvvenutaConsegna,
    /// An avviso di mancata consegna emitted.
    ErroreConsegna,
    /// A busta relayed to the recipient's provider.
    InoltroBusta,
    /// Another message relayed.
    Inoltro,
    /// A relay given up.
    InoltroFallito,
    /// A message received over SMTP, before it is judged.
    Ricezione,
    /// A busta received from a peer.
    BustaRicevuta,
    /// A presa in carico emitted.
    PresaInCarico,
    /// A receipt received from a peer (`ricevuta-<tipo>`).
    Ricevuta(Tipo),
    /// A peer's final non-delivery for the 24-hour limit.
    MancataConsegna24h,
    /// A 12 h / 24 h notice emitted.
    PreavvisoErroreConsegna,
    /// A busta di anomalia made.
    Anomalia,
    /// An avviso di rilevazione virus emitted (one row per recipient).
    RilevazioneVirus,
    /// An infected message stopped at the reception point: not delivered,
    /// quarantined.
    Virus,
    /// A job cancelled by the operator.
    Annullamento,
    /// A job given up.
    LavoroFallito,
    /// A job held after the process died running it.
    LavoroSospeso,
    /// A busta not delivered to an ordinary (`esterno`) recipient for good:
    /// the sender got the non-certified delivery-failure notice.
    MancataConsegnaEsterno,
    /// A kind this binary does not know (a row written by a newer pecd).
    Other(String),
}

impl EventKind {
    pub(crate) const FIXED: [EventKind; 21] = [
        EventKind::Deposito,
        EventKind::Accettazione,
        EventKind::NonAccettazione,
        EventKind::BustaTrasporto,
        EventKind::AvvenutaConsegna,
        EventKind::ErroreConsegna,
        EventKind::InoltroBusta,
        EventKind::Inoltro,
        EventKind::InoltroFallito,
        EventKind::Ricezione,
        EventKind::BustaRicevuta,
        EventKind::PresaInCarico,
        EventKind::MancataConsegna24h,
        EventKind::PreavvisoErroreConsegna,
        EventKind::Anomalia,
        EventKind::RilevazioneVirus,
        EventKind::Virus,
        EventKind::Annullamento,
        EventKind::LavoroFallito,
        EventKind::LavoroSospeso,
        EventKind::MancataConsegnaEsterno,
    ];

    /// The column value.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        match self {
            EventKind::Deposito => Borrowed("deposito"),
            EventKind::Accettazione => Borrowed("accettazione"),
            EventKind::NonAccettazione => Borrowed("non-accettazione"),
            EventKind::BustaTrasporto => Borrowed("busta-trasporto"),
            EventKind::AvvenutaConsegna => Borrowed("avvenuta-consegna"),
            EventKind::ErroreConsegna => Borrowed("errore-consegna"),
            EventKind::InoltroBusta => Borrowed("inoltro-busta"),
            EventKind::Inoltro => Borrowed("inoltro"),
            EventKind::InoltroFallito => Borrowed("inoltro-fallito"),
            EventKind::Ricezione => Borrowed("ricezione"),
            EventKind::BustaRicevuta => Borrowed("busta-ricevuta"),
            EventKind::PresaInCarico => Borrowed("presa-in-carico"),
            EventKind::Ricevuta(t) => Owned(format!("ricevuta-{}", t.as_str())),
            EventKind::MancataConsegna24h => Borrowed("mancata-consegna-24h"),
            EventKind::PreavvisoErroreConsegna => Borrowed("preavviso-errore-consegna"),
            EventKind::Anomalia => Borrowed("anomalia"),
            EventKind::RilevazioneVirus => Borrowed("rilevazione-virus"),
            EventKind::Virus => Borrowed("virus"),
            EventKind::Annullamento => Borrowed("annullamento"),
            EventKind::LavoroFallito => Borrowed("lavoro-fallito"),
            EventKind::LavoroSospeso => Borrowed("lavoro-sospeso"),
            EventKind::MancataConsegnaEsterno => Borrowed("mancata-consegna-esterno"),
            EventKind::Other(s) => Owned(s.clone()),
        }
    }

    /// Every name this binary writes, for a message about a name it does not.
    pub fn known_names() -> Vec<String> {
        EventKind::FIXED
            .iter()
            .map(|k| k.name().into_owned())
            .chain(
                Tipo::ALL
                    .into_iter()
                    .map(|t| EventKind::Ricevuta(t).name().into_owned()),
            )
            .collect()
    }

    /// The kind a column value names (`Other` for one this binary does not know).
    pub fn parse(s: &str) -> EventKind {
        if let Some(k) = EventKind::FIXED.iter().find(|k| k.name() == s) {
            return k.clone();
        }
        s.strip_prefix("ricevuta-")
            .and_then(|t| Tipo::ALL.into_iter().find(|x| x.as_str() == t))
            .map(EventKind::Ricevuta)
            .unwrap_or_else(|| EventKind::Other(s.to_string()))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// One log event.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Row id (assigned on insert).
    pub id: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// What happened.
    pub event: EventKind,
    /// Identificativo of the PEC message.
    pub identificativo: Option<String>,
    /// Message-ID of the user's original message.
    pub msgid: Option<String>,
    /// Original sender.
    pub sender: Option<String>,
    /// Recipients with type, e.g. `a@x (certificato), b@y (esterno)`.
    pub recipients: Option<String>,
    /// Original subject.
    pub subject: Option<String>,
    /// Receipt type (completa / breve / sintetica) where relevant.
    pub receipt_type: Option<String>,
    /// Message-ID of the message this event generated.
    pub generated_msgid: Option<String>,
    /// Error or reason.
    pub error: Option<String>,
    /// Free text (next hop, mailbox, ...).
    pub detail: Option<String>,
}

impl Event {
    /// A new event of `kind` at `ts`.
    pub fn new(kind: EventKind, ts: i64) -> Event {
        Event {
            event: kind,
            ts,
            ..Event::default()
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Store a finished message (receipt, notice, anomaly) in a local mailbox.
    Mailbox,
    /// Delivery point: store a busta for one local recipient and emit its receipt.
    LocalBusta,
    /// Send a message to another provider or an ordinary MX.
    Relay,
    /// Reception point: verify and dispatch a message received from outside.
    Inbound,
}

impl JobKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Mailbox => "mailbox",
            JobKind::LocalBusta => "local-busta",
            JobKind::Relay => "relay",
            JobKind::Inbound => "inbound",
        }
    }

    /// Parse a column value.
    pub fn parse(s: &str) -> Option<JobKind> {
        [
            JobKind::Mailbox,
            JobKind::LocalBusta,
            JobKind::Relay,
            JobKind::Inbound,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A job's id: the `ID` of `pecd queue show|retry|cancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> std::result::Result<JobId, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Work to add.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Idempotency key.
    pub key: String,
    /// What to do.
    pub kind: JobKind,
    /// PEC message concerned.
    pub identificativo: Option<String>,
    /// Envelope sender for relays.
    pub mail_from: String,
    /// Recipients this job serves.
    pub recipients: Vec<String>,
    /// Destination domain or host for relays.
    pub next_hop: Option<String>,
    /// Spool file with the bytes.
    pub blob: Option<String>,
    /// Kind-specific JSON.
    pub data: Option<String>,
    /// When to run.
    pub due_at: i64,
}
