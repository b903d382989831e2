//! `pecd backup DEST` and `pecd restore SRC`: a consistent copy of a running
//! provider's data folder, and putting one back.
//!
//! Order is what makes the copy consistent without stopping the daemon:
//!
//! 1. Every spool segment is opened first. The sweep may delete a segment
//!    while we work (its jobs finished in the live database), but the
//!    snapshot taken next can still name it as pending; an open handle keeps
//!    the bytes readable whatever happens to the name.
//! 2. The database is copied with SQLite's online backup API in one step, so
//!    the copy is one read transaction: one instant of the database. Every
//!    row in it names only spool bytes and Maildir entries that were synced
//!    before that instant (the writer syncs them before each commit).
//! 3. The spool segments are copied from the handles of step 1 (plus any
//!    segment created since): a segment still growing is copied as a
//!    superset, and bytes past what the snapshot names are never read.
//! 4. Everything else under the data folder is copied, so directories added
//!    later (quarantine, log seals) are included without touching this code.
//!    In a Maildir, `new/` is listed before `cur/` (a message moving from one
//!    to the other is found in the second) and a message renamed or expunged
//!    meanwhile is looked for again by its base name, or skipped. A file pecd
//!    delivered for a job the snapshot does not have (created after it) is
//!    left out: the restored provider re-creates such a job, with a new
//!    creation time and so a new file name, and would store the message
//!    twice. A job the snapshot has, pending or done, keeps its file: a
//!    pending one redoes its delivery under the same name and finds it.
//! 5. Every job the snapshot has pending or held is checked against the
//!    copied spool, every file and directory is fsynced, and the manifest is
//!    written last: a backup without a manifest is an unfinished one.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sqlite::backup::SnapshotError;
use super::sqlite::schema;
use super::{now_ms, spool, Paths};

/// Name of the manifest inside a backup.
pub const MANIFEST: &str = "pecd-backup.json";
/// Format of the backup directory this code writes and reads.
const FORMAT: u32 = 1;
/// Files of the data folder that are not copied as files: the database
/// (taken through the backup API) and per-process state (the running jobs'
/// slot file, the bound ports).
const TRANSIENT: &[&str] = &["inflight", "listeners.json"];

/// What a backup holds, written as `pecd-backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Backup format (1).
    pub format: u32,
    /// When the database snapshot was taken (ISO 8601, UTC).
    pub created_at: String,
    /// The same instant in unix milliseconds.
    pub created_ms: i64,
    /// Version of the pecd that wrote it.
    pub pecd_version: String,
    /// `PRAGMA user_version` of the database copy.
    pub schema_version: i64,
    /// Files in the backup besides the manifest (the database included).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// SHA-256 of the database copy, hex.
    pub database_sha256: String,
}

/// Why a backup or a restore did not happen.
#[derive(Debug)]
pub enum BackupError {
    /// The operator asked for something we refuse (message says why).
    Refused(String),
    /// A file operation failed.
    Io(PathBuf, io::Error),
    /// The database failed.
    Sql(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::Refused(m) => write!(f, "{m}"),
            BackupError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            BackupError::Sql(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for BackupError {}

fn at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.to_path_buf(), e)
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Files and directories written so far; directories are fsynced at the end.
#[derive(Default)]
struct Written {
    files: u64,
    bytes: u64,
    dirs: Vec<PathBuf>,
    /// Folders whose IMAP UID list was restored (see `mailbox::after_restore`).
    uidlists: Vec<PathBuf>,
}

impl Written {
    fn mkdir(&mut self, dir: &Path) -> Result<(), BackupError> {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Io(dir.to_path_buf(), e))
            }
            _ => {}
        }
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    fn file(&mut self, len: u64) {
        self.files += 1;
        self.bytes += len;
    }

    fn sync_dirs(&self) -> Result<(), BackupError> {
        for d in &self.dirs {
            spool::sync_dir(d).map_err(at(d))?;
        }
        Ok(())
    }
}

