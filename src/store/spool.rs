//! Message bytes waiting for work, one file each, written durably before the
//! queue row that names them is committed.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` as a new spool file and make it durable; returns its name.
pub fn put(spool: &Path, name_hint: &str, bytes: &[u8]) -> std::io::Result<String> {
    let name = format!("{}.{}.eml", name_hint, unique_suffix());
    let tmp = spool.join(format!(".{name}.tmp"));
    let dst = spool.join(&name);
    write_durably(&tmp, &dst, bytes)?;
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

/// tmp -> fsync -> rename -> fsync(dir): after this returns the file survives a crash.
pub fn write_durably(tmp: &Path, dst: &Path, bytes: &[u8]) -> std::io::Result<()> {
    {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, dst)?;
    if let Some(dir) = dst.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
