//! The server's rustls configuration (TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`) and the certificate it serves: taken from
//! `Admin.GetManagementTls` at start and swapped, without a restart, when
//! its fingerprint changes ([`watch`] polls every few seconds).

use std::io::Cursor;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use appliance_api::v1::GetManagementTlsRequest;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::backend::Backend;

/// How often the certificate in use is compared with applianced's.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Why a certificate could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// applianced did not hand out the certificate.
    #[error("cannot get the management certificate from applianced: {}", .0.message())]
    Backend(#[from] tonic::Status),
    /// The PEM has no certificate.
    #[error("the management certificate PEM holds no certificate")]
    NoCertificate,
    /// The PEM has no key, or one rustls cannot sign with.
    #[error("the management key is unusable: {0}")]
    Key(String),
    /// The PEM does not parse.
    #[error("the management certificate PEM does not parse: {0}")]
    Pem(#[from] std::io::Error),
    /// The rustls configuration was refused.
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate being served; swapped in place when applianced's changes.
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl CertResolver {
    /// Nothing to serve yet (every handshake fails until [`CertResolver::set`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The fingerprint of the certificate being served.
    pub fn fingerprint(&self) -> Option<String> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(f, _)| f.clone()))
    }

    /// Serves `key` (known by `fingerprint`) from the next handshake on.
    pub fn set(&self, fingerprint: &str, key: CertifiedKey) {
        if let Ok(mut c) = self.current.write() {
            *c = Some((fingerprint.to_string(), Arc::new(key)));
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, k)| k.clone()))
    }
}

/// The certificate chain and key of two PEM texts, ready to serve.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, TlsError> {
    let chain = rustls_pemfile::certs(&mut Cursor::new(cert_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut Cursor::new(key_pem.as_bytes()))?
        .ok_or_else(|| TlsError::Key("no private key in the PEM".to_string()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    // A key that is not the certificate's would fail every handshake: keep
    // serving the old pair instead. (`Unknown`: rustls cannot tell for this
    // key type, so the pair is taken as it is.)
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(TlsError::Key(format!(
            "the key does not match the certificate: {e}"
        ))),
    }
}

/// The server configuration: TLS 1.3 and 1.2 only (rustls implements
/// nothing older), ALPN `h2` then `http/1.1`, certificates from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Fetches applianced's certificate and serves it if its fingerprint
/// differs from the one in use; true when it changed.
pub async fn refresh(backend: &Backend, resolver: &CertResolver) -> Result<bool, TlsError> {
    let tls = backend
        .admin()
        .get_management_tls(GetManagementTlsRequest {})
        .await?
        .into_inner();
    if resolver.fingerprint().as_deref() == Some(tls.fingerprint.as_str()) {
        return Ok(false);
    }
    let key = certified_key(&tls.cert_pem, &tls.key_pem)?;
    resolver.set(&tls.fingerprint, key);
    tracing::info!(fingerprint = %tls.fingerprint, source = %tls.source, "serving the management certificate");
    Ok(true)
}

/// Keeps the served certificate equal to applianced's, checking every
/// `period`, until the task is dropped. Failures are logged and retried:
/// the certificate in use stays.
pub async fn watch(backend: Backend, resolver: Arc<CertResolver>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = refresh(&backend, &resolver).await {
            tracing::warn!(error = %e, "management certificate not refreshed; the one in use stays");
        }
    }
}
