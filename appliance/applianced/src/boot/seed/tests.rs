//! Tests of the first-boot seed: parsing, overlaying kernel parameters, the seed disk search.

use super::*;
use crate::boot::cmdline;

const SEED: &str = r#"
hostname = "seeded"
roles = ["backend"]

[[interface]]
name = "eth0"
addresses = ["192.0.2.10/24"]

[dns]
servers = ["192.0.2.53"]
search = ["corp.example"]
"#;

fn seed() -> Seed {
    Seed {
        source: "/data/appliance/seed.toml".into(),
        text: SEED.into(),
    }
}

fn params(line: &str) -> (ConfigParams, Vec<String>) {
    let p = cmdline::parse(line);
    (p.config, p.errors.iter().map(ToString::to_string).collect())
}

#[test]
fn nothing_given_is_the_default_hostname_and_no_network() {
    assert_eq!(default_hostname("5f3c12ab00"), "appliance-5f3c12");
    let fb = first_boot(None, &ConfigParams::default(), &[], "appliance-5f3c12");
    assert!(fb.complete && fb.errors.is_empty(), "{fb:?}");
    assert_eq!(fb.config.as_ref().unwrap().hostname, "appliance-5f3c12");
    assert!(fb.config.as_ref().unwrap().interfaces.is_empty());
    assert_eq!(fb.config.as_ref().unwrap().roles.len(), 2);
}

#[test]
fn kernel_parameters_alone_configure_the_network() {
    let (p, e) = params(
        "appliance.ip=10.0.2.15/24,fd00::15/64 appliance.gw=10.0.2.2 appliance.dns=10.0.2.3",
    );
    let fb = first_boot(None, &p, &e, "appliance-abcdef");
    assert!(fb.complete, "{:?}", fb.errors);
    let c = fb.config.as_ref().unwrap().get();
    assert_eq!(c.hostname, "appliance-abcdef");
    assert_eq!(c.interfaces.len(), 1);
    assert_eq!(c.interfaces[0].name, "eth0");
    assert_eq!(c.interfaces[0].addresses.len(), 2);
    assert_eq!(c.gateway4, Some("10.0.2.2".parse().unwrap()));
    assert_eq!(
        c.dns.servers,
        vec!["10.0.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        fb.sources,
        vec!["kernel parameters appliance.ip=10.0.2.15/24,fd00::15/64 appliance.gw=10.0.2.2 appliance.dns=10.0.2.3"]
    );
}

#[test]
fn parameters_override_the_seed_field_by_field() {
    let (p, e) =
        params("appliance.ip=10.0.2.15/24 appliance.hostname=node-b appliance.roles=frontend");
    let fb = first_boot(Some(&seed()), &p, &e, "appliance-abcdef");
    assert!(fb.complete, "{:?}", fb.errors);
    let c = fb.config.as_ref().unwrap().get();
    assert_eq!(c.hostname, "node-b");
    assert_eq!(c.roles, [appliance_config::Role::Frontend].into());
    // eth0's addresses replaced, the seed's resolver kept.
    assert_eq!(
        c.interfaces[0].addresses,
        vec!["10.0.2.15/24".parse().unwrap()]
    );
    assert_eq!(c.dns.search, vec!["corp.example"]);
    assert_eq!(fb.sources.len(), 2);
    assert_eq!(fb.sources[0], "seed /data/appliance/seed.toml");
}

#[test]
fn another_interface_is_added_beside_the_seeds() {
    let (p, e) = params("appliance.ip=10.9.0.5/16 appliance.iface=eth1");
    let fb = first_boot(Some(&seed()), &p, &e, "x");
    let names: Vec<&str> = fb
        .config
        .as_ref()
        .unwrap()
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["eth0", "eth1"]);
}

#[test]
fn a_seed_without_hostname_gets_the_default_one() {
    let s = Seed {
        source: "appliance.toml on /dev/vdb".into(),
        text: "[dns]\nservers = [\"192.0.2.53\"]\n".into(),
    };
    let fb = first_boot(Some(&s), &ConfigParams::default(), &[], "appliance-123456");
    assert!(fb.complete, "{:?}", fb.errors);
    assert_eq!(fb.config.as_ref().unwrap().hostname, "appliance-123456");
}

