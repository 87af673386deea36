//! The writer task of a session: it takes every chunk of output that is ready (up to
//! [`WRITE_BATCH_CHUNKS_MAX`]) and writes them with one vectored write per wakeup (`writev` on TCP;
//! rustls encrypts the slices as one payload, in records of up to 16 KiB), handling partial writes.
//!
//! A peer that stops reading must not keep its socket and its queued output: every write, flush
//! and shutdown must make progress within the stall limit, or the writer gives up and drops its
//! half of the socket. Once the session has ended (its sender dropped), what is still queued gets
//! one more stall period in all to leave, so a peer that reads a byte now and then cannot hold a
//! closed session's socket (and its slot under `max_connections`) for long either.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Encoded chunks queued for the writer; past it the session's output buffer grows up to
/// [`super::session::OUTPUT_BYTES_MAX`].
pub const WRITE_QUEUE_CHUNKS_MAX: usize = 64;
/// Chunks the writer hands to one vectored write (well under Linux's `IOV_MAX` of 1,024).
pub const WRITE_BATCH_CHUNKS_MAX: usize = WRITE_QUEUE_CHUNKS_MAX;

/// Why the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEnd {
    /// The session ended and everything queued was written, then the socket was shut down.
    Finished,
    /// A write failed (the peer reset or closed the connection).
    Failed,
    /// No progress for the stall limit (or the output of an ended session did not leave in time).
    Stalled,
}

/// Bytes the session handed to the writer that are not written yet (queued or in the writer's
/// batch): the session adds what it queues, the writer takes off what it writes, so the session
/// can bound all the output a client has not read, not just its own buffer.
pub type Unwritten = Arc<AtomicUsize>;

/// Writes what the session queues on `rx` until it ends; see the module doc.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<Bytes>,
    stall: Duration,
    unwritten: Unwritten,
) -> WriteEnd {
    let mut chunks: VecDeque<Bytes> = VecDeque::with_capacity(WRITE_BATCH_CHUNKS_MAX);
    let mut drain_by: Option<Instant> = None;
    while let Some(chunk) = rx.recv().await {
        chunks.push_back(chunk);
        loop {
            // Coalesce whatever else is ready into this write.
            while chunks.len() < WRITE_BATCH_CHUNKS_MAX {
                match rx.try_recv() {
                    Ok(more) => chunks.push_back(more),
                    Err(_) => break,
                }
            }
            if chunks.is_empty() {
                break;
            }
            if drain_by.is_none() && rx.is_closed() {
                drain_by = Some(Instant::now() + stall);
            }
            let by = progress_deadline(stall, drain_by);
            match tokio::time::timeout_at(by, write_some(&mut write, &mut chunks)).await {
                Ok(Ok(written)) => {
                    unwritten.fetch_sub(written, Ordering::Relaxed);
                }
                Ok(Err(_)) => return WriteEnd::Failed,
                Err(_) => return WriteEnd::Stalled,
            }
        }
        let by = progress_deadline(stall, drain_by);
        match tokio::time::timeout_at(by, write.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return WriteEnd::Failed,
            Err(_) => return WriteEnd::Stalled,
        }
    }
    // A TLS shutdown writes close_notify: it too must not wait on a peer that does not read.
    match tokio::time::timeout_at(progress_deadline(stall, drain_by), write.shutdown()).await {
        Ok(Ok(())) => WriteEnd::Finished,
        Ok(Err(_)) => WriteEnd::Failed,
        Err(_) => WriteEnd::Stalled,
    }
}

/// The next write must progress within one stall period, and never past the drain deadline.
fn progress_deadline(stall: Duration, drain_by: Option<Instant>) -> Instant {
    let next = Instant::now() + stall;
    drain_by.map_or(next, |d| d.min(next))
}

