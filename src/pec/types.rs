//! Vocabulary of the PEC rules (`pec-spec.md` §3, §4) as Rust types.
//!
//! Wire spellings live here and nowhere else: every enum has `as_str` (the
//! exact token of the rules) and `parse` (case-insensitive, tolerant of
//! surrounding blanks).

/// `tipo` attribute of `<postacert>` and, except for the busta, the `X-Ricevuta` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tipo {
    /// Ricevuta di accettazione.
    Accettazione,
    /// Avviso di non accettazione.
    NonAccettazione,
    /// Ricevuta di presa in carico.
    PresaInCarico,
    /// Ricevuta di avvenuta consegna.
    AvvenutaConsegna,
    /// Busta di trasporto.
    PostaCertificata,
    /// Avviso di mancata consegna.
    ErroreConsegna,
    /// Avviso di mancata consegna per superamento dei tempi massimi (12 h / 24 h).
    PreavvisoErroreConsegna,
    /// Avviso di rilevazione virus.
    RilevazioneVirus,
}

impl Tipo {
    /// Every value, in DTD order.
    pub const ALL: [Tipo; 8] = [
        Tipo::Accettazione,
        Tipo::NonAccettazione,
        Tipo::PresaInCarico,
        Tipo::AvvenutaConsegna,
        Tipo::PostaCertificata,
        Tipo::ErroreConsegna,
        Tipo::PreavvisoErroreConsegna,
        Tipo::RilevazioneVirus,
    ];

    /// The exact token of the rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Tipo::Accettazione => "accettazione",
            Tipo::NonAccettazione => "non-accettazione",
            Tipo::PresaInCarico => "presa-in-carico",
            Tipo::AvvenutaConsegna => "avvenuta-consegna",
            Tipo::PostaCertificata => "posta-certificata",
            Tipo::ErroreConsegna => "errore-consegna",
            Tipo::PreavvisoErroreConsegna => "preavviso-errore-consegna",
            Tipo::RilevazioneVirus => "rilevazione-virus",
        }
    }

    /// Parse a token (case-insensitive).
    pub fn parse(s: &str) -> Option<Tipo> {
        let s = s.trim();
        Tipo::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

/// `errore` attribute of `<postacert>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Errore {
    /// No error.
    #[default]
    Nessuno,
    /// Recipient unknown.
    NoDest,
    /// Recipient domain unknown.
    NoDominio,
    /// Virus.
    Virus,
    /// Any other error.
    Altro,
}

impl Errore {
    /// The exact token of the rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Errore::Nessuno => "nessuno",
            Errore::NoDest => "no-dest",
            Errore::NoDominio => "no-dominio",
            Errore::Virus => "virus",
            Errore::Altro => "altro",
        }
    }

    /// Parse a token (case-insensitive).
    pub fn parse(s: &str) -> Option<Errore> {
        let s = s.trim();
        [
            Errore::Nessuno,
            Errore::NoDest,
            Errore::NoDominio,
            Errore::Virus,
            Errore::Altro,
        ]
        .into_iter()
        .find(|e| e.as_str().eq_ignore_ascii_case(s))
    }
}

/// `tipo` of `<destinatari>`: is the recipient served by a PEC provider?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecipientType {
    /// In a domain managed by a provider in the index (or by us).
    #[default]
    Certificato,
    /// Ordinary e-mail.
    Esterno,
}

impl RecipientType {
    /// The exact token of the rules.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientType::Certificato => "certificato",
            RecipientType::Esterno => "esterno",
        }
    }

    /// Parse a token (case-insensitive).
    pub fn parse(s: &str) -> Option<RecipientType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "certificato" => Some(RecipientType::Certificato),
            "esterno" => Some(RecipientType::Esterno),
            _ => None,
        }
    }
}

/// Delivery receipt flavour (`X-TipoRicevuta`, `<ricevuta tipo=…/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReceiptType {
    /// Receipt carries the original message.
    #[default]
    Completa,
    /// Receipt carries the original with attachments replaced by hashes.
    Breve,
    /// Receipt carries data only.
    Sintetica,
}

impl ReceiptType {
    /// The exact token of the rules.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptType::Completa => "completa",
            ReceiptType::Breve => "breve",
            ReceiptType::Sintetica => "sintetica",
        }
    }

    /// Parse a token (case-insensitive); unknown values (`complet` is seen in
    /// the wild) give `None` and callers fall back to the default.
    pub fn parse(s: &str) -> Option<ReceiptType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "completa" => Some(ReceiptType::Completa),
            "breve" => Some(ReceiptType::Breve),
            "sintetica" => Some(ReceiptType::Sintetica),
            _ => None,
        }
    }
}

/// A provider-generated message before signing: the outer (unsigned) header
/// fields and the MIME entity that the S/MIME signature will cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsigned {
    /// Outer header fields in order, values already RFC 2047-encoded and folded as
    /// they must appear (continuation lines joined with `\r\n `).
    pub headers: Vec<(String, String)>,
    /// The signed entity: its own `Content-Type` header (and CTE), blank line and
    /// body, CRLF line endings throughout.
    pub entity: Vec<u8>,
}

impl Unsigned {
    /// First value of a header (name case-insensitive), as stored.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An address as lookups compare it: trimmed, without angle brackets,
/// lower-case.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_matches(|c| c == '<' || c == '>')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in Tipo::ALL {
            assert_eq!(Tipo::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            Tipo::parse(" Avvenuta-Consegna "),
            Some(Tipo::AvvenutaConsegna)
        );
        assert_eq!(ReceiptType::parse("complet"), None);
        assert_eq!(Errore::parse("no-dest"), Some(Errore::NoDest));
    }
}
