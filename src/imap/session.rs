//! One IMAP connection: TLS (implicit or STARTTLS), literals, login, IDLE,
//! and hand-off of authenticated commands to the [`Engine`].
//!
//! States follow RFC 3501 §3: not authenticated -> authenticated (an
//! `Engine` exists) -> selected (inside the engine) -> logout. Bytes are
//! framed by imap-codec's `Fragmentizer`: it tells us about every literal
//! before its bytes arrive, so synchronising literals over `max_literal` are
//! refused before the client sends them and non-synchronising ones (LITERAL+)
//! are read and dropped, and the session goes on in both cases.

use std::io;
use std::net::IpAddr;

use std::sync::Arc;

use std::time::Duration;

use imap_codec::encode::Encoder;
use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{IString, LiteralMode, NString, Tag, Vec1};
use imap_codec::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, Greeting, Response,
};
use imap_codec::imap_types::IntoStatic;
use imap_codec::{AuthenticateDataCodec, CommandCodec, GreetingCodec, IdleDoneCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::engine::{push, status, Engine, Kind};
use super::{ImapAuth, ImapConfig};

/// Room for the command line around a literal, on top of `max_literal`.
const LINE_SLACK: usize = 64 * 1024;

/// Largest literal accepted before login (credentials, SASL responses):
/// anything bigger could only be someone pinning memory without an account.
const PREAUTH_MAX_LITERAL: usize = 8 * 1024;

/// Largest whole command (line and literals) before login.
const PREAUTH_MAX_MESSAGE: usize = 3 * PREAUTH_MAX_LITERAL;

/// Streamed response chunks in flight between the engine and the socket.
const STREAM_DEPTH: usize = 2;

use crate::tls::Stream as Conn;

/// Tell a connection over a limit to come back later. Over implicit TLS a
/// plaintext BYE would be noise, and a handshake is work we refuse to do:
/// that client just sees the close.
pub async fn refuse(mut tcp: TcpStream, implicit_tls: bool, why: &str) {
    if implicit_tls {
        return;
    }
    let mut out = vec![];
    if let Ok(s) = imap_codec::imap_types::response::Status::bye(None, why) {
        push(&mut out, Response::Status(s));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.write_all(&out)).await;
}

/// What the read loop produced.
enum Next {
    /// A complete message is in the fragmentizer.
    Message,
    /// The message was refused while being read (literal too large); its tag.
    TooBig(Option<Tag<'static>>),
    /// Input that cannot be refused in step (before login): say BYE and close.
    Bye(&'static str),
    /// Connection closed, timed out, or server shutting down.
    End,
}

struct Session<A: ImapAuth> {
    conn: Option<Conn>,
    frag: Fragmentizer,
    cfg: Arc<ImapConfig>,
    auth: Arc<A>,
    peer: IpAddr,
    shutdown: watch::Receiver<bool>,
    tls: bool,
    engine: Option<Engine>,
    too_big: bool,
    /// BAD and failed-login answers so far.
    bad: usize,
}

/// Serve one connection until LOGOUT, EOF, timeout or shutdown.
pub async fn run<A: ImapAuth>(
    tcp: TcpStream,
    peer: IpAddr,
    cfg: Arc<ImapConfig>,
    auth: Arc<A>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let (conn, tls) = if cfg.implicit_tls {
        let s = tokio::time::timeout(Duration::from_secs(30), crate::tls::accept(&cfg.tls, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        (Conn::Tls(Box::new(s)), true)
    } else {
        (Conn::Plain(tcp), false)
    };
    let max = cfg
        .max_literal
        .saturating_add(LINE_SLACK)
        .min(u32::MAX as usize) as u32;
    let mut s = Session {
        conn: Some(conn),
        frag: Fragmentizer::new(max),
        cfg,
        auth,
        peer,
        shutdown,
        tls,
        engine: None,
        too_big: false,
        bad: 0,
    };
    s.main().await
}

impl<A: ImapAuth> Session<A> {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        c.write_all(bytes).await?;
        c.flush().await
    }

    fn capabilities(&self) -> Vec<Capability<'static>> {
        let mut v = vec![Capability::Imap4Rev1];
        if self.engine.is_none() {
            if self.tls {
                v.push(Capability::Auth(AuthMechanism::Plain));
                v.push(Capability::SaslIr);
            } else {
                v.push(Capability::StartTls);
                v.push(Capability::LoginDisabled);
            }
        }
        v.extend([
            Capability::LiteralPlus,
            Capability::Id,
            Capability::Enable,
            Capability::Idle,
            Capability::Namespace,
            Capability::UidPlus,
            Capability::Move,
            Capability::Unselect,
        ]);
        for c in ["SPECIAL-USE", "QUOTA", "QUOTA=RES-STORAGE"] {
            if let Ok(c) = Capability::try_from(c) {
                v.push(c);
            }
        }
        v
    }

    async fn main(&mut self) -> io::Result<()> {
        let caps = Vec1::try_from(self.capabilities())
            .ok()
            .map(Code::Capability);
        let text = format!("{} pecd IMAP4rev1 ready", self.cfg.hostname);
        let greeting = Greeting::ok(caps, &text).map_err(|_| io::Error::other("greeting"))?;
        let g = GreetingCodec::default().encode(&greeting).dump();
        self.write(&g).await?;
        loop {
            match self.next_message().await? {
                Next::End => return self.bye("closing connection").await,
                Next::Bye(why) => return self.bye(why).await,
                Next::TooBig(tag) => {
                    self.bad += 1;
                    self.too_big(tag.as_ref(), "literal too large").await?;
                    if self.too_many_bad() {
                        return self.bye("too many bad commands").await;
                    }
                    continue;
                }
                Next::Message => {}
            }
            match decode_command(&mut self.frag) {
                Decoded::TooLong(tag) => {
                    self.too_big(tag.as_ref(), "command too large").await?;
                    continue;
                }
                Decoded::Command(cmd) => {
                    if !self.handle(cmd).await? {
                        return Ok(());
                    }
                }
                Decoded::Bad(tag) => {
                    self.bad += 1;
                    let mut out = vec![];
                    status(
                        &mut out,
                        tag.as_ref(),
                        Kind::Bad,
                        None,
                        "syntax error in command",
                    );
                    self.write(&out).await?;
                }
            }
            if self.too_many_bad() {
                return self.bye("too many bad commands").await;
            }
        }
    }

    /// Past `max_bad_commands` the client is probing, not working: BYE.
    fn too_many_bad(&self) -> bool {
        if self.bad > self.cfg.max_bad_commands {
            tracing::warn!(peer = %self.peer, bad = self.bad, "imap: too many bad commands, closing");
            return true;
        }
        false
    }

    /// Tagged `BAD [TOOBIG]`: the input was refused, the session goes on.
    async fn too_big(&mut self, tag: Option<&Tag<'static>>, what: &str) -> io::Result<()> {
        let mut out = vec![];
        status(&mut out, tag, Kind::Bad, Some(Code::TooBig), what);
        self.write(&out).await
    }

    async fn bye(&mut self, why: &str) -> io::Result<()> {
        let mut out = vec![];
        if let Ok(s) = imap_codec::imap_types::response::Status::bye(None, why) {
            push(&mut out, Response::Status(s));
        }
        let _ = self.write(&out).await;
        if let Some(c) = self.conn.as_mut() {
            let _ = c.shutdown().await;
        }
        Ok(())
    }

    /// Read until the fragmentizer holds a complete message. Waiting for a
    /// command's first byte is bounded by `idle_timeout`; from there the whole
    /// command by `command_timeout` (`data_timeout` once it announces a
    /// literal), so a client trickling bytes cannot hold the session.
    async fn next_message(&mut self) -> io::Result<Next> {
        let mut buf = vec![0u8; 16 * 1024];
        let mut started: Option<tokio::time::Instant> = None;
        let mut literal = false;
        loop {
            let preauth = self.engine.is_none();
            let mut framing = Framing {
                max_literal: if preauth {
                    PREAUTH_MAX_LITERAL
                } else {
                    self.cfg.max_literal
                },
                preauth,
                too_big: self.too_big,
                progressed: false,
                literal: false,
            };
            let framed = frame(&mut self.frag, &mut framing);
            self.too_big = framing.too_big;
            literal |= framing.literal;
            if framing.progressed && started.is_none() {
                started = Some(tokio::time::Instant::now());
            }
            match framed {
                Framed::Continue => {
                    let mut out = vec![];
                    if let Ok(c) = CommandContinuationRequest::basic(None, "Ready for literal data")
                    {
                        push(&mut out, Response::CommandContinuationRequest(c));
                    }
                    self.write(&out).await?;
                    continue;
                }
                Framed::Message => return Ok(Next::Message),
                Framed::TooBig(tag) => return Ok(Next::TooBig(tag)),
                Framed::Bye(why) => {
                    tracing::info!(peer = %self.peer, why, "imap input refused before login");
                    return Ok(Next::Bye(why));
                }
                Framed::NeedMore => {}
            }
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| io::Error::other("no connection"))?;
            let idle = tokio::time::Instant::now() + self.cfg.idle_timeout;
            let deadline = match started {
                None => idle,
                Some(t) if literal => idle.min(t + self.cfg.data_timeout),
                Some(t) => idle.min(t + self.cfg.command_timeout),
            };
            let n = tokio::select! {
                r = tokio::time::timeout_at(deadline, conn.read(&mut buf)) => match r {
                    Ok(r) => r?,
                    Err(_) => {
                        if started.is_some() {
                            tracing::info!(peer = %self.peer, "imap command timeout");
                        }
                        return Ok(Next::End);
                    }
                },
                _ = wait_shutdown(&mut self.shutdown) => return Ok(Next::End),
            };
            if n == 0 {
                return Ok(Next::End);
            }
            started.get_or_insert_with(tokio::time::Instant::now);
            self.frag.enqueue_bytes(&buf[..n]);
        }
    }

    /// Handle one command; `false` ends the session.
    async fn handle(&mut self, cmd: Command<'static>) -> io::Result<bool> {
        let tag = cmd.tag.clone();
        let mut out = vec![];
        match cmd.body {
            CommandBody::Capability => {
                if let Ok(c) = Vec1::try_from(self.capabilities()) {
                    push(&mut out, Response::Data(Data::Capability(c)));
                }
                status(&mut out, Some(&tag), Kind::Ok, None, "CAPABILITY completed");
            }
            CommandBody::Logout => {
                if let Ok(s) = imap_codec::imap_types::response::Status::bye(None, "logging out") {
                    push(&mut out, Response::Status(s));
                }
                status(&mut out, Some(&tag), Kind::Ok, None, "LOGOUT completed");
                self.write(&out).await?;
                if let Some(c) = self.conn.as_mut() {
                    let _ = c.shutdown().await;
                }
                return Ok(false);
            }
            CommandBody::Noop if self.engine.is_none() => {
                status(&mut out, Some(&tag), Kind::Ok, None, "NOOP completed");
            }
            CommandBody::StartTLS => {
                if self.tls {
                    status(&mut out, Some(&tag), Kind::Bad, None, "TLS already active");
                } else {
                    status(
                        &mut out,
                        Some(&tag),
                        Kind::Ok,
                        None,
                        "begin TLS negotiation now",
                    );
                    self.write(&out).await?;
                    return self.start_tls().await.map(|_| true);
                }
            }
            CommandBody::Id { .. } => {
                let params = vec![
                    (
                        IString::try_from("name").ok(),
                        NString::try_from("pecd").ok(),
                    ),
                    (
                        IString::try_from("vendor").ok(),
                        NString::try_from("pecd").ok(),
                    ),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k?, v?)))
                .collect();
                push(
                    &mut out,
                    Response::Data(Data::Id {
                        parameters: Some(params),
                    }),
                );
                status(&mut out, Some(&tag), Kind::Ok, None, "ID completed");
            }
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).to_string();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).to_string();
                self.login(&mut out, &tag, &user, &pass).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if !self.tls {
                    status(
                        &mut out,
                        Some(&tag),
                        Kind::No,
                        Some(privacy()),
                        "authentication requires TLS",
                    );
                } else if self.engine.is_some() {
                    status(
                        &mut out,
                        Some(&tag),
                        Kind::Bad,
                        None,
                        "already authenticated",
                    );
                } else if mechanism != AuthMechanism::Plain {
                    status(
                        &mut out,
                        Some(&tag),
                        Kind::No,
                        None,
                        "unsupported mechanism",
                    );
                } else {
                    let data = match initial_response {
                        Some(ir) => Some(ir.declassify().to_vec()),
                        None => self.sasl_round().await?,
                    };
                    match data {
                        None => status(
                            &mut out,
                            Some(&tag),
                            Kind::Bad,
                            None,
                            "authentication cancelled",
                        ),
                        Some(d) => {
                            let parts: Vec<&[u8]> = d.split(|&b| b == 0).collect();
                            if parts.len() != 3 || (!parts[0].is_empty() && parts[0] != parts[1]) {
                                status(
                                    &mut out,
                                    Some(&tag),
                                    Kind::No,
                                    None,
                                    "invalid PLAIN response",
                                );
                            } else {
                                let user = String::from_utf8_lossy(parts[1]).to_string();
                                let pass = String::from_utf8_lossy(parts[2]).to_string();
                                self.login(&mut out, &tag, &user, &pass).await;
                            }
                        }
                    }
                }
            }
            _ if self.engine.is_none() => {
                self.bad += 1;
                status(&mut out, Some(&tag), Kind::Bad, None, "log in first");
            }
            CommandBody::Enable { .. } => {
                push(
                    &mut out,
                    Response::Data(Data::Enabled {
                        capabilities: vec![],
                    }),
                );
                status(&mut out, Some(&tag), Kind::Ok, None, "ENABLE completed");
            }
            CommandBody::Idle => return self.idle(&tag).await,
            body => {
                out = self.run_streaming(tag, body).await?;
            }
        }
        self.write(&out).await?;
        Ok(true)
    }

    /// Run engine work on a blocking thread (it is file-system work).
    async fn run_engine<F>(&mut self, f: F) -> io::Result<Vec<u8>>
    where
        F: FnOnce(&mut Engine) -> Vec<u8> + Send + 'static,
    {
        let mut engine = self
            .engine
            .take()
            .ok_or_else(|| io::Error::other("not authenticated"))?;
        let (engine, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut engine);
            (engine, out)
        })
        .await
        .map_err(|e| io::Error::other(format!("engine task failed: {e}")))?;
        self.engine = Some(engine);
        Ok(out)
    }

    /// [`Engine::execute_to`] on a blocking thread, writing what it streams
    /// (FETCH literals) while it works; returns the rest of the output. The
    /// channel is small, so the engine runs only as fast as the client reads.
    async fn run_streaming(
        &mut self,
        tag: Tag<'static>,
        body: CommandBody<'static>,
    ) -> io::Result<Vec<u8>> {
        let mut engine = self
            .engine
            .take()
            .ok_or_else(|| io::Error::other("not authenticated"))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(STREAM_DEPTH);
        let task = tokio::task::spawn_blocking(move || {
            let out = engine.execute_to(&tag, body, &mut |chunk| tx.blocking_send(chunk).is_ok());
            (engine, out)
        });
        let mut written = Ok(());
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = self.write_raw(&chunk).await {
                written = Err(e);
                break;
            }
        }
        // A dropped receiver makes the engine's next send fail: it stops early.
        drop(rx);
        let (engine, out) = task
            .await
            .map_err(|e| io::Error::other(format!("engine task failed: {e}")))?;
        self.engine = Some(engine);
        written?;
        Ok(out)
    }

    /// Write without flushing (the final write of the command flushes).
    async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        c.write_all(bytes).await
    }

    async fn start_tls(&mut self) -> io::Result<()> {
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            return Err(io::Error::other("STARTTLS on a TLS connection"));
        };
        let s = tokio::time::timeout(
            Duration::from_secs(30),
            crate::tls::accept(&self.cfg.tls, tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        self.conn = Some(Conn::Tls(Box::new(s)));
        self.tls = true;
        // Anything pipelined after STARTTLS was sent in clear: drop it (CVE-2011-0411).
        let max = self
            .cfg
            .max_literal
            .saturating_add(LINE_SLACK)
            .min(u32::MAX as usize) as u32;
        self.frag = Fragmentizer::new(max);
        Ok(())
    }

    /// One SASL round: send an empty challenge, read the answer. `None` = cancelled.
    async fn sasl_round(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut out = vec![];
        push(
            &mut out,
            Response::CommandContinuationRequest(CommandContinuationRequest::base64(
                b"".as_slice(),
            )),
        );
        self.write(&out).await?;
        match self.next_message().await? {
            Next::Message => {}
            Next::TooBig(_) => return Ok(None),
            Next::Bye(why) => {
                self.bye(why).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            Next::End => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during AUTHENTICATE",
                ))
            }
        }
        match self.frag.decode_message(&AuthenticateDataCodec::default()) {
            Ok(AuthenticateData::Continue(d)) => Ok(Some(d.declassify().to_vec())),
            _ => Ok(None),
        }
    }

    async fn login(&mut self, out: &mut Vec<u8>, tag: &Tag<'static>, user: &str, pass: &str) {
        if !self.tls {
            status(
                out,
                Some(tag),
                Kind::No,
                Some(privacy()),
                "LOGIN is disabled before STARTTLS",
            );
            return;
        }
        if self.engine.is_some() {
            status(out, Some(tag), Kind::Bad, None, "already authenticated");
            return;
        }
        let throttle = self.cfg.throttle.clone();
        let Some(attempt) = throttle.before_attempt(user, self.peer).await else {
            self.bad += 1;
            status(
                out,
                Some(tag),
                Kind::No,
                Some(unavailable()),
                "too many failed logins, try again later",
            );
            return;
        };
        let res = self.auth.authenticate(user, pass, self.peer).await;
        attempt.finish(res.is_ok()).await;
        let address = match res {
            Ok(a) => a,
            Err(()) => {
                self.bad += 1;
                tracing::info!(peer = %self.peer, "imap login failed");
                status(
                    out,
                    Some(tag),
                    Kind::No,
                    Some(auth_failed()),
                    "invalid credentials",
                );
                return;
            }
        };
        let (boxes, a) = (self.cfg.mailboxes.clone(), address.clone());
        let opened = tokio::task::spawn_blocking(move || boxes.open(&a)).await;
        match opened {
            Ok(Ok(store)) => {
                let mut engine = Engine::new(store);
                engine.quota = self.auth.quota(&address).await;
                self.engine = Some(engine);
                let caps = Vec1::try_from(self.capabilities())
                    .ok()
                    .map(Code::Capability);
                status(out, Some(tag), Kind::Ok, caps, "logged in");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "imap cannot open mailbox");
                status(out, Some(tag), Kind::No, None, "mailbox unavailable");
            }
            Err(_) => status(out, Some(tag), Kind::No, None, "mailbox unavailable"),
        }
    }

    async fn idle(&mut self, tag: &Tag<'static>) -> io::Result<bool> {
        let mut out = vec![];
        if let Ok(c) = CommandContinuationRequest::basic(None, "idling") {
            push(&mut out, Response::CommandContinuationRequest(c));
        }
        self.write(&out).await?;
        let mut tick = tokio::time::interval(self.cfg.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::sleep(self.cfg.idle_timeout);
        tokio::pin!(deadline);
        loop {
            // DONE may already be buffered.
            if let Some(_f) = self.frag.progress() {
                if self.frag.is_message_complete() {
                    let ok = self.frag.decode_message(&IdleDoneCodec::default()).is_ok();
                    let mut out = vec![];
                    if ok {
                        status(&mut out, Some(tag), Kind::Ok, None, "IDLE terminated");
                    } else {
                        status(&mut out, Some(tag), Kind::Bad, None, "expected DONE");
                    }
                    self.write(&out).await?;
                    return Ok(true);
                }
                continue;
            }
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| io::Error::other("no connection"))?;
            tokio::select! {
                r = conn.read(&mut buf) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(false);
                    }
                    self.frag.enqueue_bytes(&buf[..n]);
                }
                _ = tick.tick() => {
                    let upd = self.run_engine(|e| {
                        let mut o = vec![];
                        e.updates(&mut o, true);
                        o
                    }).await?;
                    if !upd.is_empty() {
                        self.write(&upd).await?;
                    }
                }
                _ = &mut deadline => {
                    self.bye("idle timeout").await?;
                    return Ok(false);
                }
                _ = wait_shutdown(&mut self.shutdown) => {
                    self.bye("server shutting down").await?;
                    return Ok(false);
                }
            }
        }
    }
}