/// One vectored write of the queued chunks; drops what was written, keeps the rest in order.
/// Returns the bytes written.
async fn write_some<W: AsyncWrite + Unpin>(
    write: &mut W,
    chunks: &mut VecDeque<Bytes>,
) -> std::io::Result<usize> {
    let written = {
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH_CHUNKS_MAX];
        let mut count = 0;
        for (slice, chunk) in slices.iter_mut().zip(chunks.iter()) {
            *slice = IoSlice::new(chunk);
            count += 1;
        }
        let slices = slices.get(..count).unwrap_or_default();
        write.write_vectored(slices).await?
    };
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let mut left = written;
    while left > 0 {
        let Some(front) = chunks.front_mut() else {
            break;
        };
        if front.len() <= left {
            left -= front.len();
            chunks.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
    // Empty chunks (never queued today) would otherwise stay at the front.
    while chunks.front().is_some_and(Bytes::is_empty) {
        chunks.pop_front();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};

    use super::*;

    const STALL: Duration = Duration::from_secs(10);

    /// A socket that takes at most `per_call` bytes per write and records every call; with
    /// `per_call` 0 it never takes anything (a peer that does not read).
    struct Recorder {
        per_call: usize,
        bytes: Vec<u8>,
        calls: usize,
        shut: bool,
    }

    impl Recorder {
        fn new(per_call: usize) -> Self {
            Self {
                per_call,
                bytes: Vec::new(),
                calls: 0,
                shut: false,
            }
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.calls += 1;
            if self.per_call == 0 {
                // Never ready, never wakes: the peer's window stays shut.
                return Poll::Pending;
            }
            let mut taken = 0;
            for buf in bufs {
                let n = buf.len().min(self.per_call - taken);
                self.bytes.extend_from_slice(&buf[..n]);
                taken += n;
            }
            Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    /// A queue holding `chunks` whose sender is gone, and its unwritten count.
    fn queued(chunks: &[&'static [u8]]) -> (mpsc::Receiver<Bytes>, Unwritten) {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CHUNKS_MAX);
        let unwritten = Unwritten::default();
        for chunk in chunks {
            tx.try_send(Bytes::from_static(chunk)).unwrap();
            unwritten.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        (rx, unwritten)
    }

    #[tokio::test]
    async fn chunks_that_are_ready_leave_in_one_write() {
        let chunks: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        let mut socket = Recorder::new(usize::MAX / 2);
        let (rx, unwritten) = queued(&chunks);
        let end = write_loop(&mut socket, rx, STALL, unwritten.clone()).await;
        assert_eq!(end, WriteEnd::Finished);
        assert_eq!(unwritten.load(Ordering::Relaxed), 0);
        assert_eq!(socket.bytes, b"onetwothreefour");
        assert_eq!(socket.calls, 1);
        assert!(socket.shut);
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let chunks: [&[u8]; 5] = [b"abcdefgh", b"", b"ij", b"klmnopqrstuvw", b"xyz"];
        let mut socket = Recorder::new(3);
        let (rx, unwritten) = queued(&chunks);
        let end = write_loop(&mut socket, rx, STALL, unwritten.clone()).await;
        assert_eq!(end, WriteEnd::Finished);
        assert_eq!(unwritten.load(Ordering::Relaxed), 0);
        assert_eq!(socket.bytes, b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(socket.calls, 9, "26 bytes, 3 per call");
        assert!(socket.shut);
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_is_given_up_after_the_stall_limit() {
        let mut socket = Recorder::new(0);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CHUNKS_MAX);
        tx.try_send(Bytes::from_static(b"answer")).unwrap();
        // The session still lives (its sender is held): the stall limit alone ends the writer
        // (a short one, so that the test ends soon).
        let unwritten = Unwritten::new(AtomicUsize::new(6));
        let end = write_loop(
            &mut socket,
            rx,
            Duration::from_millis(20),
            unwritten.clone(),
        )
        .await;
        assert_eq!(end, WriteEnd::Stalled);
        assert_eq!(unwritten.load(Ordering::Relaxed), 6, "nothing was written");
        assert!(socket.calls >= 1);
        assert!(socket.bytes.is_empty() && !socket.shut);
        drop(tx);
    }
}
