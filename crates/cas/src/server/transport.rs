//! The connection caps: an acceptor that runs before TLS and holds one slot per connection.
//!
//! A connection accepted while [`Limits::max_connections`] connections are open (in their TLS
//! handshake or serving), or while its client (peer IP address, IPv6 by /64) holds
//! [`Limits::max_connections_per_client`], is closed at once, before any TLS work: existing
//! connections keep working, and a new one succeeds as soon as another closes. Each held
//! connection is itself bounded by the handshake and header-read timeouts, and the per-client
//! cap keeps one client from holding every slot.
//!
//! [`Limits::max_connections`]: crate::config::Limits::max_connections
//! [`Limits::max_connections_per_client`]: crate::config::Limits::max_connections_per_client

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections held per client.
type PerClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Admits at most `max` connections at once, `per_client` from one client; closes the others.
#[derive(Clone, Debug)]
pub struct Capped {
    permits: Arc<Semaphore>,
    per_client: usize,
    clients: PerClient,
}

impl Capped {
    /// At most `max` connections at once, `per_client` of them from one client.
    pub fn new(max: usize, per_client: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            per_client,
            clients: PerClient::default(),
        }
    }

    fn admit<I>(&self, stream: I, client: IpAddr) -> io::Result<Counted<I>> {
        let client = super::rate::client_key(client);
        let slot = {
            let mut clients = self
                .clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let held = clients.entry(client).or_insert(0);
            if *held >= self.per_client {
                tracing::warn!(%client, "per-client connection cap reached: closing");
                // Dropping `stream` closes the connection.
                return Err(io::Error::other("the per-client connection cap is reached"));
            }
            *held += 1;
            ClientSlot {
                clients: self.clients.clone(),
                client,
            }
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!("connection cap reached: closing a new connection");
            return Err(io::Error::other("the connection cap is reached"));
        };
        Ok(Counted {
            inner: stream,
            _permit: permit,
            _slot: slot,
        })
    }
}

impl<S> Accept<tokio::net::TcpStream, S> for Capped {
    type Stream = Counted<tokio::net::TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        // A socket without a peer address is counted as one shared client.
        let client = stream
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        std::future::ready(self.admit(stream, client).map(|s| (s, service)))
    }
}

/// A client's share of the per-client cap, given back when dropped.
#[derive(Debug)]
struct ClientSlot {
    clients: PerClient,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held) = clients.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// A stream that gives its connection slots back when dropped.
#[derive(Debug)]
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    _slot: ClientSlot,
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_given_back_when_streams_drop() {
        let cap = Capped::new(3, 2);
        let a = cap.admit((), ip("192.0.2.1")).unwrap();
        let b = cap.admit((), ip("192.0.2.1")).unwrap();
        assert!(
            cap.admit((), ip("192.0.2.1")).is_err(),
            "a third from one client"
        );
        let c = cap.admit((), ip("192.0.2.2")).unwrap();
        assert!(cap.admit((), ip("192.0.2.3")).is_err(), "a fourth in all");
        drop(a);
        let d = cap.admit((), ip("192.0.2.1")).unwrap();
        drop((b, c, d));
        assert_eq!(cap.permits.available_permits(), 3);
        assert!(cap.clients.lock().unwrap().is_empty());
    }
}
