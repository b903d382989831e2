//! `pecd bench`: end-to-end throughput on loopback, reported against the
//! machine's own signing rate measured in the same run.
//!
//! Two providers run in this process (`lab`). C concurrent authenticated TLS
//! sessions submit N messages alice@alpha -> bob@beta; the run ends when
//! every consegna is in alice's mailbox. Every PEC costs at least four RSA
//! signatures (accettazione, busta, presa in carico, one consegna per
//! recipient), so `signs/s ÷ signatures per message` is a hard ceiling for
//! the throughput of this machine: the report states the fraction of it
//! achieved. Latencies come from the providers' own log timestamps (same
//! clock as the client).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::admin::AdminResult;
use crate::cli::BenchArgs;
use crate::store::{self, log::Event};

use super::lab::{self, Lab, LabProvider};

/// CPU time and peak RSS of this process.
fn rusage() -> (f64, u64) {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(u.ru_utime) + secs(u.ru_stime),
        u.ru_maxrss as u64 * 1024,
    )
}

/// S/MIME signatures per second on this machine, all cores, same operation
/// and key size as the providers use.
fn signing_rate(threads: usize, for_how_long: Duration) -> Result<f64, String> {
    let ca = crate::certs::generate_ca("bench CA").map_err(|e| e.to_string())?;
    let s = crate::certs::generate_signing(&ca, "Bench", "pec.bench.test")
        .map_err(|e| e.to_string())?;
    let signer = Arc::new(
        crate::pec::smime::Signer::from_pem(&s.cert_pem(), &s.key_pem(), &ca.cert_pem())
            .map_err(|e| e.to_string())?,
    );
    let msg = crate::pec::types::Unsigned {
        headers: vec![("Subject".into(), "bench".into())],
        entity: b"Content-Type: text/plain\r\n\r\nbench body\r\n".to_vec(),
    };
    let start = Instant::now();
    let total = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (signer, msg, total) = (signer.clone(), msg.clone(), total.clone());
            std::thread::spawn(move || {
                while start.elapsed() < for_how_long {
                    if signer.sign(&msg, "b").is_ok() {
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn log_events(p: &super::Running) -> Vec<Event> {
    p.ctx
        .store
        .read_blocking(|c| Ok(store::log::query(c, &store::log::Query::default())?))
        .unwrap_or_default()
}

/// Signatures the providers made, from their logs (each generated PEC
/// message is one logged event with a `generated_msgid`).
fn signatures(events: &[Event]) -> std::collections::BTreeMap<String, usize> {
    const SIGNED: &[&str] = &[
        "accettazione",
        "non-accettazione",
        "busta-trasporto",
        "presa-in-carico",
        "avvenuta-consegna",
        "errore-consegna",
        "preavviso-errore-consegna",
        "anomalia",
    ];
    let mut by_type = std::collections::BTreeMap::new();
    for e in events {
        if SIGNED.contains(&e.event.as_str()) && e.generated_msgid.is_some() {
            *by_type.entry(e.event.clone()).or_insert(0) += 1;
        }
    }
    by_type
}

/// Run the benchmark.
pub fn run(a: BenchArgs) -> AdminResult {
    if a.messages == 0 || a.concurrency == 0 || a.recipients == 0 {
        return Err("--messages, --concurrency and --recipients must be at least 1".into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sign_rate = signing_rate(cores, Duration::from_secs(2))?;
    let report = rt.block_on(run_async(&a, sign_rate, cores))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&a, &report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run_async(
    a: &BenchArgs,
    sign_rate: f64,
    cores: usize,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let beta_users: Vec<String> = (0..a.recipients)
        .map(|i| {
            if i == 0 {
                "bob".to_string()
            } else {
                format!("bob{i}")
            }
        })
        .collect();
    let specs = [
        LabProvider {
            name: "Alpha PEC S.p.A.".into(),
            domain: "pec.alpha.test".into(),
            users: vec!["alice".into()],
        },
        LabProvider {
            name: "Beta PEC S.p.A.".into(),
            domain: "pec.beta.test".into(),
            users: beta_users.clone(),
        },
    ];
    // The peer dead: everything stays queued at Alpha (the memory target).
    let extra = if a.dead_peer {
        "[queue]\nretry_initial = \"1h\"\n"
    } else {
        ""
    };
    let mut lab = Lab::start(&specs, extra).await?;
    if a.dead_peer {
        let beta = lab.providers.remove(1);
        beta.stop(Duration::from_secs(5)).await;
    }
    let rcpts: Vec<String> = beta_users
        .iter()
        .map(|u| format!("{u}@pec.beta.test"))
        .collect();
    let client = lab.client(0, "alice@pec.alpha.test", a.concurrency as u32)?;
    let body: String = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"
        .repeat(a.size / 58 + 1)
        .chars()
        .take(a.size)
        .collect();
    let sent: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let errors = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let (cpu0, _) = rusage();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, sent, errors, next, rcpts, body) = (
            client.clone(),
            sent.clone(),
            errors.clone(),
            next.clone(),
            rcpts.clone(),
            body.clone(),
        );
        let n = a.messages;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let at = store::now_ms();
                match lab::submit(
                    &client,
                    "alice@pec.alpha.test",
                    &rcpts,
                    &format!("bench {i}"),
                    &body,
                )
                .await
                {
                    Ok(id) => {
                        if let Ok(mut s) = sent.lock() {
                            s.insert(id, at);
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("submission failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let submit_secs = t0.elapsed().as_secs_f64();
    let accepted = sent.lock().map(|s| s.len()).unwrap_or(0);
    let alpha = &lab.providers[0];
    let expected = accepted * a.recipients;
    let deadline = Instant::now() + Duration::from_secs(120 + a.messages as u64 / 5);
    let mut done = 0;
    if !a.dead_peer {
        while Instant::now() < deadline {
            // A count, not the events: polling must not cost the run it measures.
            done = alpha
                .ctx
                .store
                .read_blocking(|c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM log WHERE event = 'deposito' AND detail LIKE 'avvenuta-consegna%'",
                        [],
                        |r| r.get::<_, i64>(0),
                    )?)
                })
                .unwrap_or(0) as usize;
            if done >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = rusage();
    let events_a = log_events(alpha);
    let mut events_all = events_a.clone();
    if let Some(b) = lab.providers.get(1) {
        events_all.extend(log_events(b));
    }
    let signed = signatures(&events_all);
    let sigs = signed.values().sum::<usize>() as f64 / accepted.max(1) as f64;
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let mut acc_lat = Vec::new();
    let mut cons_lat: HashMap<String, f64> = HashMap::new();
    for e in &events_a {
        let (Some(id), Some(d)) = (&e.identificativo, &e.detail) else {
            continue;
        };
        let Some(t) = sent.get(id) else { continue };
        if e.event != "deposito" {
            continue;
        }
        let lat = (e.ts - t) as f64;
        if d.starts_with("accettazione") {
            acc_lat.push(lat);
        } else if d.starts_with("avvenuta-consegna") {
            let v = cons_lat.entry(id.clone()).or_insert(0.0);
            *v = v.max(lat);
        }
    }
    acc_lat.sort_by(f64::total_cmp);
    let mut cons: Vec<f64> = cons_lat.into_values().collect();
    cons.sort_by(f64::total_cmp);
    let rate = if a.dead_peer {
        accepted as f64 / submit_secs
    } else {
        done.min(expected) as f64 / a.recipients as f64 / elapsed
    };
    let bound = sign_rate / sigs.max(1.0);
    let queued = alpha
        .ctx
        .store
        .read_blocking(|c| Ok(store::queue::list(c, false)?.len()))
        .unwrap_or(0);
    let report = serde_json::json!({
        "messages": a.messages,
        "accepted": accepted,
        "submission_errors": errors.load(Ordering::Relaxed),
        "concurrency": a.concurrency,
        "size": a.size,
        "recipients": a.recipients,
        "dead_peer": a.dead_peer,
        "delivered_receipts": done,
        "elapsed_s": elapsed,
        "submission_s": submit_secs,
        "messages_per_s": rate,
        "accettazione_latency_ms": {"p50": percentile(&acc_lat, 0.5), "p99": percentile(&acc_lat, 0.99)},
        "consegna_latency_ms": {"p50": percentile(&cons, 0.5), "p99": percentile(&cons, 0.99)},
        "cpu_s": cpu1 - cpu0,
        "cpu_s_per_message": (cpu1 - cpu0) / accepted.max(1) as f64,
        "signatures_per_message": sigs,
        "signatures_by_type": signed,
        "peak_rss_mb": rss as f64 / 1e6,
        "queued_jobs_at_end": queued,
        "cores": cores,
        "sign_rate_per_s": sign_rate,
        "signing_bound_messages_per_s": bound,
        "fraction_of_signing_bound": rate / bound,
    });
    lab.stop().await;
    Ok(report)
}

fn print_report(a: &BenchArgs, r: &serde_json::Value) {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "pecd bench: {} messages x {} recipient(s), {} bytes, {} concurrent TLS sessions{}",
        a.messages,
        a.recipients,
        a.size,
        a.concurrency,
        if a.dead_peer {
            ", peer provider DOWN"
        } else {
            ""
        }
    );
    println!("  accepted                 {}", r["accepted"]);
    if a.dead_peer {
        println!(
            "  submission rate          {:.1} msg/s",
            f("messages_per_s")
        );
        println!("  jobs queued at the end   {}", r["queued_jobs_at_end"]);
    } else {
        println!(
            "  end-to-end               {:.1} PEC/s ({:.1} s)",
            f("messages_per_s"),
            f("elapsed_s")
        );
        println!(
            "  submission->accettazione p50 {:.0} ms  p99 {:.0} ms",
            r["accettazione_latency_ms"]["p50"]
                .as_f64()
                .unwrap_or(f64::NAN),
            r["accettazione_latency_ms"]["p99"]
                .as_f64()
                .unwrap_or(f64::NAN)
        );
        println!(
            "  submission->consegna     p50 {:.0} ms  p99 {:.0} ms",
            r["consegna_latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            r["consegna_latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!(
        "  CPU                      {:.2} s ({:.2} ms/message)",
        f("cpu_s"),
        f("cpu_s_per_message") * 1000.0
    );
    println!(
        "  signatures per message   {:.2}",
        f("signatures_per_message")
    );
    println!("  peak RSS                 {:.0} MB", f("peak_rss_mb"));
    println!(
        "  signing rate (this machine, {} cores) {:.0} signs/s -> bound {:.1} PEC/s",
        r["cores"],
        f("sign_rate_per_s"),
        f("signing_bound_messages_per_s")
    );
    if !a.dead_peer {
        println!(
            "  fraction of the signing bound achieved: {:.0} %",
            f("fraction_of_signing_bound") * 100.0
        );
    }
}
