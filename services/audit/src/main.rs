//! `audit`: an append-only audit log served over a line protocol.
//!
//! `APPEND <text>` -> `OK <seq>`, `COUNT` -> `<n>`, `TAIL <n>` -> lines then `.`,
//! `PING` -> `PONG`. TAIL lines starting with '.' get one more '.' (dot-stuffing). Records live in `$APPLIANCE_DATA_DIR/audit.log`.

mod store;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::Store;

const DEFAULT_LISTEN: &str = "[::]:7100";
/// Connections served at once; more are refused with `ERR busy`.
const MAX_CONNECTIONS: usize = 64;
/// Longest request line accepted.
const MAX_LINE: u64 = 4096;
/// Most records one TAIL returns.
const MAX_TAIL: usize = 1000;
/// Idle connections are closed after this long.
const IDLE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: audit [--listen ADDR]"
                ))
            }
        }
    }
    let dir =
        std::env::var_os("APPLIANCE_DATA_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let path = dir.join("audit.log");
    let store = Store::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "audit listening on {local} with {} records in {}",
        store.count(),
        path.display()
    );
    let store = Arc::new(Mutex::new(store));
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.write_all(b"ERR busy\n");
            continue;
        }
        let (store, active) = (store.clone(), active.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &store) {
                eprintln!("connection error: {e}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// Answers requests on one connection until the peer closes it.
fn serve(stream: TcpStream, store: &Mutex<Store>) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if (&mut reader).take(MAX_LINE).read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            out.write_all(b"ERR line too long\n")?;
            return Ok(());
        }
        let reply = answer(line.trim_end_matches(['\n', '\r']), store);
        out.write_all(reply.as_bytes())?;
    }
}

fn answer(request: &str, store: &Mutex<Store>) -> String {
    let (verb, rest) = request.split_once(' ').unwrap_or((request, ""));
    let Ok(mut store) = store.lock() else {
        return "ERR internal\n".to_string();
    };
    match verb {
        "PING" => "PONG\n".to_string(),
        "COUNT" => format!("{}\n", store.count()),
        "APPEND" if !rest.is_empty() => match store.append(rest) {
            Ok(seq) => format!("OK {seq}\n"),
            Err(e) => format!("ERR append failed: {e}\n"),
        },
        "TAIL" => match rest.trim().parse::<usize>() {
            Ok(n) => match store.tail(n.min(MAX_TAIL)) {
                // Dot-stuffing (as SMTP): a record starting with '.' is sent with one more.
                Ok(lines) => {
                    lines
                        .iter()
                        .map(|l| {
                            let stuff = if l.starts_with('.') { "." } else { "" };
                            format!("{stuff}{l}\n")
                        })
                        .collect::<String>()
                        + ".\n"
                }
                Err(e) => format!("ERR read failed: {e}\n"),
            },
            Err(_) => "ERR usage: TAIL <n>\n".to_string(),
        },
        _ => "ERR unknown command; use APPEND <text>, COUNT, TAIL <n>, PING\n".to_string(),
    }
}
