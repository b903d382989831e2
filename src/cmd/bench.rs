//! `pecd bench`: two providers in this process on loopback, N PEC messages
//! from C authenticated TLS sessions alice@alpha -> bob@beta, timed from the
//! client's send to the receipts landing in alice's mailbox (from the PEC log),
//! set against the machine's RSA signing rate measured in the same run.
//! `--rate` offers the load open loop (message i due at i / R) and times each
//! message from the end of its DATA too; `--rate half` first measures the
//! saturated rate (`bench_run`). `--against-postfix` is in `bench_postfix`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::BenchArgs;

use super::percentiles::Percentiles;

use crate::lab::{self, Lab};

const ALICE: &str = "alice@pec.alpha.test";

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// Messages submitted.
    pub messages: usize,
    /// Concurrent sessions.
    pub concurrency: usize,
    /// Body size (bytes).
    pub size: usize,
    /// Recipients per message.
    pub recipients: usize,
    /// Offered load (messages/s, 0 = unpaced).
    pub rate: f64,
    /// Where the providers kept their rows (`sqlite`, `postgresql`); with
    /// PostgreSQL the database server's CPU is not in `cpu_seconds`.
    pub store: String,
    /// With PostgreSQL: the PEC log rows found in the two providers'
    /// databases after the run (the rows went where the flag said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_log_rows: Option<i64>,
    /// Messages that got `250`.
    pub accepted: usize,
    /// Wall time from the first send to the last consegna (s).
    pub seconds: f64,
    /// End-to-end PEC messages per second.
    pub messages_per_second: f64,
    /// Client-side: send -> `250` (ms).
    pub reply_ms: Percentiles,
    /// Send -> accettazione in the sender's mailbox (ms).
    pub accettazione_ms: Percentiles,
    /// Send -> last consegna in the sender's mailbox (ms).
    pub consegna_ms: Percentiles,
    /// End of DATA (the message written, only the final dot left) ->
    /// accettazione in the sender's mailbox (ms).
    pub data_end_to_accettazione_ms: Percentiles,
    /// End of DATA -> last consegna in the sender's mailbox (ms).
    pub data_end_to_consegna_ms: Percentiles,
    /// With `--rate`: how late each message left against its schedule (ms);
    /// large values mean the sessions did not hold the offered load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lateness_ms: Option<Percentiles>,
    /// With `--rate half`: the saturated run whose PEC/s was halved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturated: Option<Box<Report>>,
    /// User + system CPU of this process during the run (s).
    pub cpu_seconds: f64,
    /// CPU seconds per message.
    pub cpu_ms_per_message: f64,
    /// S/MIME signatures made by both providers, per message.
    pub signatures_per_message: f64,
    /// Peak resident set size of this process (MiB).
    pub peak_rss_mib: f64,
    /// RSA-2048 signatures per second on one thread.
    pub rsa2048_signs_per_second_one_thread: f64,
    /// CPU cores.
    pub cores: usize,
    /// Signing bound: one-thread rate x cores / signatures per message.
    pub signing_bound_messages_per_second: f64,
    /// messages_per_second / signing bound.
    pub fraction_of_signing_bound: f64,
    /// With `--clamd`: the clamd both providers scanned with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamd: Option<String>,
    /// With `--pkcs11-key`: the token key both providers signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs11_key: Option<String>,
    /// With `--pkcs11-key`: that key's signatures per second on one thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_signs_per_second_one_thread: Option<f64>,
    /// With `--dead-peer`: relay jobs pending when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_for_dead_peer: Option<i64>,
}

fn rusage() -> (f64, f64) {
    crate::sys::rusage::own()
}

/// RSA-2048 PKCS#1 SHA-256 signatures per second on one thread (about 1 s).
pub fn rsa2048_rate() -> Result<f64, openssl::error::ErrorStack> {
    use openssl::{pkey::PKey, rsa::Rsa};
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    sign_rate(&key)
}

