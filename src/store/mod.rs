//! Durable state: one SQLite database (users, PEC log, work queue, timers,
//! accepted messages) plus message bytes in fsynced files (spool, Maildirs).
//!
//! One writer thread owns the write connection. Callers hand it closures; it
//! runs every closure that is waiting in one transaction (each in its own
//! savepoint, so one failure does not spoil the others) and commits once:
//! group commit, so many SMTP sessions share one fsync instead of paying one
//! each. A closure's result is released only after that commit, which is what
//! lets the SMTP layer answer `250` only for work that is on disk.

pub mod atomic;
pub mod backup;
mod commit;
pub use commit::Committed;
pub mod inflight;
pub mod log;
pub mod mailbox;
pub mod maildir;
pub mod messages;
pub mod modes;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod schema;
pub mod seal;
pub mod sessions;
pub mod spool;
pub mod users;
mod work;
pub use work::MailboxUsage;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::Connection;

/// Errors from the store.
#[derive(Debug)]
pub enum StoreError {
    /// The database said no (its own words: a second backend has others).
    Database(Box<dyn std::error::Error + Send + Sync>),
    /// A file operation failed.
    Io(std::io::Error),
    /// The writer thread is gone (shutting down).
    Closed,
    /// The batch the closure ran in failed to commit.
    Commit(String),
    /// There is no database at this path yet.
    NoDatabase(PathBuf),
    /// A mailbox delivery of a batch failed.
    Mailbox(String, maildir::DeliveryError),
    /// The database was migrated by a newer pecd.
    TooNew {
        /// Its schema version.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "database: {e}"),
            StoreError::Io(e) => write!(f, "file system: {e}"),
            StoreError::Closed => write!(f, "store is shut down"),
            StoreError::Commit(e) => write!(f, "commit failed: {e}"),
            StoreError::Mailbox(a, e) => write!(f, "{a}: {e}"),
            StoreError::TooNew { found, known } => write!(
                f,
                "the database has schema version {found}, newer than this pecd knows ({known}): \
                 run the newer pecd, or restore the backup taken before the upgrade (docs/operations.md, Upgrades)"
            ),
            StoreError::NoDatabase(p) => {
                write!(f, "{}: no database yet (has the daemon run?)", p.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// What a store operation gives back.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The database inside one store call, as the typed operations of the store
/// modules take it. Callers never see what is behind it: only `src/store/`
/// speaks SQL, so a second backend (PostgreSQL) replaces this and the
/// operations' bodies without touching the rest of the daemon.
pub struct Db<'a> {
    conn: &'a Connection,
    /// The writer thread's last log row and its chain hash (None: not read
    /// yet); absent on other connections, which read it from the table.
    tip: Option<&'a std::cell::Cell<Option<log::ChainTip>>>,
}

impl<'a> Db<'a> {
    pub(in crate::store) fn new(conn: &'a Connection) -> Db<'a> {
        Db { conn, tip: None }
    }

    fn writer(conn: &'a Connection, tip: &'a std::cell::Cell<Option<log::ChainTip>>) -> Db<'a> {
        Db {
            conn,
            tip: Some(tip),
        }
    }

    pub(in crate::store) fn tip(&self) -> Option<&'a std::cell::Cell<Option<log::ChainTip>>> {
        self.tip
    }

    pub(in crate::store) fn sql(&self) -> &'a Connection {
        self.conn
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

type Completion = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type WriteJob = Box<dyn FnOnce(&Db<'_>) -> (bool, Completion) + Send>;

/// Layout of the data folder.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The data folder itself.
    pub data_dir: PathBuf,
    /// `pecd.sqlite3`.
    pub db: PathBuf,
    /// Message bytes waiting for work.
    pub spool: PathBuf,
    /// Root of the Maildirs (`mail/<domain>/<localpart>/`).
    pub mail: PathBuf,
}

impl Paths {
    /// The standard layout under `data_dir`.
    pub fn new(data_dir: &Path) -> Paths {
        Paths {
            data_dir: data_dir.to_path_buf(),
            db: data_dir.join("pecd.sqlite3"),
            spool: data_dir.join("spool"),
            mail: data_dir.join("mail"),
        }
    }
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Directories with new entries whose fsync is owed before the next commit.
type DirtyDirs = Arc<Mutex<HashSet<PathBuf>>>;

struct Inner {
    paths: Paths,
    /// When this process opened the store (unix ms).
    opened_ms: i64,
    spool: Arc<spool::Spool>,
    dirty: DirtyDirs,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    readers: Mutex<Vec<Connection>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Read an existing store without migrating it or starting a writer: the
/// CLI beside a running daemon (WAL lets both work at once).
pub fn inspect<R>(data_dir: &Path, f: impl FnOnce(&Db<'_>) -> Result<R>) -> Result<R> {
    Inspector::open(data_dir)?.run(f)
}

/// A read-only look at an existing store, which a running daemon may own
/// (WAL lets both work at once): what `pecd queue list|show`, `pecd
/// quarantine list|show` and `pecd log` (`verify`, `export`) read. It
/// neither migrates the database nor starts a writer.
pub struct Inspector {
    conn: Connection,
}

impl Inspector {
    /// Open the store under `data_dir`; an error if it has no database yet.
    pub fn open(data_dir: &Path) -> Result<Inspector> {
        let db = Paths::new(data_dir).db;
        if !db.exists() {
            return Err(StoreError::NoDatabase(db));
        }
        Ok(Inspector {
            conn: open_connection(&db)?,
        })
    }

    pub(in crate::store) fn run<R>(&self, f: impl FnOnce(&Db<'_>) -> Result<R>) -> Result<R> {
        f(&Db::new(&self.conn))
    }
}

/// A migrated in-memory store to inspect, and the writes its users' unit
/// tests need to set it up.
#[cfg(test)]
impl Inspector {
    pub(crate) fn in_memory() -> Inspector {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        Inspector { conn }
    }

    pub(crate) fn test_append(&self, e: &log::Event) -> i64 {
        self.run(|db| log::append(db, e)).unwrap()
    }

    pub(crate) fn test_purge_log(&self, now_ms: i64) -> usize {
        self.run(|db| log::purge_expired(db, now_ms)).unwrap()
    }

    pub(crate) fn test_insert_seal(&self, s: &seal::Seal) -> bool {
        self.run(|db| seal::insert(db, s)).unwrap()
    }
}

/// A migrated in-memory database for the store modules' unit tests.
#[cfg(test)]
pub(crate) struct MemDb(Connection);

#[cfg(test)]
impl MemDb {
    pub(crate) fn new() -> MemDb {
        let mut c = Connection::open_in_memory().unwrap();
        schema::migrate(&mut c).unwrap();
        MemDb(c)
    }

    pub(crate) fn db(&self) -> Db<'_> {
        Db::new(&self.0)
    }
}

/// Open a connection with the settings every pecd connection uses.
pub(crate) fn open_connection(db: &Path) -> rusqlite::Result<Connection> {
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

impl Store {
    /// Open (creating and migrating) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let opened_ms = now_ms();
        let paths = Paths::new(data_dir);
        std::fs::create_dir_all(&paths.spool)?;
        std::fs::create_dir_all(&paths.mail)?;
        let mut conn = open_connection(&paths.db)?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let dirty: DirtyDirs = Arc::default();
        let spool = Arc::new(spool::Spool::open(&paths.spool)?);
        let (d2, s2) = (dirty.clone(), spool.clone());
        let thread = std::thread::Builder::new()
            .name("pecd-store-writer".into())
            .spawn(move || writer_loop(conn, rx, d2, s2))?;
        Ok(Store {
            inner: Arc::new(Inner {
                paths,
                opened_ms,
                spool,
                dirty,
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The data folder layout.
    pub fn paths(&self) -> &Paths {
        &self.inner.paths
    }

    fn mark_dirty(&self, dir: &Path) {
        if let Ok(mut d) = self.inner.dirty.lock() {
            d.insert(dir.to_path_buf());
        }
    }

    /// Append message bytes to the spool; they reach the disk with the next
    /// group commit, before any row naming them commits.
    pub fn put_blob(&self, bytes: &[u8]) -> std::io::Result<String> {
        self.inner.spool.append(bytes)
    }

    /// The bytes of a spool name.
    pub fn get_blob(&self, name: &str) -> std::io::Result<Vec<u8>> {
        self.inner.spool.get(name)
    }

    /// The spool itself (housekeeping).
    pub fn spool(&self) -> &spool::Spool {
        &self.inner.spool
    }

    /// Deliver into a Maildir (see [`maildir::deliver`]) for work created at
    /// `created_ms` and tried `attempts` times before; the `new/` entry is
    /// made durable with the next group commit, before the delivery is recorded.
    pub fn deliver(
        &self,
        address: &str,
        name: &str,
        bytes: &[u8],
        created_ms: i64,
        attempts: i64,
    ) -> std::result::Result<PathBuf, maildir::DeliveryError> {
        // Work created by this process and never tried cannot have left a
        // copy that the user has since read and flagged.
        let thorough = attempts > 0 || created_ms < self.inner.opened_ms;
        let path = maildir::deliver(&self.inner.paths.mail, address, name, bytes, thorough)?;
        if let Some(dir) = path.parent() {
            self.mark_dirty(dir);
        }
        Ok(path)
    }

    fn submit(&self, job: WriteJob) -> Result<()> {
        let guard = self.inner.writer.lock().map_err(|_| StoreError::Closed)?;
        guard
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    fn make_job<R, F>(f: F, done: impl FnOnce(Result<R>) + Send + 'static) -> WriteJob
    where
        F: FnOnce(&Db<'_>) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        Box::new(move |db: &Db<'_>| match f(db) {
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
        })
    }

    /// Run `f` in the next group-committed transaction; resolves after the commit.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db<'_>) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Self::make_job(f, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Prove the store takes writes: a row committed through the writer
    /// thread (so a stuck writer or a full or read-only disk shows), and a
    /// file created and removed in the spool folder.
    pub async fn check_writable(&self) -> std::result::Result<(), String> {
        let now = now_ms();
        self.write(move |db| {
            db.sql().execute(
                "INSERT INTO health (id, at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET at = ?1",
                [now],
            )?;
            Ok(())
        })
        .await
        .map_err(|e| format!("database: {e}"))?;
        let probe = self.paths().spool.join(".health-probe");
        let spool = self.paths().spool.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::write(&probe, b"ok")
                .and_then(|()| std::fs::remove_file(&probe))
                .map_err(|e| format!("spool {}: {e}", spool.display()))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Jobs by state, for the metrics.
    pub async fn job_counts(&self) -> Result<Vec<(queue::JobState, i64)>> {
        self.read(queue::counts).await
    }

    /// Blocking form of [`Store::write`] for the CLI and worker threads.
    pub fn write_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db<'_>) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        self.submit(Self::make_job(f, move |r| {
            let _ = tx.send(r);
        }))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Run a read-only closure on a pooled connection (off the async threads).
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db<'_>) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Commit(e.to_string()))?
    }

    /// Blocking form of [`Store::read`].
    pub fn read_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Db<'_>) -> Result<R>,
    {
        let conn = {
            let mut pool = self.inner.readers.lock().map_err(|_| StoreError::Closed)?;
            pool.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_connection(&self.inner.paths.db)?,
        };
        let r = f(&Db::new(&conn));
        if let Ok(mut pool) = self.inner.readers.lock() {
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
        r
    }

    /// Stop the writer after the work already handed to it; waits for it.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        if let Ok(mut t) = self.inner.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<WriteJob>,
    dirty: DirtyDirs,
    spool: Arc<spool::Spool>,
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
            if let Err(e) = spool.sync() {
                tracing::error!(error = %e, "spool fsync failed");
                return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
            }
            let dirs: Vec<PathBuf> = dirty
                .lock()
                .map(|mut d| d.drain().collect())
                .unwrap_or_default();
            for d in &dirs {
                if let Err(e) = spool::sync_dir(d) {
                    tracing::error!(dir = %d.display(), error = %e, "directory fsync failed");
                    return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
                }
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

/// Milliseconds since the Unix epoch (the store's time unit).
pub fn now_ms() -> i64 {
    crate::pec::clock::since_epoch().as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_delivery_finds_the_copy_the_user_already_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mail = store.paths().mail.clone();
        let box_dir = maildir::create(&mail, "bob@pec.beta.test").unwrap();
        let bytes = b"Subject: z\r\n\r\nbody\r\n";
        let name = maildir::file_name_for("k", 1_000, "mx.test");
        let flagged = box_dir.join("cur").join(format!("{name}:2,S"));
        std::fs::write(&flagged, bytes).unwrap();
        let opened = store.inner.opened_ms;
        // Work left by an earlier process, and a retry in this one.
        for (created, attempts) in [(opened - 1, 0), (opened + 1, 1)] {
            let got = store
                .deliver("bob@pec.beta.test", &name, bytes, created, attempts)
                .unwrap();
            assert_eq!(got, flagged);
        }
        assert_eq!(std::fs::read_dir(box_dir.join("new")).unwrap().count(), 0);
        store.close();
    }

    #[tokio::test]
    async fn failed_closure_does_not_spoil_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.write(|c| {
            c.sql().execute(
                "INSERT INTO users(address, password_hash, created_at) VALUES ('a@x.test','h',0)",
                [],
            )?;
            Ok(())
        });
        let b = store.write(|c| {
            c.sql().execute(
                "INSERT INTO users(address, password_hash, created_at) VALUES ('b@x.test','h',0)",
                [],
            )?;
            Err::<(), _>(StoreError::Commit("refused".into()))
        });
        let (ra, rb) = tokio::join!(a, b);
        assert!(ra.is_ok());
        assert!(rb.is_err());
        let n: i64 = store
            .read(|c| {
                Ok(c.sql()
                    .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
