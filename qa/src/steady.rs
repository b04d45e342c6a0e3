//! Traffic that must survive membership changes and firewall updates:
//! [`Steady`], a request/reply exchange on one established TCP connection
//! (used by the cluster tests), and [`Paced`], HTTP requests sent at a fixed
//! rate on fresh connections, each with its own deadline, whose late or
//! missing replies are counted (used by the join bench).

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

/// Most failure reasons a [`PacedReport`] keeps (the first ones seen).
const KEPT_ERRORS: usize = 8;
/// Largest reply read; the portal's answers are a few bytes.
const MAX_REPLY: u64 = 64 * 1024;
/// Bound of a [`Paced`] run: an hour of requests.
const MAX_PACED: Duration = Duration::from_secs(3600);

/// One HTTP request a [`Paced`] sender repeats.
#[derive(Debug, Clone)]
pub struct PacedRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, e.g. `/healthz`.
    pub path: String,
    /// The body of a POST, followed by the request's number so each is
    /// distinct (an audit event); none for a GET.
    pub body: Option<String>,
}

impl PacedRequest {
    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            body: None,
        }
    }

    /// `POST path` with `body` and the request's number.
    pub fn post(path: &str, body: &str) -> Self {
        Self {
            method: "POST",
            path: path.to_owned(),
            body: Some(body.to_owned()),
        }
    }

    /// The bytes of request number `n`, which asks the server to close.
    fn bytes(&self, n: u64) -> Vec<u8> {
        let body = self
            .body
            .as_ref()
            .map(|b| format!("{b} {n}"))
            .unwrap_or_default();
        format!(
            "{} {} HTTP/1.1\r\nHost: paced\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.method,
            self.path,
            body.len()
        )
        .into_bytes()
    }
}

/// What a [`Paced`] sender saw. Every request sent is counted once, as
/// answered, late or failed.
#[derive(Debug, Clone, Default)]
pub struct PacedReport {
    /// Requests sent.
    pub sent: u64,
    /// Replies with a 2xx status within the deadline.
    pub answered: u64,
    /// No whole reply within the deadline (no reply at all, or a late one).
    pub late: u64,
    /// Refused, reset, or answered with another status.
    pub failed: u64,
    /// The slowest reply within the deadline.
    pub slowest: Duration,
    /// The most consecutive requests lost: an outage of about this many
    /// times the interval.
    pub longest_lost_run: u64,
    /// How long requests were sent.
    pub sending: Duration,
    /// The first distinct reasons of failed and late requests.
    pub errors: Vec<String>,
}

impl PacedReport {
    /// Requests late or failed.
    pub fn lost(&self) -> u64 {
        self.late + self.failed
    }
}

/// HTTP requests sent at a fixed rate from inside a namespace, whatever the
/// replies do: request `n` is sent at `n * every` on its own connection, and
/// counts as lost when its whole 2xx reply is not in within `deadline`. A
/// timeout is counted, never fatal.
pub struct Paced {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<PacedReport>>>,
}

impl Paced {
    /// Starts sending `request` to `addr` from inside `ns`, one every `every`.
    pub fn start(
        ns: &Netns,
        addr: SocketAddr,
        request: PacedRequest,
        every: Duration,
        deadline: Duration,
    ) -> anyhow::Result<Paced> {
        use anyhow::Context;
        let path = format!("/var/run/netns/{}", ns.name());
        let netns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(Self::spawn(
            Some((netns, ns.name().to_owned())),
            addr,
            request,
            every,
            deadline,
        ))
    }

    /// As [`Paced::start`], from this process's own namespace.
    pub fn start_here(
        addr: SocketAddr,
        request: PacedRequest,
        every: Duration,
        deadline: Duration,
    ) -> Paced {
        Self::spawn(None, addr, request, every, deadline)
    }

