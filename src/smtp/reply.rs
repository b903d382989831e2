//! Every SMTP reply the server can send, in one place.
//!
//! Handlers never write reply literals: they call one of the constructors
//! below, so codes, enhanced status codes (RFC 3463) and wording stay
//! consistent and reviewable. The greeting, the EHLO/HELO answer, `354` and
//! the `334` AUTH challenges carry no enhanced code (RFC 2034 §3 excludes the
//! greeting and EHLO; the others are intermediate replies).

use std::fmt;

/// One SMTP reply: a code, an optional enhanced status code and text
/// (split on `'\n'` into a multi-line reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Basic reply code (RFC 5321 §4.2).
    pub code: u16,
    /// Enhanced status code `class.subject.detail` (RFC 3463).
    pub enhanced: Option<(u8, u16, u16)>,
    /// Human text; each `'\n'` starts a new reply line.
    pub text: String,
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wire = self.to_wire();
        f.write_str(String::from_utf8_lossy(&wire).trim_end())
    }
}

impl Reply {
    /// A reply with an enhanced status code.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (greeting, EHLO, 354, 334).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced: None,
            text: text.into(),
        }
    }

    /// Wire form: every line `code[-| ][enhanced ]text\r\n`. RFC 2034 asks
    /// for the enhanced code on each line of a multi-line reply.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 16);
        let lines: Vec<&str> = self.text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let line = line.trim_end_matches('\r');
            let mut s = format!("{}{}", self.code, sep);
            if let Some((c, sub, det)) = self.enhanced {
                s.push_str(&format!("{c}.{sub}.{det}"));
                if !line.is_empty() {
                    s.push(' ');
                }
            }
            s.push_str(line);
            out.extend_from_slice(s.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// 2xx/3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: the client may retry later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: retrying the same thing will fail again.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    // ---- greeting and session -------------------------------------------------

    /// `220 <host> ESMTP pecd` banner.
    pub fn greeting(hostname: &str) -> Self {
        Self::plain(220, format!("{hostname} ESMTP pecd"))
    }

    /// Multi-line EHLO answer: first line names us and the client, then one capability a line.
    pub fn ehlo(hostname: &str, client: &str, capabilities: &[String]) -> Self {
        let mut text = format!("{hostname} Hello {client}");
        for c in capabilities {
            text.push('\n');
            text.push_str(c);
        }
        Self::plain(250, text)
    }

    /// HELO answer.
    pub fn helo(hostname: &str) -> Self {
        Self::plain(250, hostname.to_string())
    }

    /// Generic `250 2.0.0 Ok` (NOOP, RSET).
    pub fn ok() -> Self {
        Self::new(250, (2, 0, 0), "Ok")
    }

    /// MAIL accepted.
    pub fn mail_ok() -> Self {
        Self::new(250, (2, 1, 0), "Sender ok")
    }

    /// RCPT accepted.
    pub fn rcpt_ok() -> Self {
        Self::new(250, (2, 1, 5), "Recipient ok")
    }

    /// Message accepted and stored, with the queue id the client can quote.
    pub fn queued(id: &str) -> Self {
        Self::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
    }

    /// Go ahead with the message content.
    pub fn data_start() -> Self {
        Self::plain(354, "End data with <CR><LF>.<CR><LF>")
    }

    /// QUIT.
    pub fn bye() -> Self {
        Self::new(221, (2, 0, 0), "Bye")
    }

    /// VRFY: we never disclose whether a mailbox exists.
    pub fn vrfy() -> Self {
        Self::new(
            252,
            (2, 0, 0),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// HELP.
    pub fn help() -> Self {
        Self::new(214, (2, 0, 0), "pecd: see RFC 5321")
    }

    // ---- TLS -----------------------------------------------------------------

    /// STARTTLS accepted; the handshake follows.
    pub fn starttls_ready() -> Self {
        Self::new(220, (2, 0, 0), "Ready to start TLS")
    }

    /// STARTTLS on a session that is already encrypted.
    pub fn already_tls() -> Self {
        Self::new(503, (5, 5, 1), "TLS already active")
    }

    // ---- AUTH ----------------------------------------------------------------

    /// AUTH challenge (`334 <base64>`), the text is already encoded.
    pub fn auth_challenge(base64: &str) -> Self {
        Self::plain(334, base64.to_string())
    }

    /// AUTH succeeded.
    pub fn auth_ok() -> Self {
        Self::new(235, (2, 7, 0), "Authentication successful")
    }

    /// Wrong user name or password (RFC 4954 §6).
    pub fn auth_failed() -> Self {
        Self::new(535, (5, 7, 8), "Authentication credentials invalid")
    }

    /// Too many recent failed logins for this address or network are queued
    /// already: the password was not checked (RFC 4954 §6 temporary failure).
    pub fn auth_throttled() -> Self {
        Self::new(454, (4, 7, 0), "Too many failed logins, try again later")
    }

    /// The client answered `*` to a challenge.
    pub fn auth_cancelled() -> Self {
        Self::new(501, (5, 7, 0), "Authentication cancelled")
    }

    /// A challenge response that is not valid base64 or not well formed.
    pub fn auth_bad_response() -> Self {
        Self::new(501, (5, 5, 2), "Cannot decode AUTH response")
    }

    /// AUTH attempted on a plaintext channel (RFC 4954 §6).
    pub fn encryption_required() -> Self {
        Self::new(
            538,
            (5, 7, 11),
            "Encryption required for requested authentication mechanism",
        )
    }

    /// MAIL attempted before AUTH on the submission port.
    pub fn auth_required() -> Self {
        Self::new(530, (5, 7, 0), "Authentication required")
    }

    /// Second AUTH after a successful one.
    pub fn already_authenticated() -> Self {
        Self::new(503, (5, 5, 1), "Already authenticated")
    }

    /// Unsupported SASL mechanism.
    pub fn auth_mechanism_unsupported() -> Self {
        Self::new(504, (5, 5, 4), "Unrecognized authentication type")
    }

    /// A known command this listener does not offer (AUTH on inbound, STARTTLS without TLS).
    pub fn not_implemented() -> Self {
        Self::new(502, (5, 5, 1), "Command not implemented")
    }

    // ---- sequence and syntax -------------------------------------------------

    /// Command out of order (RFC 5321 §4.3.2, `503 5.5.1`).
    pub fn bad_sequence(why: &str) -> Self {
        Self::new(503, (5, 5, 1), why.to_string())
    }

    /// MAIL/RCPT/DATA before EHLO/HELO.
    pub fn need_helo() -> Self {
        Self::bad_sequence("Send HELO/EHLO first")
    }

    /// RCPT or DATA without MAIL.
    pub fn need_mail() -> Self {
        Self::bad_sequence("Need MAIL command")
    }

    /// DATA without any accepted RCPT.
    pub fn need_rcpt() -> Self {
        Self::bad_sequence("No valid recipients")
    }

    /// MAIL inside a transaction.
    pub fn nested_mail() -> Self {
        Self::bad_sequence("Nested MAIL command")
    }

    /// Bad arguments (`501 5.5.4`).
    pub fn syntax_params(why: &str) -> Self {
        Self::new(501, (5, 5, 4), why.to_string())
    }

    /// Bad command syntax (`500 5.5.2`).
    pub fn syntax(why: &str) -> Self {
        Self::new(500, (5, 5, 2), why.to_string())
    }

    /// Command line above the RFC 5321 §4.5.3.1.4 limit.
    pub fn line_too_long() -> Self {
        Self::syntax("Line too long")
    }

    /// Unknown verb.
    pub fn unknown_command() -> Self {
        Self::syntax("Command unrecognized")
    }

    /// MAIL/RCPT parameter we did not advertise (RFC 5321 §4.1.1.11).
    pub fn unknown_parameter(name: &str) -> Self {
        Self::new(555, (5, 5, 4), format!("Unsupported parameter {name}"))
    }

    // ---- PEC access and reception points ------------------------------------

    /// MAIL FROM is not the authenticated user (pec-spec §5.1; no notice: the
    /// sender is not who they claim).
    pub fn sender_not_owned() -> Self {
        Self::new(
            553,
            (5, 7, 1),
            "Sender address rejected: not owned by the authenticated user",
        )
    }

    /// RCPT that is not an address.
    pub fn bad_recipient(rcpt: &str) -> Self {
        Self::new(
            553,
            (5, 1, 3),
            format!("{rcpt}: recipient address syntax is invalid"),
        )
    }

    /// Inbound RCPT outside our domains.
    pub fn relay_denied() -> Self {
        Self::new(
            550,
            (5, 7, 1),
            "Relay access denied: not a domain of this provider",
        )
    }

    /// A PEC message accepted: the text carries the identificativo.
    pub fn pec_accepted(identificativo: &str) -> Self {
        Self::new(
            250,
            (2, 0, 0),
            format!("Ok: accepted as PEC, identificativo {identificativo}"),
        )
    }

    /// A submission refused by the formal checks; the reason travels in the
    /// reply (and in the avviso di non accettazione, where one is due).
    pub fn pec_refused(code: u16, status: &str, reason: &str) -> Self {
        let mut parts = status.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
        let class = parts.next().unwrap_or(5) as u8;
        let subject = parts.next().unwrap_or(0);
        let detail = parts.next().unwrap_or(0);
        Self::new(
            code,
            (class, subject, detail),
            format!(
                "Message not accepted as PEC: {}",
                reason.replace(['\r', '\n'], " ")
            ),
        )
    }

    // ---- limits --------------------------------------------------------------

    /// SIZE or actual content above the limit (RFC 1870).
    pub fn message_too_big() -> Self {
        Self::new(
            552,
            (5, 3, 4),
            "Message size exceeds fixed maximum message size",
        )
    }

    /// The provider's memory budget (or spool disk) cannot take the message now.
    pub fn insufficient_storage() -> Self {
        Self::new(
            452,
            (4, 3, 1),
            "Insufficient system storage, try again later",
        )
    }

    /// RCPT beyond `max_recipients` (RFC 5321 §4.5.3.1.10).
    pub fn too_many_recipients() -> Self {
        Self::new(452, (4, 5, 3), "Too many recipients")
    }

    /// Content with a bare CR or LF: refused whole, it could hide a second message.
    pub fn bare_line_ending() -> Self {
        Self::new(
            554,
            (5, 6, 0),
            "bare CR or LF not allowed (SMTP smuggling protection)",
        )
    }

    // ---- closing replies -----------------------------------------------------

    /// Client idle too long, or too slow to finish a command or DATA.
    pub fn timeout() -> Self {
        Self::new(421, (4, 4, 2), "Timeout exceeded, closing connection")
    }

    /// Connection limit reached.
    pub fn busy() -> Self {
        Self::new(421, (4, 7, 0), "Too many connections, try again later")
    }

    /// This client address already holds `max_connections_per_ip` sessions.
    pub fn too_many_from_ip() -> Self {
        Self::new(
            421,
            (4, 7, 0),
            "Too many connections from your address, try again later",
        )
    }

    /// Too many bad commands.
    pub fn too_many_errors() -> Self {
        Self::new(421, (4, 7, 0), "Too many errors, closing connection")
    }

    /// Server shutting down.
    pub fn shutting_down() -> Self {
        Self::new(421, (4, 3, 2), "Service shutting down")
    }

    /// Internal failure the client should retry (backend error, storage down).
    pub fn local_error() -> Self {
        Self::new(451, (4, 3, 0), "Local error in processing")
    }

    /// 451 4.7.0: the virus scanner could not judge the message; try later.
    pub fn scan_unavailable() -> Self {
        Self::new(451, (4, 7, 0), "Virus scan unavailable, try again later")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        assert_eq!(Reply::ok().to_wire(), b"250 2.0.0 Ok\r\n");
        assert_eq!(
            Reply::data_start().to_wire(),
            b"354 End data with <CR><LF>.<CR><LF>\r\n"
        );
    }

    #[test]
    fn multi_line_repeats_code_and_enhanced_code() {
        let r = Reply::new(550, (5, 7, 1), "first\nsecond\nthird");
        assert_eq!(
            r.to_wire(),
            b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n".to_vec()
        );
        let e = Reply::ehlo(
            "mx.test",
            "client",
            &["PIPELINING".into(), "8BITMIME".into()],
        );
        assert_eq!(
            e.to_wire(),
            b"250-mx.test Hello client\r\n250-PIPELINING\r\n250 8BITMIME\r\n".to_vec()
        );
    }

    #[test]
    fn classes() {
        assert!(Reply::ok().is_positive());
        assert!(Reply::too_many_recipients().is_transient());
        assert!(Reply::message_too_big().is_permanent());
        assert_eq!(Reply::auth_challenge("").to_wire(), b"334 \r\n");
    }
}
