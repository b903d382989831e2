//! The unsigned outer headers of a busta or receipt against its own daticert
//! (issue 9 §2, `pec-spec.md` §2, §3.1, §4).
//!
//! The S/MIME signature covers only the first body part, so a genuine busta
//! can be replayed under another `Subject`, `From`, `To` or `Message-ID` and
//! still verify; mail clients show the outer headers. What the provider
//! certified is in `daticert.xml` (inside the signature), so every outer
//! header a reader relies on must say the same:
//!
//! - busta: `Subject` = `POSTA CERTIFICATA: ` + `oggetto`; `From` display
//!   name `Per conto di: ` + `mittente`; `Message-ID` = `identificativo`;
//!   the addresses of `To` and `Cc` = the `destinatari`;
//!   `X-Riferimento-Message-ID` = `msgid` (both absent is fine);
//! - receipt: `Subject` = the prefix of its `X-Ricevuta` type + `oggetto`;
//!   `X-Riferimento-Message-ID` = `msgid`;
//! - each of those fields at most once (clients differ in which copy they show).
//!
//! Values are compared decoded: RFC 2047 words decoded, folding undone, runs
//! of white space taken as one space, addresses compared as lower-case sets,
//! angle brackets of message ids ignored. The real samples in
//! `tests/fixtures/pec-samples` need nothing looser: every provider writes
//! the prefixes exactly, quotes `"Per conto di: <addr>"` (Namirial folds
//! before the angle address), puts display names in `To` (Aruba, Namirial)
//! and lists `destinatari` in another order than `To` (Namirial), and uses
//! the identificativo, without brackets, as the busta's Message-ID.

use std::collections::BTreeSet;
use std::fmt;

use super::classify::{Kind, PecMessage};
use super::headers::{addresses, decode_unstructured, raw_fields};
use super::mime::decode_rfc2047;
use super::types::Tipo;

/// Fields that must not appear twice in the outer header block.
const SINGLE: [&str; 6] = [
    "Subject",
    "From",
    "To",
    "Cc",
    "Message-ID",
    "X-Riferimento-Message-ID",
];

/// One outer header that does not say what the daticert certifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Header name (`Subject`, `From`, `Message-ID`, `To/Cc`, …).
    pub header: &'static str,
    /// What the daticert implies.
    pub expected: String,
    /// What the message carries (`None`: the field is absent).
    pub found: Option<String>,
}

impl Mismatch {
    /// One English line for logs and `pecd verify`.
    pub fn english(&self) -> String {
        match &self.found {
            Some(f) => format!(
                "outer {} {f:?} differs from daticert ({:?})",
                self.header, self.expected
            ),
            None => format!(
                "outer {} is missing (daticert: {:?})",
                self.header, self.expected
            ),
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.english())
    }
}

/// How the message reached us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// A list server re-sent the message (`pecd verify --inner`): leading
    /// `[tag]` words it put before the subject are not the provider's.
    /// Never set at the reception point.
    pub list_wrapped: bool,
}

/// The subject prefix of a receipt (`pec-spec.md` §3 table); the virus
/// variants go with `X-VerificaSicurezza: errore`.
pub fn receipt_prefix(tipo: Tipo, virus: bool) -> &'static str {
    match (tipo, virus) {
        (Tipo::Accettazione, _) => "ACCETTAZIONE: ",
        (Tipo::NonAccettazione, false) => "AVVISO DI NON ACCETTAZIONE: ",
        (Tipo::NonAccettazione, true) => "AVVISO DI NON ACCETTAZIONE PER VIRUS: ",
        (Tipo::PresaInCarico, _) => "PRESA IN CARICO: ",
        (Tipo::AvvenutaConsegna, _) => "CONSEGNA: ",
        (Tipo::PostaCertificata, _) => "POSTA CERTIFICATA: ",
        (Tipo::ErroreConsegna, false) => "AVVISO DI MANCATA CONSEGNA: ",
        (Tipo::ErroreConsegna, true) => "AVVISO DI MANCATA CONSEGNA PER VIRUS: ",
        (Tipo::PreavvisoErroreConsegna, _) => "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
        (Tipo::RilevazioneVirus, _) => "PROBLEMA DI SICUREZZA: ",
    }
}

