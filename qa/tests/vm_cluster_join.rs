//! The cluster join of issue 5 with appliances booted from the image
//! (`make image`, in `out/`) under QEMU, configured with static addresses
//! on the kernel command line. A VM has no shell and its admin API is a Unix
//! socket inside it, so the admin acts on a hosted node: A (applianced in a
//! namespace linked to the VMs' bridge) forms the cluster, and adds the VMs
//! B and C as front-ends with the join codes their serial consoles show.
//! Then, from outside: the bridge's namespace (not a member) is refused on
//! every node's internal ports, A reaches the VMs' peer port, the VMs'
//! portals answer and record events in the audit service on A, A lists
//! three active members and each VM's console (applianced logs there) shows
//! it took A's generation. C is removed: A's firewall stops admitting it, B
//! takes the change, C shows a new join code and goes back to its own
//! services. Both VMs power off on the ACPI power button.
//!
//! Seen only through the VMs' console logs: that B's firewall gained one
//! set element when C joined and lost one when C left (not which one), and
//! the VMs' generations. Not checked at all: that C itself reaches B and A
//! (nothing in C can be driven from outside), and that removed C is refused
//! by B (that would take a connection from C).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use qa::lan::Lan;
use qa::node::{HostedNode, NodeSpec};
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
/// The console line of a join code (appliance/applianced/src/cluster/tasks.rs):
/// `join code: K7Q2M-XW9RT (expires 14:05 UTC)`.
const CODE_PREFIX: &str = "join code: ";

