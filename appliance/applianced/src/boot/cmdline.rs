//! The kernel command line: the `appliance.*` parameters of `/proc/cmdline`,
//! parsed into typed values. Pure. A bad value never stops the boot: it is
//! left out and reported as a [`ParamError`] naming the parameter, the value
//! and what is expected, so the console tells the administrator what to fix.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use appliance_config::Role;
use ipnet::IpNet;

/// Every parameter applianced reads, for the "unknown parameter" message.
pub const KNOWN: [&str; 9] = [
    "appliance.root",
    "appliance.ip",
    "appliance.gw",
    "appliance.dns",
    "appliance.hostname",
    "appliance.iface",
    "appliance.roles",
    "appliance.log",
    "appliance.admin",
];

/// Interface that `appliance.ip=` configures when `appliance.iface=` is absent.
pub const DEFAULT_IFACE: &str = "eth0";

/// A refused kernel parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel parameter {param}={value:?} refused: expected {expected}")]
pub struct ParamError {
    /// The parameter, e.g. `appliance.ip`.
    pub param: String,
    /// Its value as given.
    pub value: String,
    /// What a valid value looks like.
    pub expected: String,
}

/// The configuration a first boot takes from the kernel command line. Each
/// field is `None` when its parameter is absent or was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigParams {
    /// `appliance.ip=`: addresses with prefix length.
    pub ip: Option<Vec<IpNet>>,
    /// `appliance.gw=`: the IPv4 gateway, if one was given.
    pub gateway4: Option<Ipv4Addr>,
    /// `appliance.gw=`: the IPv6 gateway, if one was given.
    pub gateway6: Option<Ipv6Addr>,
    /// `appliance.dns=`: name servers.
    pub dns: Option<Vec<IpAddr>>,
    /// `appliance.hostname=`.
    pub hostname: Option<String>,
    /// `appliance.iface=`: the interface `ip` goes on.
    pub iface: Option<String>,
    /// `appliance.roles=`.
    pub roles: Option<BTreeSet<Role>>,
    /// The accepted parameters as written (`appliance.ip=10.0.2.15/24`), for messages.
    pub given: Vec<String>,
}

impl ConfigParams {
    /// True when no configuration parameter was accepted.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// The interface `appliance.ip=` configures.
    pub fn iface(&self) -> &str {
        self.iface.as_deref().unwrap_or(DEFAULT_IFACE)
    }

    /// The accepted parameter (as written) that set a config field, if any:
    /// `field` is a field path of a config problem, such as `interface[0].addresses[1]`.
    pub fn source_of(&self, field: &str) -> Option<&str> {
        let param = if field.starts_with("interface") {
            if field.ends_with(".name") {
                "appliance.iface="
            } else {
                "appliance.ip="
            }
        } else if field.starts_with("gateway") {
            "appliance.gw="
        } else if field.starts_with("dns.servers") {
            "appliance.dns="
        } else if field.starts_with("hostname") {
            "appliance.hostname="
        } else if field.starts_with("roles") {
            "appliance.roles="
        } else {
            return None;
        };
        self.given
            .iter()
            .find(|g| g.starts_with(param))
            .map(String::as_str)
    }
}

/// Everything applianced reads from the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootParams {
    /// `appliance.root=PARTLABEL=<label>`: the GPT partition name of the root.
    pub root_partlabel: Option<String>,
    /// `appliance.log=`: the log filter of stage 2.
    pub log: Option<String>,
    /// `appliance.admin=NAME:ARGON2ID-HASH`: the first administrator, set
    /// when the node has no account (its time is stamped when applied).
    pub admin: Option<appliance_cluster::Account>,
    /// The first-boot configuration parameters.
    pub config: ConfigParams,
    /// Every refused parameter, in command-line order.
    pub errors: Vec<ParamError>,
}

/// Splits a command line into parameters as the kernel does: on whitespace
/// outside double quotes, with the quotes removed (`a="b c"` is `a=b c`).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn refuse(param: &str, value: &str, expected: &str) -> ParamError {
    ParamError {
        param: param.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

fn list(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).collect()
}

