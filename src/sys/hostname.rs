//! `gethostname(2)`: this machine's name, the default `[cluster] node`.
//! std has no safe form of it.
#![allow(unsafe_code)]

/// The host name, or `None` if the kernel gives none that is UTF-8.
pub fn get() -> Option<String> {
    // HOST_NAME_MAX is 64 on Linux; the rest is room for other systems.
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the
    // call; gethostname writes at most `len` bytes into it and nothing else.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // A name that fills the buffer may come without its NUL: take it all.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_the_kernels_host_name() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(super::get().as_deref(), Some(kernel.trim()));
    }
}
