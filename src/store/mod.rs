//! Durable state: one database (users, PEC log, work queue, timers,
//! accepted messages) plus message bytes in fsynced files (spool, Maildirs).
//!
//! The rest of the daemon calls the typed methods of [`Store`] (and of
//! [`Inspector`], for the commands that read a store a daemon owns); the
//! steps of the PEC flows write through [`Store::commit`]. Only the
//! backend, `sqlite`, speaks SQL: there the writes of all callers are
//! group-committed by one writer thread, and a result is released only
//! after its commit, which is what lets the SMTP layer answer `250` only
//! for work that is on disk.

pub mod account;
pub mod api;
pub mod atomic;
#[macro_use]
mod backend;
pub mod backup;
pub mod claims;
pub mod cluster;
mod commit;
#[cfg(test)]
mod conformance;
pub use commit::{Committed, Staged};
pub mod log;
mod logins;
pub mod mailbox;
pub mod maildir;
pub mod messages;
pub mod modes;
mod postgres;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod seal;
pub mod sessions;
pub mod spool;
mod sqlite;
pub mod users;
mod work;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use backend::Tx;
use sqlite::Sqlite;

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
    /// The PostgreSQL database has no pecd schema yet.
    NoSchema,
    /// A mailbox delivery of a batch failed.
    Mailbox(String, maildir::DeliveryError),
    /// The batch ran under a claim that no longer holds (another node took
    /// the work over after the lease lapsed): nothing of it was written.
    LostClaim,
    /// A batch's guard found its state changed by another writer since
    /// the decision read it (`Guard::Notice`): nothing of it was written;
    /// decide again on the new state.
    Changed(String),
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
            StoreError::Changed(e) => write!(f, "changed meanwhile: {e}"),
            StoreError::Mailbox(a, e) => write!(f, "{a}: {e}"),
            StoreError::LostClaim => write!(
                f,
                "the claim on this work was lost (its lease lapsed and another node took it): outcome not recorded"
            ),
            StoreError::TooNew { found, known } => write!(
                f,
                "the database has schema version {found}, newer than this pecd knows ({known}): \
                 run the newer pecd, or restore the backup taken before the upgrade (docs/operations.md, Upgrades)"
            ),
            StoreError::NoSchema => write!(
                f,
                "the PostgreSQL database has no pecd schema yet (has the daemon run against it?)"
            ),
            StoreError::NoDatabase(p) => {
                write!(f, "{}: no database yet (has the daemon run?)", p.display())
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// What a store operation gives back.
pub type Result<T> = std::result::Result<T, StoreError>;

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

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

/// Which database holds the store's rows (`[store] backend`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Database {
    /// `pecd.sqlite3` under the data folder (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL server.
    Postgres(PgSettings),
}

/// How to reach the PostgreSQL database (`[store] url`, `password_file`,
/// `pool`).
#[derive(Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// libpq-style URL or key=value string.
    pub url: String,
    /// The password, when it is not in the URL (`password_file` or
    /// `PGPASSWORD`).
    pub password: Option<String>,
    /// Connections kept at most.
    pub pool: usize,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("pool", &self.pool)
            .finish()
    }
}

