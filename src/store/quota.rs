//! Mailbox usage, kept exact without walking the Maildir on each delivery.
//!
//! The count is a Maildir++ `maildirsize` file in the user's Maildir root
//! (Courier and Dovecot read the same format): a first line with the quota
//! definition (`0S`: pecd keeps the limit in its database, so the file
//! states none), then one `<bytes> <messages>` line per change, appended.
//! Every writer (delivery, IMAP APPEND/COPY/MOVE, EXPUNGE, POP3 DELE) changes
//! the tree and appends its line while holding `maildirsize.lock`, and a
//! recount (file missing, damaged, or grown past [`RECOUNT_ABOVE`] bytes)
//! walks the tree under the same lock, so no change is counted twice or
//! missed. Usage counts every message file of every folder.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The usage file (Maildir++).
pub const MAILDIRSIZE: &str = "maildirsize";
const LOCK: &str = "maildirsize.lock";
/// Past this size the file is rewritten from a walk (Maildir++ uses 5120).
pub const RECOUNT_ABOVE: u64 = 5120;

/// What a Maildir holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Octets of all message files.
    pub bytes: u64,
    /// Number of message files.
    pub messages: u64,
}

/// The usage lock of one Maildir; writers hold it across their change and
/// its [`record`].
pub struct Guard(#[allow(dead_code)] fs::File);

/// Take the usage lock of the Maildir at `root`.
pub fn lock(root: &Path) -> io::Result<Guard> {
    let path = root.join(LOCK);
    let f = match fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        // Made by an admin command run as another user: flock needs no write access.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => fs::File::open(&path)?,
        r => r?,
    };
    f.lock()?;
    Ok(Guard(f))
}

/// Note a change (`bytes`, `messages` may be negative). The caller holds
/// [`lock`]. Without a usage file there is nothing to correct: the next
/// [`usage`] counts the tree, change included. The count never fails the
/// change it follows (a delivery is worth more than its bookkeeping): a
/// file that cannot be appended to is removed, so the next reading recounts.
pub fn record(root: &Path, _held: &Guard, bytes: i64, messages: i64) {
    let path = root.join(MAILDIRSIZE);
    let r = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{bytes} {messages}\n").as_bytes()));
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "mailbox usage not updated; it will be recounted");
            let _ = fs::remove_file(&path);
        }
    }
}

/// Drop the usage file (after a change too large to note, such as a
/// deleted folder): the next [`usage`] recounts.
pub fn invalidate(root: &Path) -> io::Result<()> {
    let _g = lock(root)?;
    match fs::remove_file(root.join(MAILDIRSIZE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The current usage of the Maildir at `root`.
pub fn usage(root: &Path) -> io::Result<Usage> {
    let _g = lock(root)?;
    let path = root.join(MAILDIRSIZE);
    match fs::read_to_string(&path) {
        Ok(text) if (text.len() as u64) <= RECOUNT_ABOVE => {
            if let Some(u) = parse(&text) {
                return Ok(u);
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let u = walk(root)?;
    // Not cached if it cannot be written (e.g. run as another user): still exact.
    let _ = super::atomic::write_atomic(
        &path,
        format!("0S\n{} {}\n", u.bytes, u.messages).as_bytes(),
    );
    Ok(u)
}

/// Sum of the lines after the quota definition; `None` if damaged.
fn parse(text: &str) -> Option<Usage> {
    let mut lines = text.lines();
    lines.next()?;
    let (mut b, mut m) = (0i64, 0i64);
    for l in lines {
        if l.is_empty() {
            continue;
        }
        let (x, y) = l.split_once(' ')?;
        b = b.checked_add(x.trim().parse().ok()?)?;
        m = m.checked_add(y.trim().parse().ok()?)?;
    }
    // A negative total means a lost line somewhere: recount.
    Some(Usage {
        bytes: u64::try_from(b).ok()?,
        messages: u64::try_from(m).ok()?,
    })
}

/// Count every message file (`new/`, `cur/`) of INBOX and of each `.Folder`.
fn walk(root: &Path) -> io::Result<Usage> {
    let mut u = Usage::default();
    let mut dirs = vec![root.to_path_buf()];
    for e in fs::read_dir(root)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with('.') && e.file_type()?.is_dir() {
            dirs.push(e.path());
        }
    }
    for d in dirs {
        for sub in ["new", "cur"] {
            let rd = match fs::read_dir(d.join(sub)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                match e.metadata() {
                    Ok(md) if md.is_file() => {
                        u.bytes += md.len();
                        u.messages += 1;
                    }
                    Ok(_) => {}
                    // Removed while we looked: not there.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_counted_once_then_kept_by_recorded_changes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for sub in ["new", "cur", ".Sent/cur", ".Sent/new"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::write(root.join("new/a"), b"12345").unwrap();
        fs::write(root.join(".Sent/cur/b:2,S"), b"123").unwrap();
        assert_eq!(
            usage(root).unwrap(),
            Usage {
                bytes: 8,
                messages: 2
            }
        );
        // Changes are noted, not found by walking: a file added behind the
        // store's back does not count until a recount.
        fs::write(root.join("cur/stray"), b"xxxxxxxxxx").unwrap();
        {
            let g = lock(root).unwrap();
            fs::write(root.join("new/c"), b"1234567").unwrap();
            record(root, &g, 7, 1);
            fs::remove_file(root.join("new/a")).unwrap();
            record(root, &g, -5, -1);
        }
        assert_eq!(
            usage(root).unwrap(),
            Usage {
                bytes: 10,
                messages: 2
            }
        );
        invalidate(root).unwrap();
        assert_eq!(
            usage(root).unwrap(),
            Usage {
                bytes: 20,
                messages: 3
            }
        );
        // A file grown past the limit is rewritten from a walk.
        {
            let g = lock(root).unwrap();
            for _ in 0..2000 {
                record(root, &g, 1, 0);
            }
        }
        assert_eq!(
            usage(root).unwrap(),
            Usage {
                bytes: 20,
                messages: 3
            }
        );
        let text = fs::read_to_string(root.join(MAILDIRSIZE)).unwrap();
        assert_eq!(text, "0S\n20 3\n");
    }

    #[test]
    fn damaged_files_are_recounted() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("cur")).unwrap();
        fs::write(root.join("cur/a"), b"abc").unwrap();
        for bad in ["0S\nx y\n", "0S\n-10 -1\n", ""] {
            fs::write(root.join(MAILDIRSIZE), bad).unwrap();
            assert_eq!(
                usage(root).unwrap(),
                Usage {
                    bytes: 3,
                    messages: 1
                },
                "{bad:?}"
            );
        }
    }
}
