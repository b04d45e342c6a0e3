//! Applies specs to the kernel through an [`NftRunner`]: a full atomic reload
//! or an incremental set-element batch, chosen from the last applied spec and
//! a cheap look at the live table. Also removal and status.

use std::io;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::diff::{diff, diff_sets, Diff, SetDelta};
use crate::error::FirewallError;
use crate::render_json::{render_delta_json, render_json, table, to_json};
use crate::rules::expected_rule_ids;
use crate::runner::{NftOutput, NftRunner};
use crate::spec::{FirewallSpec, SetName};
use crate::status::{parse_listing, FirewallStatus};
use crate::{FAMILY, TABLE};

/// Why a full reload was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullReason {
    /// Nothing was applied by this instance yet.
    FirstApply,
    /// The rules themselves change (e.g. the management port).
    Structural(String),
    /// The live table is missing or differs from what we applied.
    Drift(String),
    /// The incremental batch was rejected; nft's message.
    IncrementalFailed(String),
}

/// What [`Firewall::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyKind {
    /// The table already matched the spec.
    NoOp,
    /// Set elements were added/removed in one transaction.
    Incremental {
        /// Elements added, over all sets.
        added: usize,
        /// Elements removed, over all sets.
        removed: usize,
    },
    /// The whole table was replaced in one transaction.
    Full(FullReason),
}

/// Outcome of one apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Which kind of apply was done.
    pub kind: ApplyKind,
    /// Time spent reading the live table to choose the kind.
    pub check: Duration,
    /// Total time of the apply, check included.
    pub elapsed: Duration,
}

/// The firewall reconciler's apply side; remembers the last applied spec.
#[derive(Debug)]
pub struct Firewall<R: NftRunner> {
    /// How nft is run.
    runner: R,
    /// Last spec applied successfully; None until the first apply, and
    /// after a failed full apply (the table state is then unknown).
    applied: Option<FirewallSpec>,
}

impl<R: NftRunner> Firewall<R> {
    /// A firewall that has applied nothing yet.
    pub fn new(runner: R) -> Self {
        Firewall {
            runner,
            applied: None,
        }
    }

    /// The runner, e.g. for tests that run extra nft commands.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// The last spec applied successfully.
    pub fn applied(&self) -> Option<&FirewallSpec> {
        self.applied.as_ref()
    }

    /// Makes the live table match `spec`, as cheaply as possible: a no-op
    /// when the live table already matches, an element batch when only set
    /// contents differ, else a full reload (which resets rule counters;
    /// conntrack is untouched, so established connections keep flowing).
    pub async fn apply(&mut self, spec: &FirewallSpec) -> Result<ApplyReport, FirewallError> {
        let start = Instant::now();
        let old = match &self.applied {
            None => {
                return self
                    .full(spec, FullReason::FirstApply, start, Duration::ZERO)
                    .await
            }
            Some(old) => old,
        };
        if let Diff::NeedsFull { reason } = diff(old, spec) {
            return self
                .full(spec, FullReason::Structural(reason), start, Duration::ZERO)
                .await;
        }
        // Compare with the live table rather than trusting memory alone: this
        // repairs a deleted or edited table, and element drift is fixed by the
        // same incremental batch.
        let live = self.list().await;
        let check = start.elapsed();
        let deltas = match live
            .map_err(|e| e.to_string())
            .and_then(|s| live_deltas(spec, &s))
        {
            Ok(d) => d,
            Err(why) => return self.full(spec, FullReason::Drift(why), start, check).await,
        };
        if deltas.is_empty() {
            self.applied = Some(spec.clone());
            return Ok(report(ApplyKind::NoOp, start, check));
        }
        let added = deltas.iter().map(|d| d.add.len()).sum();
        let removed = deltas.iter().map(|d| d.remove.len()).sum();
        let out = self.run_json(render_delta_json(&deltas)).await?;
        if !out.success() {
            let stderr = stderr_of(&out);
            warn!(%stderr, "incremental firewall batch rejected, doing a full apply");
            return self
                .full(spec, FullReason::IncrementalFailed(stderr), start, check)
                .await;
        }
        debug!(added, removed, spec = %spec.summary(), "firewall sets updated");
        self.applied = Some(spec.clone());
        Ok(report(
            ApplyKind::Incremental { added, removed },
            start,
            check,
        ))
    }

