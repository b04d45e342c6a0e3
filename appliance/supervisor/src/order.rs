//! Dependency order of a manifest set: pure topological sort with the cycle named on failure.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Manifest, ManifestError};

/// Names in an order where every service comes after its dependencies (ties broken by name,
/// so the order is deterministic). Dependencies outside the set are ignored here;
/// [`validate_set`](crate::manifest::validate_set) refuses them. Fails with the cycle when there is one.
pub fn start_order(manifests: &[Manifest]) -> Result<Vec<String>, ManifestError> {
    let deps: BTreeMap<&str, BTreeSet<&str>> = manifests
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < deps.len() {
        // The first (by name) not-yet-started service whose in-set dependencies are all started.
        let next = deps.iter().find(|(name, ds)| {
            !done.contains(*name) && ds.iter().all(|d| done.contains(d) || !deps.contains_key(d))
        });
        match next {
            Some((name, _)) => {
                done.insert(name);
                order.push(name.to_string());
            }
            None => {
                return Err(ManifestError::Cycle {
                    cycle: find_cycle(&deps, &done),
                })
            }
        }
    }
    Ok(order)
}

/// Walks dependency edges among the unfinished services until a name repeats.
fn find_cycle(deps: &BTreeMap<&str, BTreeSet<&str>>, done: &BTreeSet<&str>) -> Vec<String> {
    let pending = |n: &&str| !done.contains(n) && deps.contains_key(n);
    let Some(mut current) = deps.keys().copied().find(pending) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = Vec::new();
    // Bounded: every step visits a pending node, and there are at most deps.len() of them.
    for _ in 0..=deps.len() {
        if let Some(start) = path.iter().position(|n| *n == current) {
            let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
            cycle.push(current.to_string());
            return cycle;
        }
        path.push(current);
        match deps
            .get(current)
            .and_then(|ds| ds.iter().copied().find(pending))
        {
            Some(next) => current = next,
            None => break,
        }
    }
    path.iter().map(|s| s.to_string()).collect()
}
