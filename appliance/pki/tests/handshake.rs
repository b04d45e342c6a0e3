//! Real TLS 1.3 handshakes (tokio-rustls over in-memory duplex pipes, and
//! once over loopback TCP) between the configurations of `appliance_pki::tls`:
//! what must connect connects, and every refusal the cluster relies on
//! happens, on the side that must refuse.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use appliance_pki::tls::{
    cluster_client_config, cluster_server_config, join_client_config, join_server_config,
    peer_fingerprint, peer_node_id, ALPN_H2,
};
use appliance_pki::{
    fingerprint, self_signed_join_cert, CaKey, NodeCert, NodeCsr, NodeKey, NodeSubject,
    RevocationList, SharedRevocations,
};
use rustls::pki_types::ServerName;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86400);
const LIMIT: Duration = Duration::from_secs(10);

/// What one side saw of a completed exchange.
#[derive(Debug)]
struct Seen {
    peer_fingerprint: Option<String>,
    peer_node: Option<Uuid>,
    alpn: Option<Vec<u8>>,
}

/// Handshake, then one request and one reply, so a refusal by the server
/// of the client's certificate (which TLS 1.3 reports after the client
/// thinks it is done) shows on both sides.
async fn exchange<S>(
    client_io: S,
    server_io: S,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (Result<Seen, String>, Result<Seen, String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client_side = async move {
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut tls = TlsConnector::from(client)
            .connect(name, client_io)
            .await
            .map_err(|e| format!("client handshake: {e}"))?;
        tls.write_all(b"ping")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        tls.flush()
            .await
            .map_err(|e| format!("client flush: {e}"))?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        assert_eq!(&buf, b"pong");
        let conn = tls.get_ref().1;
        Ok(Seen {
            peer_fingerprint: peer_fingerprint(conn),
            peer_node: peer_node_id(conn),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        })
    };
    let server_side = async move {
        let mut tls = TlsAcceptor::from(server)
            .accept(server_io)
            .await
            .map_err(|e| format!("server handshake: {e}"))?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong")
            .await
            .map_err(|e| format!("server write: {e}"))?;
        tls.flush()
            .await
            .map_err(|e| format!("server flush: {e}"))?;
        let conn = tls.get_ref().1;
        let seen = Seen {
            peer_fingerprint: peer_fingerprint(conn),
            peer_node: peer_node_id(conn),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        };
        // Keep the stream open until the client has read the reply.
        let _ = tls.read(&mut buf).await;
        Ok(seen)
    };
    let client_task = tokio::spawn(client_side);
    let server_task = tokio::spawn(server_side);
    let (c, s) = tokio::time::timeout(LIMIT, async { (client_task.await, server_task.await) })
        .await
        .expect("exchange within the time limit");
    (c.unwrap(), s.unwrap())
}

async fn over_duplex(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (Result<Seen, String>, Result<Seen, String>) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    exchange(c, s, client, server).await
}

fn subject(n: u128) -> NodeSubject {
    NodeSubject {
        node_id: Uuid::from_u128(n),
        hostname: format!("node-{n}"),
        addresses: vec![format!("10.77.0.{n}").parse().unwrap()],
    }
}

/// A node with a key and a certificate signed by `ca` as of `now`.
struct Node {
    id: Uuid,
    key: NodeKey,
    cert: NodeCert,
}

fn node(ca: &CaKey, n: u128, now: SystemTime) -> Node {
    let key = NodeKey::generate().unwrap();
    let csr = NodeCsr::build(&key, &subject(n)).unwrap();
    let cert = ca.sign_node_csr(&csr, Uuid::from_u128(n), now).unwrap();
    Node {
        id: Uuid::from_u128(n),
        key,
        cert,
    }
}

fn server(ca: &CaKey, n: &Node, revoked: &SharedRevocations) -> Arc<ServerConfig> {
    cluster_server_config(ca.cert(), &n.cert, &n.key, revoked.clone()).unwrap()
}

fn client(ca: &CaKey, n: &Node, revoked: &SharedRevocations, to: Uuid) -> Arc<ClientConfig> {
    cluster_client_config(ca.cert(), &n.cert, &n.key, revoked.clone(), to).unwrap()
}

fn assert_refused(side: &Result<Seen, String>, what: &str) {
    assert!(side.is_err(), "{what}: expected a refusal, got {side:?}");
}

#[tokio::test]
async fn mutual_tls_between_two_signed_nodes() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let (a, b) = (node(&ca, 1, now), node(&ca, 2, now));
    let none = SharedRevocations::default();
    let (c, s) = over_duplex(client(&ca, &b, &none, a.id), server(&ca, &a, &none)).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer_node, Some(a.id));
    assert_eq!(c.peer_fingerprint, Some(fingerprint(a.cert.der())));
    assert_eq!(s.peer_node, Some(b.id));
    assert_eq!(s.peer_fingerprint, Some(fingerprint(b.cert.der())));
    assert_eq!(c.alpn.as_deref(), Some(ALPN_H2));
    assert_eq!(s.alpn.as_deref(), Some(ALPN_H2));
}

