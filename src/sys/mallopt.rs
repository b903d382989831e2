//! `mallopt(M_MMAP_THRESHOLD)`: glibc allocator tuning (see
//! `server::start::pin_mmap_threshold` for why).
#![allow(unsafe_code)]

/// Serve allocations of at least `bytes` from mmap, returned on free.
pub fn mmap_threshold(bytes: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning and is valid at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}