const IP_EXPECTED: &str = "comma-separated addresses with their prefix length, \
     such as 192.0.2.10/24 or 192.0.2.10/24,2001:db8::10/64";
const GW_EXPECTED: &str = "one IPv4 and/or one IPv6 gateway address, comma-separated, \
     such as 192.0.2.1 or 192.0.2.1,2001:db8::1";
const DNS_EXPECTED: &str = "comma-separated name server addresses, \
     such as 192.0.2.53 or 192.0.2.53,2001:db8::53";
const IFACE_EXPECTED: &str =
    "a network interface name of 1 to 15 characters without '/', ':' or spaces, such as eth0";
const ROLES_EXPECTED: &str = "comma-separated roles among frontend and backend, \
     such as frontend,backend";
const ADMIN_EXPECTED: &str = "NAME:ARGON2ID-HASH, the account name and the PHC string of its \
     password's Argon2id hash, such as root:$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH";
const ROOT_EXPECTED: &str =
    "PARTLABEL=<GPT partition name> with a name of letters, digits, '.', '_' or '-', such as PARTLABEL=root-a";

/// What a valid value of a parameter looks like: why one of the value
/// parsers below refused it, which [`parse`] turns into a [`ParamError`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Expected(String);

impl Expected {
    fn new(text: &str) -> Self {
        Expected(text.to_owned())
    }
}

fn parse_ip(value: &str) -> Result<Vec<IpNet>, Expected> {
    list(value)
        .into_iter()
        .map(|s| s.parse::<IpNet>().map_err(|_| Expected::new(IP_EXPECTED)))
        .collect()
}

fn parse_gw(value: &str) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), Expected> {
    let mut v4 = None;
    let mut v6 = None;
    for s in list(value) {
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if v4.is_none() => v4 = Some(a),
            Ok(IpAddr::V6(a)) if v6.is_none() => v6 = Some(a),
            Ok(_) => {
                return Err(Expected(format!(
                    "{GW_EXPECTED} (two gateways of one family given)"
                )))
            }
            Err(_) => return Err(Expected::new(GW_EXPECTED)),
        }
    }
    Ok((v4, v6))
}

fn parse_dns(value: &str) -> Result<Vec<IpAddr>, Expected> {
    list(value)
        .into_iter()
        .map(|s| s.parse::<IpAddr>().map_err(|_| Expected::new(DNS_EXPECTED)))
        .collect()
}

fn parse_iface(value: &str) -> Result<String, Expected> {
    let bad = value.is_empty()
        || value.len() > appliance_config::IFNAME_MAX_LEN
        || value == "."
        || value == ".."
        || value
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        Err(Expected::new(IFACE_EXPECTED))
    } else {
        Ok(value.to_owned())
    }
}

fn parse_roles(value: &str) -> Result<BTreeSet<Role>, Expected> {
    list(value)
        .into_iter()
        .map(|s| match s {
            "frontend" => Ok(Role::Frontend),
            "backend" => Ok(Role::Backend),
            _ => Err(Expected::new(ROLES_EXPECTED)),
        })
        .collect()
}

fn parse_root(value: &str) -> Result<String, Expected> {
    let label = value
        .strip_prefix("PARTLABEL=")
        .ok_or_else(|| Expected::new(ROOT_EXPECTED))?;
    let ok = !label.is_empty()
        && label.len() <= 36
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(label.to_owned())
    } else {
        Err(Expected::new(ROOT_EXPECTED))
    }
}

