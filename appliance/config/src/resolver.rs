//! Checks of the `[dns]` and `[ntp]` sections: counts the resolver honours,
//! duplicates, and that every name is a valid RFC 1123 name.

use std::net::IpAddr;

use crate::error::Problem;
use crate::hostname::check_domain_name;
use crate::schema::{Dns, Ntp};

/// glibc's resolver uses the first 3 `nameserver` lines (MAXNS) and ignores the rest.
pub const DNS_MAX_SERVERS: usize = 3;

/// glibc's resolver honours at most 6 search domains (MAXDNSRCH).
pub const DNS_MAX_SEARCH: usize = 6;

/// Checks the resolver settings.
pub(crate) fn check_dns(dns: &Dns, out: &mut Vec<Problem>) {
    if dns.servers.len() > DNS_MAX_SERVERS {
        out.push(Problem::new(
            "dns.servers",
            list(&dns.servers),
            format!(
                "lists {} servers; the resolver uses at most {DNS_MAX_SERVERS}, remove the extra ones",
                dns.servers.len()
            ),
        ));
    }
    for (i, server) in dns.servers.iter().enumerate() {
        let field = format!("dns.servers[{i}]");
        if let Some(k) = dns.servers[..i].iter().position(|s| s == server) {
            out.push(Problem::new(
                field,
                server,
                format!("is already listed at dns.servers[{k}]; remove the duplicate"),
            ));
        } else if server.is_unspecified() || server.is_multicast() {
            out.push(Problem::new(
                field,
                server,
                "is not a unicast address and cannot be queried; use the address of a name server",
            ));
        }
    }
    if dns.search.len() > DNS_MAX_SEARCH {
        out.push(Problem::new(
            "dns.search",
            list(&dns.search),
            format!(
                "lists {} domains; the resolver uses at most {DNS_MAX_SEARCH}, remove the extra ones",
                dns.search.len()
            ),
        ));
    }
    for (i, domain) in dns.search.iter().enumerate() {
        let field = format!("dns.search[{i}]");
        if let Err(why) = check_domain_name(domain) {
            out.push(Problem::new(
                field,
                domain,
                format!("is not a valid search domain: it {why}"),
            ));
        } else if let Some(k) = dns.search[..i]
            .iter()
            .position(|d| d.eq_ignore_ascii_case(domain))
        {
            out.push(Problem::new(
                field,
                domain,
                format!("is already listed at dns.search[{k}]; remove the duplicate"),
            ));
        }
    }
}

/// Checks the time servers: each an IP address or a valid host name, listed once.
pub(crate) fn check_ntp(ntp: &Ntp, out: &mut Vec<Problem>) {
    // Comparison keys: the parsed address, or the lower-cased name.
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, server) in ntp.servers.iter().enumerate() {
        let field = format!("ntp.servers[{i}]");
        let key = match server.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                out.push(Problem::new(
                    field,
                    server,
                    "is not a unicast address and cannot be queried; use the address or name of a time server",
                ));
                continue;
            }
            Ok(ip) => ip.to_string(),
            Err(_) => match check_domain_name(server) {
                Ok(()) => server.to_ascii_lowercase(),
                Err(why) => {
                    out.push(Problem::new(
                        field,
                        server,
                        format!("is neither an IP address nor a valid host name: it {why}"),
                    ));
                    continue;
                }
            },
        };
        if let Some((_, k)) = seen.iter().find(|(s, _)| *s == key) {
            out.push(Problem::new(
                field,
                server,
                format!("is already listed at ntp.servers[{k}]; remove the duplicate"),
            ));
        } else {
            seen.push((key, i));
        }
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}