/// What the framing made of the bytes buffered so far.
#[derive(Debug, PartialEq)]
pub(crate) enum Framed {
    /// The client must send more bytes.
    NeedMore,
    /// A synchronising literal within the limit: tell the client to send it
    /// (`+ Ready`), then frame again.
    Continue,
    /// A complete message is in the fragmentizer.
    Message,
    /// The message was refused while being read (literal too large); its tag.
    TooBig(Option<Tag<'static>>),
    /// Before login: a command too long, or a large literal the client sends
    /// without waiting; swallowing it would take as long as the client
    /// likes, so the session ends.
    Bye(&'static str),
}

/// Limits and state of framing one message.
#[derive(Debug)]
pub(crate) struct Framing {
    /// Largest literal taken.
    pub max_literal: usize,
    /// Not logged in yet: small commands only ([`PREAUTH_MAX_MESSAGE`]).
    pub preauth: bool,
    /// A poisoned non-synchronising literal, carried until its message ends.
    pub too_big: bool,
    /// Set when bytes of a message were framed (its time starts).
    pub progressed: bool,
    /// Set when the message announced a literal (`data_timeout` applies).
    pub literal: bool,
}

/// The sans-IO part of reading a message, so it can be driven without a
/// socket (the fuzz targets do).
pub(crate) fn frame(frag: &mut Fragmentizer, f: &mut Framing) -> Framed {
    loop {
        let progress = frag.progress();
        f.progressed |= progress.is_some();
        // The fragmentizer keeps a message up to the post-login limit, so
        // before login the smaller one is enforced here, as bytes arrive.
        if f.preauth && frag.message_bytes().len() > PREAUTH_MAX_MESSAGE {
            return Framed::Bye("command too long");
        }
        match progress {
            Some(FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            }) => {
                f.literal = true;
                if length as usize > f.max_literal {
                    match mode {
                        LiteralMode::Sync => {
                            // The client waits for "+": refuse now, it never sends the bytes.
                            let tag = frag.decode_tag().map(|t| t.into_static());
                            frag.skip_message();
                            f.too_big = false;
                            return Framed::TooBig(tag);
                        }
                        LiteralMode::NonSync if f.preauth => {
                            return Framed::Bye("literal too large before login");
                        }
                        LiteralMode::NonSync => {
                            // The bytes are coming anyway: swallow them, then refuse.
                            frag.poison_message();
                            f.too_big = true;
                        }
                    }
                } else if mode == LiteralMode::Sync && !frag.is_message_poisoned() {
                    return Framed::Continue;
                }
            }
            Some(_) => {
                if frag.is_message_complete() {
                    if std::mem::take(&mut f.too_big) {
                        return Framed::TooBig(frag.decode_tag().map(|t| t.into_static()));
                    }
                    return Framed::Message;
                }
            }
            None => return Framed::NeedMore,
        }
    }
}

/// A complete message decoded as a command.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Command(Command<'static>),
    /// Longer than the fragmentizer's limit; the tag, when readable.
    TooLong(Option<Tag<'static>>),
    /// Not a command we parse; the tag, when readable.
    Bad(Option<Tag<'static>>),
}

pub(crate) fn decode_command(frag: &mut Fragmentizer) -> Decoded {
    match frag.decode_message(&CommandCodec::default()) {
        Ok(c) => Decoded::Command(c.into_static()),
        Err(DecodeMessageError::MessageTooLong { .. }) => {
            Decoded::TooLong(frag.decode_tag().map(|t| t.into_static()))
        }
        Err(_) => Decoded::Bad(frag.decode_tag().map(|t| t.into_static())),
    }
}

fn privacy() -> Code<'static> {
    Code::Other(imap_codec::imap_types::response::CodeOther::unvalidated(
        b"PRIVACYREQUIRED".as_slice(),
    ))
}

/// RFC 5530: the password was not checked, try later.
fn unavailable() -> Code<'static> {
    Code::Other(imap_codec::imap_types::response::CodeOther::unvalidated(
        b"UNAVAILABLE".as_slice(),
    ))
}

fn auth_failed() -> Code<'static> {
    Code::Other(imap_codec::imap_types::response::CodeOther::unvalidated(
        b"AUTHENTICATIONFAILED".as_slice(),
    ))
}

/// Resolve when shutdown is requested; a dropped sender means "never".
pub async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
