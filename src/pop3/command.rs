//! Sans-IO POP3: command parsing, multi-line response encoding (dot-stuffing)
//! and the `TOP` cut, all on byte slices so they are tested without sockets.

/// Longest command line taken, CRLF included. RFC 2449 allows 255 octets
/// for commands; a SASL PLAIN response with a long address and password in
/// base64 can exceed that, so lines get some room, and nothing more.
pub const MAX_LINE: usize = 1024;

/// One parsed client command (RFC 1939, 2449, 2595, 5034).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPA`
    Capa,
    /// `STLS`
    Stls,
    /// `USER name`
    User(String),
    /// `PASS secret` (the rest of the line: passwords may contain spaces).
    Pass(String),
    /// `AUTH [mechanism [initial-response]]`
    Auth {
        /// Mechanism name, upper-cased; `None` lists the mechanisms.
        mechanism: Option<String>,
        /// Initial response (base64, `=` for empty), when given.
        initial: Option<String>,
    },
    /// `STAT`
    Stat,
    /// `LIST [msg]`
    List(Option<usize>),
    /// `UIDL [msg]`
    Uidl(Option<usize>),
    /// `RETR msg`
    Retr(usize),
    /// `TOP msg n`
    Top(usize, usize),
    /// `DELE msg`
    Dele(usize),
    /// `NOOP`
    Noop,
    /// `RSET`
    Rset,
    /// `QUIT`
    Quit,
}

/// Why a line is not a command we take; the text goes after `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad(pub &'static str);

/// Whether a line is an authentication command (its arguments stay out of logs).
pub fn is_secret(line: &[u8]) -> bool {
    let head: Vec<u8> = line
        .iter()
        .take(5)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    head.starts_with(b"PASS") || head.starts_with(b"AUTH")
}

/// Parse one line (without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, Bad> {
    let line = std::str::from_utf8(line).map_err(|_| Bad("command is not valid text"))?;
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    // PASS keeps its argument verbatim (RFC 1939 §7: it may contain spaces).
    if verb == "PASS" {
        if rest.is_empty() {
            return Err(Bad("PASS needs a password"));
        }
        return Ok(Command::Pass(rest.to_string()));
    }
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(Bad("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "USER" => match args.as_slice() {
            [u] => Ok(Command::User((*u).to_string())),
            _ => Err(Bad("USER needs one name")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [m] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: None,
            }),
            [m, ir] => Ok(Command::Auth {
                mechanism: Some(m.to_ascii_uppercase()),
                initial: Some((*ir).to_string()),
            }),
            _ => Err(Bad("AUTH takes a mechanism and an initial response")),
        },
        "LIST" | "UIDL" => {
            let n = match args.as_slice() {
                [] => None,
                [n] => Some(number(n)?),
                _ => return Err(Bad("one message number at most")),
            };
            Ok(if verb == "LIST" {
                Command::List(n)
            } else {
                Command::Uidl(n)
            })
        }
        "RETR" | "DELE" => match args.as_slice() {
            [n] => {
                let n = number(n)?;
                Ok(if verb == "RETR" {
                    Command::Retr(n)
                } else {
                    Command::Dele(n)
                })
            }
            _ => Err(Bad("a message number is needed")),
        },
        "TOP" => match args.as_slice() {
            [n, lines] => Ok(Command::Top(number(n)?, count(lines)?)),
            _ => Err(Bad("TOP needs a message number and a line count")),
        },
        _ => Err(Bad("unknown command")),
    }
}

/// A message number: decimal, from 1.
fn number(s: &str) -> Result<usize, Bad> {
    match count(s) {
        Ok(0) | Err(_) => Err(Bad("invalid message number")),
        Ok(n) => Ok(n),
    }
}

/// A non-negative decimal (at most 9 digits: nothing here counts higher).
fn count(s: &str) -> Result<usize, Bad> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad("invalid number"));
    }
    s.parse().map_err(|_| Bad("invalid number"))
}

/// Decode a SASL PLAIN response (`authzid\0authcid\0passwd`, base64) into
/// user and password. An authorisation identity other than the user is
/// refused: nobody may act as someone else here.
pub fn sasl_plain(b64: &str) -> Result<(String, String), Bad> {
    let raw = if b64 == "=" {
        Vec::new()
    } else {
        openssl::base64::decode_block(b64).map_err(|_| Bad("invalid base64"))?
    };
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    if parts.len() != 3 || (!parts[0].is_empty() && parts[0] != parts[1]) {
        return Err(Bad("invalid PLAIN response"));
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Bad("invalid PLAIN response"));
    Ok((text(parts[1])?, text(parts[2])?))
}

