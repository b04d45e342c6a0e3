//! The pure planner: desired spec + observed kernel state + owned record in,
//! ordered [`Action`]s and the new owned record out. No I/O.
//!
//! Rules: add what is missing; delete only what is in [`Owned`] and no longer
//! desired; leave links that are not configured alone; turn on IPv4
//! promote_secondaries on configured links before deleting anything; delete
//! routes before addresses, add addresses before routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{
    Action, NetworkSpec, Observed, ObservedRoute, Owned, OwnedAddress, Plan, RouteAction, RouteKey,
    RTPROT_STATIC,
};

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The configuration names a link the kernel does not have.
    #[error(
        "interface {name:?} is configured but does not exist; existing links: {}; \
         fix the interface name in the configuration",
        existing.join(", ")
    )]
    UnknownLink {
        /// The configured name.
        name: String,
        /// Names of the links that do exist, sorted.
        existing: Vec<String>,
    },
}

/// Plans the actions that take `observed` to `desired`, given what we `owned`.
pub fn plan(desired: &NetworkSpec, observed: &Observed, owned: &Owned) -> Result<Plan, PlanError> {
    let index_of: BTreeMap<&str, u32> = observed
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.index))
        .collect();
    let mut actions = Vec::new();
    for iface in &desired.interfaces {
        let Some(link) = observed.links.iter().find(|l| l.name == iface.name) else {
            let mut existing: Vec<String> = observed.links.iter().map(|l| l.name.clone()).collect();
            existing.sort();
            return Err(PlanError::UnknownLink {
                name: iface.name.clone(),
                existing,
            });
        };
        if let Some(mtu) = iface.mtu.filter(|m| *m != link.mtu) {
            let (link, index, was) = (link.name.clone(), link.index, link.mtu);
            actions.push(Action::SetMtu {
                link,
                index,
                mtu,
                was,
            });
        }
        if link.promote_secondaries == Some(false) {
            actions.push(Action::PromoteSecondaries {
                link: link.name.clone(),
            });
        }
        if !link.up {
            actions.push(Action::SetUp {
                link: link.name.clone(),
                index: link.index,
            });
        }
    }

    // Addresses, by link name.
    let name_of: BTreeMap<u32, &str> = observed
        .links
        .iter()
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    let present: BTreeSet<OwnedAddress> = observed
        .addresses
        .iter()
        .filter_map(|a| {
            Some(OwnedAddress {
                link: name_of.get(&a.index)?.to_string(),
                addr: a.addr,
            })
        })
        .collect();
    let wanted: BTreeSet<OwnedAddress> = desired
        .interfaces
        .iter()
        .flat_map(|i| {
            i.addresses.iter().map(|a| OwnedAddress {
                link: i.name.clone(),
                addr: *a,
            })
        })
        .collect();
    let address_action = |a: &OwnedAddress, add: bool| {
        let (link, addr) = (a.link.clone(), a.addr);
        let index = index_of.get(a.link.as_str()).copied().unwrap_or_default();
        if add {
            Action::AddAddress { link, index, addr }
        } else {
            Action::DelAddress { link, index, addr }
        }
    };
    let added_addrs: Vec<&OwnedAddress> = wanted.difference(&present).collect();
    for a in owned
        .addresses
        .difference(&wanted)
        .filter(|a| present.contains(*a))
    {
        actions.push(address_action(a, false));
    }
    actions.extend(added_addrs.iter().map(|a| address_action(a, true)));

    // Routes.
    let wanted_routes = desired_routes(desired);
    let mut added_routes = Vec::new();
    for key in &wanted_routes {
        let oif = key.link.as_deref().and_then(|l| index_of.get(l).copied());
        if !observed.routes.iter().any(|r| matches(key, oif, r)) {
            added_routes.push(key.clone());
            let route = RouteAction {
                key: key.clone(),
                oif,
                protocol: RTPROT_STATIC,
                priority: None,
            };
            actions.push(Action::AddRoute(route));
        }
    }
    for key in owned.routes.difference(&wanted_routes) {
        let oif = match key.link.as_deref() {
            Some(l) => match index_of.get(l) {
                Some(i) => Some(*i),
                None => continue, // link gone, and the route with it
            },
            None => None,
        };
        let ours = observed
            .routes
            .iter()
            .filter(|r| r.protocol == RTPROT_STATIC);
        for r in ours.filter(|r| matches(key, oif, r)) {
            let route = RouteAction {
                key: key.clone(),
                oif: r.oif,
                protocol: r.protocol,
                priority: r.priority,
            };
            actions.push(Action::DelRoute(route));
        }
    }

    let owned_after = Owned {
        addresses: owned
            .addresses
            .intersection(&wanted)
            .cloned()
            .chain(added_addrs.into_iter().cloned())
            .collect(),
        routes: owned
            .routes
            .intersection(&wanted_routes)
            .cloned()
            .chain(added_routes)
            .collect(),
    };
    Ok(Plan {
        actions: order(actions),
        intent: owned.union(&owned_after),
        owned: owned_after,
    })
}

/// The routes the spec asks for; each goes out of the configured interface
/// whose subnet holds its next hop (or the kernel's choice if none does).
pub fn desired_routes(desired: &NetworkSpec) -> BTreeSet<RouteKey> {
    let link_for = |via: IpAddr| {
        let holds = |a: &IpNet| a.trunc().contains(&via);
        desired
            .interfaces
            .iter()
            .find(|i| i.addresses.iter().any(holds))
            .map(|i| i.name.clone())
    };
    let defaults = [
        desired
            .gateway4
            .map(|g| (IpNet::V4(Default::default()), IpAddr::V4(g))),
        desired
            .gateway6
            .map(|g| (IpNet::V6(Default::default()), IpAddr::V6(g))),
    ];
    defaults
        .into_iter()
        .flatten()
        .chain(desired.routes.iter().copied())
        .map(|(dst, via)| RouteKey {
            dst: dst.trunc(),
            via: Some(via),
            link: link_for(via),
        })
        .collect()
}

/// Whether observed route `r` is the route `key` (on link `oif`, if known).
pub(crate) fn matches(key: &RouteKey, oif: Option<u32>, r: &ObservedRoute) -> bool {
    r.dst == key.dst && r.gateway == key.via && (oif.is_none() || r.oif == oif)
}

/// Sorts actions into the safe order, keeping the order within each kind:
/// promote_secondaries first (before any address deletion, so deleting a
/// primary keeps foreign secondaries), route deletions, address deletions,
/// link settings, address additions, route additions (a route needs its next
/// hop's subnet to be there).
pub(crate) fn order(mut actions: Vec<Action>) -> Vec<Action> {
    actions.sort_by_key(|a| match a {
        Action::PromoteSecondaries { .. } => 0,
        Action::DelRoute(_) => 1,
        Action::DelAddress { .. } => 2,
        Action::SetMtu { .. } => 3,
        Action::SetUp { .. } => 4,
        Action::AddAddress { .. } => 5,
        Action::AddRoute(_) => 6,
    });
    actions
}

#[cfg(test)]
mod tests;
