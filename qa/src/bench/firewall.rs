//! Firewall figures: the full atomic apply against an `nft -f` reload of the
//! same ruleset, and adding one peer (the incremental path) against the full
//! apply. nft is started directly by a thread that entered the namespace, for
//! ours and the baseline alike, so no `ip netns exec` start is measured.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use anyhow::{ensure, Context};
use appliance_firewall::{
    render_add_peer_json, render_text, ApplyKind, Firewall, FirewallSpec, FullReason, NftRunner,
    PortSpec, Proto, SystemNft,
};
use qa::netns::Netns;

use super::{median, ms, Metric};

/// Peer counts measured, as named in BENCH.md.
const SIZES: [usize; 4] = [3, 10, 100, 1000];

/// The peer every update run adds (and removes again, untimed).
const EXTRA_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 1));

/// Every firewall figure, in BENCH.md order per size.
pub fn measure(runs: usize) -> Vec<Metric> {
    let tag = qa::unique_tag();
    let mut out = Vec::new();
    for n in SIZES {
        let name = format!("firewall_full_apply_{n}");
        eprintln!("bench: {name} ({runs} runs)");
        let full = full_apply(&tag, n, runs);
        let full_ms = full.as_ref().ok().map(|f| f.0);
        out.push(match full {
            Ok((ours, base)) => Metric::new(
                &name,
                "ms",
                ours,
                Some(base),
                format!(
                    "median of {runs}; {n} peers (half IPv4, half IPv6), 1 public + 1 internal port; \
                     each load into a fresh netns; ours = render JSON + `nft -j -f -`, baseline = \
                     render text + `nft -f -` (add/delete/define table, one transaction); nft \
                     started from a thread inside the netns for both"
                ),
            ),
            Err(e) => Metric::failed(&name, "ms", &e),
        });
        let name = format!("firewall_peer_update_{n}");
        eprintln!("bench: {name} ({runs} runs)");
        out.push(match peer_update(&tag, n, runs) {
            Ok(u) => Metric::new(
                &name,
                "ms",
                u.total,
                full_ms,
                format!(
                    "median of {runs}; Firewall::apply with one more IPv4 peer on {n} (incremental \
                     path); medians of its parts: live-table check {:.3} ms, element batch {:.3} ms; a bare add-element \
                     `nft -j -f -` alone {:.3} ms; baseline = firewall_full_apply_{n} of this run",
                    u.check, u.batch, u.bare
                ),
            ),
            Err(e) => Metric::failed(&name, "ms", &e),
        });
    }
    out
}

/// A node-like spec (management port, the demo services' ports) with `n`
/// peers, alternating IPv4 and IPv6.
fn spec_with(n: usize) -> FirewallSpec {
    let peers: BTreeSet<IpAddr> = (0..n)
        .map(|i| {
            let k = u32::try_from(i / 2).expect("at most a few thousand peers");
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::new(10, 78, (k / 250) as u8, (k % 250 + 1) as u8))
            } else {
                IpAddr::V6(Ipv6Addr::new(
                    0xfd78,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (k >> 16) as u16,
                    k as u16 + 1,
                ))
            }
        })
        .collect();
    FirewallSpec {
        management_port: 8443,
        public: [PortSpec {
            proto: Proto::Tcp,
            port: 8080,
        }]
        .into(),
        internal: [PortSpec {
            proto: Proto::Tcp,
            port: 7100,
        }]
        .into(),
        peers,
        management_sources: Vec::new(),
    }
}

/// Runs `fut` to completion on a fresh single-thread runtime in the
/// calling thread, so processes it starts inherit the thread's namespace.
fn block_on<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?
        .block_on(fut)
}

/// Medians of (ours, baseline) in ms, each load into a fresh namespace; the
/// two alternate which goes first so drift on the machine hits both alike.
fn full_apply(tag: &str, n: usize, runs: usize) -> anyhow::Result<(f64, f64)> {
    let spec = spec_with(n);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for ours_turn in [i % 2 == 0, i % 2 != 0] {
            let ns = Netns::create(&format!("qa-{tag}-fw"))?;
            let spec = &spec;
            let took = ns.run_in(|| {
                block_on(async move {
                    if ours_turn {
                        load_ours(spec).await
                    } else {
                        load_text(spec).await
                    }
                })
            })??;
            if ours_turn { &mut ours } else { &mut base }.push(took);
        }
    }
    Ok((
        median(&ours).context("no runs")?,
        median(&base).context("no runs")?,
    ))
}

async fn load_ours(spec: &FirewallSpec) -> anyhow::Result<f64> {
    let mut fw = Firewall::new(SystemNft);
    let start = Instant::now();
    let report = fw.apply(spec).await?;
    let took = ms(start.elapsed());
    ensure!(
        report.kind == ApplyKind::Full(FullReason::FirstApply),
        "expected a first full apply, got {:?}",
        report.kind
    );
    Ok(took)
}

async fn load_text(spec: &FirewallSpec) -> anyhow::Result<f64> {
    let start = Instant::now();
    let text = render_text(spec);
    let out = SystemNft
        .run(&args(&["-f", "-"]), Some(text.into_bytes()))
        .await?;
    let took = ms(start.elapsed());
    ensure!(
        out.success(),
        "nft -f failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(took)
}

/// Medians of one peer update (ms): total, live check, batch, bare nft batch.
struct Update {
    total: f64,
    check: f64,
    batch: f64,
    bare: f64,
}

fn peer_update(tag: &str, n: usize, runs: usize) -> anyhow::Result<Update> {
    let spec = spec_with(n);
    let mut plus = spec.clone();
    plus.peers.insert(EXTRA_PEER);
    let ns = Netns::create(&format!("qa-{tag}-fu"))?;
    ns.run_in(|| block_on(update_runs(&spec, &plus, runs)))?
}

async fn update_runs(
    spec: &FirewallSpec,
    plus: &FirewallSpec,
    runs: usize,
) -> anyhow::Result<Update> {
    let mut fw = Firewall::new(SystemNft);
    fw.apply(spec).await?;
    let removed_one = ApplyKind::Incremental {
        added: 0,
        removed: 1,
    };
    let (mut total, mut check, mut batch, mut bare) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let start = Instant::now();
        let report = fw.apply(plus).await?;
        let took = start.elapsed();
        ensure!(
            report.kind
                == (ApplyKind::Incremental {
                    added: 1,
                    removed: 0
                }),
            "expected an incremental add of one element, got {:?}",
            report.kind
        );
        total.push(ms(took));
        check.push(ms(report.check));
        batch.push(ms(took.saturating_sub(report.check)));
        let back = fw.apply(spec).await?;
        ensure!(
            back.kind == removed_one,
            "removing the peer again: {:?}",
            back.kind
        );
    }
    // The element batch alone, without the check (what the daemon would pay
    // if it trusted its memory of the table).
    for _ in 0..runs {
        let start = Instant::now();
        let json = render_add_peer_json(EXTRA_PEER);
        let out = SystemNft
            .run(&args(&["-j", "-f", "-"]), Some(json.into_bytes()))
            .await?;
        bare.push(ms(start.elapsed()));
        ensure!(
            out.success(),
            "add-element batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let back = fw.apply(spec).await?;
        ensure!(
            back.kind == removed_one,
            "removing the peer again: {:?}",
            back.kind
        );
    }
    let m = |v: &[f64]| median(v).context("no runs");
    Ok(Update {
        total: m(&total)?,
        check: m(&check)?,
        batch: m(&batch)?,
        bare: m(&bare)?,
    })
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
