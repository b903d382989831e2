//! Command line (a contract: scripts rely on these names).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// pecd: a complete PEC (Posta Elettronica Certificata) provider.
#[derive(Debug, Parser)]
#[command(name = "pecd", version, about)]
pub struct Cli {
    /// Configuration file [default: $PECD_CONFIG, else ./config/pecd.toml, else /etc/pecd/pecd.toml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the provider daemon.
    Serve,
    /// Validate the configuration and print every problem with its key.
    CheckConfig,
    /// Manage users (mailbox owners).
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens of a mailbox (`Authorization: Bearer` on /api/v1).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print PEC log events, oldest first.
    Log(LogArgs),
    /// Write a ready-to-run provider into DIR.
    Init(InitArgs),
    /// Classify and verify a message file offline.
    Verify(VerifyArgs),
    /// Provider index tools.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Inspect and steer the work queue (works while the daemon runs).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Infected messages kept for 30 months (works while the daemon runs).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The nodes sharing this provider's store (works while they run).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Start two providers on loopback and show a PEC travelling between them.
    Demo,
    /// End-to-end throughput benchmark on loopback.
    Bench(BenchArgs),
    /// Copy the data directory consistently into DEST while the daemon runs.
    Backup {
        /// New or empty directory to write the backup into.
        dest: PathBuf,
    },
    /// Put a backup back into the (empty) data directory of the config.
    Restore {
        /// Directory written by `pecd backup`.
        src: PathBuf,
    },
}

/// `pecd user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user and create the mailbox.
    Add {
        /// Address, e.g. alice@pec.example.it.
        address: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Mailbox quota, e.g. `2GB`, or `none` (default: `[mailbox] default_quota`).
        #[arg(long)]
        quota: Option<String>,
    },
    /// Set a user's mailbox quota: a size such as `2GB`, or `none`.
    Quota {
        /// Address.
        address: String,
        /// `2GB`, `500MB`, … or `none`.
        size: String,
    },
    /// Change a user's password.
    Passwd {
        /// Address.
        address: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user (the mailbox is kept).
    Del {
        /// Address.
        address: String,
    },
    /// List users with their mailbox usage and quota.
    List,
    /// The web login's second factor (RFC 6238 TOTP).
    Totp {
        /// `enable` (prints the otpauth:// URI) or `disable`.
        #[command(subcommand)]
        action: TotpAction,
    },
}

/// `pecd token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a mailbox; prints it (shown this once: only a
    /// hash is kept).
    Create {
        /// The mailbox it acts for, e.g. alice@pec.example.it.
        address: String,
        /// A label, e.g. the integration that will use it.
        #[arg(long)]
        name: String,
        /// What it may do: `send`, `read` or both, comma-separated.
        #[arg(long, default_value = "send,read", value_name = "SCOPES")]
        scope: String,
    },
    /// List tokens (all, or one mailbox's) with their scopes and last use.
    List {
        /// Only this mailbox's.
        address: Option<String>,
    },
    /// Revoke a token: refused from its next request on.
    Revoke {
        /// The token's id (`token list`).
        id: String,
    },
}

/// `pecd user totp …`
#[derive(Debug, Subcommand)]
pub enum TotpAction {
    /// Make a fresh secret and require its code at web login; prints the
    /// `otpauth://` URI (SHA-1, 6 digits, 30 s) for an authenticator app.
    Enable {
        /// Address.
        address: String,
    },
    /// Stop asking for the code.
    Disable {
        /// Address.
        address: String,
    },
}

/// `pecd log …`
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogArgs {
    /// Check the log's integrity instead of printing it.
    #[command(subcommand)]
    pub action: Option<LogAction>,
    /// Only events of this identificativo.
    #[arg(long = "id")]
    pub id: Option<String>,
    /// Only events of this original Message-ID.
    #[arg(long)]
    pub msgid: Option<String>,
    /// Only events whose sender or recipients mention ADDR.
    #[arg(long)]
    pub address: Option<String>,
    /// Only events of this kind (`accettazione`, `virus`, …); repeatable:
    /// any of them.
    #[arg(long = "event", value_name = "KIND")]
    pub events: Vec<String>,
    /// Only events from this day or time on (Italian time): `2026-12-07`,
    /// `07/12/2026`, `2026-12-07T22:19`, `2026-12-07 22:19:40`.
    #[arg(long, value_name = "WHEN")]
    pub from: Option<String>,
    /// Only events up to the end of this day, minute or second (Italian
    /// time; the forms of `--from`).
    #[arg(long, value_name = "WHEN")]
    pub to: Option<String>,
    /// One JSON object per line (`time`: ISO 8601 with the Italian offset;
    /// `ts`: Unix milliseconds).
    #[arg(long)]
    pub json: bool,
}

