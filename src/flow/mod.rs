//! The PEC decisions as pure functions: facts in (the message, the lookups
//! it needs, `now`), an outcome out — the messages to sign and a typed
//! [`batch::Batch`] of what to record. Nothing here does I/O: no store, no
//! sockets, no files, no tokio, no system clock (`tests/architecture.rs`
//! keeps it so). The server loads the facts, calls a flow, signs what the
//! batch holds to sign, and hands the batch to `Store::commit`.
//!
//! One module per PEC point: [`submit`] (the access point), [`receive`]
//! (the reception point's verdicts), [`deliver`] (the delivery point and
//! mailbox deposits), [`relay`] (what a relay attempt's outcome means) and
//! [`timers`] (the 12 h / 24 h notices).

pub mod batch;
pub mod deliver;
pub mod notice;
pub mod receive;
pub mod refusal;
pub mod relay;
pub mod submit;
pub mod timers;

use crate::pec::clock::ItalianTime;
use crate::pec::daticert::{Certified, Destinatario};
use crate::pec::envelope::Provider;
use crate::pec::ids::IdSource;
use crate::pec::index::ProviderIndex;
use crate::pec::receipt::Emitter;
use crate::pec::types::{RecipientType, Tipo, Unsigned};

use batch::{BlobRef, Event, EventKind, JobKind, NewJob};

/// Who we are, as every flow needs it.
#[derive(Clone, Copy)]
pub struct Us<'a> {
    /// Name and PEC domain (the first of `domains`).
    pub provider: &'a Provider,
    /// Every domain we serve.
    pub domains: &'a [String],
    /// Our SMTP host name.
    pub hostname: &'a str,
}

impl Us<'_> {
    /// Whether `address` is in one of our domains (case-insensitive).
    pub fn is_local(&self, address: &str) -> bool {
        address
            .rsplit_once('@')
            .is_some_and(|(_, d)| self.domains.iter().any(|o| o.eq_ignore_ascii_case(d)))
    }

    /// Our receipt address, `posta-certificata@<provider domain>`.
    pub fn receipt_address(&self) -> String {
        self.provider.mailbox()
    }

    /// `certificato` for our domains and the index's, `esterno` otherwise.
    pub fn recipient_type(&self, index: &ProviderIndex, address: &str) -> RecipientType {
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if self.is_local(address) || index.is_certified(domain) {
            RecipientType::Certificato
        } else {
            RecipientType::Esterno
        }
    }
}

/// The time and the ids of one step.
#[derive(Clone, Copy)]
pub struct Now<'a> {
    /// Unix milliseconds.
    pub ms: i64,
    /// Fresh tokens for identificativi, Message-IDs and boundaries.
    pub ids: &'a dyn IdSource,
}

impl Now<'_> {
    /// Italian civil time of this instant.
    pub fn italian(&self) -> ItalianTime {
        ItalianTime::from_unix(self.ms.div_euclid(1000))
    }

    /// Who emits receipts now.
    pub fn emitter<'a>(&'a self, us: &Us<'a>) -> Emitter<'a> {
        Emitter {
            provider: us.provider,
            ids: self.ids,
            when: self.italian(),
        }
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
pub fn message_id_of(msg: &Unsigned) -> Option<String> {
    msg.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Message-ID"))
        .map(|(_, v)| v.clone())
}

/// The job data every notice job carries: its type and Message-ID.
pub fn notice_data(tipo: &str, msgid: &Option<String>) -> Option<String> {
    Some(serde_json::json!({"tipo": tipo, "msgid": msgid}).to_string())
}

/// The job that brings a finished message to `to`: a deposit in a local
/// mailbox, or a relay to the recipient's provider.
pub fn route(
    us: &Us<'_>,
    key: String,
    identificativo: &str,
    to: &str,
    blob: BlobRef,
    data: Option<String>,
    due: i64,
) -> NewJob {
    let local = us.is_local(to);
    NewJob {
        key,
        kind: if local {
            JobKind::Mailbox
        } else {
            JobKind::Relay
        },
        identificativo: Some(identificativo.to_string()),
        mail_from: us.receipt_address(),
        recipients: vec![to.to_ascii_lowercase()],
        next_hop: if local {
            None
        } else {
            to.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
        },
        blob: Some(blob),
        data,
        due_at: due,
    }
}

/// What emitting one receipt or notice records: the message to sign, its
/// log event and the job that carries it to its addressee.
pub struct Emitted {
    /// The event (its `generated_msgid` set).
    pub event: Event,
    /// The job.
    pub job: NewJob,
}

/// Put `msg` (about message `c`) in the batch to be signed, with its log
/// `event` and the job (idempotency `key`) that brings it to `to`.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    us: &Us<'_>,
    batch: &mut batch::Batch,
    msg: Unsigned,
    tipo: Tipo,
    event: EventKind,
    c: &Certified,
    key: String,
    to: &str,
) -> Emitted {
    let msgid = message_id_of(&msg);
    let blob = batch.blob(batch::NewBlob::Sign(msg));
    let mut ev = event_for(event, batch.now, c);
    ev.generated_msgid = msgid.clone();
    let job = route(
        us,
        key,
        &c.identificativo,
        to,
        blob,
        notice_data(tipo.as_str(), &msgid),
        batch.now,
    );
    Emitted { event: ev, job }
}
