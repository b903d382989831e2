//! `linkat(AT_SYMLINK_FOLLOW)`: give an `O_TMPFILE` inode a name.
//! (`std::fs::hard_link` passes no flags, so it would link the `/proc`
//! symlink itself, not the file it names.)
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Link the unnamed file `f` (opened with `O_TMPFILE`) at `dst`.
pub fn link_unnamed(f: &std::fs::File, dst: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    let to = CString::new(dst.as_os_str().as_bytes())?;
    // SAFETY: both arguments are NUL-terminated strings that outlive the
    // call; linkat reads them and keeps no pointer.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
