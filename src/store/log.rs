//! The PEC message log (DPR 68/2005 art. 11): the legal record of every event.
//!
//! Rows are written explicitly, in the same transaction as the state change
//! they record, and never changed: the only statement this module runs on the
//! table is `INSERT` (triggers in the schema refuse `UPDATE` and any `DELETE`
//! younger than 30 months).
//!
//! Each row carries a chain hash, `SHA-256(previous row's chain ||
//! SHA-256(canonical row))` ([`canonical`], `docs/log-integrity.md`), so an
//! edited, removed or moved row breaks the chain from there on; the daily
//! seals (`store::seal`) pin the chain's value at the end of each day.

use super::{Db, Inspector, Result, Store};
use rusqlite::{params, OptionalExtension};

pub use crate::flow::batch::{Event, EventKind};

pub use crate::pec::clock::iso_utc;

/// Days the PEC log is kept (DPR 68/2005 art. 11: 30 months), rounded up.
pub const LOG_RETENTION_DAYS: i64 = 915;

/// The chain value before the first row: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// The last row of the chain: its id and chain hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// Row id (0 for an empty log).
    pub id: i64,
    /// Its chain hash.
    pub hash: [u8; 32],
}

/// The canonical bytes of a row (`docs/log-integrity.md`): the id and the
/// time as 8-byte big-endian integers, then each text column in table order
/// as `0x00` (NULL) or `0x01`, a 4-byte big-endian length and the UTF-8
/// bytes. Lengths make it unambiguous: no two rows share an encoding.
pub fn canonical(e: &Event) -> Vec<u8> {
    let name = e.event.name();
    let texts: [Option<&str>; 10] = [
        Some(&name),
        e.identificativo.as_deref(),
        e.msgid.as_deref(),
        e.sender.as_deref(),
        e.recipients.as_deref(),
        e.subject.as_deref(),
        e.receipt_type.as_deref(),
        e.generated_msgid.as_deref(),
        e.error.as_deref(),
        e.detail.as_deref(),
    ];
    let mut out = Vec::with_capacity(
        16 + texts
            .iter()
            .map(|t| 5 + t.map_or(0, str::len))
            .sum::<usize>(),
    );
    out.extend_from_slice(&e.id.to_be_bytes());
    out.extend_from_slice(&e.ts.to_be_bytes());
    for t in &texts {
        match t {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    out
}

/// SHA-256 of the canonical bytes of a row.
pub fn row_digest(e: &Event) -> [u8; 32] {
    openssl::sha::sha256(&canonical(e))
}

/// The chain hash that follows `prev` for a row whose digest is `digest`.
pub fn chain_next(prev: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = openssl::sha::Sha256::new();
    h.update(prev);
    h.update(digest);
    h.finish()
}

/// The chain's last row as the table holds it; with an empty table, the
/// last seal's (rows older than 30 months are purged, their seals kept).
pub(in crate::store) fn read_tip(conn: &rusqlite::Connection) -> Result<ChainTip> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT id, chain FROM log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (id, hash) = match row {
        Some(r) => r,
        None => conn
            .query_row(
                "SELECT last_id, last_hash FROM log_seals ORDER BY last_id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, None)),
    };
    // A row without a chain value cannot be extended honestly; chaining
    // from zeros keeps the log writable and `pecd log verify` names the row.
    let hash = hash
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .unwrap_or(GENESIS);
    Ok(ChainTip { id, hash })
}

/// Append one event; returns its row id.
///
/// The id is the chain tip's plus one, given explicitly, so the hash can
/// cover it. Another process (`pecd queue cancel`) may have appended since
/// the writer last looked: then that id is taken, the insert fails on the
/// key alone, and the tip is read again.
pub fn append(db: &Db<'_>, e: &Event) -> Result<i64> {
    let conn = db.sql();
    let cached = db.tip().and_then(|c| c.get());
    let mut tip = match cached {
        Some(t) => t,
        None => read_tip(conn)?,
    };
    let mut row = e.clone();
    for attempt in 0..2 {
        row.id = tip.id + 1;
        let hash = chain_next(&tip.hash, &row_digest(&row));
        let mut st = conn.prepare_cached(
            "INSERT INTO log(id, ts, event, identificativo, msgid, sender, recipients, subject,
                             receipt_type, generated_msgid, error, detail, chain)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let r = st.execute(params![
            row.id,
            row.ts,
            row.event.name(),
            row.identificativo,
            row.msgid,
            row.sender,
            row.recipients,
            row.subject,
            row.receipt_type,
            row.generated_msgid,
            row.error,
            row.detail,
            &hash[..]
        ]);
        match r {
            Ok(_) => {
                if let Some(c) = db.tip() {
                    c.set(Some(ChainTip { id: row.id, hash }));
                }
                return Ok(row.id);
            }
            Err(rusqlite::Error::SqliteFailure(f, _))
                if attempt == 0 && f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                tip = read_tip(conn)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(super::StoreError::Commit(
        "the PEC log's chain tip moved twice during one append".into(),
    ))
}

/// Chain the rows a database held before the log was chained (the
/// migration that added the column), in id order from [`GENESIS`], then
/// put back the append-only trigger the migration lifted for it.
pub(in crate::store) fn chain_existing(conn: &rusqlite::Connection) -> Result<usize> {
    // In slices of 10 000 rows, so a large old log is chained in bounded memory.
    let mut select = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM log WHERE id > ?1 ORDER BY id LIMIT 10000"
    ))?;
    let mut up = conn.prepare("UPDATE log SET chain = ?1 WHERE id = ?2")?;
    let (mut prev, mut after, mut n) = (GENESIS, i64::MIN, 0);
    loop {
        let rows = select
            .query_map([after], event_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for e in &rows {
            prev = chain_next(&prev, &row_digest(e));
            up.execute(params![&prev[..], e.id])?;
        }
        n += rows.len();
    }
    conn.execute_batch(
        "CREATE TRIGGER log_is_append_only BEFORE UPDATE ON log
         BEGIN SELECT RAISE(ABORT, 'the PEC log is append-only'); END;",
    )?;
    Ok(n)
}

const COLUMNS: &str = "id, ts, event, identificativo, msgid, sender, recipients, subject, \
                       receipt_type, generated_msgid, error, detail";

fn event_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
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
}

/// Call `f` with each row whose id is in `from..=to`, in id order, and its
/// stored chain hash (None when missing or not 32 bytes); `f` returns
/// false to stop. One row in memory at a time, so a long log verifies in
/// constant memory.
pub fn for_each_chained(
    db: &Db<'_>,
    from: i64,
    to: i64,
    mut f: impl FnMut(&Event, Option<[u8; 32]>) -> bool,
) -> Result<()> {
    let mut st = db.sql().prepare(&format!(
        "SELECT {COLUMNS}, chain FROM log WHERE id >= ?1 AND id <= ?2 ORDER BY id"
    ))?;
    let mut rows = st.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        let e = event_of(r)?;
        let chain: Option<Vec<u8>> = r.get(12)?;
        let chain = chain.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok());
        if !f(&e, chain) {
            break;
        }
    }
    Ok(())
}