/// Every way the outer headers of `raw` (classified as `m`) differ from its
/// daticert; empty when they agree or when there is nothing to compare (no
/// daticert, or neither a busta nor a receipt).
pub fn check(raw: &[u8], m: &PecMessage, opts: CheckOptions) -> Vec<Mismatch> {
    let Some(d) = &m.daticert else {
        return Vec::new();
    };
    let prefix = match m.kind {
        Kind::Busta => receipt_prefix(Tipo::PostaCertificata, false),
        Kind::Ricevuta(t) => {
            let virus = m
                .x_verifica_sicurezza
                .as_deref()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("errore"));
            receipt_prefix(t, virus)
        }
        Kind::Anomalia | Kind::Ordinary => return Vec::new(),
    };
    let (fields, _) = raw_fields(raw);
    let values = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.unfolded(raw))
            .collect()
    };
    let mut out = Vec::new();
    let mut repeated = Vec::new();
    for name in SINGLE {
        let n = values(name).len();
        if n > 1 {
            repeated.push(name);
            out.push(Mismatch {
                header: name,
                expected: "one field".into(),
                found: Some(format!("{n} fields")),
            });
        }
    }
    // A repeated field is already reported; comparing one copy says nothing.
    let check_field = |name: &str| !repeated.contains(&name);
    let first = |name: &str| values(name).into_iter().next();

    let expected = format!("{prefix}{}", d.oggetto.as_deref().unwrap_or(""));
    let subject = first("Subject").map(|s| decode_unstructured(&s));
    let seen = subject.as_deref().map(|s| {
        let s = squeeze(s);
        if opts.list_wrapped {
            strip_list_tags(&s).to_string()
        } else {
            s
        }
    });
    if check_field("Subject") && seen.as_deref() != Some(squeeze(&expected).as_str()) {
        out.push(Mismatch {
            header: "Subject",
            expected,
            found: subject,
        });
    }

    let riferimento = first("X-Riferimento-Message-ID");
    let same_id = match (&riferimento, &d.msgid) {
        (None, None) => true,
        (Some(a), Some(b)) => bare_id(a) == bare_id(b),
        _ => false,
    };
    if check_field("X-Riferimento-Message-ID") && !same_id {
        out.push(Mismatch {
            header: "X-Riferimento-Message-ID",
            expected: d.msgid.clone().unwrap_or_else(|| "(none)".into()),
            found: riferimento,
        });
    }

    if m.kind != Kind::Busta {
        return out;
    }
    let from = first("From");
    let on_behalf = from.as_deref().and_then(per_conto_di_sender);
    if check_field("From") && !on_behalf.is_some_and(|s| s.eq_ignore_ascii_case(d.mittente.trim()))
    {
        out.push(Mismatch {
            header: "From",
            expected: format!("\"Per conto di: {}\" <…>", d.mittente),
            found: from,
        });
    }

    let message_id = first("Message-ID");
    if check_field("Message-ID")
        && message_id.as_deref().map(bare_id) != Some(bare_id(&d.identificativo))
    {
        out.push(Mismatch {
            header: "Message-ID",
            expected: format!("<{}>", bare_id(&d.identificativo)),
            found: message_id,
        });
    }

    let listed: BTreeSet<String> = d
        .destinatari
        .iter()
        .map(|r| r.address.trim().to_ascii_lowercase())
        .collect();
    let written = to_and_cc(raw, &fields);
    if check_field("To") && check_field("Cc") && written != listed {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        out.push(Mismatch {
            header: "To/Cc",
            expected: join(&listed),
            found: (!written.is_empty()).then(|| join(&written)),
        });
    }
    out
}

