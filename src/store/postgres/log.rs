//! The SQL of the PEC log on PostgreSQL: see `sqlite/log.rs`. Appends take
//! a transaction-scoped advisory lock first, so that the transactions of
//! every thread and every node extend one chain, one after the other.

use ::postgres::types::ToSql;
use ::postgres::Row;

use super::PgDb;
use crate::store::log::{
    chain_next, row_digest, ChainTip, Event, EventKind, Query, GENESIS, LOG_RETENTION_DAYS,
};
use crate::store::Result;

/// The advisory lock key of the log's chain ("pecd" + 2).
const LOG_LOCK: i64 = 0x7065_6364_0002;

const COLUMNS: &str = "id, ts, event, identificativo, msgid, sender, recipients, subject, \
                       receipt_type, generated_msgid, error, detail";

fn event_of(r: &Row) -> Event {
    Event {
        id: r.get(0),
        ts: r.get(1),
        event: EventKind::parse(r.get::<_, &str>(2)),
        identificativo: r.get(3),
        msgid: r.get(4),
        sender: r.get(5),
        recipients: r.get(6),
        subject: r.get(7),
        receipt_type: r.get(8),
        generated_msgid: r.get(9),
        error: r.get(10),
        detail: r.get(11),
    }
}

fn hash32(h: Option<Vec<u8>>) -> Option<[u8; 32]> {
    h.and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
}

