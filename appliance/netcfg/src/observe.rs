//! Reads the kernel's network state over rtnetlink into an [`Observed`]
//! snapshot: every link, every address, and the unicast routes of the main
//! table. Runs in whatever network namespace the netlink socket was opened in.
//! A link's IPv4 `promote_secondaries` comes from the same link dump (the
//! kernel's IPv4 devconf in `IFLA_AF_SPEC`), so no `/proc` read is needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::model::{Observed, ObservedAddress, ObservedLink, ObservedRoute};

/// Why the kernel state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A netlink dump failed.
    #[error(
        "could not dump {what} over netlink: {source}; check that applianced runs with \
         CAP_NET_ADMIN in the intended network namespace"
    )]
    Dump {
        /// `links`, `addresses`, `IPv4 routes` or `IPv6 routes`.
        what: &'static str,
        /// The netlink error.
        source: rtnetlink::Error,
    },
}

/// Dumps links, addresses and main-table unicast routes.
pub async fn observe(handle: &Handle) -> Result<Observed, ObserveError> {
    let dump = |what| move |source| ObserveError::Dump { what, source };
    let links = handle
        .link()
        .get()
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(dump("links"))?;
    let addrs = handle
        .address()
        .get()
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(dump("addresses"))?;
    let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
    let mut routes = handle
        .route()
        .get(v4)
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(dump("IPv4 routes"))?;
    routes.extend(
        handle
            .route()
            .get(v6)
            .execute()
            .try_collect::<Vec<_>>()
            .await
            .map_err(dump("IPv6 routes"))?,
    );

    let links = links
        .into_iter()
        .filter_map(|m| {
            let mut name = None;
            let mut mtu = 0;
            let mut promote_secondaries = None;
            for attr in m.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Mtu(m) => mtu = m,
                    LinkAttribute::AfSpecUnspec(specs) => {
                        promote_secondaries = ipv4_promote_secondaries(&specs);
                    }
                    _ => {}
                }
            }
            let up = m.header.flags.contains(LinkFlags::Up);
            Some(ObservedLink {
                name: name?,
                index: m.header.index,
                mtu,
                up,
                promote_secondaries,
            })
        })
        .collect();

    let addresses = addrs
        .into_iter()
        .filter_map(|m| {
            // IFA_LOCAL is the local end on point-to-point links; IFA_ADDRESS otherwise.
            let (mut local, mut address) = (None, None);
            for attr in &m.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            let addr = IpNet::new(local.or(address)?, m.header.prefix_len).ok()?;
            Some(ObservedAddress {
                index: m.header.index,
                addr,
            })
        })
        .collect();

    let routes = routes.iter().filter_map(to_observed).collect();
    Ok(Observed {
        links,
        addresses,
        routes,
    })
}

/// The link's IPv4 `promote_secondaries`, if the kernel sent its IPv4 devconf.
fn ipv4_promote_secondaries(specs: &[AfSpecUnspec]) -> Option<bool> {
    specs.iter().find_map(|spec| match spec {
        AfSpecUnspec::Inet(inet) => inet.iter().find_map(|i| match i {
            AfSpecInet::DevConf(conf) => Some(conf.promote_secondaries != 0),
            _ => None,
        }),
        _ => None,
    })
}

/// Converts a main-table unicast route; others (local, multicast, other tables) are skipped.
fn to_observed(m: &RouteMessage) -> Option<ObservedRoute> {
    let mut table = u32::from(m.header.table);
    let (mut dst, mut gateway, mut oif, mut priority) = (None, None, None, None);
    for attr in &m.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip(a),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = Some(*p),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || m.header.kind != RouteType::Unicast {
        return None;
    }
    let len = m.header.destination_prefix_length;
    let dst = match (dst, m.header.address_family) {
        (Some(a), _) => IpNet::new(a, len).ok()?,
        (None, rtnetlink::packet_route::AddressFamily::Inet6) => {
            IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok()?
        }
        (None, _) => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok()?,
    };
    Some(ObservedRoute {
        dst,
        gateway,
        oif,
        protocol: m.header.protocol.into(),
        priority,
    })
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
