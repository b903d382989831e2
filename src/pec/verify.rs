//! The offline verifier's report (`pecd verify FILE.eml [--index PATH]
//! [--ca PEM]... [--json] [--inner] [--revocation MODE [--crl FILE]...
//! [--soft-fail]]`), issue 3; the revocation status and its source, issue 13.
//!
//! Classifies the message, verifies its signature (the chain only when CAs
//! are given, otherwise integrity only, like `openssl smime -verify
//! -noverify`), checks the signer against the index and what it may certify
//! ([`super::reception::authority`], the reception point's rule), and lists
//! every daticert field. Exit status: 0 when it is a valid PEC object
//! (busta, anomalia or receipt, structurally complete) whose signer chains
//! to a trusted CA and is a provider of the index, and whose outer headers
//! say what its daticert certifies ([`super::consistency`]); 3
//! ([`EXIT_UNVERIFIED`]) when all that holds but no CA or no index was
//! given, so the signer is unverified — never OK, since anyone can make a
//! certificate bearing a provider's name; 1 otherwise.
//! `--inner` verifies the first part of an outer multipart (a list server
//! wrapped the signed message; its `[tag]` subject words are then tolerated).

use crate::pec::smime::Trust;
use serde::Serialize;

use super::classify::{classify, Kind};
use super::clock::civil_from_days;
use super::consistency::{self, CheckOptions};
use super::daticert::Daticert;
use super::index::ProviderIndex;
use super::reception::authority;
use super::revocation::Revocation;
use super::smime::{verify, verify_inner, VerifyError, VerifyOptions};

/// `pecd verify`'s exit status for a message that is intact but whose
/// signer could not be verified for lack of a trust anchor.
pub const EXIT_UNVERIFIED: i32 = 3;

/// What to check.
#[derive(Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// Provider index (`--index`): the signer must be listed for the `From` domain.
    pub index: Option<&'a ProviderIndex>,
    /// Trusted CAs (`--ca`): the chain is verified at signing time.
    pub trust: Option<&'a Trust>,
    /// Verify the first inner part of an outer multipart (`--inner`).
    pub inner: bool,
    /// Current time, Unix seconds.
    pub now: i64,
    /// Revocation of the signer certificate (`--revocation`); only with `trust`.
    pub revocation: Option<&'a dyn crate::pec::revocation::RevocationCheck>,
}

/// Signature facts for the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignatureReport {
    /// `valid`, `invalid` or `absent`.
    pub verdict: String,
    /// Why it is not valid.
    pub error: Option<String>,
    /// Whether the chain was checked against `--ca`.
    pub chain_checked: bool,
    /// Signer subject.
    pub signer_subject: Option<String>,
    /// Signer issuer.
    pub issuer_subject: Option<String>,
    /// SHA-1 fingerprint with colons.
    pub sha1_fingerprint: Option<String>,
    /// SHA-1 fingerprint without separators.
    pub sha1_hex: Option<String>,
    /// signingTime, Unix seconds.
    pub signing_time: Option<i64>,
    /// signingTime as `YYYY-MM-DDThh:mm:ssZ`.
    pub signing_time_utc: Option<String>,
    /// Digest algorithm used by the signer.
    pub digest: Option<String>,
    /// `micalg` header parameter.
    pub micalg: Option<String>,
    /// Signer certificate has expired since (chain checked at signing time).
    pub expired_now: bool,
    /// The revocation check and its source, when one was asked for.
    pub revocation: Option<Revocation>,
}

/// One `<destinatari>`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecipientReport {
    /// Address.
    pub address: String,
    /// `certificato` / `esterno`.
    pub tipo: String,
}

