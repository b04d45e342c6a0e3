//! The load order of a stage's modules: dependencies and softdep
//! prerequisites first, each once: pure.

use std::collections::{BTreeMap, BTreeSet};

use super::depmod::DepEntry;
use super::error::ModError;

/// A module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Module name.
    pub name: String,
    /// File, relative to the module directory.
    pub path: String,
    /// Names of the planned modules it needs (so a failure can skip its dependents).
    pub deps: Vec<String>,
}

/// The load order of `wanted`: every softdep prerequisite and dependency
/// before its dependents, each module once, otherwise the order of the list.
/// A listed module whose dependencies are missing or loop is left out and
/// reported; the others are still planned. Modules in `skip` (built in, or
/// already loaded) need no loading and are left out; so are softdeps that
/// are not there (modprobe ignores those too).
pub fn plan(
    wanted: &[String],
    dep: &BTreeMap<String, DepEntry>,
    softdep: &BTreeMap<String, Vec<String>>,
    skip: &BTreeSet<String>,
) -> (Vec<Step>, Vec<ModError>) {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut errors = Vec::new();
    let ctx = PlanCtx { dep, softdep, skip };
    for name in wanted {
        let mut stack = Vec::new();
        let mut add = Vec::new();
        match ctx.visit(name, None, &done, &mut stack, &mut add) {
            Ok(()) => {
                for step in add {
                    done.insert(step.name.clone());
                    order.push(step);
                }
            }
            Err(e) => {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    (order, errors)
}

struct PlanCtx<'a> {
    dep: &'a BTreeMap<String, DepEntry>,
    softdep: &'a BTreeMap<String, Vec<String>>,
    skip: &'a BTreeSet<String>,
}

impl PlanCtx<'_> {
    fn visit(
        &self,
        name: &str,
        needed_by: Option<&str>,
        done: &BTreeSet<String>,
        stack: &mut Vec<String>,
        add: &mut Vec<Step>,
    ) -> Result<(), ModError> {
        if self.skip.contains(name) || done.contains(name) || add.iter().any(|s| s.name == name) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == name) {
            let mut chain = stack[pos..].to_vec();
            chain.push(name.to_owned());
            return Err(ModError::Cycle { chain });
        }
        let Some(entry) = self.dep.get(name) else {
            return Err(ModError::Missing {
                name: name.to_owned(),
                needed_by: needed_by.map(str::to_owned),
            });
        };
        stack.push(name.to_owned());
        for pre in self.softdep.get(name).into_iter().flatten() {
            if self.dep.contains_key(pre) {
                self.visit(pre, Some(name), done, stack, add)?;
            }
        }
        // depmod lists the whole closure, deepest last; visiting each first
        // makes the order right whatever the listing order.
        for d in &entry.deps {
            self.visit(d, Some(name), done, stack, add)?;
        }
        stack.pop();
        add.push(Step {
            name: name.to_owned(),
            path: entry.path.clone(),
            deps: entry
                .deps
                .iter()
                .filter(|d| self.dep.contains_key(d.as_str()))
                .cloned()
                .collect(),
        });
        Ok(())
    }
}
