//! The crate graph keeps its layers (`make check`, and the unit layer of
//! `make test`), read from `cargo metadata --no-deps`:
//! - no crate depends (normal, build or dev) on a workspace crate that has
//!   only binary targets (applianced, appliancectl, the demo services):
//!   programs sit on top, nothing builds on them;
//! - the pure crates (appliance-config, appliance-cluster) never reach the
//!   kernel: neither they nor the workspace crates they depend on depend on
//!   a kernel-touching crate (netcfg, firewall, supervisor, nix, rtnetlink,
//!   ...). Their own dev-dependencies count too.
//!
//! The checks are plain functions over the metadata, so the tests below also
//! show each one failing on a graph that breaks it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::Context;
use serde_json::Value;

/// Crates that must stay pure: plans, formats and protocols only.
const PURE: &[&str] = &["appliance-config", "appliance-cluster"];

/// Crates that reach the kernel (netlink, nft, processes, raw syscalls).
const KERNEL_TOUCHING: &[&str] = &[
    "appliance-netcfg",
    "appliance-firewall",
    "appliance-supervisor",
    "applianced",
    "nix",
    "libc",
    "rtnetlink",
    "netlink-packet-route",
    "netlink-sys",
    "nftables",
];

/// One dependency edge as declared in a manifest.
#[derive(Debug, Clone)]
struct Dep {
    name: String,
    /// `normal`, `dev` or `build`.
    kind: String,
}

/// A workspace crate: its name, whether it has a library target, its deps.
#[derive(Debug, Clone)]
struct Krate {
    has_lib: bool,
    deps: Vec<Dep>,
}

/// The workspace crates by name, from `cargo metadata --no-deps` JSON.
fn workspace(meta: &Value) -> anyhow::Result<BTreeMap<String, Krate>> {
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata: no packages array")?;
    let mut out = BTreeMap::new();
    for p in packages {
        let name = p["name"].as_str().context("package without a name")?;
        let targets = p["targets"]
            .as_array()
            .with_context(|| format!("{name}: no targets"))?;
        let has_lib = targets.iter().any(|t| {
            t["kind"].as_array().is_some_and(|k| {
                k.iter()
                    .any(|k| matches!(k.as_str(), Some("lib" | "rlib" | "dylib" | "proc-macro")))
            })
        });
        let deps = p["dependencies"]
            .as_array()
            .with_context(|| format!("{name}: no dependencies array"))?
            .iter()
            .map(|d| {
                Ok(Dep {
                    name: d["name"]
                        .as_str()
                        .with_context(|| format!("{name}: a dependency without a name"))?
                        .to_string(),
                    kind: d["kind"].as_str().unwrap_or("normal").to_string(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        out.insert(name.to_string(), Krate { has_lib, deps });
    }
    Ok(out)
}

/// Every edge onto a workspace crate without a library target.
fn deps_on_programs(ws: &BTreeMap<String, Krate>) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, k) in ws {
        for d in &k.deps {
            if ws.get(&d.name).is_some_and(|t| !t.has_lib) {
                bad.push(format!(
                    "{name} depends ({}) on {}, which is a program only (no library target)",
                    d.kind, d.name
                ));
            }
        }
    }
    bad
}

/// Every path from a pure crate to a kernel-touching one: the pure crate's
/// own deps of any kind, then the normal and build deps of the workspace
/// crates it reaches (their dev-dependencies are not built for it).
fn pure_reaching_kernel(ws: &BTreeMap<String, Krate>) -> Vec<String> {
    let mut bad = Vec::new();
    for pure in PURE {
        let Some(root) = ws.get(*pure) else {
            bad.push(format!("pure crate {pure} is not in the workspace"));
            continue;
        };
        // (crate, path to it) to visit.
        let mut todo: Vec<(String, String)> = root
            .deps
            .iter()
            .map(|d| (d.name.clone(), format!("{pure} -> {} ({})", d.name, d.kind)))
            .collect();
        let mut seen = BTreeSet::new();
        while let Some((name, path)) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if KERNEL_TOUCHING.contains(&name.as_str()) {
                bad.push(format!("pure crate reaches the kernel: {path}"));
                continue;
            }
            if let Some(k) = ws.get(&name) {
                for d in k.deps.iter().filter(|d| d.kind != "dev") {
                    todo.push((d.name.clone(), format!("{path} -> {}", d.name)));
                }
            }
        }
    }
    bad
}

fn metadata() -> anyhow::Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .with_context(|| format!("running {cargo} metadata"))?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

#[test]
fn no_crate_depends_on_a_program() -> anyhow::Result<()> {
    let ws = workspace(&metadata()?)?;
    // The programs this guards: if one gained a library, say so here.
    for program in ["applianced", "appliancectl", "demo-portal", "demo-audit"] {
        let k = ws
            .get(program)
            .with_context(|| format!("{program} is not in the workspace"))?;
        assert!(!k.has_lib, "{program} now has a library target");
    }
    let bad = deps_on_programs(&ws);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

#[test]
fn pure_crates_never_reach_the_kernel() -> anyhow::Result<()> {
    let bad = pure_reaching_kernel(&workspace(&metadata()?)?);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// A fake crate: `(name, has_lib, [(dep, kind)])`.
type FakeCrate<'a> = (&'a str, bool, &'a [(&'a str, &'a str)]);

/// A tiny metadata document.
fn fake(crates: &[FakeCrate]) -> Value {
    let packages: Vec<Value> = crates
        .iter()
        .map(|(name, lib, deps)| {
            let kind = if *lib { "lib" } else { "bin" };
            serde_json::json!({
                "name": name,
                "targets": [{ "kind": [kind] }],
                "dependencies": deps.iter().map(|(d, k)| serde_json::json!({
                    "name": d,
                    "kind": if *k == "normal" { Value::Null } else { Value::from(*k) },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "packages": packages })
}

#[test]
fn the_checks_catch_a_bad_graph() -> anyhow::Result<()> {
    let ws = workspace(&fake(&[
        ("appliance-config", true, &[("serde", "normal")]),
        // Reaches nix through a workspace crate.
        ("appliance-cluster", true, &[("appliance-state", "normal")]),
        ("appliance-state", true, &[("nix", "normal")]),
        ("qa", true, &[("applianced", "dev")]),
        ("applianced", false, &[("appliance-config", "normal")]),
    ]))?;
    let programs = deps_on_programs(&ws);
    assert_eq!(
        programs,
        ["qa depends (dev) on applianced, which is a program only (no library target)"]
    );
    let kernel = pure_reaching_kernel(&ws);
    assert_eq!(
        kernel,
        ["pure crate reaches the kernel: appliance-cluster -> appliance-state (normal) -> nix"]
    );

    let dev_only = workspace(&fake(&[
        ("appliance-config", true, &[("nix", "dev")]),
        ("appliance-cluster", true, &[("appliance-config", "normal")]),
    ]))?;
    // A pure crate's own dev-dependency counts: its tests must stay pure too.
    assert_eq!(
        pure_reaching_kernel(&dev_only),
        ["pure crate reaches the kernel: appliance-config -> nix (dev)"]
    );
    assert!(deps_on_programs(&dev_only).is_empty());
    Ok(())
}
