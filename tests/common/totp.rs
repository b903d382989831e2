//! The second factor as a user's authenticator app sees it: the secret
//! from its base32 form, the code of now, a code that is wrong.

/// The bytes of a base32 (RFC 4648, no padding needed) secret.
pub fn base32_decode(s: &str) -> Vec<u8> {
    let (mut buf, mut bits, mut out) = (0u32, 0u32, vec![]);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => continue,
        } as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// The TOTP code of `secret` now.
pub fn code_now(secret: &[u8]) -> String {
    let now = pecd::pec::clock::since_epoch().as_secs() as i64;
    format!(
        "{:06}",
        pecd::server::web::totp::code_at(secret, now).unwrap()
    )
}

/// A code that is wrong now and in the steps either side.
pub fn wrong_code(secret: &[u8]) -> String {
    let now = pecd::pec::clock::since_epoch().as_secs() as i64;
    (0..1000u32)
        .map(|n| format!("{:06}", 100_000 + n * 7))
        .find(|c| {
            (-2..=2).all(|d| {
                pecd::server::web::totp::code_at(secret, now + d * 30) != Some(c.parse().unwrap())
            })
        })
        .unwrap()
}
