//! The cluster join of issue 5 with appliances booted from the image
//! (`make image`, in `out/`) under QEMU, configured with static addresses
//! on the kernel command line, and administered only from outside, as a
//! user would: through the management port (issue 10). A VM has no shell:
//! the first, A, gets its administrator from the kernel parameter
//! `appliance.admin=NAME:PHC`; from the host (the VMs' bridge namespace)
//! `appliancectl --server https://A:8443` signs in, pinned to the
//! certificate A's console shows, and forms the cluster. The web UI in
//! headless chromium (`qa/web/add-vm.mjs`) adds the VM B as a front-end with
//! the join code B's console shows; `appliancectl --server` adds C, a hosted
//! node on the same bridge (a third VM would not fit: a test runs two at
//! most), with the code its status shows. Then, from outside: the bridge's
//! namespace (not a member) is refused on every node's internal ports, the
//! portals answer and record events in the audit service on A, A lists
//! three active members and B's console and C's log show they took A's
//! generation. C is removed: A's firewall stops admitting it, B takes the
//! change, C shows a new join code and goes back to its own services. Both
//! VMs power off on the ACPI power button.
//!
//! Seen only through B's console: that its firewall gained one set element
//! when C joined and lost one when C left (not which one), and its
//! generations. Not checked at all: that the members reach each other's
//! peer port other than by the joins and pushes succeeding, and that removed
//! C is refused by B.

mod common;
mod web_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use qa::lan::Lan;
use qa::node::{FirstAdmin, HostedNode, NodeSpec, RemoteCtl};
use qa::vm::{Built, Disk, DiskBus, Firmware, Nic, Vm, VmSpec};
use qa::vmnet::{VmNet, GATEWAY_V4};
use serde_json::Value;

/// QEMU start to the ready line: TCG, two VMs and a hosted node on 2 cores.
const VM_READY_LIMIT: Duration = Duration::from_secs(300);
/// One `cluster add` into a VM, or a membership change to settle: the VM
/// side makes keys and certificates under emulation.
const CHANGE_LIMIT: Duration = Duration::from_secs(120);
/// Power button to QEMU's exit (services stop, sync, unmount, power off).
const POWEROFF_LIMIT: Duration = Duration::from_secs(90);
/// A VM's portal, after it became a member (neighbour discovery, restarts).
const PORTAL_LIMIT: Duration = Duration::from_secs(60);
/// The ready line (appliance/applianced/src/ready.rs).
const READY: &str = "applianced: ready";
/// A's seeded administrator.
const ADMIN: &str = "admin";
const PASSWORD: &str = "correct horse battery";
/// managementd answering, or taking a new certificate (it looks every 5 s).
const MANAGEMENT_LIMIT: Duration = Duration::from_secs(120);
/// The browser's run: sign in, the join under emulation, both green.
const SCRIPT_LIMIT: Duration = Duration::from_secs(480);
/// The console line of a join code (appliance/applianced/src/cluster/tasks.rs):
/// `join code: K7Q2M-XW9RT (expires 14:05 UTC)`.
const CODE_PREFIX: &str = "join code: ";

/// The VMs A and B (the last octet numbers their MACs), the hosted node C.
const A: (u8, &str) = (31, "vm-a");
const A_IP: &str = "10.79.0.31";
const B: (u8, &str) = (32, "vm-b");
const C: (u8, &str) = (33, "host-c");
const C_IP: &str = "10.79.0.33";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// A VM booted from its own copy of the image.
struct Machine {
    vm: Vm,
    ip: String,
    hostname: &'static str,
    _disk: Disk,
}

