//! `appliancectl --server https://HOST[:PORT]`: the management port of a
//! node (managementd) instead of the local socket. This module owns the
//! URL, the stored tokens and pinned fingerprints ([`store`]), the TLS trust
//! ([`tls`]), first-contact confirmation and the bearer token on every call.

pub mod server;
pub mod store;
pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;

pub use server::Server;
pub use store::Store;
use tls::Trust;

/// How the user told us to trust the server (global options).
#[derive(Debug, Clone, Default)]
pub struct TrustOptions {
    /// `--yes`: accept an unknown certificate without asking.
    pub yes: bool,
    /// `--accept-fingerprint`: accept an unknown certificate with this fingerprint.
    pub accept_fingerprint: Option<String>,
    /// `--ca-file`: verify with these CAs instead of pinning.
    pub ca_file: Option<PathBuf>,
}

/// Opens a channel to `server`, checking its certificate: with the CA file
/// when given, else against the pinned fingerprint — pinning it on first
/// contact once the user (or `--yes`/`--accept-fingerprint`) accepts it.
pub async fn connect(
    server: &Server,
    store: &Store,
    opts: &TrustOptions,
) -> anyhow::Result<Channel> {
    if let Some(ca) = &opts.ca_file {
        let attempt = tls::connect(server, &Trust::Ca(ca.clone())).await;
        return Ok(attempt.channel?);
    }
    if let Some(known) = store.known_fingerprint(server)? {
        let attempt = tls::connect(server, &Trust::Pin(Some(known.clone()))).await;
        return match (attempt.channel, attempt.seen) {
            (Ok(channel), _) => Ok(channel),
            (Err(_), Some(seen))
                if store::normalize_fingerprint(&seen) != store::normalize_fingerprint(&known) =>
            {
                bail!(
                    "the certificate of {server} changed!\n  \
                     pinned:  SHA256 {known}\n  \
                     offered: SHA256 {seen}\n\
                     Someone may be between you and the node, or its certificate was replaced \
                     (it joined a cluster, or an administrator uploaded one): compare with the \
                     fingerprint on its console. If expected, remove its line from {} and connect again.",
                    store.known_servers_path().display()
                )
            }
            (Err(err), _) => Err(err.into()),
        };
    }
    // First contact: look at the certificate, decide, pin, then connect for real.
    let probe = tls::connect(server, &Trust::Pin(None)).await;
    let seen = match (probe.channel, probe.seen) {
        (_, Some(seen)) => seen,
        (Err(err), None) => return Err(err.into()),
        (Ok(_), None) => bail!("{server} completed TLS without a certificate"),
    };
    accept_first_contact(server, &seen, opts)?;
    let path = store.add_known(server, &seen)?;
    eprintln!("pinned the certificate of {server} in {}", path.display());
    let attempt = tls::connect(server, &Trust::Pin(Some(seen))).await;
    Ok(attempt.channel?)
}

fn accept_first_contact(server: &Server, seen: &str, opts: &TrustOptions) -> anyhow::Result<()> {
    if let Some(expected) = &opts.accept_fingerprint {
        if store::normalize_fingerprint(expected) == store::normalize_fingerprint(seen) {
            return Ok(());
        }
        bail!(
            "the certificate of {server} is not the expected one:\n  expected: {expected}\n  offered:  SHA256 {seen}"
        );
    }
    if opts.yes {
        eprintln!("accepting the certificate of {server} (--yes): SHA256 {seen}");
        return Ok(());
    }
    // Ask on the terminal itself: stdin may carry a password (--password-stdin).
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .with_context(|| {
            format!(
                "the certificate of {server} is not known yet (SHA256 {seen}) and there is no \
                 terminal to ask: pass --accept-fingerprint FINGERPRINT (from its console) or --yes"
            )
        })?;
    let mut out = tty.try_clone()?;
    write!(
        out,
        "The certificate of {server} is not known yet.\n\
         Its SHA-256 fingerprint is {seen}\n\
         Compare it with the one on the node's console.\n\
         accept? [y/N] "
    )?;
    out.flush()?;
    let mut answer = String::new();
    BufReader::new(tty).read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("the certificate of {server} was not accepted; nothing was sent"),
    }
}

/// Adds `authorization: Bearer <token>` to every call, when signed in.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// No token: the local socket, or `login`.
    pub fn none() -> Self {
        Self(None)
    }

    /// The stored token.
    pub fn token(token: &str) -> anyhow::Result<Self> {
        let value = format!("Bearer {token}")
            .parse()
            .context("the stored token is not printable ASCII: sign in again")?;
        Ok(Self(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
