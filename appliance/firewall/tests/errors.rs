//! Error reporting without root.

use appliance_firewall::{CommandNft, Firewall, FirewallError, FirewallSpec};

#[tokio::test]
async fn missing_nft_says_install_nftables() {
    let runner = CommandNft {
        program: "/nonexistent/nft".into(),
        prefix: vec![],
    };
    let mut fw = Firewall::new(runner);
    let err = fw
        .apply(&FirewallSpec::default())
        .await
        .expect_err("no nft");
    assert!(matches!(err, FirewallError::NftMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("install nftables"), "{err}");
    assert!(fw.applied().is_none());
}

#[tokio::test]
async fn nft_failure_carries_exit_code_and_stderr() {
    // A shell script stands in for an nft that rejects everything.
    let runner = CommandNft {
        program: "sh".into(),
        prefix: vec![
            "-c".into(),
            "echo 'Error: boom' >&2; exit 1".into(),
            "nft".into(),
        ],
    };
    let mut fw = Firewall::new(runner);
    let err = fw
        .apply(&FirewallSpec::default())
        .await
        .expect_err("rejected");
    match &err {
        FirewallError::Nft {
            code, stderr, spec, ..
        } => {
            assert_eq!(*code, Some(1));
            assert_eq!(stderr, "Error: boom");
            assert!(spec.contains("management port 0"), "{spec}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
