//! Checks of the default gateways (`gateway4`, `gateway6`) and the static
//! `[[route]]` entries against the node's configured subnets.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::Problem;
use crate::interfaces::{subnets_of, ConfiguredAddr};
use crate::schema::NodeConfig;

/// Checks the gateways and routes; `addrs` are the individually valid
/// interface addresses.
pub(crate) fn check(cfg: &NodeConfig, addrs: &[ConfiguredAddr], out: &mut Vec<Problem>) {
    // Destinations seen so far, to refuse a second route to the same network.
    let mut destinations: Vec<(IpNet, String)> = Vec::new();
    if let Some(gw) = cfg.gateway4 {
        check_next_hop("gateway4", IpAddr::V4(gw), addrs, out);
        destinations.push((IpNet::V4(Ipv4Net::default()), "gateway4".into()));
    }
    if let Some(gw) = cfg.gateway6 {
        check_next_hop("gateway6", IpAddr::V6(gw), addrs, out);
        destinations.push((IpNet::V6(Ipv6Net::default()), "gateway6".into()));
    }
    for (i, route) in cfg.routes.iter().enumerate() {
        let to_field = format!("route[{i}].to");
        let via_field = format!("route[{i}].via");
        if route.to != route.to.trunc() {
            out.push(Problem::new(
                &to_field,
                route.to,
                format!(
                    "has host bits set; a route destination is a network, write {}",
                    route.to.trunc()
                ),
            ));
        }
        let dest = route.to.trunc();
        if let Some((_, first)) = destinations.iter().find(|(d, _)| *d == dest) {
            out.push(Problem::new(
                &to_field,
                route.to,
                format!("a route to {dest} is already defined by {first}; keep only one of them"),
            ));
        } else {
            destinations.push((dest, to_field));
        }
        if route.to.addr().is_ipv4() != route.via.is_ipv4() {
            out.push(Problem::new(
                via_field,
                route.via,
                format!(
                    "is {} but route[{i}].to {} is {}; use a next hop of the destination's family",
                    family(route.via.is_ipv4()),
                    route.to,
                    family(route.to.addr().is_ipv4())
                ),
            ));
            continue;
        }
        check_next_hop(&via_field, route.via, addrs, out);
    }
}

fn family(ipv4: bool) -> &'static str {
    if ipv4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// A next hop must be another host inside one of the node's subnets of its family.
fn check_next_hop(field: &str, hop: IpAddr, addrs: &[ConfiguredAddr], out: &mut Vec<Problem>) {
    let fam = family(hop.is_ipv4());
    if let Some(own) = addrs.iter().find(|a| a.net.addr() == hop) {
        out.push(Problem::new(
            field,
            hop,
            format!(
                "is the node's own address ({}); the next hop must be another host on the subnet, \
                 such as its router",
                own.field
            ),
        ));
        return;
    }
    let subnets = subnets_of(addrs, hop.is_ipv4());
    let Some(subnet) = subnets.iter().find(|n| n.contains(&hop)) else {
        let reason = if subnets.is_empty() {
            format!(
                "no {fam} subnet is configured on any interface, so it cannot be reached; \
                 add an {fam} address on the interface facing it, or remove this setting"
            )
        } else {
            let list: Vec<String> = subnets.iter().map(ToString::to_string).collect();
            format!(
                "is outside every configured {fam} subnet ({}); use a router inside one of them, \
                 or add an address in the router's subnet",
                list.join(", ")
            )
        };
        out.push(Problem::new(field, hop, reason));
        return;
    };
    if let IpNet::V4(net) = subnet {
        if net.prefix_len() <= 30 && (hop == net.network() || hop == net.broadcast()) {
            out.push(Problem::new(
                field,
                hop,
                format!(
                    "is the network or broadcast address of {subnet}, not a host; use the router's own address"
                ),
            ));
        }
    }
}
