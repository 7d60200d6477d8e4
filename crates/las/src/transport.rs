//! The connection cap: an acceptor that holds one slot per open connection.
//!
//! A connection accepted while the LAS's limit (1,024) connections are open is closed at
//! once; existing connections keep working, and a new one succeeds as soon as another closes.
//! Each held connection is itself bounded by the header-read timeout. (The CAS's acceptor also
//! caps connections per client; the LAS serves only its node's pods, so one cap in all is
//! enough.)

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Admits at most `max` connections at once; closes the others.
#[derive(Clone, Debug)]
pub(crate) struct Capped {
    permits: Arc<Semaphore>,
}

impl Capped {
    /// At most `max` connections at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
        }
    }

    fn admit<I>(&self, stream: I) -> io::Result<Counted<I>> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!("connection cap reached: closing a new connection");
            // Dropping `stream` closes the connection.
            return Err(io::Error::other("the connection cap is reached"));
        };
        Ok(Counted {
            inner: stream,
            _permit: permit,
        })
    }
}

impl<S> Accept<tokio::net::TcpStream, S> for Capped {
    type Stream = Counted<tokio::net::TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(self.admit(stream).map(|s| (s, service)))
    }
}

/// A stream that gives its connection slot back when dropped.
#[derive(Debug)]
pub(crate) struct Counted<I> {
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

    #[test]
    fn slots_are_given_back_when_streams_drop() {
        let cap = Capped::new(2);
        let a = cap.admit(()).unwrap();
        let b = cap.admit(()).unwrap();
        assert!(cap.admit(()).is_err(), "a third in all");
        drop(a);
        let c = cap.admit(()).unwrap();
        drop((b, c));
        assert_eq!(cap.permits.available_permits(), 2);
    }
}
