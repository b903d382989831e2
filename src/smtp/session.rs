//! One SMTP session: a state machine over a buffered stream.
//!
//! All input goes through one buffer (`rbuf`), whatever the state, so no
//! pipelined byte is lost when switching between command, AUTH and DATA
//! reading. Replies are queued in `wbuf` and written when we are about to
//! wait for input that is not already buffered (RFC 2920 §3.2), which keeps a
//! pipelining client's group in one write and a lock-step client responsive.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Duration, Instant};
use tracing::{debug, info, warn};

use super::command::{self, Command, Mechanism, MAX_AUTH_LINE, MAX_COMMAND_LINE};
use super::data::DataOutcome;
use super::incoming::Incoming;
use super::reply::Reply;
use super::stream::SmtpStream;
use super::{Backend, Envelope, Mode, SessionInfo, SmtpConfig};

/// base64("Username:") and base64("Password:"), the LOGIN mechanism's prompts.
const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Session state, named after what the session waits for next.
enum State {
    /// EHLO/HELO (also right after STARTTLS, RFC 3207 §4.2).
    Helo,
    /// MAIL (or AUTH, STARTTLS, ...): greeted, no transaction open.
    Mail,
    /// RCPT or DATA: a transaction is open.
    Rcpt(Envelope),
    /// Message content, up to `<CRLF>.<CRLF>`.
    Data {
        env: Envelope,
        reader: Box<Incoming>,
        deadline: Instant,
    },
    /// A response to an AUTH challenge.
    Auth(AuthStep),
}

/// Which AUTH challenge is outstanding.
enum AuthStep {
    /// PLAIN without initial response: waiting for `authzid\0authcid\0passwd`.
    PlainResponse,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(Vec<u8>),
}

/// Whether the session goes on.
enum Flow {
    Continue,
    Close,
}

/// What waiting for a line produced.
enum Input {
    /// A line without its line ending, and its raw length with it.
    Line(Vec<u8>, usize),
    /// A line longer than any limit; it was discarded up to its LF.
    TooLong,
    /// Peer closed or the connection broke.
    Closed,
    /// Nothing arrived within the command timeout.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

/// Resolve when shutdown is requested; never, if nobody can request it anymore.
pub(super) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One client connection.
pub(super) struct Session<S: SmtpStream, B: Backend> {
    /// `None` only while a STARTTLS handshake owns it (or after it failed).
    stream: Option<S>,
    rbuf: Vec<u8>,
    rpos: usize,
    /// Discarding the rest of an over-long line.
    skipping: bool,
    wbuf: Vec<u8>,
    cfg: Arc<SmtpConfig>,
    backend: Arc<B>,
    info: SessionInfo,
    state: State,
    errors: usize,
    shutdown: watch::Receiver<bool>,
}

impl<S: SmtpStream, B: Backend> Session<S, B> {
    /// A session on an accepted (and, for implicit TLS, already encrypted) stream.
    pub(super) fn new(
        stream: S,
        peer: std::net::SocketAddr,
        cfg: Arc<SmtpConfig>,
        backend: Arc<B>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let tls = stream.is_tls();
        Session {
            stream: Some(stream),
            rbuf: Vec::with_capacity(4096),
            rpos: 0,
            skipping: false,
            wbuf: Vec::with_capacity(1024),
            cfg,
            backend,
            info: SessionInfo {
                peer,
                tls,
                helo: None,
                auth_user: None,
            },
            state: State::Helo,
            errors: 0,
            shutdown,
        }
    }

    /// Greet, serve commands until QUIT, error, timeout or shutdown, then close.
    pub(super) async fn run(mut self) {
        info!(tls = self.info.tls, "session start");
        if *self.shutdown.borrow() {
            self.push(Reply::shutting_down());
        } else {
            self.push(Reply::greeting(&self.cfg.hostname));
            loop {
                let flow = match self.state {
                    State::Data { .. } => self.receive_data().await,
                    State::Auth(_) => self.receive_auth().await,
                    _ => self.receive_command().await,
                };
                if let Flow::Close = flow {
                    break;
                }
            }
        }
        self.close().await;
        info!(errors = self.errors, "session end");
    }

    // ---- I/O -----------------------------------------------------------------

