//! The server's rustls configuration (TLS 1.2 and 1.3 only), from the
//! certificate applianced hands out, reloaded when it changes.
