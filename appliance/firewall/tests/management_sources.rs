//! Pure tests of the management port's source restriction
//! (`FirewallSpec::management_sources`): the rules per family, their
//! renderings (golden files), normalization, and what the diff says.

use std::collections::BTreeSet;

use appliance_firewall::rules::expected_rule_ids;
use appliance_firewall::{diff, render_nftables, render_text, Diff, FirewallSpec};
use ipnet::IpNet;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter()
        .map(|s| s.parse().expect("test network"))
        .collect()
}

fn spec(sources: &[&str]) -> FirewallSpec {
    FirewallSpec {
        management_port: 8443,
        management_sources: nets(sources),
        peers: BTreeSet::from(["10.77.0.2".parse().expect("test address")]),
        ..FirewallSpec::default()
    }
}

fn input_ids(spec: &FirewallSpec) -> Vec<&'static str> {
    expected_rule_ids(spec)
        .into_iter()
        .find(|(chain, _)| *chain == "input")
        .map(|(_, ids)| ids)
        .expect("input chain")
}

/// The rule line with comment `id` in the text rendering.
fn text_rule(spec: &FirewallSpec, id: &str) -> Option<String> {
    let needle = format!("comment \"{id}\"");
    render_text(spec)
        .lines()
        .find(|l| l.contains(&needle))
        .map(|l| l.trim().to_owned())
}

#[test]
fn no_sources_keep_the_port_open_to_anyone() {
    let s = spec(&[]);
    let ids = input_ids(&s);
    assert!(ids.contains(&"mgmt"), "{ids:?}");
    assert!(
        !ids.contains(&"mgmt-v4") && !ids.contains(&"mgmt-v6"),
        "{ids:?}"
    );
    assert_eq!(
        text_rule(&s, "mgmt").as_deref(),
        Some("tcp dport 8443 counter accept comment \"mgmt\"")
    );
}

#[test]
fn sources_restrict_each_family_after_loopback() {
    let s = spec(&["192.168.1.0/24", "10.0.0.0/8", "fd00:1::/64"]);
    let ids = input_ids(&s);
    assert!(!ids.contains(&"mgmt"), "{ids:?}");
    let pos = |id: &str| ids.iter().position(|i| *i == id).expect(id);
    // Loopback is accepted before any management rule, so it always gets in.
    assert!(pos("loopback") < pos("mgmt-v4"));
    assert!(pos("mgmt-v4") < pos("mgmt-v6"));
    assert!(pos("mgmt-v6") < pos("default-drop"));
    assert_eq!(
        text_rule(&s, "mgmt-v4").as_deref(),
        Some(
            "ip saddr { 10.0.0.0/8, 192.168.1.0/24 } tcp dport 8443 counter accept comment \"mgmt-v4\""
        )
    );
    assert_eq!(
        text_rule(&s, "mgmt-v6").as_deref(),
        Some("ip6 saddr { fd00:1::/64 } tcp dport 8443 counter accept comment \"mgmt-v6\"")
    );
}

#[test]
fn a_family_without_sources_gets_no_rule() {
    let v4_only = spec(&["10.0.0.0/8"]);
    let ids = input_ids(&v4_only);
    assert!(
        ids.contains(&"mgmt-v4") && !ids.contains(&"mgmt-v6"),
        "{ids:?}"
    );
    let v6_only = spec(&["2001:db8::/32"]);
    let ids = input_ids(&v6_only);
    assert!(
        !ids.contains(&"mgmt-v4") && ids.contains(&"mgmt-v6"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"mgmt"), "{ids:?}");
}

#[test]
fn sources_are_normalized_host_bits_overlaps_and_order() {
    let messy = spec(&[
        "10.1.2.3/16",
        "10.0.0.0/8",
        "192.168.1.7/32",
        "192.168.1.0/24",
        "fd00::1/64",
    ]);
    let tidy = spec(&["fd00::/64", "192.168.1.0/24", "10.0.0.0/8"]);
    assert_eq!(messy.management_networks(), tidy.management_networks());
    assert_eq!(diff(&messy, &tidy), Diff::Same);
    assert_eq!(render_text(&messy), render_text(&tidy));
    assert_eq!(
        messy.management_networks().to_string(),
        "10.0.0.0/8, 192.168.1.0/24, fd00::/64"
    );
}

#[test]
fn changing_sources_reloads_and_says_what_changed() {
    let Diff::NeedsFull { reason } = diff(&spec(&[]), &spec(&["10.0.0.0/8"])) else {
        panic!("a restriction is a rule change")
    };
    assert_eq!(
        reason,
        "management sources changed from anyone to 10.0.0.0/8"
    );
    let Diff::NeedsFull { reason } = diff(&spec(&["10.0.0.0/8"]), &spec(&["fd00::/8"])) else {
        panic!("other sources are a rule change")
    };
    assert_eq!(
        reason,
        "management sources changed from 10.0.0.0/8 to fd00::/8"
    );
    let Diff::NeedsFull { reason } = diff(&spec(&["fd00::/8"]), &spec(&[])) else {
        panic!("lifting the restriction is a rule change")
    };
    assert_eq!(reason, "management sources changed from fd00::/8 to anyone");
}

#[test]
fn summary_names_the_restriction() {
    assert!(spec(&[]).summary().contains("8443 from anyone"));
    assert!(spec(&["10.0.0.0/8", "fd00::/8"])
        .summary()
        .contains("8443 from 2 network(s)"));
}

#[test]
fn json_matches_sources_as_prefixes() {
    let doc = serde_json::to_value(render_nftables(&spec(&["10.0.0.0/8", "fd00:1::/64"])))
        .expect("serialize");
    let rules: Vec<&serde_json::Value> = doc["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|o| o.get("add").and_then(|a| a.get("rule")))
        .collect();
    let rule = |id: &str| {
        *rules
            .iter()
            .find(|r| r["comment"] == id)
            .unwrap_or_else(|| panic!("rule {id} in {rules:?}"))
    };
    let v4 = &rule("mgmt-v4")["expr"][0]["match"];
    assert_eq!(v4["left"]["payload"]["protocol"], "ip");
    assert_eq!(v4["left"]["payload"]["field"], "saddr");
    assert_eq!(
        v4["right"]["set"][0]["prefix"],
        serde_json::json!({"addr": "10.0.0.0", "len": 8})
    );
    let v6 = &rule("mgmt-v6")["expr"][0]["match"];
    assert_eq!(v6["left"]["payload"]["protocol"], "ip6");
    assert_eq!(
        v6["right"]["set"][0]["prefix"],
        serde_json::json!({"addr": "fd00:1::", "len": 64})
    );
    assert_eq!(rule("mgmt-v6")["expr"][1]["match"]["right"], 8443);
}