    fn push(&mut self, reply: Reply) {
        debug!(reply = %reply, "S:");
        self.wbuf.extend_from_slice(&reply.to_wire());
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let wbuf = &self.wbuf;
        // A client that stops reading must not pin the session forever.
        let res = timeout(self.cfg.command_timeout, async {
            stream.write_all(wbuf).await?;
            stream.flush().await
        })
        .await;
        self.wbuf.clear();
        res.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    async fn close(&mut self) {
        if let Err(e) = self.flush().await {
            debug!(error = %e, "final flush failed");
        }
        if let Some(s) = self.stream.as_mut() {
            let _ = timeout(Duration::from_secs(5), s.shutdown()).await;
        }
    }

    /// Drop consumed input so the buffer does not grow over a long session.
    fn compact(&mut self) {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
    }

    /// Next line, up to the AUTH limit; the caller applies tighter limits.
    /// The whole line must arrive within `command_timeout` (not each read:
    /// a client trickling a byte at a time would hold the session forever).
    async fn read_line(&mut self) -> Input {
        let deadline = Instant::now() + self.cfg.command_timeout;
        loop {
            let buf = &self.rbuf[self.rpos..];
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let raw = i + 1;
                let mut line = buf[..i].to_vec();
                self.rpos += raw;
                if std::mem::replace(&mut self.skipping, false) || raw > MAX_AUTH_LINE {
                    return Input::TooLong;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Input::Line(line, raw);
            }
            if self.skipping || buf.len() >= MAX_AUTH_LINE {
                self.skipping = true;
                self.rpos = self.rbuf.len();
            }
            // No complete command buffered: the client is waiting for our replies.
            if let Err(e) = self.flush().await {
                debug!(error = %e, "write failed");
                return Input::Closed;
            }
            self.compact();
            let Some(stream) = self.stream.as_mut() else {
                return Input::Closed;
            };
            let rbuf = &mut self.rbuf;
            let shutdown = &mut self.shutdown;
            tokio::select! {
                r = timeout_at(deadline, stream.read_buf(rbuf)) => match r {
                    Err(_) => return Input::Timeout,
                    Ok(Ok(0)) => return Input::Closed,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        debug!(error = %e, "read failed");
                        return Input::Closed;
                    }
                },
                _ = wait_shutdown(shutdown) => return Input::Shutdown,
            }
        }
    }

    /// Map the non-line outcomes of [`Self::read_line`]; `None` means "have a line".
    fn input_problem(&mut self, input: &Input) -> Option<Flow> {
        match input {
            Input::Line(..) => None,
            Input::TooLong => Some(self.error(Reply::line_too_long())),
            Input::Closed => {
                debug!("client went away");
                Some(Flow::Close)
            }
            Input::Timeout => {
                info!("command timeout");
                self.push(Reply::timeout());
                Some(Flow::Close)
            }
            Input::Shutdown => {
                self.push(Reply::shutting_down());
                Some(Flow::Close)
            }
        }
    }

    /// Count a bad command; past `max_errors` the client is shown the door.
    fn error(&mut self, reply: Reply) -> Flow {
        self.errors += 1;
        if self.errors > self.cfg.max_errors {
            warn!(errors = self.errors, "too many errors, closing");
            self.push(Reply::too_many_errors());
            Flow::Close
        } else {
            self.push(reply);
            Flow::Continue
        }
    }

    // ---- command state ---------------------------------------------------------

    async fn receive_command(&mut self) -> Flow {
        let input = self.read_line().await;
        if let Some(flow) = self.input_problem(&input) {
            return flow;
        }
        let Input::Line(line, raw) = input else {
            return Flow::Close;
        };
        if *self.shutdown.borrow() {
            self.push(Reply::shutting_down());
            return Flow::Close;
        }
        let auth = command::is_auth(&line);
        if auth {
            debug!("C: AUTH ...");
        } else {
            debug!(line = %String::from_utf8_lossy(&line), "C:");
        }
        if raw > MAX_COMMAND_LINE && !auth {
            return self.error(Reply::line_too_long());
        }
        match command::parse(&line) {
            Ok(cmd) => self.execute(cmd).await,
            Err(reply) => self.error(reply),
        }
    }

