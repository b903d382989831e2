//! Delivery into Maildirs at `<mail_root>/<domain>/<localpart>/`.
//!
//! The Maildir protocol (the file is built in `tmp/` and appears in `new/`
//! whole, once synced) keeps the store readable by Dovecot or any Maildir
//! tool. The file name is derived
//! from the delivery's idempotency key, so a delivery repeated after a crash
//! (file renamed, queue row not yet marked done) finds its own file and does
//! not leave a second copy. Bytes are written exactly as given: they are what
//! was signed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a delivery failed.
#[derive(Debug)]
pub enum DeliveryError {
    /// The address has no mailbox here.
    NoMailbox,
    /// The address cannot name a mailbox (path tricks, no `@`).
    BadAddress,
    /// The file system failed.
    Io(std::io::Error),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::NoMailbox => write!(f, "no such mailbox"),
            DeliveryError::BadAddress => write!(f, "address cannot name a mailbox"),
            DeliveryError::Io(e) => write!(f, "mailbox write failed: {e}"),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// The Maildir folder of `address`, refusing anything that could escape the
/// root: the one address-to-path rule, for delivery, IMAP and `user add`.
pub fn mailbox_path(mail_root: &Path, address: &str) -> Result<PathBuf, DeliveryError> {
    let a = address.trim().to_ascii_lowercase();
    let (local, domain) = a.rsplit_once('@').ok_or(DeliveryError::BadAddress)?;
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains(['/', '\\'])
            && !s.chars().any(|c| c.is_control())
    };
    if !ok(local) || !ok(domain) {
        return Err(DeliveryError::BadAddress);
    }
    Ok(mail_root.join(domain).join(local))
}

/// Create an empty Maildir for `address` (idempotent).
pub fn create(mail_root: &Path, address: &str) -> Result<PathBuf, DeliveryError> {
    let p = mailbox_path(mail_root, address)?;
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(p.join(sub)).map_err(DeliveryError::Io)?;
    }
    Ok(p)
}

/// Whether the Maildir at `root` already holds the delivery named `name`
/// (in `new/`, or in `cur/` with any flags).
pub fn delivered(root: &Path, name: &str) -> bool {
    if root.join("new").join(name).exists() {
        return true;
    }
    let prefix = format!("{name}:2,");
    std::fs::read_dir(root.join("cur")).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    })
}

/// Whether `address` has a Maildir.
pub fn exists(mail_root: &Path, address: &str) -> bool {
    mailbox_path(mail_root, address)
        .map(|p| p.join("new").is_dir())
        .unwrap_or(false)
}

pub use crate::flow::deliver::file_name_for;

/// Deliver `bytes` to `address` under the base name `name` (see [`file_name_for`]).
/// Returns the path of the new file, or of the earlier copy if this delivery
/// already happened. `thorough` also looks for a copy the user has already
/// flagged, which means listing `cur/`: only a retry, or work left by an
/// earlier process, can have one, and listing a big mailbox per delivery
/// would make delivery cost grow with the mailbox. The `new/` directory
/// still has to be synced for the entry to survive a crash:
/// [`super::Store::deliver`] does that with the group commit that records
/// the delivery.
pub fn deliver(
    mail_root: &Path,
    address: &str,
    name: &str,
    bytes: &[u8],
    thorough: bool,
) -> Result<PathBuf, DeliveryError> {
    let p = mailbox_path(mail_root, address)?;
    if !p.join("new").is_dir() {
        return Err(DeliveryError::NoMailbox);
    }
    let dst = p.join("new").join(name);
    if dst.exists() {
        return Ok(dst);
    }
    let seen = p.join("cur").join(format!("{name}:2,"));
    if seen.exists() {
        return Ok(seen);
    }
    if thorough {
        if let Ok(rd) = std::fs::read_dir(p.join("cur")) {
            // The user may already have flagged it; a flagged name keeps the base.
            let prefix = format!("{name}:2,");
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    return Ok(e.path());
                }
            }
        }
    }
    if dst.exists() {
        return Ok(dst);
    }
    write_new(&p.join("tmp"), name, &dst, bytes, &p).map_err(DeliveryError::Io)?;
    Ok(dst)
}

