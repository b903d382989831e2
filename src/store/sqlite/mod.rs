//! The SQLite backend of the store: the one module that speaks SQL and
//! knows rusqlite. Everything above it goes through [`Db`]'s typed
//! operations (one `impl Db` per area: `users.rs`, `queue.rs`, `log.rs` …),
//! so a second backend (PostgreSQL) stands beside this one without
//! touching the rest of the daemon.
//!
//! One writer thread owns the write connection. The store hands it closures
//! over [`Db`]; it runs every closure that is waiting in one transaction
//! (each in its own savepoint, so one failure does not spoil the others) and
//! commits once: group commit, so many SMTP sessions share one fsync instead
//! of paying one each. A closure's result is released only after that
//! commit, which is what lets the SMTP layer answer `250` only for work that
//! is on disk.

mod account;
mod api;
pub(in crate::store) mod backup;
pub(in crate::store) mod claims;
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

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};

use rusqlite::Connection;

use super::backend::Tx;
use super::log::ChainTip;
use super::{Result, StoreError};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// The database inside one store call: what the store's closures get, and
/// the typed operations of this module's children take. Only this module
/// sees the connection behind it.
pub(in crate::store) struct Db<'a> {
    conn: &'a Connection,
    /// The writer thread's last log row and its chain hash (None: not read
    /// yet); absent on other connections, which read it from the table.
    tip: Option<&'a std::cell::Cell<Option<ChainTip>>>,
}

impl<'a> Db<'a> {
    fn new(conn: &'a Connection) -> Db<'a> {
        Db { conn, tip: None }
    }

    fn writer(conn: &'a Connection, tip: &'a std::cell::Cell<Option<ChainTip>>) -> Db<'a> {
        Db {
            conn,
            tip: Some(tip),
        }
    }

    fn tip(&self) -> Option<&'a std::cell::Cell<Option<ChainTip>>> {
        self.tip
    }

    fn sql(&self) -> &'a Connection {
        self.conn
    }

    /// Prove the writer commits: the `health` row's time.
    pub(in crate::store) fn health_touch(&self, now: i64) -> Result<()> {
        self.sql().execute(
            "INSERT INTO health (id, at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET at = ?1",
            [now],
        )?;
        Ok(())
    }
}

