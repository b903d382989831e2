//! Where the bytes of one DATA phase wait for the terminator: in RAM while
//! the message is small, in an unlinked file once it is not.
//!
//! A DATA phase lasts as long as the client wants, so whatever it holds is
//! held per connection. Memory is taken from the provider-wide
//! [`crate::memory::MemoryBudget`] before the buffer grows, and never beyond
//! [`SmtpConfig::spool_threshold`]: past that (or when the budget says no)
//! the buffer is written to a file and reused. The file is unlinked as soon
//! as it is created, so no path (error, drop, crash) leaves it on disk.
//!
//! After the terminator the backend needs the whole message in memory, and
//! parsing and signing it costs a few times its size: that is reserved from
//! the same budget ([`SmtpConfig::message_memory_factor`]) before the file is
//! read back, and a message that cannot have it is answered `452 4.3.1`.
//! A small message never leaves its first buffer: no file, no extra copy.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use tracing::{debug, warn};

use super::data::{DataOutcome, DataReader};
use super::reply::Reply;
use super::SmtpConfig;
use crate::memory::Reservation;

/// First buffer of a DATA phase; it doubles up to the spool threshold.
const FIRST_BUFFER: usize = 8 * 1024;

/// Slice fed at a time once the content is only being discarded.
const DISCARD_SLICE: usize = 4096;

/// One DATA phase's content on its way to the backend.
pub(super) struct Incoming {
    reader: DataReader,
    memory: Reservation,
    threshold: usize,
    spool_dir: std::path::PathBuf,
    memory_wait: std::time::Duration,
    /// Unlinked file with the content that did not fit in memory.
    file: Option<File>,
    spooled: usize,
    /// Memory or disk ran out: the content is discarded and answered 452.
    failed: bool,
}

/// A finished message and the memory it may use while the backend works.
pub(super) struct Finished {
    /// Exact bytes, dot-unstuffed.
    pub message: Vec<u8>,
    /// Keep it until the backend has answered.
    pub _memory: Reservation,
}

impl Incoming {
    /// A DATA phase under `cfg`'s limits, drawing memory from its budget.
    pub(super) fn new(cfg: &SmtpConfig) -> Incoming {
        Incoming {
            reader: DataReader::new(cfg.max_message_size),
            memory: cfg.memory.empty(),
            threshold: cfg.spool_threshold.max(FIRST_BUFFER),
            spool_dir: cfg.spool_dir.clone(),
            memory_wait: cfg.memory_wait,
            file: None,
            spooled: 0,
            failed: false,
        }
    }

    /// Consume input like [`DataReader::feed`], spilling to disk as needed.
    pub(super) async fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let n = if self.reader.is_oversized() {
                // Nothing is kept any more: the reader only looks for the end.
                rest.len()
            } else if self.failed {
                rest.len().min(DISCARD_SLICE)
            } else {
                if self.reader.room() == 0 {
                    self.make_room().await;
                    continue;
                }
                rest.len().min(self.reader.room())
            };
            let (u, outcome) = self.reader.feed(&rest[..n]);
            used += u;
            if self.failed {
                self.reader.clear_kept();
            }
            if self.reader.is_oversized() && (self.file.is_some() || self.memory.bytes() > 0) {
                // It will only be answered 552: free the disk and the memory now.
                self.file = None;
                drop(self.reader.take_kept());
                self.memory.shrink_to(0);
            }
            if outcome.is_some() {
                return (used, outcome);
            }
        }
        (used, None)
    }

    /// Grow the buffer within the budget, or empty it into the file.
    async fn make_room(&mut self) {
        let cap = self.reader.capacity();
        if cap < self.threshold {
            let want = (cap * 2).clamp(FIRST_BUFFER, self.threshold);
            if self.memory.try_grow_to(want) {
                self.reader.grow_to(want);
                return;
            }
        }
        if self.reader.kept() == 0 {
            // Not even a first buffer could be had: the budget is exhausted.
            warn!("memory budget exhausted, discarding DATA");
            self.fail();
            return;
        }
        if let Err(e) = self.spill().await {
            warn!(error = %e, "cannot spool DATA to disk, discarding it");
            self.fail();
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.file = None;
        drop(self.reader.take_kept());
        self.memory.shrink_to(0);
    }

    /// Append the kept bytes to the spool file and reuse the buffer.
    async fn spill(&mut self) -> io::Result<()> {
        let buf = self.reader.take_kept();
        let file = self.file.take();
        let dir = self.spool_dir.clone();
        let first = file.is_none();
        let (file, buf) = tokio::task::spawn_blocking(move || -> io::Result<(File, Vec<u8>)> {
            let mut f = match file {
                Some(f) => f,
                None => unlinked_file(&dir)?,
            };
            f.write_all(&buf)?;
            Ok((f, buf))
        })
        .await
        .map_err(io::Error::other)??;
        if first {
            debug!(threshold = self.threshold, "DATA spooled to disk");
        }
        self.spooled += buf.len();
        self.file = Some(file);
        self.reader.give_back(buf);
        Ok(())
    }

    /// The whole message for the backend, with `factor` times its size reserved.
    pub(super) async fn finish(mut self, tail: Vec<u8>, factor: usize) -> Result<Finished, Reply> {
        if self.failed {
            return Err(Reply::insufficient_storage());
        }
        let size = self.spooled + tail.len();
        let need = match self.file {
            None => size.saturating_mul(factor.max(1)).max(tail.capacity()),
            // The last buffer and the message read back exist side by side.
            Some(_) => size
                .saturating_mul(factor.max(1))
                .saturating_add(tail.capacity()),
        };
        if !self.memory.grow_within(need, self.memory_wait).await {
            warn!(size, need, "memory budget exhausted at end of DATA");
            return Err(Reply::insufficient_storage());
        }
        let Some(file) = self.file.take() else {
            return Ok(Finished {
                message: tail,
                _memory: self.memory,
            });
        };
        let spooled = self.spooled;
        let read = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut f = file;
            f.rewind()?;
            let mut message = Vec::with_capacity(size);
            f.take(spooled as u64).read_to_end(&mut message)?;
            if message.len() != spooled {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            message.extend_from_slice(&tail);
            Ok(message)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        match read {
            Ok(message) => Ok(Finished {
                message,
                _memory: self.memory,
            }),
            Err(e) => {
                warn!(error = %e, "cannot read spooled DATA back");
                Err(Reply::local_error())
            }
        }
    }
}

/// A new file in `dir` that has no name any more: it vanishes with its handle.
pub fn unlinked_file(dir: &Path) -> io::Result<File> {
    let path = dir.join(format!(
        "{INCOMING_PREFIX}{}",
        crate::store::spool::unique_suffix()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// Name prefix of DATA spool files (only ever seen on disk after a crash
/// between create and unlink; [`remove_leftovers`] clears them).
const INCOMING_PREFIX: &str = "data-";

/// Remove spool files a crash left behind in `dir` (creating `dir` if needed).
pub fn remove_leftovers(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(INCOMING_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}
