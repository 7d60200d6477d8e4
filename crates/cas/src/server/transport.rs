//! The connection cap: an acceptor that runs before TLS and holds one permit per connection.
//!
//! A connection accepted while [`Limits::max_connections`] connections are open (in their TLS
//! handshake or serving) is closed at once, before any TLS work: existing connections keep
//! working, and a new one succeeds as soon as another closes. Each held connection is itself
//! bounded by the handshake and header-read timeouts, so a client cannot keep a slot by
//! stalling.
//!
//! [`Limits::max_connections`]: crate::config::Limits::max_connections

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admits at most `permits` connections at once; closes the others.
#[derive(Clone, Debug)]
pub struct Capped {
    permits: Arc<Semaphore>,
}

impl Capped {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

impl<I, S> Accept<I, S> for Capped {
    type Stream = Counted<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Counted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Counted {
                    inner: stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                tracing::warn!("connection cap reached: closing a new connection");
                // Dropping `stream` closes the connection.
                Err(io::Error::other("the connection cap is reached"))
            }
        })
    }
}

/// A stream that gives its connection slot back when dropped.
#[derive(Debug)]
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_given_back_when_streams_drop() {
        let cap = Capped::new(2);
        let a = cap.accept((), ()).await.unwrap();
        let b = cap.accept((), ()).await.unwrap();
        assert!(cap.accept((), ()).await.is_err(), "a third is refused");
        drop(a);
        let c = cap.accept((), ()).await.unwrap();
        drop((b, c));
        assert_eq!(cap.permits.available_permits(), 2);
    }
}
