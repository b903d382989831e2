//! Sans-IO DATA ingest: bytes in, "need more" or the finished message out.
//!
//! The only end of data is `<CRLF>.<CRLF>`, the CRLF before the dot being
//! either the previous line's end or the start of the DATA phase. SMTP
//! smuggling (CVE-2023-51764/51765/51766) abuses receivers and relays that
//! disagree on that: a sender hides `<LF>.<CRLF>MAIL FROM:...` inside one
//! message and a lenient hop sees two. We never end on anything else and we
//! refuse, after the real terminator, any message that contains a bare CR or
//! a bare LF at all, so nothing ambiguous is ever stored or relayed. The
//! hostile-input table is in the tests right below.
//!
//! Dot-unstuffing follows RFC 5321 §4.5.2: when a line starts with a dot and
//! has other characters, the first dot is removed (so `..` becomes `.`).
//! Oversized content keeps being parsed (and discarded) up to the terminator,
//! so the session stays in sync and can answer 552 and go on.

/// How a DATA phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message: exact bytes, dot-unstuffed, CRLF line ends, terminator removed.
    Message(Vec<u8>),
    /// Content bigger than the limit; it was discarded.
    TooBig,
    /// Content with a bare CR or LF; it was discarded.
    BareLineEnding,
}

/// Where we are relative to line starts; states are named after what they wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    /// At the start of a line (after CRLF, or at the start of DATA).
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line; waiting for its LF.
    Cr,
    /// A line that started with `.`.
    Dot,
    /// A line that is `.` then CR: LF now ends the data.
    DotCr,
}

/// Incremental DATA reader; feed it whatever arrived, in any chunking.
#[derive(Debug)]
pub struct DataReader {
    pos: Pos,
    out: Vec<u8>,
    size: usize,
    max: usize,
    bare: bool,
}

impl DataReader {
    /// A reader that keeps at most `max` bytes of message.
    pub fn new(max: usize) -> Self {
        DataReader {
            pos: Pos::LineStart,
            out: Vec::new(),
            size: 0,
            max,
            bare: false,
        }
    }

    /// Bytes of (unstuffed) content seen so far, kept or not.
    pub fn size(&self) -> usize {
        self.size
    }

    fn emit(&mut self, b: u8) {
        self.size = self.size.saturating_add(1);
        if self.size <= self.max {
            self.out.push(b);
        } else if !self.out.is_empty() {
            // Past the limit: free the memory, we will only answer 552.
            self.out = Vec::new();
        }
    }

    /// True once the content went past the limit (its bytes are no longer kept).
    pub fn is_oversized(&self) -> bool {
        self.size > self.max
    }

    /// Kept bytes not yet taken with [`Self::take_kept`].
    pub fn kept(&self) -> usize {
        self.out.len()
    }

    /// Allocated room for kept bytes; what the reader holds in memory.
    pub fn capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Bytes that can be kept before the buffer would reallocate. Feeding at
    /// most this much input never grows the buffer: unstuffing only shrinks.
    pub fn room(&self) -> usize {
        self.out.capacity() - self.out.len()
    }

    /// Make the buffer hold `total` bytes without reallocating.
    pub fn grow_to(&mut self, total: usize) {
        self.out.reserve_exact(total.saturating_sub(self.out.len()));
    }

