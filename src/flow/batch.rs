//! What one step of the provider decided, as data: the vocabulary the PEC
//! flows speak and the store commits. A flow returns these values; it never
//! writes them. Log events are the legal record (`pec-spec.md` §8), jobs the
//! durable work that follows (each with an idempotency key), timers the
//! 12 h / 24 h deadlines.

use serde::Serialize;

use crate::pec::types::{Tipo, Unsigned};

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
    /// The ordinary e-mail telling a box's owner of a new PEC (`flow::notice`).
    Notice,
}

impl JobKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Mailbox => "mailbox",
            JobKind::LocalBusta => "local-busta",
            JobKind::Relay => "relay",
            JobKind::Inbound => "inbound",
            JobKind::Notice => "notice",
        }
    }

    /// Parse a column value.
    pub fn parse(s: &str) -> Option<JobKind> {
        [
            JobKind::Mailbox,
            JobKind::LocalBusta,
            JobKind::Relay,
            JobKind::Inbound,
            JobKind::Notice,
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
    /// The message bytes the job carries.
    pub blob: Option<BlobRef>,
    /// Kind-specific JSON.
    pub data: Option<String>,
    /// When to run.
    pub due_at: i64,
}

/// Message bytes a job or a delivery refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRef {
    /// Already in the spool, by name.
    Spooled(String),
    /// The `i`-th of the batch's new blobs, named when the batch is committed.
    New(usize),
}

impl BlobRef {
    /// The spool name of a blob already stored.
    pub fn spooled(&self) -> Option<&str> {
        match self {
            BlobRef::Spooled(s) => Some(s),
            BlobRef::New(_) => None,
        }
    }
}

/// A message a step produced: signed by the server before the batch is
/// committed (a PEC message), or stored as it is (a plain notice, bytes
/// received).
#[derive(Debug, Clone)]
pub enum NewBlob {
    /// To sign with the provider's key.
    Sign(Unsigned),
    /// Final bytes.
    Bytes(Vec<u8>),
}

/// A log event, written unless the job it announces was already queued (the
/// same busta or receipt received twice gets one notice, not two).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The row.
    pub event: Event,
    /// Index into the batch's jobs: skip this row if that job already existed.
    pub unless_repeat_of: Option<usize>,
}

impl From<Event> for LogEntry {
    fn from(event: Event) -> LogEntry {
        LogEntry {
            event,
            unless_repeat_of: None,
        }
    }
}

/// Which deadline of a certified recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The 12 h warning.
    Preavviso,
    /// The 24 h final notice.
    Expire,
}

/// A deadline that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTimer {
    /// PEC message.
    pub identificativo: String,
    /// Certified recipient.
    pub recipient: String,
    /// Which deadline.
    pub deadline: Deadline,
}

/// A change to the 12 h / 24 h deadlines of one certified recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerOp {
    /// Arm both deadlines (a no-op if armed already).
    Start {
        /// PEC message.
        identificativo: String,
        /// Certified recipient.
        recipient: String,
        /// When it was accepted (Unix ms).
        sent_at: i64,
        /// The 12 h warning's due time.
        preavviso_due: i64,
        /// The 24 h notice's due time.
        expire_due: i64,
    },
    /// A presa in carico: only the 12 h warning stops.
    Presa {
        /// PEC message.
        identificativo: String,
        /// Recipient taken in charge.
        recipient: String,
    },
    /// The recipient is settled (an errore-consegna, a final notice …).
    Close {
        /// PEC message.
        identificativo: String,
        /// Recipient.
        recipient: String,
        /// What closed it (`closed_by`).
        by: &'static str,
    },
    /// An avvenuta consegna closed it: its latency is measured.
    Delivered {
        /// PEC message.
        identificativo: String,
        /// Recipient.
        recipient: String,
    },
    /// Relays of the message to recipients whose timers are all closed stop.
    StopRelays {
        /// PEC message.
        identificativo: String,
    },
}

/// The row of a message accepted at the access point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Its identificativo.
    pub identificativo: String,
    /// The Message-ID of the user's original message.
    pub msgid: Option<String>,
    /// The certified sender.
    pub sender: String,
    /// The original subject.
    pub subject: String,
    /// Recipients with their type, as the log writes them.
    pub recipients: String,
    /// completa / breve / sintetica.
    pub receipt_type: String,
    /// The busta's daticert.xml.
    pub daticert: String,
    /// When it was accepted (unix ms).
    pub accepted_at: i64,
}