/// Dot-stuffs message bytes for a multi-line response, chunk by chunk
/// (RFC 1939 §3): a `.` at the start of a line gets another in front. A line
/// starts after every LF, bare or not, because clients that split on LF
/// alone would otherwise take a stored `.\n` for the terminator.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    last: Option<u8>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    /// At the start of the message.
    pub fn new() -> Self {
        DotStuffer {
            at_line_start: true,
            last: None,
        }
    }

    /// Append the stuffed form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut from = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.at_line_start && b == b'.' {
                out.extend_from_slice(&chunk[from..i]);
                out.push(b'.');
                from = i;
            }
            self.at_line_start = b == b'\n';
        }
        out.extend_from_slice(&chunk[from..]);
        if let Some(&b) = chunk.last() {
            self.last = Some(b);
        }
    }

    /// The terminator: `.` CRLF, preceded by a CRLF when the message did
    /// not end with one (the only byte pecd ever adds to a stored message).
    pub fn finish(&self, out: &mut Vec<u8>) {
        if self.last.is_some() && !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Cuts a message for `TOP msg n`: the header, the blank line, then `n`
/// lines of the body; fed chunk by chunk, it says when it has seen enough.
#[derive(Debug, Clone)]
pub struct TopCut {
    body_lines: usize,
    in_header: bool,
    /// Whether the current header line is empty so far (CR does not count).
    line_empty: bool,
    done: bool,
}

impl TopCut {
    /// For `n` body lines.
    pub fn new(n: usize) -> Self {
        TopCut {
            body_lines: n,
            in_header: true,
            line_empty: true,
            done: false,
        }
    }

    /// Whether nothing more is needed.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The prefix of `chunk` that belongs to the output.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        if self.done {
            return &chunk[..0];
        }
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_header {
                match b {
                    b'\n' if self.line_empty => {
                        self.in_header = false;
                        if self.body_lines == 0 {
                            self.done = true;
                            return &chunk[..=i];
                        }
                    }
                    b'\n' => self.line_empty = true,
                    b'\r' => {}
                    _ => self.line_empty = false,
                }
            } else if b == b'\n' {
                self.body_lines -= 1;
                if self.body_lines == 0 {
                    self.done = true;
                    return &chunk[..=i];
                }
            }
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively_with_their_arguments() {
        assert_eq!(parse(b"capa"), Ok(Command::Capa));
        assert_eq!(parse(b"STLS"), Ok(Command::Stls));
        assert_eq!(
            parse(b"USER mario@pec.it"),
            Ok(Command::User("mario@pec.it".into()))
        );
        assert_eq!(
            parse(b"PASS correct horse  battery"),
            Ok(Command::Pass("correct horse  battery".into()))
        );
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"UIDL 12"), Ok(Command::Uidl(Some(12))));
        assert_eq!(parse(b"RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(parse(b"TOP 2 0"), Ok(Command::Top(2, 0)));
        assert_eq!(parse(b"DELE 7"), Ok(Command::Dele(7)));
        assert_eq!(
            parse(b"AUTH plain dGVzdA=="),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("dGVzdA==".into())
            })
        );
        assert_eq!(
            parse(b"AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
    }

    #[test]
    fn malformed_commands_are_refused_with_a_reason() {
        for bad in [
            &b"RETR"[..],
            b"RETR 0",
            b"RETR -1",
            b"RETR x",
            b"RETR 1 2",
            b"RETR 99999999999999999999",
            b"TOP 1",
            b"STAT 1",
            b"USER",
            b"PASS",
            b"XYZZY",
            b"",
            b"\xff\xfe",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(is_secret(b"pass x") && is_secret(b"AUTH PLAIN x") && !is_secret(b"USER x"));
    }

    #[test]
    fn sasl_plain_takes_only_one_identity() {
        let b64 = openssl::base64::encode_block(b"\0mario@pec.it\0pw d");
        assert_eq!(sasl_plain(&b64), Ok(("mario@pec.it".into(), "pw d".into())));
        let same = openssl::base64::encode_block(b"mario@pec.it\0mario@pec.it\0x");
        assert!(sasl_plain(&same).is_ok());
        let other = openssl::base64::encode_block(b"admin@pec.it\0mario@pec.it\0x");
        assert!(sasl_plain(&other).is_err());
        assert!(sasl_plain("=").is_err());
        assert!(sasl_plain("!!").is_err());
    }

    fn stuff_in_chunks(msg: &[u8], size: usize) -> Vec<u8> {
        let mut d = DotStuffer::new();
        let mut out = vec![];
        for c in msg.chunks(size.max(1)) {
            d.push(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing_is_the_only_change_whatever_the_chunking() {
        let msg = b".first\r\nplain\r\n..two\r\n.\r\nbare\n.lf\r\nend\r\n";
        let want = b"..first\r\nplain\r\n...two\r\n..\r\nbare\n..lf\r\nend\r\n.\r\n";
        for size in [1, 2, 3, 5, 7, 64] {
            assert_eq!(stuff_in_chunks(msg, size), want, "chunk {size}");
        }
        // Unstuffing gives the stored bytes back exactly.
        let wire = stuff_in_chunks(msg, 4);
        let mut back = vec![];
        for line in wire[..wire.len() - 3].split_inclusive(|&b| b == b'\n') {
            back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        assert_eq!(back, msg);
    }

    #[test]
    fn a_message_without_final_newline_gets_one_before_the_terminator() {
        assert_eq!(stuff_in_chunks(b"a\r\nb", 2), b"a\r\nb\r\n.\r\n");
        assert_eq!(stuff_in_chunks(b"", 2), b".\r\n");
        assert_eq!(stuff_in_chunks(b"a\n", 2), b"a\n.\r\n");
    }

    fn top(msg: &[u8], n: usize, size: usize) -> Vec<u8> {
        let mut t = TopCut::new(n);
        let mut out = vec![];
        for c in msg.chunks(size) {
            out.extend_from_slice(t.take(c));
            if t.done() {
                break;
            }
        }
        out
    }

    #[test]
    fn top_gives_the_header_blank_line_and_n_body_lines() {
        let msg = b"Subject: x\r\nFrom: y\r\n folded\r\n\r\nl1\r\nl2\r\nl3\r\n";
        for size in [1, 3, 100] {
            assert_eq!(
                top(msg, 0, size),
                b"Subject: x\r\nFrom: y\r\n folded\r\n\r\n"
            );
            assert_eq!(
                top(msg, 2, size),
                b"Subject: x\r\nFrom: y\r\n folded\r\n\r\nl1\r\nl2\r\n"
            );
            assert_eq!(top(msg, 10, size), msg);
        }
        // A header without a body: everything.
        assert_eq!(top(b"Subject: x\r\n", 3, 4), b"Subject: x\r\n");
        assert_eq!(top(b"A: b\n\nbody\n", 0, 2), b"A: b\n\n");
    }
}