/// The hosted node A; the VMs B and C (the last octet numbers their MACs).
const A_IP: &str = "10.79.0.31";
const B: (u8, &str) = (32, "vm-b");
const C: (u8, &str) = (33, "vm-c");

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
/// parameters as `10.79.0.<n>/24` named `hostname` (SeaBIOS, virtio disk and
/// NIC). Does not wait: both VMs boot at once.
fn start(built: &Built, net: &VmNet, (n, hostname): (u8, &'static str)) -> anyhow::Result<Machine> {
    let ip = format!("10.79.0.{n}");
    let disk = Disk::appliance(
        built,
        &[
            format!("appliance.ip={ip}/24"),
            format!("appliance.gw={GATEWAY_V4}"),
            format!("appliance.hostname={hostname}"),
        ],
    )?;
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

/// The peers4 set of A's firewall, from `appliancectl firewall show`.
fn a_peers4(a: &HostedNode) -> anyhow::Result<Vec<String>> {
    let fw = ctl_json(a, &["firewall", "show"])?;
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

/// `appliancectl cluster add IP CODE --roles frontend` on A; returns the
/// outcome (every event) once it succeeded.
fn add(a: &HostedNode, m: &Machine, code: &str) -> anyhow::Result<Value> {
    let started = Instant::now();
    let out = run_ctl(
        a,
        &[
            "cluster", "add", &m.ip, code, "--roles", "frontend", "--output", "json",
        ],
    )?;
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    anyhow::ensure!(
        out.status.success() && outcome["ok"] == true,
        "adding {} failed: {}{}",
        m.hostname,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{} added in {:.1} s (generation {})",
        m.hostname,
        started.elapsed().as_secs_f64(),
        outcome["generation"]
    );
    Ok(outcome)
}

/// Waits (bounded) until A lists exactly `hostnames` as members, every one
/// active; returns A's cluster status.
fn wait_members(a: &HostedNode, hostnames: &[&str]) -> anyhow::Result<Value> {
    let mut want: Vec<&str> = hostnames.to_vec();
    want.sort_unstable();
    qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(250),
        &format!("A to list {want:?} as active members"),
        || {
            let s = ctl_json(a, &["cluster", "status"]).ok()?;
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
fn vms_join_a_hosted_node_with_their_console_codes() -> anyhow::Result<()> {
    if test_prereq::opted_out(test_prereq::VM) {
        return Ok(());
    }
    let t0 = Instant::now();
    let built = Built::load()?;
    let net = VmNet::new()?;
    let tag = format!("v{}", qa::unique_tag());
    let lan = Lan::new(&tag)?;
    net.link_lan(&tag)?;
    let a = HostedNode::start(&lan, &tag, &NodeSpec::new("host-a", &format!("{A_IP}/24")))?;
    let mut b = start(&built, &net, B)?;
    let mut c = start(&built, &net, C)?;
    for m in [&mut b, &mut c] {
        let t = m.vm.wait_for(READY, VM_READY_LIMIT)?;
        eprintln!(
            "{}: ready {:.1} s after QEMU started",
            m.hostname,
            t.as_secs_f64()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(a.wait_ready(READY_LIMIT))?;

    // Unjoined, a VM's peer port is its join service, open to the LAN.
    for m in [&b, &c] {
        let to = addr(&format!("{}:7443", m.ip));
        ensure(
            m,
            reachable(net.ns(), to),
            format!("the join port {to} of unjoined {} is closed", m.hostname),
        )?;
    }

    let formed = ctl_json(&a, &["cluster", "form"])?;
    assert_eq!(formed["node_state"], "member", "{formed}");

    // A hears the VMs announce themselves.
    qa::wait::until(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "A to hear the beacons of vm-b and vm-c",
        || {
            let d = ctl_json(&a, &["cluster", "discovered"]).ok()?;
            let names: Vec<&str> = d["appliances"]
                .as_array()?
                .iter()
                .filter_map(|x| x["hostname"].as_str())
                .collect();
            (names.contains(&B.1) && names.contains(&C.1)).then_some(())
        },
    )?;

    // B, then C, with the codes their consoles show.
    let code_b = console_code(&mut b, 0, Duration::from_secs(10))?;
    add(&a, &b, &code_b)?;
    wait_members(&a, &["host-a", B.1])?;
    let code_c = console_code(&mut c, 0, Duration::from_secs(10))?;
    let b_before_c = b.vm.serial_log().len();
    let added = add(&a, &c, &code_c)?;
    // Every member took the generation C was added at.
    let generation = added["generation"].as_u64().unwrap_or_default();
    for host in ["host-a", B.1] {
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
    let status = wait_members(&a, &["host-a", B.1, C.1])?;
    eprintln!(
        "three active members at generation {} after {:.0} s",
        status["generation"],
        t0.elapsed().as_secs_f64()
    );
    for m in status["members"].as_array().into_iter().flatten() {
        let want: &[&str] = if m["hostname"] == "host-a" {
            &["frontend", "backend"]
        } else {
            &["frontend"]
        };
        assert_eq!(m["roles"], serde_json::json!(want), "{m}");
    }
    // Each VM's console shows it took A's generation; B's firewall let one
    // more address in when C joined (which one, only B's own tools could tell).
    let generation = status["generation"].as_u64().unwrap_or_default();
    wait_generation(&mut b, generation)?;
    wait_generation(&mut c, generation)?;
    wait_firewall_change(&mut b, b_before_c, "added: 1,")?;

    // A admits the VMs, and only them.
    assert_eq!(a_peers4(&a)?, [b.ip.as_str(), c.ip.as_str()]);
    // The bridge's namespace is no member: refused on every internal port
    // (7100 is audit's, placed on A only; 7443 the cluster's mutual TLS).
    for ip in [A_IP, &b.ip, &c.ip] {
        for port in [7100, 7443] {
            let to = addr(&format!("{ip}:{port}"));
            assert!(
                !reachable(net.ns(), to),
                "the bridge's namespace reached {to}"
            );
        }
    }
    for m in [&b, &c] {
        let to = addr(&format!("{}:7443", m.ip));
        ensure(m, reachable(&a.ns, to), format!("A cannot reach {to}"))?;
    }

    // The VMs' portals answer, and record in A's audit: POST through B's
    // portal, read back through C's and A's.
    for m in [&b, &c] {
        let to = addr(&format!("{}:8080", m.ip));
        let r = get_ok(&net, to, "/healthz", PORTAL_LIMIT);
        m.vm.checked(r)?;
    }
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
    for ip in [c.ip.as_str(), A_IP] {
        let events = get_ok(&net, addr(&format!("{ip}:8080")), "/events", PORTAL_LIMIT)?;
        assert!(
            events.contains(&note),
            "{ip}'s portal does not show {note:?}: {events}"
        );
    }

    // C is removed: A no longer admits it, B took the change, C waits to
    // be joined again with a new code and runs its own services.
    let before_removal = c.vm.serial_log().len();
    let b_before_removal = b.vm.serial_log().len();
    let removed = ctl_json(&a, &["cluster", "remove", C.1])?;
    let generation = removed["generation"].as_u64().unwrap_or_default();
    let pushes = removed["pushes"].as_array().cloned().unwrap_or_default();
    assert!(
        pushes
            .iter()
            .any(|p| p["hostname"] == B.1 && p["ok"] == true)
            && pushes.iter().all(|p| p["ok"] == true),
        "not every member took the removal: {removed}"
    );
    let status = wait_members(&a, &["host-a", B.1])?;
    assert_eq!(status["generation"].as_u64(), Some(generation), "{status}");
    assert_eq!(a_peers4(&a)?, [b.ip.as_str()]);
    // B took the removal and its firewall let one address go; C learnt it
    // was removed at the same generation.
    wait_generation(&mut b, generation)?;
    wait_firewall_change(&mut b, b_before_removal, "removed: 1 }")?;
    wait_generation(&mut c, generation)?;
    let new_code = console_code(&mut c, before_removal, CHANGE_LIMIT)?;
    ensure(
        &c,
        new_code != code_c,
        format!("removed {} shows its old code again", c.hostname),
    )?;
    // Its join port is public again, and its portal uses its own audit,
    // which has not seen the event recorded on A.
    let to = addr(&format!("{}:7443", c.ip));
    let open = qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(500),
        "C's join port",
        || reachable(net.ns(), to).then_some(()),
    );
    c.vm.checked(open)?;
    let own = qa::wait::until(
        CHANGE_LIMIT,
        Duration::from_millis(500),
        "C's portal to use its own audit",
        || {
            http_get(net.ns(), addr(&format!("{}:8080", c.ip)), "/events")
                .ok()
                .filter(|r| r.starts_with("HTTP/1.1 200") && !r.contains(&note))
        },
    );
    c.vm.checked(own)?;
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

    power_off(&mut [&mut b, &mut c])?;
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
