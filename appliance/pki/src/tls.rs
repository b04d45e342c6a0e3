//! The rustls configurations of inter-node traffic, all TLS 1.3 only, with
//! the `ring` provider set explicitly, ALPN `h2` (gRPC), no session
//! resumption (a resumed session skips certificate verification, so it
//! would let a revoked node back in) and no SNI (peers are named by node id,
//! not by DNS name).
//!
//! # Cluster mutual TLS
//!
//! [`cluster_server_config`] and [`cluster_client_config`]: both sides
//! present their CA-signed node certificate and accept only a peer whose
//! certificate chains to the cluster CA, is valid now, has the right
//! extended key usage, names exactly one node (`urn:appliance:node:<uuid>`)
//! and is not on the revocation list (read at every handshake through
//! [`SharedRevocations`]). The client also requires the server to be the
//! node it meant to call (its URI SAN), not whatever the DNS name or IP
//! says. The server learns the caller's node id with [`peer_node_id`].
//!
//! # The join channel
//!
//! [`join_server_config`] (the appliance being joined, with its self-signed
//! certificate) and [`join_client_config`] (the cluster node the admin acts
//! on) accept **any** certificate from the peer: no chain, no name, no
//! validity period (a clock that is off is for the join preflight to report,
//! in plain language). They do check the TLS 1.3 handshake signature
//! (CertificateVerify) against the presented certificate's key, so each side
//! knows that the peer holds the private key of the certificate whose
//! fingerprint [`peer_fingerprint`] reports.
//!
//! On its own that authenticates nothing: a man in the middle can terminate
//! TLS towards each side with certificates of his own. It is safe **only
//! together with the PAKE confirmation** (appliance-cluster's SPAKE2 keyed
//! by the one-time join code), because:
//! - the PAKE transcript binds both fingerprints as each side saw them (its
//!   own certificate's and [`peer_fingerprint`]); behind a terminating relay
//!   the two sides see different fingerprints (the relay cannot show a
//!   node's certificate without its key: the handshake signature check
//!   refuses that), so their PAKE keys differ and confirmation fails;
//! - a relay that does not terminate TLS only forwards ciphertext;
//! - without the code, the relay cannot run the PAKE itself: it gets one
//!   online guess per attempt, which the join-code attempt limit bounds.
//!
//! So, on the join channel, nothing received may be trusted, and nothing
//! secret (CA material, cluster configuration, signed certificates) may be
//! sent, until the PAKE key confirmation has succeeded on that very TLS
//! connection. After it, both sides know the peer's certificate exactly
//! (by fingerprint), which is what the CA signs for and what membership
//! records.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, Resumption};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};
use uuid::Uuid;

use crate::cert::parse;
use crate::{crypto_provider, fingerprint, CaCert, NodeCert, NodeKey, PkiError, SharedRevocations};

/// The ALPN protocol every configuration offers: HTTP/2, for gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// The certificate the peer presented, once the handshake is done.
pub fn peer_certificate(conn: &CommonState) -> Option<&CertificateDer<'static>> {
    conn.peer_certificates()?.first()
}

/// SHA-256 of the peer's certificate (lower-case hex, as [`fingerprint`]).
pub fn peer_fingerprint(conn: &CommonState) -> Option<String> {
    peer_certificate(conn).map(|c| fingerprint(c))
}

/// The node id the peer's certificate names (its one
/// `urn:appliance:node:<uuid>` URI SAN). On the cluster channel this is
/// the authenticated caller; on the join channel it is only a claim until
/// the PAKE has confirmed the fingerprint.
pub fn peer_node_id(conn: &CommonState) -> Option<Uuid> {
    cert_node_id(peer_certificate(conn)?)
}

/// The node id a certificate (DER) names, if it names exactly one; for
/// callers that get the peer's certificates another way (tonic's
/// `TlsConnectInfo::peer_certs`).
pub fn cert_node_id(cert_der: &[u8]) -> Option<Uuid> {
    match parse(cert_der, "certificate").ok()?.node_ids.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// A refusal that is not one of rustls's own certificate errors.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the server's certificate names {presented:?}, not the expected node {expected}")]
    WrongNode {
        expected: Uuid,
        presented: Vec<Uuid>,
    },
    #[error("the client's certificate names {0} nodes, not one")]
    NotOneNode(usize),
}

fn other(r: Refusal) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(r))))
}

fn revoked(end_entity: &CertificateDer<'_>, side: &str) -> rustls::Error {
    tracing::warn!(
        fingerprint = %fingerprint(end_entity),
        "refused the {side}'s certificate: it is revoked"
    );
    rustls::Error::InvalidCertificate(CertificateError::Revoked)
}

fn cluster_roots(ca: &CaCert) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).map_err(|source| PkiError::Tls {
        what: "the cluster CA trust store",
        source,
    })?;
    Ok(Arc::new(roots))
}

fn check_key(cert: &NodeCert, key: &NodeKey) -> Result<(), PkiError> {
    if cert.matches_key(key) {
        Ok(())
    } else {
        Err(PkiError::KeyMismatch {
            what: format!("the certificate of node {}", cert.node_id()),
            fingerprint: cert.fingerprint(),
        })
    }
}

