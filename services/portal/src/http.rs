//! Just enough HTTP/1.1: read a request (line, headers, Content-Length body), write its
//! response; a connection carries requests one after another (keep-alive: the HTTP/1.1
//! default, or `Connection: keep-alive` from an HTTP/1.0 client) until either side says
//! `Connection: close`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

const MAX_HEADER_LINE: u64 = 8192;
const MAX_HEADERS: usize = 64;
pub const MAX_BODY: usize = 64 * 1024;

pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// Whether the client keeps the connection for another request.
    pub keep_alive: bool,
}

/// A request we refuse to parse, with the status to answer.
pub struct BadRequest(pub u16, pub &'static str);

fn line(reader: &mut BufReader<&TcpStream>) -> io::Result<Option<String>> {
    let mut buf = String::new();
    if reader.take(MAX_HEADER_LINE).read_line(&mut buf)? == 0 {
        return Ok(None);
    }
    Ok(Some(buf.trim_end_matches(['\n', '\r']).to_string()))
}

/// The next request on a connection: `Ok(None)` when the client closed it
/// between requests, as keep-alive clients do.
pub fn read_request(
    reader: &mut BufReader<&TcpStream>,
) -> io::Result<Option<Result<Request, BadRequest>>> {
    let Some(first) = line(reader)? else {
        return Ok(None);
    };
    Ok(Some(read_rest(reader, &first)?))
}

fn read_rest(
    reader: &mut BufReader<&TcpStream>,
    first: &str,
) -> io::Result<Result<Request, BadRequest>> {
    let mut parts = first.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(Err(BadRequest(400, "malformed request line")));
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(Err(BadRequest(505, "only HTTP/1.x is supported")));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = 0usize;
    for _ in 0..MAX_HEADERS {
        match line(reader)? {
            None => return Ok(Err(BadRequest(400, "truncated headers"))),
            Some(h) if h.is_empty() => {
                let mut body = vec![0; length];
                reader.read_exact(&mut body)?;
                let path = target.split('?').next().unwrap_or(target).to_string();
                return Ok(Ok(Request {
                    method: method.to_string(),
                    path,
                    body,
                    keep_alive,
                }));
            }
            Some(h) => {
                if let Some((name, value)) = h.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("connection") {
                        let v = value.trim();
                        if v.eq_ignore_ascii_case("close") {
                            keep_alive = false;
                        } else if v.eq_ignore_ascii_case("keep-alive") {
                            keep_alive = true;
                        }
                    }
                    if name.trim().eq_ignore_ascii_case("content-length") {
                        match value.trim().parse::<usize>() {
                            Ok(n) if n <= MAX_BODY => length = n,
                            Ok(_) => return Ok(Err(BadRequest(413, "body too large"))),
                            Err(_) => return Ok(Err(BadRequest(400, "bad Content-Length"))),
                        }
                    }
                }
            }
        }
    }
    Ok(Err(BadRequest(431, "too many headers")))
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes a response that closes the connection.
pub fn respond(stream: &TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    respond_keep(stream, status, content_type, body, false)
}

/// Writes a response; unless `keep_alive`, closes the connection's write side.
pub fn respond_keep(
    mut stream: &TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    keep_alive: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    // One write: a head and a body sent apart would wait for the client's
    // delayed ACK of the head (Nagle), some 40 ms per reply on a kept connection.
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out)?;
    stream.flush()?;
    if keep_alive {
        return Ok(());
    }
    // A client that read its answer and left first (health checks do) has
    // already closed: nothing is lost, so that is not an error.
    match stream.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}
