//! The fuzz targets' bodies: each takes the raw bytes libFuzzer hands it
//! and panics on a broken invariant. They live in the library so that the
//! deterministic property tests (`props`) run the same checks in `cargo test`.

use crate::pec::mime as pec_mime;
use crate::smtp::data::{DataOutcome, DataReader};

use super::{der_signed_parts, der_signer_info, imap_fetch, imap_session, ImapEvent};

/// What a path or domain may never contain once parsed.
fn clean(s: &str) -> bool {
    !s.bytes()
        .any(|b| b == b'<' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
}

/// `smtp::command::parse` on one arbitrary command line: no panic,
/// and what it returns keeps the promises the session relies on.
pub fn smtp_command(line: &[u8]) {
    use crate::smtp::command::{is_auth, parse, Command, MAX_AUTH_LINE};
    // The session only ever passes lines up to the AUTH limit.
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
}

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

/// `smtp::data::DataReader` fed arbitrary bytes in an arbitrary
/// chunking: no panic, and the chunking never changes the outcome or the
/// number of bytes consumed (the SMTP smuggling invariant: every hop must
/// see the same end of data, however the TCP segments fell).
pub fn smtp_data(data: &[u8]) {
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
}

/// The IMAP session's framing (imap-codec's `Fragmentizer`, our literal
/// limits, then `CommandCodec`, or the SASL / IDLE decoders when the
/// previous command asks for them) driven with arbitrary bytes: no panic,
/// and splitting the bytes into different reads never changes what the
/// session does.
pub fn imap_command(data: &[u8]) {
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
}

/// mail-parser (behind the IMAP half and the daticert extraction) recurses
/// once per nesting level and overflows the stack on deeply nested input
/// (known, handled separately); keep the nesting the fuzzer can build below
/// that so it looks elsewhere.
fn shallow(data: &[u8]) -> bool {
    let needle = b"content-type";
    data.windows(needle.len())
        .filter(|w| w.eq_ignore_ascii_case(needle))
        .count()
        <= 40
}

/// The MIME readers on an arbitrary message: our part splitter
/// (`pec::mime`: walk, headers, content types, transfer decodings)
/// and what the IMAP engine computes for FETCH/SEARCH (`imap::mime`
/// through [`imap_fetch`]). No panic; every part range lies inside the
/// message.
pub fn mime(data: &[u8]) {
    if data.len() > 256 * 1024 {
        return;
    }
    let parts = pec_mime::walk(data, 0..data.len());
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
        let _ = e
            .header(data, "Subject")
            .map(|s| pec_mime::decode_rfc2047(&s));
        let body = e.decoded_body(data);
        let _ = pec_mime::decode_charset(&body, ct.param("charset").as_deref().unwrap_or("utf-8"));
        let _ = pec_mime::header_fields(&data[e.header.clone()]);
    }
    let _ = pec_mime::decode_quoted_printable(data);
    let b64 = pec_mime::encode_base64_lines(data, 76);
    assert_eq!(pec_mime::decode_base64(&b64), data);
    let _ = pec_mime::canonicalize_crlf(data);

    if shallow(data) {
        imap_fetch(data);
    }
}

/// `daticert.xml` read and written back: parsing arbitrary bytes never
/// panics, and whatever parses survives `to_xml` then `parse` unchanged
/// (a receipt quotes the busta's daticert, so a lossy round trip would
/// certify something other than what the peer wrote).
pub fn daticert(data: &[u8]) {
    use crate::pec::daticert::Daticert;
    if let Ok(d) = Daticert::parse(data) {
        let xml = d.to_xml();
        match Daticert::parse(xml.as_bytes()) {
            Ok(again) => assert_eq!(d, again, "round trip changed the model\n{xml}"),
            Err(e) => panic!("our own output does not parse: {e}\n{xml}"),
        }
        // And the writer is a fixed point from then on.
        assert_eq!(
            xml,
            Daticert::parse(xml.as_bytes())
                .map(|d| d.to_xml())
                .unwrap_or_default()
        );
    }
}

