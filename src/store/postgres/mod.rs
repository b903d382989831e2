//! The PostgreSQL backend of the store (`[store] backend = "postgresql"`):
//! the one module that names the `postgres` driver. It implements the
//! same typed operations as `sqlite` (`backend::Tx`), one `impl PgDb`
//! per area (`users.rs`, `queue.rs`, `log.rs` …), so the transaction
//! scripts above are the ones the SQLite backend runs.
//!
//! There is no writer thread: each write is one transaction on a pooled
//! connection, on the calling (blocking) thread; PostgreSQL commits
//! concurrent transactions together itself. The spool and the new
//! directory entries are synced before each commit, as with SQLite, so a
//! row never names bytes that could be lost. The log's hash chain is
//! extended under a transaction-scoped advisory lock, so concurrent
//! writers (threads of one node, or nodes) keep one chain.
//!
//! The sync `postgres` client runs its own small tokio runtime per
//! connection: it must only be called off the async threads (the store's
//! `read`/`write` move there), and connections are dropped on a thread of
//! their own for the same reason.

mod account;
mod api;
mod claims;
mod log;
mod logins;
mod messages;
mod nodes;
mod quarantine;
mod queue;
pub(in crate::store) mod schema;
mod seal;
mod sessions;
mod users;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use ::postgres::types::ToSql;
use ::postgres::{Client, Row, Statement, Transaction};

use super::backend::Tx;
use super::log::ChainTip;
use super::{PgSettings, Result, StoreError};

/// A driver error in the driver's own words, with its causes (the
/// driver's `Display` alone says only "db error").
#[derive(Debug)]
pub(in crate::store) struct DriverError(String);

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DriverError {}

/// The driver's message of `e` followed by each of its causes.
fn words(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        StoreError::Database(Box::new(DriverError(words(&e))))
    }
}

/// One pooled connection and its prepared statements (kept for the
/// connection's life: a statement is parsed once per connection).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// What a [`PgDb`] runs its statements on.
enum On<'a> {
    /// A write: one transaction, committed by the caller.
    Tx(Transaction<'a>),
    /// A read: each statement on its own (as SQLite's read connections).
    Plain(&'a mut Client),
}

/// The database inside one store call on PostgreSQL (the [`Tx`] the
/// scripts get).
pub(in crate::store) struct PgDb<'a> {
    on: RefCell<On<'a>>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
    /// The log's chain tip once this transaction holds the log's lock.
    tip: Cell<Option<ChainTip>>,
}

/// Parameters of a statement.
type Params<'p> = [&'p (dyn ToSql + Sync)];

impl PgDb<'_> {
    fn statement(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let st = match &mut *self.on.borrow_mut() {
            On::Tx(t) => t.prepare(sql)?,
            On::Plain(c) => c.prepare(sql)?,
        };
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Run a statement; how many rows it changed.
    fn exec(&self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let st = self.statement(sql)?;
        Ok(match &mut *self.on.borrow_mut() {
            On::Tx(t) => t.execute(&st, params)?,
            On::Plain(c) => c.execute(&st, params)?,
        })
    }

    /// Every row of a query.
    fn rows(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        Ok(match &mut *self.on.borrow_mut() {
            On::Tx(t) => t.query(&st, params)?,
            On::Plain(c) => c.query(&st, params)?,
        })
    }

    /// The row of a query that gives at most one.
    fn opt(&self, sql: &str, params: &Params<'_>) -> Result<Option<Row>> {
        let st = self.statement(sql)?;
        Ok(match &mut *self.on.borrow_mut() {
            On::Tx(t) => t.query_opt(&st, params)?,
            On::Plain(c) => c.query_opt(&st, params)?,
        })
    }

    /// The row of a query that gives exactly one.
    fn one(&self, sql: &str, params: &Params<'_>) -> Result<Row> {
        let st = self.statement(sql)?;
        Ok(match &mut *self.on.borrow_mut() {
            On::Tx(t) => t.query_one(&st, params)?,
            On::Plain(c) => c.query_one(&st, params)?,
        })
    }

    /// Prove the store commits: the `health` row's time.
    pub(in crate::store) fn health_touch(&self, now: i64) -> Result<()> {
        self.exec(
            "INSERT INTO health (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = $1",
            &[&now],
        )?;
        Ok(())
    }
}

