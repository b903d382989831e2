//! The settings a listener and the relay take from the configuration, built
//! the same way at start and at each reload.

use std::time::Duration;

use super::submission;
use crate::config::Config;
use crate::relay::Relay;

/// The outbound SMTP client `[queue]` and `[trust] ca` describe.
pub(super) fn new_relay(cfg: &Config, roots: Vec<Vec<u8>>) -> Relay {
    Relay::new(
        &cfg.provider.hostname,
        roots,
        cfg.duration(&cfg.queue.relay_timeout, Duration::from_secs(300)),
        cfg.queue.workers as u32,
        cfg.queue.max_connections_per_peer,
    )
}

/// An SMTP listener's settings from `cfg` and `tls`, keeping what belongs to
/// the listener rather than to the configuration (its mode, gauge, memory
/// budget and spool) from `base`: at start and at each reload.
pub(super) fn smtp_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::smtp::SmtpConfig,
) -> crate::smtp::SmtpConfig {
    let mut c = submission::smtp_config(cfg, tls, base.implicit_tls, base.mode);
    c.connections = base.connections.clone();
    c.memory = base.memory.clone();
    c.spool_threshold = base.spool_threshold;
    c.spool_dir = base.spool_dir.clone();
    c.message_memory_factor = base.message_memory_factor;
    c.memory_wait = base.memory_wait;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}

/// The IMAP counterpart of [`smtp_listener`].
pub(super) fn imap_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::imap::ImapConfig,
) -> crate::imap::ImapConfig {
    let mut c = base.clone();
    c.tls = tls;
    c.max_literal = cfg.max_message_size();
    let limits = &cfg.limits;
    c.max_connections_per_ip = limits.max_connections_per_ip;
    c.command_timeout = cfg.duration(&limits.command_timeout, base.command_timeout);
    c.data_timeout = cfg.duration(&limits.data_timeout, base.data_timeout);
    c.max_bad_commands = limits.max_bad_commands;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}

/// A POP3 listener's settings from `cfg`, the rest kept from `base`.
pub(super) fn pop3_listener(
    cfg: &Config,
    tls: crate::tls::Acceptor,
    base: &crate::pop3::Pop3Config,
) -> crate::pop3::Pop3Config {
    let mut c = base.clone();
    c.tls = tls;
    let limits = &cfg.limits;
    c.max_connections = limits.max_connections;
    c.max_connections_per_ip = limits.max_connections_per_ip;
    c.command_timeout = cfg.duration(&limits.command_timeout, base.command_timeout);
    c.data_timeout = cfg.duration(&limits.data_timeout, base.data_timeout);
    c.max_bad_commands = limits.max_bad_commands;
    c.proxy_protocol = cfg.listen.proxy_protocol;
    c
}