/// `pecd log verify …`
#[derive(Debug, Subcommand)]
pub enum LogAction {
    /// Check the hash chain, every seal's signature and every time stamp
    /// token; print the first row or day that does not match (exit 1).
    Verify(LogVerifyArgs),
    /// Write one address's rows of the sealed days, with what proves them
    /// (the other rows' digests, the seals), signed by the provider.
    Export(LogExportArgs),
}

/// `pecd log export --address A [--from DATE] [--to DATE] OUT`
#[derive(Debug, clap::Args)]
pub struct LogExportArgs {
    /// The address whose rows (as sender or recipient) are extracted.
    #[arg(long)]
    pub address: String,
    /// First day (YYYY-MM-DD, Europe/Rome) [default: the first sealed day].
    #[arg(long)]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, Europe/Rome) [default: the last sealed day].
    #[arg(long)]
    pub to: Option<String>,
    /// New or empty directory to write the extract into.
    pub out: PathBuf,
}

/// `pecd log verify [--from DATE] [--to DATE] [--allow-unstamped]`
#[derive(Debug, clap::Args)]
pub struct LogVerifyArgs {
    /// First day to check (YYYY-MM-DD, Europe/Rome) [default: the first row].
    #[arg(long)]
    pub from: Option<String>,
    /// Last day to check (YYYY-MM-DD, Europe/Rome) [default: the last row].
    #[arg(long)]
    pub to: Option<String>,
    /// Check an extract written by `pecd log export` instead, offline (no
    /// database; the configuration gives the trusted roots).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["from", "to"])]
    pub extract: Option<PathBuf>,
    /// Accept sealed days without a time stamp (a development provider
    /// with `[log] tsa_url = "none"`): they are listed as notes, not failures.
    #[arg(long)]
    pub allow_unstamped: bool,
}

/// `pecd init …`
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Folder to create.
    pub dir: PathBuf,
    /// The provider's certified domain.
    #[arg(long)]
    pub domain: String,
    /// Descriptive provider name.
    #[arg(long)]
    pub name: Option<String>,
    /// A development provider: loopback ports free at the time (printed)
    /// and no MX lookups, instead of the production ports.
    #[arg(long)]
    pub dev: bool,
    /// With `--dev`: the nine listeners on ports N to N+8 (submission,
    /// submissions, inbound, imap, imaps, pop3, pop3s, admin, web) instead
    /// of free ones picked by the system.
    #[arg(long, value_name = "N", requires = "dev")]
    pub port_base: Option<u16>,
}

/// `pecd verify …`
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Message file (.eml).
    pub file: PathBuf,
    /// Provider index to check the signer against (default: the
    /// configuration's `[trust] index`).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Trusted root certificate (PEM); repeatable (default: the
    /// configuration's `[trust] ca`). With neither, the signer is not
    /// verified and the exit status is 3.
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Verify the first inner part (a PEC wrapped by a mailing list or forwarder).
    #[arg(long)]
    pub inner: bool,
    /// Check the signer certificate for revocation: off, crl, ocsp or
    /// ocsp+crl (asks the responders and distribution points the
    /// certificate names; needs --ca).
    /// Default: the configuration's `[trust] revocation`, else off.
    #[arg(long)]
    pub revocation: Option<String>,
    /// A CRL file (PEM or DER) consulted before the distribution points; repeatable.
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// Accept a signature whose revocation status no source gives.
    #[arg(long)]
    pub soft_fail: bool,
}

/// `pecd index …`
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Print the TOML equivalent of an LDIF provider index.
    ImportLdif {
        /// LDIF file.
        file: PathBuf,
    },
}

/// `pecd quarantine …`
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined messages, oldest first.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one quarantined message: its record, then its bytes.
    Show {
        /// Row id from `list`, or the identificativo.
        id: String,
    },
}

/// `pecd cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every node seen in the store: up, stopped or silent (no heartbeat
    /// for a whole `[cluster] lease`), its last heartbeat and the claims
    /// it holds.
    Status {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// `pecd queue …`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List pending and held work (and say how many jobs failed).
    List {
        /// Only the jobs that failed for good, with their last error.
        #[arg(long, conflicts_with = "all")]
        failed: bool,
        /// Every job the queue holds: pending, held, failed, and the
        /// finished ones kept a week.
        #[arg(long)]
        all: bool,
        /// One JSON object per line (times as Unix milliseconds and as ISO
        /// 8601 with the Italian offset).
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: crate::store::queue::JobId,
        /// Print JSON (times as Unix milliseconds and as ISO 8601 with the
        /// Italian offset).
        #[arg(long)]
        json: bool,
    },
    /// Run a job now: a pending or held one, or a failed one again.
    Retry {
        /// Job id.
        id: Option<crate::store::queue::JobId>,
        /// Every pending job.
        #[arg(long, conflicts_with_all = ["id", "failed"])]
        all: bool,
        /// Every failed job whose message is still kept (a week).
        #[arg(long, conflicts_with = "id")]
        failed: bool,
    },
    /// Cancel a job; the sender gets a non-delivery notice.
    Cancel {
        /// Job id.
        id: crate::store::queue::JobId,
    },
}