    /// The kept bytes so far (to move elsewhere, e.g. to disk); the reader
    /// goes on with an empty buffer until [`Self::give_back`].
    pub fn take_kept(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Reuse a buffer from [`Self::take_kept`] (emptied; its allocation kept).
    pub fn give_back(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if !self.is_oversized() && self.out.capacity() == 0 {
            self.out = buf;
        }
    }

    /// Forget the kept bytes but keep the allocation.
    pub fn clear_kept(&mut self) {
        self.out.clear();
    }

    /// Consume input; returns how many bytes were used and, once the terminator
    /// was seen, the outcome. Bytes after the terminator are not consumed: they
    /// are the next pipelined commands.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        for (i, &b) in input.iter().enumerate() {
            if self.step(b) {
                return (i + 1, Some(self.finish()));
            }
        }
        (input.len(), None)
    }

    /// One byte; true when it completed the terminator.
    fn step(&mut self, b: u8) -> bool {
        match (self.pos, b) {
            (Pos::LineStart, b'.') => self.pos = Pos::Dot,
            (Pos::LineStart | Pos::Mid, b'\r') => {
                self.emit(b'\r');
                self.pos = Pos::Cr;
            }
            (Pos::LineStart | Pos::Mid, b'\n') => {
                // Bare LF: the next byte is NOT at a line start.
                self.bare = true;
                self.emit(b'\n');
                self.pos = Pos::Mid;
            }
            (Pos::LineStart | Pos::Mid, _) => {
                self.emit(b);
                self.pos = Pos::Mid;
            }
            (Pos::Cr, b'\n') => {
                self.emit(b'\n');
                self.pos = Pos::LineStart;
            }
            (Pos::Cr, _) => {
                // The CR before this byte was bare; reprocess b mid-line.
                self.bare = true;
                self.pos = Pos::Mid;
                return self.step(b);
            }
            (Pos::Dot, b'\r') => self.pos = Pos::DotCr,
            (Pos::Dot, b'\n') => {
                // `.<LF>`: not an end; keep the dot so the evidence is intact.
                self.bare = true;
                self.emit(b'.');
                self.emit(b'\n');
                self.pos = Pos::Mid;
            }
            (Pos::Dot, _) => {
                // Leading dot of a line with more characters is removed.
                self.pos = Pos::Mid;
                return self.step(b);
            }
            (Pos::DotCr, b'\n') => return true,
            (Pos::DotCr, _) => {
                // `.<CR>x`: a line with more characters, so the dot goes; the CR is bare.
                self.emit(b'\r');
                self.pos = Pos::Cr;
                return self.step(b);
            }
        }
        false
    }

    fn finish(&mut self) -> DataOutcome {
        let out = std::mem::take(&mut self.out);
        if self.bare {
            DataOutcome::BareLineEnding
        } else if self.size > self.max {
            DataOutcome::TooBig
        } else {
            DataOutcome::Message(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Want {
        /// Message with these bytes, terminator ends at `consumed`.
        Msg(&'static [u8], usize),
        Bare(usize),
        TooBig(usize),
        /// No terminator in the input.
        More,
    }
    use Want::*;

    /// The input's length: the real terminator is the last thing in it.
    const END: usize = usize::MAX;

    /// Hostile and ordinary inputs. Every one is also fed at every split point.
    #[rustfmt::skip]
    const TABLE: &[(&str, &[u8], usize, Want)] = &[
        ("empty message", b".\r\n", 100, Msg(b"", 3)),
        ("one line", b"hi\r\n.\r\n", 100, Msg(b"hi\r\n", 7)),
        ("pipelined after", b"hi\r\n.\r\nQUIT\r\n", 100, Msg(b"hi\r\n", 7)),
        ("dot stuffed", b"..hidden\r\n.\r\n", 100, Msg(b".hidden\r\n", 13)),
        ("double dot line", b"a\r\n..\r\n.\r\n", 100, Msg(b"a\r\n.\r\n", 10)),
        ("unstuffed leading dot", b".x\r\n.\r\n", 100, Msg(b"x\r\n", 7)),
        ("dot mid line kept", b"a.b\r\n.\r\n", 100, Msg(b"a.b\r\n", 8)),
        ("dot space is not end", b"a\r\n. \r\n.\r\n", 100, Msg(b"a\r\n \r\n", 10)),
        ("no terminator yet", b"hello\r\n", 100, More),
        ("no final CRLF", b"hello.\r\n", 100, More),
        // SMTP smuggling: none of these may end the data; all are refused.
        ("LF dot CRLF", b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", 100, Bare(END)),
        ("LF dot LF", b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n", 100, Bare(END)),
        ("CR dot CRLF", b"a\r.\r\nMAIL FROM:<x@y>\r\n.\r\n", 100, Bare(END)),
        ("CRLF dot LF", b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n", 100, Bare(END)),
        ("CRLF dot CR", b"a\r\n.\rMAIL\r\n.\r\n", 100, Bare(END)),
        ("CRLF dot CRCRLF", b"a\r\n.\r\r\nb\r\n.\r\n", 100, Bare(END)),
        ("CR CR LF", b"a\r\r\n.\r\n", 100, Bare(END)),
        ("bare LF at start", b"\n.\r\n", 100, More),
        ("bare LF at start, then end", b"\n.\r\n.\r\n", 100, Bare(END)),
        ("bare LF mid", b"a\nb\r\n.\r\n", 100, Bare(END)),
        ("bare CR mid", b"a\rb\r\n.\r\n", 100, Bare(END)),
        ("dot LF at start", b".\n.\r\n", 100, More),
        ("dot LF at start, then end", b".\n.\r\n.\r\n", 100, Bare(END)),
        ("LF dot CRLF only", b"x\n.\r\n", 100, More),
        ("LF dot LF only", b"x\n.\n", 100, More),
        ("CR dot CRLF only", b"x\r.\r\n", 100, More),
        ("CRLF dot LF only", b"x\r\n.\n", 100, More),
        // Size: counted on unstuffed content, terminator excluded.
        ("exactly at limit", b"abc\r\n.\r\n", 5, Msg(b"abc\r\n", 8)),
        ("one over limit", b"abcd\r\n.\r\n", 5, TooBig(9)),
        ("over limit then pipelined", b"abcdefgh\r\n.\r\nRSET\r\n", 5, TooBig(13)),
        ("bare wins over size", b"abcdef\ngh\r\n.\r\n", 5, Bare(END)),
    ];

    fn check(name: &str, chunks: &[&[u8]], max: usize, want: &Want) {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let end = |n: usize| if n == END { total } else { n };
        let mut r = DataReader::new(max);
        let mut consumed = 0;
        let mut got = None;
        for c in chunks {
            let (n, out) = r.feed(c);
            consumed += n;
            if out.is_some() {
                got = out;
                break;
            }
            assert_eq!(n, c.len(), "{name}: partial consume without an end");
        }
        match (want, got) {
            (Msg(m, n), Some(DataOutcome::Message(g))) => {
                assert_eq!(g, m.to_vec(), "{name}: bytes");
                assert_eq!(consumed, end(*n), "{name}: consumed");
            }
            (Bare(n), Some(DataOutcome::BareLineEnding)) => {
                assert_eq!(consumed, end(*n), "{name}")
            }
            (TooBig(n), Some(DataOutcome::TooBig)) => assert_eq!(consumed, end(*n), "{name}"),
            (More, None) => {}
            (_, g) => panic!("{name}: unexpected outcome {g:?}"),
        }
    }

    #[test]
    fn table_whole() {
        for (name, input, max, want) in TABLE {
            check(name, &[input], *max, want);
        }
    }

    #[test]
    fn table_split_at_every_boundary() {
        for (name, input, max, want) in TABLE {
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                check(&format!("{name} @{cut}"), &[a, b], *max, want);
            }
        }
    }

    #[test]
    fn table_byte_by_byte() {
        for (name, input, max, want) in TABLE {
            let chunks: Vec<&[u8]> = input.chunks(1).collect();
            check(name, &chunks, *max, want);
        }
    }

    #[test]
    fn large_oversize_does_not_keep_memory() {
        let mut r = DataReader::new(10);
        let big = vec![b'x'; 100_000];
        assert_eq!(r.feed(&big), (100_000, None));
        assert!(r.out.capacity() < 100);
        assert_eq!(r.size(), 100_000);
        assert_eq!(r.feed(b"\r\n.\r\n").1, Some(DataOutcome::TooBig));
    }
}
