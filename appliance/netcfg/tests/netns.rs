//! Kernel tests: apply, re-apply, change, a rolled-back failure, and a foreign
//! secondary address surviving its primary's deletion, all inside
//! a network namespace this test creates (and deletes in a Drop guard).
//! Needs root; skips otherwise. One test function, so the steps run serially.

// Test helpers outside #[test] fns: panicking on a broken fixture is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs::File;
use std::process::Command;

use appliance_netcfg::{Action, InterfaceSpec, NetError, Netcfg, NetworkSpec, Owned, PlanError};
use nix::sched::{setns, CloneFlags};
use serde_json::Value;

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Self {
        run(&["netns", "add", &name]);
        Self { name }
    }

    /// Runs `ip -n <ns> <args>` and returns stdout; panics on failure.
    fn ip(&self, args: &str) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend(args.split_whitespace());
        run(&full)
    }

    /// `ip -j` output parsed.
    fn json(&self, args: &str) -> Vec<Value> {
        serde_json::from_str(&self.ip(&format!("-j {args}"))).unwrap()
    }

    /// Addresses of a link as `addr/len` strings (IPv6 link-local left out).
    fn addrs(&self, dev: &str) -> BTreeSet<String> {
        let links = self.json(&format!("addr show dev {dev}"));
        let infos = links[0]["addr_info"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        infos
            .iter()
            .filter(|a| a["scope"] != "link")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// Every main-table route of both families, as compact JSON, sorted.
    fn routes(&self) -> BTreeSet<String> {
        let mut all = self.json("-4 route show table main");
        all.extend(self.json("-6 route show table main"));
        all.iter().map(Value::to_string).collect()
    }

    /// Addresses of a link the kernel flags as secondary.
    fn secondaries(&self, dev: &str) -> BTreeSet<String> {
        let links = self.json(&format!("addr show dev {dev}"));
        let infos = links[0]["addr_info"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        infos
            .iter()
            .filter(|a| a["secondary"] == true)
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// `net.ipv4.conf.<conf>.promote_secondaries` inside the namespace.
    fn promote_secondaries(&self, conf: &str) -> String {
        let path = format!("/proc/sys/net/ipv4/conf/{conf}/promote_secondaries");
        run(&["netns", "exec", &self.name, "cat", &path])
            .trim()
            .to_string()
    }

    fn set_promote_secondaries(&self, conf: &str, value: u8) {
        let script = format!("echo {value} > /proc/sys/net/ipv4/conf/{conf}/promote_secondaries");
        run(&["netns", "exec", &self.name, "sh", "-c", &script]);
    }

    fn link(&self, dev: &str) -> Value {
        self.json(&format!("link show dev {dev}")).remove(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn spec(addresses: &[&str], mtu: u32) -> NetworkSpec {
    NetworkSpec {
        interfaces: vec![InterfaceSpec {
            name: "d0".into(),
            mtu: Some(mtu),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }],
        gateway4: Some("10.77.0.1".parse().unwrap()),
        gateway6: Some("fd77::1".parse().unwrap()),
        routes: vec![(
            "10.78.0.0/16".parse().unwrap(),
            "10.77.0.254".parse().unwrap(),
        )],
    }
}

/// ENETUNREACH on Linux.
fn libc_enetunreach() -> i32 {
    nix::errno::Errno::ENETUNREACH as i32
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn apply_change_and_rollback_in_a_netns() {
    if test_prereq::opted_out(&[test_prereq::Need::Root, test_prereq::Need::Ip]) {
        return;
    }
    let ns = Netns::new(format!("netcfg-{}-a", std::process::id()));
    // No dummy module on this kernel: a veth pair, peer d1 up (so d0 gets a
    // carrier) and left unconfigured.
    ns.ip("link add d0 type veth peer name d1");
    ns.ip("link set d1 up");
    ns.ip("addr add 10.79.0.9/24 dev d0"); // foreign: applianced must keep it
                                           // The kernel default, whatever the host's `default` says (the effective
                                           // value ORs `all` with the link's).
    ns.set_promote_secondaries("all", 0);
    ns.set_promote_secondaries("d0", 0);
    let path = format!("/var/run/netns/{}", ns.name);

    // rtnetlink opens its socket in the calling thread's netns: move a fresh
    // thread there and give it its own runtime.
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(scenario(&ns));
        })
        .join()
        .unwrap();
    });
}

async fn scenario(ns: &Netns) {
    let mut net = Netcfg::connect().unwrap();

    // Fresh apply.
    let s1 = spec(&["10.77.0.2/24", "fd77::2/64"], 1400);
    let r1 = net.apply(&s1, &Owned::default()).await.unwrap();
    assert_eq!(
        r1.actions[0],
        Action::PromoteSecondaries { link: "d0".into() },
        "promote_secondaries goes first"
    );
    assert_eq!(ns.promote_secondaries("d0"), "1");
    assert_eq!(ns.promote_secondaries("d1"), "0", "unlisted link touched");
    assert_eq!(
        ns.addrs("d0"),
        set(&["10.77.0.2/24", "10.79.0.9/24", "fd77::2/64"])
    );
    let link = ns.link("d0");
    assert_eq!(link["mtu"], 1400);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let routes = ns.routes();
    for want in [
        // serde_json sorts the keys.
        r#"{"dev":"d0","dst":"default","flags":[],"gateway":"10.77.0.1","protocol":"static"}"#,
        r#"{"dev":"d0","dst":"10.78.0.0/16","flags":[],"gateway":"10.77.0.254","protocol":"static"}"#,
    ] {
        assert!(routes.contains(want), "{want} missing from {routes:#?}");
    }
    assert!(
        routes
            .iter()
            .any(|r| r.contains(r#""gateway":"fd77::1""#) && r.contains("static")),
        "{routes:#?}"
    );
    // Owned round-trips through the caller's store.
    let owned: Owned = serde_json::from_str(&serde_json::to_string(&r1.owned).unwrap()).unwrap();
    assert_eq!(owned, r1.owned);

    // Re-apply: nothing to do.
    let r2 = net.apply(&s1, &owned).await.unwrap();
    assert_eq!(r2.actions, vec![], "re-apply must be a no-op");
    assert_eq!(r2.owned, owned);

    // Change: the owned .2 goes, the foreign address and route stay.
    ns.ip("route add 10.80.0.0/16 via 10.79.0.1 dev d0");
    let s2 = spec(&["10.77.0.3/24", "fd77::2/64"], 1400);
    let r3 = net.apply(&s2, &r2.owned).await.unwrap();
    assert_eq!(
        ns.addrs("d0"),
        set(&["10.77.0.3/24", "10.79.0.9/24", "fd77::2/64"])
    );
    let routes = ns.routes();
    assert!(
        routes.iter().any(|r| r.contains(r#""dst":"10.80.0.0/16""#)),
        "foreign route lost: {routes:#?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r.contains(r#""dst":"default","flags":[],"gateway":"10.77.0.1""#)),
        "{routes:#?}"
    );
    assert!(ns.addrs("d1").is_empty(), "unlisted link touched");

    // Failure half-way: deletes, an MTU change and an address add run, then a
    // route whose next hop no subnet holds is refused (ENETUNREACH).
    let (addrs_before, routes_before) = (ns.addrs("d0"), ns.routes());
    let mut s3 = spec(&["10.77.0.3/24", "10.77.9.2/24"], 1300);
    s3.gateway6 = None;
    s3.routes.push((
        "10.81.0.0/16".parse().unwrap(),
        "10.99.0.1".parse().unwrap(),
    ));
    let err = net.apply(&s3, &r3.owned).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("expected failure: {msg}");
    assert!(
        msg.contains("10.81.0.0/16") && msg.contains("restored"),
        "{msg}"
    );
    match err {
        NetError::RolledBack {
            owned,
            undone,
            source,
            ..
        } => {
            assert_eq!(owned, r3.owned);
            assert_eq!(source.errno(), Some(libc_enetunreach()), "{source}");
            let undone: Vec<String> = undone.iter().map(ToString::to_string).collect();
            eprintln!("undone: {undone:#?}");
            for want in [
                "delete address fd77::2/64 from d0",
                "set mtu of d0 from 1400 to 1300",
                "add address 10.77.9.2/24 to d0",
            ] {
                assert!(undone.iter().any(|u| u == want), "{want} not in {undone:?}");
            }
            assert!(
                undone
                    .iter()
                    .any(|u| u.starts_with("delete route ::/0 via fd77::1")),
                "{undone:?}"
            );
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(ns.addrs("d0"), addrs_before);
    assert_eq!(ns.routes(), routes_before);
    assert_eq!(ns.link("d0")["mtu"], 1400);

    // And after the rollback, the old config is still a no-op.
    assert_eq!(net.apply(&s2, &r3.owned).await.unwrap().actions, vec![]);

    // A configured link that does not exist is named, with the ones that do.
    let mut bad = s2.clone();
    bad.interfaces[0].name = "nope0".into();
    match net.apply(&bad, &r3.owned).await {
        Err(NetError::Plan(PlanError::UnknownLink { name, existing })) => {
            assert_eq!(name, "nope0");
            assert_eq!(existing, vec!["d0", "d1", "lo"]);
        }
        other => panic!("expected UnknownLink, got {other:?}"),
    }

    // The crash-safe path: observe, plan, persist the intent, execute, persist owned.
    let before = net.observe().await.unwrap();
    let p = appliance_netcfg::plan(&s1, &before, &r3.owned).unwrap();
    assert!(p.intent.addresses.is_superset(&r3.owned.addresses));
    assert!(p.intent.addresses.is_superset(&p.owned.addresses));
    let done = net.execute(&p, &before, &r3.owned).await.unwrap();
    assert_eq!(done, p.actions);
    assert_eq!(
        ns.addrs("d0"),
        set(&["10.77.0.2/24", "10.79.0.9/24", "fd77::2/64"])
    );
    assert_eq!(net.apply(&s1, &p.owned).await.unwrap().actions, vec![]);

    // Deleting an owned primary keeps a foreign secondary of the same subnet
    // (with promote_secondaries off, the kernel would delete it too).
    let s4 = spec(&["10.77.0.2/24", "10.77.4.2/24", "fd77::2/64"], 1400);
    let r4 = net.apply(&s4, &p.owned).await.unwrap();
    ns.ip("addr add 10.77.4.3/24 dev d0"); // foreign, secondary to our .2
    assert_eq!(ns.secondaries("d0"), set(&["10.77.4.3/24"]));
    let r5 = net.apply(&s1, &r4.owned).await.unwrap();
    let done: Vec<String> = r5.actions.iter().map(ToString::to_string).collect();
    assert_eq!(done, vec!["delete address 10.77.4.2/24 from d0"]);
    assert_eq!(
        ns.addrs("d0"),
        set(&["10.77.0.2/24", "10.77.4.3/24", "10.79.0.9/24", "fd77::2/64"]),
        "foreign secondary lost with its primary"
    );
    assert!(ns.secondaries("d0").is_empty(), "10.77.4.3 was promoted");
    assert_eq!(ns.promote_secondaries("d0"), "1");
    assert_eq!(r5.owned, p.owned);
}