/// The nearest row before `id` and its chain hash, if any.
pub fn chain_before(db: &Db<'_>, id: i64) -> Result<Option<(i64, Option<Vec<u8>>)>> {
    Ok(db
        .sql()
        .query_row(
            "SELECT id, chain FROM log WHERE id < ?1 ORDER BY id DESC LIMIT 1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The smallest and largest row id, if the log has rows.
pub fn id_bounds(db: &Db<'_>) -> Result<Option<(i64, i64)>> {
    Ok(db
        .sql()
        .query_row("SELECT min(id), max(id) FROM log", [], |r| {
            Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
        })?)
}

/// The last row id whose time is before `ms`, if any (`pecd log verify
/// --to`: a scan, fine for the CLI, never in the daemon).
pub fn last_id_before(db: &Db<'_>, ms: i64) -> Result<Option<i64>> {
    Ok(db
        .sql()
        .query_row("SELECT max(id) FROM log WHERE ts < ?1", [ms], |r| r.get(0))?)
}

/// The first row id whose time is at or after `ms`, if any.
pub fn first_id_from(db: &Db<'_>, ms: i64) -> Result<Option<i64>> {
    Ok(db
        .sql()
        .query_row("SELECT min(id) FROM log WHERE ts >= ?1", [ms], |r| r.get(0))?)
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
    /// Only these event types (any of them; empty: every type).
    pub events: Vec<EventKind>,
    /// Only events at or after this time (Unix milliseconds).
    pub from_ms: Option<i64>,
    /// Only events before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
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
    if !q.events.is_empty() {
        let mut marks = Vec::new();
        for ev in &q.events {
            args.push(ev.name().into_owned());
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND event IN ({})", marks.join(", ")));
    }
    // Times as literals: the arguments are text, and `ts` is an integer.
    if let Some(t) = q.from_ms {
        sql.push_str(&format!(" AND ts >= {t}"));
    }
    if let Some(t) = q.until_ms {
        sql.push_str(&format!(" AND ts < {t}"));
    }
    sql.push_str(" ORDER BY ts, id");
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(rusqlite::params_from_iter(args.iter()), event_of)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Delete events older than the legal retention (30 months). Returns rows removed.
pub fn purge_expired(db: &Db<'_>, now_ms: i64) -> Result<usize> {
    let conn = db.sql();
    let cutoff = now_ms - (LOG_RETENTION_DAYS + 1) * 86_400_000;
    Ok(conn.execute("DELETE FROM log WHERE ts < ?1", [cutoff])?)
}

/// The ordinary recipients of message `identificativo` not delivered for
/// good: `(recipient, when in Unix ms, the error)`, from the
/// `mancata-consegna-esterno` rows (the sent status's `errore`).
pub fn esterno_failures(db: &Db<'_>, identificativo: &str) -> Result<Vec<(String, i64, String)>> {
    let mut st = db.sql().prepare_cached(
        "SELECT recipients, ts, coalesce(error, '') FROM log
         WHERE identificativo = ?1 AND event = 'mancata-consegna-esterno' ORDER BY id",
    )?;
    let rows = st.query_map([identificativo], |r| {
        Ok((
            r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            r.get(1)?,
            r.get(2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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

impl Store {
    /// Events matching `q`, oldest first.
    pub fn log_events_blocking(&self, q: &Query) -> Result<Vec<Event>> {
        self.read_blocking(|db| query(db, q))
    }

    /// How many `deposito` events have a detail starting with `what`.
    pub fn count_deposits_blocking(&self, what: &str) -> Result<i64> {
        self.read_blocking(|db| count_deposits(db, what))
    }

    /// Per identificativo, the times of the `deposito` events whose detail
    /// starts with `what`.
    pub fn deposit_times_blocking(&self, what: &str) -> Result<Vec<(String, i64)>> {
        self.read_blocking(|db| deposit_times(db, what))
    }
}

impl Inspector {
    /// Events matching `q`, oldest first.
    pub fn log(&self, q: &Query) -> Result<Vec<Event>> {
        self.run(|db| query(db, q))
    }

    /// Call `f` with each row whose id is in `from..=to`, in id order, and
    /// its stored chain hash (see [`for_each_chained`]); `f` returns false
    /// to stop.
    pub fn for_each_chained(
        &self,
        from: i64,
        to: i64,
        f: impl FnMut(&Event, Option<[u8; 32]>) -> bool,
    ) -> Result<()> {
        self.run(|db| for_each_chained(db, from, to, f))
    }

    /// The nearest row before `id` and its chain hash, if any.
    pub fn chain_before(&self, id: i64) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        self.run(|db| chain_before(db, id))
    }

    /// The smallest and largest row id, if the log has rows.
    pub fn log_id_bounds(&self) -> Result<Option<(i64, i64)>> {
        self.run(id_bounds)
    }

    /// The last row id whose time is before `ms`, if any.
    pub fn last_log_id_before(&self, ms: i64) -> Result<Option<i64>> {
        self.run(|db| last_id_before(db, ms))
    }

    /// The first row id whose time is at or after `ms`, if any.
    pub fn first_log_id_from(&self, ms: i64) -> Result<Option<i64>> {
        self.run(|db| first_id_from(db, ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pec::types::Tipo;

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
        let kinds =
            |q: Query| -> Vec<i64> { query(&c, &q).unwrap().iter().map(|e| e.ts).collect() };
        assert_eq!(
            kinds(Query {
                events: vec![EventKind::Deposito, EventKind::Accettazione],
                ..Query::default()
            }),
            [1000, 3000],
            "several kinds: any of them"
        );
        assert_eq!(
            kinds(Query {
                from_ms: Some(2000),
                until_ms: Some(3000),
                ..Query::default()
            }),
            [2000],
            "from inclusive, until exclusive"
        );
        assert_eq!(
            kinds(Query {
                events: vec![EventKind::Deposito],
                until_ms: Some(3000),
                ..Query::default()
            }),
            Vec::<i64>::new()
        );
    }

    fn chain_ok(c: &Db<'_>) -> usize {
        let mut prev = GENESIS;
        let mut n = 0;
        for_each_chained(c, 0, i64::MAX, |e, h| {
            prev = chain_next(&prev, &row_digest(e));
            assert_eq!(h, Some(prev), "row {}", e.id);
            n += 1;
            true
        })
        .unwrap();
        n
    }

    #[test]
    fn canonical_rows_are_unambiguous() {
        let mut a = Event::new(EventKind::Deposito, 5);
        a.id = 1;
        a.sender = Some("ab".into());
        let mut b = a.clone();
        b.sender = Some("a".into());
        b.recipients = Some("b".into());
        let mut c = a.clone();
        c.sender = None;
        c.recipients = Some("ab".into());
        let mut d = a.clone();
        d.sender = Some(String::new());
        let all = [&a, &b, &c, &d].map(canonical);
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        let mut moved = a.clone();
        moved.id = 2;
        assert_ne!(row_digest(&a), row_digest(&moved), "the id is covered");
    }

    #[test]
    fn appends_chain_from_the_genesis_and_follow_another_writer() {
        let m = crate::store::MemDb::new();
        let tip = std::cell::Cell::new(None);
        let w = Db::writer(&m.0, &tip);
        append(&w, &Event::new(EventKind::Deposito, 1)).unwrap();
        assert_eq!(append(&w, &Event::new(EventKind::Deposito, 2)).unwrap(), 2);
        // Another process (`pecd queue cancel`) appends behind our back.
        let other = m.db();
        assert_eq!(
            append(&other, &Event::new(EventKind::Annullamento, 3)).unwrap(),
            3
        );
        assert_eq!(tip.get().unwrap().id, 2, "our tip is stale now");
        assert_eq!(append(&w, &Event::new(EventKind::Deposito, 4)).unwrap(), 4);
        assert_eq!(chain_ok(&m.db()), 4);
    }

    #[test]
    fn the_migration_chains_rows_written_before_it_and_keeps_them_append_only() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        // The schema as it was before the chain.
        let old = c.transaction().unwrap();
        crate::store::schema::migrate_before_log_chain(&old).unwrap();
        old.commit().unwrap();
        for (ts, subj) in [(1, "a"), (2, "b"), (3, "c")] {
            c.execute(
                "INSERT INTO log(ts, event, subject) VALUES (?1, 'deposito', ?2)",
                rusqlite::params![ts, subj],
            )
            .unwrap();
        }
        crate::store::schema::migrate(&mut c).unwrap();
        let db = Db::new(&c);
        assert_eq!(chain_ok(&db), 3);
        append(&db, &Event::new(EventKind::Deposito, 4)).unwrap();
        assert_eq!(chain_ok(&db), 4);
        assert!(c.execute("UPDATE log SET subject = 'x'", []).is_err());
    }

    #[tokio::test]
    async fn a_closure_that_fails_after_appending_leaves_no_hole_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let ok = store.write(|c| append(c, &Event::new(EventKind::Deposito, 1)));
        let bad = store.write(|c| {
            append(c, &Event::new(EventKind::Deposito, 2))?;
            Err::<i64, _>(crate::store::StoreError::Commit("refused".into()))
        });
        let after = store.write(|c| append(c, &Event::new(EventKind::Deposito, 3)));
        let (a, b, c) = tokio::join!(ok, bad, after);
        assert!(b.is_err());
        assert_eq!(
            (a.unwrap(), c.unwrap()),
            (1, 2),
            "the rolled-back id is reused"
        );
        let n = store.read(|db| Ok(chain_ok(db))).await.unwrap();
        assert_eq!(n, 2);
        store.close();
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_utc(1_542_123_567_123), "2018-11-13T15:39:27.123Z");
    }
}
