//! One POP3 connection: AUTHORIZATION (TLS, then USER/PASS or AUTH PLAIN),
//! TRANSACTION on the locked [`Maildrop`], UPDATE at `QUIT` (RFC 1939 §3).
//! A connection that ends any other way (drop, timeout, shutdown) leaves the
//! maildrop untouched.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use super::command::{self, Command, DotStuffer, TopCut, MAX_LINE};
use super::maildrop::{Maildrop, OpenError};
use super::{LoginRefused, MaildropLock, Pop3Auth, Pop3Config};
use crate::tls::Stream as Conn;

/// Bytes read from a message file per step of `RETR`/`TOP`: what one
/// session holds of a message, whatever its size.
const CHUNK: usize = 64 * 1024;

/// Tell a connection over a limit to come back later (not over implicit
/// TLS: a handshake is work we refuse to do, that client sees the close).
pub async fn refuse(mut tcp: TcpStream, implicit_tls: bool, why: &str) {
    if implicit_tls {
        return;
    }
    let line = format!("-ERR [SYS/TEMP] {why}\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.write_all(line.as_bytes())).await;
}

/// What waiting for a line produced.
enum Input {
    /// A line without its line ending.
    Line(Vec<u8>),
    /// Longer than [`MAX_LINE`]; discarded up to its LF.
    TooLong,
    /// Peer closed or the connection broke.
    Closed,
    /// The client was silent too long, or trickled one line too long.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

/// Whether the session goes on.
enum Flow {
    Continue,
    Close,
}

/// Logged in: the locked snapshot.
struct Transaction {
    address: String,
    maildrop: Maildrop,
    _lock: MaildropLock,
}

struct Session<A: Pop3Auth> {
    conn: Option<Conn>,
    rbuf: Vec<u8>,
    rpos: usize,
    skipping: bool,
    cfg: Arc<Pop3Config>,
    auth: Arc<A>,
    peer: IpAddr,
    shutdown: watch::Receiver<bool>,
    /// USER given, waiting for PASS.
    user: Option<String>,
    txn: Option<Transaction>,
    bad: usize,
}

/// Serve one connection until QUIT, EOF, timeout or shutdown.
pub async fn run<A: Pop3Auth>(
    tcp: TcpStream,
    peer: IpAddr,
    cfg: Arc<Pop3Config>,
    auth: Arc<A>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let conn = if cfg.implicit_tls {
        let s = tokio::time::timeout(Duration::from_secs(30), crate::tls::accept(&cfg.tls, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        Conn::Tls(Box::new(s))
    } else {
        Conn::Plain(tcp)
    };
    let mut s = Session {
        conn: Some(conn),
        rbuf: Vec::with_capacity(1024),
        rpos: 0,
        skipping: false,
        cfg,
        auth,
        peer,
        shutdown,
        user: None,
        txn: None,
        bad: 0,
    };
    let r = s.main().await;
    if let Some(c) = s.conn.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.shutdown()).await;
    }
    r
}

impl<A: Pop3Auth> Session<A> {
    fn tls(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::is_tls)
    }

    async fn main(&mut self) -> io::Result<()> {
        if *self.shutdown.borrow() {
            return self.send("-ERR [SYS/TEMP] server shutting down").await;
        }
        let greeting = format!("+OK {} pecd POP3 ready", self.cfg.hostname);
        self.send(&greeting).await?;
        loop {
            let line = match self.read_line().await {
                Input::Line(l) => l,
                Input::TooLong => {
                    if let Flow::Close = self.bad_command("line too long").await? {
                        return Ok(());
                    }
                    continue;
                }
                Input::Closed => return Ok(()),
                Input::Timeout => return self.send("-ERR autologout: timed out").await,
                Input::Shutdown => return self.send("-ERR [SYS/TEMP] server shutting down").await,
            };
            if command::is_secret(&line) {
                tracing::debug!(peer = %self.peer, "pop3 C: (credentials)");
            } else {
                tracing::debug!(peer = %self.peer, line = %String::from_utf8_lossy(&line), "pop3 C:");
            }
            let flow = match command::parse(&line) {
                Ok(cmd) => self.execute(cmd).await?,
                Err(command::Bad(why)) => self.bad_command(why).await?,
            };
            if let Flow::Close = flow {
                return Ok(());
            }
        }
    }

    /// Answer `-ERR why` and count it; past `max_bad_commands` the session ends.
    async fn bad_command(&mut self, why: &str) -> io::Result<Flow> {
        self.bad += 1;
        if self.bad > self.cfg.max_bad_commands {
            tracing::warn!(peer = %self.peer, bad = self.bad, "pop3: too many bad commands, closing");
            self.send("-ERR too many bad commands, closing connection")
                .await?;
            return Ok(Flow::Close);
        }
        self.send(&format!("-ERR {why}")).await?;
        Ok(Flow::Continue)
    }

    async fn execute(&mut self, cmd: Command) -> io::Result<Flow> {
        match cmd {
            Command::Capa => self.capa().await?,
            Command::Quit => return self.quit().await,
            Command::Stls => {
                if self.tls() {
                    self.send("-ERR already using TLS").await?;
                } else if self.txn.is_some() {
                    self.send("-ERR STLS is only allowed before login").await?;
                } else {
                    self.send("+OK begin TLS negotiation").await?;
                    self.start_tls().await?;
                }
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if self.txn.is_some() => {
                return self.bad_command("already logged in").await;
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } if !self.tls() => {
                self.send("-ERR TLS is required before authentication: use STLS first")
                    .await?;
            }
            Command::User(u) => {
                self.user = Some(u);
                self.send("+OK send PASS").await?;
            }
            Command::Pass(p) => {
                let Some(u) = self.user.take() else {
                    return self.bad_command("USER first").await;
                };
                return self.login(&u, &p).await;
            }
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial).await,
            _ if self.txn.is_none() => return self.bad_command("log in first").await,
            cmd => return self.transaction(cmd).await,
        }
        Ok(Flow::Continue)
    }

    async fn capa(&mut self) -> io::Result<()> {
        let mut caps = vec![
            "+OK capability list follows",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ];
        if self.txn.is_none() {
            if self.tls() {
                caps.extend(["USER", "SASL PLAIN"]);
            } else {
                caps.push("STLS");
            }
        }
        caps.extend(["IMPLEMENTATION pecd", "."]);
        self.send(&caps.join("\r\n")).await
    }

    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> io::Result<Flow> {
        let Some(mech) = mechanism else {
            // The pre-CAPA way of asking for the mechanisms (RFC 1734 clients).
            self.send("+OK\r\nPLAIN\r\n.").await?;
            return Ok(Flow::Continue);
        };
        if mech != "PLAIN" {
            return self.bad_command("unsupported mechanism").await;
        }
        let response = match initial {
            Some(ir) => ir,
            None => {
                self.send("+ ").await?;
                match self.read_line().await {
                    Input::Line(l) => String::from_utf8_lossy(&l).into_owned(),
                    Input::TooLong => return self.bad_command("response too long").await,
                    Input::Closed => return Ok(Flow::Close),
                    Input::Timeout | Input::Shutdown => {
                        self.send("-ERR [SYS/TEMP] closing").await?;
                        return Ok(Flow::Close);
                    }
                }
            }
        };
        if response == "*" {
            self.send("-ERR authentication cancelled").await?;
            return Ok(Flow::Continue);
        }
        match command::sasl_plain(&response) {
            Ok((user, pass)) => self.login(&user, &pass).await,
            Err(command::Bad(why)) => self.bad_command(why).await,
        }
    }

    async fn login(&mut self, user: &str, pass: &str) -> io::Result<Flow> {
        let address = match self.auth.login(user, pass, self.peer).await {
            Ok(a) => a,
            Err(LoginRefused::Invalid) => {
                return self.bad_command("[AUTH] invalid credentials").await
            }
            Err(LoginRefused::Throttled) => {
                return self
                    .bad_command("[SYS/TEMP] too many failed logins, try again later")
                    .await
            }
        };
        let Some(lock) = self.cfg.locks.try_lock(&address) else {
            self.send("-ERR [IN-USE] maildrop already in use by another POP3 session")
                .await?;
            return Ok(Flow::Continue);
        };
        let (boxes, a) = (self.cfg.mailboxes.clone(), address.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let store = boxes
                .open(&a)
                .map_err(|e| io::Error::other(e.to_string()))?;
            Maildrop::open(&store)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        match opened {
            Ok(maildrop) => {
                let (n, size) = maildrop.stat();
                tracing::info!(user = %address, peer = %self.peer, messages = n, "pop3 maildrop locked");
                self.txn = Some(Transaction {
                    address,
                    maildrop,
                    _lock: lock,
                });
                self.send(&format!("+OK maildrop has {n} messages ({size} octets)"))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(user = %address, error = %e, "pop3 cannot open maildrop");
                self.send("-ERR [SYS/TEMP] mailbox unavailable, try again later")
                    .await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn transaction(&mut self, cmd: Command) -> io::Result<Flow> {
        match cmd {
            Command::Retr(n) => return self.send_message(n, None).await,
            Command::Top(n, lines) => return self.send_message(n, Some(lines)).await,
            Command::Dele(n) => {
                let reply = match self.blocking(move |m| m.dele(n)).await? {
                    Ok(()) => format!("+OK message {n} deleted"),
                    Err(OpenError::Refused(r)) => format!("-ERR {}", r.text()),
                    Err(OpenError::Io(e)) => {
                        tracing::warn!(peer = %self.peer, error = %e, "pop3 DELE failed");
                        "-ERR [SYS/TEMP] cannot reach the message".into()
                    }
                };
                self.send(&reply).await?;
                return Ok(Flow::Continue);
            }
            _ => {}
        }
        let Some(t) = self.txn.as_mut() else {
            return Ok(Flow::Close);
        };
        let reply = match cmd {
            Command::Stat => {
                let (n, size) = t.maildrop.stat();
                format!("+OK {n} {size}")
            }
            Command::Noop => "+OK".into(),
            Command::Rset => {
                t.maildrop.rset();
                let (n, size) = t.maildrop.stat();
                format!("+OK maildrop has {n} messages ({size} octets)")
            }
            Command::List(Some(n)) => match t.maildrop.get(n) {
                Ok(e) => format!("+OK {n} {}", e.size),
                Err(r) => format!("-ERR {}", r.text()),
            },
            Command::Uidl(Some(n)) => match t.maildrop.get(n) {
                Ok(e) => format!("+OK {n} {}", t.maildrop.uidl(e)),
                Err(r) => format!("-ERR {}", r.text()),
            },
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(None));
                let mut out = String::from("+OK listing follows\r\n");
                for (n, e) in t.maildrop.live() {
                    if uidl {
                        out.push_str(&format!("{n} {}\r\n", t.maildrop.uidl(e)));
                    } else {
                        out.push_str(&format!("{n} {}\r\n", e.size));
                    }
                }
                out.push('.');
                out
            }
            _ => return self.bad_command("command not valid in this state").await,
        };
        self.send(&reply).await?;
        Ok(Flow::Continue)
    }

    /// `RETR` (`top` = None) or `TOP`: the stored bytes, dot-stuffed, read
    /// and written [`CHUNK`] by [`CHUNK`]; the whole response within `data_timeout`.
    async fn send_message(&mut self, n: usize, top: Option<usize>) -> io::Result<Flow> {
        let Some(t) = self.txn.as_ref() else {
            return Ok(Flow::Close);
        };
        let size = t.maildrop.get(n).map(|e| e.size).unwrap_or(0);
        let file = match self.blocking(move |m| m.open_message(n)).await? {
            Ok(f) => f,
            Err(OpenError::Refused(r)) => {
                self.send(&format!("-ERR {}", r.text())).await?;
                return Ok(Flow::Continue);
            }
            Err(OpenError::Io(e)) => {
                tracing::warn!(peer = %self.peer, error = %e, "pop3 cannot open message");
                self.send("-ERR [SYS/TEMP] cannot read the message").await?;
                return Ok(Flow::Continue);
            }
        };
        let head = match top {
            None => format!("+OK {size} octets"),
            Some(_) => "+OK top of message follows".into(),
        };
        self.send(&head).await?;
        let deadline = Instant::now() + self.cfg.data_timeout;
        let mut file = Some(file);
        let mut stuffer = DotStuffer::new();
        let mut cut = top.map(TopCut::new);
        let mut buf = vec![0u8; CHUNK];
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        loop {
            // The mailbox streams its bytes on a blocking thread, a chunk at
            // a time (what tokio's own files do).
            let mut f = file.take().ok_or(io::ErrorKind::BrokenPipe)?;
            let (f, b, got) = tokio::task::spawn_blocking(move || {
                let got = std::io::Read::read(&mut f, &mut buf);
                (f, buf, got)
            })
            .await
            .map_err(io::Error::other)?;
            let got = got?;
            file = Some(f);
            buf = b;
            if got == 0 {
                break;
            }
            let chunk = match cut.as_mut() {
                Some(c) => c.take(&buf[..got]),
                None => &buf[..got],
            };
            out.clear();
            stuffer.push(chunk, &mut out);
            self.write_by(&out, deadline).await?;
            if cut.as_ref().is_some_and(TopCut::done) {
                break;
            }
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write_by(&out, deadline).await?;
        self.flush_by(deadline).await?;
        if top.is_none() {
            if let Some(t) = self.txn.as_mut() {
                t.maildrop.mark_retrieved(n);
            }
        }
        Ok(Flow::Continue)
    }

    /// Run file-system work on the maildrop on a blocking thread.
    async fn blocking<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Maildrop) -> R + Send + 'static,
    ) -> io::Result<R> {
        let mut t = self.txn.take().ok_or(io::ErrorKind::NotConnected)?;
        let (t, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut t.maildrop);
            (t, r)
        })
        .await
        .map_err(io::Error::other)?;
        self.txn = Some(t);
        Ok(r)
    }

    async fn quit(&mut self) -> io::Result<Flow> {
        let Some(t) = self.txn.take() else {
            self.send("+OK bye").await?;
            return Ok(Flow::Close);
        };
        let address = t.address.clone();
        let done = tokio::task::spawn_blocking(move || {
            let r = t.maildrop.update();
            // The lock goes only once the update is done.
            drop(t._lock);
            r
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r);
        match done {
            Ok(u) => {
                tracing::info!(user = %address, peer = %self.peer, removed = u.removed, left = u.left, "pop3 update");
                let msg = format!("+OK bye ({} messages deleted, {} left)", u.removed, u.left);
                self.send(&msg).await?;
            }
            Err(e) => {
                tracing::warn!(user = %address, error = %e, "pop3 update failed");
                self.send("-ERR [SYS/TEMP] some deleted messages were not removed")
                    .await?;
            }
        }
        Ok(Flow::Close)
    }

    async fn start_tls(&mut self) -> io::Result<()> {
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            return Err(io::Error::other("STLS on a TLS connection"));
        };
        let s = tokio::time::timeout(
            Duration::from_secs(30),
            crate::tls::accept(&self.cfg.tls, tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        self.conn = Some(Conn::Tls(Box::new(s)));
        // Anything pipelined after STLS came in clear: drop it (CVE-2011-0411).
        self.rbuf.clear();
        self.rpos = 0;
        self.skipping = false;
        self.user = None;
        Ok(())
    }

    // ---- I/O -------------------------------------------------------------------

    /// One response (CRLF added), written and flushed.
    async fn send(&mut self, text: &str) -> io::Result<()> {
        let deadline = Instant::now() + self.cfg.command_timeout;
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.write_by(&line, deadline).await?;
        self.flush_by(deadline).await
    }

    /// Write everything by `deadline`: a client that stops reading must not
    /// pin the session.
    async fn write_by(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let c = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        timeout_at(deadline, c.write_all(bytes))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    async fn flush_by(&mut self, deadline: Instant) -> io::Result<()> {
        let c = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        timeout_at(deadline, c.flush())
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Next line. Between commands the client may be silent for
    /// `idle_timeout`; once a line has begun it must end within
    /// `command_timeout` (a byte a minute would hold the session forever).
    async fn read_line(&mut self) -> Input {
        let idle_deadline = Instant::now() + self.cfg.idle_timeout;
        let mut line_deadline = None;
        loop {
            let buf = &self.rbuf[self.rpos..];
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let mut line = buf[..i].to_vec();
                self.rpos += i + 1;
                if std::mem::replace(&mut self.skipping, false) || i + 1 > MAX_LINE {
                    return Input::TooLong;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Input::Line(line);
            }
            if self.skipping || buf.len() >= MAX_LINE {
                self.skipping = true;
                self.rpos = self.rbuf.len();
            }
            if self.rpos > 0 {
                self.rbuf.drain(..self.rpos);
                self.rpos = 0;
            }
            let pending = !self.rbuf.is_empty() || self.skipping;
            if pending && line_deadline.is_none() {
                line_deadline = Some(Instant::now() + self.cfg.command_timeout);
            }
            let deadline = line_deadline.unwrap_or(idle_deadline);
            let Some(conn) = self.conn.as_mut() else {
                return Input::Closed;
            };
            let rbuf = &mut self.rbuf;
            let before = rbuf.len();
            tokio::select! {
                r = timeout_at(deadline, conn.read_buf(rbuf)) => match r {
                    Err(_) => return Input::Timeout,
                    Ok(Ok(0)) => return Input::Closed,
                    Ok(Ok(_)) => {
                        if line_deadline.is_none() && rbuf.len() > before {
                            line_deadline = Some(Instant::now() + self.cfg.command_timeout);
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "pop3 read failed");
                        return Input::Closed;
                    }
                },
                _ = crate::imap::session::wait_shutdown(&mut self.shutdown) => return Input::Shutdown,
            }
        }
    }
}
