//! Where the daemon's and the CLI's diagnostics go: stderr, as text or JSON.
//!
//! Logged values come from the network (an SMTP AUTH user name, a MAIL
//! FROM, a clamd reply): every control character in them is escaped, so
//! none can end a line and forge the next, or send a terminal escape to
//! whoever reads the log.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Install the global subscriber; `default` is the filter when `RUST_LOG` is unset.
///
/// A second call is a no-op, so `serve` may set its configured format even
/// if something installed one first.
pub fn init(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Escape codes are noise in a file or journald; only a person at a
    // terminal benefits from colour.
    let ansi = std::io::stderr().is_terminal();
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .fmt_fields(escaped_fields())
            .try_init(),
        // Fields at the top level so a collector can filter on
        // `identificativo` or `user` without digging into `fields`.
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(JsonEscaping(std::io::stderr))
            .with_ansi(ansi)
            .json()
            .flatten_event(true)
            .try_init(),
    };
}

/// The text format's fields, `name=value` as tracing-subscriber writes
/// them (the message bare), each value's control characters escaped.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    debug_fn(|w: &mut Writer<'_>, field, value| {
        let mut text = String::new();
        write!(text, "{value:?}")?;
        let text = escape_controls(&text);
        match field.name() {
            "message" => w.write_str(&text),
            name => write!(w, "{}={text}", name.strip_prefix("r#").unwrap_or(name)),
        }
    })
    .delimited(" ")
}

/// Whether `c` must not reach a log line as itself: C0 and C1 controls
/// (line ends, ESC, CSI), DEL, and the Unicode line and paragraph
/// separators some readers break lines at.
fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` with each unsafe character written as its Rust escape (`\n`,
/// `\u{1b}`): visible, and unable to start a line.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The JSON format's writer: serde_json escapes C0 controls in strings but
/// writes DEL, the C1 controls and the line separators as they are; they
/// can only be inside strings (the rest of a JSON line is ASCII), where
/// `\uXXXX` is their escape.
#[derive(Clone, Copy)]
struct JsonEscaping<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonEscaping<M> {
    type Writer = JsonEscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer())
    }
}

/// One JSON line's writer (see [`JsonEscaping`]).
struct JsonEscapingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over a whole line at once: it is consumed
        // whole, so no character is ever split between two calls.
        self.0.write_all(&escape_json_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A JSON line with DEL, the C1 controls and U+2028/9 as `\uXXXX`.
fn escape_json_line(buf: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(buf) else {
        return Cow::Borrowed(buf);
    };
    // C0 controls are escaped by serde_json already.
    let raw = |c: char| is_unsafe(c) && c as u32 >= 0x7f;
    if !text.chars().any(raw) {
        return Cow::Borrowed(buf);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if raw(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A MakeWriter into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    const HOSTILE: &str =
        "mallory\n2026-01-01T00:00:00Z  INFO login user=root\x1b[2J\u{9b}31m\r\u{2028}";

    fn log_hostile() {
        let span = tracing::info_span!("smtp", peer = %HOSTILE);
        let _e = span.enter();
        tracing::warn!(user = %HOSTILE, name = HOSTILE, "authentication failed for {HOSTILE}");
    }

    #[test]
    fn text_lines_escape_every_control_character() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(sub, log_hostile);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(
            !out.trim_end_matches('\n').chars().any(is_unsafe),
            "{out:?}"
        );
        assert!(out.contains("user=mallory\\n2026-01-01"), "{out}");
        assert!(out.contains("\\u{1b}[2J"), "{out}");
        assert!(
            out.contains("authentication failed for mallory\\n"),
            "{out}"
        );
        assert!(out.contains("smtp{peer=mallory\\n"), "{out}");
    }

    #[test]
    fn json_lines_escape_every_control_character() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(JsonEscaping(buf.clone()))
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(sub, log_hostile);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        assert!(
            !out.trim_end_matches('\n').chars().any(is_unsafe),
            "{out:?}"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["user"], HOSTILE, "the value is kept, only escaped");
    }

    #[test]
    fn escaping_leaves_ordinary_text_alone() {
        assert!(matches!(
            escape_controls("alice@pec.example.it àè"),
            Cow::Borrowed(_)
        ));
        assert_eq!(escape_controls("a\tb\u{7f}"), "a\\tb\\u{7f}");
    }
}