/// SHA-256 signatures per second by `key` on one thread (about 1 s): a
/// token's key signs inside the token.
fn sign_rate(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> Result<f64, openssl::error::ErrorStack> {
    use openssl::{hash::MessageDigest, sign::Signer};
    let data = [0x5au8; 1024];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(1) {
        let mut s = Signer::new(MessageDigest::sha256(), key)?;
        s.update(&data)?;
        s.sign_to_vec()?;
        n += 1;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn body(size: usize) -> String {
    let line = "Questo e' il corpo di prova del benchmark di pecd, riga di testo.";
    let mut b = String::with_capacity(size + 80);
    while b.len() < size {
        b.push_str(line);
        b.push_str("\r\n");
    }
    b.truncate(size.max(1));
    b
}

/// A read of `p`'s store off the async threads: PostgreSQL's client
/// blocks on a runtime of its own, which cannot start inside this one.
async fn read<R: Default + Send + 'static>(
    p: &crate::server::Running,
    f: impl FnOnce(&crate::store::Store) -> R + Send + 'static,
) -> R {
    let store = p.ctx.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_default()
}

/// `deposito` events in `p`'s log whose detail starts with `what`.
async fn count(p: &crate::server::Running, what: &'static str) -> i64 {
    read(p, move |s| s.count_deposits_blocking(what).unwrap_or(0)).await
}

/// Per identificativo, the log time of the first / last `deposito` of `what`.
async fn times(
    p: &crate::server::Running,
    what: &'static str,
) -> std::collections::HashMap<String, (i64, i64)> {
    let rows = read(p, move |s| {
        s.deposit_times_blocking(what).unwrap_or_default()
    })
    .await;
    let mut m = std::collections::HashMap::new();
    for (id, ts) in rows {
        let e = m.entry(id).or_insert((ts, ts));
        e.0 = e.0.min(ts);
        e.1 = e.1.max(ts);
    }
    m
}

/// One message the access point accepted, as the client saw it.
#[derive(Clone)]
struct Sent {
    /// Identificativo from the `250`.
    id: String,
    /// Unix ms when the client began the transaction (MAIL).
    at: i64,
    /// Unix ms at the end of DATA.
    data_end: i64,
    /// Send -> `250` (ms, monotonic clock).
    reply_ms: f64,
    /// How late it left against the `--rate` schedule (ms).
    late_ms: f64,
}

const CONSEGNE: &str = "avvenuta-consegna";
const ACCETTAZIONI: &str = "accettazione";

/// `--pause`: let the file system settle between runs.
pub(super) async fn pause(seconds: u64) {
    if seconds > 0 {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

/// Issue 23's latency targets at half of the saturated rate (ms).
pub(super) const ACCETTAZIONE_P99_TARGET_MS: f64 = 50.0;
pub(super) const CONSEGNA_P99_TARGET_MS: f64 = 1000.0;

/// The text report of one run.
pub(super) fn print_text(r: &Report) {
    println!(
        "pecd bench: {} messages x {} recipient(s), {} B body, {} sessions",
        r.messages, r.recipients, r.size, r.concurrency
    );
    if let Some(q) = r.queued_for_dead_peer {
        println!("  dead peer:          {q} relay jobs queued");
        println!("  peak RSS:           {:.1} MiB", r.peak_rss_mib);
        println!(
            "  submission rate:    {:.1} msg/s ({} accepted in {:.1} s)",
            r.messages_per_second, r.accepted, r.seconds
        );
        return;
    }
    println!(
        "  end to end:         {:.1} PEC/s ({} accepted, {:.2} s)",
        r.messages_per_second, r.accepted, r.seconds
    );
    if r.rate > 0.0 {
        println!("  offered load:       {:.1} PEC/s, open loop", r.rate);
    }
    if let Some(rows) = r.store_log_rows {
        println!(
            "  store:              {} ({rows} log rows; its server's CPU is not counted below)",
            r.store
        );
    }
    for (name, p) in [
        ("send -> 250", &r.reply_ms),
        ("send -> accettazione", &r.accettazione_ms),
        ("send -> consegna", &r.consegna_ms),
        ("end of DATA -> acc.", &r.data_end_to_accettazione_ms),
        ("end of DATA -> cons.", &r.data_end_to_consegna_ms),
    ]
    .into_iter()
    .chain(r.send_lateness_ms.as_ref().map(|p| ("sends late by", p)))
    {
        println!(
            "  {name:<20} p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
            p.p50, p.p99, p.max
        );
    }
    if r.saturated.is_some() {
        println!(
            "  targets at half the saturated rate: end of DATA -> accettazione p99 {:.1} ms (< {ACCETTAZIONE_P99_TARGET_MS} ms: {}), -> consegna p99 {:.1} ms (< {CONSEGNA_P99_TARGET_MS} ms: {})",
            r.data_end_to_accettazione_ms.p99,
            yes_no(r.data_end_to_accettazione_ms.p99 < ACCETTAZIONE_P99_TARGET_MS),
            r.data_end_to_consegna_ms.p99,
            yes_no(r.data_end_to_consegna_ms.p99 < CONSEGNA_P99_TARGET_MS),
        );
    }
    println!(
        "  CPU:                {:.2} s ({:.2} ms/message)",
        r.cpu_seconds, r.cpu_ms_per_message
    );
    println!("  signatures/message: {:.2}", r.signatures_per_message);
    println!("  peak RSS:           {:.1} MiB", r.peak_rss_mib);
    println!(
        "  RSA-2048 signing:   {:.0}/s one thread x {} cores",
        r.rsa2048_signs_per_second_one_thread, r.cores
    );
    println!(
        "  signing bound:      {:.1} PEC/s; achieved {:.1} %",
        r.signing_bound_messages_per_second,
        r.fraction_of_signing_bound * 100.0
    );
    if let (Some(k), Some(rate)) = (&r.pkcs11_key, r.token_signs_per_second_one_thread) {
        println!("  PKCS#11 key:        {k}, {rate:.0} signatures/s on one thread");
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "met"
    } else {
        "NOT met"
    }
}

/// The two lab providers reach each other from 127.0.0.1: each lists the
/// other as a peer network, as operators of peer providers agree to
/// (docs/operations.md, "Connections between peer providers").
const LAB_PEERS: &str = "[limits]\npeer_networks = [\"127.0.0.1\"]\n";
/// Relay connections to the peer: as many as the jobs that can run at once
/// (`[queue] workers`, 96), within the peer's `max_connections_per_peer` (100).
const LAB_PEER_CONNECTIONS: usize = 100;

/// One run of `pecd bench` at `rate` messages per second (0: unpaced).
pub(super) async fn bench(a: &BenchArgs, rate: f64) -> Result<Report, Box<dyn std::error::Error>> {
    let n = a.messages.max(1);
    let conc = a.concurrency.clamp(1, n);
    let nrcpt = a.recipients.max(1);
    let rsa = tokio::task::spawn_blocking(rsa2048_rate).await??;
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let mut beta_users = vec!["bob".to_string()];
    for i in 2..=nrcpt {
        beta_users.push(format!("bob{i}"));
    }
    let rcpts: Vec<String> = beta_users
        .iter()
        .map(|u| format!("{u}@pec.beta.test"))
        .collect();
    let mut extra =
        format!("{LAB_PEERS}[queue]\nmax_connections_per_peer = {LAB_PEER_CONNECTIONS}\n");
    if let Some(w) = a.workers {
        extra.push_str(&format!("workers = {w}\n"));
    }
    if let Some(c) = &a.clamd {
        let quoted = toml::Value::String(c.clone());
        extra.push_str(&format!("[antivirus]\nclamd = {quoted}\n"));
    }
    let token = match (&a.pkcs11_key, &a.pkcs11_module) {
        (Some(uri), Some(module)) => Some(lab::LabToken {
            module: module.clone(),
            uri: uri.clone(),
        }),
        _ => None,
    };
    let token_rate = match &token {
        Some(t) => {
            let key = t.key()?;
            Some(tokio::task::spawn_blocking(move || sign_rate(&key)).await??)
        }
        None => None,
    };
    // Started before the lab and dropped after it (it outlives `lab`).
    let pg = match a.store.as_str() {
        "postgresql" => {
            Some(tokio::task::spawn_blocking(|| crate::labpg::PgCluster::start(true)).await??)
        }
        _ => None,
    };
    let mut lab = Lab::alpha_beta_signing(&beta_users, &extra, token.as_ref(), pg.as_ref()).await?;
    if a.dead_peer {
        if let Some(b) = lab.providers.pop() {
            b.stop(Duration::from_secs(5)).await;
        }
    }
    let text = body(a.size);
    // Sessions are opened and authenticated before the clock starts: the
    // figures are the steady state, not 20 TLS handshakes and password checks.
    // The sessions run on their own runtime, as a client machine would:
    // on the providers' runtimes they queued behind the providers' work.
    let client_rt = lab::OwnRuntime::new("pecd-bench-client")?;
    let on_client = client_rt.handle().ok_or("client runtime gone")?.clone();
    // Each session is one connection used message after message, as
    // `smtp-source -d` does: no per-message NOOP probe (lettre's pool sends one).
    let addr = lab.providers[0]
        .bound
        .submission
        .ok_or("no submission listener")?;
    let tls = lab.client_tls()?;
    let mut clients = Vec::with_capacity(conc);
    for _ in 0..conc {
        let tls = tls.clone();
        clients.push(
            on_client
                .spawn(async move { lab::session(addr, tls, ALICE).await })
                .await??,
        );
    }
    let sigs0 = crate::server::SIGNATURES.load(Ordering::Relaxed);
    let (cpu0, _) = rusage();
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    // One schedule for every session: message i is due at start + i / rate.
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (next, sent, text, rcpts) = (next.clone(), sent.clone(), text.clone(), rcpts.clone());
        tasks.push(on_client.spawn(async move {
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return failures;
                }
                let mut late_ms = 0.0;
                if rate > 0.0 {
                    // Open loop: message i leaves at i / rate, whoever sends
                    // it; a message that finds every session busy leaves late,
                    // and says by how much.
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    late_ms = tokio::time::Instant::now()
                        .saturating_duration_since(due)
                        .as_secs_f64()
                        * 1000.0;
                }
                let at = crate::cmd::now_unix_ms();
                let t = Instant::now();
                match lab::submit_timed(&mut client, ALICE, &rcpts, &format!("Bench {i}"), &text)
                    .await
                {
                    Ok(s) => {
                        let reply_ms = t.elapsed().as_secs_f64() * 1000.0;
                        if let Ok(mut v) = sent.lock() {
                            v.push(Sent {
                                id: s.id,
                                at,
                                data_end: s.data_end_ms,
                                reply_ms,
                                late_ms,
                            });
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "bench submission failed");
                    }
                }
            }
        }));
    }
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap_or(0);
    }
    let accepted = sent.lock().map(|s| s.len()).unwrap_or(0);
    if failures > 0 {
        eprintln!("bench: {failures} submissions failed");
    }
    let alpha = &lab.providers[0];
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 5);
    let expected = if a.dead_peer {
        accepted as i64
    } else {
        (accepted * nrcpt) as i64
    };
    let what = if a.dead_peer { ACCETTAZIONI } else { CONSEGNE };
    loop {
        let done = count(alpha, what).await;
        if done >= expected {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {done} of {expected} receipts arrived in time").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = rusage();
    let sigs = crate::server::SIGNATURES.load(Ordering::Relaxed) - sigs0;
    let acc = times(alpha, ACCETTAZIONI).await;
    let cons = times(alpha, CONSEGNE).await;
    let queued = if a.dead_peer {
        Some(read(alpha, |s| s.pending_relays_blocking().unwrap_or(0)).await)
    } else {
        None
    };
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    let mut reply = Vec::new();
    let mut late = Vec::new();
    let (mut to_acc, mut data_to_acc) = (Vec::new(), Vec::new());
    let (mut to_cons, mut data_to_cons) = (Vec::new(), Vec::new());
    for s in &sent {
        reply.push(s.reply_ms);
        late.push(s.late_ms);
        if let Some((first, _)) = acc.get(&s.id) {
            to_acc.push((first - s.at) as f64);
            data_to_acc.push((first - s.data_end) as f64);
        }
        if let Some((_, last)) = cons.get(&s.id) {
            to_cons.push((last - s.at) as f64);
            data_to_cons.push((last - s.data_end) as f64);
        }
    }
    let per_msg_sigs = if accepted > 0 {
        sigs as f64 / accepted as f64
    } else {
        0.0
    };
    let mps = accepted as f64 / seconds;
    let bound = if per_msg_sigs > 0.0 {
        rsa * cores as f64 / per_msg_sigs
    } else {
        0.0
    };
    lab.stop().await;
    let store_log_rows = match &pg {
        Some(pg) => {
            let mut rows = 0;
            for db in ["alpha", "beta"] {
                rows += pg.psql(db, "SELECT count(*) FROM log")?.parse::<i64>()?;
            }
            Some(rows)
        }
        None => None,
    };
    Ok(Report {
        messages: n,
        concurrency: conc,
        size: a.size,
        recipients: nrcpt,
        rate,
        store: a.store.clone(),
        store_log_rows,
        accepted,
        seconds,
        messages_per_second: mps,
        reply_ms: Percentiles::of(reply),
        accettazione_ms: Percentiles::of(to_acc),
        consegna_ms: Percentiles::of(to_cons),
        data_end_to_accettazione_ms: Percentiles::of(data_to_acc),
        data_end_to_consegna_ms: Percentiles::of(data_to_cons),
        send_lateness_ms: (rate > 0.0).then(|| Percentiles::of(late)),
        saturated: None,
        cpu_seconds: cpu1 - cpu0,
        cpu_ms_per_message: (cpu1 - cpu0) * 1000.0 / accepted.max(1) as f64,
        signatures_per_message: per_msg_sigs,
        clamd: a.clamd.clone(),
        pkcs11_key: a.pkcs11_key.clone(),
        token_signs_per_second_one_thread: token_rate,
        peak_rss_mib: rss,
        rsa2048_signs_per_second_one_thread: rsa,
        cores,
        signing_bound_messages_per_second: bound,
        fraction_of_signing_bound: if bound > 0.0 { mps / bound } else { 0.0 },
        queued_for_dead_peer: queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size() {
        assert_eq!(body(2048).len(), 2048);
        assert!(body(2048).contains("\r\n"));
    }
}
