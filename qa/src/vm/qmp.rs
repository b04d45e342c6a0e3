//! A small client of QEMU's machine protocol (QMP): the greeting, commands
//! without arguments (the ACPI power button, `quit`) and the events read
//! meanwhile (`SHUTDOWN`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

/// A QMP (QEMU Machine Protocol) connection: JSON objects, one per line.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received so far (`{"event": ..., "data": ...}`).
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying for at most `limit` while QEMU creates the
    /// socket), reads the greeting and leaves capability negotiation.
    pub fn connect(path: &Path, limit: Duration) -> anyhow::Result<Self> {
        let stream =
            crate::wait::until(limit, Duration::from_millis(50), "the QMP socket", || {
                UnixStream::connect(path).ok()
            })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .context("setting the QMP read timeout")?;
        let writer = stream.try_clone().context("cloning the QMP socket")?;
        let mut q = Self {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = q.read()?;
        anyhow::ensure!(
            greeting.get("QMP").is_some(),
            "QMP greeting expected, got {greeting}"
        );
        q.execute("qmp_capabilities")?;
        Ok(q)
    }

    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        anyhow::ensure!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    /// Runs `command` (no arguments) and returns its `return` value; events
    /// read meanwhile are kept in [`Qmp::events`].
    pub fn execute(&mut self, command: &str) -> anyhow::Result<Value> {
        let msg = json!({ "execute": command }).to_string() + "\n";
        self.writer
            .write_all(msg.as_bytes())
            .with_context(|| format!("sending {command} to QMP"))?;
        // Bounded: each read has a timeout, and QEMU answers within a few
        // events.
        for _ in 0..1000 {
            let v = self
                .read()
                .with_context(|| format!("waiting for the answer to {command}"))?;
            if v.get("event").is_some() {
                self.events.push(v);
            } else if let Some(r) = v.get("return") {
                return Ok(r.clone());
            } else if let Some(e) = v.get("error") {
                anyhow::bail!("QMP {command} failed: {e}");
            }
        }
        anyhow::bail!("QMP sent no answer to {command} among 1000 messages")
    }

    /// Reads the events left until QEMU closes the connection, for at most
    /// `limit`.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)));
        while Instant::now() < deadline {
            match self.read() {
                Ok(v) if v.get("event").is_some() => self.events.push(v),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