/// `pecd bench …`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Messages to send.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Concurrent submission sessions.
    #[arg(long, default_value_t = 20)]
    pub concurrency: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub recipients: usize,
    /// Offered load, open loop: messages per second, evenly spaced, each
    /// leaving at its time on whichever session is free (0: as fast as the
    /// sessions go); `half`: a saturated run first, then half its PEC/s.
    #[arg(long, default_value = "0", value_parser = parse_rate, value_name = "R|half")]
    pub rate: Rate,
    /// Stop the recipients' provider first and measure memory with every
    /// message queued for it (no delivery is awaited).
    #[arg(long)]
    pub dead_peer: bool,
    /// `[queue] workers` of both providers (default: the configuration's).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Scan every message at both providers with this clamd
    /// (`unix:/run/clamav/clamd.ctl` or `tcp:127.0.0.1:3310`), as
    /// `[antivirus] clamd` does, to measure what scanning costs.
    #[arg(long, value_name = "ADDRESS")]
    pub clamd: Option<String>,
    /// Both providers sign with this key of a PKCS#11 token (RFC 7512 URI,
    /// PIN from `PECD_PKCS11_PIN`), each under a lab certificate for it.
    #[arg(long, value_name = "URI", requires = "pkcs11_module")]
    pub pkcs11_key: Option<String>,
    /// The token's PKCS#11 module, with `--pkcs11-key`.
    #[arg(long, value_name = "PATH", requires = "pkcs11_key")]
    pub pkcs11_module: Option<std::path::PathBuf>,
    /// Measure the webmail instead: the first page of an INBOX holding
    /// `--messages` messages, 100 times over HTTPS (issue 11: 10,000).
    #[arg(long, conflicts_with_all = ["dead_peer", "rate", "clamd"])]
    pub webmail: bool,
    /// Where both lab providers keep their rows: `sqlite` (the embedded
    /// default) or `postgresql` (a throwaway PostgreSQL cluster on a Unix
    /// socket, fsync on, one database per provider; needs Debian's
    /// `postgresql` package, and runs initdb as the `postgres` user when
    /// pecd runs as root).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgresql"], conflicts_with = "webmail")]
    pub store: String,
    /// Run a stock Postfix (`smtp-source` -> `postfix` -> `smtp-sink`, 2 KiB
    /// by default, no TLS) and pecd alternately, `--runs` times each with the
    /// same messages, size and sessions; print both and their ratio.
    #[arg(long, conflicts_with_all = [
        "webmail", "dead_peer", "rate", "recipients", "clamd", "pkcs11_key",
    ])]
    pub against_postfix: bool,
    /// With `--against-postfix`: runs of each.
    #[arg(long, default_value_t = 3, requires = "against_postfix")]
    pub runs: usize,
    /// Seconds to wait between two runs (`--against-postfix`, `--rate
    /// half`): see "Spacing the runs" in docs/performance.md.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub pause: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pecd bench --rate`: the offered load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Messages per second (0: unpaced, as fast as the sessions go).
    PerSecond(f64),
    /// Half of the PEC/s of a saturated run made first.
    HalfOfSaturated,
}

/// A `--rate` that is neither a number of messages per second nor `half`.
#[derive(Debug)]
pub struct BadRate(String);

impl std::fmt::Display for BadRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: give messages per second (a number, 0 for unpaced) or `half`",
            self.0
        )
    }
}

impl std::error::Error for BadRate {}

/// `--rate`: a number of messages per second (0 or more), or `half`.
fn parse_rate(s: &str) -> Result<Rate, BadRate> {
    if s.eq_ignore_ascii_case("half") {
        return Ok(Rate::HalfOfSaturated);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(BadRate(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_a_number_of_messages_per_second_or_half() {
        assert_eq!(parse_rate("half").unwrap(), Rate::HalfOfSaturated);
        assert_eq!(parse_rate("120").unwrap(), Rate::PerSecond(120.0));
        assert_eq!(parse_rate("0").unwrap(), Rate::PerSecond(0.0));
        for bad in ["-1", "fast", "NaN", "inf", ""] {
            let e = parse_rate(bad).unwrap_err().to_string();
            assert!(e.contains("`half`"), "{bad}: {e}");
        }
    }
}
