//! `pecd quarantine list|show`: the infected messages kept for 30 months.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::QuarantineCommand;
use crate::cmd::{load_config, AdminResult};
use crate::store::quarantine;

/// Run a `pecd quarantine` subcommand.
pub fn main(config: &Path, cmd: QuarantineCommand) -> AdminResult {
    let cfg = load_config(config)?;
    let data_dir = cfg.data_dir();
    let out = std::io::stdout();
    let mut out = out.lock();
    match cmd {
        QuarantineCommand::List { json } => {
            let rows = super::inspect_store(&cfg)?.quarantined()?;
            if rows.is_empty() {
                eprintln!("the quarantine is empty");
                return Ok(ExitCode::SUCCESS);
            }
            for q in rows {
                if json {
                    let mut v = serde_json::to_value(&q)?;
                    v["time"] = serde_json::json!(crate::pec::clock::iso8601_ms(q.at));
                    writeln!(out, "{v}")?;
                } else {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        q.id,
                        crate::pec::clock::human_ms(q.at),
                        q.point,
                        q.identificativo.as_deref().unwrap_or("-"),
                        q.virus,
                        q.sender
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Show { id } => {
            let Some(q) = super::inspect_store(&cfg)?.quarantined_one(&id)? else {
                return Err(format!("no quarantined message {id:?}").into());
            };
            let path = quarantine::dir(&data_dir).join(&q.file);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            writeln!(out, "id: {}", q.id)?;
            writeln!(
                out,
                "identificativo: {}",
                q.identificativo.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "virus: {}", q.virus)?;
            writeln!(out, "time: {}", crate::pec::clock::human_ms(q.at))?;
            writeln!(out, "point: {}", q.point)?;
            writeln!(out, "sender: {}", q.sender)?;
            writeln!(out, "recipients: {}", q.recipients)?;
            writeln!(out, "size: {}", q.size)?;
            writeln!(out, "file: {}", path.display())?;
            writeln!(out)?;
            out.write_all(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