    async fn execute(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Ehlo(client) => {
                let reply = Reply::ehlo(&self.cfg.hostname, &client, &self.capabilities());
                self.greeted(client);
                self.push(reply);
            }
            Command::Helo(client) => {
                self.greeted(client);
                self.push(Reply::helo(&self.cfg.hostname));
            }
            Command::Mail {
                from,
                size,
                body_8bit,
            } => return self.mail(from, size, body_8bit).await,
            Command::Rcpt { to } => return self.rcpt(to).await,
            Command::Data => return self.data(),
            Command::Rset => {
                if !matches!(self.state, State::Helo) {
                    self.state = State::Mail;
                }
                self.push(Reply::ok());
            }
            Command::Noop => self.push(Reply::ok()),
            Command::Quit => {
                self.push(Reply::bye());
                return Flow::Close;
            }
            Command::Vrfy => self.push(Reply::vrfy()),
            Command::Help => self.push(Reply::help()),
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial).await,
        }
        Flow::Continue
    }

    /// EHLO/HELO: a new greeting also aborts any transaction (RFC 5321 §4.1.4).
    fn greeted(&mut self, client: String) {
        self.info.helo = Some(client);
        self.state = State::Mail;
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.cfg.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.cfg.tls.is_some() && !self.info.tls {
            caps.push("STARTTLS".to_string());
        }
        // Credentials never travel in clear, so AUTH appears only under TLS.
        if self.cfg.mode == Mode::Submission && self.info.tls {
            caps.push("AUTH PLAIN LOGIN".to_string());
        }
        caps
    }

    async fn mail(&mut self, from: String, size: Option<usize>, body_8bit: bool) -> Flow {
        match self.state {
            State::Helo => return self.error(Reply::need_helo()),
            State::Rcpt(_) => return self.error(Reply::nested_mail()),
            _ => {}
        }
        if self.cfg.mode == Mode::Submission && self.info.auth_user.is_none() {
            return self.error(Reply::auth_required());
        }
        if size.is_some_and(|s| s > self.cfg.max_message_size) {
            self.push(Reply::message_too_big());
            return Flow::Continue;
        }
        match self.backend.mail_from(&self.info, &from).await {
            Ok(()) => {
                self.state = State::Rcpt(Envelope {
                    mail_from: from,
                    rcpt_to: Vec::new(),
                    size_param: size,
                    body_8bit,
                });
                self.push(Reply::mail_ok());
            }
            Err(reply) => {
                info!(from = %from, code = reply.code, "sender refused");
                return self.error(reply);
            }
        }
        Flow::Continue
    }

    async fn rcpt(&mut self, to: String) -> Flow {
        match self.state {
            State::Rcpt(_) => {}
            State::Helo => return self.error(Reply::need_helo()),
            _ => return self.error(Reply::need_mail()),
        }
        let State::Rcpt(env) = &mut self.state else {
            return Flow::Close;
        };
        if env.rcpt_to.len() >= self.cfg.max_recipients {
            self.push(Reply::too_many_recipients());
            return Flow::Continue;
        }
        match self.backend.rcpt_to(&self.info, env, &to).await {
            Ok(()) => {
                env.rcpt_to.push(to);
                self.push(Reply::rcpt_ok());
                Flow::Continue
            }
            Err(reply) => {
                info!(to = %to, code = reply.code, "recipient refused");
                // Thousands of refused recipients in one session are probing, not mail.
                self.error(reply)
            }
        }
    }

    fn data(&mut self) -> Flow {
        match &self.state {
            State::Rcpt(env) if !env.rcpt_to.is_empty() => {}
            State::Rcpt(_) => return self.error(Reply::need_rcpt()),
            State::Helo => return self.error(Reply::need_helo()),
            _ => return self.error(Reply::need_mail()),
        }
        let State::Rcpt(env) = std::mem::replace(&mut self.state, State::Mail) else {
            return Flow::Close;
        };
        self.state = State::Data {
            env,
            reader: Box::new(Incoming::new(&self.cfg)),
            deadline: Instant::now() + self.cfg.data_timeout,
        };
        self.push(Reply::data_start());
        Flow::Continue
    }

    // ---- DATA state --------------------------------------------------------------

    async fn receive_data(&mut self) -> Flow {
        loop {
            let State::Data {
                reader, deadline, ..
            } = &mut self.state
            else {
                return Flow::Continue;
            };
            let deadline = *deadline;
            let (used, outcome) = reader.feed(&self.rbuf[self.rpos..]).await;
            self.rpos += used;
            if let Some(outcome) = outcome {
                return self.finish_data(outcome).await;
            }
            // Whatever is left is in the reader: the 354 must reach the client now.
            if let Err(e) = self.flush().await {
                debug!(error = %e, "write failed");
                return Flow::Close;
            }
            self.compact();
            let Some(stream) = self.stream.as_mut() else {
                return Flow::Close;
            };
            // Each read waits at most command_timeout, the whole phase at most data_timeout.
            let read_deadline = deadline.min(Instant::now() + self.cfg.command_timeout);
            match timeout_at(read_deadline, stream.read_buf(&mut self.rbuf)).await {
                Err(_) => {
                    info!("timeout during DATA");
                    self.push(Reply::timeout());
                    return Flow::Close;
                }
                Ok(Ok(0)) => {
                    debug!("client went away during DATA");
                    return Flow::Close;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "read failed during DATA");
                    return Flow::Close;
                }
            }
        }
    }

    async fn finish_data(&mut self, outcome: DataOutcome) -> Flow {
        let State::Data { env, reader, .. } = std::mem::replace(&mut self.state, State::Mail)
        else {
            return Flow::Close;
        };
        let reply = match outcome {
            DataOutcome::Message(tail) => {
                match reader.finish(tail, self.cfg.message_memory_factor).await {
                    Ok(finished) => {
                        let size = finished.message.len();
                        let reply = self.backend.data(&self.info, &env, finished.message).await;
                        info!(from = %env.mail_from, rcpts = env.rcpt_to.len(), size, code = reply.code, "message");
                        reply
                    }
                    Err(reply) => {
                        info!(from = %env.mail_from, code = reply.code, "message not taken");
                        reply
                    }
                }
            }
            DataOutcome::TooBig => {
                info!(from = %env.mail_from, "message too big");
                Reply::message_too_big()
            }
            DataOutcome::BareLineEnding => {
                warn!(from = %env.mail_from, "bare CR/LF in DATA refused (possible SMTP smuggling)");
                Reply::bare_line_ending()
            }
        };
        self.push(reply);
        match self.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    // ---- STARTTLS ------------------------------------------------------------------

    async fn starttls(&mut self) -> Flow {
        let Some(acceptor) = self.cfg.tls.clone() else {
            return self.error(Reply::not_implemented());
        };
        if self.info.tls {
            return self.error(Reply::already_tls());
        }
        if matches!(self.state, State::Rcpt(_)) {
            return self.error(Reply::bad_sequence(
                "STARTTLS not allowed during a mail transaction",
            ));
        }
        self.push(Reply::starttls_ready());
        if self.flush().await.is_err() {
            return Flow::Close;
        }
        // Bytes pipelined after STARTTLS were sent in clear by someone who may
        // not be the TLS client (CVE-2011-0411): they must never be executed.
        let injected = self.rbuf.len() - self.rpos;
        if injected > 0 {
            warn!(
                bytes = injected,
                "discarding plaintext pipelined after STARTTLS"
            );
        }
        self.rbuf.clear();
        self.rpos = 0;
        self.skipping = false;
        let Some(stream) = self.stream.take() else {
            return Flow::Close;
        };
        match timeout(self.cfg.command_timeout, stream.upgrade(&acceptor)).await {
            Ok(Ok(s)) => self.stream = Some(s),
            Ok(Err(e)) => {
                info!(error = %e, "STARTTLS handshake failed");
                return Flow::Close;
            }
            Err(_) => {
                info!("STARTTLS handshake timed out");
                return Flow::Close;
            }
        }
        // RFC 3207 §4.2: forget everything learnt in clear.
        self.info.tls = true;
        self.info.helo = None;
        self.info.auth_user = None;
        self.state = State::Helo;
        debug!("TLS established");
        Flow::Continue
    }

    // ---- AUTH ----------------------------------------------------------------------

    async fn auth(&mut self, mechanism: Mechanism, initial: Option<String>) -> Flow {
        if self.cfg.mode == Mode::Inbound {
            return self.error(Reply::not_implemented());
        }
        if !self.info.tls {
            return self.error(Reply::encryption_required());
        }
        if self.info.auth_user.is_some() {
            return self.error(Reply::already_authenticated());
        }
        match self.state {
            State::Helo => return self.error(Reply::need_helo()),
            State::Rcpt(_) => {
                return self.error(Reply::bad_sequence(
                    "AUTH not allowed during a mail transaction",
                ))
            }
            _ => {}
        }
        let initial = match initial.as_deref().map(decode_base64) {
            None => None,
            Some(Some(bytes)) => Some(bytes),
            Some(None) => return self.error(Reply::auth_bad_response()),
        };
        match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => self.plain(response).await,
            (Mechanism::Plain, None) => {
                self.state = State::Auth(AuthStep::PlainResponse);
                self.push(Reply::auth_challenge(""));
                Flow::Continue
            }
            (Mechanism::Login, Some(user)) => {
                self.state = State::Auth(AuthStep::LoginPassword(user));
                self.push(Reply::auth_challenge(LOGIN_PASSWORD_PROMPT));
                Flow::Continue
            }
            (Mechanism::Login, None) => {
                self.state = State::Auth(AuthStep::LoginUser);
                self.push(Reply::auth_challenge(LOGIN_USER_PROMPT));
                Flow::Continue
            }
        }
    }

    async fn receive_auth(&mut self) -> Flow {
        let input = self.read_line().await;
        let State::Auth(step) = std::mem::replace(&mut self.state, State::Mail) else {
            return Flow::Close;
        };
        if let Some(flow) = self.input_problem(&input) {
            return flow;
        }
        let Input::Line(line, _) = input else {
            return Flow::Close;
        };
        if line == b"*" {
            self.push(Reply::auth_cancelled());
            return Flow::Continue;
        }
        let Some(decoded) = std::str::from_utf8(&line).ok().and_then(decode_base64) else {
            return self.error(Reply::auth_bad_response());
        };
        match step {
            AuthStep::PlainResponse => self.plain(decoded).await,
            AuthStep::LoginUser => {
                self.state = State::Auth(AuthStep::LoginPassword(decoded));
                self.push(Reply::auth_challenge(LOGIN_PASSWORD_PROMPT));
                Flow::Continue
            }
            AuthStep::LoginPassword(user) => self.check_credentials(&user, &decoded).await,
        }
    }

    /// RFC 4616 message: `authzid NUL authcid NUL passwd`.
    async fn plain(&mut self, response: Vec<u8>) -> Flow {
        let parts: Vec<&[u8]> = response.split(|&b| b == 0).collect();
        let [authzid, authcid, passwd] = parts.as_slice() else {
            return self.error(Reply::auth_bad_response());
        };
        // Acting on behalf of someone else is not something a PEC user may do.
        if !authzid.is_empty() && authzid != authcid {
            return self.error(Reply::auth_failed());
        }
        let (user, pass) = (authcid.to_vec(), passwd.to_vec());
        self.check_credentials(&user, &pass).await
    }

    async fn check_credentials(&mut self, user: &[u8], password: &[u8]) -> Flow {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return self.error(Reply::auth_failed());
        };
        match self.backend.authenticate(&self.info, user, password).await {
            Ok(canonical) => {
                info!(user = %canonical, "authenticated");
                self.info.auth_user = Some(canonical);
                self.state = State::Mail;
                self.push(Reply::auth_ok());
                Flow::Continue
            }
            Err(reply) => {
                warn!(user = %user, code = reply.code, "authentication failed");
                self.error(reply)
            }
        }
    }
}

/// Base64 as used by SASL; `=` alone is the empty response (RFC 4954 §4).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s == "=" {
        return Some(Vec::new());
    }
    if s.is_empty()
        || !s.len().is_multiple_of(4)
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
    {
        return None;
    }
    openssl::base64::decode_block(s).ok()
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn sasl_base64() {
        assert_eq!(decode_base64("="), Some(vec![]));
        assert_eq!(
            decode_base64("AGFsaWNlAHNlY3JldA==").as_deref(),
            Some(&b"\0alice\0secret"[..])
        );
        assert_eq!(decode_base64("YWxpY2U="), Some(b"alice".to_vec()));
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(decode_base64("abc"), None);
        assert_eq!(decode_base64(""), None);
    }
}