/// White space runs as one space, trimmed: folding and re-folding by
/// providers and gateways change nothing a reader sees.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` without the leading `[list] [SPAM] ` words a list server adds.
fn strip_list_tags(mut s: &str) -> &str {
    while let Some(rest) = s.strip_prefix('[') {
        match rest.find(']') {
            Some(i) => s = rest[i + 1..].trim_start(),
            None => break,
        }
    }
    s
}

/// A message id without white space and angle brackets.
fn bare_id(s: &str) -> &str {
    s.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
}

/// The sender named in a busta's `From` (`"Per conto di: <sender>" <addr>`):
/// one mailbox whose display name, unquoted and RFC 2047-decoded, starts
/// with `Per conto di:`.
fn per_conto_di_sender(value: &str) -> Option<String> {
    let value = value.trim();
    let open = value.rfind('<')?;
    let angle = value[open + 1..].strip_suffix('>')?;
    if angle.contains([',', '<', '>', '"']) {
        return None;
    }
    let display = value[..open].trim();
    let text = match display.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
        Some(inner) => unquote(inner)?,
        None if display.contains('"') => return None,
        None => decode_rfc2047(display),
    };
    let rest = text.trim_start();
    let head = rest.get(..13)?;
    if !head.eq_ignore_ascii_case("per conto di:") {
        return None;
    }
    Some(rest[13..].trim().to_string())
}

