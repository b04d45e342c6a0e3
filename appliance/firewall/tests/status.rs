//! Pure tests of parsing nft's listings (captured from nft 1.0.6).

use std::collections::BTreeSet;

use appliance_firewall::status::{parse_listing, parse_rule_texts};
use appliance_firewall::SetElem;

const JSON: &str = include_str!("data/listing-peers.json");
const TEXT: &str = include_str!("data/listing-peers.txt");

#[test]
fn listing_gives_rule_ids_counters_and_sets() {
    let mut status = parse_listing(JSON.as_bytes()).expect("parse");
    status.attach_texts(TEXT);
    let ids: Vec<&str> = status
        .rules
        .iter()
        .filter_map(|r| r.id.as_deref())
        .collect();
    assert_eq!(ids.first(), Some(&"established"));
    assert!(ids.contains(&"internal-udp-v6"));
    assert_eq!(ids.last(), Some(&"forward-drop"));
    assert_eq!(status.rules.len(), 16);
    for rule in &status.rules {
        assert!(rule.text.contains("counter"), "{rule:?}");
        assert_eq!((rule.packets, rule.bytes), (0, 0));
    }
    let peers4: BTreeSet<SetElem> = ["10.77.0.2", "10.77.0.3"]
        .iter()
        .map(|s| SetElem::Addr(s.parse().expect("addr")))
        .collect();
    assert_eq!(status.sets.get("peers4"), Some(&peers4));
    assert_eq!(
        status.sets.get("internal_tcp"),
        Some(&BTreeSet::from([SetElem::Port(7000)]))
    );
    assert_eq!(status.sets.get("public_tcp"), Some(&BTreeSet::new()));
    assert!(status.oddities.is_empty());
}

#[test]
fn odd_input_is_an_error_not_a_panic() {
    for bad in [
        "",
        "null",
        "[]",
        "{\"nftables\": 3}",
        "{\"nftables\": [{\"rule\": {}}]}",
    ] {
        assert!(parse_listing(bad.as_bytes()).is_err(), "{bad}");
    }
    let odd = r#"{"nftables": [{"set": {"name": "peers4", "elem": [{"prefix": {}}, true]}},
        {"rule": {"chain": "input", "handle": 4, "expr": [{"counter": "named"}]}}]}"#;
    let status = parse_listing(odd.as_bytes()).expect("parses");
    assert_eq!(status.oddities.len(), 2);
    assert_eq!(status.rules[0].packets, 0);
}

#[test]
fn rule_texts_are_keyed_by_chain_and_handle() {
    let texts = parse_rule_texts(TEXT);
    assert_eq!(texts.len(), 16);
    assert!(texts
        .values()
        .any(|t| t.ends_with("comment \"default-drop\"")));
}
