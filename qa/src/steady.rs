//! A steady request/reply exchange on one established TCP connection, to
//! show that membership changes and firewall updates do not disturb
//! connections already open: used by the cluster tests and the join bench.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::lan::connect_from;
use crate::netns::Netns;

/// What a [`Steady`] exchange saw.
#[derive(Debug, Clone, Default)]
pub struct SteadyReport {
    /// Requests sent.
    pub sent: u64,
    /// Replies received.
    pub answered: u64,
    /// Replies that took longer than the stall limit.
    pub stalled: u64,
    /// The slowest reply.
    pub slowest: Duration,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

/// A steady request/reply exchange on one established TCP connection: one
/// HTTP keep-alive `GET /healthz` every `interval` to the portal, until
/// stopped. Replies slower than `stall` count as stalled.
pub struct Steady {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    report: std::sync::Arc<std::sync::Mutex<SteadyReport>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Steady {
    /// Opens the connection from inside `ns` and starts the exchange.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        interval: Duration,
        stall: Duration,
    ) -> anyhow::Result<Steady> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let conn = connect_from(ns, addr, Duration::from_secs(3))??;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.set_nodelay(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(SteadyReport::default()));
        let (stop2, report2) = (stop.clone(), report.clone());
        let handle = std::thread::spawn(move || {
            let mut writer = conn;
            let Ok(read_half) = writer.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(read_half);
            // Bounded: at most an hour of exchanges at 1 ms.
            for _ in 0..3_600_000u64 {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let started = std::time::Instant::now();
                let result = exchange(&mut writer, &mut reader);
                let took = started.elapsed();
                let mut r = report2.lock().unwrap_or_else(|e| e.into_inner());
                r.sent += 1;
                match result {
                    Ok(()) => {
                        r.answered += 1;
                        r.slowest = r.slowest.max(took);
                        if took > stall {
                            r.stalled += 1;
                        }
                    }
                    Err(e) => {
                        r.error = Some(format!("after {} replies: {e}", r.answered));
                        return;
                    }
                }
                drop(r);
                std::thread::sleep(interval);
            }
        });
        Ok(Steady {
            stop,
            report,
            handle: Some(handle),
        })
    }

    /// What it saw so far.
    pub fn report(&self) -> SteadyReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the exchange and returns what it saw.
    pub fn finish(mut self) -> SteadyReport {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.report()
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One keep-alive request and its whole reply.
fn exchange(writer: &mut TcpStream, reader: &mut BufReader<TcpStream>) -> anyhow::Result<()> {
    writer.write_all(b"GET /healthz HTTP/1.1\r\nHost: steady\r\n\r\n")?;
    let mut status = String::new();
    reader.read_line(&mut status)?;
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 200"),
        "the portal answered {status:?}"
    );
    let mut length = 0usize;
    for _ in 0..64 {
        let mut h = String::new();
        anyhow::ensure!(reader.read_line(&mut h)? > 0, "the connection closed");
        let h = h.trim_end();
        if h.is_empty() {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            return Ok(());
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
            if name.eq_ignore_ascii_case("connection") && value.trim() == "close" {
                anyhow::bail!("the portal closed the kept connection");
            }
        }
    }
    anyhow::bail!("more than 64 header lines")
}
