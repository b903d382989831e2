//! `pecd bench` runs end to end and reports what issue 5 asks for (a small
//! run: the figures themselves are recorded in docs/performance.md).
mod common;

#[test]
fn bench_reports_throughput_latency_and_the_signing_bound() {
    let r = common::bench_json(
        &[
            "--messages",
            "12",
            "--concurrency",
            "3",
            "--recipients",
            "2",
        ],
        &[],
    );
    assert_eq!(r["accepted"], 12, "{r:#}");
    assert!(r["messages_per_second"].as_f64().unwrap() > 0.0, "{r:#}");
    // busta + accettazione + presa in carico + one consegna per recipient.
    assert_eq!(r["signatures_per_message"].as_f64().unwrap(), 5.0, "{r:#}");
    for k in ["reply_ms", "accettazione_ms", "consegna_ms"] {
        assert!(r[k]["p99"].as_f64().unwrap() > 0.0, "{k}: {r:#}");
        assert_eq!(r[k]["n"], 12, "{k}: {r:#}");
    }
    assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0);
    let bound = r["signing_bound_messages_per_second"].as_f64().unwrap();
    let fraction = r["fraction_of_signing_bound"].as_f64().unwrap();
    assert!(
        bound > 0.0 && (fraction - r["messages_per_second"].as_f64().unwrap() / bound).abs() < 1e-9
    );
}

#[test]
fn bench_webmail_times_the_first_page_of_a_large_folder() {
    let r = common::bench_json(&["--webmail", "--messages", "300"], &[]);
    assert_eq!(r["messages"], 300, "{r:#}");
    assert_eq!(r["first_page_ms"]["n"], 100, "{r:#}");
    let p99 = r["first_page_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0, "{r:#}");
    assert!(
        (r["p99_of_target"].as_f64().unwrap() - p99 / 200.0).abs() < 1e-9,
        "{r:#}"
    );
    assert_eq!(r["debug_build"], cfg!(debug_assertions), "{r:#}");
}
