//! TLS under tonic, both ways.
//!
//! Server: one TCP listener; each accepted connection gets the TLS
//! configuration the node's state calls for at that moment (join or
//! cluster), completes its handshake in a task of its own, bounded in time
//! and in number, and only then is handed to tonic
//! (`serve_with_incoming`), so a client that stalls its handshake holds a
//! permit, never the accept loop. Each connection carries a [`PeerInfo`]
//! (tonic's connect info: [`Connected`]), which the handlers read to know
//! which channel a call came over and whose certificate it showed.
//!
//! Client: a connector for `Endpoint::connect_with_connector` that dials one
//! address, runs the TLS handshake with the given rustls configuration,
//! records the certificate the server showed, and refuses to connect a
//! second time: a channel is one TLS connection, so what was checked (or
//! bound into the PAKE) is what carries every call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use appliance_cluster::{CertFingerprint, NodeId};
use appliance_pki::tls::{peer_certificate, peer_node_id};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::PeerError;
use crate::Timeouts;

/// Which TLS configuration a connection was accepted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// The join channel: any certificate; nothing is trusted until the PAKE confirms.
    Join,
    /// Cluster mutual TLS: the peer's certificate chains to the cluster CA.
    Cluster,
}

/// What a server knows about the peer of one connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The channel the connection was accepted on.
    pub kind: ChannelKind,
    /// SHA-256 of the certificate the peer presented.
    pub fingerprint: CertFingerprint,
    /// The node id its certificate names: authenticated on the cluster
    /// channel, only a claim on the join channel.
    pub node_id: Option<NodeId>,
    /// The certificate itself (DER).
    pub cert_der: Arc<Vec<u8>>,
}

/// One accepted, handshaken TLS connection, as tonic reads it.
pub struct PeerConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for PeerConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Chooses, for each new connection, the TLS configuration to accept it
/// with; `None` refuses it (a node neither joining nor joined).
pub(crate) type PickTls = Arc<dyn Fn() -> Option<(Arc<ServerConfig>, ChannelKind)> + Send + Sync>;

/// Accepts connections on `listener` until `cancel` fires or the returned
/// stream is dropped; yields only connections whose TLS handshake finished
/// within the time limit.
pub(crate) fn accept_tls(
    listener: TcpListener,
    pick: PickTls,
    timeouts: Timeouts,
    cancel: CancellationToken,
) -> ReceiverStream<Result<PeerConn, io::Error>> {
    let (tx, rx) = mpsc::channel(timeouts.max_pending_handshakes.max(1));
    let permits = Arc::new(Semaphore::new(timeouts.max_pending_handshakes.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("peer port: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(peer = %remote, "peer port: too many TLS handshakes in progress; connection dropped");
                continue;
            };
            let Some((config, kind)) = pick() else {
                tracing::debug!(peer = %remote, "peer port: node neither joining nor joined; connection dropped");
                continue;
            };
            let tx = tx.clone();
            let limit = timeouts.tls_handshake;
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(limit, TlsAcceptor::from(config).accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %remote, channel = ?kind, "peer port: TLS handshake refused: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(peer = %remote, channel = ?kind, "peer port: TLS handshake not done within {limit:?}; connection dropped");
                        return;
                    }
                };
                let conn = tls.get_ref().1;
                let Some(cert) = peer_certificate(conn) else {
                    tracing::warn!(peer = %remote, "peer port: the client showed no certificate");
                    return;
                };
                let info = PeerInfo {
                    remote,
                    kind,
                    fingerprint: CertFingerprint::of_certificate_der(cert),
                    node_id: peer_node_id(conn).map(NodeId),
                    cert_der: Arc::new(cert.to_vec()),
                };
                let _ = tx.send(Ok(PeerConn { stream: tls, info })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// What a client saw of the server on its one connection.
#[derive(Debug, Clone)]
pub struct SeenServer {
    /// SHA-256 of the server's certificate.
    pub fingerprint: CertFingerprint,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
}

/// A tonic connector: one TLS connection to one address, ever.
#[derive(Clone)]
struct OneTlsConnection {
    address: SocketAddr,
    config: Arc<ClientConfig>,
    limit: Duration,
    seen: Arc<Mutex<Option<SeenServer>>>,
    used: Arc<AtomicBool>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower::Service<Uri> for OneTlsConnection {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if this.used.swap(true, Ordering::SeqCst) {
                // A reconnection could reach another server than the one
                // checked; the caller opens a new channel instead.
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the connection to {} was lost", this.address),
                ));
            }
            let connect = async {
                let tcp = TcpStream::connect(this.address).await?;
                let _ = tcp.set_nodelay(true);
                let name = ServerName::IpAddress(this.address.ip().into());
                TlsConnector::from(this.config.clone())
                    .connect(name, tcp)
                    .await
            };
            let tls = tokio::time::timeout(this.limit, connect)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no TLS connection within {:?}", this.limit),
                    )
                })??;
            let cert = peer_certificate(tls.get_ref().1).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server showed no certificate",
                )
            })?;
            let seen = SeenServer {
                fingerprint: CertFingerprint::of_certificate_der(cert),
                cert_der: cert.to_vec(),
            };
            *this.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
            Ok(TokioIo::new(tls))
        })
    }
}

/// The TLS error with which the server at `address` ends a connection made
/// with `config` (its verdict on the client's certificate, which in TLS 1.3
/// comes after the client's side of the handshake is done), read before
/// anything is written so that nothing else can fail first. `None` if the
/// connection cannot be made, or the server says nothing (accepts the
/// certificate) or closes within `limit`.
pub(crate) async fn tls_verdict(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    limit: Duration,
) -> Option<rustls::Error> {
    use tokio::io::AsyncReadExt;
    let run = async {
        let tcp = TcpStream::connect(address).await.ok()?;
        let name = ServerName::IpAddress(address.ip().into());
        let mut tls = TlsConnector::from(config).connect(name, tcp).await.ok()?;
        let mut byte = [0u8; 1];
        let e = tls.read(&mut byte).await.err()?;
        e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
    };
    tokio::time::timeout(limit, run).await.ok().flatten()
}

/// Opens one TLS connection to `address` with `config` and a tonic channel
/// over it; returns the channel and the server's certificate.
pub(crate) async fn connect(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    timeouts: &Timeouts,
) -> Result<(Channel, SeenServer), PeerError> {
    let unreachable = |detail: String| PeerError::Unreachable { address, detail };
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.rpc);
    let seen = Arc::new(Mutex::new(None));
    let connector = OneTlsConnection {
        address,
        config,
        limit: timeouts.connect,
        seen: seen.clone(),
        used: Arc::new(AtomicBool::new(false)),
    };
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| unreachable(crate::error::error_chain(&e)))?;
    let seen = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| unreachable("the connection showed no server certificate".into()))?;
    Ok((channel, seen))
}