/// Make a written file visible as `dst` with `make_visible` and record its
/// usage, under `root`'s usage lock: a recount never sees the file without
/// its line, nor the line without the file. Only this short step is locked;
/// the data writes and fsyncs of deliveries to one mailbox overlap.
fn publish(
    root: &Path,
    dst: &Path,
    size: usize,
    make_visible: &dyn Fn() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let g = super::quota::lock(root)?;
    if dst.exists() {
        // Delivered meanwhile by another worker.
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    make_visible()?;
    super::quota::record(root, &g, size as i64, 1);
    Ok(())
}

/// Write `bytes` as `dst`, which appears whole or not at all. The file is
/// built as an unnamed inode in `tmp_dir` (`O_TMPFILE`) and linked into place:
/// creating it takes no directory lock (concurrent deliveries to one mailbox
/// queued on the `tmp/` lock while ext4 allocated inodes), a crash leaves
/// nothing behind in `tmp/`, and an existing `dst` is never replaced. Where
/// `O_TMPFILE` or `/proc` is missing, the classic `tmp/name` -> rename.
fn write_new(
    tmp_dir: &Path,
    name: &str,
    dst: &Path,
    bytes: &[u8],
    root: &Path,
) -> std::io::Result<()> {
    let unnamed = std::fs::OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(tmp_dir);
    match unnamed {
        Ok(mut f) => {
            f.write_all(bytes)?;
            let linked = publish(root, dst, bytes.len(), &|| {
                crate::sys::linkat::link_unnamed(&f, dst)
            });
            if linked.is_ok()
                || linked
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
            {
                // Synced once linked, so that the link count is on disk too;
                // the directory entry is synced with the group commit.
                return f.sync_all();
            }
            if let Err(e) = linked {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(e);
                }
            }
        }
        Err(e)
            if !matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            return Err(e)
        }
        Err(_) => {}
    }
    write_renamed(tmp_dir, name, dst, bytes, root)
}

/// The classic Maildir write: `tmp/name`, synced, renamed to `dst`.
fn write_renamed(
    tmp_dir: &Path,
    name: &str,
    dst: &Path,
    bytes: &[u8],
    root: &Path,
) -> std::io::Result<()> {
    let tmp = tmp_dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    match publish(root, dst, bytes.len(), &|| std::fs::rename(&tmp, dst)) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_is_exact_and_idempotent() {
        let root = tempfile::tempdir().unwrap();
        create(root.path(), "Bob@PEC.beta.test").unwrap();
        let name = file_name_for("k1", 100_000, "mx.beta.test");
        let bytes = b"Subject: x\r\n\r\nbody \r\n".to_vec();
        let p1 = deliver(root.path(), "bob@pec.beta.test", &name, &bytes, false).unwrap();
        let p2 = deliver(root.path(), "bob@pec.beta.test", &name, &bytes, false).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(std::fs::read(&p1).unwrap(), bytes);
        let n = std::fs::read_dir(root.path().join("pec.beta.test/bob/new"))
            .unwrap()
            .count();
        assert_eq!(n, 1);
        // Read and flagged by the user: only a thorough retry finds it.
        let box_dir = root.path().join("pec.beta.test/bob");
        let flagged = box_dir.join("cur").join(format!("{name}:2,FS"));
        std::fs::rename(&p1, &flagged).unwrap();
        let again = deliver(root.path(), "bob@pec.beta.test", &name, &bytes, true).unwrap();
        assert_eq!(again, flagged);
        assert_eq!(std::fs::read_dir(box_dir.join("new")).unwrap().count(), 0);
    }

    #[test]
    fn both_ways_of_writing_leave_only_the_whole_file() {
        let root = tempfile::tempdir().unwrap();
        let p = create(root.path(), "bob@pec.beta.test").unwrap();
        let bytes = b"Subject: y\r\n\r\nbody\r\n";
        let (a, b) = (p.join("new").join("a"), p.join("new").join("b"));
        write_new(&p.join("tmp"), "a", &a, bytes, &p).unwrap();
        write_renamed(&p.join("tmp"), "b", &b, bytes, &p).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), bytes);
        assert_eq!(std::fs::read(&b).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(p.join("tmp")).unwrap().count(), 0);
        // An existing file is never replaced.
        write_new(&p.join("tmp"), "a", &a, b"other", &p).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), bytes);
    }

    #[test]
    fn refuses_unknown_and_escaping_addresses() {
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            deliver(root.path(), "nobody@pec.beta.test", "n", b"x", true),
            Err(DeliveryError::NoMailbox)
        ));
        for bad in ["../x@y", "a@..", "a/b@c", "noat", ".hidden@d"] {
            assert!(mailbox_path(root.path(), bad).is_err(), "{bad}");
        }
    }
}