delegate_tx_for!(PgDb<'_>);

/// What runs before each commit (see `sqlite::BeforeCommit`); called from
/// any thread.
pub(in crate::store) type BeforeCommit = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// The connection settings of `s`, with the password of `[store]`.
fn config_of(s: &PgSettings) -> Result<::postgres::Config> {
    let mut cfg: ::postgres::Config = s.url.parse()?;
    if let Some(p) = &s.password {
        cfg.password(p.as_bytes());
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(std::time::Duration::from_secs(10));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("pecd");
    }
    Ok(cfg)
}

/// TLS through OpenSSL (the `sslmode` of the URL decides whether it is
/// used), verifying the server against the system's roots.
fn tls() -> Result<postgres_openssl::MakeTlsConnector> {
    let b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
        .map_err(|e| StoreError::Database(Box::new(e)))?;
    Ok(postgres_openssl::MakeTlsConnector::new(b.build()))
}

/// A small pool of at most `max` connections; a caller waits for one
/// when all are in use.
struct Pool {
    cfg: ::postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    open: usize,
    closed: bool,
}

/// Drop connections on a thread of their own: each owns a tokio runtime,
/// which may not be dropped on an async thread.
fn drop_off_thread(conns: Vec<Conn>) {
    if conns.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("pecd-pg-close".into())
        .spawn(move || drop(conns));
}

impl Pool {
    fn new(s: &PgSettings) -> Result<Pool> {
        Ok(Pool {
            cfg: config_of(s)?,
            tls: tls()?,
            max: s.pool.max(1),
            state: Mutex::default(),
            freed: Condvar::new(),
        })
    }

    fn get(&self) -> Result<Conn> {
        let mut st = self.state.lock().map_err(|_| StoreError::Closed)?;
        loop {
            if st.closed {
                return Err(StoreError::Closed);
            }
            if let Some(c) = st.idle.pop() {
                if !c.client.is_closed() {
                    return Ok(c);
                }
                st.open -= 1;
                drop_off_thread(vec![c]);
                continue;
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.cfg.connect(self.tls.clone()) {
                    Ok(client) => Ok(Conn {
                        client,
                        statements: HashMap::new(),
                    }),
                    Err(e) => {
                        if let Ok(mut st) = self.state.lock() {
                            st.open -= 1;
                        }
                        self.freed.notify_one();
                        Err(e.into())
                    }
                };
            }
            st = self.freed.wait(st).map_err(|_| StoreError::Closed)?;
        }
    }

    fn put(&self, c: Conn) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.closed || c.client.is_closed() {
            st.open -= 1;
            drop_off_thread(vec![c]);
        } else {
            st.idle.push(c);
        }
        drop(st);
        self.freed.notify_one();
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
            let idle = std::mem::take(&mut st.idle);
            st.open -= idle.len();
            drop_off_thread(idle);
        }
        self.freed.notify_all();
    }
}

/// The PostgreSQL database of a running store.
pub(in crate::store) struct Pg {
    pool: Pool,
    before_commit: BeforeCommit,
}

impl Pg {
    /// Connect, migrate the database to the newest schema (once, whichever
    /// node comes first) and keep up to `[store] pool` connections.
    pub(in crate::store) fn open(s: &PgSettings, before_commit: BeforeCommit) -> Result<Pg> {
        let pool = Pool::new(s)?;
        let mut c = pool.get()?;
        let r = schema::migrate(&mut c.client);
        pool.put(c);
        r?;
        Ok(Pg {
            pool,
            before_commit,
        })
    }

    /// Connect without migrating or writing: the CLI's read-only look. A
    /// database pecd never migrated, or migrated by a newer pecd, is
    /// refused.
    pub(in crate::store) fn inspect(s: &PgSettings) -> Result<Pg> {
        let pool = Pool::new(&PgSettings {
            pool: 1,
            ..s.clone()
        })?;
        let mut c = pool.get()?;
        let r = schema::check(&mut c.client);
        pool.put(c);
        r?;
        Ok(Pg {
            pool,
            before_commit: Box::new(|| Ok(())),
        })
    }

    /// Run `f` in one transaction, committed after the spool and the new
    /// directory entries are synced; on this (blocking) thread.
    pub(in crate::store) fn write_blocking<R>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<R>,
    ) -> Result<R> {
        let mut conn = self.pool.get()?;
        let r = (|| {
            let Conn { client, statements } = &mut conn;
            let t = client.transaction()?;
            let db = PgDb {
                on: RefCell::new(On::Tx(t)),
                statements: RefCell::new(statements),
                tip: Cell::new(None),
            };
            let out = f(&db)?;
            (self.before_commit)()?;
            match db.on.into_inner() {
                On::Tx(t) => t.commit()?,
                On::Plain(_) => {}
            }
            Ok(out)
        })();
        // A failed statement leaves a prepared statement that may be stale
        // (a migration in between): the cache starts again.
        if r.is_err() {
            conn.statements.clear();
        }
        self.pool.put(conn);
        r
    }

    /// Run a read-only closure on a pooled connection, on this thread.
    pub(in crate::store) fn read_blocking<R>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<R>,
    ) -> Result<R> {
        let mut conn = self.pool.get()?;
        let r = {
            let Conn { client, statements } = &mut conn;
            let db = PgDb {
                on: RefCell::new(On::Plain(client)),
                statements: RefCell::new(statements),
                tip: Cell::new(None),
            };
            f(&db)
        };
        if r.is_err() {
            conn.statements.clear();
        }
        self.pool.put(conn);
        r
    }

    /// Close the idle connections; later calls fail with `Closed`.
    pub(in crate::store) fn close(&self) {
        self.pool.close();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.pool.close();
    }
}

/// Whether the database at `s` answers: connect and ask for its schema
/// version (`check-config`); the driver's words when it does not.
pub(in crate::store) fn probe(s: &PgSettings) -> Result<i64> {
    let cfg = config_of(s)?;
    let mut c = cfg.connect(tls()?)?;
    let v = schema::version(&mut c);
    drop_off_thread(vec![Conn {
        client: c,
        statements: HashMap::new(),
    }]);
    v
}
