//! Why the access point does not accept a submission, as data: the formal
//! defects of `pec-spec.md` §5.1 and the provider's own reasons. Each
//! protocol maps it to its wire once — SMTP in `server::submission`
//! (`reply_for`), HTTP in the webmail's API — and the non-accettazione
//! takes its Italian text from here.

use crate::pec::access::Defect;

/// Why a submission was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A formal defect of the message.
    Formal(Defect),
    /// clamd found this virus (a non-accettazione per virus).
    Virus(String),
    /// An attachment with a blocked extension.
    Blocked {
        /// Its file name.
        name: String,
        /// The extension, lower case.
        extension: String,
    },
    /// The busta would pass the size limit a peer with our limit enforces.
    BustaTooBig {
        /// The signed busta's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The sender is not the authenticated user (MAIL FROM or From).
    NotYourAddress,
    /// An envelope recipient that is not an address.
    BadEnvelopeRecipient(String),
    /// The virus scanner could not answer (`on_error = "tempfail"`).
    ScanUnavailable,
    /// Something failed here (store, signer): nothing was accepted; try again.
    Local,
}

impl Refusal {
    /// Whether the sender gets a signed avviso di non accettazione (only for
    /// what the rules certify: the message's own defects and viruses; a
    /// message over the size threshold gets the SMTP reply alone).
    pub fn notice(&self) -> bool {
        match self {
            Refusal::Formal(Defect::TooBig) => false,
            Refusal::Formal(_) | Refusal::Virus(_) | Refusal::Blocked { .. } => true,
            Refusal::BustaTooBig { .. }
            | Refusal::NotYourAddress
            | Refusal::BadEnvelopeRecipient(_)
            | Refusal::ScanUnavailable
            | Refusal::Local => false,
        }
    }

    /// Whether trying again later may succeed (nothing is wrong with the message).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Refusal::ScanUnavailable | Refusal::Local)
    }

    /// Whether it is a size limit.
    pub fn is_size(&self) -> bool {
        matches!(
            self,
            Refusal::Formal(Defect::TooBig | Defect::TooBigForRecipients)
                | Refusal::BustaTooBig { .. }
        )
    }

    /// The reason in the words of the non-accettazione (`errore-esteso`);
    /// `None` where no certified reason exists.
    pub fn italian(&self) -> Option<String> {
        Some(match self {
            Refusal::Formal(d) => d.italian(),
            Refusal::Virus(v) => format!("virus {v}"),
            Refusal::Blocked { name, extension } => format!(
                "l'allegato \"{name}\" ha un'estensione non ammessa (.{extension}): i file eseguibili non sono accettati"
            ),
            Refusal::BustaTooBig { size, max } => format!(
                "la busta di trasporto ({size} byte) supererebbe la dimensione massima consentita ({max} byte)"
            ),
            Refusal::NotYourAddress
            | Refusal::BadEnvelopeRecipient(_)
            | Refusal::ScanUnavailable
            | Refusal::Local => return None,
        })
    }

    /// The reason in English (SMTP reply text, log).
    pub fn english(&self) -> String {
        match self {
            Refusal::Formal(d) => d.english(),
            Refusal::Virus(v) => format!("virus {v} detected, message refused"),
            Refusal::Blocked { name, extension } => {
                format!("attachment {name:?} has a blocked extension (.{extension})")
            }
            Refusal::BustaTooBig { size, max } => {
                format!("the busta di trasporto would be {size} bytes, over the {max}-byte limit")
            }
            Refusal::NotYourAddress => "sender address not owned by the authenticated user".into(),
            Refusal::BadEnvelopeRecipient(r) => format!("invalid recipient address: {r}"),
            Refusal::ScanUnavailable => "virus scan unavailable, try again later".into(),
            Refusal::Local => "local error, try again later".into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.english())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_only_for_what_the_rules_certify() {
        assert!(Refusal::Formal(Defect::Bcc).notice());
        assert!(Refusal::Formal(Defect::TooBigForRecipients).notice());
        assert!(!Refusal::Formal(Defect::TooBig).notice());
        assert!(Refusal::Virus("Eicar".into()).notice());
        assert!(!Refusal::BustaTooBig { size: 2, max: 1 }.notice());
        assert!(!Refusal::ScanUnavailable.notice());
        assert!(Refusal::ScanUnavailable.is_temporary());
        assert!(!Refusal::Virus("x".into()).is_temporary());
        assert_eq!(Refusal::Local.italian(), None);
        assert_eq!(
            Refusal::Virus("Win.Test.EICAR_HDB-1".into())
                .italian()
                .unwrap(),
            "virus Win.Test.EICAR_HDB-1"
        );
    }
}
