//! `appliancectl --server` against a stand-in management port on loopback:
//! a TLS server (self-signed, as a node before it joins) that answers every
//! gRPC call with a refusal. Checks what the client owns: trust on first use
//! and the loud refusal of a changed certificate, TLS 1.2, the messages and
//! exit status when not signed in or when the token is refused, and that
//! nothing is sent before the certificate is accepted.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// A management port that refuses every call with `code` and `message`.
struct StandIn {
    port: u16,
    fingerprint: String,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stand_in(
    port: u16,
    tls12_only: bool,
    code: u16,
    message: &'static str,
) -> anyhow::Result<StandIn> {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let der = key.cert.der().clone();
    let fingerprint = Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // A trailers-only gRPC reply: the status in the headers.
                    let reply = Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", code.to_string())
                        .header("grpc-message", message)
                        .body(String::new());
                    async move { reply }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(StandIn {
        port,
        fingerprint,
        calls,
        task,
    })
}

/// Runs appliancectl with its own configuration directory, no terminal
/// (a new session) and `stdin` as standard input.
async fn ctl(config: &Path, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_appliancectl"));
    cmd.env("XDG_CONFIG_HOME", config)
        .env_remove("APPLIANCE_SERVER")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let Some(mut input) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        // It may end before reading (refused first): a broken pipe is fine.
        let _ = input.write_all(stdin.as_bytes()).await;
    }
    Ok(
        tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
            .await??,
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_is_pinned_and_a_changed_certificate_is_refused() -> anyhow::Result<()> {
    let config = tempfile::tempdir()?;
    let server = stand_in(0, false, 16, "wrong name or password").await?;
    let url = format!("https://127.0.0.1:{}", server.port);
    let login = [
        "--server",
        &url,
        "login",
        "--user",
        "admin",
        "--password-stdin",
    ];

    // No terminal and no --yes: refused, nothing pinned, nothing sent.
    let out = ctl(config.path(), &login, "secret-password\n").await?;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("not known yet") && err.contains(&server.fingerprint),
        "{err}"
    );
    let known = config.path().join("appliancectl/known_servers");
    assert!(!known.exists());

    // The wrong expected fingerprint: refused.
    let wrong = "00:".repeat(31) + "00";
    let mut args = vec!["--accept-fingerprint", &wrong];
    args.extend(login);
    let out = ctl(config.path(), &args, "secret-password\n").await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not the expected one"),
        "{}",
        stderr(&out)
    );
    assert!(!known.exists());
    assert_eq!(server.calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The right one: pinned (0600), then the call goes out and the server's
    // refusal is the message, with a failing exit status and no token.
    let fp = server.fingerprint.to_lowercase().replace(':', "");
    let mut args = vec!["--accept-fingerprint", &fp];
    args.extend(login);
    let out = ctl(config.path(), &args, "secret-password\n").await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong name or password"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not signed in"), "{}", stderr(&out));
    let text = std::fs::read_to_string(&known)?;
    assert_eq!(
        text,
        format!("127.0.0.1:{} {}\n", server.port, server.fingerprint)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&known)?.permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(config.path().join("appliancectl"))?
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(server.calls.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Known now: no question asked.
    let out = ctl(config.path(), &login, "secret-password\n").await?;
    assert!(
        stderr(&out).contains("wrong name or password"),
        "{}",
        stderr(&out)
    );

    // Another certificate on the same address and port: refused loudly.
    let port = server.port;
    drop(server);
    // The port is free again once the old listener's task is gone.
    let mut other = None;
    for _ in 0..100 {
        if let Ok(s) = stand_in(port, false, 16, "wrong name or password").await {
            other = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let other = other.ok_or_else(|| anyhow::anyhow!("port {port} not free again"))?;
    let out = ctl(
        config.path(),
        &[
            "--yes",
            "--server",
            &url,
            "login",
            "--user",
            "admin",
            "--password-stdin",
        ],
        "pw\n",
    )
    .await?;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("the certificate of 127.0.0.1:{port} changed"))
            && err.contains(&other.fingerprint)
            && err.contains(&known.display().to_string()),
        "{err}"
    );
    assert_eq!(other.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_server_and_the_sign_in_hints() -> anyhow::Result<()> {
    let config = tempfile::tempdir()?;
    let server = stand_in(0, true, 16, "the token is not valid").await?;
    let url = format!("https://127.0.0.1:{}", server.port);

    // Not signed in: said before anything goes out.
    let out = ctl(config.path(), &["--server", &url, "status"], "").await?;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "not signed in to 127.0.0.1:{}: run appliancectl --server {url} login",
            server.port
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.calls.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A token the server refuses (expired): the hint to sign in again.
    let dir = config.path().join("appliancectl");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(format!("token-127.0.0.1_{}", server.port)),
        "old\n",
    )?;
    let out = ctl(config.path(), &["--yes", "--server", &url, "status"], "").await?;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("session expired or was ended") && err.contains("the token is not valid"),
        "{err}"
    );
    // Over TLS 1.2 only, the call reached the server.
    assert_eq!(server.calls.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A management command without --server says where it is served.
    let out = ctl(config.path(), &["accounts", "list"], "").await?;
    assert!(stderr(&out).contains("pass --server"), "{}", stderr(&out));
    Ok(())
}
