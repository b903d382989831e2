//! AWS Signature Version 4 for S3 requests signed in the `Authorization`
//! header: canonical request, string to sign, signing key, signature.
//! Pure (no I/O, no clock: the caller passes the time); SHA-256 from
//! openssl, the project's one crypto library, and HMAC built on it.

use openssl::sha::{sha256, Sha256};

/// The hex SHA-256 of the empty payload (GET, HEAD, DELETE, LIST).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// HMAC-SHA256 (RFC 2104); a key longer than the block is hashed first.
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(&block.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(&block.map(|b| b ^ 0x5c));
    outer.update(&inner.finish());
    outer.finish()
}

/// `s` percent-encoded the S3 way: the RFC 3986 unreserved characters stay,
/// everything else is `%XX` (uppercase), `/` too unless `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A UTC instant in the two forms SigV4 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmzDate {
    /// `YYYYMMDDTHHMMSSZ`, the `x-amz-date` header.
    pub stamp: String,
}

impl AmzDate {
    /// The instant `unix` seconds after 1970-01-01 UTC.
    pub fn from_unix(unix: i64) -> AmzDate {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        let (y, m, d) = crate::pec::clock::civil_from_days(days);
        AmzDate {
            stamp: format!(
                "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            ),
        }
    }

    /// `YYYYMMDD`, the date of the credential scope.
    pub fn day(&self) -> &str {
        self.stamp.get(..8).unwrap_or("")
    }
}

/// One request as signed: what goes on the wire must be exactly this.
#[derive(Debug)]
pub struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The path as sent, already encoded with [`uri_encode`] (`/bucket/key`).
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The headers to sign, `host`, `x-amz-date` and `x-amz-content-sha256`
    /// among them; names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (the `x-amz-content-sha256` value).
    pub payload_sha256: &'a str,
}

/// The access key pair a request is signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// The access key id (public).
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log through {:?}.
        f.debug_struct("Keys")
            .field("access_key", &self.access_key)
            .field("secret_key", &"…")
            .finish()
    }
}

/// The query string in canonical form: encoded pairs sorted by name.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Headers lowercased, values trimmed with inner runs of spaces folded,
/// sorted by name.
fn canonical_headers(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    h.sort();
    h
}

/// The names of the signed headers, `;`-joined (`SignedHeaders=`).
pub fn signed_headers(req: &Request) -> String {
    canonical_headers(req.headers)
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// The canonical request (step 1 of the AWS documentation).
pub fn canonical_request(req: &Request) -> String {
    let headers: String = canonical_headers(req.headers)
        .iter()
        .map(|(n, v)| format!("{n}:{v}\n"))
        .collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_query(req.query),
        headers,
        signed_headers(req),
        req.payload_sha256
    )
}

/// The credential scope: `YYYYMMDD/region/s3/aws4_request`.
pub fn scope(date: &AmzDate, region: &str) -> String {
    format!("{}/{region}/s3/aws4_request", date.day())
}

/// The string to sign (step 2).
pub fn string_to_sign(req: &Request, date: &AmzDate, region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        date.stamp,
        scope(date, region),
        hex(&sha256(canonical_request(req).as_bytes()))
    )
}

/// The hex signature (steps 3 and 4: the signing key, then the HMAC).
pub fn signature(req: &Request, keys: &Keys, date: &AmzDate, region: &str) -> String {
    let k_date = hmac(
        format!("AWS4{}", keys.secret_key).as_bytes(),
        date.day().as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    hex(&hmac(
        &k_signing,
        string_to_sign(req, date, region).as_bytes(),
    ))
}

/// The `Authorization` header value.
pub fn authorization(req: &Request, keys: &Keys, date: &AmzDate, region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders={},Signature={}",
        keys.access_key,
        scope(date, region),
        signed_headers(req),
        signature(req, keys, date, region)
    )
}

#[cfg(test)]
mod tests {
    //! The example signature calculations of the S3 API reference
    //! ("Signature Calculations for the Authorization Header: Transferring
    //! Payload in a Single Chunk"), with the documentation's example keys:
    //! each expected value is the one AWS publishes.
    use super::*;

    fn keys() -> Keys {
        Keys {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn may_24_2013() -> AmzDate {
        let d = AmzDate::from_unix(1_369_353_600);
        assert_eq!(d.stamp, "20130524T000000Z");
        d
    }

    #[test]
    fn aws_example_get_object_with_a_range() {
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let req = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            canonical_request(&req),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let date = may_24_2013();
        assert_eq!(
            string_to_sign(&req, &date, "us-east-1"),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            authorization(&req, &keys(), &date, "us-east-1"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_put_object_with_a_payload() {
        let payload = hex(&sha256(b"Welcome to Amazon S3."));
        assert_eq!(
            payload,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", payload.as_str()),
        ];
        // The key `test$file.text` is sent encoded.
        let path = format!("/{}", uri_encode("test$file.text", true));
        let req = Request {
            method: "PUT",
            path: &path,
            query: &[],
            headers: &headers,
            payload_sha256: &payload,
        };
        let date = may_24_2013();
        assert_eq!(
            string_to_sign(&req, &date, "us-east-1"),
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"
        );
        assert_eq!(
            signature(&req, &keys(), &date, "us-east-1"),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn aws_example_list_objects_with_a_query() {
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
        ];
        let req = Request {
            method: "GET",
            path: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(canonical_query(req.query), "max-keys=2&prefix=J");
        assert_eq!(
            signature(&req, &keys(), &may_24_2013(), "us-east-1"),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn a_different_secret_or_payload_changes_the_signature() {
        let headers = [("host", "h"), ("x-amz-date", "20130524T000000Z")];
        let req = |payload| Request {
            method: "PUT",
            path: "/b/k",
            query: &[],
            headers: &headers,
            payload_sha256: payload,
        };
        let d = may_24_2013();
        let a = signature(&req(EMPTY_SHA256), &keys(), &d, "us-east-1");
        let mut other = keys();
        other.secret_key.push('x');
        assert_ne!(a, signature(&req(EMPTY_SHA256), &other, &d, "us-east-1"));
        assert_ne!(a, signature(&req("00"), &keys(), &d, "us-east-1"));
    }

    #[test]
    fn encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(uri_encode("A-z_0.9~", false), "A-z_0.9~");
        assert_eq!(uri_encode("a b+c=d&e", false), "a%20b%2Bc%3Dd%26e");
        assert_eq!(uri_encode("ab/cd/e f", true), "ab/cd/e%20f");
        assert_eq!(uri_encode("ab/cd", false), "ab%2Fcd");
        assert_eq!(uri_encode("è", false), "%C3%A8");
        // A continuation token is opaque base64: its = + / are escaped.
        assert_eq!(
            canonical_query(&[("continuation-token", "a+b/c=="), ("list-type", "2")]),
            "continuation-token=a%2Bb%2Fc%3D%3D&list-type=2"
        );
    }

    #[test]
    fn dates_are_utc_and_zero_padded() {
        assert_eq!(AmzDate::from_unix(0).stamp, "19700101T000000Z");
        let d = AmzDate::from_unix(1_709_251_199); // the last second of 2024-02-29
        assert_eq!(d.stamp, "20240229T235959Z");
        assert_eq!(d.day(), "20240229");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2, and case 6 whose key is longer than a block.
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
