//! Pure planning of an incremental apply: which set elements to add and
//! remove to go from one spec to another, or that a full reload is needed.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::{FirewallSpec, SetElem, SetName};

/// Element changes for one named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDelta {
    /// The set to change.
    pub set: SetName,
    /// Elements to add (sorted).
    pub add: Vec<SetElem>,
    /// Elements to remove (sorted).
    pub remove: Vec<SetElem>,
}

/// What it takes to go from one spec to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff {
    /// Nothing to do.
    Same,
    /// Only set contents differ: apply these element changes.
    Sets(Vec<SetDelta>),
    /// The rules themselves differ: reload the whole table.
    NeedsFull {
        /// What changed, for logs.
        reason: String,
    },
}

/// Compares two specs. Anything that is rendered into a rule (the management
/// port and its allowed sources) needs a full reload; everything else lives
/// in sets.
pub fn diff(old: &FirewallSpec, new: &FirewallSpec) -> Diff {
    if old.management_port != new.management_port {
        return Diff::NeedsFull {
            reason: format!(
                "management port changed from {} to {}",
                old.management_port, new.management_port
            ),
        };
    }
    let (old_from, new_from) = (old.management_networks(), new.management_networks());
    if old_from != new_from {
        return Diff::NeedsFull {
            reason: format!("management sources changed from {old_from} to {new_from}"),
        };
    }
    let deltas = diff_sets(&old.set_contents(), &new.set_contents());
    if deltas.is_empty() {
        Diff::Same
    } else {
        Diff::Sets(deltas)
    }
}

/// Element changes that turn the `old` set contents into `new`; sets that
/// do not change are left out.
pub fn diff_sets(
    old: &BTreeMap<SetName, BTreeSet<SetElem>>,
    new: &BTreeMap<SetName, BTreeSet<SetElem>>,
) -> Vec<SetDelta> {
    let empty = BTreeSet::new();
    SetName::ALL
        .iter()
        .filter_map(|set| {
            let o = old.get(set).unwrap_or(&empty);
            let n = new.get(set).unwrap_or(&empty);
            let add: Vec<SetElem> = n.difference(o).copied().collect();
            let remove: Vec<SetElem> = o.difference(n).copied().collect();
            (!add.is_empty() || !remove.is_empty()).then_some(SetDelta {
                set: *set,
                add,
                remove,
            })
        })
        .collect()
}
