//! The SQL of the PEC log (`log`): see `store::log`. The only statement
//! run on the table besides reads is `INSERT` (and the purge after 30
//! months); each row carries its chain hash.

use rusqlite::{params, OptionalExtension};

use super::Db;
use crate::store::log::{
    chain_next, row_digest, ChainTip, Event, EventKind, Query, GENESIS, LOG_RETENTION_DAYS,
};
use crate::store::{Result, StoreError};

/// The chain's last row as the table holds it; with an empty table, the
/// last seal's (rows older than 30 months are purged, their seals kept).
fn read_tip(conn: &rusqlite::Connection) -> Result<ChainTip> {
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

/// Chain the rows a database held before the log was chained (the
/// migration that added the column), in id order from [`GENESIS`], then
/// put back the append-only trigger the migration lifted for it.
pub(super) fn chain_existing(conn: &rusqlite::Connection) -> Result<usize> {
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

impl Db<'_> {
    /// Append one event; returns its row id.
    ///
    /// The id is the chain tip's plus one, given explicitly, so the hash can
    /// cover it. Another process (`pecd queue cancel`) may have appended since
    /// the writer last looked: then that id is taken, the insert fails on the
    /// key alone, and the tip is read again.
    pub(in crate::store) fn log_append(&self, e: &Event) -> Result<i64> {
        let conn = self.sql();
        let cached = self.tip().and_then(|c| c.get());
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
                    if let Some(c) = self.tip() {
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
        Err(StoreError::Commit(
            "the PEC log's chain tip moved twice during one append".into(),
        ))
    }

    /// Call `f` with each row whose id is in `from..=to`, in id order, and its
    /// stored chain hash (None when missing or not 32 bytes); `f` returns
    /// false to stop. One row in memory at a time, so a long log verifies in
    /// constant memory.
    pub(in crate::store) fn log_for_each_chained(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(&Event, Option<[u8; 32]>) -> bool,
    ) -> Result<()> {
        let mut st = self.sql().prepare(&format!(
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
    pub(in crate::store) fn log_chain_before(
        &self,
        id: i64,
    ) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        Ok(self
            .sql()
            .query_row(
                "SELECT id, chain FROM log WHERE id < ?1 ORDER BY id DESC LIMIT 1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The smallest and largest row id, if the log has rows.
    pub(in crate::store) fn log_id_bounds(&self) -> Result<Option<(i64, i64)>> {
        Ok(self
            .sql()
            .query_row("SELECT min(id), max(id) FROM log", [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
            })?)
    }

    /// The last row id whose time is before `ms`, if any (`pecd log verify
    /// --to`: a scan, fine for the CLI, never in the daemon).
    pub(in crate::store) fn log_last_id_before(&self, ms: i64) -> Result<Option<i64>> {
        Ok(self
            .sql()
            .query_row("SELECT max(id) FROM log WHERE ts < ?1", [ms], |r| r.get(0))?)
    }

    /// The first row id whose time is at or after `ms`, if any.
    pub(in crate::store) fn log_first_id_from(&self, ms: i64) -> Result<Option<i64>> {
        Ok(self
            .sql()
            .query_row("SELECT min(id) FROM log WHERE ts >= ?1", [ms], |r| r.get(0))?)
    }

    /// Events matching `q`, oldest first.
    pub(in crate::store) fn log_query(&self, q: &Query) -> Result<Vec<Event>> {
        let conn = self.sql();
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
    pub(in crate::store) fn log_purge_expired(&self, now_ms: i64) -> Result<usize> {
        let conn = self.sql();
        let cutoff = now_ms - (LOG_RETENTION_DAYS + 1) * 86_400_000;
        Ok(conn.execute("DELETE FROM log WHERE ts < ?1", [cutoff])?)
    }

    /// The ordinary recipients of message `identificativo` not delivered for
    /// good: `(recipient, when in Unix ms, the error)`, from the
    /// `mancata-consegna-esterno` rows (the sent status's `errore`).
    pub(in crate::store) fn esterno_failures(
        &self,
        identificativo: &str,
    ) -> Result<Vec<(String, i64, String)>> {
        let mut st = self.sql().prepare_cached(
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
    pub(in crate::store) fn deposit_times(&self, what: &str) -> Result<Vec<(String, i64)>> {
        Ok(self
            .sql()
            .prepare(
                "SELECT identificativo, ts FROM log WHERE event = 'deposito' AND detail LIKE ?1 || '%'",
            )?
            .query_map([what], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// How many `deposito` events have a detail starting with `what`.
    pub(in crate::store) fn count_deposits(&self, what: &str) -> Result<i64> {
        Ok(self.sql().query_row(
            "SELECT count(*) FROM log WHERE event = 'deposito' AND detail LIKE ?1 || '%'",
            [what],
            |r| r.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::log::{chain_next, row_digest, Event, EventKind, Query, GENESIS};
    use crate::store::sqlite::{schema, Db, MemDb};

    #[test]
    fn append_and_query_by_each_filter() {
        let m = MemDb::new();
        let c = m.db();
        let mut e = Event::new(EventKind::Accettazione, 1000);
        e.identificativo = Some("id1@pec.alpha.test".into());
        e.msgid = Some("<m1@client>".into());
        e.sender = Some("alice@pec.alpha.test".into());
        e.recipients = Some("bob@pec.beta.test (certificato)".into());
        c.log_append(&e).unwrap();
        c.log_append(&Event::new(EventKind::Other("other".into()), 2000))
            .unwrap();
        let mut d = Event::new(EventKind::Deposito, 3000);
        d.identificativo = Some("id1@pec.alpha.test".into());
        c.log_append(&d).unwrap();
        let by_id = c
            .log_query(&Query {
                identificativo: Some("<id1@pec.alpha.test>".into()),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_id.len(), 2);
        let by_msgid = c
            .log_query(&Query {
                msgid: Some("m1@client".into()),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_msgid, by_id, "--msgid finds the deposito too");
        let by_addr = c
            .log_query(&Query {
                address: Some("BOB@pec.beta.test".into()),
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_addr.len(), 1);
        assert_eq!(c.log_query(&Query::default()).unwrap().len(), 3);
        let kinds =
            |q: Query| -> Vec<i64> { c.log_query(&q).unwrap().iter().map(|e| e.ts).collect() };
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

    fn chain_ok(c: &dyn crate::store::backend::Tx) -> usize {
        let mut prev = GENESIS;
        let mut n = 0;
        c.log_for_each_chained(0, i64::MAX, &mut |e, h| {
            prev = chain_next(&prev, &row_digest(e));
            assert_eq!(h, Some(prev), "row {}", e.id);
            n += 1;
            true
        })
        .unwrap();
        n
    }

    #[test]
    fn appends_chain_from_the_genesis_and_follow_another_writer() {
        let m = MemDb::new();
        let tip = std::cell::Cell::new(None);
        let w = Db::writer(&m.0, &tip);
        w.log_append(&Event::new(EventKind::Deposito, 1)).unwrap();
        assert_eq!(
            w.log_append(&Event::new(EventKind::Deposito, 2)).unwrap(),
            2
        );
        // Another process (`pecd queue cancel`) appends behind our back.
        let other = m.db();
        assert_eq!(
            other
                .log_append(&Event::new(EventKind::Annullamento, 3))
                .unwrap(),
            3
        );
        assert_eq!(tip.get().unwrap().id, 2, "our tip is stale now");
        assert_eq!(
            w.log_append(&Event::new(EventKind::Deposito, 4)).unwrap(),
            4
        );
        assert_eq!(chain_ok(&m.db()), 4);
    }

    #[test]
    fn the_migration_chains_rows_written_before_it_and_keeps_them_append_only() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        // The schema as it was before the chain.
        let old = c.transaction().unwrap();
        schema::migrate_before_log_chain(&old).unwrap();
        old.commit().unwrap();
        for (ts, subj) in [(1, "a"), (2, "b"), (3, "c")] {
            c.execute(
                "INSERT INTO log(ts, event, subject) VALUES (?1, 'deposito', ?2)",
                rusqlite::params![ts, subj],
            )
            .unwrap();
        }
        schema::migrate(&mut c).unwrap();
        let db = Db::new(&c);
        assert_eq!(chain_ok(&db), 3);
        db.log_append(&Event::new(EventKind::Deposito, 4)).unwrap();
        assert_eq!(chain_ok(&db), 4);
        assert!(c.execute("UPDATE log SET subject = 'x'", []).is_err());
    }

    #[tokio::test]
    async fn a_closure_that_fails_after_appending_leaves_no_hole_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let ok = store.write(|c| c.log_append(&Event::new(EventKind::Deposito, 1)));
        let bad = store.write(|c| {
            c.log_append(&Event::new(EventKind::Deposito, 2))?;
            Err::<i64, _>(crate::store::StoreError::Commit("refused".into()))
        });
        let after = store.write(|c| c.log_append(&Event::new(EventKind::Deposito, 3)));
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
}
