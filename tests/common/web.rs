//! A small HTTPS/1.1 client for the webmail tests, over the openssl crate
//! (verifying the server against the test CA): one connection per request,
//! `Connection: close`, the session cookie and CSRF token remembered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

/// One response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A browser-like client of one webmail.
#[derive(Clone)]
pub struct Http {
    pub port: u16,
    pub ca: PathBuf,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..nl]).unwrap_or("0");
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        b = &b[nl + 2..];
        if size == 0 || b.len() < size {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
}

impl Http {
    pub fn new(port: u16, ca: &Path) -> Http {
        Http {
            port,
            ca: ca.to_path_buf(),
            cookie: None,
            csrf: None,
        }
    }

    /// Send one request with these extra headers; `host` is `mx.<domain>`
    /// only for the certificate check.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&self.ca).unwrap();
        b.set_verify(SslVerifyMode::PEER);
        let conn = b.build();
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the webmail");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut cfg = conn.configure().unwrap();
        // The test certificate names mx.<domain>, not 127.0.0.1.
        cfg.set_verify_hostname(false);
        let mut s = cfg.connect("localhost", tcp).expect("TLS handshake");
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        // A server refusing early may close before it has read everything.
        let _ = s.write_all(body);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&buf)));
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut body = buf[end + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Resp {
            status,
            headers,
            body,
        }
    }

    fn auth_headers(&self, csrf: bool) -> Vec<(String, String)> {
        let mut h = vec![];
        if let Some(c) = &self.cookie {
            h.push(("Cookie".to_string(), format!("pecd_session={c}")));
        }
        if csrf {
            if let Some(t) = &self.csrf {
                h.push(("X-CSRF-Token".to_string(), t.clone()));
            }
        }
        h
    }

    /// A request carrying the cookie (and the CSRF token when `csrf`).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
        csrf: bool,
    ) -> Resp {
        let mut h = self.auth_headers(csrf);
        if let Some(c) = ctype {
            h.push(("Content-Type".into(), c.into()));
        }
        let refs: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.raw(method, path, &refs, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, b"", false)
    }

    pub fn post_json(&self, path: &str, v: &serde_json::Value) -> Resp {
        self.send(
            "POST",
            path,
            Some("application/json"),
            v.to_string().as_bytes(),
            true,
        )
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, b"", true)
    }

    /// `POST /api/v1/session`; on 200 remembers the cookie and CSRF token.
    pub fn login_with(&mut self, user: &str, password: &str, totp: Option<&str>) -> Resp {
        let mut body = serde_json::json!({"username": user, "password": password});
        if let Some(t) = totp {
            body["totp"] = serde_json::json!(t);
        }
        let r = self.raw(
            "POST",
            "/api/v1/session",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        if r.status == 200 {
            let c = r
                .header("set-cookie")
                .expect("a session cookie")
                .to_string();
            let v = c
                .split(';')
                .next()
                .unwrap()
                .strip_prefix("pecd_session=")
                .unwrap();
            self.cookie = Some(v.to_string());
            self.csrf = r.json()["csrf"].as_str().map(str::to_string);
        }
        r
    }

    pub fn login(&mut self, user: &str, password: &str) -> Resp {
        let r = self.login_with(user, password, None);
        assert_eq!(r.status, 200, "login {user}: {}", r.text());
        r
    }

    /// A multipart/form-data POST: (name, filename, bytes) fields.
    pub fn multipart(&self, path: &str, fields: &[(&str, Option<&str>, &[u8])]) -> Resp {
        let boundary = "----pecdtestboundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, file, bytes) in fields {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        self.send(
            "POST",
            path,
            Some(&format!("multipart/form-data; boundary={boundary}")),
            &body,
            true,
        )
    }

    /// Send a PEC from the compose API.
    pub fn send_pec(&self, to: &str, subject: &str, body: &str) -> Resp {
        self.multipart(
            "/api/v1/messages",
            &[
                ("to", None, to.as_bytes()),
                ("subject", None, subject.as_bytes()),
                ("body", None, body.as_bytes()),
                ("tipo_ricevuta", None, b"completa"),
            ],
        )
    }
}

/// Percent-encode one path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