/// Every daticert field, as text.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DaticertReport {
    /// `tipo`.
    pub tipo: String,
    /// `errore`.
    pub errore: String,
    /// `mittente`.
    pub mittente: String,
    /// `destinatari`.
    pub destinatari: Vec<RecipientReport>,
    /// `risposte`.
    pub risposte: String,
    /// `oggetto`.
    pub oggetto: Option<String>,
    /// `gestore-emittente`.
    pub gestore_emittente: String,
    /// `data/giorno`.
    pub giorno: String,
    /// `data/ora`.
    pub ora: String,
    /// `data/@zona`.
    pub zona: String,
    /// `identificativo`.
    pub identificativo: String,
    /// `msgid`.
    pub msgid: Option<String>,
    /// `ricevuta/@tipo`.
    pub ricevuta: Option<String>,
    /// `consegna`.
    pub consegna: Option<String>,
    /// `ricezione`.
    pub ricezione: Vec<String>,
    /// `errore-esteso`.
    pub errore_esteso: Option<String>,
}

impl From<&Daticert> for DaticertReport {
    fn from(d: &Daticert) -> Self {
        DaticertReport {
            tipo: d.tipo.as_str().into(),
            errore: d.errore.as_str().into(),
            mittente: d.mittente.clone(),
            destinatari: d
                .destinatari
                .iter()
                .map(|r| RecipientReport {
                    address: r.address.clone(),
                    tipo: r.tipo.as_str().into(),
                })
                .collect(),
            risposte: d.risposte.clone(),
            oggetto: d.oggetto.clone(),
            gestore_emittente: d.gestore_emittente.clone(),
            giorno: d.data.giorno.clone(),
            ora: d.data.ora.clone(),
            zona: d.data.zona.clone(),
            identificativo: d.identificativo.clone(),
            msgid: d.msgid.clone(),
            ricevuta: d.ricevuta.map(|r| r.as_str().into()),
            consegna: d.consegna.clone(),
            ricezione: d.ricezione.clone(),
            errore_esteso: d.errore_esteso.clone(),
        }
    }
}

/// The whole report of `pecd verify`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    /// Valid PEC object whose signature verifies and whose signer is a
    /// provider of the index, chained to a trusted CA (exit status 0).
    pub ok: bool,
    /// The signer was verified: its chain to a trusted CA and its entry in
    /// the provider index. Without both, `ok` is never true.
    pub signer_verified: bool,
    /// Nothing is wrong but the signer could not be verified (exit status 3).
    #[serde(skip)]
    pub only_unverified: bool,
    /// `busta`, `anomalia`, `ricevuta` or `ordinary`.
    pub kind: String,
    /// Receipt tipo, for `ricevuta`.
    pub tipo: Option<String>,
    /// Human label of the kind.
    pub kind_label: String,
    /// Whether the inner part was verified (`--inner`).
    pub inner: bool,
    /// Decoded subject.
    pub subject: Option<String>,
    /// `From`.
    pub from: Option<String>,
    /// `Message-ID`.
    pub message_id: Option<String>,
    /// `X-Riferimento-Message-ID`.
    pub x_riferimento_message_id: Option<String>,
    /// `X-TipoRicevuta`.
    pub x_tiporicevuta: Option<String>,
    /// Signature facts.
    pub signature: SignatureReport,
    /// Provider of the signer according to the index (when given).
    pub provider: Option<String>,
    /// daticert fields.
    pub daticert: Option<DaticertReport>,
    /// Size of postacert.eml, when present.
    pub postacert_bytes: Option<usize>,
    /// Outer headers that differ from the daticert (also listed in `reasons`).
    pub header_mismatches: Vec<HeaderMismatchReport>,
    /// Every reason the message is not ok.
    pub reasons: Vec<String>,
}

/// One outer header that differs from the daticert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HeaderMismatchReport {
    /// Header name (`Subject`, `From`, `Message-ID`, `To/Cc`, …).
    pub header: String,
    /// What the daticert implies.
    pub expected: String,
    /// What the message carries (`null`: absent).
    pub found: Option<String>,
}

fn utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86400));
    let s = t.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

