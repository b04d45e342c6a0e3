//! Runs the real `portal` binary against an in-test audit stand-in that speaks the audit
//! line protocol (the real `audit` binary is tested in its own crate).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_portal(audit: &str) -> Server {
    start_portal_with(&["--audit", audit], None)
}

fn start_portal_with(args: &[&str], backends: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portal"));
    cmd.args(["--listen", "127.0.0.1:0"]).args(args);
    match backends {
        Some(b) => cmd.env("APPLIANCE_BACKENDS", b),
        None => cmd.env_remove("APPLIANCE_BACKENDS"),
    };
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start portal");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout piped");
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    // "portal listening on 127.0.0.1:PORT, audit at ADDR"
    let addr = line
        .split_whitespace()
        .nth(3)
        .expect("address")
        .trim_end_matches(',')
        .to_string();
    Server(child, addr)
}

/// A minimal audit: APPEND / COUNT / TAIL over an in-memory list.
fn fake_audit() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut out = conn.try_clone().expect("clone");
            let mut line = String::new();
            if BufReader::new(conn).read_line(&mut line).is_err() {
                continue;
            }
            let mut log = shared.lock().expect("lock");
            let line = line.trim_end();
            let reply = if let Some(text) = line.strip_prefix("APPEND ") {
                log.push(text.to_string());
                format!("OK {}\n", log.len())
            } else if line == "COUNT" {
                format!("{}\n", log.len())
            } else if line.starts_with("TAIL ") {
                log.iter().map(|l| format!("{l}\n")).collect::<String>() + ".\n"
            } else {
                "ERR unknown\n".to_string()
            };
            let _ = out.write_all(reply.as_bytes());
        }
    });
    (addr, log)
}

fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read until close");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn post(addr: &str, body: &str) -> (u16, String) {
    let req = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(addr, &req)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn events_go_to_audit() {
    let (audit, log) = fake_audit();
    let portal = start_portal(&audit);
    assert_eq!(get(&portal.1, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(
        post(&portal.1, "user logged in\n"),
        (200, "1\n".to_string())
    );
    assert_eq!(
        post(&portal.1, "settings changed"),
        (200, "2\n".to_string())
    );
    assert_eq!(
        *log.lock().expect("lock"),
        ["user logged in", "settings changed"]
    );
    assert_eq!(
        get(&portal.1, "/events"),
        (200, "user logged in\nsettings changed\n".to_string())
    );
    let (status, page) = get(&portal.1, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>Appliance portal</title>") && page.contains("<b>2</b>"),
        "{page}"
    );
    assert_eq!(post(&portal.1, "   ").0, 400);
    assert_eq!(get(&portal.1, "/nope").0, 404);
    assert_eq!(
        http(
            &portal.1,
            "DELETE /events HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        .0,
        405
    );
}

#[test]
fn unreachable_audit_gives_502() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let portal = start_portal(&closed.to_string());
    assert_eq!(post(&portal.1, "lost").0, 502);
    assert_eq!(get(&portal.1, "/events").0, 502);
    assert_eq!(get(&portal.1, "/healthz").0, 200);
    let (status, page) = get(&portal.1, "/");
    assert_eq!(status, 200);
    assert!(page.contains("unavailable"));
}

/// Reads one response (status line, headers, Content-Length body) off a kept connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    let mut connection = String::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').expect("header line");
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().expect("length"),
            "connection" => connection = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, connection, String::from_utf8(body).expect("utf-8"))
}

#[test]
fn one_connection_carries_many_requests_until_the_client_closes() {
    let (audit, log) = fake_audit();
    let portal = start_portal(&audit);
    let mut s = TcpStream::connect(&portal.1).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    for i in 1..=20 {
        let body = format!("event {i}");
        write!(
            s,
            "POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        assert_eq!(
            read_response(&mut reader),
            (200, "keep-alive".to_string(), format!("{i}\n"))
        );
    }
    assert_eq!(log.lock().expect("lock").len(), 20);
    // The last request asks to close: answered, then the connection ends.
    s.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("send");
    assert_eq!(
        read_response(&mut reader),
        (200, "close".to_string(), "ok\n".to_string())
    );
    let mut rest = String::new();
    reader.read_to_string(&mut rest).expect("eof");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn audit_is_reached_through_the_backends_applianced_lists() {
    let (audit, log) = fake_audit();
    let port = audit.rsplit(':').next().expect("port");
    // A first back-end where nothing listens (refused at once), then the one that answers.
    let portal = start_portal_with(&["--audit-port", port], Some("127.0.0.2,127.0.0.1"));
    assert_eq!(
        post(&portal.1, "from a front-end"),
        (200, "1\n".to_string())
    );
    assert_eq!(*log.lock().expect("lock"), ["from a front-end"]);
}