/// Copy the open file `src` (whose metadata is `meta`) to the new file `dst`,
/// keeping mode and mtime (IMAP shows the mtime as INTERNALDATE), and fsync it.
fn copy_open(mut src: &File, meta: &std::fs::Metadata, dst: &Path) -> io::Result<u64> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.mode() & 0o7777)
        .open(dst)?;
    let n = io::copy(&mut src, &mut out)?;
    out.set_modified(meta.modified()?)?;
    out.sync_all()?;
    Ok(n)
}

/// Copy `src` to `dst`; `Ok(None)` if `src` vanished first.
fn copy_path(src: &Path, dst: &Path) -> Result<Option<u64>, BackupError> {
    let f = match File::open(src) {
        Ok(f) => f,
        Err(e) if vanished(&e) => return Ok(None),
        Err(e) => return Err(BackupError::Io(src.to_path_buf(), e)),
    };
    let meta = f.metadata().map_err(at(src))?;
    copy_open(&f, &meta, dst).map(Some).map_err(at(dst))
}

fn list(dir: &Path) -> Result<Vec<String>, BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if vanished(&e) => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::Io(dir.to_path_buf(), e)),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(at(dir))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The spool segments, held open from before the database snapshot.
struct PinnedSpool {
    dir: PathBuf,
    open: HashMap<String, File>,
}

impl PinnedSpool {
    fn new(dir: &Path) -> PinnedSpool {
        PinnedSpool {
            dir: dir.to_path_buf(),
            open: HashMap::new(),
        }
    }

    /// Open every segment not yet held (one removed meanwhile is skipped:
    /// nothing pending named it).
    fn pin(&mut self) -> Result<(), BackupError> {
        for name in list(&self.dir)? {
            if spool::is_segment(&name) && !self.open.contains_key(&name) {
                let p = self.dir.join(&name);
                match File::open(&p) {
                    Ok(f) => {
                        self.open.insert(name, f);
                    }
                    Err(e) if vanished(&e) => {}
                    Err(e) => return Err(BackupError::Io(p, e)),
                }
            }
        }
        Ok(())
    }

    fn copy_to(&self, dst_dir: &Path, w: &mut Written) -> Result<(), BackupError> {
        w.mkdir(dst_dir)?;
        for (name, f) in &self.open {
            let meta = f.metadata().map_err(at(&self.dir))?;
            let dst = dst_dir.join(name);
            let n = copy_open(f, &meta, &dst).map_err(at(&dst))?;
            w.file(n);
        }
        Ok(())
    }
}

/// What the database snapshot says the rest of the backup must hold.
struct Snapshot {
    schema_version: i64,
    /// Spool names of the pending and held jobs.
    blobs: Vec<String>,
    /// Which pecd-delivered Maildir files the snapshot knows.
    deliveries: Deliveries,
}

/// How far back a job missing from the snapshot can have been created and
/// still be one committed after it. Well inside the week finished jobs are
/// kept, so a file of a purged job (delivered long ago) is never left out.
const LATE_JOB_WINDOW_MS: i64 = 86_400_000;

/// Maildir base names of the snapshot's jobs, without the host part:
/// `maildir::file_name_for(key, created_at, "")`.
#[derive(Default)]
struct Deliveries {
    stems: HashSet<String>,
    snapshot_ms: i64,
}

impl Deliveries {
    /// Whether `file` is a delivery by a job created after the snapshot.
    fn is_late(&self, file: &str) -> bool {
        let Some((stem, secs)) = delivery_stem(file) else {
            return false;
        };
        secs.saturating_mul(1000) >= self.snapshot_ms - LATE_JOB_WINDOW_MS
            && !self.stems.contains(stem)
    }
}

