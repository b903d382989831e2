//! One message through one real provider: the quickest end-to-end check.
use crate::common;

use common::*;

#[tokio::test]
async fn local_pec_flow_end_to_end() {
    let ca = TestCa::new();
    let mut p = TestProvider::prepare(
        &ca,
        &ProviderSpec::new("Alpha PEC S.p.A.", "pec.alpha.test", &["alice", "bob"]),
    );
    p.start();
    let msg = message(
        "alice@pec.alpha.test",
        &["bob@pec.alpha.test"],
        &[],
        "Prova",
        "",
        "Ciao Bob",
    );
    let reply = p
        .submit_raw("alice@pec.alpha.test", &["bob@pec.alpha.test"], &msg, false)
        .await
        .expect("submission accepted");
    assert!(reply.contains("identificativo"), "{reply}");
    let acc = p.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "accettazione", 1);
    let busta = p.wait_messages("bob@pec.alpha.test", "X-Trasporto", "posta-certificata", 1);
    let cons = p.wait_messages("alice@pec.alpha.test", "X-Ricevuta", "avvenuta-consegna", 1);
    for m in [&acc[0], &busta[0], &cons[0]] {
        openssl_verify(m, &p.ca_pem).expect("openssl smime -verify accepts it");
        xmllint_valid(&daticert(m).to_xml()).expect("daticert valid against the DTD");
    }
    assert_eq!(
        header(&busta[0], "Subject").unwrap(),
        "POSTA CERTIFICATA: Prova"
    );
}
