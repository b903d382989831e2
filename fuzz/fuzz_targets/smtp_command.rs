//! `pecd::smtp::command::parse` on one arbitrary command line: no panic,
//! and what it returns keeps the promises the session relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::smtp::command::{is_auth, parse, Command, MAX_AUTH_LINE};

/// The session only ever passes lines up to the AUTH limit.
fn clean(s: &str) -> bool {
    !s.bytes()
        .any(|b| b == b'<' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
}

fuzz_target!(|line: &[u8]| {
    if line.len() > MAX_AUTH_LINE {
        return;
    }
    let _ = is_auth(line);
    match parse(line) {
        Ok(Command::Mail { from, .. }) => {
            assert!(clean(&from), "reverse-path {from:?}");
            assert!(
                from.is_empty() || from.rfind('@').is_some_and(|i| i > 0 && i + 1 < from.len())
            );
        }
        Ok(Command::Rcpt { to }) => {
            assert!(!to.is_empty() && clean(&to), "forward-path {to:?}");
        }
        Ok(Command::Ehlo(d) | Command::Helo(d)) => {
            assert!(
                !d.is_empty()
                    && !d
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            );
        }
        Ok(_) => {}
        Err(reply) => {
            assert!((500..600).contains(&reply.code), "{reply:?}");
            // The reply goes back on the wire: no CR or LF of the client's
            // may split it into lines the client did not get from us.
            let wire = reply.to_wire();
            assert!(wire.ends_with(b"\r\n"));
            for l in wire[..wire.len() - 2].split(|&b| b == b'\n') {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                assert!(
                    !l.contains(&b'\r') && l.len() >= 4 && l[..3].iter().all(u8::is_ascii_digit),
                    "{wire:?}"
                );
            }
        }
    }
});