impl PgDb<'_> {
    /// The chain's last row (with an empty table, the last seal's).
    fn read_tip(&self) -> Result<ChainTip> {
        let row = match self.opt("SELECT id, chain FROM log ORDER BY id DESC LIMIT 1", &[])? {
            Some(r) => Some((r.get::<_, i64>(0), r.get::<_, Option<Vec<u8>>>(1))),
            None => self
                .opt(
                    "SELECT last_id, last_hash FROM log_seals ORDER BY last_id DESC LIMIT 1",
                    &[],
                )?
                .map(|r| (r.get(0), r.get(1))),
        };
        let (id, hash) = row.unwrap_or((0, None));
        // A row without a chain value cannot be extended honestly; chaining
        // from zeros keeps the log writable and `pecd log verify` names it.
        Ok(ChainTip {
            id,
            hash: hash32(hash).unwrap_or(GENESIS),
        })
    }

    /// Append one event; returns its row id. The first append of a
    /// transaction waits for the log's lock (held until the commit) and
    /// reads the tip; the next ones follow it.
    pub(in crate::store) fn log_append(&self, e: &Event) -> Result<i64> {
        let tip = match self.tip.get() {
            Some(t) => t,
            None => {
                self.exec("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK])?;
                self.read_tip()?
            }
        };
        let mut row = e.clone();
        row.id = tip.id + 1;
        let hash = chain_next(&tip.hash, &row_digest(&row));
        let name = row.event.name();
        self.exec(
            "INSERT INTO log(id, ts, event, identificativo, msgid, sender, recipients, subject,
                             receipt_type, generated_msgid, error, detail, chain)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &row.id,
                &row.ts,
                &name.as_ref(),
                &row.identificativo,
                &row.msgid,
                &row.sender,
                &row.recipients,
                &row.subject,
                &row.receipt_type,
                &row.generated_msgid,
                &row.error,
                &row.detail,
                &&hash[..],
            ],
        )?;
        self.tip.set(Some(ChainTip { id: row.id, hash }));
        Ok(row.id)
    }

    /// Call `f` with each row whose id is in `from..=to`, in id order, and
    /// its stored chain hash; `f` returns false to stop. Read in slices of
    /// 10 000 rows, so a long log verifies in bounded memory.
    pub(in crate::store) fn log_for_each_chained(
        &self,
        from: i64,
        to: i64,
        mut f: impl FnMut(&Event, Option<[u8; 32]>) -> bool,
    ) -> Result<()> {
        let sql = format!(
            "SELECT {COLUMNS}, chain FROM log WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT 10000"
        );
        let mut next = from;
        loop {
            let rows = self.rows(&sql, &[&next, &to])?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            next = last.get::<_, i64>(0).saturating_add(1);
            for r in &rows {
                if !f(&event_of(r), hash32(r.get(12))) {
                    return Ok(());
                }
            }
            if next > to {
                return Ok(());
            }
        }
    }

    /// The nearest row before `id` and its chain hash, if any.
    pub(in crate::store) fn log_chain_before(
        &self,
        id: i64,
    ) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        Ok(self
            .opt(
                "SELECT id, chain FROM log WHERE id < $1 ORDER BY id DESC LIMIT 1",
                &[&id],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// The smallest and largest row id, if the log has rows.
    pub(in crate::store) fn log_id_bounds(&self) -> Result<Option<(i64, i64)>> {
        let r = self.one("SELECT min(id), max(id) FROM log", &[])?;
        Ok(r.get::<_, Option<i64>>(0).zip(r.get::<_, Option<i64>>(1)))
    }

    /// The last row id whose time is before `ms`, if any.
    pub(in crate::store) fn log_last_id_before(&self, ms: i64) -> Result<Option<i64>> {
        Ok(self
            .one("SELECT max(id) FROM log WHERE ts < $1", &[&ms])?
            .get(0))
    }

    /// The first row id whose time is at or after `ms`, if any.
    pub(in crate::store) fn log_first_id_from(&self, ms: i64) -> Result<Option<i64>> {
        Ok(self
            .one("SELECT min(id) FROM log WHERE ts >= $1", &[&ms])?
            .get(0))
    }

    /// Events matching `q`, oldest first.
    pub(in crate::store) fn log_query(&self, q: &Query) -> Result<Vec<Event>> {
        let mut sql = format!("SELECT {COLUMNS} FROM log WHERE true");
        let mut args: Vec<String> = Vec::new();
        let push = |args: &mut Vec<String>, v: String| {
            args.push(v);
            args.len()
        };
        if let Some(id) = &q.identificativo {
            let n = push(
                &mut args,
                id.trim_matches(|c| c == '<' || c == '>').to_string(),
            );
            sql.push_str(&format!(" AND identificativo = ${n}"));
        }
        if let Some(m) = &q.msgid {
            let bare = m.trim().trim_matches(|c| c == '<' || c == '>').to_string();
            let a = push(&mut args, format!("<{bare}>"));
            let b = push(&mut args, bare);
            // As in SQLite: resolve the msgid to its messages, then take
            // every row of those.
            sql.push_str(&format!(
                " AND (msgid IN (${a}, ${b}) OR identificativo IN (
                     SELECT identificativo FROM log
                      WHERE msgid IN (${a}, ${b}) AND identificativo IS NOT NULL
                     UNION
                     SELECT identificativo FROM messages WHERE msgid IN (${a}, ${b})))"
            ));
        }
        if let Some(a) = &q.address {
            let n = push(
                &mut args,
                format!("%{}%", like_escape(&a.to_ascii_lowercase())),
            );
            sql.push_str(&format!(
                " AND (lower(sender) LIKE ${n} OR lower(recipients) LIKE ${n})"
            ));
        }
        if !q.events.is_empty() {
            let marks: Vec<String> = q
                .events
                .iter()
                .map(|ev| format!("${}", push(&mut args, ev.name().into_owned())))
                .collect();
            sql.push_str(&format!(" AND event IN ({})", marks.join(", ")));
        }
        // Times as literals: the arguments are text, and `ts` an integer.
        if let Some(t) = q.from_ms {
            sql.push_str(&format!(" AND ts >= {t}"));
        }
        if let Some(t) = q.until_ms {
            sql.push_str(&format!(" AND ts < {t}"));
        }
        sql.push_str(" ORDER BY ts, id");
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        Ok(self.rows(&sql, &params)?.iter().map(event_of).collect())
    }

    /// Delete events older than the legal retention (30 months).
    pub(in crate::store) fn log_purge_expired(&self, now_ms: i64) -> Result<usize> {
        let cutoff = now_ms - (LOG_RETENTION_DAYS + 1) * 86_400_000;
        Ok(self.exec("DELETE FROM log WHERE ts < $1", &[&cutoff])? as usize)
    }

    /// The ordinary recipients of a message not delivered for good.
    pub(in crate::store) fn esterno_failures(
        &self,
        identificativo: &str,
    ) -> Result<Vec<(String, i64, String)>> {
        Ok(self
            .rows(
                "SELECT coalesce(recipients, ''), ts, coalesce(error, '') FROM log
                 WHERE identificativo = $1 AND event = 'mancata-consegna-esterno' ORDER BY id",
                &[&identificativo],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Per identificativo, the times of the `deposito` events whose detail
    /// starts with `what`.
    pub(in crate::store) fn deposit_times(&self, what: &str) -> Result<Vec<(String, i64)>> {
        Ok(self
            .rows(
                "SELECT identificativo, ts FROM log WHERE event = 'deposito' AND starts_with(detail, $1)",
                &[&what],
            )?
            .iter()
            .map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1)))
            .collect())
    }

    /// How many `deposito` events have a detail starting with `what`.
    pub(in crate::store) fn count_deposits(&self, what: &str) -> Result<i64> {
        Ok(self
            .one(
                "SELECT count(*) FROM log WHERE event = 'deposito' AND starts_with(detail, $1)",
                &[&what],
            )?
            .get(0))
    }
}

/// `s` with LIKE's wildcards and escape taken literally (PostgreSQL's
/// default escape character is the backslash).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
