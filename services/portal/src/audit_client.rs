//! A tiny client for the audit line protocol, with timeouts on every step.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Longest response line accepted from the audit service.
const MAX_LINE: u64 = 8192;

/// One request/response exchange with the audit service, at the first of
/// `addrs` that accepts a connection.
pub struct Audit<'a> {
    pub addrs: &'a [SocketAddr],
}

impl Audit<'_> {
    fn connect(&self) -> io::Result<(TcpStream, BufReader<TcpStream>)> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no audit address is known");
        for &addr in self.addrs {
            match TcpStream::connect_timeout(&addr, TIMEOUT) {
                Ok(s) => {
                    s.set_read_timeout(Some(TIMEOUT))?;
                    s.set_write_timeout(Some(TIMEOUT))?;
                    let reader = BufReader::new(s.try_clone()?);
                    return Ok((s, reader));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
        let mut line = String::new();
        if reader.take(MAX_LINE).read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "audit closed the connection",
            ));
        }
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }

    fn request(&self, line: &str) -> io::Result<(TcpStream, BufReader<TcpStream>, String)> {
        let (mut out, mut reader) = self.connect()?;
        out.write_all(format!("{line}\n").as_bytes())?;
        let first = Self::read_line(&mut reader)?;
        if let Some(err) = first.strip_prefix("ERR ") {
            return Err(io::Error::other(format!("audit refused: {err}")));
        }
        Ok((out, reader, first))
    }

    pub fn count(&self) -> io::Result<u64> {
        let (_, _, line) = self.request("COUNT")?;
        line.parse()
            .map_err(|_| io::Error::other(format!("bad COUNT answer {line:?}")))
    }

    pub fn append(&self, text: &str) -> io::Result<u64> {
        let (_, _, line) = self.request(&format!("APPEND {text}"))?;
        line.strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad APPEND answer {line:?}")))
    }

    pub fn tail(&self, n: usize) -> io::Result<Vec<String>> {
        let (_, mut reader, mut line) = self.request(&format!("TAIL {n}"))?;
        let mut lines = Vec::new();
        // Bounded by the number requested plus the terminator.
        for _ in 0..=n {
            if line == "." {
                return Ok(lines);
            }
            let unstuffed = line.strip_prefix('.').filter(|l| l.starts_with('.'));
            lines.push(unstuffed.map_or_else(|| line.clone(), str::to_string));
            line = Self::read_line(&mut reader)?;
        }
        Err(io::Error::other("TAIL answer did not end with '.'"))
    }
}
