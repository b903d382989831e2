//! Infected messages kept for 30 months (DPR 68/2005 art. 12), outside the
//! users' mailboxes: a byte-exact file under `<data_dir>/quarantine/` and a
//! row naming it with the identificativo, the virus and the time.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Inspector, Result};

/// The quarantine folder under the data folder.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("quarantine")
}

/// One quarantined message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// Row id (`pecd quarantine show ID`); 0 before insertion.
    pub id: i64,
    /// The identificativo of the message, when it had one.
    pub identificativo: Option<String>,
    /// The virus clamd named.
    pub virus: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients, comma separated.
    pub recipients: String,
    /// Where it was caught: `submission` or `reception`.
    pub point: String,
    /// The file name under the quarantine folder.
    pub file: String,
    /// Its size in bytes.
    pub size: i64,
    /// When it was caught (unix ms).
    pub at: i64,
}

/// Write `bytes` durably into the quarantine folder; gives the file name.
/// Named by time and content hash, so a retried scan rewrites the same file.
pub fn keep(data_dir: &Path, at_ms: i64, bytes: &[u8]) -> std::io::Result<String> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    let h = openssl::sha::sha256(bytes);
    let hex: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{at_ms}-{hex}.eml");
    let tmp = d.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, d.join(&name))?;
    std::fs::File::open(&d)?.sync_all()?;
    Ok(name)
}

impl Inspector {
    /// Every quarantined message, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        self.run(|db| db.quarantine_list())
    }

    /// One quarantined message by row id or identificativo.
    pub fn quarantined_one(&self, key: &str) -> Result<Option<Quarantined>> {
        self.run(|db| db.quarantine_get(key))
    }
}
