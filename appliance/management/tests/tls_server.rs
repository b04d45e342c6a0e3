//! The HTTPS server itself: TLS 1.2 and 1.3 both work with ALPN, nothing
//! older is accepted (rustls implements neither 1.0 nor 1.1, and a 1.1
//! ClientHello gets no ServerHello), a new certificate from applianced is
//! served without a restart, handshakes time out, connections are bounded,
//! and the server stops when told.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appliance_management::server::{self, Limits};
use appliance_management::tls::{self, CertResolver};
use common::{certificate, Harness};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme, SupportedProtocolVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Accepts any certificate and remembers the last one (the tests compare it).
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client(
    version: &'static SupportedProtocolVersion,
    alpn: &[u8],
    recorder: Arc<Recorder>,
) -> TlsConnector {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(recorder)
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

struct Running {
    addr: SocketAddr,
    resolver: Arc<CertResolver>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(h: &Harness, limits: Limits) -> Running {
    let resolver = Arc::new(CertResolver::new());
    assert!(tls::refresh(h.state.backend(), &resolver)
        .await
        .expect("certificate"));
    let config = Arc::new(tls::server_config(resolver.clone()).expect("config"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(
        listener,
        config,
        h.app.clone(),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        resolver,
        stop: Some(stop),
        task,
    }
}

async fn get_healthz(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> (ProtocolVersion, Option<Vec<u8>>, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("node1").expect("name");
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().expect("version");
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut reply = Vec::new();
    if alpn.as_deref() != Some(b"h2") {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node1\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply))
            .await
            .expect("reply in time")
            .expect("read");
    }
    (version, alpn, String::from_utf8_lossy(&reply).into_owned())
}

#[tokio::test]
async fn tls_1_2_and_1_3_with_alpn_and_nothing_older() {
    // rustls has no TLS 1.0 or 1.1 at all: the only versions it knows.
    assert!(rustls::ALL_VERSIONS.iter().all(|v| matches!(
        v.version,
        ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3
    )));
    let h = Harness::start().await;
    let running = start(&h, Limits::default()).await;
    let recorder = Arc::new(Recorder::default());

    let (version, alpn, reply) = get_healthz(
        &client(&rustls::version::TLS12, b"http/1.1", recorder.clone()),
        running.addr,
    )
    .await;
    assert_eq!(version, ProtocolVersion::TLSv1_2);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");

    let (version, alpn, _) = get_healthz(
        &client(&rustls::version::TLS13, b"h2", recorder.clone()),
        running.addr,
    )
    .await;
    assert_eq!(version, ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // A TLS 1.1 ClientHello (TLS_RSA_WITH_AES_128_CBC_SHA, no extensions):
    // no ServerHello comes back, only an alert or the end of the connection.
    let mut hello = vec![0x03, 0x02];
    hello.extend([7u8; 32]);
    hello.extend([0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(hello.len()).expect("len")];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        0x03,
        0x02,
        0x00,
        u8::try_from(handshake.len()).expect("len"),
    ];
    record.extend(handshake);
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.write_all(&record).await.expect("write");
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first))
        .await
        .expect("answer in time")
        .unwrap_or(0);
    assert!(
        n == 0 || first[0] == 0x15,
        "an alert (0x15) or nothing, not a handshake: {first:?}"
    );
}

#[tokio::test]
async fn a_new_certificate_is_served_without_a_restart() {
    let h = Harness::start().await;
    let running = start(&h, Limits::default()).await;
    let recorder = Arc::new(Recorder::default());
    let connector = client(&rustls::version::TLS13, b"http/1.1", recorder.clone());
    get_healthz(&connector, running.addr).await;
    let first = recorder
        .seen
        .lock()
        .expect("lock")
        .clone()
        .expect("a certificate");

    assert!(
        !tls::refresh(h.state.backend(), &running.resolver)
            .await
            .expect("refresh"),
        "unchanged"
    );
    let next = certificate("node1.example");
    h.fake.lock().tls = next.clone();
    assert!(
        tls::refresh(h.state.backend(), &running.resolver)
            .await
            .expect("refresh"),
        "changed"
    );
    assert_eq!(
        running.resolver.fingerprint().as_deref(),
        Some(next.fingerprint.as_str())
    );
    // A new client: the first one would resume its session without a certificate.
    let connector = client(&rustls::version::TLS13, b"http/1.1", recorder.clone());
    get_healthz(&connector, running.addr).await;
    let second = recorder
        .seen
        .lock()
        .expect("lock")
        .clone()
        .expect("a certificate");
    assert_ne!(first, second);

    // A key that is not the certificate's is refused; the one in use stays.
    let other = certificate("node1");
    h.fake.lock().tls = appliance_api::v1::ManagementTls {
        key_pem: other.key_pem,
        ..certificate("node1")
    };
    let err = tls::refresh(h.state.backend(), &running.resolver)
        .await
        .expect_err("mismatched key");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_eq!(
        running.resolver.fingerprint().as_deref(),
        Some(next.fingerprint.as_str())
    );

    // A broken certificate from applianced leaves the one in use.
    h.fake.lock().tls = appliance_api::v1::ManagementTls {
        cert_pem: "not a certificate".into(),
        fingerprint: "other".into(),
        ..Default::default()
    };
    assert!(tls::refresh(h.state.backend(), &running.resolver)
        .await
        .is_err());
    assert_eq!(
        running.resolver.fingerprint().as_deref(),
        Some(next.fingerprint.as_str())
    );
}

#[tokio::test]
async fn slow_handshakes_time_out_and_connections_are_bounded_then_it_stops() {
    let h = Harness::start().await;
    let limits = Limits {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(2),
    };
    let mut running = start(&h, limits).await;
    // One silent connection holds the only slot...
    let mut silent = TcpStream::connect(running.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so the next is closed at once.
    let mut second = TcpStream::connect(running.addr).await.expect("connect");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_millis(250), second.read(&mut buf))
        .await
        .expect("closed before the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The silent one is closed when its handshake time is up.
    let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("closed after the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The slot is free again.
    let recorder = Arc::new(Recorder::default());
    let (_, _, reply) = get_healthz(
        &client(&rustls::version::TLS12, b"http/1.1", recorder),
        running.addr,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");

    running.stop.take().expect("stop").send(()).expect("send");
    tokio::time::timeout(Duration::from_secs(5), running.task)
        .await
        .expect("stops in time")
        .expect("task");
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn plain_http_is_told_to_use_https() {
    let h = Harness::start().await;
    let running = start(&h, Limits::default()).await;
    let mut tcp = TcpStream::connect(running.addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: node1\r\n\r\n")
        .await
        .expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .expect("answer in time")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("use https://"), "{reply}");
}