/// `<secs>.M<usec>K<20 hex>.` of a pecd delivery name, and its seconds.
fn delivery_stem(file: &str) -> Option<(&str, i64)> {
    let (secs, rest) = file.split_once('.')?;
    let b = rest.as_bytes();
    let shaped = !secs.is_empty()
        && secs.bytes().all(|c| c.is_ascii_digit())
        && b.len() > 29
        && b[0] == b'M'
        && b[1..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'K'
        && b[8..28]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        && b[28] == b'.';
    if !shaped {
        return None;
    }
    Some((&file[..secs.len() + 30], secs.parse().ok()?))
}

/// Copy the live database `db` into the new file `dst` as one instant.
fn snapshot_db(db: &Path, dst: &Path, snapshot_ms: i64) -> Result<Snapshot, BackupError> {
    let mut deliveries = Deliveries {
        stems: HashSet::new(),
        snapshot_ms,
    };
    let copied = super::sqlite::backup::snapshot(db, dst, |key, created| {
        deliveries
            .stems
            .insert(super::maildir::file_name_for(key, created, ""));
    })
    .map_err(|e| match e {
        SnapshotError::Busy => {
            BackupError::Refused(format!("{}: database stayed busy for 10 s", db.display()))
        }
        SnapshotError::Check(check) => BackupError::Refused(format!(
            "the database copy fails its integrity check: {check}"
        )),
        SnapshotError::Sql(e) => BackupError::Sql(e),
    })?;
    let f = File::open(dst).map_err(at(dst))?;
    f.sync_all().map_err(at(dst))?;
    Ok(Snapshot {
        schema_version: copied.schema_version,
        blobs: copied.blobs,
        deliveries,
    })
}

/// Whether `dir` is a Maildir folder (its messages get the careful copy).
fn is_maildir(dir: &Path) -> bool {
    dir.join("new").is_dir() && dir.join("cur").is_dir()
}

fn base_name(file: &str) -> &str {
    file.split_once(':').map_or(file, |(b, _)| b)
}

/// Copy the messages of one Maildir folder, each once, whatever renames
/// (flags, `new/` to `cur/`) and expunges happen while we list.
fn copy_messages(
    src: &Path,
    dst: &Path,
    known: &Deliveries,
    w: &mut Written,
) -> Result<(), BackupError> {
    for sub in ["new", "cur", "tmp"] {
        w.mkdir(&dst.join(sub))?;
    }
    let mut copied: HashSet<String> = HashSet::new();
    // Later passes only find what a rename moved behind the listing.
    for _ in 0..3 {
        let mut missed = false;
        for sub in ["new", "cur"] {
            for name in list(&src.join(sub))? {
                let base = base_name(&name).to_string();
                if copied.contains(&base) || known.is_late(&base) {
                    continue;
                }
                match copy_path(&src.join(sub).join(&name), &dst.join(sub).join(&name))? {
                    Some(n) => {
                        w.file(n);
                        copied.insert(base);
                    }
                    None => missed = true,
                }
            }
        }
        if !missed {
            break;
        }
    }
    Ok(())
}

/// Where the generic copy stops: the database, transient files, the spool
/// segments (copied from their handles) and the backup itself.
struct Skip<'a> {
    data_dir: &'a Path,
    spool: &'a Path,
    db_name: String,
    deliveries: &'a Deliveries,
}

impl Skip<'_> {
    fn skips(&self, dir: &Path, name: &str) -> bool {
        if dir == self.data_dir {
            let db = &self.db_name;
            return TRANSIENT.contains(&name)
                || name == db
                || [
                    db.clone() + "-wal",
                    db.clone() + "-shm",
                    db.clone() + "-journal",
                ]
                .iter()
                .any(|n| n == name);
        }
        dir == self.spool && spool::is_segment(name)
    }
}

