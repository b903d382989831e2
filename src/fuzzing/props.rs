//! The fuzz targets' checks on a few thousand inputs from a fixed-seed
//! generator, so every `cargo test` exercises the parsers with hostile bytes
//! (and replays what the fuzzers found) without a fuzzer installed.

use super::targets;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes the parsers branch on, so mutations hit their edges.
const SPECIAL: &[u8] = b"\r\n\r\n.:<>@ =\"{}()[]+-;\\\t\0\x07\xff\xc3*/&#%?";

/// Splice, insert, delete, duplicate or flip a few times.
fn mutate(rng: &mut Rng, seed: &[u8], max_len: usize) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 => v.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let dup = v[at..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, dup);
            }
            4 if at < v.len() => v[at] ^= 1 << rng.below(8),
            _ => v.truncate(at),
        }
    }
    v.truncate(max_len);
    v
}

fn run(seeds: &[&[u8]], n: usize, max_len: usize, check: fn(&[u8])) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    for s in seeds {
        check(s);
    }
    for _ in 0..n {
        let s = seeds[rng.below(seeds.len())];
        check(&mutate(&mut rng, s, max_len));
    }
}

#[test]
fn smtp_command() {
    let seeds: &[&[u8]] = &[
        b"MAIL FROM:<a@b.it> SIZE=100 BODY=8BITMIME",
        b"MAIL FROM:<@relay.x,@r2:a@b>",
        b"RCPT TO:<Postmaster>",
        b"EHLO client.test",
        b"AUTH PLAIN dXNlcgB1c2VyAHB3",
        b"VRFY alice",
    ];
    run(seeds, 2000, 600, targets::smtp_command);
}

#[test]
fn smtp_data() {
    let seeds: &[&[u8]] = &[
        b"\x64\x00\x03\x01\x02\x05hi\r\n.\r\nQUIT\r\n",
        b"\x05\x00\x01\x07..hidden\r\n.\r\n",
        b"\x64\x00\x02\x00\x03a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
        b"\x64\x00\x00a\r\n.\rMAIL\r\n.\r\n",
    ];
    run(seeds, 2000, 600, targets::smtp_data);
}

#[test]
fn imap_command() {
    let seeds: &[&[u8]] = &[
        b"\x00\x04\xc8\x07a LOGIN {5}\r\nalice {6+}\r\nsecret\r\nb NOOP\r\n",
        b"\x40\x00\x02\x03a APPEND INBOX (\\Seen) {2000}\r\nb APPEND INBOX {30+}\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
        b"\x00\x04\xc8\x09a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nb IDLE\r\nDONE\r\n",
        b"\x00\x04\xc8\x11t1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n",
    ];
    run(seeds, 2000, 600, targets::imap_command);
}

const BUSTA: &[u8] =
    include_bytes!("../../tests/fixtures/pec-samples/ANON_busta-trasporto_sha256.eml");
const ERRORE: &[u8] =
    include_bytes!("../../tests/fixtures/pec-samples/ANON_errore-consegna_fakepec.eml");
const ACCETTAZIONE: &[u8] =
    include_bytes!("../../tests/fixtures/pec-samples/aruba-2014_accettazione.eml");

#[test]
fn mime() {
    let nested: &[u8] = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset*=utf-8''%C3%A8\r\n\r\n=C3=A8=\r\nx\r\n--b\r\nContent-Type: text/html; name=\"=?utf-8?B?w6g=?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+\r\n--b--\r\n--a--\r\n";
    run(&[BUSTA, ERRORE, nested], 300, 1 << 16, targets::mime);
}

#[test]
fn daticert() {
    let seeds: &[&[u8]] = &[
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<postacert tipo=\"accettazione\" errore=\"nessuno\"><intestazione><mittente>a@b</mittente><destinatari tipo=\"esterno\">c@d</destinatari><oggetto><![CDATA[a<b]]> &amp; &#232;</oggetto></intestazione><dati><data zona=\"+0100\"><giorno>01/01/2024</giorno></data><identificativo>x</identificativo><msgid>&lt;m@x&gt;</msgid><ricevuta tipo=\"breve\"/><ricezione>c@d</ricezione><errore-esteso>e</errore-esteso></dati></postacert>",
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<postacert tipo=\"avvenuta-consegna\"><dati><identificativo>\xe8</identificativo><consegna>a@b</consegna></dati></postacert>",
    ];
    run(seeds, 2000, 4096, targets::daticert);
}

#[test]
fn smime() {
    run(&[BUSTA, ACCETTAZIONE, ERRORE], 200, 1 << 16, targets::smime);
}

#[test]
fn smime_der() {
    // A SignedData skeleton: ContentInfo { signedData OID, [0] { SEQUENCE
    // { version, digestAlgorithms, contentInfo, [0] certs, signerInfos } } }.
    let seed: &[u8] = &[
        0x30, 0x3a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x2d,
        0x30, 0x2b, 0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x02, 0x06, 0x00, 0xa0, 0x00, 0x31, 0x20,
        0x30, 0x1e, 0x02, 0x01, 0x01, 0x30, 0x04, 0x30, 0x00, 0x02, 0x00, 0x30, 0x07, 0x06, 0x05,
        0x2b, 0x0e, 0x03, 0x02, 0x1a, 0xa0, 0x00, 0x30, 0x02, 0x06, 0x00, 0x04, 0x00,
    ];
    run(&[seed], 2000, 512, targets::smime_der);
}

#[test]
fn proxy_header() {
    let seeds: &[&[u8]] = &[
        // TCP over IPv4, with an authority TLV, then a TLS ClientHello.
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x13\xc0\x00\x02\x4d\x7f\x00\x00\x01\x9c\x40\x02\x4b\x02\x00\x04mx.a\x16\x03\x01",
        // TCP over IPv6.
        b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x77\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x15\xb3\x03\xe1",
        // LOCAL, UNSPEC: a balancer's health check.
        b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00EHLO x\r\n",
        b"EHLO client.test\r\n",
    ];
    run(seeds, 3000, 1200, targets::proxy_header);
}
