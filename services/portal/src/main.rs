//! `portal`: the demo frontend. A small HTTP/1.1 server that records events in `audit`.
//!
//! `GET /` page, `GET /healthz`, `POST /events` (body -> audit, answers the seq),
//! `GET /events` (last 20). 502 when the audit service is unreachable.
//!
//! Where audit runs: `--audit ADDR` if given; else the back-end nodes applianced lists in
//! `APPLIANCE_BACKENDS` (comma-separated addresses, this node's loopback first when it
//! runs audit itself) on `--audit-port` (7100), tried in order; else 127.0.0.1.

mod audit_client;
mod http;

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_client::Audit;

const DEFAULT_LISTEN: &str = "[::]:8080";
const DEFAULT_AUDIT_PORT: u16 = 7100;
/// Set by applianced: the back-end nodes' addresses.
const BACKENDS_ENV: &str = "APPLIANCE_BACKENDS";
/// Requests one keep-alive connection may carry.
const MAX_REQUESTS_PER_CONNECTION: usize = 100_000;
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

/// The audit addresses to try, in order: `explicit`, else `backends` (the
/// value of `APPLIANCE_BACKENDS`) on `port`, else the loopback.
fn audit_targets(
    explicit: Option<&str>,
    backends: Option<&str>,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Some(a) = explicit {
        let addrs: Vec<SocketAddr> = a
            .to_socket_addrs()
            .map_err(|e| format!("--audit {a}: {e}"))?
            .collect();
        return Ok(addrs);
    }
    let mut out = Vec::new();
    for item in backends.unwrap_or_default().split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let ip: IpAddr = item
            .parse()
            .map_err(|_| format!("{BACKENDS_ENV} lists {item:?}, which is not an IP address"))?;
        out.push(SocketAddr::new(ip, port));
    }
    if out.is_empty() {
        out.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Ok(out)
}

fn run() -> Result<(), String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut audit: Option<String> = None;
    let mut audit_port = DEFAULT_AUDIT_PORT;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--audit" => audit = Some(args.next().ok_or("--audit needs an address")?),
            "--audit-port" => {
                let p = args.next().ok_or("--audit-port needs a port")?;
                audit_port = p
                    .parse()
                    .map_err(|_| format!("--audit-port {p:?} is not a port number"))?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: portal [--listen ADDR] [--audit ADDR] \
                     [--audit-port PORT]"
                ))
            }
        }
    }
    let backends = std::env::var(BACKENDS_ENV).ok();
    let targets = audit_targets(audit.as_deref(), backends.as_deref(), audit_port)?;
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let shown: Vec<String> = targets.iter().map(ToString::to_string).collect();
    println!("portal listening on {local}, audit at {}", shown.join(", "));
    let audit: Arc<[SocketAddr]> = targets.into();
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

/// Serves the requests of one connection, one after another, until the
/// client closes it, asks to, or stays idle for [`IO_TIMEOUT`].
fn serve(stream: &TcpStream, audit: &[SocketAddr]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let request = match http::read_request(&mut reader) {
            Ok(Some(Ok(r))) => r,
            // Closed between requests, or idle too long: the end of a keep-alive connection.
            Ok(None) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
            Ok(Some(Err(http::BadRequest(status, why)))) => {
                return http::respond(stream, status, "text/plain", &format!("{why}\n"))
            }
        };
        let keep_alive = request.keep_alive;
        let (status, ctype, body) = answer(&request, audit);
        http::respond_keep(stream, status, ctype, &body, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
    Ok(())
}

fn answer(request: &http::Request, audit_addrs: &[SocketAddr]) -> (u16, &'static str, String) {
    let audit = Audit { addrs: audit_addrs };
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
    (status, ctype, body)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_is_found_from_the_backends_list() {
        let t = audit_targets(None, Some("127.0.0.1, 10.0.0.1,fd00::1"), 7100).unwrap();
        let t: Vec<String> = t.iter().map(ToString::to_string).collect();
        assert_eq!(t, ["127.0.0.1:7100", "10.0.0.1:7100", "[fd00::1]:7100"]);
        let t = audit_targets(None, None, 7100).unwrap();
        assert_eq!(t, [SocketAddr::from(([127, 0, 0, 1], 7100))]);
        let t = audit_targets(Some("127.0.0.1:9"), Some("10.0.0.1"), 7100).unwrap();
        assert_eq!(t, [SocketAddr::from(([127, 0, 0, 1], 9))]);
        assert!(audit_targets(None, Some("node-a"), 7100)
            .unwrap_err()
            .contains("not an IP address"));
    }
}