#[tokio::test]
async fn mutual_tls_over_loopback_tcp() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    // The CA travels as PEM: load it back as a node without the key would.
    let ca_cert = appliance_pki::CaCert::from_pem(&ca.cert().to_pem()).unwrap();
    let (a, b) = (node(&ca, 1, now), node(&ca, 2, now));
    let none = SharedRevocations::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client_io, server_io) = tokio::join!(tokio::net::TcpStream::connect(addr), async {
        listener.accept().await.map(|(s, _)| s)
    });
    let (c, s) = exchange(
        client_io.unwrap(),
        server_io.unwrap(),
        cluster_client_config(&ca_cert, &b.cert, &b.key, none.clone(), a.id).unwrap(),
        cluster_server_config(&ca_cert, &a.cert, &a.key, none).unwrap(),
    )
    .await;
    assert_eq!(c.unwrap().peer_node, Some(a.id));
    assert_eq!(s.unwrap().peer_node, Some(b.id));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let now = SystemTime::now();
    let ca = CaKey::create("ours", now).unwrap();
    let other = CaKey::create("theirs", now).unwrap();
    let a = node(&ca, 1, now);
    // Same node id as a real member, signed by the wrong CA.
    let impostor = node(&other, 2, now);
    let none = SharedRevocations::default();

    // The impostor calls a member: the member (server) refuses. (The
    // impostor trusts our CA, which is public, so the refusal is the
    // server's.)
    let (c, s) = over_duplex(
        cluster_client_config(ca.cert(), &impostor.cert, &impostor.key, none.clone(), a.id)
            .unwrap(),
        server(&ca, &a, &none),
    )
    .await;
    assert_refused(&s, "server facing another CA's client");
    assert_refused(&c, "client refused by the server");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );

    // A member calls the impostor posing as node 2: the member refuses.
    let (c, s) = over_duplex(
        client(&ca, &a, &none, impostor.id),
        cluster_server_config(ca.cert(), &impostor.cert, &impostor.key, none.clone()).unwrap(),
    )
    .await;
    assert_refused(&c, "client facing another CA's server");
    assert_refused(&s, "server refused by the client");
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_both_ways() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let (a, b) = (node(&ca, 1, now), node(&ca, 2, now));
    let mut list = RevocationList::new();
    list.revoke(&b.cert);
    let revoked_b = SharedRevocations::new(list);
    let none = SharedRevocations::default();

    // B calls A, A knows B is revoked.
    let (c, s) = over_duplex(client(&ca, &b, &none, a.id), server(&ca, &a, &revoked_b)).await;
    assert_refused(&s, "server facing a revoked client");
    assert_refused(&c, "revoked client");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("Revoked"),
        "{e}"
    );

    // A calls B, A knows B is revoked.
    let (c, s) = over_duplex(client(&ca, &a, &revoked_b, b.id), server(&ca, &b, &none)).await;
    assert_refused(&c, "client facing a revoked server");
    assert_refused(&s, "revoked server");
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("Revoked"),
        "{e}"
    );
}

