//! The recursion probe: the EICAR test file in a message nested in
//! archives deeper than clamd looks by default. clamd reports none of its
//! settings, so this is how `serve` and `check-config` find out whether a
//! virus nested past `MaxRecursion` would pass as clean (it does unless
//! `AlertExceedsMax` is on).
//!
//! Built in memory at run time; the test string is assembled from parts so
//! that no file of the repository or of the binary's data trips a scanner.

use std::io::Write;

/// Archives around the probe's message: deeper than clamd's default
/// `MaxRecursion` (17) and than any setting a provider would choose.
pub const PROBE_DEPTH: usize = 64;

/// The standard EICAR anti-virus test string (harmless by design: every
/// scanner reports it, nothing runs it).
pub fn eicar() -> String {
    let head = ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-"];
    let tail = ["ANTIVIRUS-TEST-", "FILE!$H+H*"];
    format!("{}{}{}{}", head[0], head[1], tail[0], tail[1])
}

/// A message with the EICAR file attached in base64: the raw bytes of the
/// archives around it never hold the string itself, so only a clamd that
/// opens every level finds it.
fn message() -> Vec<u8> {
    let b64 = openssl::base64::encode_block(eicar().as_bytes());
    format!(
        "From: probe@pecd.invalid\r\nTo: probe@pecd.invalid\r\nSubject: pecd clamd recursion probe\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"probe\"\r\n\r\n\
         --probe\r\nContent-Type: text/plain\r\n\r\nThe EICAR test file, nested.\r\n\
         --probe\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--probe--\r\n"
    )
    .into_bytes()
}

/// The probe's message inside `depth` zip archives, each holding the next
/// (stored: the zip crate is built without compression).
pub fn nested(depth: usize) -> std::io::Result<Vec<u8>> {
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut data = message();
    let mut name = "probe.eml".to_string();
    for level in 0..depth {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file(name.as_str(), opts)
            .map_err(std::io::Error::other)?;
        z.write_all(&data)?;
        data = z.finish().map_err(std::io::Error::other)?.into_inner();
        name = format!("level-{}.zip", depth - level);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_nested_zips_and_never_shows_the_string() {
        let p = nested(PROBE_DEPTH).unwrap();
        assert!(p.starts_with(b"PK\x03\x04"));
        assert!(p.len() < 64 * 1024, "{}", p.len());
        let e = eicar();
        assert_eq!(e.len(), 68);
        assert!(!p.windows(e.len()).any(|w| w == e.as_bytes()));
        // Open it level by level down to the message.
        let mut data = p;
        for _ in 0..PROBE_DEPTH {
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
            assert_eq!(z.len(), 1);
            let mut f = z.by_index(0).unwrap();
            let mut inner = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut inner).unwrap();
            data = inner;
        }
        assert!(data.starts_with(b"From: probe@pecd.invalid"));
    }
}
