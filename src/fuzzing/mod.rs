//! What the fuzz targets in `fuzz/` run ([`targets`]), and the entry points
//! they need that are not otherwise public. Not an API: nothing in pecd uses
//! it, and it may change with the targets.

pub mod targets;

#[cfg(test)]
mod props;

use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::{AuthenticateDataCodec, IdleDoneCodec};

use crate::imap::engine::{status, Kind};
use crate::imap::session::{decode_command, frame, Decoded, Framed, Framing};

/// What the IMAP session would do with one framed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapEvent {
    /// `+ Ready for literal data` sent.
    Continue,
    /// A command the session hands to `handle` (its `Debug` form).
    Command(String),
    /// A SASL response or `DONE`, read in the state the previous command left.
    Continuation(bool),
    /// What the session writes for a refused or unparsable message.
    Reply(Vec<u8>),
    /// The session ends with `* BYE` (input refused before login).
    Bye(&'static str),
}

/// Which decoder the next complete message goes to, as in the session.
enum Expect {
    Command,
    Sasl,
    Done,
}

/// Feed `chunks` in order through the session's framing (imap-codec's
/// `Fragmentizer` with a `frag_max` limit, literals over `max_literal`
/// refused) and decode each message as the session's state at that point
/// would; returns what the session would do, message by message.
pub fn imap_session(chunks: &[&[u8]], frag_max: u32, max_literal: usize) -> Vec<ImapEvent> {
    let mut frag = Fragmentizer::new(frag_max);
    let mut framing = Framing {
        max_literal,
        preauth: false,
        too_big: false,
        progressed: false,
        literal: false,
    };
    let mut expect = Expect::Command;
    let mut events = Vec::new();
    for chunk in chunks {
        frag.enqueue_bytes(chunk);
        loop {
            match frame(&mut frag, &mut framing) {
                Framed::NeedMore => break,
                Framed::Bye(why) => {
                    events.push(ImapEvent::Bye(why));
                    return events;
                }
                Framed::Continue => events.push(ImapEvent::Continue),
                Framed::TooBig(tag) => {
                    expect = Expect::Command;
                    let mut out = vec![];
                    status(&mut out, tag.as_ref(), Kind::Bad, None, "literal too large");
                    events.push(ImapEvent::Reply(out));
                }
                Framed::Message => match std::mem::replace(&mut expect, Expect::Command) {
                    Expect::Sasl => events.push(ImapEvent::Continuation(
                        frag.decode_message(&AuthenticateDataCodec::default())
                            .is_ok(),
                    )),
                    Expect::Done => events.push(ImapEvent::Continuation(
                        frag.decode_message(&IdleDoneCodec::default()).is_ok(),
                    )),
                    Expect::Command => match decode_command(&mut frag) {
                        Decoded::Command(cmd) => {
                            expect = match &cmd.body {
                                CommandBody::Authenticate {
                                    initial_response: None,
                                    ..
                                } => Expect::Sasl,
                                CommandBody::Idle => Expect::Done,
                                _ => Expect::Command,
                            };
                            events.push(ImapEvent::Command(format!("{cmd:?}")));
                        }
                        Decoded::TooLong(tag) | Decoded::Bad(tag) => {
                            let mut out = vec![];
                            status(&mut out, tag.as_ref(), Kind::Bad, None, "syntax error");
                            events.push(ImapEvent::Reply(out));
                        }
                    },
                },
            }
        }
    }
    events
}

/// What [`der_signer_info`] read.
#[derive(Debug)]
pub struct SignerInfo {
    /// Digest algorithm name.
    pub digest: &'static str,
    /// `signingTime`, Unix seconds.
    pub signing_time: Option<i64>,
    /// `messageDigest`.
    pub message_digest: Option<Vec<u8>>,
}

/// The S/MIME signer-info reader on raw DER.
pub fn der_signer_info(der: &[u8]) -> Option<SignerInfo> {
    let si = crate::pec::smime::der::signer_info(der)?;
    Some(SignerInfo {
        digest: si.digest.name(),
        signing_time: si.signing_time,
        message_digest: si.message_digest,
    })
}

/// The detached SignedData splitter on raw DER: the lengths of (certs,
/// issuer, serial, attrs, signature) when it accepts the input.
pub fn der_signed_parts(der: &[u8]) -> Option<(usize, usize, usize, usize, usize)> {
    let p = crate::pec::smime::der::signed_parts(der)?;
    Some((
        p.certs.len(),
        p.issuer.len(),
        p.serial.len(),
        p.attrs.len(),
        p.signature.len(),
    ))
}

/// What FETCH and SEARCH compute from a stored message, as the engine does
/// it: the MIME tree (every range inside `raw`, since the engine slices
/// with them), ENVELOPE, BODY and BODYSTRUCTURE encoded as a FETCH
/// response, every section of every part path up to three levels and three
/// parts wide, and the SEARCH text. Returns the encoded response's length.
pub fn imap_fetch(raw: &[u8]) -> usize {
    use crate::imap::engine::push;
    use crate::imap::mime::{self, Node};
    use imap_codec::imap_types::core::{AString, Vec1};
    use imap_codec::imap_types::fetch::{MessageDataItem, Part, Section};
    use imap_codec::imap_types::response::{Data, Response};
    use std::num::NonZeroU32;

    fn check(raw: &[u8], n: &Node) {
        assert!(
            n.header.start <= n.header.end && n.header.end <= raw.len(),
            "{n:?}"
        );
        assert!(
            n.body.start <= n.body.end && n.body.end <= raw.len(),
            "{n:?}"
        );
        match &n.kind {
            mime::Kind::Leaf => {}
            mime::Kind::Multi(c) => c.iter().for_each(|c| check(raw, c)),
            mime::Kind::Message(m) => check(raw, m),
        }
    }

    let tree = mime::parse_tree(raw);
    check(raw, &tree);
    let items = vec![
        MessageDataItem::Envelope(mime::envelope(&raw[tree.header.clone()])),
        MessageDataItem::BodyStructure(mime::body_structure(raw, &tree, true)),
        MessageDataItem::Body(mime::body_structure(raw, &tree, false)),
    ];
    let mut out = Vec::new();
    if let Ok(d) = Data::fetch(1, items) {
        push(&mut out, Response::Data(d));
    }

    let names = Vec1::from(AString::try_from("From").expect("atom"));
    let mut sections = vec![None, Some(Section::Header(None)), Some(Section::Text(None))];
    let mut paths: Vec<Vec<u32>> = (1..=3).map(|n| vec![n]).collect();
    for depth in 0..3 {
        let mut next = Vec::new();
        for p in &paths {
            let found = mime::find_part(&tree, p).is_some();
            let nz: Vec<NonZeroU32> = p.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
            let Ok(part) = Vec1::try_from(nz).map(Part) else {
                continue;
            };
            sections.extend([
                Some(Section::Part(part.clone())),
                Some(Section::Header(Some(part.clone()))),
                Some(Section::Text(Some(part.clone()))),
                Some(Section::Mime(part.clone())),
                Some(Section::HeaderFields(Some(part.clone()), names.clone())),
                Some(Section::HeaderFieldsNot(Some(part), names.clone())),
            ]);
            if found && depth < 2 {
                next.extend((1..=3).map(|n| [p.as_slice(), &[n]].concat()));
            }
        }
        paths = next;
    }
    for s in &sections {
        let _ = mime::section_bytes(raw, &tree, s.as_ref());
    }
    let _ = mime::search_text(raw);
    out.len()
}
