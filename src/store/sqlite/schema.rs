//! Append-only migrations tracked in `PRAGMA user_version` (cargo's habit).
//!
//! Never edit a migration that has shipped: add a new one.

use rusqlite::Connection;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: users, PEC log, accepted messages, work queue, per-recipient timers.
    r#"
CREATE TABLE users (
    address       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE log (
    id              INTEGER PRIMARY KEY,
    ts              INTEGER NOT NULL,
    event           TEXT NOT NULL,
    identificativo  TEXT,
    msgid           TEXT,
    sender          TEXT,
    recipients      TEXT,
    subject         TEXT,
    receipt_type    TEXT,
    generated_msgid TEXT,
    error           TEXT,
    detail          TEXT
);
CREATE INDEX log_identificativo ON log(identificativo);
CREATE INDEX log_msgid ON log(msgid);
CREATE INDEX log_ts ON log(ts);
CREATE TRIGGER log_is_append_only BEFORE UPDATE ON log
BEGIN SELECT RAISE(ABORT, 'the PEC log is append-only'); END;
CREATE TRIGGER log_kept_30_months BEFORE DELETE ON log
WHEN OLD.ts > (CAST(strftime('%s','now') AS INTEGER) - 915 * 86400) * 1000
BEGIN SELECT RAISE(ABORT, 'PEC log rows are kept 30 months'); END;

CREATE TABLE messages (
    identificativo TEXT PRIMARY KEY,
    msgid          TEXT,
    sender         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    recipients     TEXT NOT NULL,
    receipt_type   TEXT NOT NULL,
    daticert       TEXT NOT NULL,
    accepted_at    INTEGER NOT NULL
);

CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    key            TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    identificativo TEXT,
    mail_from      TEXT NOT NULL DEFAULT '',
    recipients     TEXT NOT NULL,
    next_hop       TEXT,
    blob           TEXT,
    data           TEXT,
    state          TEXT NOT NULL DEFAULT 'pending',
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    due_at         INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX jobs_pending ON jobs(state, due_at);

CREATE TABLE timers (
    identificativo TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    preavviso_due  INTEGER,
    expire_due     INTEGER,
    presa_at       INTEGER,
    closed_at      INTEGER,
    closed_by      TEXT,
    PRIMARY KEY (identificativo, recipient)
);
CREATE INDEX timers_preavviso ON timers(preavviso_due) WHERE preavviso_due IS NOT NULL;
CREATE INDEX timers_expire ON timers(expire_due) WHERE expire_due IS NOT NULL;
"#,
    // 2: due jobs found in index order, mailbox deliveries (taken first)
    // apart; partial indexes hold pending rows only, so finishing a job
    // removes one entry instead of rewriting two (the week of finished jobs
    // kept for idempotency made the old index the biggest write per job).
    // The relays of one message are found without a scan when its final
    // notice stops them (that runs in the writer thread).
    r#"
DROP INDEX jobs_pending;
CREATE INDEX jobs_due_mailbox ON jobs(due_at) WHERE state = 'pending' AND kind = 'mailbox';
CREATE INDEX jobs_due_other ON jobs(due_at) WHERE state = 'pending' AND kind <> 'mailbox';
CREATE INDEX jobs_pending_by_message ON jobs(identificativo) WHERE state = 'pending' AND kind <> 'mailbox';
"#,
    // 3: how many times the process died while a job was running; past
    // queue::MAX_CRASHES the job is held ('held') instead of run again.
    // Held and failed jobs are counted for the metrics through their own
    // small indexes (the table also keeps a week of finished jobs).
    r#"
ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_held ON jobs(id) WHERE state = 'held';
CREATE INDEX jobs_failed ON jobs(id) WHERE state = 'failed';
CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
"#,
    // 4: mailbox quotas: NULL = the provider default, -1 = no limit, else bytes.
    r#"
ALTER TABLE users ADD COLUMN quota INTEGER;
"#,
    // 5: the web login's second factor (RFC 6238 secret, hex), per user;
    // the timers of one message read by the webmail's sent view.
    r#"
CREATE TABLE user_totp (
    address    TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    enabled_at INTEGER NOT NULL
);
CREATE INDEX messages_by_sender ON messages(sender, accepted_at);
"#,
    // 6: the log's hash chain and its daily seals.
    LOG_CHAIN,
    // 7: infected messages kept for 30 months (store::quarantine); the file
    // under quarantine/ is the message, the row says what and when.
    r#"
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    identificativo TEXT,
    virus TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    point TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX quarantine_at ON quarantine(at);
CREATE INDEX quarantine_identificativo ON quarantine(identificativo);
"#,
    // 8: why a finished day of the log is not sealed (or its seal not
    // time-stamped) yet: the sealer's last failure, for `pecd log verify`,
    // another process, to print beside the day.
    r#"
CREATE TABLE log_seal_errors (
    date  TEXT PRIMARY KEY,
    error TEXT NOT NULL,
    at    INTEGER NOT NULL
);
"#,
    // 9: web sessions in the database (any node can check a cookie, and
    // ending a user's sessions commits with the change that ends them),
    // keyed by a hash of the token so a copy of the database opens none;
    // the second factor's last used time step (a code works once) and its
    // consecutive failures and lock, per account. Second-factor rows of
    // users deleted before `user del` removed them go.
    r#"
CREATE TABLE web_sessions (
    token_hash BLOB PRIMARY KEY,
    address    TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_address ON web_sessions(address);
ALTER TABLE user_totp ADD COLUMN last_step INTEGER;
ALTER TABLE user_totp ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_totp ADD COLUMN locked_until INTEGER;
DELETE FROM user_totp WHERE address NOT IN (SELECT address FROM users);
"#,
    // 10: claims (issue 22): a pending job or an armed timer is handed to
    // one node at a time, `claimed_by` until `claimed_until` (Unix ms);
    // `fence` grows at every claim, and a commit of the work's outcome is
    // written only while the claim it was made under still holds. A node's
    // claims are found by node (its start, its stop, its renewals).
    r#"
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN claimed_until INTEGER;
ALTER TABLE jobs ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE timers ADD COLUMN claimed_by TEXT;
ALTER TABLE timers ADD COLUMN claimed_until INTEGER;
ALTER TABLE timers ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_claimed ON jobs(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX timers_claimed ON timers(claimed_by) WHERE claimed_by IS NOT NULL;
"#,
    // 11: the nodes of a cluster (issue 22, `pecd cluster status`): each
    // running node's heartbeat, renewed with its claims; a clean stop
    // writes `stopped_at`.
    r#"
CREATE TABLE nodes (
    node         TEXT PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER,
    version      TEXT NOT NULL
);
"#,
    // 12: login failure counts (`store::logins`, issue 22), per account and
    // per source network: kept here only when the database is shared by a
    // cluster's nodes (PostgreSQL); a SQLite node counts in memory, and
    // the table stays empty. Forgotten by `last_ms`.
    r#"
CREATE TABLE login_failures (
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    pending         INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    next_allowed_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX login_failures_last ON login_failures(last_ms);
"#,
    // 13: account self-service (issue 24): app passwords for IMAP, POP3 and
    // SMTP (SHA-256 of a random secret: high entropy needs no slow hash,
    // and the lookup is one index probe), the second factor's one-time
    // recovery codes (hashed the same way), and a second factor being
    // enrolled (sealed like `user_totp.secret`) until its first code
    // confirms it.
    r#"
CREATE TABLE app_passwords (
    id         TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    label      TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used  INTEGER
);
CREATE INDEX app_passwords_address ON app_passwords(address);
CREATE TABLE totp_recovery (
    address TEXT NOT NULL,
    hash    BLOB NOT NULL,
    PRIMARY KEY (address, hash)
) WITHOUT ROWID;
CREATE TABLE totp_pending (
    address    TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    // 14: API tokens (issue 25), stored as the SHA-256 of the token so a
    // copy of the database holds none; `Idempotency-Key`s of
    // `POST /api/v1/messages` per user with the hash of the request body
    // and, once known, the answer to give again (`status` NULL while the
    // first request is still running, with the Message-ID it submits).
    r#"
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    address    TEXT NOT NULL,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used  INTEGER
);
CREATE INDEX api_tokens_address ON api_tokens(address);
CREATE TABLE api_idempotency (
    address    TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    msgid      TEXT NOT NULL,
    status     INTEGER,
    response   BLOB,
    PRIMARY KEY (address, key)
) WITHOUT ROWID;
CREATE INDEX api_idempotency_created ON api_idempotency(created_at);
"#,
    // 15: the notice of a new PEC at an ordinary address (issue 24,
    // `flow::notice`): the address each box names, and the state of its
    // at-most-one-a-minute notices (the next allowed time, the PEC counted
    // since the last notice, the job waiting to tell them).
    r#"
CREATE TABLE notice_settings (
    address     TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    next_at     INTEGER NOT NULL DEFAULT 0,
    held        INTEGER NOT NULL DEFAULT 0,
    summary_job INTEGER
);
"#,
];

/// The log's hash chain and its daily seals. SQL cannot hash, so the rows
/// already there are chained by [`super::log::chain_existing`] right after
/// this batch, in the same transaction; the append-only trigger is lifted
/// for that and put back by it. A seal row changes once at most: when its
/// time stamp token arrives.
const LOG_CHAIN: &str = r#"
DROP TRIGGER log_is_append_only;
ALTER TABLE log ADD COLUMN chain BLOB;
CREATE TABLE log_seals (
    date       TEXT PRIMARY KEY,
    first_id   INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    prev_hash  BLOB NOT NULL,
    last_hash  BLOB NOT NULL,
    seal       BLOB NOT NULL,
    signature  BLOB NOT NULL,
    tsr        BLOB,
    created_at INTEGER NOT NULL,
    stamped_at INTEGER
);
CREATE UNIQUE INDEX log_seals_last_id ON log_seals(last_id);
CREATE TRIGGER log_seals_kept BEFORE DELETE ON log_seals
BEGIN SELECT RAISE(ABORT, 'log seals are kept'); END;
CREATE TRIGGER log_seals_stamped_once BEFORE UPDATE ON log_seals
WHEN OLD.tsr IS NOT NULL OR NEW.seal IS NOT OLD.seal OR NEW.signature IS NOT OLD.signature
     OR NEW.date IS NOT OLD.date OR NEW.last_hash IS NOT OLD.last_hash
BEGIN SELECT RAISE(ABORT, 'a log seal changes only to receive its time stamp'); END;
"#;

/// Bring a fresh database to the schema just before the log chain (tests
/// of what that migration does to rows already there).
#[cfg(test)]
pub(crate) fn migrate_before_log_chain(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let n = MIGRATIONS.iter().take_while(|m| **m != LOG_CHAIN).count();
    for sql in &MIGRATIONS[..n] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", n as i64)?;
    Ok(())
}

/// The schema version this binary migrates to.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Bring the database to the newest schema: every pending migration in one
/// exclusive transaction, the version read inside it, so a second process
/// starting at once waits and then finds nothing left to do, and a failure
/// leaves the database exactly as it was. A database newer than this binary
/// is refused (running on a schema it does not know could corrupt it).
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > latest_version() {
        return Err(StoreError::TooNew {
            found: version,
            known: latest_version(),
        });
    }
    for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
        tx.execute_batch(sql)?;
        if *sql == LOG_CHAIN {
            super::log::chain_existing(&tx)?;
        }
    }
    if version < latest_version() {
        tx.pragma_update(None, "user_version", latest_version())?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::LOG_RETENTION_DAYS;

    #[test]
    fn log_refuses_update_and_recent_delete() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let now = crate::store::now_ms();
        c.execute("INSERT INTO log(ts, event) VALUES (?1, 'x')", [now])
            .unwrap();
        assert!(c.execute("UPDATE log SET event = 'y'", []).is_err());
        assert!(c.execute("DELETE FROM log", []).is_err());
        let old = now - (LOG_RETENTION_DAYS + 1) * 86_400_000;
        c.execute("INSERT INTO log(ts, event) VALUES (?1, 'old')", [old])
            .unwrap();
        assert_eq!(
            c.execute("DELETE FROM log WHERE event = 'old'", [])
                .unwrap(),
            1
        );
    }

    fn version(c: &Connection) -> i64 {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_failing_migration_leaves_the_database_as_it_was() {
        let mut c = Connection::open_in_memory().unwrap();
        // A table that migration 1 is about to create makes it fail midway.
        c.execute_batch("CREATE TABLE jobs (x INTEGER);").unwrap();
        assert!(migrate(&mut c).is_err());
        assert_eq!(version(&c), 0);
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "nothing of the batch is left");
    }

    #[test]
    fn a_database_from_a_newer_pecd_is_refused() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        assert_eq!(version(&c), latest_version());
        c.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        let e = migrate(&mut c).unwrap_err().to_string();
        assert!(e.contains("newer than this pecd"), "{e}");
    }
}
