//! Request bodies on the web listener: read at a minimum rate, and held
//! under the provider-wide memory budget as SMTP's DATA is.
//!
//! A body arrives as long as its client likes, so what it holds is held per
//! connection. [`MinRate`] ends a body that falls below `[web]
//! body_min_rate` (after a grace of `header_timeout`); [`receive`] keeps at
//! most a small buffer in RAM, reserved from `[limits] memory_budget`, and
//! writes the rest to an unlinked file, as `smtp::incoming` does. Only a
//! finished body is brought back into memory, with what its handler needs
//! to process it reserved first ([`Upload::into_memory`]).

use std::fs::File;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::memory::{MemoryBudget, Reservation};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body slower than the minimum rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

impl std::fmt::Display for TooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body below the minimum rate")
    }
}

impl std::error::Error for TooSlow {}

/// A body that fails with [`TooSlow`] once it is behind `rate` bytes a
/// second, counted from its first read plus `grace`: it must have sent
/// `rate * (elapsed - grace)` bytes at any time, so a client cannot hold a
/// connection by trickling a byte now and then.
pub struct MinRate<B> {
    inner: B,
    rate: u64,
    grace: Duration,
    started: Option<tokio::time::Instant>,
    received: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> MinRate<B> {
    /// `inner` at `rate` bytes a second at least (0: any rate) after `grace`.
    pub fn new(inner: B, rate: u64, grace: Duration) -> MinRate<B> {
        MinRate {
            inner,
            rate,
            grace,
            started: None,
            received: 0,
            timer: None,
        }
    }

    /// When the next byte is due.
    fn deadline(&self, started: tokio::time::Instant) -> tokio::time::Instant {
        let due = Duration::from_secs_f64((self.received + 1) as f64 / self.rate as f64);
        started + self.grace + due.min(Duration::from_secs(86_400 * 365))
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(tokio::time::Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.rate == 0 => Poll::Pending,
            Poll::Pending => {
                let deadline = this.deadline(started);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body could not be received.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (bytes).
    TooLarge(usize),
    /// Below the minimum rate.
    TooSlow,
    /// The memory budget cannot hold it now.
    Busy,
    /// The client broke it off or sent it malformed.
    Broken(String),
    /// The spool file failed.
    Io(io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(n) => write!(f, "request body over {n} bytes"),
            BodyError::TooSlow => TooSlow.fmt(f),
            BodyError::Busy => f.write_str("memory budget exhausted"),
            BodyError::Broken(e) => write!(f, "request body broken off: {e}"),
            BodyError::Io(e) => write!(f, "request body spool: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Whether `e` or one of its sources is [`TooSlow`].
fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<TooSlow>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// First buffer of a body; it doubles up to the spool threshold.
const FIRST_BUFFER: usize = 8 * 1024;

/// A received body: its head in RAM, the rest in an unlinked file.
pub struct Upload {
    budget: Arc<MemoryBudget>,
    memory: Reservation,
    threshold: usize,
    spool_dir: PathBuf,
    buf: Vec<u8>,
    file: Option<File>,
    spooled: usize,
}

/// A finished body in memory and the memory its handler may use.
pub struct InMemory {
    /// The body's bytes.
    pub bytes: Vec<u8>,
    /// Keep it until the work on the bytes is done.
    pub memory: Reservation,
}

/// Read `body` whole, at most `limit` bytes, keeping at most `threshold`
/// of them in memory (taken from `budget`) and the rest in an unlinked file
/// in `spool_dir`.
pub async fn receive<B>(
    mut body: B,
    limit: usize,
    budget: &Arc<MemoryBudget>,
    threshold: usize,
    spool_dir: PathBuf,
) -> Result<Upload, BodyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut up = Upload {
        budget: budget.clone(),
        memory: budget.empty(),
        threshold: threshold.max(FIRST_BUFFER),
        spool_dir,
        buf: Vec::new(),
        file: None,
        spooled: 0,
    };
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            let e: BoxError = e.into();
            if is_too_slow(e.as_ref()) {
                BodyError::TooSlow
            } else {
                BodyError::Broken(e.to_string())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if up.len().saturating_add(data.len()) > limit {
            return Err(BodyError::TooLarge(limit));
        }
        up.push(&data).await?;
    }
    Ok(up)
}

impl Upload {
    /// Bytes received.
    pub fn len(&self) -> usize {
        self.spooled + self.buf.len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn push(&mut self, mut data: &[u8]) -> Result<(), BodyError> {
        while !data.is_empty() {
            let room = self.buf.capacity() - self.buf.len();
            if room == 0 {
                self.make_room().await?;
                continue;
            }
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }

    /// Grow the buffer within the budget, or empty it into the file.
    async fn make_room(&mut self) -> Result<(), BodyError> {
        let cap = self.buf.capacity();
        if cap < self.threshold {
            let want = (cap * 2).clamp(FIRST_BUFFER, self.threshold);
            if self.memory.try_grow_to(want) {
                self.buf.reserve_exact(want - self.buf.len());
                return Ok(());
            }
        }
        if self.buf.is_empty() {
            // Not even a first buffer: the budget is exhausted.
            return Err(BodyError::Busy);
        }
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.take();
        let dir = self.spool_dir.clone();
        let (file, mut buf) =
            tokio::task::spawn_blocking(move || -> io::Result<(File, Vec<u8>)> {
                let mut f = match file {
                    Some(f) => f,
                    None => crate::smtp::unlinked_spool_file(&dir)?,
                };
                f.write_all(&buf)?;
                Ok((f, buf))
            })
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(BodyError::Io)?;
        self.spooled += buf.len();
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        Ok(())
    }

    /// The whole body in memory, with `factor` times its size reserved
    /// (at most the whole budget) for the work on it; waits up to `wait`
    /// for other holders to give memory back.
    pub async fn into_memory(
        mut self,
        factor: usize,
        wait: Duration,
    ) -> Result<InMemory, BodyError> {
        let size = self.len();
        let need = size
            .saturating_mul(factor.max(1))
            .saturating_add(if self.file.is_some() {
                self.buf.capacity()
            } else {
                0
            })
            .max(self.buf.capacity())
            .min(self.budget.limit());
        if !self.memory.grow_within(need, wait).await {
            tracing::warn!(size, need, "memory budget exhausted for a web request");
            return Err(BodyError::Busy);
        }
        let Some(file) = self.file.take() else {
            return Ok(InMemory {
                bytes: self.buf,
                memory: self.memory,
            });
        };
        let (spooled, tail) = (self.spooled, std::mem::take(&mut self.buf));
        let bytes = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let mut f = file;
            f.rewind()?;
            let mut out = Vec::with_capacity(spooled + tail.len());
            f.take(spooled as u64).read_to_end(&mut out)?;
            if out.len() != spooled {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            out.extend_from_slice(&tail);
            Ok(out)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(BodyError::Io)?;
        Ok(InMemory {
            bytes,
            memory: self.memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of the given chunks, each after `gap`.
    struct Chunks {
        chunks: std::collections::VecDeque<Bytes>,
        gap: Duration,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Chunks {
        fn new(chunks: Vec<&'static [u8]>, gap: Duration) -> Chunks {
            Chunks {
                chunks: chunks.into_iter().map(Bytes::from_static).collect(),
                gap,
                sleep: None,
            }
        }
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.chunks.is_empty() {
                return Poll::Ready(None);
            }
            let gap = self.gap;
            let s = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            let c = self.chunks.pop_front().unwrap();
            Poll::Ready(Some(Ok(Frame::data(c))))
        }
    }

    fn spool() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[tokio::test]
    async fn a_body_below_the_minimum_rate_fails_after_the_grace() {
        let budget = MemoryBudget::unlimited();
        let dir = spool();
        // 1000 bytes a second after 300 ms: a byte every 100 ms is too slow.
        let grace = Duration::from_millis(300);
        let slow = MinRate::new(
            Chunks::new(vec![b"a"; 30], Duration::from_millis(100)),
            1000,
            grace,
        );
        let t = tokio::time::Instant::now();
        let r = receive(slow, 1000, &budget, 64, dir.path().into()).await;
        assert!(matches!(r, Err(BodyError::TooSlow)), "{:?}", r.err());
        let took = t.elapsed();
        assert!(took >= grace && took < grace * 3, "{took:?}");
        // Fast enough: 10 chunks of 100 bytes, one every 50 ms.
        let ok = MinRate::new(
            Chunks::new(vec![&[b'x'; 100]; 10], Duration::from_millis(50)),
            1000,
            grace,
        );
        let up = receive(ok, 10_000, &budget, 64, dir.path().into())
            .await
            .unwrap();
        assert_eq!(up.len(), 1000);
    }

    #[tokio::test]
    async fn a_large_body_is_spooled_and_comes_back_whole() {
        let budget = MemoryBudget::new(1 << 20);
        let dir = spool();
        let chunk: &'static [u8] = &[7u8; 10_000];
        let body = Chunks::new(vec![chunk; 100], Duration::ZERO);
        let up = receive(body, 2_000_000, &budget, 64 * 1024, dir.path().into())
            .await
            .unwrap();
        assert_eq!(up.len(), 1_000_000);
        // Only the buffer is held while the body waits.
        assert!(budget.in_use() <= 64 * 1024, "{}", budget.in_use());
        assert!(up.file.is_some());
        // The spool file has no name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let whole = up.into_memory(1, Duration::ZERO).await.unwrap();
        assert_eq!(whole.bytes.len(), 1_000_000);
        assert!(whole.bytes.iter().all(|b| *b == 7));
        assert!(budget.in_use() >= 1_000_000);
        drop(whole);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn limits_and_budget_are_answered() {
        let dir = spool();
        let budget = MemoryBudget::new(100_000);
        let chunk: &'static [u8] = &[1u8; 1000];
        let big = Chunks::new(vec![chunk; 20], Duration::ZERO);
        let r = receive(big, 5000, &budget, 64 * 1024, dir.path().into()).await;
        assert!(matches!(r, Err(BodyError::TooLarge(5000))));
        assert_eq!(budget.in_use(), 0);
        // The budget cannot take 20 times the body.
        let body = Chunks::new(vec![chunk; 20], Duration::ZERO);
        let up = receive(body, 1 << 20, &budget, 64 * 1024, dir.path().into())
            .await
            .unwrap();
        let held = budget.try_reserve(50_000).unwrap();
        let r = up.into_memory(3, Duration::from_millis(10)).await;
        assert!(matches!(r, Err(BodyError::Busy)));
        drop(held);
        // No first buffer at all when the budget is empty.
        let all = budget.try_reserve(100_000).unwrap();
        let body = Chunks::new(vec![chunk], Duration::ZERO);
        let r = receive(body, 1 << 20, &budget, 64 * 1024, dir.path().into()).await;
        assert!(matches!(r, Err(BodyError::Busy)));
        drop(all);
        assert_eq!(budget.in_use(), 0);
    }
}
