//! The management server (`managementd`): the web UI and the remote API of
//! one node, on its management port, over HTTPS. It is a process of its own,
//! supervised by applianced, and holds no cluster logic: everything it shows
//! or changes goes through applianced's gRPC API on the local socket (the
//! `Node` service, and `Admin` for accounts, settings, the audit trail and
//! the TLS certificate).
//!
//! One port serves both faces: a request with `content-type:
//! application/grpc` goes to the gRPC services (a role-checked proxy of
//! `Node`, and `Management`), any other to the web UI.
//!
//! Modules: `state` (what every handler shares), `backend` (the client of
//! applianced), `auth` (passwords, sessions, rate limits, CSRF, the
//! extractors), `grpc` (the remote API), `web` (the pages), `tls` (the
//! server's rustls configuration), `server` (the accept loop), `metrics`.

pub mod auth;
pub mod backend;
pub mod grpc;
pub mod metrics;
pub mod server;
pub mod state;
pub mod tls;
pub mod web;
