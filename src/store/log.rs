//! The PEC message log (DPR 68/2005 art. 11): the legal record of every event.
//!
//! Rows are written explicitly, in the same transaction as the state change
//! they record, and never changed: the only statement this module runs on the
//! table is `INSERT` (triggers in the schema refuse `UPDATE` and any `DELETE`
//! younger than 30 months).

use rusqlite::{params, Connection};
use serde::Serialize;

/// One log event.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Row id (assigned on insert).
    pub id: i64,
    /// Unix milliseconds.
    pub ts: i64,
    /// Event type, e.g. `accettazione`, `busta-trasporto`, `consegna`.
    pub event: String,
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
    pub fn new(kind: &str, ts: i64) -> Event {
        Event {
            event: kind.to_string(),
            ts,
            ..Event::default()
        }
    }
}

/// Append one event.
pub fn append(conn: &Connection, e: &Event) -> rusqlite::Result<i64> {
    let mut st = conn.prepare_cached(
        "INSERT INTO log(ts, event, identificativo, msgid, sender, recipients, subject,
                         receipt_type, generated_msgid, error, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    st.execute(params![
        e.ts,
        e.event,
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
    pub event: Option<String>,
}

/// Events matching `q`, oldest first.
pub fn query(conn: &Connection, q: &Query) -> rusqlite::Result<Vec<Event>> {
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
        args.push(ev.clone());
        sql.push_str(&format!(" AND event = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY ts, id");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), |r| {
        Ok(Event {
            id: r.get(0)?,
            ts: r.get(1)?,
            event: r.get(2)?,
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
    rows.collect()
}

/// One accepted submission as the `messages` table keeps it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SentMessage {
    /// Identificativo of its busta.
    pub identificativo: String,
    /// The user's own Message-ID, with angle brackets, if it had one.
    pub msgid: Option<String>,
    /// The sender.
    pub sender: String,
    /// Original subject.
    pub subject: String,
    /// Recipients with type, as in the log.
    pub recipients: String,
    /// Receipt type requested.
    pub receipt_type: String,
    /// Acceptance time, Unix ms.
    pub accepted_at: i64,
}

fn sent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SentMessage> {
    Ok(SentMessage {
        identificativo: r.get(0)?,
        msgid: r.get(1)?,
        sender: r.get(2)?,
        subject: r.get(3)?,
        recipients: r.get(4)?,
        receipt_type: r.get(5)?,
        accepted_at: r.get(6)?,
    })
}

/// Messages `sender` submitted, newest first.
pub fn sent_by(
    conn: &Connection,
    sender: &str,
    offset: usize,
    limit: usize,
) -> rusqlite::Result<Vec<SentMessage>> {
    let mut st = conn.prepare_cached(
        "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
           FROM messages WHERE sender = ?1 COLLATE NOCASE
          ORDER BY accepted_at DESC, identificativo DESC LIMIT ?2 OFFSET ?3",
    )?;
    let rows = st.query_map(params![sender, limit as i64, offset as i64], sent_row)?;
    rows.collect()
}

/// The message `sender` submitted with this Message-ID (brackets optional).
pub fn sent_with_msgid(
    conn: &Connection,
    sender: &str,
    msgid: &str,
) -> rusqlite::Result<Option<SentMessage>> {
    use rusqlite::OptionalExtension;
    let bare = msgid.trim().trim_matches(|c| c == '<' || c == '>');
    conn.prepare_cached(
        "SELECT identificativo, msgid, sender, subject, recipients, receipt_type, accepted_at
           FROM messages WHERE msgid IN (?2, ?3) AND sender = ?1 COLLATE NOCASE
          ORDER BY accepted_at DESC LIMIT 1",
    )?
    .query_row(params![sender, format!("<{bare}>"), bare], sent_row)
    .optional()
}

/// Delete events older than the legal retention (30 months). Returns rows removed.
pub fn purge_expired(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    let cutoff = now_ms - (super::schema::LOG_RETENTION_DAYS + 1) * 86_400_000;
    conn.execute("DELETE FROM log WHERE ts < ?1", [cutoff])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_query_by_each_filter() {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let mut e = Event::new("accettazione", 1000);
        e.identificativo = Some("id1@pec.alpha.test".into());
        e.msgid = Some("<m1@client>".into());
        e.sender = Some("alice@pec.alpha.test".into());
        e.recipients = Some("bob@pec.beta.test (certificato)".into());
        append(&c, &e).unwrap();
        append(&c, &Event::new("other", 2000)).unwrap();
        let mut d = Event::new("deposito", 3000);
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
