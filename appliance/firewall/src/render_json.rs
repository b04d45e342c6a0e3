//! Renders nft JSON batches with the `nftables` crate's schema types: the
//! full atomic reload and the incremental add/delete-element batch.

use std::borrow::Cow;
use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT,
};
use nftables::schema::{
    Chain, Element, NfListObject, Nftables, Rule, Set, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Counter, Limit, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::diff::SetDelta;
use crate::rules::{chains, Cond, RuleDef, Value, Verdict, ECHO_BURST, ECHO_RATE_PER_SECOND};
use crate::spec::{FirewallSpec, SetElem, SetName};
use crate::TABLE;

/// The full atomic reload as a JSON string for `nft -j -f -`.
pub fn render_json(spec: &FirewallSpec) -> String {
    to_json(&render_nftables(spec))
}

/// The full atomic reload as schema objects: add table, delete table (so the
/// delete never fails), then the table, its sets with elements, chains and
/// rules, all in one transaction.
pub fn render_nftables(spec: &FirewallSpec) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    for (set, elems) in spec.set_contents() {
        let elem =
            (!elems.is_empty()).then(|| elems.iter().map(elem_expr).collect::<Vec<_>>().into());
        batch.add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: set.as_str().into(),
            set_type: SetTypeValue::Single(set_type(set)),
            elem,
            ..Set::default()
        })));
    }
    let chains = chains(spec);
    for chain in &chains {
        let hook = if chain.name == "input" {
            NfHook::Input
        } else {
            NfHook::Forward
        };
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: chain.name.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(hook),
            prio: Some(0),
            policy: Some(NfChainPolicy::Drop),
            ..Chain::default()
        }));
    }
    for chain in &chains {
        for rule in &chain.rules {
            batch.add(NfListObject::Rule(Rule {
                family: NfFamily::INet,
                table: TABLE.into(),
                chain: chain.name.into(),
                expr: rule_stmts(rule).into(),
                comment: Some(rule.id.into()),
                ..Rule::default()
            }));
        }
    }
    batch.to_nftables()
}

/// The incremental batch: `delete element` / `add element` per changed set,
/// one transaction, no flush (so rule handles and counters stay).
pub fn render_delta_nftables(deltas: &[SetDelta]) -> Nftables<'static> {
    let mut batch = Batch::new();
    for d in deltas {
        if !d.remove.is_empty() {
            batch.delete(NfListObject::Element(element(d.set, &d.remove)));
        }
        if !d.add.is_empty() {
            batch.add(NfListObject::Element(element(d.set, &d.add)));
        }
    }
    batch.to_nftables()
}

/// [`render_delta_nftables`] as a JSON string for `nft -j -f -`.
pub fn render_delta_json(deltas: &[SetDelta]) -> String {
    to_json(&render_delta_nftables(deltas))
}

/// The incremental batch that adds one peer (what the bench measures).
pub fn render_add_peer_json(peer: IpAddr) -> String {
    let set = match peer {
        IpAddr::V4(_) => SetName::Peers4,
        IpAddr::V6(_) => SetName::Peers6,
    };
    render_delta_json(&[SetDelta {
        set,
        add: vec![SetElem::Addr(peer)],
        remove: vec![],
    }])
}

/// Serializes a batch; also used for `delete table` on removal.
pub(crate) fn to_json(doc: &Nftables<'_>) -> String {
    // These schema types hold only strings, numbers and sequences with
    // string keys, which serde_json always serializes.
    serde_json::to_string(doc).expect("nftables schema types always serialize to JSON")
}

pub(crate) fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn element(set: SetName, elems: &[SetElem]) -> Element<'static> {
    Element {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: set.as_str().into(),
        elem: elems.iter().map(elem_expr).collect::<Vec<_>>().into(),
    }
}

fn set_type(set: SetName) -> SetType {
    match set {
        SetName::Peers4 => SetType::Ipv4Addr,
        SetName::Peers6 => SetType::Ipv6Addr,
        _ => SetType::InetService,
    }
}

fn elem_expr(e: &SetElem) -> Expression<'static> {
    match e {
        SetElem::Addr(a) => Expression::String(a.to_string().into()),
        SetElem::Port(p) => Expression::Number(u32::from(*p)),
    }
}

fn rule_stmts(rule: &RuleDef) -> Vec<Statement<'static>> {
    let mut stmts: Vec<Statement<'static>> = rule.conds.iter().map(cond_stmt).collect();
    if rule.limited {
        stmts.push(Statement::Limit(Limit {
            rate: ECHO_RATE_PER_SECOND,
            rate_unit: None,
            per: Some("second".into()),
            burst: Some(ECHO_BURST),
            burst_unit: None,
            inv: None,
        }));
    }
    stmts.push(Statement::Counter(Counter::Anonymous(None)));
    stmts.push(match rule.verdict {
        Verdict::Accept => Statement::Accept(None),
        Verdict::Drop => Statement::Drop(None),
    });
    stmts
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn cond_stmt(cond: &Cond) -> Statement<'static> {
    match cond {
        Cond::CtState(states) => {
            let left = Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            }));
            let right = if let [one] = states {
                Expression::String(Cow::Borrowed(*one))
            } else {
                Expression::List(
                    states
                        .iter()
                        .map(|s| Expression::String(Cow::Borrowed(*s)))
                        .collect(),
                )
            };
            matches(left, Operator::IN, right)
        }
        Cond::Iif(name) => matches(
            Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Iif })),
            Operator::EQ,
            Expression::String(Cow::Borrowed(*name)),
        ),
        Cond::Payload {
            proto,
            field,
            value,
        } => {
            let left = Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                PayloadField {
                    protocol: Cow::Borrowed(*proto),
                    field: Cow::Borrowed(*field),
                },
            )));
            let right = match value {
                Value::Name(n) => Expression::String(Cow::Borrowed(*n)),
                Value::Names(ns) => Expression::Named(NamedExpression::Set(
                    ns.iter()
                        .map(|n| SetItem::Element(Expression::String(Cow::Borrowed(*n))))
                        .collect(),
                )),
                Value::Number(n) => Expression::Number(u32::from(*n)),
                Value::Set(s) => Expression::String(format!("@{s}").into()),
                Value::Nets(nets) => Expression::Named(NamedExpression::Set(
                    nets.iter()
                        .map(|n| {
                            SetItem::Element(Expression::Named(NamedExpression::Prefix(Prefix {
                                addr: Box::new(Expression::String(n.network().to_string().into())),
                                len: u32::from(n.prefix_len()),
                            })))
                        })
                        .collect(),
                )),
            };
            matches(left, Operator::EQ, right)
        }
    }
}