fn tls(what: &'static str) -> impl Fn(rustls::Error) -> PkiError {
    move |source| PkiError::Tls { what, source }
}

fn finish_server(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn finish_client(mut config: ClientConfig) -> Arc<ClientConfig> {
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    Arc::new(config)
}

/// The server side of cluster mutual TLS: presents `cert` (with `key`),
/// requires a client certificate chained to `ca`, naming one node, not
/// revoked in `revocations` at the time of the handshake.
pub fn cluster_server_config(
    ca: &CaCert,
    cert: &NodeCert,
    key: &NodeKey,
    revocations: SharedRevocations,
) -> Result<Arc<ServerConfig>, PkiError> {
    const WHAT: &str = "the cluster server";
    check_key(cert, key)?;
    let provider = crypto_provider();
    let inner = WebPkiClientVerifier::builder_with_provider(cluster_roots(ca)?, provider.clone())
        .build()
        .map_err(|e| PkiError::Tls {
            what: WHAT,
            source: rustls::Error::General(e.to_string()),
        })?;
    let verifier = ClusterClientVerifier { inner, revocations };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls(WHAT))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![cert.cert_der()], key.private_key_der())
        .map_err(tls(WHAT))?;
    Ok(finish_server(config))
}

/// The client side of cluster mutual TLS towards node `expected_server`:
/// presents `cert` (with `key`), trusts only `ca`, requires the server's
/// certificate to name `expected_server` and not to be revoked. The
/// `ServerName` given to the connector is not checked (use the peer's IP).
pub fn cluster_client_config(
    ca: &CaCert,
    cert: &NodeCert,
    key: &NodeKey,
    revocations: SharedRevocations,
    expected_server: Uuid,
) -> Result<Arc<ClientConfig>, PkiError> {
    const WHAT: &str = "the cluster client";
    check_key(cert, key)?;
    let provider = crypto_provider();
    let verifier = ClusterServerVerifier {
        roots: cluster_roots(ca)?,
        algorithms: provider.signature_verification_algorithms,
        expected: expected_server,
        revocations,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls(WHAT))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![cert.cert_der()], key.private_key_der())
        .map_err(tls(WHAT))?;
    Ok(finish_client(config))
}

/// The server side of the join channel (the appliance being joined, with
/// its self-signed certificate): requires a client certificate but accepts
/// any whose handshake signature is right. Safe only with the PAKE; see the
/// module documentation.
pub fn join_server_config(cert: &NodeCert, key: &NodeKey) -> Result<Arc<ServerConfig>, PkiError> {
    const WHAT: &str = "the join server";
    check_key(cert, key)?;
    let provider = crypto_provider();
    let verifier = AnyCertVerifier {
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls(WHAT))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![cert.cert_der()], key.private_key_der())
        .map_err(tls(WHAT))?;
    Ok(finish_server(config))
}

/// The client side of the join channel (the cluster node contacting the
/// new appliance): presents `cert`, accepts any server certificate whose
/// handshake signature is right. Safe only with the PAKE; see the module
/// documentation.
pub fn join_client_config(cert: &NodeCert, key: &NodeKey) -> Result<Arc<ClientConfig>, PkiError> {
    const WHAT: &str = "the join client";
    check_key(cert, key)?;
    let provider = crypto_provider();
    let verifier = AnyCertVerifier {
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls(WHAT))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![cert.cert_der()], key.private_key_der())
        .map_err(tls(WHAT))?;
    Ok(finish_client(config))
}

/// Cluster server side: the webpki client verifier (chain to the CA,
/// validity, clientAuth usage), then one node id, then revocation.
#[derive(Debug)]
struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: SharedRevocations,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| {
                tracing::warn!(
                    fingerprint = %fingerprint(end_entity),
                    "refused the client's certificate: {e}"
                )
            })?;
        let ids = parse(end_entity, "client certificate")
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
            .node_ids;
        if ids.len() != 1 {
            return Err(other(Refusal::NotOneNode(ids.len())));
        }
        if self.revocations.is_revoked_der(end_entity) {
            return Err(revoked(end_entity, "client"));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Cluster client side: chain to the CA (validity, serverAuth usage), the
/// expected node id instead of a DNS name, then revocation.
#[derive(Debug)]
struct ClusterServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    expected: Uuid,
    revocations: SharedRevocations,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )
        .inspect_err(|e| {
            tracing::warn!(
                fingerprint = %fingerprint(end_entity),
                expected = %self.expected,
                "refused the server's certificate: {e}"
            )
        })?;
        let ids = parse(end_entity, "server certificate")
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
            .node_ids;
        if ids != [self.expected] {
            tracing::warn!(
                fingerprint = %fingerprint(end_entity),
                expected = %self.expected,
                presented = ?ids,
                "refused the server's certificate: it is another node's"
            );
            return Err(other(Refusal::WrongNode {
                expected: self.expected,
                presented: ids,
            }));
        }
        if self.revocations.is_revoked_der(end_entity) {
            return Err(revoked(end_entity, "server"));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The join channel, both sides: any well-formed end-entity certificate,
/// with the handshake signature checked against its key.
#[derive(Debug)]
struct AnyCertVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Parsed only so that garbage is refused here rather than later.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for AnyCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
