//! The apply decision logic against a scripted nft (no root): first apply is
//! full, a matching live table makes a no-op, and a rejected incremental
//! batch falls back to a full reload.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

use appliance_firewall::{
    ApplyKind, Firewall, FirewallSpec, FullReason, NftOutput, NftRunner, PortSpec, Proto,
};

/// Lists the captured `peers` table; rejects every element batch.
#[derive(Default)]
struct ScriptedNft {
    /// Every call's arguments and whether it had stdin.
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl NftRunner for ScriptedNft {
    async fn run(&self, args: &[String], stdin: Option<Vec<u8>>) -> io::Result<NftOutput> {
        let input = String::from_utf8(stdin.unwrap_or_default()).unwrap_or_default();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(args.join(" "));
        let ok = |stdout: &str| NftOutput {
            code: Some(0),
            stdout: stdout.into(),
            stderr: vec![],
        };
        Ok(match args.join(" ").as_str() {
            "-j list table inet appliance" => ok(include_str!("data/listing-peers.json")),
            "-j -f -" if input.contains("\"element\"") => NftOutput {
                code: Some(1),
                stdout: vec![],
                stderr: b"Error: Could not process rule: No such file or directory".to_vec(),
            },
            _ => ok(""),
        })
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// The spec the captured listing was rendered from (tests/golden.rs `peers`).
fn peers() -> FirewallSpec {
    FirewallSpec {
        management_port: 443,
        peers: ["10.77.0.2", "10.77.0.3", "fd77::3"]
            .iter()
            .map(|s| ip(s))
            .collect(),
        internal: BTreeSet::from([PortSpec {
            proto: Proto::Tcp,
            port: 7000,
        }]),
        ..FirewallSpec::default()
    }
}

#[tokio::test]
async fn full_then_noop_then_fallback_to_full() {
    let mut fw = Firewall::new(ScriptedNft::default());
    let r = fw.apply(&peers()).await.expect("first");
    assert_eq!(r.kind, ApplyKind::Full(FullReason::FirstApply));
    let r = fw.apply(&peers()).await.expect("same");
    assert_eq!(r.kind, ApplyKind::NoOp);

    let mut more = peers();
    more.peers.insert(ip("10.77.0.4"));
    let r = fw.apply(&more).await.expect("fallback");
    assert!(
        matches!(r.kind, ApplyKind::Full(FullReason::IncrementalFailed(_))),
        "{r:?}"
    );
    assert_eq!(fw.applied(), Some(&more));

    let calls = fw
        .runner()
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let want = [
        "-j -f -",
        "-j list table inet appliance",
        "-j list table inet appliance",
    ];
    assert_eq!(&calls[..3], &want);
    assert_eq!(&calls[3..], &["-j -f -", "-j -f -"]);
}
