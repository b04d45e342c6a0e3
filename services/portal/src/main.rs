//! `portal`: the demo frontend. A small HTTP/1.1 server that records events in `audit`.
//!
//! `GET /` page, `GET /healthz`, `POST /events` (body -> audit, answers the seq),
//! `GET /events` (last 20). 502 when the audit service is unreachable.

mod audit_client;
mod http;

use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_client::Audit;

const DEFAULT_LISTEN: &str = "[::]:8080";
const DEFAULT_AUDIT: &str = "127.0.0.1:7100";
/// Requests served at once; more get 503.
const MAX_CONNECTIONS: usize = 128;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portal: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (mut listen, mut audit) = (DEFAULT_LISTEN.to_string(), DEFAULT_AUDIT.to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--audit" => audit = args.next().ok_or("--audit needs an address")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: portal [--listen ADDR] [--audit ADDR]"
                ))
            }
        }
    }
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("portal listening on {local}, audit at {audit}");
    let audit: Arc<str> = audit.into();
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = http::respond(&stream, 503, "text/plain", "busy\n");
            continue;
        }
        let (audit, active) = (audit.clone(), active.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(&stream, &audit) {
                eprintln!("request failed: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn serve(stream: &TcpStream, audit_addr: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = match http::read_request(stream)? {
        Ok(r) => r,
        Err(http::BadRequest(status, why)) => {
            return http::respond(stream, status, "text/plain", &format!("{why}\n"))
        }
    };
    let audit = Audit { addr: audit_addr };
    let unreachable = |e: std::io::Error| (502, "text/plain", format!("audit unavailable: {e}\n"));
    let (status, ctype, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/") => (200, "text/html; charset=utf-8", page(&audit)),
        ("POST", "/events") => {
            let text = String::from_utf8_lossy(&request.body);
            let text = text.trim();
            if text.is_empty() {
                (400, "text/plain", "empty event\n".to_string())
            } else {
                match audit.append(text) {
                    Ok(seq) => (200, "text/plain", format!("{seq}\n")),
                    Err(e) => unreachable(e),
                }
            }
        }
        ("GET", "/events") => match audit.tail(20) {
            Ok(lines) => (
                200,
                "text/plain",
                lines.iter().map(|l| format!("{l}\n")).collect(),
            ),
            Err(e) => unreachable(e),
        },
        (_, "/" | "/healthz" | "/events") => {
            (405, "text/plain", "method not allowed\n".to_string())
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    http::respond(stream, status, ctype, &body)
}

fn page(audit: &Audit<'_>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let count = match audit.count() {
        Ok(n) => n.to_string(),
        Err(_) => "unavailable".to_string(),
    };
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Appliance portal</title></head>\n\
         <body><h1>Appliance portal</h1>\n<p>Host: <b>{}</b></p>\n<p>Audit records: <b>{}</b></p>\n\
         </body></html>\n",
        escape(host.trim()),
        escape(&count)
    )
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect()
}
