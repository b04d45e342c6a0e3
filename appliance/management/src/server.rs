//! The accept loop: TLS (rustls), HTTP/1.1 and HTTP/2, gRPC beside the web UI.
