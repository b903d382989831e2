//! `getrusage(RUSAGE_SELF)`: CPU time and peak memory for `pecd bench`.
#![allow(unsafe_code)]

/// (user + system CPU seconds, peak RSS in MiB) of this process.
pub fn own() -> (f64, f64) {
    // SAFETY: a zeroed rusage is a valid value of this plain C struct, and
    // getrusage only writes into the struct we own; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (
        t(ru.ru_utime) + t(ru.ru_stime),
        ru.ru_maxrss as f64 / 1024.0,
    )
}
