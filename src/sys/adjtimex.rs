//! `adjtimex(2)`, read only: whether the kernel keeps the clock disciplined
//! (NTP, chrony) and how far off it thinks it may be. Receipts must carry a
//! time within one second of UTC (pec-spec.md), so the operator must see it.
#![allow(unsafe_code)]

/// What the kernel says of its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// A time daemon disciplines the clock (`STA_UNSYNC` clear, state not `TIME_ERROR`).
    pub synchronised: bool,
    /// The kernel's estimated error, in microseconds.
    pub estimated_error_us: i64,
}

/// The kernel clock's state now.
pub fn read() -> std::io::Result<ClockState> {
    // SAFETY: a zeroed timex is a valid value of this plain C struct; with
    // `modes = 0` adjtimex only reads the clock state into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: as above; the pointer is to a live, exclusively borrowed struct.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ClockState {
        synchronised: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        estimated_error_us: tx.esterror,
    })
}