/// 2024-01-01: inside the validity of the sample certificates' signing times.
const NOW: i64 = 1_704_067_200;

/// The S/MIME structure readers on an arbitrary message: `classify`
/// (markers, signed entity, daticert), `verify` / `verify_inner`
/// (integrity only, no trust store) and the reception decision, with a
/// provider index that knows whoever signed, so a seed that still verifies
/// reaches the checks after the signature. No panic.
pub fn smime(data: &[u8]) {
    use crate::pec::classify::{classify, domain_of};
    use crate::pec::index::{Provider, ProviderIndex};
    use crate::pec::reception::{receive, ReceptionInput};
    use crate::pec::smime::{verify, verify_inner, VerifyOptions};
    if data.len() > 256 * 1024 || !shallow(data) {
        return;
    }
    let opts = VerifyOptions {
        revocation: None,
        trust: None,
        now: NOW,
    };
    let message = classify(data);
    if let Some(r) = &message.postacert {
        assert!(r.end <= data.len());
    }
    if let Some(r) = &message.signed_entity {
        assert!(r.end <= data.len());
    }
    let _ = verify_inner(data, &opts);
    let mut index = ProviderIndex::default();
    if let Ok(v) = verify(data, &opts) {
        assert!(v.signed_entity.end <= data.len());
        let domain = message
            .from_address
            .as_deref()
            .and_then(domain_of)
            .unwrap_or_default();
        index.providers.push(Provider {
            name: "fuzz".into(),
            domains: vec![domain, "example.it".into()],
            receipt_mailbox: "posta-certificata@example.it".into(),
            sha1: vec![v.sha1],
            certificate_der: None,
        });
    }
    let our = ["example.it".to_string()];
    let _ = receive(&ReceptionInput {
        revocation: None,
        raw: data,
        index: &index,
        trust: None,
        our_domains: &our,
        now: NOW,
    });
}

/// Our own DER readers of a PKCS#7 SignedData (`smime::der`: the signer
/// info's digest, signingTime and messageDigest, and the detached
/// single-signer splitter) on arbitrary bytes: no panic, and every slice
/// the splitter returns lies inside the input.
pub fn smime_der(data: &[u8]) {
    let _ = der_signer_info(data);
    if let Some((_, issuer, serial, attrs, sig)) = der_signed_parts(data) {
        assert!(issuer + serial + attrs + sig <= data.len());
    }
}

/// `proxy::parse` on arbitrary bytes, and on every prefix of them: a
/// prefix of a valid header only ever asks for more (never refused, never
/// a different header), a refusal comes within the fixed 16 bytes and
/// stays, and no length leaves the bounds the listener allocates by.
pub fn proxy_header(input: &[u8]) {
    use crate::proxy::{parse, Parse, FIXED, MAX_BODY};
    let whole = parse(input);
    match whole {
        Ok(Parse::Done(h)) => {
            assert!((FIXED..=FIXED + MAX_BODY).contains(&h.len), "{h:?}");
            assert!(h.len <= input.len());
            assert_eq!(parse(&input[..h.len]), whole);
            for k in 0..h.len {
                match parse(&input[..k]) {
                    Ok(Parse::More(n)) => assert!(n > k && n <= h.len, "{k}: more({n}) of {h:?}"),
                    other => panic!("prefix of {k} bytes of {h:?}: {other:?}"),
                }
            }
        }
        Ok(Parse::More(n)) => {
            assert!(n > input.len() && n <= FIXED + MAX_BODY, "more({n})");
        }
        Err(e) => {
            let first = (0..=input.len()).find(|&k| parse(&input[..k]).is_err());
            let first = first.unwrap_or(usize::MAX);
            assert!(first <= FIXED, "refused only after {first} bytes: {e:?}");
            for k in first..=input.len() {
                assert_eq!(parse(&input[..k]), Err(e), "prefix of {k} bytes");
            }
        }
    }
}