impl VerifyReport {
    /// Examine `raw`.
    pub fn build(raw: &[u8], req: &VerifyRequest) -> VerifyReport {
        let msg = classify(raw);
        let mut reasons = Vec::new();
        let opts = VerifyOptions {
            trust: req.trust,
            now: req.now,
            revocation: req.revocation,
        };
        let result = if req.inner {
            verify_inner(raw, &opts)
        } else {
            verify(raw, &opts)
        };
        let mut provider = None;
        let signature = match &result {
            Ok(v) => {
                if let Some(index) = req.index {
                    match index.provider_by_sha1(&v.sha1) {
                        Some(p) => {
                            provider = Some(p.name.clone());
                            if let Err(r) = authority(p, &msg) {
                                reasons.push(r.english());
                            }
                        }
                        None => reasons.push(format!(
                            "signer SHA-1 {} is not in the provider index",
                            v.sha1_fingerprint
                        )),
                    }
                }
                SignatureReport {
                    verdict: "valid".into(),
                    error: None,
                    chain_checked: v.chain_checked,
                    signer_subject: Some(v.signer_subject.clone()),
                    issuer_subject: Some(v.issuer_subject.clone()),
                    sha1_fingerprint: Some(v.sha1_fingerprint.clone()),
                    sha1_hex: Some(v.sha1_hex.clone()),
                    signing_time: v.signing_time,
                    signing_time_utc: v.signing_time.map(utc),
                    digest: Some(v.digest.clone()),
                    micalg: Some(v.micalg.clone()),
                    expired_now: v.expired_now,
                    revocation: v.revocation.clone(),
                }
            }
            Err(e) => {
                reasons.push(e.to_string());
                let absent = matches!(e, super::smime::VerifyError::NotSigned(_));
                SignatureReport {
                    verdict: if absent { "absent" } else { "invalid" }.into(),
                    error: Some(e.to_string()),
                    chain_checked: false,
                    signer_subject: None,
                    issuer_subject: None,
                    sha1_fingerprint: None,
                    sha1_hex: None,
                    signing_time: None,
                    signing_time_utc: None,
                    digest: None,
                    micalg: None,
                    expired_now: false,
                    revocation: match e {
                        VerifyError::Revoked(r) | VerifyError::RevocationUnavailable(r) => {
                            Some((**r).clone())
                        }
                        _ => None,
                    },
                }
            }
        };
        // Integrity alone proves nothing about who signed: anyone can make a
        // certificate bearing a provider's name. Only a chain to a trust
        // anchor and the index make the signer a provider.
        let mut unverified = Vec::new();
        if let Ok(v) = &result {
            if !v.chain_checked {
                unverified.push(
                    "signer not verified: no trusted CA (give --ca, or run where a configuration with [trust] ca is found)"
                        .to_string(),
                );
            }
            if req.index.is_none() {
                unverified.push(
                    "signer's provider not checked: no provider index (give --index, or run where a configuration with [trust] index is found)"
                        .to_string(),
                );
            }
        }
        let signer_verified = result.is_ok() && unverified.is_empty();
        if msg.kind == Kind::Ordinary && msg.problems.is_empty() {
            reasons.push("not a PEC object: no X-Trasporto or X-Ricevuta header".into());
        }
        reasons.extend(msg.problems.iter().cloned());
        let opts = CheckOptions {
            list_wrapped: req.inner,
        };
        let mismatches = consistency::check(raw, &msg, opts);
        reasons.extend(mismatches.iter().map(|m| m.english()));
        let (kind, tipo) = match msg.kind {
            Kind::Busta => ("busta", None),
            Kind::Anomalia => ("anomalia", None),
            Kind::Ricevuta(t) => ("ricevuta", Some(t.as_str().to_string())),
            Kind::Ordinary => ("ordinary", None),
        };
        let only_unverified = reasons.is_empty() && !signer_verified;
        reasons.extend(unverified);
        VerifyReport {
            ok: reasons.is_empty(),
            signer_verified,
            only_unverified,
            kind: kind.into(),
            tipo,
            kind_label: msg.kind.label(),
            inner: req.inner,
            subject: msg.subject.clone(),
            from: msg.from.clone(),
            message_id: msg.message_id.clone(),
            x_riferimento_message_id: msg.x_riferimento_message_id.clone(),
            x_tiporicevuta: msg.x_tiporicevuta.clone(),
            signature,
            provider,
            daticert: msg.daticert.as_ref().map(DaticertReport::from),
            postacert_bytes: msg.postacert.as_ref().map(|r| r.len()),
            header_mismatches: mismatches
                .into_iter()
                .map(|m| HeaderMismatchReport {
                    header: m.header.into(),
                    expected: m.expected,
                    found: m.found,
                })
                .collect(),
            reasons,
        }
    }