#[tokio::test]
async fn a_revocation_applies_to_the_next_handshake_of_existing_configs() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let (a, b) = (node(&ca, 1, now), node(&ca, 2, now));
    let shared = SharedRevocations::default();
    let server_config = server(&ca, &a, &shared);
    let client_config = client(&ca, &b, &SharedRevocations::default(), a.id);

    let (c, s) = over_duplex(client_config.clone(), server_config.clone()).await;
    assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");

    // Removal of B: only the shared list changes; no session resumption
    // lets B skip the certificate check on its next connection.
    let mut list = shared.snapshot();
    list.revoke_fingerprint(&b.cert.fingerprint()).unwrap();
    shared.replace(list);
    let (c, s) = over_duplex(client_config, server_config).await;
    assert_refused(&c, "revoked client on its next connection");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("Revoked"),
        "{e}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_both_ways() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now - 3 * 365 * DAY).unwrap();
    let a = node(&ca, 1, now);
    // Signed two years ago: expired about a year ago.
    let old = node(&ca, 2, now - 2 * 365 * DAY);
    assert!(!old.cert.is_valid_at(now));
    let none = SharedRevocations::default();

    let (c, s) = over_duplex(client(&ca, &old, &none, a.id), server(&ca, &a, &none)).await;
    assert_refused(&s, "server facing an expired client");
    assert_refused(&c, "expired client");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("expired"),
        "{e}"
    );

    let (c, s) = over_duplex(client(&ca, &a, &none, old.id), server(&ca, &old, &none)).await;
    assert_refused(&c, "client facing an expired server");
    assert_refused(&s, "expired server");
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("expired"),
        "{e}"
    );
}

#[tokio::test]
async fn the_client_refuses_a_server_that_is_not_the_expected_node() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let (a, b, c3) = (node(&ca, 1, now), node(&ca, 2, now), node(&ca, 3, now));
    let none = SharedRevocations::default();
    // B means to call A, but C answers (a valid member, the wrong one).
    let (c, s) = over_duplex(client(&ca, &b, &none, a.id), server(&ca, &c3, &none)).await;
    assert_refused(&c, "client reaching the wrong node");
    assert_refused(&s, "wrong node");
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("WrongNode"),
        "{e}"
    );
    assert!(e.contains(&a.id.to_string()), "{e}");
}

#[tokio::test]
async fn the_cluster_channel_refuses_self_signed_and_anonymous_peers() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let a = node(&ca, 1, now);
    let none = SharedRevocations::default();
    // Node 2 before joining: its self-signed join certificate.
    let key = NodeKey::generate().unwrap();
    let own = self_signed_join_cert(&key, &subject(2), now).unwrap();

    let (c, s) = over_duplex(
        cluster_client_config(ca.cert(), &own, &key, none.clone(), a.id).unwrap(),
        server(&ca, &a, &none),
    )
    .await;
    assert_refused(&c, "self-signed client");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );

    let (c, _s) = over_duplex(
        client(&ca, &a, &none, own.node_id()),
        cluster_server_config(ca.cert(), &own, &key, none.clone()).unwrap(),
    )
    .await;
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("UnknownIssuer"),
        "{e}"
    );

    // A client without any certificate (its own config, with no
    // certificate to offer).
    let mut anonymous = (*client(&ca, &a, &none, a.id)).clone();
    anonymous.client_auth_cert_resolver = Arc::new(NoClientCert);
    let (c, s) = over_duplex(Arc::new(anonymous), server(&ca, &a, &none)).await;
    assert_refused(&c, "anonymous client");
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("no certificates"),
        "{e}"
    );
}

