//! Which jobs are running right now, kept where a crash of the process
//! cannot erase it: a small file of fixed slots, one 8-byte job id each
//! (0: free), written in place with `pwrite` when a job starts and ends.
//!
//! No fsync: the file only has to outlive the *process* (an abort on a
//! hostile input, `kill -9`), and the kernel keeps written pages through
//! that; a power cut says nothing about the job that was running. At the
//! next start the ids still in the file are the jobs that were running when
//! the process died: `queue::record_crash` counts them and holds a job that
//! keeps killing the process, instead of running it into a crash loop.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::queue::JobId;

/// The slot file of one running process.
#[derive(Debug)]
pub struct Inflight {
    file: File,
    free: Mutex<Vec<u64>>,
    next: Mutex<u64>,
}

impl Inflight {
    /// Open (or create) the file at `path`, return the job ids a previous
    /// process left in it, and clear it for this one.
    pub fn open(path: &Path) -> io::Result<(Arc<Inflight>, Vec<JobId>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let bytes = std::fs::read(path)?;
        let left: Vec<JobId> = bytes
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(i64::from_le_bytes))
            .filter(|id| *id != 0)
            .map(JobId)
            .collect();
        file.set_len(0)?;
        let me = Inflight {
            file,
            free: Mutex::new(Vec::new()),
            next: Mutex::new(0),
        };
        Ok((Arc::new(me), left))
    }

    /// Note that job `id` runs until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>, id: JobId) -> Running {
        let slot = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_else(|| {
                let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                *n - 1
            });
        self.put(slot, id.0);
        Running {
            owner: self.clone(),
            slot,
        }
    }

    /// Forget every slot: this process stops without having crashed (jobs
    /// cut short by the shutdown grace were not what stopped it).
    pub fn clear(&self) {
        if let Err(e) = self.file.set_len(0) {
            tracing::warn!(error = %e, "could not clear the in-flight job file");
        }
    }

    fn put(&self, slot: u64, id: i64) {
        if let Err(e) = self.file.write_all_at(&id.to_le_bytes(), slot * 8) {
            // Losing the marker only loses the crash-loop guard for this job.
            tracing::warn!(error = %e, job = id, "could not record the running job");
        }
    }
}

/// A job marked as running; dropping it frees the slot.
#[derive(Debug)]
pub struct Running {
    owner: Arc<Inflight>,
    slot: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.owner.put(self.slot, 0);
        if let Ok(mut f) = self.owner.free.lock() {
            f.push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_left_running_are_found_by_the_next_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inflight");
        let (f, left) = Inflight::open(&path).unwrap();
        assert!(left.is_empty());
        let a = f.enter(JobId(7));
        let b = f.enter(JobId(9));
        drop(a);
        let c = f.enter(JobId(11)); // reuses 7's slot
        std::mem::forget(b);
        std::mem::forget(c);
        drop(f);
        let (_f, mut left) = Inflight::open(&path).unwrap();
        left.sort();
        assert_eq!(left, vec![JobId(9), JobId(11)]);
        let (_f, left) = Inflight::open(&path).unwrap();
        assert!(left.is_empty(), "cleared at open: {left:?}");
    }
}