    /// Process exit status: 0 ok, 3 intact but the signer not verified
    /// (no trust anchor), 1 not valid.
    pub fn exit_code(&self) -> i32 {
        if self.ok {
            0
        } else if self.only_unverified {
            EXIT_UNVERIFIED
        } else {
            1
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Human-readable text, one `label: value` per line.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let mut kv = |k: &str, v: &str| {
            o.push_str(&format!("{k:<26}{v}\n"));
        };
        kv("Kind:", &self.kind_label);
        if let Some(s) = &self.subject {
            kv("Subject:", s);
        }
        if let Some(s) = &self.from {
            kv("From:", s);
        }
        if let Some(s) = &self.message_id {
            kv("Message-ID:", s);
        }
        if let Some(s) = &self.x_riferimento_message_id {
            kv("X-Riferimento-Message-ID:", s);
        }
        if let Some(s) = &self.x_tiporicevuta {
            kv("X-TipoRicevuta:", s);
        }
        let s = &self.signature;
        let verdict = match (s.verdict.as_str(), s.chain_checked) {
            ("valid", true) => "valid, chain verified at signing time".to_string(),
            ("valid", false) => {
                "intact, but the signer is NOT verified (no trusted CA)".to_string()
            }
            (v, _) => format!("{v}: {}", s.error.clone().unwrap_or_default()),
        };
        kv(
            if self.inner {
                "Signature (inner part):"
            } else {
                "Signature:"
            },
            &verdict,
        );
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        if s.verdict == "valid" {
            kv("Signer:", &opt(&s.signer_subject));
            kv("Issuer:", &opt(&s.issuer_subject));
            kv("SHA-1:", &opt(&s.sha1_fingerprint));
            kv(
                "Signing time:",
                &s.signing_time_utc
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
            );
            kv(
                "Digest:",
                &format!("{} (micalg {})", opt(&s.digest), opt(&s.micalg)),
            );
            if s.expired_now {
                kv("Note:", "signer certificate has expired since signing");
            }
        }
        if let Some(r) = &s.revocation {
            kv("Revocation:", &r.to_string());
        }
        if let Some(p) = &self.provider {
            kv("Provider (index):", p);
        }
        if let Some(d) = &self.daticert {
            kv("daticert tipo:", &d.tipo);
            kv("daticert errore:", &d.errore);
            kv("mittente:", &d.mittente);
            for r in &d.destinatari {
                kv("destinatari:", &format!("{} ({})", r.address, r.tipo));
            }
            kv("risposte:", &d.risposte);
            if let Some(x) = &d.oggetto {
                kv("oggetto:", x);
            }
            kv("gestore-emittente:", &d.gestore_emittente);
            kv("data:", &format!("{} {} ({})", d.giorno, d.ora, d.zona));
            kv("identificativo:", &d.identificativo);
            if let Some(x) = &d.msgid {
                kv("msgid:", x);
            }
            if let Some(x) = &d.ricevuta {
                kv("ricevuta:", x);
            }
            if let Some(x) = &d.consegna {
                kv("consegna:", x);
            }
            for x in &d.ricezione {
                kv("ricezione:", x);
            }
            if let Some(x) = &d.errore_esteso {
                kv("errore-esteso:", x);
            }
        } else {
            kv("daticert:", "(none)");
        }
        if let Some(n) = self.postacert_bytes {
            kv("postacert.eml:", &format!("{n} bytes"));
        }
        for m in &self.header_mismatches {
            kv(
                "Header mismatch:",
                &format!(
                    "{} is {} but daticert says {:?}",
                    m.header,
                    m.found
                        .as_ref()
                        .map_or("absent".to_string(), |f| format!("{f:?}")),
                    m.expected
                ),
            );
        }
        for r in &self.reasons {
            kv("Reason:", r);
        }
        kv(
            "Result:",
            if self.ok {
                "OK"
            } else if self.only_unverified {
                "NOT VERIFIED (the signer could not be checked)"
            } else {
                "NOT VALID"
            },
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate_ca;
    use crate::pec::index::Provider;
    use crate::pec::smime::tests::samples;
    use crate::pec::smime::trust_store_from_pem;

    const NOW: i64 = 1_760_000_000;

    /// The README verdict for every sample, through the report.
    #[test]
    fn sample_corpus_verdicts() {
        let mut failures = Vec::new();
        let mut read = 0;
        for (name, raw) in samples() {
            read += 1;
            let inner = name.starts_with("namirial");
            let req = VerifyRequest {
                revocation: None,
                index: None,
                trust: None,
                inner,
                now: NOW,
            };
            let r = VerifyReport::build(&raw, &req);
            let expect = !name.starts_with("NEG_") && !name.starts_with("ANON_");
            // No trust anchor: a genuine sample is intact but its signer is
            // not verified (exit 3), never OK.
            let code = if expect { EXIT_UNVERIFIED } else { 1 };
            if r.ok || r.exit_code() != code {
                failures.push(format!("{name}: ok={} reasons={:?}", r.ok, r.reasons));
            }
            if expect {
                let d = r.daticert.as_ref().unwrap();
                assert!(!d.identificativo.is_empty(), "{name}");
                let text = r.to_text();
                assert!(
                    text.contains("Result:                   NOT VERIFIED"),
                    "{name}\n{text}"
                );
                assert!(text.contains(&d.identificativo), "{name}");
                let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
                assert_eq!(json["ok"], false);
                assert_eq!(json["signer_verified"], false);
                assert_eq!(json["signature"]["verdict"], "valid");
                assert_eq!(
                    json["daticert"]["identificativo"],
                    d.identificativo.as_str()
                );
            }
            if inner {
                let whole = VerifyReport::build(
                    &raw,
                    &VerifyRequest {
                        inner: false,
                        ..req
                    },
                );
                if whole.ok {
                    failures.push(format!("{name}: whole file must not verify"));
                }
            }
        }
        assert!(read > 0, "no sample read");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn index_and_ca_rules() {
        let raw = samples()
            .into_iter()
            .find(|(n, _)| n == "aruba-2018_avvenuta-consegna_completa.eml")
            .unwrap()
            .1;
        // With an unrelated CA: chain fails.
        let ca = generate_ca("Other").unwrap();
        let store = trust_store_from_pem(&[&ca.cert_pem()]).unwrap();
        let r = VerifyReport::build(
            &raw,
            &VerifyRequest {
                revocation: None,
                index: None,
                trust: Some(&store),
                inner: false,
                now: NOW,
            },
        );
        assert!(!r.ok);
        assert_eq!(r.signature.verdict, "invalid");
        // Index without Aruba: not ok; with Aruba: ok.
        let base = VerifyReport::build(
            &raw,
            &VerifyRequest {
                revocation: None,
                index: None,
                trust: None,
                inner: false,
                now: NOW,
            },
        );
        let fp =
            crate::pec::index::parse_sha1(base.signature.sha1_hex.as_deref().unwrap()).unwrap();
        let mut index = ProviderIndex::default();
        let r = VerifyReport::build(
            &raw,
            &VerifyRequest {
                revocation: None,
                index: Some(&index),
                trust: None,
                inner: false,
                now: NOW,
            },
        );
        assert!(!r.ok && r.reasons[0].contains("not in the provider index"));
        index.providers.push(Provider {
            name: "ARUBA PEC S.p.A.".into(),
            domains: vec!["pec.aruba.it".into()],
            receipt_mailbox: "posta-certificata@pec.aruba.it".into(),
            sha1: vec![fp],
            certificate_der: None,
        });
        let req = VerifyRequest {
            revocation: None,
            index: Some(&index),
            trust: None,
            inner: false,
            now: NOW,
        };
        // Aruba signs the consegna of l.battistini@pec.it: it may, only if
        // the index says it manages pec.it.
        let r = VerifyReport::build(&raw, &req);
        assert!(!r.ok && r.exit_code() == 1, "{:?}", r.reasons);
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains("consegna l.battistini@pec.it not in a domain managed")),
            "{:?}",
            r.reasons
        );
        index.providers[0].domains.push("pec.it".into());
        let req = VerifyRequest {
            revocation: None,
            index: Some(&index),
            trust: None,
            inner: false,
            now: NOW,
        };
        let r = VerifyReport::build(&raw, &req);
        // Everything holds but the chain: no trusted CA, so never OK.
        assert!(!r.ok, "{:?}", r.reasons);
        assert_eq!(r.exit_code(), EXIT_UNVERIFIED, "{:?}", r.reasons);
        assert_eq!(r.reasons.len(), 1, "{:?}", r.reasons);
        assert!(r.reasons[0].contains("no trusted CA"));
        assert_eq!(r.provider.as_deref(), Some("ARUBA PEC S.p.A."));
        assert_eq!(r.kind, "ricevuta");
        assert_eq!(r.tipo.as_deref(), Some("avvenuta-consegna"));
        assert!(r.postacert_bytes.is_some());
        assert_eq!(utc(1542123567), "2018-11-13T15:39:27Z");
    }

    #[test]
    fn outer_headers_are_checked_against_daticert() {
        let raw = samples()
            .into_iter()
            .find(|(n, _)| n == "sogei-2018_busta-trasporto_sdi-invio-file.eml")
            .unwrap()
            .1;
        let req = VerifyRequest {
            revocation: None,
            index: None,
            trust: None,
            inner: false,
            now: NOW,
        };
        let good = VerifyReport::build(&raw, &req);
        assert!(
            good.exit_code() == EXIT_UNVERIFIED && good.header_mismatches.is_empty(),
            "{:?}",
            good.reasons
        );
        let text = String::from_utf8(raw).unwrap().replacen(
            "Subject: POSTA CERTIFICATA: Invio File",
            "Subject: POSTA CERTIFICATA: Sollecito File",
            1,
        );
        let r = VerifyReport::build(text.as_bytes(), &req);
        assert!(!r.ok);
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.signature.verdict, "valid", "the signature still verifies");
        assert_eq!(r.header_mismatches.len(), 1);
        assert_eq!(r.header_mismatches[0].header, "Subject");
        assert!(r.reasons.iter().any(|x| x.contains("outer Subject")));
        assert!(r.to_text().contains("Header mismatch:"));
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["header_mismatches"][0]["header"], "Subject");
        assert_eq!(
            json["header_mismatches"][0]["expected"],
            "POSTA CERTIFICATA: Invio File 7339338 (SIMULAZIONE)"
        );
    }

    #[test]
    fn ordinary_mail_is_not_ok() {
        let r = VerifyReport::build(
            b"From: a@b.it\nSubject: x\n\nhello\n",
            &VerifyRequest {
                revocation: None,
                index: None,
                trust: None,
                inner: false,
                now: NOW,
            },
        );
        assert!(!r.ok);
        assert_eq!(r.kind, "ordinary");
        assert_eq!(r.signature.verdict, "absent");
        assert_eq!(r.exit_code(), 1);
    }
}
