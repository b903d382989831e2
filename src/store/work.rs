//! The reads and the housekeeping the scheduler and the executors need,
//! typed: nobody outside the store hands it a closure. Due work itself is
//! handed out by [`Store::claim`] (`claims`).

use crate::flow::batch::MessageRow;

use super::{maildir, quarantine, Result, Store};

/// A spool segment is kept this long after its last write (a minute: any
/// straggler is done).
const SEGMENT_SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Finished jobs are forgotten after a week, and a failed job stops holding
/// its bytes for the operator; the PEC log keeps the record.
const JOB_KEEP_MS: i64 = 7 * 86_400_000;

impl Store {
    /// The message we accepted as `identificativo`, if we did.
    pub async fn accepted(&self, identificativo: &str) -> Result<Option<MessageRow>> {
        let id = identificativo.to_string();
        self.read(move |db| db.message_get(&id)).await
    }

    /// Blocking form of [`Store::accepted`].
    pub fn accepted_blocking(&self, identificativo: &str) -> Result<Option<MessageRow>> {
        self.read_blocking(|db| db.message_get(identificativo))
    }

    /// Whether `address` is a user of ours with a mailbox.
    pub fn mailbox_exists(&self, address: &str) -> Result<bool> {
        Ok(self.read_blocking(|db| db.user_exists(address))?
            && maildir::exists(&self.paths().mail, address))
    }

    /// How many bytes `address`'s mailbox uses.
    pub fn mailbox_used(&self, address: &str) -> Result<u64> {
        Ok(super::quota::usage(&self.mailbox_root(address)?)?.bytes)
    }

    /// Whether `address`'s mailbox already holds the delivery `name` (a
    /// retry): a lookup in `new/` and a listing of `cur/`, so asked only
    /// when the answer matters.
    pub fn already_delivered(&self, address: &str, name: &str) -> Result<bool> {
        Ok(maildir::delivered(&self.mailbox_root(address)?, name))
    }

    fn mailbox_root(&self, address: &str) -> Result<std::path::PathBuf> {
        maildir::mailbox_path(&self.paths().mail, address)
            .map_err(|e| super::StoreError::Commit(e.to_string()))
    }

    /// The earliest due time of any pending job or armed deadline.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        self.read(|db| db.jobs_next_due()).await
    }

    /// Housekeeping: remove spool segments no pending work names, forget
    /// old finished jobs, and purge PEC log rows and quarantined messages
    /// past the legal 30 months.
    pub fn sweep(&self, now: i64) -> Result<()> {
        for (seg, age) in self.spool().old_segments() {
            if age < SEGMENT_SETTLE {
                continue;
            }
            let used = self
                .read_blocking(|db| db.segment_in_use(&seg, now, JOB_KEEP_MS))
                .unwrap_or(true);
            if used {
                continue;
            }
            if self.spool().remove_segment(&seg).is_ok() {
                self.write_blocking(move |db| db.forget_segment(&seg))?;
            }
        }
        self.write_blocking(move |db| {
            db.jobs_purge_finished(now, JOB_KEEP_MS)?;
            db.log_purge_expired(now)?;
            Ok(())
        })?;
        // Rows first, files after the commit: a crash in between leaves an
        // orphan file (harmless), never a row naming a missing file.
        let expired = self.write_blocking(move |db| db.quarantine_purge_expired(now))?;
        let dir = quarantine::dir(&self.paths().data_dir);
        for f in expired {
            if let Err(e) = std::fs::remove_file(dir.join(&f)) {
                tracing::warn!(file = %f, error = %e, "quarantine sweep: could not remove");
            }
        }
        Ok(())
    }
}
