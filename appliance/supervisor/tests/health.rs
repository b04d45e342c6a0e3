//! Health probes against tiny local servers and real commands.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use appliance_supervisor::health::{check_exec, check_http, check_tcp, HealthError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(2);

/// Answers 200 for /healthz and 503 otherwise, one request per connection.
async fn tiny_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let reply: &[u8] = if req.starts_with("GET /healthz HTTP/1.1\r\n") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            let _ = s.write_all(reply).await;
        }
    });
    addr
}

#[tokio::test]
async fn http_check_wants_2xx() {
    let addr = tiny_server().await;
    check_http(addr, "/healthz", LIMIT).await.expect("healthy");
    let err = check_http(addr, "/broken", LIMIT).await.expect_err("503");
    assert!(matches!(&err, HealthError::Status { status_line, .. } if status_line.contains("503")));
}

#[tokio::test]
async fn tcp_check_needs_a_listener() {
    let addr = tiny_server().await;
    check_tcp(addr, LIMIT).await.expect("listening");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    assert!(check_tcp(closed, LIMIT).await.is_err());
    assert!(check_http(closed, "/", LIMIT).await.is_err());
}

#[tokio::test]
async fn exec_check_uses_exit_status_and_kills_on_timeout() {
    let reaper = common::reaper();
    check_exec(&reaper, PathBuf::from("/bin/true"), &[], LIMIT)
        .await
        .expect("true");
    assert!(matches!(
        check_exec(&reaper, PathBuf::from("/bin/false"), &[], LIMIT).await,
        Err(HealthError::Exit { .. })
    ));
    let start = Instant::now();
    let args = ["30".to_string()];
    let slow = check_exec(
        &reaper,
        PathBuf::from("/bin/sleep"),
        &args,
        Duration::from_millis(200),
    );
    assert!(matches!(slow.await, Err(HealthError::Timeout { .. })));
    assert!(start.elapsed() < Duration::from_secs(5));
}
