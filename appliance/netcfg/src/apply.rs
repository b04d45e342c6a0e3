//! Runs one [`Action`] against the kernel over rtnetlink. Thin on purpose:
//! deciding what to do is [`mod@crate::plan`]'s job.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};

use crate::model::{Action, RouteAction};

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kernel refused the request.
    #[error("the kernel refused to {action}: {source}")]
    Kernel {
        /// The action, as text.
        action: String,
        /// The netlink error, with the kernel's errno.
        source: rtnetlink::Error,
    },
    /// The action mixes IPv4 and IPv6 (a planner bug or a hand-made plan).
    #[error("cannot {action}: destination and next hop are of different IP families")]
    MixedFamilies {
        /// The action, as text.
        action: String,
    },
}

impl ApplyError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ApplyError::Kernel {
                source: rtnetlink::Error::NetlinkError(m),
                ..
            } => m.code.map(|c| -c.get()),
            _ => None,
        }
    }
}

/// Runs `action` on the kernel behind `handle`.
pub async fn run(handle: &Handle, action: &Action) -> Result<(), ApplyError> {
    let kernel = |source| ApplyError::Kernel {
        action: action.to_string(),
        source,
    };
    match action {
        Action::SetMtu { index, mtu, .. } => {
            let msg = LinkUnspec::new_with_index(*index).mtu(*mtu).build();
            handle.link().set(msg).execute().await.map_err(kernel)
        }
        Action::SetUp { index, .. } => {
            let msg = LinkUnspec::new_with_index(*index).up().build();
            handle.link().set(msg).execute().await.map_err(kernel)
        }
        Action::AddAddress { index, addr, .. } => {
            let req = handle.address().add(*index, addr.addr(), addr.prefix_len());
            req.execute().await.map_err(kernel)
        }
        Action::DelAddress { index, addr, .. } => handle
            .address()
            .del(address_message(*index, *addr))
            .execute()
            .await
            .map_err(kernel),
        Action::AddRoute(r) => {
            let msg = route_message(r).ok_or_else(|| mixed(action))?;
            handle.route().add(msg).execute().await.map_err(kernel)
        }
        Action::DelRoute(r) => {
            let msg = route_message(r).ok_or_else(|| mixed(action))?;
            handle.route().del(msg).execute().await.map_err(kernel)
        }
    }
}

fn mixed(action: &Action) -> ApplyError {
    ApplyError::MixedFamilies {
        action: action.to_string(),
    }
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr {
        IpNet::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a.addr(), a.prefix_len())
            .build(),
        IpNet::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a.addr(), a.prefix_len())
            .build(),
    }
}

/// Builds the route message; `None` if destination and next hop differ in family.
fn route_message(r: &RouteAction) -> Option<RouteMessage> {
    match (r.key.dst, r.key.via) {
        (IpNet::V4(d), via) => {
            let b =
                RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            let b = match via {
                Some(IpAddr::V4(g)) => b.gateway(g),
                None => b.scope(RouteScope::Link),
                Some(IpAddr::V6(_)) => return None,
            };
            Some(finish(b, r))
        }
        (IpNet::V6(d), via) => {
            let b =
                RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            let b = match via {
                Some(IpAddr::V6(g)) => b.gateway(g),
                None => b,
                Some(IpAddr::V4(_)) => return None,
            };
            Some(finish(b, r))
        }
    }
}

/// Sets what both families share: protocol (our mark), output link, metric.
fn finish<T>(mut b: RouteMessageBuilder<T>, r: &RouteAction) -> RouteMessage {
    b = b.protocol(RouteProtocol::from(r.protocol));
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    if let Some(p) = r.priority {
        b = b.priority(p);
    }
    b.build()
}
