//! Root test with real traffic: two namespaces joined by a veth pair. The
//! server namespace runs the firewall and a TCP echo listener on an internal
//! port; the client is let in only while it is a peer, and an established
//! connection survives peer-set changes and a full reload.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_firewall::{ApplyKind, CommandNft, Firewall, FirewallSpec, PortSpec, Proto};
use common::{ip, Netns, SERIAL};

const SERVER: &str = "10.77.1.1:7000";

fn spec(peer: &str) -> FirewallSpec {
    FirewallSpec {
        management_port: 443,
        internal: BTreeSet::from([PortSpec {
            proto: Proto::Tcp,
            port: 7000,
        }]),
        peers: BTreeSet::from([peer.parse().expect("peer address")]),
        ..FirewallSpec::default()
    }
}

/// Accepts and echoes lines until `stop`, for at most 30 s.
fn echo_server(listener: TcpListener, stop: Arc<AtomicBool>) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            Ok((conn, _)) => {
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut out = match conn.try_clone() {
                        Ok(c) => c,
                        Err(_) => return,
                    };
                    for line in BufReader::new(conn).lines().take(100) {
                        let Ok(line) = line else { return };
                        if writeln!(out, "{line}").is_err() {
                            return;
                        }
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn connect(client: &Netns) -> std::io::Result<TcpStream> {
    client.run(|| {
        let addr: SocketAddr = SERVER.parse().expect("server address");
        let s = TcpStream::connect_timeout(&addr, Duration::from_millis(700))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(s)
    })
}

fn echo(stream: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    writeln!(stream, "{msg}")?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Two namespaces joined by a veth pair: the server at 10.77.1.1, the
/// client at 10.77.1.2.
fn veth_pair() -> (Netns, Netns) {
    let server = Netns::new("srv");
    let client = Netns::new("cli");
    ip(&[
        "-n",
        &server.name,
        "link",
        "add",
        "v0",
        "type",
        "veth",
        "peer",
        "name",
        "v1",
        "netns",
        &client.name,
    ]);
    ip(&[
        "-n",
        &server.name,
        "addr",
        "add",
        "10.77.1.1/24",
        "dev",
        "v0",
    ]);
    ip(&[
        "-n",
        &client.name,
        "addr",
        "add",
        "10.77.1.2/24",
        "dev",
        "v1",
    ]);
    ip(&["-n", &server.name, "link", "set", "v0", "up"]);
    ip(&["-n", &client.name, "link", "set", "v1", "up"]);
    (server, client)
}

#[test]
fn peers_get_in_others_do_not_and_established_survives() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return;
    }
    let (server, client) = veth_pair();

    let listener = server.run(|| TcpListener::bind(SERVER).expect("bind in server netns"));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let echo_thread = std::thread::spawn(move || echo_server(listener, stop2));

    let rt = common::runtime();
    let mut fw = Firewall::new(CommandNft::in_netns(&server.name));

    // Not a peer: dropped (the connect times out).
    rt.block_on(fw.apply(&spec("10.77.1.99")))
        .expect("apply without client");
    assert!(connect(&client).is_err(), "non-peer must not connect");

    // A peer: connects and talks.
    let r = rt
        .block_on(fw.apply(&spec("10.77.1.2")))
        .expect("add client as peer");
    assert!(matches!(r.kind, ApplyKind::Incremental { .. }), "{r:?}");
    let mut conn = connect(&client).expect("peer connects");
    assert_eq!(echo(&mut conn, "one").expect("echo"), "one");

    // Removed from the peers: the open connection keeps flowing, new ones fail.
    let r = rt
        .block_on(fw.apply(&spec("10.77.1.99")))
        .expect("remove client");
    assert!(matches!(r.kind, ApplyKind::Incremental { .. }), "{r:?}");
    assert_eq!(echo(&mut conn, "two").expect("established survives"), "two");
    assert!(
        connect(&client).is_err(),
        "removed peer must not connect anew"
    );

    // Counters saw it (a full reload would reset them): the peer rule
    // accepted, the default drop dropped.
    let status = rt.block_on(fw.show()).expect("show");
    let packets = |id: &str| {
        let rule = status.rules.iter().find(|r| r.id.as_deref() == Some(id));
        rule.map_or(0, |r| r.packets)
    };
    assert!(packets("internal-tcp-v4") > 0, "{status:?}");
    assert!(packets("default-drop") > 0, "{status:?}");

    // A full reload (structural change) keeps it flowing too.
    let mut s = spec("10.77.1.99");
    s.management_port = 8443;
    let r = rt.block_on(fw.apply(&s)).expect("full reload");
    assert!(matches!(r.kind, ApplyKind::Full(_)), "{r:?}");
    assert_eq!(echo(&mut conn, "three").expect("survives reload"), "three");

    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
}

/// The management port with `sources` (and an unrelated peer).
fn mgmt_spec(sources: &[&str]) -> FirewallSpec {
    FirewallSpec {
        management_port: 7000,
        management_sources: sources
            .iter()
            .map(|s| s.parse().expect("test network"))
            .collect(),
        ..spec("10.77.1.99")
    }
}

#[test]
fn management_sources_let_in_only_their_networks_and_loopback() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if test_prereq::opted_out(test_prereq::KERNEL) {
        return;
    }
    let (server, client) = veth_pair();
    let listener = server.run(|| TcpListener::bind("0.0.0.0:7000").expect("bind in server netns"));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let echo_thread = std::thread::spawn(move || echo_server(listener, stop2));
    let rt = common::runtime();
    let mut fw = Firewall::new(CommandNft::in_netns(&server.name));
    let loopback = || {
        server.run(|| {
            let addr: SocketAddr = "10.77.1.1:7000".parse().expect("address");
            TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
        })
    };

    // No sources: anyone.
    rt.block_on(fw.apply(&mgmt_spec(&[]))).expect("apply open");
    let mut conn = connect(&client).expect("open management port");
    assert_eq!(echo(&mut conn, "open").expect("echo"), "open");

    // Another network only: the client is dropped, the node itself is not,
    // and the established connection survives the reload.
    let r = rt
        .block_on(fw.apply(&mgmt_spec(&["10.77.9.0/24", "fd77:9::/64"])))
        .expect("apply restricted");
    assert!(matches!(r.kind, ApplyKind::Full(_)), "{r:?}");
    assert!(connect(&client).is_err(), "outside the sources");
    assert!(loopback(), "the node itself always gets in");
    assert_eq!(echo(&mut conn, "kept").expect("established"), "kept");

    // An IPv6-only restriction leaves IPv4 clients out entirely.
    rt.block_on(fw.apply(&mgmt_spec(&["fd77:1::/64"])))
        .expect("apply v6 only");
    assert!(connect(&client).is_err(), "no IPv4 source allowed");

    // The client's network (given with host bits): in.
    rt.block_on(fw.apply(&mgmt_spec(&["10.77.1.5/24"])))
        .expect("apply client's network");
    let mut conn2 = connect(&client).expect("inside the sources");
    assert_eq!(echo(&mut conn2, "in").expect("echo"), "in");
    let status = rt.block_on(fw.show()).expect("show");
    assert!(
        status
            .rules
            .iter()
            .any(|r| r.id.as_deref() == Some("mgmt-v4") && r.packets > 0),
        "{status:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
}