/// An infected message to keep for 30 months.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// The identificativo of the message, when it had one.
    pub identificativo: Option<String>,
    /// The virus clamd named.
    pub virus: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients, comma separated.
    pub recipients: String,
    /// Where it was caught: `submission` or `reception`.
    pub point: &'static str,
    /// Its bytes.
    pub bytes: BlobRef,
    /// Index into the batch's jobs: keep nothing if that job already
    /// existed (a busta received again is quarantined once).
    pub unless_repeat_of: Option<usize>,
}

/// A message to store in a user's mailbox (its INBOX), by a name derived
/// from the work it comes from so a retry finds the copy already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The mailbox.
    pub address: String,
    /// The file name (`maildir::file_name_for`).
    pub name: String,
    /// The bytes.
    pub bytes: BlobRef,
    /// When the work was created (Unix ms): a copy from an earlier process
    /// may have been read and flagged since, and is looked for everywhere.
    pub created_at: i64,
    /// How often the work was tried before.
    pub attempts: i64,
}

/// How the job a step ran ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// Finished.
    Done,
    /// Given up, with the reason.
    Failed(String),
    /// Tried again at `due_at` (Unix ms).
    Retry {
        /// Why this attempt failed.
        error: String,
        /// When to try again.
        due_at: i64,
    },
}

/// The new-PEC notices of one box, as stored (see `flow::notice`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeState {
    /// No notice before this (unix ms).
    pub next_at: i64,
    /// PEC arrived since the last notice and not told yet.
    pub held: i64,
    /// The notice job waiting for `next_at` to tell the held ones.
    pub summary_job: Option<JobId>,
}

/// A condition the whole batch depends on: when it no longer holds at
/// commit time, nothing of the batch is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The deadline is still armed (another run has not fired it).
    TimerArmed(DueTimer),
    /// The new-PEC notices of `address` are still as `seen` (no other
    /// notice job moved them meanwhile): they become `then`. Otherwise the
    /// whole batch is refused and the job runs again.
    Notice {
        /// The box.
        address: String,
        /// The state the decision was made on.
        seen: NoticeState,
        /// The state after it.
        then: NoticeState,
    },
}

/// What a node claims: a pending job, or the armed deadlines of one
/// certified recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Claimed {
    /// A queued job.
    Job(JobId),
    /// The 12 h / 24 h timer row of one recipient of a message.
    Timer {
        /// PEC message.
        identificativo: String,
        /// Certified recipient.
        recipient: String,
    },
}

/// The fencing token of a claim: a batch carrying it is written only while
/// `node` still holds `what` under this `token` (no other claim was made
/// since). Committing such a batch ends the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The work claimed.
    pub what: Claimed,
    /// The node holding it.
    pub node: String,
    /// The claim's number: every claim of the same work gets a larger one.
    pub token: i64,
}

/// Everything one step decided, committed by the store in one transaction:
/// its new blobs first (written and synced), then every row.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// When (Unix ms): the time of every row the batch writes.
    pub now: i64,
    /// Messages to store; [`BlobRef::New`] indexes this.
    pub blobs: Vec<NewBlob>,
    /// The accepted message's row.
    pub message: Option<MessageRow>,
    /// Log events.
    pub log: Vec<LogEntry>,
    /// Follow-up work.
    pub jobs: Vec<NewJob>,
    /// Deadline changes.
    pub timers: Vec<TimerOp>,
    /// Mailbox deliveries.
    pub deliveries: Vec<Delivery>,
    /// An infected message to keep.
    pub quarantine: Option<Quarantine>,
    /// The job this step ran, and how it ends.
    pub end: Option<(JobId, JobEnd)>,
    /// What must still hold.
    pub guard: Option<Guard>,
    /// The claim the step ran under (set by the executor, not the flow):
    /// lost, and nothing of the batch is written.
    pub fence: Option<Fence>,
    /// The node that runs the batch's new jobs due at once itself (set by
    /// the caller, not the flow): they are written already claimed by it,
    /// so the next hop of a message costs no claim of its own.
    pub taker: Option<Taker>,
}

/// A node taking the new due work of a batch: its name and its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taker {
    /// `[cluster] node`.
    pub node: String,
    /// `[cluster] lease`, in ms.
    pub lease_ms: i64,
}

impl Batch {
    /// An empty batch at `now`.
    pub fn at(now: i64) -> Batch {
        Batch {
            now,
            ..Batch::default()
        }
    }

    /// Add a blob; gives the reference to it.
    pub fn blob(&mut self, b: NewBlob) -> BlobRef {
        self.blobs.push(b);
        BlobRef::New(self.blobs.len() - 1)
    }

    /// Add a log event.
    pub fn log(&mut self, e: Event) {
        self.log.push(e.into());
    }

    /// Add a job; gives its index.
    pub fn job(&mut self, j: NewJob) -> usize {
        self.jobs.push(j);
        self.jobs.len() - 1
    }
}
