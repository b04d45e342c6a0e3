//! The pure rollback planner: after a failed apply, the actions that take the
//! kernel from its state `now` back to the snapshot taken `before`. No I/O.

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::model::{Action, Observed, ObservedRoute, RouteAction, RouteKey, RTPROT_KERNEL};
use crate::plan::{matches, order};

/// Plans the way back from `now` to the snapshot `before`, after `done` ran.
///
/// Only links `done` touched are looked at. Addresses and routes that are gone
/// come back (kernel routes excepted: they return with their address); extra
/// ones are deleted only if `done` added them. MTUs go back; links brought up
/// stay up, since taking a link down flushes its IPv6 addresses; and
/// promote_secondaries stays on, since it only protects addresses.
pub fn restore(before: &Observed, now: &Observed, done: &[Action]) -> Vec<Action> {
    let mut touched = BTreeSet::new();
    let (mut our_addrs, mut our_routes) = (BTreeSet::new(), Vec::new());
    for a in done {
        match a {
            Action::SetMtu { index, .. }
            | Action::SetUp { index, .. }
            | Action::DelAddress { index, .. } => {
                touched.insert(*index);
            }
            Action::AddAddress { index, addr, .. } => {
                touched.insert(*index);
                our_addrs.insert((*index, *addr));
            }
            Action::AddRoute(r) => {
                touched.extend(r.oif);
                our_routes.push(r);
            }
            Action::DelRoute(r) => touched.extend(r.oif),
            // Kept on: it only changes what a later primary deletion does.
            Action::PromoteSecondaries { .. } => {}
        }
    }
    let name = |index: u32| {
        now.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
    };
    let mut actions = Vec::new();
    for a in done {
        if let Action::SetMtu { index, was, .. } = a {
            if let Some(l) = now
                .links
                .iter()
                .find(|l| l.index == *index && l.mtu != *was)
            {
                actions.push(Action::SetMtu {
                    link: l.name.clone(),
                    index: l.index,
                    mtu: *was,
                    was: l.mtu,
                });
            }
        }
    }

    let addrs = |o: &Observed| -> BTreeSet<(u32, IpNet)> {
        let link_local =
            |a: &IpNet| matches!(a, IpNet::V6(v6) if v6.addr().is_unicast_link_local());
        o.addresses
            .iter()
            .filter(|a| touched.contains(&a.index) && !link_local(&a.addr))
            .map(|a| (a.index, a.addr))
            .collect()
    };
    let (was, is) = (addrs(before), addrs(now));
    for &(index, addr) in is.difference(&was).filter(|a| our_addrs.contains(*a)) {
        let link = name(index).unwrap_or_default();
        actions.push(Action::DelAddress { link, index, addr });
    }
    for &(index, addr) in was.difference(&is) {
        let link = name(index).unwrap_or_default();
        actions.push(Action::AddAddress { link, index, addr });
    }

    let on_touched = |r: &&ObservedRoute| r.oif.is_some_and(|i| touched.contains(&i));
    let as_action = |r: &ObservedRoute| RouteAction {
        key: RouteKey {
            dst: r.dst,
            via: r.gateway,
            link: r.oif.and_then(name),
        },
        oif: r.oif,
        protocol: r.protocol,
        priority: r.priority,
    };
    for r in now
        .routes
        .iter()
        .filter(on_touched)
        .filter(|r| !before.routes.contains(r))
    {
        if our_routes
            .iter()
            .any(|o| r.protocol == o.protocol && matches(&o.key, o.oif, r))
        {
            actions.push(Action::DelRoute(as_action(r)));
        }
    }
    let gone = before
        .routes
        .iter()
        .filter(on_touched)
        .filter(|r| !now.routes.contains(r));
    for r in gone.filter(|r| r.protocol != RTPROT_KERNEL) {
        actions.push(Action::AddRoute(as_action(r)));
    }
    order(actions)
}
