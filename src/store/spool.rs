//! Message bytes waiting for work.
//!
//! Pending messages are appended to segment files (`seg-<ns>.spool`, up
//! to 64 MiB each) and named by `segment@offset+length`. One file per message
//! cost a file creation and two fsyncs each (measured: a fifth of all CPU on
//! a busy provider); appending costs neither: the store writer syncs the
//! segments written since its last commit once per group commit, before any
//! row naming their bytes commits. Each process appends only to segments it
//! created itself (named by their creation time, so the daemon and a CLI
//! command never share one), so a torn tail left by a crash is never appended
//! to; bytes nobody's row names are simply never read, and a segment goes when
//! no pending job names it (see `Store::sweep` in `store/work.rs`).

use std::collections::HashMap;
use std::fs::File;
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
    current: Mutex<Option<Segment>>,
    unsynced: Mutex<HashMap<u64, Arc<File>>>,
    /// Open handles of segments read from: a busy provider reads each
    /// message several times, and a path lookup per read costs more than
    /// the read.
    readers: Mutex<HashMap<u64, Arc<File>>>,
}

/// File name of segment `id`.
pub fn segment_file(id: u64) -> String {
    format!("seg-{id:020}.spool")
}

fn segment_id(file_name: &str) -> Option<u64> {
    file_name
        .strip_prefix("seg-")?
        .strip_suffix(".spool")?
        .parse()
        .ok()
}

/// A fresh segment id: nanoseconds since the epoch, so ids grow over time and
/// two processes practically never pick the same (creation is exclusive).
fn fresh_id() -> u64 {
    (crate::pec::clock::since_epoch().as_nanos() as u64).max(1)
}

/// Whether `file_name` is a segment file.
pub fn is_segment(file_name: &str) -> bool {
    segment_id(file_name).is_some()
}

/// The segment file of a blob name and the offset just past its bytes.
pub fn extent(blob: &str) -> Option<(&str, u64)> {
    let (seg, range) = blob.split_once('@')?;
    let (off, len) = range.split_once('+')?;
    let end = off.parse::<u64>().ok()?.checked_add(len.parse().ok()?)?;
    is_segment(seg).then_some((seg, end))
}

/// The segment file a blob name points into.
pub fn segment_of(blob: &str) -> Option<&str> {
    blob.split_once('@').map(|(seg, _)| seg)
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string())
}

impl Spool {
    /// Open the spool in `dir`; a segment is created at the first append.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            current: Mutex::new(None),
            unsynced: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        })
    }

    fn create(dir: &Path, after: u64) -> std::io::Result<Segment> {
        let mut id = fresh_id().max(after + 1);
        loop {
            let r = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(dir.join(segment_file(id)));
            match r {
                Ok(file) => {
                    // Once per segment, not per message: the entry must outlive a crash.
                    sync_dir(dir)?;
                    return Ok(Segment {
                        id,
                        file: Arc::new(file),
                        len: 0,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => id += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Name of the segment this process appends to (never removed while current).
    pub fn current_segment(&self) -> Option<String> {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| segment_file(c.id)))
    }

    /// Append `bytes`; returns their name. Durable after [`Spool::sync`].
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<String> {
        let len = bytes.len() as u64;
        let (id, file, offset) = {
            let mut guard = self.current.lock().map_err(|_| bad("spool lock"))?;
            let full = guard
                .as_ref()
                .is_none_or(|c| c.len > 0 && c.len + len > SEGMENT_MAX);
            if full {
                let after = guard.as_ref().map_or(0, |c| c.id);
                *guard = Some(Self::create(&self.dir, after)?);
            }
            let cur = guard.as_mut().ok_or_else(|| bad("spool segment"))?;
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
        let id = segment_id(seg).ok_or_else(|| bad("bad spool segment"))?;
        let f = self.reader(id)?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    fn reader(&self, id: u64) -> std::io::Result<Arc<File>> {
        let mut readers = self.readers.lock().map_err(|_| bad("spool lock"))?;
        if let Some(f) = readers.get(&id) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.dir.join(segment_file(id)))?);
        readers.insert(id, f.clone());
        Ok(f)
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
        let id = segment_id(name).ok_or_else(|| bad("not a segment"))?;
        if let Ok(mut readers) = self.readers.lock() {
            readers.remove(&id);
        }
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Make the entries of a directory durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A process-unique suffix: time, pid and a counter.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = crate::pec::clock::since_epoch();
    format!(
        "{}{:06}P{}Q{}",
        t.as_secs(),
        t.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_back_and_two_writers_never_share_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Spool::open(dir.path()).unwrap();
        assert!(
            daemon.current_segment().is_none(),
            "no segment before the first append"
        );
        let a = daemon.append(b"first message\r\n").unwrap();
        let b = daemon.append(b"second\r\n").unwrap();
        daemon.sync().unwrap();
        assert_eq!(daemon.get(&a).unwrap(), b"first message\r\n");
        assert_eq!(daemon.get(&b).unwrap(), b"second\r\n");
        assert_eq!(segment_of(&a), segment_of(&b));
        // A CLI command opening the same spool writes to its own segment.
        let cli = Spool::open(dir.path()).unwrap();
        let c = cli.append(b"notice").unwrap();
        assert_ne!(segment_of(&c), segment_of(&a));
        assert_eq!(daemon.get(&c).unwrap(), b"notice");
        // The daemon sees the CLI's segment as an old one, never its own.
        let old: Vec<String> = daemon.old_segments().into_iter().map(|(n, _)| n).collect();
        assert_eq!(old, vec![segment_of(&c).unwrap().to_string()]);
        assert!(daemon.get("seg-x.spool@0+1").is_err());
        assert!(daemon
            .get(&format!("{}@0+999", segment_of(&a).unwrap()))
            .is_err());
    }
}
