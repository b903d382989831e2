//! `pecd demo`: two providers in one process, one PEC, the whole chain printed.
use crate::common;

#[test]
fn demo_shows_the_whole_chain() {
    let out = std::process::Command::new(common::pecd_bin())
        .arg("demo")
        .env("RUST_LOG", "error")
        .output()
        .expect("run pecd demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "ACCETTAZIONE in alice's mailbox",
        "POSTA CERTIFICATA (busta) in bob's mailbox",
        "PRESA IN CARICO from Beta received and logged by Alpha",
        "CONSEGNA (ricevuta completa, signed by Beta) in alice's mailbox",
        "The whole chain took",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
}
