//! Pure tests: parsing, every refusal, and start order.

use super::*;
use crate::manifest_types::Exposure;

const BASE: &str = r#"
version = 1
name = "web"
role = "frontend"
command = "web"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("/etc/services/web.toml"))
}

fn with(extra: &str) -> Result<Manifest, ManifestError> {
    parse(&format!("{BASE}{extra}"))
}

fn named(name: &str, deps: &[&str], ports: &[u16]) -> Manifest {
    let mut text = format!("version = 1\nname = \"{name}\"\nrole = \"backend\"\ncommand = \"x\"\n");
    text += &format!("depends_on = {deps:?}\n");
    for p in ports {
        text += &format!(
            "[[port]]\nname = \"p\"\nport = {p}\nprotocol = \"tcp\"\nexposure = \"internal\"\n"
        );
    }
    Manifest::parse(&text, Path::new(&format!("/m/{name}.toml"))).expect("test manifest is valid")
}

#[test]
fn full_manifest_parses_with_defaults() {
    let m = with(
        r#"
args = ["-v"]
user = "nobody"
environment = { A = "1" }
[[port]]
name = "http"
port = 8080
protocol = "tcp"
exposure = "public"
[health]
interval_ms = 100
[health.http]
port = 8080
path = "/healthz"
"#,
    )
    .expect("valid");
    assert_eq!(m.role, Role::Frontend);
    assert_eq!(m.ports[0].exposure, Exposure::Public);
    let h = m.health.as_ref().expect("health");
    assert_eq!(
        h.check,
        HealthCheck::Http {
            port: 8080,
            path: "/healthz".into()
        }
    );
    assert_eq!(
        (h.interval_ms, h.timeout_ms, h.failures_before_restart),
        (100, 2000, 3)
    );
    assert_eq!(m.restart, Restart::default());
    assert_eq!(m.stop_signal(), Signal::SIGTERM);
}

#[test]
fn refuses_unknown_fields_and_versions() {
    let e = with("colour = \"red\"\n").expect_err("unknown field");
    assert!(
        e.to_string().contains("colour") && e.to_string().contains("web.toml"),
        "{e}"
    );
    let e = parse(&BASE.replace("version = 1", "version = 2")).expect_err("version");
    assert!(
        matches!(e, ManifestError::Version { version: 2, .. }),
        "{e}"
    );
    let e = with("[health]\n[health.tcp]\nport = 1\n[health.exec]\ncommand = \"x\"\n");
    assert!(e
        .expect_err("two checks")
        .to_string()
        .contains("exactly one"));
}

#[test]
fn refuses_bad_names_and_commands() {
    for bad in [
        "Web",
        "1web",
        "we b",
        "",
        "a-very-long-name-that-goes-past-32-chars",
    ] {
        let e = parse(&BASE.replace("\"web\"\nrole", &format!("{bad:?}\nrole"))).expect_err(bad);
        assert!(matches!(e, ManifestError::Name { .. }), "{bad}: {e}");
    }
    let e = with("environment = { \"A=B\" = \"1\" }\n").expect_err("env key");
    assert!(
        matches!(&e, ManifestError::Environment { key, .. } if key == "A=B"),
        "{e}"
    );
    let e = parse(&BASE.replace("command = \"web\"", "command = \"bin/web\"")).expect_err("rel");
    assert!(matches!(e, ManifestError::Command { .. }), "{e}");
}

