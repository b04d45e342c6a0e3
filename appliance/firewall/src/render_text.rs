//! Renders the ruleset as `nft -f` text: what `appliancectl firewall show`
//! prints and the baseline the bench loads with `nft -f`.

use std::fmt::Write;

use crate::rules::{chains, Cond, RuleDef, Value, Verdict, ECHO_BURST, ECHO_RATE_PER_SECOND};
use crate::spec::FirewallSpec;
use crate::{FAMILY, TABLE};

/// The full ruleset as `nft -f` input. It starts with `add table` +
/// `delete table` so loading it replaces our table atomically (one
/// transaction) whether or not it existed.
pub fn render_text(spec: &FirewallSpec) -> String {
    let mut out = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "add table {FAMILY} {TABLE}");
    let _ = writeln!(out, "delete table {FAMILY} {TABLE}");
    let _ = writeln!(out, "table {FAMILY} {TABLE} {{");
    for (set, elems) in spec.set_contents() {
        let _ = writeln!(out, "\tset {set} {{");
        let _ = writeln!(out, "\t\ttype {}", set.nft_type());
        if !elems.is_empty() {
            let list: Vec<String> = elems.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(", "));
        }
        let _ = writeln!(out, "\t}}");
        let _ = writeln!(out);
    }
    let chains = chains(spec);
    for (i, chain) in chains.iter().enumerate() {
        let _ = writeln!(out, "\tchain {} {{", chain.name);
        let _ = writeln!(
            out,
            "\t\ttype filter hook {} priority filter; policy drop;",
            chain.name
        );
        for rule in &chain.rules {
            let _ = writeln!(out, "\t\t{}", rule_text(rule));
        }
        let _ = writeln!(out, "\t}}");
        if i + 1 < chains.len() {
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(out, "}}");
    out
}

/// One rule in nft syntax, without the chain around it.
pub fn rule_text(rule: &RuleDef) -> String {
    let mut parts: Vec<String> = rule.conds.iter().map(cond_text).collect();
    if rule.limited {
        parts.push(format!(
            "limit rate {ECHO_RATE_PER_SECOND}/second burst {ECHO_BURST} packets"
        ));
    }
    parts.push("counter".into());
    parts.push(
        match rule.verdict {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
        }
        .into(),
    );
    parts.push(format!("comment \"{}\"", rule.id));
    parts.join(" ")
}

fn cond_text(cond: &Cond) -> String {
    match cond {
        Cond::CtState(states) => format!("ct state {}", states.join(",")),
        Cond::Iif(name) => format!("iif \"{name}\""),
        Cond::Payload {
            proto,
            field,
            value,
        } => {
            let v = match value {
                Value::Name(n) => (*n).to_string(),
                Value::Names(ns) => format!("{{ {} }}", ns.join(", ")),
                Value::Number(n) => n.to_string(),
                Value::Set(s) => format!("@{s}"),
                Value::Nets(nets) => {
                    let list: Vec<String> = nets.iter().map(ToString::to_string).collect();
                    format!("{{ {} }}", list.join(", "))
                }
            };
            format!("{proto} {field} {v}")
        }
    }
}
