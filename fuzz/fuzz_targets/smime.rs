//! The S/MIME structure readers on an arbitrary message: `classify`
//! (markers, signed entity, daticert), `verify` / `verify_inner`
//! (integrity only, no trust store) and the reception decision, with a
//! provider index that knows whoever signed, so a seed that still verifies
//! reaches the checks after the signature. No panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pecd::pec::classify::{classify, domain_of};
use pecd::pec::index::{Provider, ProviderIndex};
use pecd::pec::reception::{receive, ReceptionInput};
use pecd::pec::smime::{verify, verify_inner, VerifyOptions};

/// See `mime.rs`: daticert extraction goes through mail-parser, whose
/// recursion overflows on deep nesting (known, handled separately).
fn shallow(data: &[u8]) -> bool {
    let needle = b"content-type";
    data.windows(needle.len())
        .filter(|w| w.eq_ignore_ascii_case(needle))
        .count()
        <= 40
}

/// 2024-01-01: inside the validity of the sample certificates' signing times.
const NOW: i64 = 1_704_067_200;

fuzz_target!(|data: &[u8]| {
    if data.len() > 256 * 1024 || !shallow(data) {
        return;
    }
    let opts = VerifyOptions {
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
        raw: data,
        index: &index,
        trust: None,
        our_domains: &our,
        now: NOW,
    });
});
