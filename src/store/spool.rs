//! Message bytes waiting for work.
//!
//! Pending messages are appended to segment files (`seg-NNNNNNNN.spool`, up
//! to 64 MiB each) and named by `segment@offset+length`. One file per message
//! cost a file creation and two fsyncs each (measured: a fifth of all CPU on
//! a busy provider); appending costs neither: the store writer syncs the
//! segments written since its last commit once per group commit, before any
//! row naming their bytes commits. Every process start opens a fresh segment,
//! so a torn tail left by a crash is never appended to; bytes nobody's row
//! names are simply never read, and a segment goes when no pending job names
//! it (see `server::worker::sweep`).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest segment before a new one is started.
const SEGMENT_MAX: u64 = 64 << 20;

struct Segment {
    id: u64,
    file: Arc<File>,
    len: u64,
}

/// The spool: append message bytes, read them back by name.
pub struct Spool {
    dir: PathBuf,
    current: Mutex<Segment>,
    unsynced: Mutex<HashMap<u64, Arc<File>>>,
}

/// File name of segment `id`.
pub fn segment_file(id: u64) -> String {
    format!("seg-{id:08}.spool")
}

fn segment_id(file_name: &str) -> Option<u64> {
    file_name
        .strip_prefix("seg-")?
        .strip_suffix(".spool")?
        .parse()
        .ok()
}

/// The segment file a blob name points into.
pub fn segment_of(blob: &str) -> Option<&str> {
    blob.split_once('@').map(|(seg, _)| seg)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string())
}

impl Spool {
    /// Open the spool in `dir`, starting a fresh segment after the newest one.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let newest = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| segment_id(&e.file_name().to_string_lossy()))
            .max()
            .unwrap_or(0);
        let first = Self::create(dir, newest + 1)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            current: Mutex::new(first),
            unsynced: Mutex::new(HashMap::new()),
        })
    }

    fn create(dir: &Path, id: u64) -> std::io::Result<Segment> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(segment_file(id)))?;
        // Once per segment, not per message: the entry must outlive a crash.
        sync_dir(dir)?;
        Ok(Segment {
            id,
            file: Arc::new(file),
            len: 0,
        })
    }

    /// Name of the segment being appended to (never removed while current).
    pub fn current_segment(&self) -> Option<String> {
        self.current.lock().ok().map(|c| segment_file(c.id))
    }

    /// Append `bytes`; returns their name. Durable after [`Spool::sync`].
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<String> {
        let len = bytes.len() as u64;
        let (id, file, offset) = {
            let mut cur = self.current.lock().map_err(|_| bad("spool lock"))?;
            if cur.len > 0 && cur.len + len > SEGMENT_MAX {
                *cur = Self::create(&self.dir, cur.id + 1)?;
            }
            let offset = cur.len;
            cur.len += len;
            (cur.id, cur.file.clone(), offset)
        };
        file.write_all_at(bytes, offset)?;
        if let Ok(mut u) = self.unsynced.lock() {
            u.insert(id, file);
        }
        Ok(format!("{}@{offset}+{len}", segment_file(id)))
    }

    /// Put on disk every byte appended so far.
    pub fn sync(&self) -> std::io::Result<()> {
        let files: Vec<Arc<File>> = self
            .unsynced
            .lock()
            .map(|mut u| u.drain().map(|(_, f)| f).collect())
            .unwrap_or_default();
        for f in files {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The bytes of a blob name.
    pub fn get(&self, name: &str) -> std::io::Result<Vec<u8>> {
        let (seg, range) = name.split_once('@').ok_or_else(|| bad("bad spool name"))?;
        let (off, len) = range.split_once('+').ok_or_else(|| bad("bad spool name"))?;
        let off: u64 = off.parse().map_err(|_| bad("bad spool offset"))?;
        let len: usize = len.parse().map_err(|_| bad("bad spool length"))?;
        if segment_id(seg).is_none() {
            return Err(bad("bad spool segment"));
        }
        let f = File::open(self.dir.join(seg))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// Segment files on disk other than the current one, with their age.
    pub fn old_segments(&self) -> Vec<(String, std::time::Duration)> {
        let current = self.current_segment();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                segment_id(&name)?;
                if Some(&name) == current.as_ref() {
                    return None;
                }
                let age = e.metadata().ok()?.modified().ok()?.elapsed().ok()?;
                Some((name, age))
            })
            .collect()
    }

    /// Remove a segment file (missing is fine).
    pub fn remove_segment(&self, name: &str) -> std::io::Result<()> {
        if segment_id(name).is_none() {
            return Err(bad("not a segment"));
        }
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// tmp -> fsync -> rename: the file appears whole or not at all. The new
/// directory entry is durable once the directory is synced ([`sync_dir`]).
pub fn write_and_rename(tmp: &Path, dst: &Path, bytes: &[u8]) -> std::io::Result<()> {
    {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, dst)
}

/// Make the entries of a directory durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A process-unique suffix: time, pid and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}{:06}P{}Q{}",
        t.as_secs(),
        t.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
