//! The `--server` argument: which management port to reach, and the names
//! (for files and for TLS) derived from it.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use rustls::pki_types::ServerName;

/// The management port when the URL names none.
pub const DEFAULT_PORT: u16 = 8443;

/// Why a `--server` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerUrlError {
    /// Another scheme than `https://`.
    #[error("--server {0:?}: the management port speaks HTTPS only (https://HOST[:PORT])")]
    Scheme(String),
    /// A path, query or user part after the host.
    #[error("--server {0:?}: only https://HOST[:PORT] is expected, without a path")]
    Path(String),
    /// An empty or malformed host.
    #[error("--server {0:?}: not a host name or address")]
    Host(String),
    /// A port that is not a number from 1 to 65535.
    #[error("--server {0:?}: the port must be a number from 1 to 65535")]
    Port(String),
}

/// A management port: host name or address, and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host as written (an IPv6 address without its brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl Server {
    /// Parses `https://HOST[:PORT][/]` (the scheme may be left out; IPv6
    /// addresses in brackets).
    pub fn parse(url: &str) -> Result<Self, ServerUrlError> {
        let input = url.trim();
        let rest = match input.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some(_) => return Err(ServerUrlError::Scheme(url.to_owned())),
            None => input,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(ServerUrlError::Path(url.to_owned()));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| ServerUrlError::Host(url.to_owned()))?;
            addr.parse::<Ipv6Addr>()
                .map_err(|_| ServerUrlError::Host(url.to_owned()))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| ServerUrlError::Host(url.to_owned()))?,
                ),
            };
            (addr, port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !valid_name {
            return Err(ServerUrlError::Host(url.to_owned()));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(ServerUrlError::Port(url.to_owned())),
            },
        };
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `https://HOST:PORT`, as the user would type it again.
    pub fn url(&self) -> String {
        format!("https://{self}")
    }

    /// The name the TLS certificate must cover: an address or a DNS name.
    pub fn tls_name(&self) -> Result<ServerName<'static>, ServerUrlError> {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
            Err(_) => ServerName::try_from(self.host.clone())
                .map_err(|_| ServerUrlError::Host(self.host.clone())),
        }
    }

    /// A file-name-safe key: one token file per server.
    pub fn file_key(&self) -> String {
        format!("{}_{}", self.host.replace(':', "-"), self.port)
    }
}

impl fmt::Display for Server {
    /// `HOST:PORT`, IPv6 addresses in brackets: the key of `known_servers`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(host: &str, port: u16) -> Server {
        Server {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn urls_with_and_without_port_scheme_and_slash() {
        assert_eq!(
            Server::parse("https://10.0.0.1"),
            Ok(server("10.0.0.1", 8443))
        );
        assert_eq!(
            Server::parse("https://node-a.example:9443/"),
            Ok(server("node-a.example", 9443))
        );
        assert_eq!(Server::parse("Node-A"), Ok(server("node-a", 8443)));
        assert_eq!(
            Server::parse("HTTPS://[fd00::1]:8444"),
            Ok(server("fd00::1", 8444))
        );
        assert_eq!(Server::parse("[fd00::1]"), Ok(server("fd00::1", 8443)));
    }

    #[test]
    fn refused_urls_say_why() {
        assert!(matches!(
            Server::parse("http://10.0.0.1"),
            Err(ServerUrlError::Scheme(_))
        ));
        assert!(matches!(
            Server::parse("https://10.0.0.1/ui"),
            Err(ServerUrlError::Path(_))
        ));
        assert!(matches!(
            Server::parse("https://user@host"),
            Err(ServerUrlError::Path(_))
        ));
        for bad in ["https://", "https://:8443", "https://[fd00::1", "ho st"] {
            assert!(
                matches!(Server::parse(bad), Err(ServerUrlError::Host(_))),
                "{bad}"
            );
        }
        for bad in ["https://h:0", "https://h:70000", "https://h:x", "h:"] {
            assert!(
                matches!(Server::parse(bad), Err(ServerUrlError::Port(_))),
                "{bad}"
            );
        }
        let err = Server::parse("http://x").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("http://x")));
    }

    #[test]
    fn display_url_key_and_tls_name() {
        let v6 = server("fd00::1", 8443);
        assert_eq!(v6.to_string(), "[fd00::1]:8443");
        assert_eq!(v6.url(), "https://[fd00::1]:8443");
        assert_eq!(v6.file_key(), "fd00--1_8443");
        assert!(matches!(v6.tls_name(), Ok(ServerName::IpAddress(_))));
        let name = server("node-a", 9000);
        assert_eq!(name.to_string(), "node-a:9000");
        assert!(matches!(name.tls_name(), Ok(ServerName::DnsName(_))));
    }
}