    fn spawn(
        netns: Option<(std::fs::File, String)>,
        addr: SocketAddr,
        request: PacedRequest,
        every: Duration,
        deadline: Duration,
    ) -> Paced {
        use anyhow::Context;
        use std::os::fd::AsFd;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            // Sockets take the namespace of the thread that opens them: this
            // thread enters it and its single-threaded runtime opens them all.
            if let Some((file, name)) = netns {
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {name}"))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("building a tokio runtime")?;
            Ok(rt.block_on(paced(addr, request, every, deadline, &stop2)))
        });
        Paced {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sending, waits for the requests in flight (each ends by its
    /// deadline) and returns what it saw.
    pub fn finish(mut self) -> anyhow::Result<PacedReport> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let Some(handle) = self.handle.take() else {
            anyhow::bail!("the paced sender was already finished");
        };
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("the paced sender panicked"))?
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How one request ended.
enum Outcome {
    Answered(Duration),
    Late,
    Failed(String),
}

/// The sending loop: one request per tick until `stop`, then the stragglers.
async fn paced(
    addr: SocketAddr,
    request: PacedRequest,
    every: Duration,
    deadline: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> PacedReport {
    let started = tokio::time::Instant::now();
    // A late tick is sent at once (Burst): the schedule, not the replies,
    // sets how many requests go out.
    let mut ticks = tokio::time::interval(every);
    let mut flight = tokio::task::JoinSet::new();
    let mut outcomes: Vec<(u64, Outcome)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && started.elapsed() < MAX_PACED {
        let at = ticks.tick().await;
        let bytes = request.bytes(n);
        flight.spawn(async move {
            let outcome = match tokio::time::timeout(deadline, exchange_once(addr, &bytes)).await {
                Ok(Ok(())) => Outcome::Answered(at.elapsed()),
                Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                Err(_) => Outcome::Late,
            };
            (n, outcome)
        });
        n += 1;
        // Collect what has ended, so the set holds only the requests in flight.
        while let Some(done) = flight.try_join_next() {
            outcomes.push(ended(done));
        }
    }
    let sending = started.elapsed();
    while let Some(done) = flight.join_next().await {
        outcomes.push(ended(done));
    }
    outcomes.sort_by_key(|(n, _)| *n);
    let mut report = PacedReport {
        sent: n,
        sending,
        ..PacedReport::default()
    };
    let mut run = 0u64;
    for (_, outcome) in &outcomes {
        let lost = match outcome {
            Outcome::Answered(took) => {
                report.answered += 1;
                report.slowest = report.slowest.max(*took);
                false
            }
            Outcome::Late => {
                report.late += 1;
                keep_error(&mut report.errors, format!("no reply within {deadline:?}"));
                true
            }
            Outcome::Failed(why) => {
                report.failed += 1;
                keep_error(&mut report.errors, why.clone());
                true
            }
        };
        run = if lost { run + 1 } else { 0 };
        report.longest_lost_run = report.longest_lost_run.max(run);
    }
    report
}

/// A request task's result; a panicked task had no reply (sorted last).
fn ended(done: Result<(u64, Outcome), tokio::task::JoinError>) -> (u64, Outcome) {
    done.unwrap_or_else(|e| (u64::MAX, Outcome::Failed(format!("request task: {e}"))))
}

fn keep_error(errors: &mut Vec<String>, why: String) {
    if errors.len() < KEPT_ERRORS && !errors.contains(&why) {
        errors.push(why);
    }
}

/// One request on a fresh connection, read to the server's close; fails
/// unless the status is 2xx.
async fn exchange_once(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    conn.write_all(bytes).await?;
    let mut reply = Vec::new();
    (&mut conn).take(MAX_REPLY).read_to_end(&mut reply).await?;
    let status = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    anyhow::ensure!(
        status.starts_with("HTTP/1.1 2"),
        "answered {:?}",
        status.trim_end()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use super::{Paced, PacedRequest};

    /// Requests 20..30 get no reply, 30..35 a 500, the rest a 200: late and
    /// failed ones are counted, in a row, and the sender keeps its pace.
    #[test]
    fn paced_counts_late_and_failed_requests_and_keeps_sending() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the loopback");
        let addr = listener.local_addr().expect("a local address");
        std::thread::spawn(move || {
            for conn in listener.incoming().take(1000) {
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let Some(n) = request_number(&mut conn) else {
                        return;
                    };
                    let status = match n {
                        20..30 => {
                            std::thread::sleep(Duration::from_secs(3));
                            return;
                        }
                        30..35 => "500 Internal Server Error",
                        _ => "200 OK",
                    };
                    let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                });
            }
        });
        let every = Duration::from_millis(10);
        let paced = Paced::start_here(
            addr,
            PacedRequest::post("/events", "probe"),
            every,
            Duration::from_secs(1),
        );
        std::thread::sleep(Duration::from_millis(600));
        let r = paced.finish().expect("a report");
        // By the schedule, not by the replies: the stalled ones did not hold it up.
        assert!(r.sent >= 45, "{r:?}");
        assert_eq!((r.late, r.failed), (10, 5), "{r:?}");
        assert_eq!(r.answered, r.sent - 15, "{r:?}");
        assert_eq!(r.longest_lost_run, 15, "{r:?}");
        assert_eq!(r.lost(), 15);
    }

    /// The number at the end of a request's body ("probe N").
    fn request_number(conn: &mut std::net::TcpStream) -> Option<u64> {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..16 {
            let k = conn.read(&mut buf).ok().filter(|k| *k > 0)?;
            got.extend_from_slice(&buf[..k]);
            let text = String::from_utf8_lossy(&got);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))?
                .parse()
                .ok()?;
            if body.len() >= length {
                return body.rsplit(' ').next()?.parse().ok();
            }
        }
        None
    }
}