    /// Deletes our table (shutdown in hosted mode, tests). Succeeds when the
    /// table does not exist.
    pub async fn remove(&mut self) -> Result<(), FirewallError> {
        let mut batch = nftables::batch::Batch::new();
        batch.add(nftables::schema::NfListObject::Table(table()));
        batch.delete(nftables::schema::NfListObject::Table(table()));
        let out = self.run_json(to_json(&batch.to_nftables())).await?;
        self.applied = None;
        check_ok(&out, "delete table inet appliance", "(removal)")
    }

    /// The live table: every rule with its id, text and counters, and the
    /// set contents.
    pub async fn show(&self) -> Result<FirewallStatus, FirewallError> {
        let mut status = self.list().await?;
        let out = self
            .run(&["-a", "list", "table", FAMILY, TABLE], None)
            .await?;
        check_ok(&out, "list table inet appliance", "(status)")?;
        status.attach_texts(&String::from_utf8_lossy(&out.stdout));
        Ok(status)
    }

    async fn list(&self) -> Result<FirewallStatus, FirewallError> {
        let out = self
            .run(&["-j", "list", "table", FAMILY, TABLE], None)
            .await?;
        if !out.success() && stderr_of(&out).contains("No such file or directory") {
            return Err(FirewallError::TableMissing);
        }
        check_ok(&out, "list table inet appliance", "(status)")?;
        parse_listing(&out.stdout)
    }

    async fn full(
        &mut self,
        spec: &FirewallSpec,
        reason: FullReason,
        start: Instant,
        check: Duration,
    ) -> Result<ApplyReport, FirewallError> {
        self.applied = None;
        let out = self.run_json(render_json(spec)).await?;
        check_ok(&out, "apply the full ruleset", &spec.summary())?;
        info!(?reason, spec = %spec.summary(), "firewall ruleset loaded");
        self.applied = Some(spec.clone());
        Ok(report(ApplyKind::Full(reason), start, check))
    }

    async fn run_json(&self, json: String) -> Result<NftOutput, FirewallError> {
        self.run(&["-j", "-f", "-"], Some(json.into_bytes())).await
    }

    async fn run(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Result<NftOutput, FirewallError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.runner
            .run(&args, stdin)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => FirewallError::NftMissing { source },
                _ => FirewallError::Spawn {
                    args: args.join(" "),
                    source,
                },
            })
    }
}

fn report(kind: ApplyKind, start: Instant, check: Duration) -> ApplyReport {
    ApplyReport {
        kind,
        check,
        elapsed: start.elapsed(),
    }
}

fn stderr_of(out: &NftOutput) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn check_ok(out: &NftOutput, action: &'static str, spec: &str) -> Result<(), FirewallError> {
    if out.success() {
        return Ok(());
    }
    Err(FirewallError::Nft {
        action,
        spec: spec.to_owned(),
        code: out.code,
        stderr: stderr_of(out),
    })
}

/// The element changes that bring the live table to `spec`, or why the live
/// table's structure is not ours (then only a full apply will do).
pub fn live_deltas(spec: &FirewallSpec, live: &FirewallStatus) -> Result<Vec<SetDelta>, String> {
    if let Some(odd) = live.oddities.first() {
        return Err(odd.clone());
    }
    for c in &live.chains {
        if c.policy.as_deref() != Some("drop") {
            return Err(format!("chain {} has policy {:?}", c.name, c.policy));
        }
    }
    let want: Vec<(String, Vec<Option<String>>)> = expected_rule_ids(spec)
        .into_iter()
        .map(|(c, ids)| {
            (
                c.to_owned(),
                ids.into_iter().map(|i| Some(i.to_owned())).collect(),
            )
        })
        .collect();
    if live.rule_ids() != want {
        return Err("chains or rules differ from the rendered ruleset".into());
    }
    let mut observed = std::collections::BTreeMap::new();
    for set in SetName::ALL {
        let elems = live
            .sets
            .get(set.as_str())
            .ok_or_else(|| format!("set {set} is missing"))?;
        observed.insert(set, elems.clone());
    }
    Ok(diff_sets(&observed, &spec.set_contents()))
}