/// The content of a quoted-string; `None` if an unescaped quote ends it
/// early (two display names glued together).
fn unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// Lower-case addresses of every `To` and `Cc` field, groups flattened.
fn to_and_cc(raw: &[u8], fields: &[super::headers::RawField]) -> BTreeSet<String> {
    // Only these fields are handed to the parser: no body, no MIME structure.
    let mut block = Vec::new();
    for f in fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("To") || f.name.eq_ignore_ascii_case("Cc"))
    {
        block.extend_from_slice(&raw[f.start..f.end]);
        if !block.ends_with(b"\n") {
            block.extend_from_slice(b"\r\n");
        }
    }
    block.extend_from_slice(b"\r\n");
    let Some(msg) = super::headers::parse_header_block(&block) else {
        return BTreeSet::new();
    };
    addresses(&msg, "To")
        .into_iter()
        .chain(addresses(&msg, "Cc"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pec::classify::classify;
    use crate::pec::smime::tests::samples;

    fn genuine() -> Vec<(String, Vec<u8>)> {
        samples()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("ANON_") && !n.starts_with("NEG_"))
            .collect()
    }

    fn run(raw: &[u8], list_wrapped: bool) -> Vec<Mismatch> {
        check(raw, &classify(raw), CheckOptions { list_wrapped })
    }

    /// Replace the whole field `name` (first occurrence) by `line`, or drop
    /// it when `line` is empty; everything else byte for byte.
    fn replace_field(raw: &[u8], name: &str, line: &str) -> Vec<u8> {
        let (fields, _) = raw_fields(raw);
        let f = fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no {name}"));
        let eol: &[u8] = if raw[..f.end].ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        let mut out = raw[..f.start].to_vec();
        if !line.is_empty() {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(&raw[f.end..]);
        out
    }

    /// Insert `line` as the first header field.
    fn prepend(raw: &[u8], line: &str) -> Vec<u8> {
        let mut out = line.as_bytes().to_vec();
        out.extend_from_slice(b"\n");
        out.extend_from_slice(raw);
        out
    }

    fn headers_of(v: &[Mismatch]) -> Vec<&'static str> {
        v.iter().map(|m| m.header).collect()
    }

    #[test]
    fn every_genuine_sample_is_consistent() {
        let all = genuine();
        assert!(all.len() >= 9, "samples missing: {}", all.len());
        for (name, raw) in &all {
            let m = classify(raw);
            assert!(m.daticert.is_some(), "{name}: no daticert read");
            let wrapped = name.starts_with("namirial");
            assert_eq!(run(raw, wrapped), vec![], "{name}");
        }
        // The list server's subject tags are tolerated only when asked.
        let (_, nam) = all.iter().find(|(n, _)| n.starts_with("namirial")).unwrap();
        assert_eq!(headers_of(&run(nam, false)), vec!["Subject"]);
    }

    #[test]
    fn each_altered_busta_header_is_named() {
        for (name, raw) in genuine() {
            if classify(&raw).kind != Kind::Busta {
                continue;
            }
            let wrapped = name.starts_with("namirial");
            let d = classify(&raw).daticert.unwrap();
            let first = d.destinatari[0].address.clone();
            let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
                (
                    "subject",
                    replace_field(&raw, "Subject", "Subject: POSTA CERTIFICATA: Sollecito di pagamento"),
                    vec!["Subject"],
                ),
                (
                    "subject without prefix",
                    replace_field(
                        &raw,
                        "Subject",
                        &format!("Subject: {}", d.oggetto.clone().unwrap_or_default()),
                    ),
                    vec!["Subject"],
                ),
                ("no subject", replace_field(&raw, "Subject", ""), vec!["Subject"]),
                (
                    "second subject",
                    prepend(&raw, "Subject : POSTA CERTIFICATA: altro"),
                    vec!["Subject"],
                ),
                (
                    "from another sender",
                    replace_field(
                        &raw,
                        "From",
                        "From: \"Per conto di: direttore@pec.example.it\" <posta-certificata@pec.aruba.it>",
                    ),
                    vec!["From"],
                ),
                (
                    "from without per conto di",
                    replace_field(
                        &raw,
                        "From",
                        &format!("From: {} <posta-certificata@pec.aruba.it>", d.mittente),
                    ),
                    vec!["From"],
                ),
                (
                    "two display names",
                    replace_field(
                        &raw,
                        "From",
                        &format!(
                            "From: \"Per conto di: {}\" \"x\" <posta-certificata@pec.aruba.it>",
                            d.mittente
                        ),
                    ),
                    vec!["From"],
                ),
                (
                    "message-id",
                    replace_field(&raw, "Message-ID", "Message-ID: <other@pec.aruba.it>"),
                    vec!["Message-ID"],
                ),
                (
                    "to another recipient",
                    replace_field(&raw, "To", "To: carol@pec.example.it"),
                    vec!["To/Cc"],
                ),
                (
                    "an extra cc",
                    prepend(&raw, "Cc: carol@pec.example.it"),
                    vec!["To/Cc"],
                ),
                (
                    "riferimento",
                    replace_field(
                        &raw,
                        "X-Riferimento-Message-ID",
                        "X-Riferimento-Message-ID: <another@host>",
                    ),
                    vec!["X-Riferimento-Message-ID"],
                ),
            ];
            for (what, bytes, expect) in cases {
                assert_eq!(headers_of(&run(&bytes, wrapped)), expect, "{name}: {what}");
            }
            // Only To and Cc together count: the sole recipient moved to Cc
            // is still the same set, in another case.
            let moved = replace_field(&raw, "To", &format!("Cc: {}", first.to_uppercase()));
            if d.destinatari.len() == 1 {
                assert_eq!(run(&moved, wrapped), vec![], "{name}: To moved to Cc");
            }
        }
    }

    #[test]
    fn each_altered_receipt_header_is_named() {
        let mut seen = 0;
        for (name, raw) in genuine() {
            let Kind::Ricevuta(t) = classify(&raw).kind else {
                continue;
            };
            seen += 1;
            let d = classify(&raw).daticert.unwrap();
            let oggetto = d.oggetto.clone().unwrap_or_default();
            let other_prefix = if t == Tipo::Accettazione {
                "CONSEGNA: "
            } else {
                "ACCETTAZIONE: "
            };
            let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
                (
                    "another type's prefix",
                    replace_field(
                        &raw,
                        "Subject",
                        &format!("Subject: {other_prefix}{oggetto}"),
                    ),
                    vec!["Subject"],
                ),
                (
                    "another subject",
                    replace_field(
                        &raw,
                        "Subject",
                        &format!("Subject: {}Fattura scaduta", receipt_prefix(t, false)),
                    ),
                    vec!["Subject"],
                ),
                (
                    "riferimento",
                    replace_field(
                        &raw,
                        "X-Riferimento-Message-ID",
                        "X-Riferimento-Message-ID: <another@host>",
                    ),
                    vec!["X-Riferimento-Message-ID"],
                ),
                (
                    "no riferimento",
                    replace_field(&raw, "X-Riferimento-Message-ID", ""),
                    vec!["X-Riferimento-Message-ID"],
                ),
            ];
            for (what, bytes, expect) in cases {
                assert_eq!(headers_of(&run(&bytes, false)), expect, "{name}: {what}");
            }
            // A receipt's own Message-ID and To are not the daticert's.
            let fresh = replace_field(&raw, "Message-ID", "Message-ID: <fresh@pec.aruba.it>");
            assert_eq!(run(&fresh, false), vec![], "{name}");
        }
        assert!(seen >= 4, "receipt samples missing");
    }

    #[test]
    fn decoded_values_are_compared() {
        let (_, raw) = genuine()
            .into_iter()
            .find(|(n, _)| n == "aruba-2014_busta-trasporto_a.eml")
            .unwrap();
        // Same text, encoded and folded differently; addresses in other case.
        let tolerated = [
            ("Subject", "Subject: =?UTF-8?B?UE9TVEEgQ0VSVElGSUNBVEE6IFJlOiBhcmNoZXRpcG8=?="),
            ("Subject", "Subject: POSTA CERTIFICATA:\n  Re:   archetipo"),
            ("Subject", "Subject: POSTA CERTIFICATA: =?iso-8859-1?q?Re=3A_archetipo?="),
            (
                "From",
                "From: \"Per conto di: THINKSTUDIO@pec.it\"\n <posta-certificata@pec.aruba.it>",
            ),
            (
                "From",
                "From: =?UTF-8?Q?Per_conto_di=3A_thinkstudio=40pec=2Eit?= <posta-certificata@pec.aruba.it>",
            ),
            ("Message-ID", "Message-ID: opec275.20141107165200.03048.08.1.17@pec.aruba.it"),
            ("To", "To: \"Lorenzo\" <L.Battistini@PEC.IT>"),
            ("To", "To: Amici: l.battistini@pec.it;"),
        ];
        for (name, line) in tolerated {
            let m = replace_field(&raw, name, line);
            assert_eq!(run(&m, false), vec![], "{line}");
        }
        // ... but not other text, and list tags only for a list copy.
        let tagged = replace_field(
            &raw,
            "Subject",
            "Subject: [lista] POSTA CERTIFICATA: Re: archetipo",
        );
        assert_eq!(headers_of(&run(&tagged, false)), vec!["Subject"]);
        assert_eq!(run(&tagged, true), vec![]);
        let reworded = replace_field(&raw, "Subject", "Subject: POSTA CERTIFICATA: Re: archetipi");
        assert_eq!(headers_of(&run(&reworded, true)), vec!["Subject"]);
    }

    #[test]
    fn texts_name_the_header() {
        let m = Mismatch {
            header: "Subject",
            expected: "POSTA CERTIFICATA: a".into(),
            found: Some("POSTA CERTIFICATA: b".into()),
        };
        assert!(m.english().contains("outer Subject"), "{m}");
        assert!(m.english().contains("POSTA CERTIFICATA: a"));
        let gone = Mismatch { found: None, ..m };
        assert!(gone.english().contains("missing"));
        assert_eq!(
            receipt_prefix(Tipo::ErroreConsegna, true),
            "AVVISO DI MANCATA CONSEGNA PER VIRUS: "
        );
    }
}
