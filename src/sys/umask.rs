//! `umask(2)`: the mode bits new files and directories never get. std has
//! no safe form of it; pecd sets 0o077 first thing, so everything it makes
//! is private to its user (0600 files, 0700 directories) whatever umask it
//! was started with.
#![allow(unsafe_code)]

/// Set the process umask to `mask`; the previous one.
pub fn set(mask: u32) -> u32 {
    // SAFETY: umask takes a plain integer, cannot fail and touches no memory
    // of ours; it changes process state that every thread reads at each
    // file creation, which is the point.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    old as u32
}
