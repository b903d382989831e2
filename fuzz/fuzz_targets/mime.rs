//! The MIME readers on an arbitrary message: our part splitter
//! (`pecd::pec::mime`: walk, headers, content types, transfer decodings)
//! and what the IMAP engine computes for FETCH/SEARCH (`pecd::imap::mime`
//! through `pecd::fuzzing::imap_fetch`). No panic; every part range lies
//! inside the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::pec::mime;

/// mail-parser (behind the IMAP half) recurses once per nesting level and
/// overflows the stack on deeply nested input (known, handled separately);
/// keep the nesting the fuzzer can build below that so it looks elsewhere.
fn shallow(data: &[u8]) -> bool {
    let needle = b"content-type";
    data.windows(needle.len())
        .filter(|w| w.eq_ignore_ascii_case(needle))
        .count()
        <= 40
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 256 * 1024 {
        return;
    }
    let parts = mime::walk(data, 0..data.len());
    for e in &parts {
        assert!(
            e.header.end <= data.len() && e.body.end <= data.len(),
            "{e:?}"
        );
        let ct = e.content_type(data);
        let _ = ct.param("boundary");
        let _ = ct.param("name");
        let _ = e.filename(data);
        let _ = e.transfer_encoding(data);
        let _ = e.header(data, "Subject").map(|s| mime::decode_rfc2047(&s));
        let body = e.decoded_body(data);
        let _ = mime::decode_charset(&body, ct.param("charset").as_deref().unwrap_or("utf-8"));
        let _ = mime::header_fields(&data[e.header.clone()]);
    }
    let _ = mime::decode_quoted_printable(data);
    let b64 = mime::encode_base64_lines(data, 76);
    assert_eq!(mime::decode_base64(&b64), data);
    let _ = mime::canonicalize_crlf(data);

    if shallow(data) {
        pecd::fuzzing::imap_fetch(data);
    }
});
