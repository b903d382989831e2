//! `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`: the CPU time of the calling
//! thread, to bound work whose cost depends on its input (the HTML sanitiser).
#![allow(unsafe_code)]

use std::time::Duration;

/// CPU time the calling thread has used so far; `None` where it cannot be read.
pub fn now() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own, and
    // CLOCK_THREAD_CPUTIME_ID is a valid clock on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_cpu_time_advances_with_work() {
        let a = super::now().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::now().unwrap() > a);
    }
}
