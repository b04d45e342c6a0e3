//! What is actually in the kernel: parses `nft -j list table inet appliance`
//! (rules with their ids and counters, chains, set contents) and the rule
//! texts of `nft -a list table`. Pure and defensive: odd input becomes an
//! error or a note, never a panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::Value;

use crate::error::FirewallError;
use crate::spec::SetElem;

/// One rule as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStatus {
    /// Chain the rule is in.
    pub chain: String,
    /// Kernel handle (changes only when the rule is recreated).
    pub handle: u64,
    /// The rule's comment: our stable rule id (None for foreign rules).
    pub id: Option<String>,
    /// The rule in nft syntax, as `nft list` prints it (empty if unknown).
    pub text: String,
    /// Packets counted by the rule's counter.
    pub packets: u64,
    /// Bytes counted by the rule's counter.
    pub bytes: u64,
}

/// One chain as the kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    /// Chain name.
    pub name: String,
    /// Hook, for base chains.
    pub hook: Option<String>,
    /// Policy, for base chains.
    pub policy: Option<String>,
}

/// Our table as last observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallStatus {
    /// Chains in listing order.
    pub chains: Vec<ChainStatus>,
    /// Rules in listing order (chain by chain, evaluation order).
    pub rules: Vec<RuleStatus>,
    /// Set contents by set name.
    pub sets: BTreeMap<String, BTreeSet<SetElem>>,
    /// Things in the listing we did not understand (unknown element forms);
    /// a non-empty list means the table was edited by someone else.
    pub oddities: Vec<String>,
}

impl FirewallStatus {
    /// Rule ids per chain in order, for comparison with what we rendered.
    pub fn rule_ids(&self) -> Vec<(String, Vec<Option<String>>)> {
        self.chains
            .iter()
            .map(|c| {
                let ids = self
                    .rules
                    .iter()
                    .filter(|r| r.chain == c.name)
                    .map(|r| r.id.clone());
                (c.name.clone(), ids.collect())
            })
            .collect()
    }

    /// Fills in each rule's `text` from `nft -a list table` output.
    pub fn attach_texts(&mut self, listing: &str) {
        let texts = parse_rule_texts(listing);
        for rule in &mut self.rules {
            if let Some(t) = texts.get(&(rule.chain.clone(), rule.handle)) {
                rule.text.clone_from(t);
            }
        }
    }
}

fn bad(reason: impl Into<String>) -> FirewallError {
    FirewallError::Listing {
        reason: reason.into(),
    }
}

/// Parses the JSON of `nft -j list table inet appliance`.
pub fn parse_listing(json: &[u8]) -> Result<FirewallStatus, FirewallError> {
    let doc: Value = serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let objects = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no top-level \"nftables\" array"))?;
    let mut status = FirewallStatus::default();
    for obj in objects {
        if let Some(chain) = obj.get("chain") {
            status.chains.push(ChainStatus {
                name: str_field(chain, "name").ok_or_else(|| bad("chain without a name"))?,
                hook: str_field(chain, "hook"),
                policy: str_field(chain, "policy"),
            });
        } else if let Some(set) = obj.get("set") {
            let name = str_field(set, "name").ok_or_else(|| bad("set without a name"))?;
            let elems = parse_elems(set.get("elem"), &name, &mut status.oddities);
            status.sets.insert(name, elems);
        } else if let Some(rule) = obj.get("rule") {
            status.rules.push(parse_rule(rule)?);
        }
    }
    Ok(status)
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn parse_rule(rule: &Value) -> Result<RuleStatus, FirewallError> {
    let chain = str_field(rule, "chain").ok_or_else(|| bad("rule without a chain"))?;
    let handle = rule
        .get("handle")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(format!("rule in chain {chain} without a handle")))?;
    let (mut packets, mut bytes) = (0, 0);
    let exprs = rule
        .get("expr")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for e in exprs {
        if let Some(c) = e.get("counter") {
            packets = c.get("packets").and_then(Value::as_u64).unwrap_or(0);
            bytes = c.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        }
    }
    Ok(RuleStatus {
        chain,
        handle,
        id: str_field(rule, "comment"),
        text: String::new(),
        packets,
        bytes,
    })
}

/// Set elements appear as a bare value, a list, or `{"elem": {"val": ..}}`.
fn parse_elems(elem: Option<&Value>, set: &str, oddities: &mut Vec<String>) -> BTreeSet<SetElem> {
    let items: Vec<&Value> = match elem {
        None => vec![],
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
    };
    let mut out = BTreeSet::new();
    for item in items {
        let val = item.get("elem").and_then(|e| e.get("val")).unwrap_or(item);
        match parse_elem(val) {
            Some(e) => {
                out.insert(e);
            }
            None => oddities.push(format!("set {set}: element {val} not understood")),
        }
    }
    out
}

fn parse_elem(v: &Value) -> Option<SetElem> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(SetElem::Port),
        Value::String(s) => {
            if let Ok(a) = s.parse::<IpAddr>() {
                Some(SetElem::Addr(a))
            } else {
                s.parse::<u16>().ok().map(SetElem::Port)
            }
        }
        _ => None,
    }
}

/// Maps (chain, handle) to the rule's text in `nft -a list table` output,
/// where rule lines end in `# handle N`.
pub fn parse_rule_texts(listing: &str) -> HashMap<(String, u64), String> {
    let mut out = HashMap::new();
    let mut chain: Option<String> = None;
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().map(str::to_owned);
            continue;
        }
        if line == "}" {
            chain = None;
            continue;
        }
        let (Some(c), Some((text, handle))) = (&chain, line.rsplit_once(" # handle ")) else {
            continue;
        };
        if let Ok(h) = handle.trim().parse::<u64>() {
            out.insert((c.clone(), h), text.trim().to_owned());
        }
    }
    out
}