/// Starts a VM from a fresh copy of the image configured by kernel
/// parameters as `10.79.0.<n>/24` named `hostname`, then `extra` (SeaBIOS,
/// virtio disk and NIC). Does not wait: the VMs boot at once.
fn start(
    built: &Built,
    net: &VmNet,
    (n, hostname): (u8, &'static str),
    extra: &[&str],
) -> anyhow::Result<Machine> {
    let ip = format!("10.79.0.{n}");
    let mut params = vec![
        format!("appliance.ip={ip}/24"),
        format!("appliance.gw={GATEWAY_V4}"),
        format!("appliance.hostname={hostname}"),
    ];
    params.extend(extra.iter().map(|p| (*p).to_owned()));
    let disk = Disk::appliance(built, &params)?;
    let mut spec = VmSpec::new(hostname);
    spec.firmware = Firmware::Bios;
    spec.nic = Some(Nic::Virtio);
    spec.mac = Some(qa::vmnet::mac(n));
    spec.disk = Some((disk.path().to_owned(), DiskBus::Virtio));
    let vm = Vm::start(Some(net), &spec)?;
    Ok(Machine {
        vm,
        ip,
        hostname,
        _disk: disk,
    })
}

/// The last well-formed join code on the console after byte `from` of the
/// serial log (kernel messages may cut into a line: those are skipped).
fn last_code(log: &str, from: usize) -> Option<String> {
    let tail = log.get(from..)?;
    tail.match_indices(CODE_PREFIX)
        .filter_map(|(i, _)| {
            let rest = &tail[i + CODE_PREFIX.len()..];
            let code = rest.get(..11)?;
            let ok = code.char_indices().all(|(j, c)| {
                if j == 5 {
                    c == '-'
                } else {
                    c.is_ascii_uppercase() || c.is_ascii_digit()
                }
            }) && rest[11..].starts_with(" (expires ");
            ok.then(|| code.to_owned())
        })
        .last()
}

/// The last SHA-256 fingerprint (32 hex bytes with colons) in a console
/// text: the management certificate's, as applianced shows it
/// (`management: https://ADDR:PORT  certificate SHA-256 AA:BB:...`).
fn last_fingerprint(log: &str) -> Option<String> {
    log.rsplit(|c: char| !(c.is_ascii_hexdigit() || c == ':'))
        .find(|w| {
            let parts: Vec<&str> = w.split(':').collect();
            parts.len() == 32 && parts.iter().all(|p| p.len() == 2)
        })
        .map(str::to_ascii_uppercase)
}

/// Waits (bounded) until `probe` finds something in `m`'s serial log after
/// byte `from`; `what` names it in the error. Fails early when QEMU exits.
fn wait_console<T>(
    m: &mut Machine,
    from: usize,
    limit: Duration,
    what: &str,
    probe: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = m.vm.serial_log().get(from..).and_then(&probe) {
            return Ok(found);
        }
        let exited = m.vm.try_exit()?;
        let what = format!("{what} on the console of {}", m.hostname);
        if let Some(status) = exited {
            return m
                .vm
                .checked(Err(anyhow::anyhow!("QEMU exited ({status}) before {what}")));
        }
        if Instant::now() >= deadline {
            return m
                .vm
                .checked(Err(anyhow::anyhow!("no {what} within {limit:?}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) for a join code on `m`'s console after byte `from`.
fn console_code(m: &mut Machine, from: usize, limit: Duration) -> anyhow::Result<String> {
    wait_console(m, from, limit, "a join code", |log| last_code(log, 0))
}

/// The cluster generation a VM last took, as its applianced logs it on the
/// console: on joining (`joined the cluster cluster=... generation=N`), on
/// taking a pushed configuration (`accepted cluster configuration
/// generation=N`) or on learning it was removed. The `generation=` of
/// `desired state applied` is the node's own counter, not the cluster's.
fn console_generation(log: &str) -> Option<u64> {
    const CLUSTER_LINES: [&str; 3] = [
        "joined the cluster cluster=",
        "accepted cluster configuration",
        "this node was removed from the cluster; it waits",
    ];
    log.lines()
        .rev()
        .filter(|l| CLUSTER_LINES.iter().any(|m| l.contains(m)))
        .find_map(|l| {
            let rest = l.split(" generation=").nth(1)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
}

/// Waits (bounded) until `m`'s console shows it took `generation`.
fn wait_generation(m: &mut Machine, generation: u64) -> anyhow::Result<()> {
    wait_console(
        m,
        0,
        CHANGE_LIMIT,
        &format!("cluster generation {generation}"),
        |log| (console_generation(log) == Some(generation)).then_some(()),
    )
}

/// An incremental firewall change logged on `m`'s console after byte
/// `from` that adds (`"added: 1"`) or removes (`"removed: 1"`) one element
/// of its sets, as applianced logs it (`desired state applied: firewall:
/// Incremental { added: A, removed: R }`).
fn wait_firewall_change(m: &mut Machine, from: usize, change: &str) -> anyhow::Result<()> {
    wait_console(
        m,
        from,
        CHANGE_LIMIT,
        &format!("an incremental firewall change with {change}"),
        |log| {
            log.lines()
                .any(|l| {
                    l.contains("desired state applied: firewall: Incremental") && l.contains(change)
                })
                .then_some(())
        },
    )
}

/// The administrator outside: `appliancectl --server https://A:8443` from
/// the bridge's namespace, with its own configuration directory.
struct Admin {
    rt: tokio::runtime::Runtime,
    ctl: RemoteCtl,
    url: String,
}

impl Admin {
    /// `ARGS --output json`, which must succeed.
    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.rt.block_on(self.ctl.json(&self.url, args))
    }

    /// Signs in as the seeded administrator, accepting on first contact
    /// only the certificate with `fingerprint`.
    fn login(&self, fingerprint: &str) -> anyhow::Result<()> {
        let args = [
            "--accept-fingerprint",
            fingerprint,
            "login",
            "--user",
            ADMIN,
            "--password-stdin",
        ];
        let out = self
            .rt
            .block_on(self.ctl.run(&self.url, &args, &format!("{PASSWORD}\n")))?;
        anyhow::ensure!(
            out.status.success(),
            "appliancectl --server {} login: {}",
            self.url,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Signs in, retried (bounded) while managementd starts or takes a new
    /// certificate.
    fn wait_login(&self, fingerprint: &str) -> anyhow::Result<()> {
        let mut last = String::new();
        qa::wait::until(
            MANAGEMENT_LIMIT,
            Duration::from_secs(1),
            &format!("signing in at {} with certificate {fingerprint}", self.url),
            || match self.login(fingerprint) {
                Ok(()) => Some(()),
                Err(e) => {
                    last = e.to_string();
                    None
                }
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}; last: {last}"))
    }
}

/// The peers4 set of A's firewall, from `appliancectl firewall show`.
fn a_peers4(a: &Admin) -> anyhow::Result<Vec<String>> {
    let fw = a.json(&["firewall", "show"])?;
    let set = fw["sets"]
        .as_array()
        .and_then(|sets| sets.iter().find(|s| s["name"] == "peers4"))
        .ok_or_else(|| anyhow::anyhow!("A's firewall has no peers4 set: {fw}"))?;
    Ok(set["elements"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// `appliancectl --server A cluster add IP CODE --roles frontend`; returns
/// the outcome (every event) once it succeeded.
fn add(a: &Admin, (ip, hostname): (&str, &str), code: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let args = [
        "cluster", "add", ip, code, "--roles", "frontend", "--output", "json",
    ];
    let out = a.rt.block_on(a.ctl.run(&a.url, &args, ""))?;
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    anyhow::ensure!(
        out.status.success() && outcome["ok"] == true,
        "adding {hostname} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{hostname} added in {:.1} s (generation {})",
        started.elapsed().as_secs_f64(),
        outcome["generation"]
    );
    Ok(outcome)
}

/// Waits (bounded) until A lists exactly `hostnames` as members, every one
/// active; returns A's cluster status.
fn wait_members(a: &Admin, hostnames: &[&str]) -> anyhow::Result<Value> {
    let mut want: Vec<&str> = hostnames.to_vec();
    want.sort_unstable();
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(500),
        &format!("A to list {want:?} as active members"),
        || {
            let s = a.json(&["cluster", "status"]).ok()?;
            let members = s["members"].as_array()?;
            let mut names: Vec<&str> = members
                .iter()
                .filter_map(|m| m["hostname"].as_str())
                .collect();
            names.sort_unstable();
            let active = members.iter().all(|m| m["state"] == "active");
            (names == want && active).then(|| s.clone())
        },
    )
}

/// The hosted node C's join code, from its status (what a console shows).
fn hosted_code(rt: &tokio::runtime::Runtime, c: &HostedNode) -> anyhow::Result<String> {
    let status = rt.block_on(async {
        c.client()
            .await?
            .status(appliance_api::v1::StatusRequest {})
            .await
            .map_err(anyhow::Error::from)
    })?;
    Ok(status.into_inner().join_code)
}

/// Waits (bounded) until the hosted node C's log shows it took
/// `generation` (the lines B's console shows, see [`console_generation`]).
fn wait_hosted_generation(c: &HostedNode, generation: u64) -> anyhow::Result<()> {
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(250),
        &format!("{} to take cluster generation {generation}", c.name),
        || (console_generation(&c.stderr()) == Some(generation)).then_some(()),
    )
}

/// `GET path` from the bridge's namespace, retried (bounded) until it
/// answers 200.
fn get_ok(net: &VmNet, to: SocketAddr, path: &str, limit: Duration) -> anyhow::Result<String> {
    qa::wait::until(
        limit,
        Duration::from_millis(250),
        &format!("GET {path} at {to} to answer 200"),
        || {
            http_get(net.ns(), to, path)
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        },
    )
}

fn ensure(m: &Machine, cond: bool, msg: String) -> anyhow::Result<()> {
    m.vm.checked(if cond {
        Ok(())
    } else {
        Err(anyhow::anyhow!(msg))
    })
}

/// Presses the power button of every VM, then checks each powers off on
/// its own within the bound.
fn power_off(machines: &mut [&mut Machine]) -> anyhow::Result<()> {
    let t0 = Instant::now();
    for m in machines.iter_mut() {
        m.vm.power_button()?;
    }
    for m in machines.iter_mut() {
        let status = m.vm.wait_exit(POWEROFF_LIMIT)?;
        let event = m.vm.shutdown_event();
        ensure(
            m,
            status.success()
                && event
                    .as_ref()
                    .is_some_and(|e| e["reason"] == "guest-shutdown"),
            format!("QEMU exited with {status}, SHUTDOWN event {event:?}: not a guest power off"),
        )?;
        let log = m.vm.serial_log();
        m.vm.checked(qa::vm::shutdown::in_order(&log))?;
        eprintln!(
            "{}: powered off {:.1} s after the buttons",
            m.hostname,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[test]
fn vms_form_a_cluster_from_outside_and_join_with_their_console_codes() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    web_support::prepare()?;
    let t0 = Instant::now();
    let built = Built::load()?;
    let net = VmNet::new()?;
    let shots = web_support::screenshot_dir("vm_cluster_join")?;
    let seed = format!(
        "appliance.admin={ADMIN}:{}",
        FirstAdmin::new(ADMIN, PASSWORD).phc()?
    );
    let mut a = start(&built, &net, A, &[&seed])?;
    let mut b = start(&built, &net, B, &[])?;
    let tag = format!("v{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    net.link_lan(&tag)?;
    // Front-end and back-end on its own, as an unjoined appliance is: once
    // removed it runs its own audit again.
    let c = HostedNode::start(&lan, &tag, &NodeSpec::new(C.1, &format!("{C_IP}/24")))?;
    for m in [&mut a, &mut b] {
        let t = m.vm.wait_for(READY, VM_READY_LIMIT)?;
        eprintln!(
            "{}: ready {:.1} s after QEMU started",
            m.hostname,
            t.as_secs_f64()
        );
    }

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(c.wait_ready(READY_LIMIT))?;

    // Unjoined, a node's peer port is its join service, open to the LAN.
    for m in [&a, &b] {
        let to = addr(&format!("{}:7443", m.ip));
        ensure(
            m,
            reachable(net.ns(), to),
            format!("the join port {to} of unjoined {} is closed", m.hostname),
        )?;
    }
    let to = addr(&format!("{C_IP}:7443"));
    anyhow::ensure!(
        reachable(net.ns(), to),
        "the join port {to} of unjoined C is closed"
    );

    // From outside, pinned to the certificate A's console shows.
    let fingerprint = wait_console(
        &mut a,
        0,
        MANAGEMENT_LIMIT,
        "the management certificate's fingerprint",
        last_fingerprint,
    )?;
    let admin = Admin {
        rt,
        ctl: RemoteCtl::new(net.ns())?,
        url: format!("https://{A_IP}:8443"),
    };
    a.vm.checked(admin.wait_login(&fingerprint))?;
    let before_form = a.vm.serial_log().len();
    let formed = a.vm.checked(admin.json(&["cluster", "form"]))?;
    assert_eq!(formed["node_state"], "member", "{formed}");
    eprintln!(
        "{} formed the cluster from outside {:.0} s in",
        A.1,
        t0.elapsed().as_secs_f64()
    );
    // As a member A serves a certificate of the cluster CA, and its console
    // shows the new fingerprint: appliancectl refuses the changed
    // certificate until its pin is forgotten (as its refusal says), then
    // accepts exactly the new one.
    let fingerprint = wait_console(
        &mut a,
        before_form,
        CHANGE_LIMIT,
        "the fingerprint of the cluster CA's certificate",
        |log| last_fingerprint(log).filter(|f| *f != fingerprint),
    )?;
    admin.ctl.forget_pin(&admin.url)?;
    a.vm.checked(admin.wait_login(&fingerprint))?;

    // A hears the VMs announce themselves.
    qa::wait::until(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "A to hear the beacons of vm-b and host-c",
        || {
            let d = admin.json(&["cluster", "discovered"]).ok()?;
            let names: Vec<&str> = d["appliances"]
                .as_array()?
                .iter()
                .filter_map(|x| x["hostname"].as_str())
                .collect();
            (names.contains(&B.1) && names.contains(&C.1)).then_some(())
        },
    )?;

    // B in the web UI, then C with appliancectl, each with the code its
    // console shows.
    let code_b = console_code(&mut b, 0, Duration::from_secs(10))?;
    let env = [
        ("WEB_A_URL", admin.url.clone()),
        ("WEB_A_HOST", A.1.to_string()),
        ("WEB_A_FP", fingerprint.clone()),
        ("WEB_USER", ADMIN.to_string()),
        ("WEB_PASSWORD", PASSWORD.to_string()),
        ("WEB_B_IP", b.ip.clone()),
        ("WEB_B_HOST", B.1.to_string()),
        ("WEB_B_CODE", code_b),
        ("WEB_JOIN_MS", SCRIPT_LIMIT.as_millis().to_string()),
    ];
    let ran = web_support::run_script(
        Some(net.ns()),
        "add-vm.mjs",
        &env,
        &shots,
        SCRIPT_LIMIT + CHANGE_LIMIT,
    );
    b.vm.checked(a.vm.checked(ran))?;
    wait_members(&admin, &[A.1, B.1])?;
    let code_c = hosted_code(&admin.rt, &c)?;
    let b_before_c = b.vm.serial_log().len();
    let added = add(&admin, (C_IP, C.1), &code_c)?;
    // Every member took the generation C was added at.
    let generation = added["generation"].as_u64().unwrap_or_default();
    for host in [A.1, B.1] {
        let pushed = added["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["kind"] == "config_pushed"
                    && e["hostname"] == host
                    && e["generation"] == generation
            })
        });
        assert!(
            pushed,
            "{host} did not take generation {generation}: {added}"
        );
    }
    let status = wait_members(&admin, &[A.1, B.1, C.1])?;
    eprintln!(
        "three active members at generation {} after {:.0} s",
        status["generation"],
        t0.elapsed().as_secs_f64()
    );
    for m in status["members"].as_array().into_iter().flatten() {
        let want: &[&str] = if m["hostname"] == A.1 {
            &["frontend", "backend"]
        } else {
            &["frontend"]
        };
        assert_eq!(m["roles"], serde_json::json!(want), "{m}");
    }
    // B's console and C's log show they took A's generation; B's firewall
    // let one more address in when C joined (which one, only B's own tools
    // could tell).
    let generation = status["generation"].as_u64().unwrap_or_default();
    wait_generation(&mut b, generation)?;
    wait_hosted_generation(&c, generation)?;
    wait_firewall_change(&mut b, b_before_c, "added: 1,")?;

    // A admits the other members, and only them.
    assert_eq!(a_peers4(&admin)?, [b.ip.as_str(), C_IP]);
    // The bridge's namespace is no member: refused on every internal port
    // (7100 is audit's, placed on A only; 7443 the cluster's mutual TLS).
    for ip in [A_IP, b.ip.as_str(), C_IP] {
        for port in [7100, 7443] {
            let to = addr(&format!("{ip}:{port}"));
            assert!(
                !reachable(net.ns(), to),
                "the bridge's namespace reached {to}"
            );
        }
    }

    // The portals answer, and record in A's audit: POST through B's
    // portal, read back through C's and A's.
    let r = get_ok(
        &net,
        addr(&format!("{}:8080", b.ip)),
        "/healthz",
        PORTAL_LIMIT,
    );
    b.vm.checked(r)?;
    get_ok(
        &net,
        addr(&format!("{C_IP}:8080")),
        "/healthz",
        PORTAL_LIMIT,
    )?;
    let note = format!("via {} {}", B.1, std::process::id());
    let body = format!("{note}\n");
    let posted = http(
        net.ns(),
        addr(&format!("{}:8080", b.ip)),
        &format!(
            "POST /events HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )?;
    ensure(
        &b,
        posted.starts_with("HTTP/1.1 200"),
        format!("POST /events through {}: {posted}", b.hostname),
    )?;
    for ip in [C_IP, A_IP] {
        let events = get_ok(&net, addr(&format!("{ip}:8080")), "/events", PORTAL_LIMIT)?;
        assert!(
            events.contains(&note),
            "{ip}'s portal does not show {note:?}: {events}"
        );
    }

    // C is removed: A no longer admits it, B took the change, C waits to
    // be joined again with a new code and runs its own services.
    let b_before_removal = b.vm.serial_log().len();
    let removed = admin.json(&["cluster", "remove", C.1])?;
    let generation = removed["generation"].as_u64().unwrap_or_default();
    let pushes = removed["pushes"].as_array().cloned().unwrap_or_default();
    assert!(
        pushes
            .iter()
            .any(|p| p["hostname"] == B.1 && p["ok"] == true)
            && pushes.iter().all(|p| p["ok"] == true),
        "not every member took the removal: {removed}"
    );
    let status = wait_members(&admin, &[A.1, B.1])?;
    assert_eq!(status["generation"].as_u64(), Some(generation), "{status}");
    assert_eq!(a_peers4(&admin)?, [b.ip.as_str()]);
    // B took the removal and its firewall let one address go; C learnt it
    // was removed at the same generation.
    wait_generation(&mut b, generation)?;
    wait_firewall_change(&mut b, b_before_removal, "removed: 1 }")?;
    wait_hosted_generation(&c, generation)?;
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(250),
        "removed C to show a new join code",
        || {
            hosted_code(&admin.rt, &c)
                .ok()
                .filter(|code| !code.is_empty() && *code != code_c)
        },
    )?;
    // Its join port is public again, and its portal uses its own audit,
    // which has not seen the event recorded on A.
    let to = addr(&format!("{C_IP}:7443"));
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(500),
        "C's join port",
        || reachable(net.ns(), to).then_some(()),
    )?;
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(500),
        "C's portal to use its own audit",
        || {
            http_get(net.ns(), addr(&format!("{C_IP}:8080")), "/events")
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200") && !r.contains(&note))
        },
    )?;
    // A still refuses the bridge's namespace, and B still reaches A's audit.
    for port in [7100, 7443] {
        let to = addr(&format!("{A_IP}:{port}"));
        assert!(
            !reachable(net.ns(), to),
            "the bridge's namespace reached {to}"
        );
    }
    let events = get_ok(
        &net,
        addr(&format!("{}:8080", b.ip)),
        "/events",
        PORTAL_LIMIT,
    )?;
    assert!(
        events.contains(&note),
        "B's portal lost A's audit: {events}"
    );

    power_off(&mut [&mut a, &mut b])?;
    web_support::publish(&shots, &["vm-add-progress", "vm-dashboard"])?;
    eprintln!("done in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn cluster_generations_are_read_from_console_text() {
    let log = "INFO desired state applied: firewall: Full generation=9 changes=1\n\
               INFO joined the cluster cluster=684a3b18 generation=2\n\
               INFO joined the cluster peer=[::ffff:10.79.0.31]:34536\n\
               INFO desired state applied: firewall: Incremental generation=3 changes=1\n";
    assert_eq!(console_generation(log), Some(2));
    let log = format!("{log}INFO accepted cluster configuration generation=12\n");
    assert_eq!(console_generation(&log), Some(12));
    let log = format!(
        "{log}WARN this node was removed from the cluster; it waits to be joined again generation=14\n"
    );
    assert_eq!(console_generation(&log), Some(14));
    assert_eq!(console_generation("applianced: ready\n"), None);
}

#[test]
fn join_codes_are_read_from_console_text() {
    let log = "applianced: ready\njoin code: K7Q2M-XW9RT (expires 14:05 UTC)\n\
               [   3.1] virtio_net: join code: AB\njoin code: 2345A-BCDEF (expires 14:20 UTC)\n";
    assert_eq!(last_code(log, 0).as_deref(), Some("2345A-BCDEF"));
    let second = log.find("[   3.1]").unwrap();
    assert_eq!(last_code(log, second).as_deref(), Some("2345A-BCDEF"));
    assert_eq!(last_code(&log[..second], 0).as_deref(), Some("K7Q2M-XW9RT"));
    assert_eq!(last_code("join code: K7Q2M-XW9R", 0), None);
    assert_eq!(last_code(log, log.len() + 1), None);
}

#[test]
fn management_fingerprints_are_read_from_console_text() {
    let fp = "AB:".repeat(31) + "CD";
    let log = format!(
        "applianced: ready\nmanagement: https://10.79.0.31:8443  certificate SHA-256 {}\n\
         applianced: node key SHA256:4d2fa9ba65627a89\n",
        fp.to_lowercase()
    );
    assert_eq!(last_fingerprint(&log).as_deref(), Some(fp.as_str()));
    let newer = "01:".repeat(31) + "02";
    let log = format!("{log}management: https://10.79.0.31:8443  certificate SHA-256 {newer}\n");
    assert_eq!(last_fingerprint(&log).as_deref(), Some(newer.as_str()));
    assert_eq!(last_fingerprint("AB:CD:EF"), None);
    assert_eq!(last_fingerprint("applianced: ready\n"), None);
}
