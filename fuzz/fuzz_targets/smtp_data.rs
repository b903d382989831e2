//! `pecd::smtp::data::DataReader` fed arbitrary bytes in an arbitrary
//! chunking: no panic, and the chunking never changes the outcome or the
//! number of bytes consumed (the SMTP smuggling invariant: every hop must
//! see the same end of data, however the TCP segments fell).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::smtp::data::{DataOutcome, DataReader};

/// Feed `input` in chunks whose sizes cycle through `cuts` (a zero is an
/// empty read, then one byte); (bytes consumed, outcome).
fn run(input: &[u8], max: usize, cuts: &[u8]) -> (usize, Option<DataOutcome>) {
    let mut r = DataReader::new(max);
    let mut at = 0;
    for &c in cuts.iter().cycle() {
        if at == input.len() {
            break;
        }
        if c == 0 {
            assert_eq!(r.feed(&[]), (0, None));
        }
        let n = (c as usize).clamp(1, input.len() - at);
        let (used, out) = r.feed(&input[at..at + n]);
        at += used;
        if out.is_some() {
            return (at, out);
        }
        assert_eq!(used, n, "partial consume without an end");
    }
    (at, None)
}

fuzz_target!(|data: &[u8]| {
    // [max: 2 bytes][number of cut bytes: 1][cuts][input]
    if data.len() < 3 {
        return;
    }
    let max = u16::from_le_bytes([data[0], data[1]]) as usize;
    let ncuts = (data[2] as usize).min(data.len() - 3);
    let (cuts, input) = data[3..].split_at(ncuts);

    let whole = {
        let mut r = DataReader::new(max);
        let (used, out) = r.feed(input);
        if out.is_none() {
            assert_eq!(used, input.len());
        }
        (used, out)
    };
    if let (n, Some(DataOutcome::Message(m))) = &whole {
        // What we store is CRLF-clean, within the limit, and never longer
        // than what came in before the terminator.
        assert!(m.len() <= max && m.len() + 3 <= *n);
        assert!(m.is_empty() || m.ends_with(b"\r\n"));
        for (i, &b) in m.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && m[i - 1] == b'\r');
            }
            if b == b'\r' {
                assert_eq!(m.get(i + 1), Some(&b'\n'));
            }
        }
    }
    if !cuts.is_empty() {
        assert_eq!(
            whole,
            run(input, max, cuts),
            "chunking {cuts:?} changed the outcome"
        );
    }
    assert_eq!(
        whole,
        run(input, max, &[1]),
        "byte by byte changed the outcome"
    );
});