#[tokio::test]
async fn the_join_channel_connects_self_signed_peers_and_shows_each_fingerprint() {
    let now = SystemTime::now();
    // The new appliance: self-signed.
    let new_key = NodeKey::generate().unwrap();
    let new_cert = self_signed_join_cert(&new_key, &subject(4), now).unwrap();
    // The admin's node: self-signed too here (a CA-signed one works alike).
    let admin_key = NodeKey::generate().unwrap();
    let admin_cert = self_signed_join_cert(&admin_key, &subject(1), now).unwrap();

    let (c, s) = over_duplex(
        join_client_config(&admin_cert, &admin_key).unwrap(),
        join_server_config(&new_cert, &new_key).unwrap(),
    )
    .await;
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.peer_fingerprint, Some(fingerprint(new_cert.der())));
    assert_eq!(s.peer_fingerprint, Some(fingerprint(admin_cert.der())));
    assert_eq!(c.peer_node, Some(new_cert.node_id()));
    assert_eq!(s.peer_node, Some(admin_cert.node_id()));

    // With a CA-signed admin certificate, and an expired one on the new
    // node: the join channel checks neither chain nor dates.
    let ca = CaKey::create("test", now).unwrap();
    let admin = node(&ca, 1, now);
    let stale = self_signed_join_cert(&new_key, &subject(4), now - 2 * 365 * DAY).unwrap();
    let (c, s) = over_duplex(
        join_client_config(&admin.cert, &admin.key).unwrap(),
        join_server_config(&stale, &new_key).unwrap(),
    )
    .await;
    assert_eq!(c.unwrap().peer_fingerprint, Some(stale.fingerprint()));
    assert_eq!(s.unwrap().peer_fingerprint, Some(admin.cert.fingerprint()));
}

#[tokio::test]
async fn the_join_channel_refuses_a_certificate_shown_without_its_key() {
    let now = SystemTime::now();
    let victim_key = NodeKey::generate().unwrap();
    let victim = self_signed_join_cert(&victim_key, &subject(4), now).unwrap();
    let relay_key = NodeKey::generate().unwrap();
    let relay_cert = self_signed_join_cert(&relay_key, &subject(9), now).unwrap();
    let admin_key = NodeKey::generate().unwrap();
    let admin_cert = self_signed_join_cert(&admin_key, &subject(1), now).unwrap();

    // The victim's certificate with the relay's key, so that the admin
    // would see the victim's fingerprint: a relay's only way to fake it.
    let forged = || {
        let signer = appliance_pki::crypto_provider()
            .key_provider
            .load_private_key(relay_key.private_key_der())
            .unwrap();
        Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![victim.cert_der()],
            signer,
        )))
    };

    // As a server.
    let mut relay_server = (*join_server_config(&relay_cert, &relay_key).unwrap()).clone();
    relay_server.cert_resolver = forged();
    let (c, _s) = over_duplex(
        join_client_config(&admin_cert, &admin_key).unwrap(),
        Arc::new(relay_server),
    )
    .await;
    let e = c.unwrap_err();
    assert!(
        e.contains("client handshake") && e.contains("BadSignature"),
        "{e}"
    );

    // As a client.
    let mut relay_client = (*join_client_config(&relay_cert, &relay_key).unwrap()).clone();
    relay_client.client_auth_cert_resolver = forged();
    let (_c, s) = over_duplex(
        Arc::new(relay_client),
        join_server_config(&admin_cert, &admin_key).unwrap(),
    )
    .await;
    let e = s.unwrap_err();
    assert!(
        e.contains("server handshake") && e.contains("BadSignature"),
        "{e}"
    );
}

/// A client that has no certificate to present.
#[derive(Debug)]
struct NoClientCert;

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

#[test]
fn configs_refuse_a_key_that_is_not_the_certificates() {
    let now = SystemTime::now();
    let ca = CaKey::create("test", now).unwrap();
    let a = node(&ca, 1, now);
    let other = NodeKey::generate().unwrap();
    let none = SharedRevocations::default();
    let e = cluster_server_config(ca.cert(), &a.cert, &other, none.clone()).unwrap_err();
    assert!(e.to_string().contains(&a.cert.fingerprint()), "{e}");
    assert!(cluster_client_config(ca.cert(), &a.cert, &other, none, a.id).is_err());
    assert!(join_server_config(&a.cert, &other).is_err());
    assert!(join_client_config(&a.cert, &other).is_err());
}
