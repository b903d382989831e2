//! Sans-IO SMTP command parser: one command line (without its CRLF) in, a
//! [`Command`] or the exact error [`Reply`] out.
//!
//! Strict but practical: verbs are case-insensitive; `MAIL FROM:<a@b>` and
//! `MAIL FROM: <a@b>` are both accepted (many clients put the space); a path
//! without angle brackets is refused (RFC 5321 §4.1.2 requires them and being
//! lenient here is how address-parsing differentials start). Source routes
//! (`<@relay:user@host>`) are accepted and dropped as RFC 5321 §4.1.1.3 asks.

use super::reply::Reply;

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest AUTH line, CRLF included (RFC 4954 §4): SASL responses are longer.
pub const MAX_AUTH_LINE: usize = 12288;

/// SASL mechanisms we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto LOGIN mechanism (user name, then password, each base64).
    Login,
}

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`; path without brackets, `""` for the null path.
    Mail {
        /// Reverse-path.
        from: String,
        /// `SIZE=` value.
        size: Option<usize>,
        /// `BODY=8BITMIME`.
        body_8bit: bool,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        /// Forward-path.
        to: String,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [text]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy,
    /// `HELP [topic]`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// Mechanism.
        mechanism: Mechanism,
        /// Initial response, still base64 (`=` means empty).
        initial: Option<String>,
    },
}

/// True when the line is an AUTH command, which gets the longer RFC 4954 limit.
pub fn is_auth(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"AUTH")
        && (line.len() == 4 || line[4] == b' ')
}

/// Parse one command line (CRLF already removed).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = &line[..verb_end];
    let rest = &line[verb_end..];
    let args = std::str::from_utf8(rest)
        .map_err(|_| Reply::syntax_params("Invalid characters in command"))?;
    if args.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(Reply::syntax_params("Control characters in command"));
    }
    let args = args.trim();
    let upper = verb.to_ascii_uppercase();
    match upper.as_slice() {
        b"EHLO" | b"HELO" => {
            let domain = args.split_ascii_whitespace().next().unwrap_or("");
            if domain.is_empty() {
                return Err(Reply::syntax_params("Domain name required"));
            }
            Ok(if upper == b"EHLO" {
                Command::Ehlo(domain.to_string())
            } else {
                Command::Helo(domain.to_string())
            })
        }
        b"MAIL" => parse_mail(args),
        b"RCPT" => parse_rcpt(args),
        b"DATA" => no_args(args, Command::Data),
        b"RSET" => no_args(args, Command::Rset),
        b"QUIT" => no_args(args, Command::Quit),
        b"STARTTLS" => no_args(args, Command::StartTls),
        b"NOOP" => Ok(Command::Noop),
        b"HELP" => Ok(Command::Help),
        b"VRFY" => {
            if args.is_empty() {
                Err(Reply::syntax_params("VRFY requires an argument"))
            } else {
                Ok(Command::Vrfy)
            }
        }
        b"AUTH" => parse_auth(args),
        _ => Err(Reply::unknown_command()),
    }
}

fn no_args(args: &str, cmd: Command) -> Result<Command, Reply> {
    if args.is_empty() {
        Ok(cmd)
    } else {
        Err(Reply::syntax_params("No parameters allowed"))
    }
}

fn parse_auth(args: &str) -> Result<Command, Reply> {
    let mut parts = args.split_ascii_whitespace();
    let mech = parts
        .next()
        .ok_or_else(|| Reply::syntax_params("AUTH requires a mechanism"))?;
    let mechanism = if mech.eq_ignore_ascii_case("PLAIN") {
        Mechanism::Plain
    } else if mech.eq_ignore_ascii_case("LOGIN") {
        Mechanism::Login
    } else {
        return Err(Reply::auth_mechanism_unsupported());
    };
    let initial = parts.next().map(str::to_string);
    if parts.next().is_some() {
        return Err(Reply::syntax_params("Too many AUTH arguments"));
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Split `FROM:<path> params` after the keyword; `keyword` is `FROM` or `TO`.
fn split_path<'a>(args: &'a str, keyword: &str) -> Result<(&'a str, &'a str), Reply> {
    let k = keyword.len();
    if args.len() < k + 1
        || !args.is_char_boundary(k)
        || !args[..k].eq_ignore_ascii_case(keyword)
        || args.as_bytes()[k] != b':'
    {
        return Err(Reply::syntax_params(&format!(
            "Syntax: {keyword}:<address>"
        )));
    }
    let rest = args[k + 1..].trim_start_matches(' ');
    let Some(inner_start) = rest.strip_prefix('<') else {
        return Err(Reply::syntax_params("Address must be in angle brackets"));
    };
    let Some(close) = inner_start.find('>') else {
        return Err(Reply::syntax_params("Address must be in angle brackets"));
    };
    let path = &inner_start[..close];
    let params = &inner_start[close + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(Reply::syntax_params("Garbage after address"));
    }
    Ok((path, params.trim()))
}

/// Validate the inside of `<...>`: drop a source route, refuse what cannot be an address.
fn clean_path(path: &str) -> Result<&str, Reply> {
    let path = if path.starts_with('@') {
        match path.find(':') {
            Some(i) => &path[i + 1..],
            None => return Err(Reply::syntax_params("Bad source route")),
        }
    } else {
        path
    };
    if path.is_empty() {
        return Ok(path);
    }
    if path
        .bytes()
        .any(|b| b == b'<' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Reply::syntax_params("Invalid character in address"));
    }
    match path.rfind('@') {
        Some(at) if at > 0 && at + 1 < path.len() => Ok(path),
        _ => Err(Reply::syntax_params("Address must be local@domain")),
    }
}

fn parse_mail(args: &str) -> Result<Command, Reply> {
    let (path, params) = split_path(args, "FROM")?;
    let from = clean_path(path)?.to_string();
    let mut size = None;
    let mut body = None;
    for p in params.split_ascii_whitespace() {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value.ok_or_else(|| Reply::syntax_params("SIZE needs a value"))?;
            if size.is_some() {
                return Err(Reply::syntax_params("Duplicate SIZE"));
            }
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Reply::syntax_params("Bad SIZE value"));
            }
            // A number too large for usize is simply "too big", never a wrap.
            size = Some(v.parse::<usize>().unwrap_or(usize::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            if body.is_some() {
                return Err(Reply::syntax_params("Duplicate BODY"));
            }
            match value {
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => body = Some(true),
                Some(v) if v.eq_ignore_ascii_case("7BIT") => body = Some(false),
                _ => return Err(Reply::syntax_params("Bad BODY value")),
            }
        } else {
            return Err(Reply::unknown_parameter(key));
        }
    }
    Ok(Command::Mail {
        from,
        size,
        body_8bit: body.unwrap_or(false),
    })
}

fn parse_rcpt(args: &str) -> Result<Command, Reply> {
    let (path, params) = split_path(args, "TO")?;
    if let Some(p) = params.split_ascii_whitespace().next() {
        let key = p.split_once('=').map_or(p, |(k, _)| k);
        return Err(Reply::unknown_parameter(key));
    }
    // RFC 5321 §4.1.1.3: <postmaster> without a domain must be accepted.
    if path.eq_ignore_ascii_case("postmaster") {
        return Ok(Command::Rcpt {
            to: path.to_string(),
        });
    }
    let to = clean_path(path)?;
    if to.is_empty() {
        return Err(Reply::syntax_params("Empty recipient"));
    }
    Ok(Command::Rcpt { to: to.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(from: &str, size: Option<usize>, body_8bit: bool) -> Command {
        Command::Mail {
            from: from.into(),
            size,
            body_8bit,
        }
    }

    #[test]
    fn accepted_commands() {
        let ok: &[(&[u8], Command)] = &[
            (b"EHLO client.test", Command::Ehlo("client.test".into())),
            (b"ehlo [127.0.0.1]", Command::Ehlo("[127.0.0.1]".into())),
            (b"HELO x", Command::Helo("x".into())),
            (b"MAIL FROM:<a@b.it>", mail("a@b.it", None, false)),
            (b"mail from:<a@b.it>", mail("a@b.it", None, false)),
            (b"MAIL FROM: <a@b.it>", mail("a@b.it", None, false)),
            (b"MAIL FROM:<>", mail("", None, false)),
            (
                b"MAIL FROM:<> SIZE=100 BODY=8BITMIME",
                mail("", Some(100), true),
            ),
            (
                b"MAIL FROM:<a@b> body=7bit size=0",
                mail("a@b", Some(0), false),
            ),
            (
                b"MAIL FROM:<a@b> SIZE=99999999999999999999",
                mail("a@b", Some(usize::MAX), false),
            ),
            (b"MAIL FROM:<@relay.x,@r2:a@b>", mail("a@b", None, false)),
            (
                b"RCPT TO:<c@d.it>",
                Command::Rcpt {
                    to: "c@d.it".into(),
                },
            ),
            (
                b"RCPT TO: <c@d.it>",
                Command::Rcpt {
                    to: "c@d.it".into(),
                },
            ),
            (
                b"RCPT TO:<Postmaster>",
                Command::Rcpt {
                    to: "Postmaster".into(),
                },
            ),
            (b"DATA", Command::Data),
            (b"data", Command::Data),
            (b"RSET", Command::Rset),
            (b"NOOP", Command::Noop),
            (b"NOOP anything", Command::Noop),
            (b"QUIT", Command::Quit),
            (b"VRFY alice", Command::Vrfy),
            (b"HELP", Command::Help),
            (b"STARTTLS", Command::StartTls),
            (
                b"AUTH PLAIN",
                Command::Auth {
                    mechanism: Mechanism::Plain,
                    initial: None,
                },
            ),
            (
                b"auth login dXNlcg==",
                Command::Auth {
                    mechanism: Mechanism::Login,
                    initial: Some("dXNlcg==".into()),
                },
            ),
        ];
        for (line, want) in ok {
            assert_eq!(
                parse(line).as_ref(),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn refused_commands() {
        type Case = (&'static [u8], u16, (u8, u16, u16));
        let bad: &[Case] = &[
            (b"", 500, (5, 5, 2)),
            (b"FOO", 500, (5, 5, 2)),
            (b"EXPN list", 500, (5, 5, 2)),
            (b"MAILFROM:<a@b>", 500, (5, 5, 2)),
            (b"EHLO", 501, (5, 5, 4)),
            (b"MAIL FROM:a@b", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b", 501, (5, 5, 4)),
            (b"MAIL TO:<a@b>", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b>X", 501, (5, 5, 4)),
            (b"MAIL FROM:<a b@c>", 501, (5, 5, 4)),
            (b"MAIL FROM:<ab>", 501, (5, 5, 4)),
            (b"MAIL FROM:<@b>", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@>", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE=abc", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b> BODY=BINARYMIME", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b> SMTPUTF8", 555, (5, 5, 4)),
            (b"MAIL FROM:<a@b> RET=HDRS", 555, (5, 5, 4)),
            (b"RCPT TO:<c@d> NOTIFY=NEVER", 555, (5, 5, 4)),
            (b"RCPT TO:<>", 501, (5, 5, 4)),
            (b"RCPT TO:c@d", 501, (5, 5, 4)),
            (b"RCPT FROM:<c@d>", 501, (5, 5, 4)),
            (b"DATA now", 501, (5, 5, 4)),
            (b"QUIT please", 501, (5, 5, 4)),
            (b"STARTTLS x", 501, (5, 5, 4)),
            (b"VRFY", 501, (5, 5, 4)),
            (b"AUTH", 501, (5, 5, 4)),
            (b"AUTH CRAM-MD5", 504, (5, 5, 4)),
            (b"AUTH PLAIN a b", 501, (5, 5, 4)),
            (b"MAIL FROM:<a\xff@b>", 501, (5, 5, 4)),
            (b"MAIL FROM:<a@b>\x00", 501, (5, 5, 4)),
        ];
        for (line, code, enh) in bad {
            let r = parse(line).expect_err(&String::from_utf8_lossy(line));
            assert_eq!(
                (r.code, r.enhanced),
                (*code, Some(*enh)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn auth_detection() {
        assert!(is_auth(b"AUTH PLAIN xyz"));
        assert!(is_auth(b"auth"));
        assert!(!is_auth(b"AUTHX"));
        assert!(!is_auth(b"MAIL FROM:<a@b>"));
    }
}
