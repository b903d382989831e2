//! `pecd bench`: which measurement the flags ask for, run until it ends or
//! the process is told to stop, and the report printed.

use std::process::ExitCode;

use super::bench;
use crate::cli::{BenchArgs, Rate};
use crate::cmd::AdminResult;

/// `pecd bench`.
pub fn run(a: BenchArgs) -> AdminResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Interrupted, the run's future is dropped: the lab's folder and a
    // Postfix instance with its folder are removed by their Drop, and
    // child processes are killed, where a default SIGINT would leave them.
    rt.block_on(async {
        tokio::select! {
            r = dispatch(&a) => r,
            sig = interrupted() => Err(format!(
                "bench interrupted by {sig}: stopped and cleaned up"
            ).into()),
        }
    })
}

/// SIGINT, SIGTERM or SIGHUP, whichever comes first: its name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        // Without the handlers the default actions stay: wait for ever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

async fn dispatch(a: &BenchArgs) -> AdminResult {
    if a.webmail {
        let r = super::bench_web::bench(a.messages.max(1), 100).await?;
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            let p = &r.first_page_ms;
            println!(
                "webmail first page of {} messages, {} requests (new TLS connection each): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; p99 is {:.2} of the 200 ms target{}",
                r.messages,
                r.requests,
                p.p50,
                p.p99,
                p.max,
                r.p99_of_target,
                if r.debug_build { " (DEBUG build)" } else { "" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.against_postfix {
        return super::bench_postfix::run(a).await;
    }
    let report = match a.rate {
        Rate::PerSecond(r) => bench::bench(a, r).await?,
        Rate::HalfOfSaturated => {
            let saturated = bench::bench(a, 0.0).await?;
            let half = saturated.messages_per_second / 2.0;
            if half <= 0.0 {
                return Err("the saturated run delivered nothing: no rate to halve".into());
            }
            bench::pause(a.pause).await;
            let mut r = bench::bench(a, half).await?;
            r.saturated = Some(Box::new(saturated));
            r
        }
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        if let Some(s) = &report.saturated {
            bench::print_text(s);
            println!("half of it, open loop:");
        }
        bench::print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}
