//! The IMAP session's framing (imap-codec's `Fragmentizer`, our literal
//! limits, then `CommandCodec`, or the SASL / IDLE decoders when the
//! previous command asks for them) driven with arbitrary bytes: no panic,
//! and splitting the bytes into different reads never changes what the
//! session does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::fuzzing::{imap_session, ImapEvent};

fuzz_target!(|data: &[u8]| {
    // [frag_max: 2][max_literal: 1][cut][input]: small limits, so the
    // too-long and too-large paths are reached with small inputs.
    if data.len() < 4 {
        return;
    }
    let frag_max = u16::from_le_bytes([data[0], data[1]]) as u32;
    let max_literal = data[2] as usize * 4;
    let cut = data[3] as usize;
    let input = &data[4..];

    let whole = imap_session(&[input], frag_max, max_literal);
    let split = input.split_at(cut.min(input.len()));
    assert_eq!(
        whole,
        imap_session(&[split.0, split.1], frag_max, max_literal),
        "split at {cut}"
    );
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        whole,
        imap_session(&bytes, frag_max, max_literal),
        "byte by byte"
    );
    for e in &whole {
        if let ImapEvent::Reply(r) = e {
            // A tag echoed back must not let the client inject a line.
            assert!(
                r.ends_with(b"\r\n") && !r[..r.len() - 2].contains(&b'\n'),
                "{r:?}"
            );
        }
    }
});
