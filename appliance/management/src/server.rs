//! The accept loop: TLS (rustls), HTTP/1.1 and HTTP/2 (hyper-util's auto
//! builder), and one router for both faces: a request whose `content-type`
//! starts with `application/grpc` goes to the gRPC services, any other to
//! the web UI (pages, sign-in, `/healthz`, `/metrics`).
//!
//! Bounded: at most [`Limits::max_connections`] connections at once (a new
//! one over that is closed at once), a TLS handshake must finish within
//! [`Limits::handshake_timeout`], an HTTP/1 request's headers within 30 s,
//! and an HTTP/2 connection carries at most [`MAX_STREAMS`] requests at once.
//! Every request carries the client's address (`ConnectInfo<SocketAddr>`)
//! for the extractors, the audit trail and the rate limits.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{middleware, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::web::same_origin;
use crate::state::AppState;

/// HTTP/2 streams at once on one connection.
pub const MAX_STREAMS: u32 = 32;

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a client to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for open connections to finish after the stop signal.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The web face: H4's pages, the sign-in pages, `/healthz` and `/metrics`,
/// every changing request checked for its origin.
pub fn web(state: AppState) -> Router {
    Router::new()
        .merge(crate::web::router())
        .merge(crate::auth::pages::router())
        .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(crate::metrics::handler))
        .layer(middleware::from_fn(same_origin))
        .with_state(state)
}

/// True for a gRPC request.
pub fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Both faces behind one service: gRPC by content type, the web otherwise.
#[derive(Clone)]
pub struct App {
    web: Router,
    grpc: Router,
}

impl App {
    /// The whole application over `state`.
    pub fn new(state: AppState) -> Self {
        App {
            web: web(state.clone()),
            grpc: crate::grpc::routes(state),
        }
    }

    /// Serves one request from `peer`.
    pub async fn call(self, mut req: Request<Body>, peer: SocketAddr) -> Response {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = if is_grpc(&req) { self.grpc } else { self.web };
        match router.oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// True when the client's first byte is a letter, as in `GET / HTTP/1.1`:
/// someone typed `http://` for this HTTPS port (a TLS client starts with
/// 0x16, a handshake record).
async fn plain_http(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Tells a plain-HTTP client to use HTTPS, then closes.
async fn answer_plain_http(mut stream: tokio::net::TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    tracing::debug!(%peer, "plain HTTP on the HTTPS port");
    let body = "This is the appliance's HTTPS port: use https:// in the address.\n";
    let reply = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves `listener` with TLS from `tls` until `shutdown` completes, then
/// lets open connections finish for up to `limits.drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little, not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
            drop(stream);
            continue;
        };
        // gRPC replies are small writes: without this, Nagle and the
        // client's delayed ACK add ~40 ms to every call.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = async {
                if plain_http(&stream).await {
                    answer_plain_http(stream, peer).await;
                    return None;
                }
                Some(acceptor.accept(stream).await)
            };
            let tls = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                Ok(None) => return,
                Ok(Some(Ok(tls))) => tls,
                Ok(Some(Err(e))) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.call(req.map(Body::new), peer).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            // HTTP/2: few streams per connection, so that the connection
            // bound also bounds the requests in flight.
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("stopping: no new connections; letting open ones finish");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
}