#[test]
fn a_bad_parameter_leaves_the_network_out_and_is_named() {
    let (p, e) =
        params("appliance.ip=10.0.2.300/24 appliance.gw=10.0.2.2 appliance.hostname=node-c");
    let fb = first_boot(None, &p, &e, "appliance-abcdef");
    assert!(!fb.complete);
    assert!(
        fb.errors[0].contains("appliance.ip=\"10.0.2.300/24\""),
        "{:?}",
        fb.errors
    );
    // The gateway then lies in no configured subnet: named with its parameter.
    assert!(
        fb.errors[1].starts_with(
            "configuration from kernel parameter appliance.gw=10.0.2.2 refused: gateway4"
        ),
        "{:?}",
        fb.errors
    );
    assert!(
        fb.config.as_ref().unwrap().interfaces.is_empty()
            && fb.config.as_ref().unwrap().gateway4.is_none()
    );
    assert_eq!(fb.config.as_ref().unwrap().hostname, "node-c");
}

#[test]
fn a_refused_seed_is_named_and_not_used() {
    let s = Seed {
        source: "/data/appliance/seed.toml".into(),
        text: "hostname = \"ok\"\ncolour = \"blue\"\n".into(),
    };
    let (p, e) = params("appliance.ip=10.0.2.15/24");
    let fb = first_boot(Some(&s), &p, &e, "appliance-abcdef");
    assert!(!fb.complete);
    assert!(
        fb.errors[0].starts_with("seed /data/appliance/seed.toml refused, not used:")
            && fb.errors[0].contains("colour"),
        "{:?}",
        fb.errors
    );
    assert_eq!(fb.config.as_ref().unwrap().hostname, "appliance-abcdef");
    assert!(fb.config.as_ref().unwrap().interfaces.is_empty());
}

#[test]
fn fat_boot_sectors_are_recognised() {
    let mut s = vec![0u8; 512];
    assert!(!is_vfat(&s));
    s[510] = 0x55;
    s[511] = 0xAA;
    s[82..87].copy_from_slice(b"FAT32");
    assert!(is_vfat(&s));
    s[82..87].copy_from_slice(b"NTFS ");
    s[54..59].copy_from_slice(b"FAT16");
    assert!(is_vfat(&s));
}

#[test]
fn seed_candidates_skip_the_root_disk() {
    let dir = tempfile::tempdir().unwrap();
    let class = crate::boot::blockdev::tests::fake_sysfs(
        dir.path(),
        &[
            ("vda", None, None, 0, 100),
            ("vda1", Some("vda"), Some("esp"), 0, 10),
            ("vdb", None, None, 16, 100),
            ("loop0", None, None, 32, 100),
            ("vdc", None, None, 48, 0),
        ],
    );
    let devs = crate::boot::blockdev::scan(&class);
    let names: Vec<&str> = seed_candidates(&devs, Some("vda"))
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["vdb"]);
}

#[test]
fn seed_files_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(state_seed(dir.path()), (None, None));
    std::fs::write(dir.path().join(STATE_SEED_FILE), SEED).unwrap();
    assert_eq!(state_seed(dir.path()).0.unwrap().text, SEED);
    std::fs::write(dir.path().join(STATE_SEED_FILE), vec![b'#'; 70_000]).unwrap();
    assert!(state_seed(dir.path()).1.unwrap().contains("at most 65536"));
}

const ADMIN_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

#[test]
fn the_seed_names_the_first_administrator_apart_from_the_configuration() {
    let text = format!(
        "hostname = \"node-s\"\n\n[admin]\nname = \"root\"\npassword_hash = \"{ADMIN_HASH}\"\n"
    );
    let a = seed_admin(&text).unwrap().unwrap();
    assert_eq!(a.name, "root");
    assert_eq!(a.password_hash, ADMIN_HASH);
    // The configuration reads the same without it.
    let cfg = parse_seed(&text, "fallback").unwrap();
    assert_eq!(cfg.hostname, "node-s");
    assert_eq!(seed_admin("hostname = \"x\"\n").unwrap(), None);
    assert_eq!(seed_admin("not toml [").unwrap(), None);
}

#[test]
fn a_wrong_admin_table_is_refused_without_its_hash() {
    let e = seed_admin("[admin]\nname = \"root\"\n").unwrap_err();
    assert!(e.contains("password_hash"), "{e}");
    let e = seed_admin("[admin]\nname = \"root\"\npassword_hash = \"$argon2i$v=19$m=1,t=1,p=1$c29tZXNhbHRzb21l$c29tZXNhbHRzb21lc2FsdA\"\n")
        .unwrap_err();
    assert!(e.contains("argon2id"), "{e}");
    assert!(!e.contains("c29tZXNh"), "{e}");
    let e = seed_admin(&format!(
        "[admin]\nname = \"Root\"\npassword_hash = \"{ADMIN_HASH}\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("\"Root\""), "{e}");
}
