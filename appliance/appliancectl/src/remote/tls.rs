//! How appliancectl trusts a management port's certificate: pinned on first
//! use (its SHA-256 fingerprint, as ssh pins host keys) or verified with a
//! CA (`--ca-file`), and the TLS connection tonic's channel runs over.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

use super::server::Server;
use super::store::normalize_fingerprint;

/// Why the management port could not be reached or trusted.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `--ca-file` unreadable or without a certificate.
    #[error("--ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Config(#[from] rustls::Error),
    /// The host is not a valid TLS name.
    #[error("{0}")]
    Name(#[from] super::server::ServerUrlError),
    /// No TCP or TLS connection (the transport's reason in the source).
    #[error("cannot reach the management port of {server}")]
    Unreachable {
        /// HOST:PORT.
        server: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// SHA-256 of a certificate (DER), upper-case hex with colons as the
/// console and `Management.GetManagementTls` show it.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    let mut text = String::with_capacity(95);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts exactly one certificate, by fingerprint, or (`expected: None`,
/// the first contact's probe) any; records what it saw either way. The
/// handshake's signatures are still verified, so the peer holds the key.
#[derive(Debug)]
struct PinVerifier {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        let matches = self
            .expected
            .as_ref()
            .is_none_or(|e| normalize_fingerprint(e) == normalize_fingerprint(&seen));
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen);
        }
        if matches {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server certificate is not the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How the server's certificate is checked on one connection.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Its fingerprint must be this one (`None`: any, recording it).
    Pin(Option<String>),
    /// It must chain to one of these CA certificates (PEM file) and cover the host.
    Ca(std::path::PathBuf),
}

fn client_config(
    trust: &Trust,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut config = match trust {
        Trust::Pin(expected) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                expected: expected.clone(),
                seen,
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
        Trust::Ca(path) => {
            let roots = load_roots(path)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::CaFile {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let ca_err = |reason: String| TlsError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| ca_err(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// A connection attempt's result, with the certificate fingerprint the
/// server showed (when the handshake got that far).
#[derive(Debug)]
pub struct Attempt {
    /// The channel, or why none.
    pub channel: Result<Channel, TlsError>,
    /// The fingerprint of the server's certificate, if it sent one.
    pub seen: Option<String>,
}

/// Opens an HTTP/2 channel to `server` over TLS (1.3 or 1.2, ALPN h2).
pub async fn connect(server: &Server, trust: &Trust) -> Attempt {
    let seen = Arc::new(Mutex::new(None));
    let channel = open(server, trust, seen.clone()).await;
    let seen = seen.lock().ok().and_then(|s| s.clone());
    Attempt { channel, seen }
}

async fn open(
    server: &Server,
    trust: &Trust,
    seen: Arc<Mutex<Option<String>>>,
) -> Result<Channel, TlsError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(trust, seen)?));
    let name = server.tls_name()?;
    let (host, port) = (server.host.clone(), server.port);
    // The URI only names the :authority; the connector below opens the stream.
    let endpoint = Endpoint::from_shared(format!("http://{server}"))
        .map_err(|source| TlsError::Unreachable {
            server: server.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(10));
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (connector, name, host) = (connector.clone(), name.clone(), host.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|source| TlsError::Unreachable {
            server: server.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_upper_hex_with_colons() {
        // SHA-256 of the empty input.
        assert_eq!(
            fingerprint(b""),
            "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n")?;
        let err = load_roots(&path).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("ca.pem") && e.contains("no PEM")),
            "{err:?}"
        );
        Ok(())
    }
}
