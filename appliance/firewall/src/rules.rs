//! The ruleset as plain data: chains and rules (each with a stable id that
//! becomes its nft comment), built from a [`FirewallSpec`]. Both renderers
//! (text and JSON) walk this one model, so they cannot disagree.

use ipnet::IpNet;

use crate::spec::{FirewallSpec, SetName};

/// ICMPv4 types accepted without limit.
const ICMP_TYPES: &[&str] = &[
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
];

/// ICMPv6 types accepted without limit (neighbour discovery and errors that
/// IPv6 cannot work without).
const ICMPV6_TYPES: &[&str] = &[
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-router-solicit",
    "nd-router-advert",
    "packet-too-big",
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
];

/// Echo requests allowed per second, and the burst on top.
pub(crate) const ECHO_RATE_PER_SECOND: u32 = 10;
/// Burst of echo requests allowed above the rate.
pub(crate) const ECHO_BURST: u32 = 20;

/// A base chain of our table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDef {
    /// Chain name, also the hook it attaches to.
    pub name: &'static str,
    /// Rules in evaluation order.
    pub rules: Vec<RuleDef>,
}

/// One rule: all conditions must match, then the (counted) verdict applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDef {
    /// Stable id, stored as the rule's comment.
    pub id: &'static str,
    /// Conditions, in order.
    pub conds: Vec<Cond>,
    /// Rate-limit echo requests before the verdict.
    pub limited: bool,
    /// What happens to a matching packet.
    pub verdict: Verdict,
}

/// The final statement of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let the packet in.
    Accept,
    /// Discard the packet.
    Drop,
}

/// A condition on a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// `ct state a,b`.
    CtState(&'static [&'static str]),
    /// `iif "lo"`.
    Iif(&'static str),
    /// `proto field value`, e.g. `icmp type echo-request` or `tcp dport 22`.
    Payload {
        /// Header, e.g. `tcp`, `ip6`.
        proto: &'static str,
        /// Field, e.g. `dport`, `saddr`.
        field: &'static str,
        /// What the field must equal or be in.
        value: Value,
    },
}

/// Right-hand side of a payload match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One symbolic constant, e.g. `echo-request`.
    Name(&'static str),
    /// An anonymous set of symbolic constants.
    Names(&'static [&'static str]),
    /// A number, e.g. a port.
    Number(u16),
    /// A reference to one of our named sets.
    Set(SetName),
    /// An anonymous set of networks (merged, so no two overlap).
    Nets(Vec<IpNet>),
}

fn rule(id: &'static str, conds: Vec<Cond>, verdict: Verdict) -> RuleDef {
    RuleDef {
        id,
        conds,
        limited: false,
        verdict,
    }
}

fn payload(proto: &'static str, field: &'static str, value: Value) -> Cond {
    Cond::Payload {
        proto,
        field,
        value,
    }
}

/// The chains of our table for `spec`, in rendering order.
pub fn chains(spec: &FirewallSpec) -> Vec<ChainDef> {
    use Verdict::{Accept, Drop};
    let mut input = vec![
        rule(
            "established",
            vec![Cond::CtState(&["established", "related"])],
            Accept,
        ),
        rule("invalid", vec![Cond::CtState(&["invalid"])], Drop),
        rule("loopback", vec![Cond::Iif("lo")], Accept),
        rule(
            "icmp",
            vec![payload("icmp", "type", Value::Names(ICMP_TYPES))],
            Accept,
        ),
        RuleDef {
            limited: true,
            ..rule(
                "icmp-echo",
                vec![payload("icmp", "type", Value::Name("echo-request"))],
                Accept,
            )
        },
        rule(
            "icmpv6",
            vec![payload("icmpv6", "type", Value::Names(ICMPV6_TYPES))],
            Accept,
        ),
        RuleDef {
            limited: true,
            ..rule(
                "icmpv6-echo",
                vec![payload("icmpv6", "type", Value::Name("echo-request"))],
                Accept,
            )
        },
    ];
    input.extend(management_rules(spec));
    input.extend([
        rule(
            "public-tcp",
            vec![payload("tcp", "dport", Value::Set(SetName::PublicTcp))],
            Accept,
        ),
        rule(
            "public-udp",
            vec![payload("udp", "dport", Value::Set(SetName::PublicUdp))],
            Accept,
        ),
    ]);
    for (proto, ports) in [("tcp", SetName::InternalTcp), ("udp", SetName::InternalUdp)] {
        for (ip, peers) in [("ip", SetName::Peers4), ("ip6", SetName::Peers6)] {
            let id = match (proto, ip) {
                ("tcp", "ip") => "internal-tcp-v4",
                ("tcp", _) => "internal-tcp-v6",
                (_, "ip") => "internal-udp-v4",
                _ => "internal-udp-v6",
            };
            let conds = vec![
                payload(ip, "saddr", Value::Set(peers)),
                payload(proto, "dport", Value::Set(ports)),
            ];
            input.push(rule(id, conds, Accept));
        }
    }
    input.push(rule("default-drop", vec![], Drop));
    vec![
        ChainDef {
            name: "input",
            rules: input,
        },
        ChainDef {
            name: "forward",
            rules: vec![rule("forward-drop", vec![], Drop)],
        },
    ]
}

/// The management port's rules: one open to anyone, or (when sources are
/// set) one per address family that has sources. A family without sources
/// gets no rule, so its clients are dropped (loopback is accepted earlier).
fn management_rules(spec: &FirewallSpec) -> Vec<RuleDef> {
    let port = payload("tcp", "dport", Value::Number(spec.management_port));
    let nets = spec.management_networks();
    if nets.is_any() {
        return vec![rule("mgmt", vec![port], Verdict::Accept)];
    }
    let mut rules = Vec::new();
    if !nets.v4.is_empty() {
        let from = nets.v4.iter().map(|n| IpNet::V4(*n)).collect();
        let conds = vec![payload("ip", "saddr", Value::Nets(from)), port.clone()];
        rules.push(rule("mgmt-v4", conds, Verdict::Accept));
    }
    if !nets.v6.is_empty() {
        let from = nets.v6.iter().map(|n| IpNet::V6(*n)).collect();
        let conds = vec![payload("ip6", "saddr", Value::Nets(from)), port];
        rules.push(rule("mgmt-v6", conds, Verdict::Accept));
    }
    rules
}

/// Every rule id per chain, in order: what a healthy table must contain.
pub fn expected_rule_ids(spec: &FirewallSpec) -> Vec<(&'static str, Vec<&'static str>)> {
    chains(spec)
        .into_iter()
        .map(|c| (c.name, c.rules.iter().map(|r| r.id).collect()))
        .collect()
}