impl Database {
    /// Whether the database answers (`check-config`): for PostgreSQL, a
    /// connection and its schema version, else the driver's words; a
    /// database of a newer pecd is refused.
    pub fn probe(&self) -> Result<()> {
        match self {
            Database::Sqlite => Ok(()),
            Database::Postgres(s) => {
                let found = postgres::probe(s)?;
                let known = postgres::schema::latest_version();
                if found > known {
                    return Err(StoreError::TooNew { found, known });
                }
                Ok(())
            }
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
    db: Backend,
}

/// The database behind a running store.
enum Backend {
    /// One writer thread with group commit, and a pool of readers.
    Sqlite(Sqlite),
    /// One transaction per write on a pooled connection.
    Postgres(Box<postgres::Pg>),
}

/// A read-only look at an existing store, which a running daemon may own
/// (WAL lets both work at once): what `pecd queue list|show`, `pecd
/// quarantine list|show` and `pecd log` (`verify`, `export`) read. It
/// neither migrates the database nor starts a writer.
pub struct Inspector {
    db: ReadOnlyBackend,
}

/// The database behind an [`Inspector`].
enum ReadOnlyBackend {
    /// One connection, neither migrated nor written.
    Sqlite(sqlite::ReadOnly),
    /// One connection, to a database pecd migrated already.
    Postgres(Box<postgres::Pg>),
}

impl Inspector {
    /// Open the store under `data_dir`; an error if it has no database yet.
    pub fn open(data_dir: &Path) -> Result<Inspector> {
        Inspector::open_with(data_dir, &Database::Sqlite)
    }

    /// Open the store of `database` (SQLite: under `data_dir`).
    pub fn open_with(data_dir: &Path, database: &Database) -> Result<Inspector> {
        if let Database::Postgres(s) = database {
            return Ok(Inspector {
                db: ReadOnlyBackend::Postgres(Box::new(postgres::Pg::inspect(s)?)),
            });
        }
        Ok(Inspector {
            db: ReadOnlyBackend::Sqlite(sqlite::ReadOnly::open(&Paths::new(data_dir).db)?),
        })
    }

    fn run<R>(&self, f: impl FnOnce(&dyn Tx) -> Result<R>) -> Result<R> {
        match &self.db {
            ReadOnlyBackend::Sqlite(db) => db.run(f),
            ReadOnlyBackend::Postgres(db) => db.read_blocking(f),
        }
    }
}

/// A migrated in-memory store to inspect, and the writes its users' unit
/// tests need to set it up.
#[cfg(test)]
impl Inspector {
    pub(crate) fn in_memory() -> Inspector {
        Inspector {
            db: ReadOnlyBackend::Sqlite(sqlite::ReadOnly::in_memory()),
        }
    }

    pub(crate) fn test_append(&self, e: &log::Event) -> i64 {
        self.run(|db| db.log_append(e)).unwrap()
    }

    pub(crate) fn test_purge_log(&self, now_ms: i64) -> usize {
        self.run(|db| db.log_purge_expired(now_ms)).unwrap()
    }

    pub(crate) fn test_insert_seal(&self, s: &seal::Seal) -> bool {
        self.run(|db| db.seal_insert(s)).unwrap()
    }
}

impl Store {
    /// Open (creating and migrating) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Store::open_with(data_dir, &Database::Sqlite)
    }

    /// Open (creating and migrating) the store: its files under
    /// `data_dir`, its rows in `database`.
    pub fn open_with(data_dir: &Path, database: &Database) -> Result<Store> {
        let opened_ms = now_ms();
        let paths = Paths::new(data_dir);
        std::fs::create_dir_all(&paths.spool)?;
        std::fs::create_dir_all(&paths.mail)?;
        let dirty: DirtyDirs = Arc::default();
        let spool = Arc::new(spool::Spool::open(&paths.spool)?);
        let (d2, s2) = (dirty.clone(), spool.clone());
        let db = match database {
            Database::Sqlite => {
                let db = sqlite::Migrated::open(&paths.db)?;
                Backend::Sqlite(Sqlite::start(
                    db,
                    Box::new(move || sync_before_commit(&s2, &d2)),
                )?)
            }
            Database::Postgres(s) => Backend::Postgres(Box::new(postgres::Pg::open(
                s,
                Box::new(move || sync_before_commit(&s2, &d2)),
            )?)),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                paths,
                opened_ms,
                spool,
                dirty,
                db,
            }),
        })
    }

    /// Every user's mailbox, with new files named after `hostname`.
    pub fn mailboxes(&self, hostname: &str) -> mailbox::Mailboxes {
        mailbox::Mailboxes::at(&self.inner.paths.mail, hostname)
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

    /// Run `f` in the next group-committed transaction; resolves after the commit.
    pub(in crate::store) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Tx) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        match &self.inner.db {
            Backend::Sqlite(db) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                db.write_then(f, move |r| {
                    let _ = tx.send(r);
                })?;
                rx.await.map_err(|_| StoreError::Closed)?
            }
            Backend::Postgres(_) => {
                let store = self.clone();
                tokio::task::spawn_blocking(move || store.write_blocking(f))
                    .await
                    .map_err(|e| StoreError::Commit(e.to_string()))?
            }
        }
    }

    /// Prove the store takes writes: a row committed through the writer
    /// thread (so a stuck writer or a full or read-only disk shows), and a
    /// file created and removed in the spool folder.
    pub async fn check_writable(&self) -> std::result::Result<(), String> {
        let now = now_ms();
        self.write(move |db| db.health_touch(now))
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
        self.read(|db| db.job_counts()).await
    }

    /// Blocking form of [`Store::write`].
    pub(in crate::store) fn write_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Tx) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        match &self.inner.db {
            Backend::Sqlite(db) => {
                let (tx, rx) = mpsc::channel();
                db.write_then(f, move |r| {
                    let _ = tx.send(r);
                })?;
                rx.recv().map_err(|_| StoreError::Closed)?
            }
            Backend::Postgres(db) => db.write_blocking(f),
        }
    }

    /// Run a read-only closure on a pooled connection (off the async threads).
    pub(in crate::store) async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Tx) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|e| StoreError::Commit(e.to_string()))?
    }

    /// Blocking form of [`Store::read`].
    pub(in crate::store) fn read_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&dyn Tx) -> Result<R>,
    {
        match &self.inner.db {
            Backend::Sqlite(db) => db.read_blocking(f),
            Backend::Postgres(db) => db.read_blocking(f),
        }
    }

    /// Stop the writer after the work already handed to it; waits for it.
    pub fn close(&self) {
        match &self.inner.db {
            Backend::Sqlite(db) => db.close(),
            Backend::Postgres(db) => db.close(),
        }
    }
}

/// Before each commit: the spool's appends, then the new directory
/// entries of deliveries, reach the disk.
fn sync_before_commit(spool: &spool::Spool, dirty: &DirtyDirs) -> std::io::Result<()> {
    if let Err(e) = spool.sync() {
        tracing::error!(error = %e, "spool fsync failed");
        return Err(e);
    }
    let dirs: Vec<PathBuf> = dirty
        .lock()
        .map(|mut d| d.drain().collect())
        .unwrap_or_default();
    for d in &dirs {
        if let Err(e) = spool::sync_dir(d) {
            tracing::error!(dir = %d.display(), error = %e, "directory fsync failed");
            return Err(e);
        }
    }
    Ok(())
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
}
