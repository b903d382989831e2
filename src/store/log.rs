//! The PEC message log (DPR 68/2005 art. 11): the legal record of every event.
//!
//! Rows are written explicitly, in the same transaction as the state change
//! they record, and never changed: the only statement this module runs on the
//! table is `INSERT` (triggers in the schema refuse `UPDATE` and any `DELETE`
//! younger than 30 months).

use super::{Db, Result};
use rusqlite::params;
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
    /// A job cancelled by the operator.
    Annullamento,
    /// A job given up.
    LavoroFallito,
    /// A job held after the process died running it.
    LavoroSospeso,
    /// A kind this binary does not know (a row written by a newer pecd).
    Other(String),
}

impl EventKind {
    const FIXED: [EventKind; 18] = [
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
        EventKind::Annullamento,
        EventKind::LavoroFallito,
        EventKind::LavoroSospeso,
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
            EventKind::Annullamento => Borrowed("annullamento"),
            EventKind::LavoroFallito => Borrowed("lavoro-fallito"),
            EventKind::LavoroSospeso => Borrowed("lavoro-sospeso"),
            EventKind::Other(s) => Owned(s.clone()),
        }
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

/// Append one event.
pub fn append(db: &Db<'_>, e: &Event) -> Result<i64> {
    let conn = db.sql();
    let mut st = conn.prepare_cached(
        "INSERT INTO log(ts, event, identificativo, msgid, sender, recipients, subject,
                         receipt_type, generated_msgid, error, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    st.execute(params![
        e.ts,
        e.event.name(),
        e.identificativo,
        e.msgid,
        e.sender,
        e.recipients,
        e.subject,
        e.receipt_type,
        e.generated_msgid,
        e.error,
        e.detail
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Filters of `pecd log`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this identificativo.
    pub identificativo: Option<String>,
    /// Only this original Message-ID (with or without angle brackets).
    pub msgid: Option<String>,
    /// Only events whose sender or recipients mention this address.
    pub address: Option<String>,
    /// Only this event type.
    pub event: Option<EventKind>,
}

/// Events matching `q`, oldest first.
pub fn query(db: &Db<'_>, q: &Query) -> Result<Vec<Event>> {
    let conn = db.sql();
    let mut sql = String::from(
        "SELECT id, ts, event, identificativo, msgid, sender, recipients, subject, receipt_type,
                generated_msgid, error, detail FROM log WHERE 1=1",
    );
    let mut args: Vec<String> = Vec::new();
    if let Some(id) = &q.identificativo {
        args.push(id.trim_matches(|c| c == '<' || c == '>').to_string());
        sql.push_str(&format!(" AND identificativo = ?{}", args.len()));
    }
    if let Some(m) = &q.msgid {
        let bare = m.trim().trim_matches(|c| c == '<' || c == '>').to_string();
        args.push(format!("<{bare}>"));
        let a = args.len();
        args.push(bare);
        let b = args.len();
        // Only the events built from the original message carry its msgid;
        // `deposito`, `annullamento` and the like know just the
        // identificativo. Resolve the msgid to its messages, then take every
        // row of those, so `--msgid` and `--id` agree.
        sql.push_str(&format!(
            " AND (msgid IN (?{a}, ?{b}) OR identificativo IN (
                 SELECT identificativo FROM log
                  WHERE msgid IN (?{a}, ?{b}) AND identificativo IS NOT NULL
                 UNION
                 SELECT identificativo FROM messages WHERE msgid IN (?{a}, ?{b})))"
        ));
    }
    if let Some(a) = &q.address {
        args.push(format!("%{}%", a.to_ascii_lowercase()));
        let n = args.len();
        sql.push_str(&format!(
            " AND (lower(sender) LIKE ?{n} OR lower(recipients) LIKE ?{n})"
        ));
    }
    if let Some(ev) = &q.event {
        args.push(ev.name().into_owned());
        sql.push_str(&format!(" AND event = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY ts, id");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(Event {
            id: r.get(0)?,
            ts: r.get(1)?,
            event: EventKind::parse(&r.get::<_, String>(2)?),
            identificativo: r.get(3)?,
            msgid: r.get(4)?,
            sender: r.get(5)?,
            recipients: r.get(6)?,
            subject: r.get(7)?,
            receipt_type: r.get(8)?,
            generated_msgid: r.get(9)?,
            error: r.get(10)?,
            detail: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Delete events older than the legal retention (30 months). Returns rows removed.
pub fn purge_expired(db: &Db<'_>, now_ms: i64) -> Result<usize> {
    let conn = db.sql();
    let cutoff = now_ms - (super::schema::LOG_RETENTION_DAYS + 1) * 86_400_000;
    Ok(conn.execute("DELETE FROM log WHERE ts < ?1", [cutoff])?)
}

/// Format milliseconds as an ISO-8601 UTC timestamp for humans.
pub fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Per identificativo, the times of the `deposito` events whose detail starts
/// with `what` (e.g. `accettazione`): how `pecd bench` times each message.
pub fn deposit_times(db: &Db<'_>, what: &str) -> Result<Vec<(String, i64)>> {
    Ok(db
        .sql()
        .prepare(
            "SELECT identificativo, ts FROM log WHERE event = 'deposito' AND detail LIKE ?1 || '%'",
        )?
        .query_map([what], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// How many `deposito` events have a detail starting with `what`.
pub fn count_deposits(db: &Db<'_>, what: &str) -> Result<i64> {
    Ok(db.sql().query_row(
        "SELECT count(*) FROM log WHERE event = 'deposito' AND detail LIKE ?1 || '%'",
        [what],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_itself() {
        let mut kinds: Vec<EventKind> = EventKind::FIXED.to_vec();
        kinds.extend(Tipo::ALL.into_iter().map(EventKind::Ricevuta));
        kinds.push(EventKind::Other("written-by-a-newer-pecd".into()));
        let mut names = std::collections::HashSet::new();
        for k in kinds {
            assert!(names.insert(k.name()), "two kinds named {k}");
            assert_eq!(EventKind::parse(&k.name()), k);
        }
        assert_eq!(
            EventKind::Ricevuta(Tipo::PresaInCarico).name(),
            "ricevuta-presa-in-carico"
        );
    }

    #[test]
    fn append_and_query_by_each_filter() {
        let m = crate::store::MemDb::new();
        let c = m.db();
        let mut e = Event::new(EventKind::Accettazione, 1000);
        e.identificativo = Some("id1@pec.alpha.test".into());
        e.msgid = Some("<m1@client>".into());
        e.sender = Some("alice@pec.alpha.test".into());
        e.recipients = Some("bob@pec.beta.test (certificato)".into());
        append(&c, &e).unwrap();
        append(&c, &Event::new(EventKind::Other("other".into()), 2000)).unwrap();
        let mut d = Event::new(EventKind::Deposito, 3000);
        d.identificativo = Some("id1@pec.alpha.test".into());
        append(&c, &d).unwrap();
        let by_id = query(
            &c,
            &Query {
                identificativo: Some("<id1@pec.alpha.test>".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(by_id.len(), 2);
        let by_msgid = query(
            &c,
            &Query {
                msgid: Some("m1@client".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(by_msgid, by_id, "--msgid finds the deposito too");
        let by_addr = query(
            &c,
            &Query {
                address: Some("BOB@pec.beta.test".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(by_addr.len(), 1);
        assert_eq!(query(&c, &Query::default()).unwrap().len(), 3);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(1_542_123_567_123), "2018-11-13T15:39:27.123Z");
    }
}
