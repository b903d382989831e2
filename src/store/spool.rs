//! Message bytes waiting for work, one file each, written durably before the
//! queue row that names them is committed.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` as a new spool file with its data on disk; returns its
/// name. The directory entry becomes durable when the directory is synced:
/// use [`super::Store::put_blob`], whose writer thread syncs the spool
/// directory once per group commit, before any row naming the file commits.
/// No temporary name is needed: until a committed row names it, the file is
/// nobody's (the sweeper removes such orphans).
pub fn put(spool: &Path, name_hint: &str, bytes: &[u8]) -> std::io::Result<String> {
    let name = format!("{}.{}.eml", name_hint, unique_suffix());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(spool.join(&name))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(name)
}

/// Read a spool file.
pub fn get(spool: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path_of(spool, name)?)
}

/// Remove a spool file (missing is fine).
pub fn remove(spool: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path_of(spool, name)?) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn path_of(spool: &Path, name: &str) -> std::io::Result<PathBuf> {
    if name.contains('/') || name.starts_with('.') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bad spool name",
        ));
    }
    Ok(spool.join(name))
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