#[test]
fn refuses_unknown_signal_zero_intervals_and_backoff_order() {
    let e = with("[stop]\nsignal = \"SIGNOPE\"\n").expect_err("signal");
    assert!(
        matches!(&e, ManifestError::Signal { signal, .. } if signal == "SIGNOPE"),
        "{e}"
    );
    for (extra, field) in [
        (
            "[health]\ninterval_ms = 0\n[health.tcp]\nport = 1\n",
            "health.interval_ms",
        ),
        (
            "[health]\ntimeout_ms = 0\n[health.tcp]\nport = 1\n",
            "health.timeout_ms",
        ),
        (
            "[restart]\nbackoff_initial_ms = 0\n",
            "restart.backoff_initial_ms",
        ),
        ("[stop]\ntimeout_ms = 0\n", "stop.timeout_ms"),
    ] {
        let e = with(extra).expect_err(field);
        assert!(
            matches!(&e, ManifestError::Zero { field: f, .. } if *f == field),
            "{e}"
        );
        assert!(e.to_string().contains("web.toml"));
    }
    let e =
        with("[restart]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 100\n").expect_err("order");
    assert!(
        matches!(
            e,
            ManifestError::Backoff {
                initial: 5000,
                max: 100,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn refuses_duplicates_unknown_dependencies_and_cycles() {
    let e = validate_set(&[named("a", &[], &[]), named("a", &[], &[])]).expect_err("dup");
    assert!(matches!(e, ManifestError::DuplicateName { .. }), "{e}");
    let e = validate_set(&[named("a", &[], &[80]), named("b", &[], &[80])]).expect_err("port");
    assert!(
        e.to_string().contains("80/tcp") && e.to_string().contains("/m/b.toml"),
        "{e}"
    );
    let e = validate_set(&[named("a", &["ghost"], &[])]).expect_err("dep");
    assert!(
        matches!(&e, ManifestError::UnknownDependency { dependency, .. } if dependency == "ghost")
    );
    let set = [
        named("a", &["b"], &[]),
        named("b", &["c"], &[]),
        named("c", &["a"], &[]),
        named("d", &[], &[]),
    ];
    let e = validate_set(&set).expect_err("cycle");
    assert_eq!(
        e.to_string(),
        "dependency cycle: a -> b -> c -> a; remove one depends_on entry"
    );
    let e = start_order(&[named("s", &["s"], &[])]).expect_err("self cycle");
    assert!(
        matches!(&e, ManifestError::Cycle { cycle } if cycle == &["s", "s"]),
        "{e}"
    );
}

#[test]
fn start_order_puts_dependencies_first_deterministically() {
    let set = [
        named("portal", &["audit", "cache"], &[]),
        named("cache", &["audit"], &[]),
        named("audit", &[], &[]),
        named("metrics", &[], &[]),
    ];
    assert_eq!(
        start_order(&set).expect("acyclic"),
        ["audit", "cache", "metrics", "portal"]
    );
    assert!(start_order(&[]).expect("empty").is_empty());
}

#[test]
fn shipped_service_manifests_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services");
    let set = load_dir(&dir).expect("services/*.toml are valid");
    let names: Vec<_> = set.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["audit", "management", "portal"]);
    assert_eq!(
        start_order(&set).expect("acyclic"),
        ["audit", "management", "portal"]
    );
    assert_eq!(set[2].depends_on, ["audit"]);
    assert_eq!(
        set[0].health.as_ref().map(|h| h.check.clone()),
        Some(HealthCheck::Tcp { port: 7100 })
    );
    // managementd: a system service on the management port, its own user.
    let m = &set[1];
    assert_eq!((m.role, m.command.as_str()), (Role::System, "managementd"));
    assert_eq!(m.user.as_deref(), Some("management"));
    assert_eq!(m.ports.len(), 1);
    assert_eq!(m.ports[0].exposure, Exposure::Management);
    assert_eq!(
        m.health.as_ref().map(|h| h.check.clone()),
        Some(HealthCheck::Tcp {
            port: m.ports[0].port
        })
    );
}

const MANAGEMENT_PORT: &str = r#"
[[port]]
name = "https"
port = 8443
protocol = "tcp"
exposure = "management"
"#;

#[test]
fn system_role_with_one_management_port_parses() {
    let text = BASE.replace("role = \"frontend\"", "role = \"system\"");
    let m = parse(&format!("{text}{MANAGEMENT_PORT}")).expect("valid");
    assert_eq!(m.role, Role::System);
    assert_eq!(m.ports[0].exposure, Exposure::Management);
    // A system service needs no management port.
    assert_eq!(parse(&text).expect("valid").role, Role::System);
}

#[test]
fn refuses_misplaced_management_ports() {
    let system = BASE.replace("role = \"frontend\"", "role = \"system\"");
    let cases = [
        // Only the appliance's own (system) services serve the management port.
        format!("{BASE}{MANAGEMENT_PORT}"),
        // TCP only.
        format!(
            "{system}{}",
            MANAGEMENT_PORT.replace("protocol = \"tcp\"", "protocol = \"udp\"")
        ),
        // One per manifest.
        format!(
            "{system}{MANAGEMENT_PORT}{}",
            MANAGEMENT_PORT.replace("8443", "9443")
        ),
    ];
    for text in cases {
        let e = parse(&text).expect_err("misplaced management port");
        assert!(
            matches!(&e, ManifestError::ManagementPort { name, .. } if name == "https"),
            "{text}: {e}"
        );
        assert!(e.to_string().contains("web.toml"), "{e}");
    }
}