delegate_tx_for!(Db<'_>);

/// Open a connection with the settings every pecd connection uses.
fn open_connection(db: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(db)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk when it returns; the 250 promise depends on it.
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals of the group commit's savepoints would otherwise be
    // files created and deleted per batch.
    c.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(c)
}

type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type WriteJob = Box<dyn FnOnce(&Db<'_>) -> (bool, Completion) + Send>;

/// What the writer runs before each commit: make durable the bytes and
/// directory entries the batch's rows name (a row never names bytes that
/// could be lost). An error fails the whole batch.
pub(in crate::store) type BeforeCommit = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// A database opened and migrated to the newest schema, its writer not
/// started yet.
pub(in crate::store) struct Migrated {
    path: PathBuf,
    conn: Connection,
}

impl Migrated {
    /// Open (creating) the database at `path` and migrate it.
    pub(in crate::store) fn open(path: &Path) -> Result<Migrated> {
        let mut conn = open_connection(path)?;
        schema::migrate(&mut conn)?;
        Ok(Migrated {
            path: path.to_path_buf(),
            conn,
        })
    }
}

/// The database of a running store: its writer thread and a pool of read
/// connections.
pub(in crate::store) struct Sqlite {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    readers: Mutex<Vec<Connection>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Sqlite {
    /// Start the writer thread of `db`, running `before_commit` before each
    /// commit.
    pub(in crate::store) fn start(db: Migrated, before_commit: BeforeCommit) -> Result<Sqlite> {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let Migrated { path, conn } = db;
        let thread = std::thread::Builder::new()
            .name("pecd-store-writer".into())
            .spawn(move || writer_loop(conn, rx, before_commit))?;
        Ok(Sqlite {
            path,
            writer: Mutex::new(Some(tx)),
            readers: Mutex::new(Vec::new()),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Run `f` in the next group-committed transaction, and `done` with its
    /// result once that transaction committed (or failed).
    pub(in crate::store) fn write_then<R, F>(
        &self,
        f: F,
        done: impl FnOnce(Result<R>) + Send + 'static,
    ) -> Result<()>
    where
        F: FnOnce(&dyn Tx) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let job: WriteJob = Box::new(move |db: &Db<'_>| match f(db) {
            Ok(r) => (
                true,
                Box::new(
                    move |committed: std::result::Result<(), String>| match committed {
                        Ok(()) => done(Ok(r)),
                        Err(e) => done(Err(StoreError::Commit(e))),
                    },
                ) as Completion,
            ),
            Err(e) => (false, Box::new(move |_| done(Err(e))) as Completion),
        });
        let guard = self.writer.lock().map_err(|_| StoreError::Closed)?;
        guard
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    /// Run a read-only closure on a pooled connection, on this thread.
    pub(in crate::store) fn read_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Tx) -> Result<R>,
    {
        let conn = {
            let mut pool = self.readers.lock().map_err(|_| StoreError::Closed)?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let r = f(&Db::new(&conn));
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        r
    }

    /// Stop the writer after the work already handed to it; waits for it.
    pub(in crate::store) fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

/// One connection to an existing database, neither migrated nor written:
/// the CLI beside a running daemon (WAL lets both work at once).
pub(in crate::store) struct ReadOnly {
    conn: Connection,
}

impl ReadOnly {
    /// Open the database at `path`, which must exist.
    pub(in crate::store) fn open(path: &Path) -> Result<ReadOnly> {
        if !path.exists() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        Ok(ReadOnly {
            conn: open_connection(path)?,
        })
    }

    /// A migrated in-memory database (unit tests of the store's users).
    #[cfg(test)]
    pub(in crate::store) fn in_memory() -> ReadOnly {
        ReadOnly {
            conn: MemDb::new().0,
        }
    }

    /// Run `f` on it.
    pub(in crate::store) fn run<R>(&self, f: impl FnOnce(&dyn Tx) -> Result<R>) -> Result<R> {
        f(&Db::new(&self.conn))
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<WriteJob>,
    mut before_commit: BeforeCommit,
) {
    // The log's chain tip lives here, read from the table at the first
    // append, so each row costs one hash and no extra read.
    let tip = std::cell::Cell::new(None);
    while let Ok(first) = rx.recv() {
        let batch_tip = tip.get();
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut completions: Vec<(bool, Completion)> = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let mut txn = conn.transaction()?;
            for job in batch.drain(..) {
                let mut sp = txn.savepoint()?;
                let job_tip = tip.get();
                let (ok, done) = job(&Db::writer(&sp, &tip));
                if ok {
                    sp.commit()?;
                } else {
                    sp.rollback()?;
                    drop(sp);
                    tip.set(job_tip);
                }
                completions.push((ok, done));
            }
            // Bytes and files written before these rows were handed to us
            // must be on disk before a row names them.
            if let Err(e) = before_commit() {
                return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
            }
            txn.commit()
        })();
        let committed = outcome.map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!(error = %e, "store commit failed");
            tip.set(batch_tip);
        }
        // A job that was not committed must not be told it was; those that
        // failed on their own already carry their error.
        for (_, done) in completions {
            done(committed.clone());
        }
        // Jobs left unrun (the transaction could not start) are dropped here:
        // their callers see `StoreError::Closed`, never a false success.
        drop(batch);
    }
}

/// A migrated in-memory database for this module's unit tests.
#[cfg(test)]
pub(in crate::store) struct MemDb(Connection);

#[cfg(test)]
impl MemDb {
    pub(in crate::store) fn new() -> MemDb {
        let mut c = Connection::open_in_memory().unwrap();
        schema::migrate(&mut c).unwrap();
        MemDb(c)
    }

    pub(in crate::store) fn db(&self) -> Db<'_> {
        Db::new(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};

    #[tokio::test]
    async fn failed_closure_does_not_spoil_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.write(|c| c.user_add("a@x.test", "h", 0));
        let b = store.write(|c| {
            c.user_add("b@x.test", "h", 0)?;
            Err::<(), _>(StoreError::Commit("refused".into()))
        });
        let (ra, rb) = tokio::join!(a, b);
        assert!(ra.is_ok());
        assert!(rb.is_err());
        let users = store.read(|c| c.users_with_quotas()).await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].0, "a@x.test");
    }
}