/// Parses the `appliance.*` parameters of a kernel command line; others are
/// not ours and are skipped. A repeated parameter takes its last value, as
/// the kernel's own parameters do.
pub fn parse(cmdline: &str) -> BootParams {
    let mut p = BootParams::default();
    for token in split(cmdline) {
        let Some(rest) = token.strip_prefix("appliance.") else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let param = format!("appliance.{key}");
        let written = format!("{param}={value}");
        let c = &mut p.config;
        let result: Result<(), Expected> = match key {
            "root" => parse_root(value).map(|v| p.root_partlabel = Some(v)),
            "log" if !value.is_empty() => {
                p.log = Some(value.to_owned());
                Ok(())
            }
            "log" => Err(Expected::new(
                "a log filter such as info or applianced=debug",
            )),
            "ip" => parse_ip(value).map(|v| c.ip = Some(v)),
            "gw" => parse_gw(value).map(|(v4, v6)| {
                c.gateway4 = v4;
                c.gateway6 = v6;
            }),
            "dns" => parse_dns(value).map(|v| c.dns = Some(v)),
            "hostname" => appliance_config::hostname::check_hostname(value)
                .map(|()| c.hostname = Some(value.to_owned()))
                .map_err(|why| Expected(format!("a host name; this one {why}"))),
            "iface" => parse_iface(value).map(|v| c.iface = Some(v)),
            "roles" => parse_roles(value).map(|v| c.roles = Some(v)),
            "admin" => appliance_cluster::membership::parse_first_admin(value, 0)
                .map(|a| p.admin = Some(a))
                .map_err(|e| Expected(format!("{ADMIN_EXPECTED}; here {e}"))),
            _ => Err(Expected(format!("one of {}", KNOWN.join(", ")))),
        };
        match result {
            Ok(()) => {
                if !matches!(key, "root" | "log" | "admin") {
                    c.given.retain(|g| !g.starts_with(&format!("{param}=")));
                    c.given.push(written);
                }
            }
            // The hash is not repeated on the console: the name is enough to find it.
            Err(expected) if key == "admin" => {
                let shown = match value.split_once(':') {
                    Some((name, _)) => format!("{name}:…"),
                    None => value.to_owned(),
                };
                p.errors.push(refuse(&param, &shown, &expected.0));
            }
            Err(expected) => p.errors.push(refuse(&param, value, &expected.0)),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split("  console=ttyS0 a=\"b c\" \"d=e f\"  x\n"),
            vec!["console=ttyS0", "a=b c", "d=e f", "x"]
        );
        assert!(split(" \n").is_empty());
    }

    #[test]
    fn reads_every_parameter() {
        let p = parse(
            "BOOT_IMAGE=/a/vmlinuz console=ttyS0,115200n8 panic=10 appliance.root=PARTLABEL=root-a \
             appliance.ip=10.0.2.15/24,fd00::15/64 appliance.gw=10.0.2.2,fd00::1 \
             appliance.dns=10.0.2.3 appliance.hostname=node-a appliance.iface=ens3 \
             appliance.roles=backend appliance.log=debug\n",
        );
        assert_eq!(p.errors, vec![]);
        assert_eq!(p.root_partlabel.as_deref(), Some("root-a"));
        assert_eq!(p.log.as_deref(), Some("debug"));
        let c = &p.config;
        assert_eq!(
            c.ip,
            Some(vec![
                "10.0.2.15/24".parse().unwrap(),
                "fd00::15/64".parse().unwrap()
            ])
        );
        assert_eq!(c.gateway4, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(c.gateway6, Some("fd00::1".parse().unwrap()));
        assert_eq!(c.dns, Some(vec!["10.0.2.3".parse().unwrap()]));
        assert_eq!(c.hostname.as_deref(), Some("node-a"));
        assert_eq!(c.iface(), "ens3");
        assert_eq!(c.roles, Some(BTreeSet::from([Role::Backend])));
        assert_eq!(c.given.len(), 6);
        assert_eq!(
            c.source_of("gateway4"),
            Some("appliance.gw=10.0.2.2,fd00::1")
        );
        assert_eq!(
            c.source_of("interface[0].addresses[1]"),
            Some("appliance.ip=10.0.2.15/24,fd00::15/64")
        );
        assert_eq!(
            c.source_of("interface[0].name"),
            Some("appliance.iface=ens3")
        );
        assert_eq!(c.source_of("ntp.servers[0]"), None);
    }

    #[test]
    fn without_parameters_nothing_is_set() {
        let p = parse("console=tty0 quiet");
        assert_eq!(p, BootParams::default());
        assert!(p.config.is_empty());
        assert_eq!(p.config.iface(), "eth0");
    }

    #[test]
    fn bad_values_are_refused_with_parameter_value_and_expectation() {
        let p = parse(
            "appliance.ip=10.0.2.300/24 appliance.gw=10.0.2.2,10.0.2.3 appliance.dns=dns.example \
             appliance.hostname=-bad- appliance.iface=eth0/1 appliance.roles=frontend,db \
             appliance.root=/dev/vda2 appliance.colour=blue appliance.ip=10.0.2.15",
        );
        let text: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(p.errors.len(), 9, "{text:#?}");
        assert_eq!(
            text[0],
            "kernel parameter appliance.ip=\"10.0.2.300/24\" refused: expected comma-separated \
             addresses with their prefix length, such as 192.0.2.10/24 or 192.0.2.10/24,2001:db8::10/64"
        );
        assert!(
            text[1].contains("appliance.gw=\"10.0.2.2,10.0.2.3\""),
            "{}",
            text[1]
        );
        assert!(
            text[1].contains("two gateways of one family"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("appliance.dns=\"dns.example\""),
            "{}",
            text[2]
        );
        assert!(
            text[3].starts_with(
                "kernel parameter appliance.hostname=\"-bad-\" refused: expected a host name"
            ),
            "{}",
            text[3]
        );
        assert!(text[4].contains("interface name"), "{}", text[4]);
        assert!(text[5].contains("frontend and backend"), "{}", text[5]);
        assert!(text[6].contains("PARTLABEL=root-a"), "{}", text[6]);
        assert!(
            text[7].contains("appliance.colour=\"blue\" refused: expected one of appliance.root"),
            "{}",
            text[7]
        );
        // No prefix length: an address alone is not enough.
        assert_eq!(p.errors[8].value, "10.0.2.15");
        // Nothing refused was kept.
        assert_eq!(p.config, ConfigParams::default());
        assert_eq!(p.root_partlabel, None);
    }

    #[test]
    fn empty_values_and_bad_labels_are_refused() {
        let p = parse(
            "appliance.ip= appliance.log= appliance.root=PARTLABEL= appliance.root=PARTLABEL=a/b",
        );
        let params: Vec<&str> = p.errors.iter().map(|e| e.param.as_str()).collect();
        assert_eq!(
            params,
            [
                "appliance.ip",
                "appliance.log",
                "appliance.root",
                "appliance.root"
            ]
        );
    }

    #[test]
    fn last_value_wins() {
        let p = parse("appliance.hostname=a appliance.hostname=b");
        assert_eq!(p.config.hostname.as_deref(), Some("b"));
        assert_eq!(p.config.given, vec!["appliance.hostname=b"]);
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

    #[test]
    fn reads_the_first_administrator() {
        let p = parse(&format!("quiet appliance.admin=root:{HASH}"));
        assert_eq!(p.errors, vec![]);
        let a = p.admin.unwrap();
        assert_eq!(a.name, "root");
        assert_eq!(a.role, appliance_cluster::AdminRole::Administrator);
        assert_eq!(a.password_hash, HASH);
        // It is not node configuration.
        assert!(p.config.is_empty());
    }

    #[test]
    fn a_bad_first_administrator_is_refused_without_its_hash() {
        for (line, needle) in [
            (format!("appliance.admin=Root:{HASH}"), "\"Root\""),
            (
                "appliance.admin=root:nothash".to_owned(),
                "password hash of account \"root\"",
            ),
            ("appliance.admin=root".to_owned(), "no ':'"),
        ] {
            let p = parse(&line);
            assert_eq!(p.admin, None);
            assert_eq!(p.errors.len(), 1, "{line}");
            let text = p.errors[0].to_string();
            assert!(
                text.starts_with("kernel parameter appliance.admin="),
                "{text}"
            );
            assert!(text.contains(needle), "{text}");
            assert!(text.contains("NAME:ARGON2ID-HASH"), "{text}");
            assert!(
                !text.contains("nothash") && !text.contains("c29tZXNh"),
                "{text}"
            );
        }
    }
}
