//! Connection slots: `max_connections` is a count of open sockets, never exceeded.
//!
//! A slot is taken at accept, before the TLS handshake, with one atomic try-acquire (so hundreds
//! of simultaneous connects admit exactly the limit), and it travels inside the socket
//! ([`SlotStream`]): it is given back when the socket is dropped, that is when both the session's
//! reader and its writer have let go of it. A handshake in progress, a session, and a writer still
//! delivering after its session ended all hold their slot; none can hold it forever, because the
//! handshake, the login and the writer each have a deadline.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use paymesh_actors::metrics::Metrics;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The listeners' shared slots (TCP and TLS together).
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    free: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl ConnectionSlots {
    /// `max` slots; `metrics.connections` counts the ones taken.
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            free: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            metrics,
        }
    }

    /// A slot, or `None` when all are taken.
    pub fn try_take(&self) -> Option<Slot> {
        let permit = self.free.clone().try_acquire_owned().ok()?;
        self.metrics.connections.inc();
        Some(Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

/// One taken slot; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The gauge goes down before the permit (a field, dropped after this) is released, so a
        // new taker's increment always comes after it: the gauge never shows more than the limit.
        self.metrics.connections.dec();
    }
}

/// A socket that holds its connection slot until it is dropped.
#[derive(Debug)]
pub struct SlotStream<S> {
    inner: S,
    _slot: Slot,
}

impl<S> SlotStream<S> {
    /// `inner` holding `slot`.
    pub fn new(inner: S, slot: Slot) -> Self {
        Self { inner, _slot: slot }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SlotStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SlotStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn slots_run_out_at_the_limit_and_come_back_when_dropped() {
        let metrics = Arc::new(Metrics::new(1));
        let slots = ConnectionSlots::new(2, metrics.clone());
        let a = slots.try_take().unwrap();
        let b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(metrics.connections.get(), 2);
        drop(a);
        assert_eq!(metrics.connections.get(), 1);
        let c = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop((b, c));
        assert_eq!(metrics.connections.get(), 0);
    }

    #[tokio::test]
    async fn a_stream_gives_its_slot_back_when_both_halves_are_dropped() {
        let metrics = Arc::new(Metrics::new(1));
        let slots = ConnectionSlots::new(1, metrics.clone());
        let (_client, server) = tokio::io::duplex(64);
        let stream = SlotStream::new(server, slots.try_take().unwrap());
        let (read, write) = tokio::io::split(stream);
        drop(write);
        assert!(
            slots.try_take().is_none(),
            "the reader still holds the socket"
        );
        drop(read);
        assert!(slots.try_take().is_some());
    }
}
