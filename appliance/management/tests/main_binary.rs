//! The managementd program itself: started before applianced's socket
//! exists it waits (retrying, logging each try) instead of exiting; once the
//! stand-in applianced answers it serves HTTPS with its certificate on the
//! port given by `APPLIANCE_MANAGEMENT_PORT`; SIGTERM stops it cleanly.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Fake;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kills the child if the test fails half-way.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// GET /healthz over TLS (any certificate), the status line.
async fn healthz(port: u16) -> Option<String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("node1").ok()?, tcp)
        .await
        .ok()?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: node1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut reply))
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .map(str::to_string)
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(m, c, d, &algs)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(m, c, d, &algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_applianced_then_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("applianced.sock");
    let log = dir.path().join("managementd.log");
    let port = free_port();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_managementd"))
            .args(["--socket"])
            .arg(&socket)
            .env("APPLIANCE_MANAGEMENT_PORT", port.to_string())
            .env_remove("MANAGEMENT_LISTEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start managementd"),
    );

    // No applianced yet: it keeps trying.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "managementd exited without applianced"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.matches("applianced not reachable yet").count() >= 2,
        "each try is logged: {text}"
    );

    // applianced comes up: managementd serves on the port it was given.
    let _fake = Fake::serve_at(&socket, &[("admin", "administrator")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(line) = healthz(port).await {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "never served: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");

    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        exit.success(),
        "{exit:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("managementd stopped"), "{text}");
}