/// Copy the tree `src` into `dst` (created), tolerating files that vanish.
fn copy_tree(src: &Path, dst: &Path, skip: &Skip, w: &mut Written) -> Result<(), BackupError> {
    w.mkdir(dst)?;
    let maildir = is_maildir(src);
    if maildir {
        copy_messages(src, dst, skip.deliveries, w)?;
    }
    for name in list(src)? {
        if skip.skips(src, &name) || (maildir && ["new", "cur", "tmp"].contains(&name.as_str())) {
            continue;
        }
        let (s, d) = (src.join(&name), dst.join(&name));
        let meta = match std::fs::symlink_metadata(&s) {
            Ok(m) => m,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(BackupError::Io(s, e)),
        };
        if meta.is_dir() {
            copy_tree(&s, &d, skip, w)?;
        } else if meta.is_file() {
            if let Some(n) = copy_path(&s, &d)? {
                w.file(n);
            }
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&s).map_err(at(&s))?;
            std::os::unix::fs::symlink(&target, &d).map_err(at(&d))?;
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = File::open(path).map_err(at(path))?;
    let mut h = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(at(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().iter().map(|b| format!("{b:02x}")).collect())
}

fn is_empty_dir(dir: &Path) -> Result<bool, BackupError> {
    Ok(std::fs::read_dir(dir).map_err(at(dir))?.next().is_none())
}

/// Create `dir` (and its missing parents) or accept it if it is empty;
/// fsync the parent so that the new entry survives a crash.
fn empty_target(dir: &Path, what: &str) -> Result<(), BackupError> {
    if dir.exists() {
        if !dir.is_dir() || !is_empty_dir(dir)? {
            return Err(BackupError::Refused(format!(
                "{}: {what} must not exist or be an empty directory",
                dir.display()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        spool::sync_dir(parent).map_err(at(parent))?;
    }
    Ok(())
}

/// Take a consistent backup of the data folder `data_dir` into `dest` while
/// the daemon may be running (see the module comment for the order).
pub fn backup(data_dir: &Path, dest: &Path) -> Result<Manifest, BackupError> {
    let paths = Paths::new(data_dir);
    if !paths.db.is_file() {
        return Err(BackupError::Refused(format!(
            "{}: no database (has the daemon run?)",
            paths.db.display()
        )));
    }
    empty_target(dest, "the backup destination")?;
    let data_abs = data_dir.canonicalize().map_err(at(data_dir))?;
    let dest_abs = dest.canonicalize().map_err(at(dest))?;
    if dest_abs.starts_with(&data_abs) || data_abs.starts_with(&dest_abs) {
        return Err(BackupError::Refused(format!(
            "{}: the backup must be outside the data directory {}",
            dest.display(),
            data_dir.display()
        )));
    }
    let db_name = file_name(&paths.db);
    let mut w = Written::default();
    w.dirs.push(dest.to_path_buf());

    let mut pinned = PinnedSpool::new(&paths.spool);
    pinned.pin()?;
    let created_ms = now_ms();
    let db_copy = dest.join(&db_name);
    let snap = snapshot_db(&paths.db, &db_copy, created_ms)?;
    let db_len = std::fs::metadata(&db_copy).map_err(at(&db_copy))?.len();
    w.file(db_len);
    pinned.pin()?;
    let spool_copy = dest.join(file_name(&paths.spool));
    pinned.copy_to(&spool_copy, &mut w)?;
    drop(pinned);

    let skip = Skip {
        data_dir,
        spool: &paths.spool,
        db_name: db_name.clone(),
        deliveries: &snap.deliveries,
    };
    copy_tree(data_dir, dest, &skip, &mut w)?;

    let missing = missing_blobs(&spool_copy, &snap.blobs);
    if let Some(first) = missing.first() {
        return Err(BackupError::Refused(format!(
            "{} queued job(s) name spool bytes the copy lacks (first: {first}); the backup in {} is incomplete",
            missing.len(),
            dest.display()
        )));
    }
    w.sync_dirs()?;
    let manifest = Manifest {
        format: FORMAT,
        created_at: super::log::iso_utc(created_ms),
        created_ms,
        pecd_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: snap.schema_version,
        files: w.files,
        bytes: w.bytes,
        database_sha256: sha256_file(&db_copy)?,
    };
    write_manifest(dest, &manifest)?;
    Ok(manifest)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Spool names whose bytes are not (all) in the copied segments of `dir`.
fn missing_blobs(dir: &Path, blobs: &[String]) -> Vec<String> {
    let mut lens: HashMap<String, Option<u64>> = HashMap::new();
    blobs
        .iter()
        .filter(|b| {
            let Some((seg, end)) = spool::extent(b) else {
                return true;
            };
            let len = *lens
                .entry(seg.to_string())
                .or_insert_with(|| std::fs::metadata(dir.join(seg)).ok().map(|m| m.len()));
            len.is_none_or(|l| l < end)
        })
        .cloned()
        .collect()
}

fn write_manifest(dest: &Path, m: &Manifest) -> Result<(), BackupError> {
    let text = serde_json::to_string_pretty(m)
        .map_err(|e| BackupError::Refused(format!("manifest: {e}")))?;
    let tmp = dest.join(format!(".{MANIFEST}.tmp"));
    {
        let mut f = File::create(&tmp).map_err(at(&tmp))?;
        io::Write::write_all(&mut f, format!("{text}\n").as_bytes()).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
    }
    let path = dest.join(MANIFEST);
    std::fs::rename(&tmp, &path).map_err(at(&path))?;
    spool::sync_dir(dest).map_err(at(dest))
}

/// Read and check the manifest of the backup in `src` against what is there.
pub fn verify(src: &Path) -> Result<Manifest, BackupError> {
    let path = src.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if vanished(&e) => {
            return Err(BackupError::Refused(format!(
                "{}: no {MANIFEST}: not a pecd backup, or one that did not finish",
                src.display()
            )))
        }
        Err(e) => return Err(BackupError::Io(path, e)),
    };
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| BackupError::Refused(format!("{}: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(BackupError::Refused(format!(
            "{}: backup format {} (this pecd reads {FORMAT})",
            path.display(),
            m.format
        )));
    }
    if m.schema_version > schema::latest_version() {
        return Err(BackupError::Refused(format!(
            "{}: database schema {} is newer than this pecd's ({}); restore with pecd {} or later",
            src.display(),
            m.schema_version,
            schema::latest_version(),
            m.pecd_version
        )));
    }
    let (files, bytes) = tally(src, src)?;
    if (files, bytes) != (m.files, m.bytes) {
        return Err(BackupError::Refused(format!(
            "{}: incomplete or altered: the manifest lists {} files ({} bytes), found {files} ({bytes} bytes)",
            src.display(),
            m.files,
            m.bytes
        )));
    }
    let db = src.join(file_name(&Paths::new(src).db));
    if sha256_file(&db)? != m.database_sha256 {
        return Err(BackupError::Refused(format!(
            "{}: the database does not match the manifest's checksum",
            db.display()
        )));
    }
    Ok(m)
}

/// Files and bytes under `dir` (the manifest of `root` excepted).
fn tally(root: &Path, dir: &Path) -> Result<(u64, u64), BackupError> {
    let (mut files, mut bytes) = (0, 0);
    for name in list(dir)? {
        let p = dir.join(&name);
        let meta = std::fs::symlink_metadata(&p).map_err(at(&p))?;
        if meta.is_dir() {
            let (f, b) = tally(root, &p)?;
            files += f;
            bytes += b;
        } else if meta.is_file() && !(dir == root && name == MANIFEST) {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// Put the backup in `src` back into `data_dir`, which must be empty or
/// missing (a restore never mixes with live data). The database is written
/// last, so an interrupted restore leaves no database naming missing files.
pub fn restore(src: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    let m = verify(src)?;
    if data_dir.exists() && !(data_dir.is_dir() && is_empty_dir(data_dir)?) {
        return Err(BackupError::Refused(format!(
            "{}: the data directory is not empty; restore only into an empty (or missing) data directory",
            data_dir.display()
        )));
    }
    empty_target(data_dir, "the data directory")?;
    let db_name = file_name(&Paths::new(src).db);
    let mut w = Written::default();
    w.dirs.push(data_dir.to_path_buf());
    restore_tree(src, data_dir, src, &db_name, &mut w)?;
    for folder in &w.uidlists {
        super::mailbox::after_restore(folder).map_err(at(folder))?;
    }
    let db = data_dir.join(&db_name);
    if copy_path(&src.join(&db_name), &db)?.is_none() {
        return Err(BackupError::Refused(format!(
            "{}: the database vanished during the restore",
            src.display()
        )));
    }
    w.sync_dirs()?;
    Ok(m)
}

fn restore_tree(
    src: &Path,
    dst: &Path,
    root: &Path,
    db_name: &str,
    w: &mut Written,
) -> Result<(), BackupError> {
    for name in list(src)? {
        if src == root && (name == MANIFEST || name == db_name) {
            continue;
        }
        let (s, d) = (src.join(&name), dst.join(&name));
        let meta = std::fs::symlink_metadata(&s).map_err(at(&s))?;
        if meta.is_dir() {
            w.mkdir(&d)?;
            restore_tree(&s, &d, root, db_name, w)?;
        } else if meta.is_file() {
            let n = copy_path(&s, &d)?.ok_or_else(|| {
                BackupError::Io(s.clone(), io::Error::from(io::ErrorKind::NotFound))
            })?;
            w.file(n);
            if name == super::mailbox::UIDLIST {
                w.uidlists.push(dst.to_path_buf());
            }
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&s).map_err(at(&s))?;
            std::os::unix::fs::symlink(&target, &d).map_err(at(&d))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{maildir, Store};

    fn store_with_a_queued_blob(data: &Path) -> (Store, String) {
        let st = Store::open(data).unwrap();
        let blob = st.put_blob(b"Subject: queued\r\n\r\nbody\r\n").unwrap();
        let mut batch = crate::flow::batch::Batch::at(0);
        batch.jobs.push(crate::flow::batch::NewJob {
            key: "relay:x:pec.beta.test".into(),
            kind: crate::flow::batch::JobKind::Relay,
            identificativo: None,
            mail_from: String::new(),
            recipients: vec!["bob@pec.beta.test".into()],
            next_hop: None,
            blob: Some(crate::flow::batch::BlobRef::Spooled(blob.clone())),
            data: None,
            due_at: 0,
        });
        st.commit_blocking(batch).unwrap();
        maildir::create(&st.paths().mail, "alice@pec.alpha.test").unwrap();
        (st, blob)
    }

    #[test]
    fn a_segment_swept_after_the_pin_is_still_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let (st, blob) = store_with_a_queued_blob(&data);
        let seg = spool::segment_of(&blob).unwrap().to_string();
        let mut pinned = PinnedSpool::new(&st.paths().spool);
        pinned.pin().unwrap();
        // The sweep deleting the file between our pin and our copy.
        std::fs::remove_file(st.paths().spool.join(&seg)).unwrap();
        let out = tmp.path().join("spool-copy");
        let mut w = Written::default();
        pinned.copy_to(&out, &mut w).unwrap();
        assert!(missing_blobs(&out, std::slice::from_ref(&blob)).is_empty());
        assert_eq!(missing_blobs(&out, &["seg-1.spool@0+1".into()]).len(), 1);
        st.close();
    }

    #[test]
    fn maildir_copy_takes_each_message_once_and_skips_expunged_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("box");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(src.join(sub)).unwrap();
        }
        std::fs::write(src.join("new/1.M1K1.h"), b"one").unwrap();
        std::fs::write(src.join("cur/2.M1K2.h:2,S"), b"two").unwrap();
        std::fs::write(src.join("tmp/half"), b"partial").unwrap();
        // pecd deliveries: one by a job the snapshot has, one by a job
        // created after it, one by a job purged long ago.
        let snapshot_ms = 1_800_000_000_000;
        let known = maildir::file_name_for("busta:a:x", snapshot_ms - 5, "mx.test");
        let late = maildir::file_name_for("busta:b:x", snapshot_ms - 5, "mx.test");
        let old = maildir::file_name_for("busta:c:x", snapshot_ms - 8 * 86_400_000, "mx.test");
        for n in [&known, &late, &old] {
            std::fs::write(src.join("new").join(n), b"pec").unwrap();
        }
        let deliveries = Deliveries {
            stems: [maildir::file_name_for("busta:a:x", snapshot_ms - 5, "")].into(),
            snapshot_ms,
        };
        assert_eq!(delivery_stem(&late).unwrap().1, (snapshot_ms - 5) / 1000);
        let dst = tmp.path().join("copy");
        let mut w = Written::default();
        w.mkdir(&dst).unwrap();
        copy_messages(&src, &dst, &deliveries, &mut w).unwrap();
        assert_eq!((w.files, w.bytes), (4, 12));
        assert!(dst.join("new").join(&known).exists() && dst.join("new").join(&old).exists());
        assert!(!dst.join("new").join(&late).exists());
        assert_eq!(std::fs::read(dst.join("new/1.M1K1.h")).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dst.join("tmp")).unwrap().count(), 0);
        // A file that vanished after listing is not an error.
        assert_eq!(
            copy_path(&src.join("cur/gone"), &dst.join("cur/gone")).unwrap(),
            None
        );
    }

    #[test]
    fn restore_refuses_a_non_empty_target_and_an_altered_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let (st, blob) = store_with_a_queued_blob(&data);
        std::fs::write(data.join("inflight"), [0u8; 8]).unwrap();
        let dest = tmp.path().join("bk");
        let m = backup(&data, &dest).unwrap();
        st.close();
        assert_eq!(m.schema_version, schema::latest_version());
        assert!(!dest.join("inflight").exists());
        assert!(dest.join("mail/pec.alpha.test/alice/new").is_dir());
        assert!(matches!(backup(&data, &dest), Err(BackupError::Refused(_))));
        let err = restore(&dest, &data).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");

        let fresh = tmp.path().join("fresh");
        restore(&dest, &fresh).unwrap();
        let back = Store::open(&fresh).unwrap();
        assert_eq!(
            back.get_blob(&blob).unwrap(),
            b"Subject: queued\r\n\r\nbody\r\n"
        );
        back.close();

        let seg = spool::segment_of(&blob).unwrap();
        std::fs::remove_file(dest.join("spool").join(seg)).unwrap();
        let err = restore(&dest, &tmp.path().join("other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("incomplete or altered"), "{err}");
        std::fs::remove_file(dest.join(MANIFEST)).unwrap();
        let err = verify(&dest).unwrap_err().to_string();
        assert!(err.contains("did not finish"), "{err}");
    }

    #[tokio::test]
    async fn a_backup_taken_while_a_job_runs_leaves_it_unclaimed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let (st, _) = store_with_a_queued_blob(&data);
        let me = crate::store::claims::Claimant::new("node-1", 60_000);
        let want = crate::store::claims::Want {
            jobs: 1,
            ..Default::default()
        };
        let running = st.claim(&me, 0, want).await.unwrap().jobs;
        assert_eq!(running[0].claimed_by.as_deref(), Some("node-1"));
        let dest = tmp.path().join("bk");
        let d = data.clone();
        let dest2 = dest.clone();
        tokio::task::spawn_blocking(move || backup(&d, &dest2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            st.job_blocking(running[0].id)
                .unwrap()
                .unwrap()
                .claimed_by
                .as_deref(),
            Some("node-1"),
            "the live store keeps its claim"
        );
        st.close();
        let copy = crate::store::Inspector::open(&dest).unwrap();
        let j = copy.job(running[0].id).unwrap().unwrap();
        assert_eq!((j.claimed_by, j.claimed_until), (None, None));
    }
}
