//! Shared by the flows' golden tests (test builds only): a fixed clock, sequential ids, and
//! a batch rendered as text compared byte for byte with `tests/golden/flow/`.
use crate::flow::batch::*;
use std::fmt::Write;

/// 2018-11-13 16:39:27 +0100 (ms).
pub const T0: i64 = 1_542_123_567_000;

/// An unsigned message as the bytes it would be signed over.
pub fn flat(u: &crate::pec::types::Unsigned) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in &u.headers {
        v.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
    }
    v.extend_from_slice(&u.entity);
    v
}

/// The batch as readable, stable text: every row and every blob.
pub fn render(b: &Batch) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "now {}", b.now);
    if let Some(g) = &b.guard {
        let _ = writeln!(o, "guard {g:?}");
    }
    if let Some((id, end)) = &b.end {
        let _ = writeln!(o, "end job {id}: {end:?}");
    }
    if let Some(m) = &b.message {
        let _ = writeln!(o, "message {m:#?}");
    }
    for l in &b.log {
        let _ = writeln!(
            o,
            "log{} {:#?}",
            l.unless_repeat_of
                .map(|i| format!(" (unless job {i} repeats)"))
                .unwrap_or_default(),
            l.event
        );
    }
    for (i, j) in b.jobs.iter().enumerate() {
        let _ = writeln!(o, "job {i} {j:#?}");
    }
    for t in &b.timers {
        let _ = writeln!(o, "timer {t:?}");
    }
    for d in &b.deliveries {
        let _ = writeln!(o, "delivery {d:?}");
    }
    if let Some(q) = &b.quarantine {
        let _ = writeln!(o, "quarantine {q:?}");
    }
    for (i, blob) in b.blobs.iter().enumerate() {
        let (what, bytes) = match blob {
            NewBlob::Sign(u) => ("to sign", flat(u)),
            NewBlob::Bytes(b) => ("bytes", b.clone()),
        };
        let _ = writeln!(
            o,
            "blob {i} ({what}, {} bytes)\n{}\n-- end of blob {i}",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        );
    }
    o
}

/// Compare with `tests/golden/flow/NAME.txt`; `UPDATE_GOLDEN=1` rewrites it.
pub fn check(name: &str, got: &str) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/flow")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(&path));
        std::fs::write(&path, got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        want == got,
        "{} differs from the flow's outcome (UPDATE_GOLDEN=1 rewrites it):\n{got}",
        path.display()
    );
}
