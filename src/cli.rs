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
}

/// `pecd log …`
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Only events of this identificativo.
    #[arg(long = "id")]
    pub id: Option<String>,
    /// Only events of this original Message-ID.
    #[arg(long)]
    pub msgid: Option<String>,
    /// Only events whose sender or recipients mention ADDR.
    #[arg(long)]
    pub address: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
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
    /// A development provider: high loopback ports (2587, 2465, 2525, 2143,
    /// 2993) and no MX lookups, instead of the production ports.
    #[arg(long)]
    pub dev: bool,
}

/// `pecd verify …`
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Message file (.eml).
    pub file: PathBuf,
    /// Provider index to check the signer against.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Trusted root certificate (PEM); repeatable. Without it only integrity is checked.
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Verify the first inner part (a PEC wrapped by a mailing list or forwarder).
    #[arg(long)]
    pub inner: bool,
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

/// `pecd queue …`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List pending work.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one job.
    Show {
        /// Job id.
        id: crate::store::queue::JobId,
        /// Print JSON (times as unix milliseconds and as RFC 3339).
        #[arg(long)]
        json: bool,
    },
    /// Run a job (or all) now.
    Retry {
        /// Job id.
        id: Option<crate::store::queue::JobId>,
        /// Every pending job.
        #[arg(long, conflicts_with = "id")]
        all: bool,
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
    /// Offered load in messages per second (0: as fast as the sessions go).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop the recipients' provider first and measure memory with every
    /// message queued for it (no delivery is awaited).
    #[arg(long)]
    pub dead_peer: bool,
    /// `[queue] workers` of both providers (default: the configuration's).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
