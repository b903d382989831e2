//! Private modes under the data folder. pecd creates everything 0600/0700
//! (its umask is 0o077); files and folders an older pecd made under a wider
//! umask are narrowed at `serve` start by [`tighten`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What [`tighten`] did.
#[derive(Debug, Default)]
pub struct Tightened {
    /// Files and folders whose group/other bits were removed.
    pub changed: usize,
    /// Paths that could not be read or changed, with why (first few only).
    pub errors: Vec<String>,
}

const MAX_ERRORS: usize = 10;

/// Remove the group and other permission bits of `root` and everything
/// under it; symbolic links are neither followed nor changed.
pub fn tighten(root: &Path) -> Tightened {
    let mut t = Tightened::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            // Gone meanwhile (a Maildir tmp file delivered, a spool segment
            // removed): nothing to narrow.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                t.error(&p, e);
                continue;
            }
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & !0o077)) {
                Ok(()) => t.changed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => t.error(&p, e),
            }
        }
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(rd) => stack.extend(rd.flatten().map(|e| e.path())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => t.error(&p, e),
            }
        }
    }
    t
}

impl Tightened {
    fn error(&mut self, p: &Path, e: std::io::Error) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(format!("{}: {e}", p.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_and_other_bits_go_everywhere_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data");
        std::fs::create_dir_all(root.join("mail/x/new")).unwrap();
        std::fs::write(root.join("db"), b"x").unwrap();
        std::fs::write(root.join("mail/x/new/m"), b"x").unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&root, 0o755);
        set(&root.join("mail"), 0o775);
        set(&root.join("db"), 0o644);
        set(&root.join("mail/x/new/m"), 0o640);
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();
        let t = tighten(&root);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("mail")), 0o700);
        assert_eq!(mode(&root.join("db")), 0o600);
        assert_eq!(mode(&root.join("mail/x/new/m")), 0o600);
        assert!(t.changed >= 4);
        // The link's target is not ours to change.
        assert_ne!(mode(Path::new("/etc/hostname")) & 0o044, 0);
        assert_eq!(tighten(&root).changed, 0);
    }
}
