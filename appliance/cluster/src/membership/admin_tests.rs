//! Pure tests of the admin data: every rule of `apply`, each refusal leaving
//! the data as it was, settings parsing, the hash shape, serde, and the
//! configuration carrying it.

use super::*;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

fn account(name: &str, role: AdminRole) -> Account {
    Account {
        name: name.into(),
        role,
        password_hash: HASH.into(),
        changed_unix_ms: 1,
    }
}

fn put(name: &str, role: AdminRole, create: bool) -> AdminChange {
    AdminChange::PutAccount {
        account: account(name, role),
        create,
    }
}

/// One administrator, "root".
fn seeded() -> AdminData {
    let mut d = AdminData::default();
    d.apply(&put("root", AdminRole::Administrator, true))
        .unwrap();
    d
}

/// Asserts `change` is refused and `data` is unchanged; returns the error.
fn refused(data: &AdminData, change: AdminChange) -> AdminError {
    let mut copy = data.clone();
    let e = copy.apply(&change).unwrap_err();
    assert_eq!(&copy, data, "a refused change left the data changed");
    e
}

#[test]
fn first_administrator_by_create_or_change() {
    let d = seeded();
    assert!(d.has_administrator());
    let mut d2 = AdminData::default();
    d2.apply(&put("root", AdminRole::Administrator, false))
        .unwrap();
    assert_eq!(d, d2);
    assert_eq!(d.accounts().count(), 1);
    assert_eq!(d.account("root").unwrap().role, AdminRole::Administrator);
}

#[test]
fn first_account_must_be_an_administrator() {
    let e = refused(&AdminData::default(), put("eve", AdminRole::Viewer, true));
    assert!(matches!(e, AdminError::FirstMustBeAdministrator { .. }));
    assert!(e.to_string().contains("\"eve\""));
    assert!(e.is_precondition());
}

#[test]
fn create_refuses_an_existing_name() {
    let e = refused(&seeded(), put("root", AdminRole::Administrator, true));
    assert_eq!(
        e,
        AdminError::AccountExists {
            name: "root".into()
        }
    );
    assert!(e.to_string().contains("\"root\" already exists"));
}

#[test]
fn change_refuses_a_missing_name() {
    let e = refused(&seeded(), put("bob", AdminRole::Viewer, false));
    assert_eq!(e, AdminError::NoSuchAccount { name: "bob".into() });
}

#[test]
fn change_replaces_the_account() {
    let mut d = seeded();
    let mut a = account("root", AdminRole::Administrator);
    a.changed_unix_ms = 99;
    d.apply(&AdminChange::PutAccount {
        account: a.clone(),
        create: false,
    })
    .unwrap();
    assert_eq!(d.account("root"), Some(&a));
}

#[test]
fn the_last_administrator_stays() {
    let mut d = seeded();
    let e = refused(&d, put("root", AdminRole::Viewer, false));
    assert!(matches!(
        e,
        AdminError::LastAdministrator {
            action: "made a viewer",
            ..
        }
    ));
    let e = refused(
        &d,
        AdminChange::RemoveAccount {
            name: "root".into(),
        },
    );
    assert!(matches!(
        e,
        AdminError::LastAdministrator {
            action: "removed",
            ..
        }
    ));
    assert!(e
        .to_string()
        .contains("make another account an administrator"));

    // With a second administrator, either may go.
    d.apply(&put("ann", AdminRole::Administrator, true))
        .unwrap();
    d.apply(&put("root", AdminRole::Viewer, false)).unwrap();
    refused(&d, AdminChange::RemoveAccount { name: "ann".into() });
    d.apply(&AdminChange::RemoveAccount {
        name: "root".into(),
    })
    .unwrap();
    assert_eq!(d.accounts().count(), 1);
}

#[test]
fn viewers_come_and_go() {
    let mut d = seeded();
    d.apply(&put("vic", AdminRole::Viewer, true)).unwrap();
    assert_eq!(d.accounts().count(), 2);
    d.apply(&AdminChange::RemoveAccount { name: "vic".into() })
        .unwrap();
    assert_eq!(d, seeded());
    let e = refused(&d, AdminChange::RemoveAccount { name: "vic".into() });
    assert_eq!(e, AdminError::NoSuchAccount { name: "vic".into() });
}

#[test]
fn account_names() {
    for ok in ["a", "root", "ann.b", "x_1-2", &"a".repeat(32)] {
        check_account_name(ok).unwrap();
    }
    for bad in [
        "",
        "1root",
        "Root",
        "ro ot",
        "root!",
        "_a",
        "rööt",
        &"a".repeat(33),
    ] {
        let e = check_account_name(bad).unwrap_err();
        assert!(
            e.to_string().contains(&format!("{bad:?}")),
            "{e} does not name {bad:?}"
        );
        let mut bad_account = account("root", AdminRole::Administrator);
        bad_account.name = bad.to_string();
        refused(
            &AdminData::default(),
            AdminChange::PutAccount {
                account: bad_account,
                create: true,
            },
        );
    }
}

#[test]
fn password_hash_shapes() {
    check_password_hash(HASH).unwrap();
    check_password_hash("$argon2id$v=19$m=65536,t=3,p=4$YWJjZGVmZ2hpamts$aGFzaGhhc2hoYXNoaGFzaA")
        .unwrap();
    let bad = [
        "",
        "hunter2hunter2",
        "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
        "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
        "$argon2id$v=19$t=2,m=19456,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
        "$argon2id$v=19$m=0,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
        "$argon2id$v=19$m=19456,t=2$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
        "$argon2id$v=19$m=19456,t=2,p=1$short$0123456789abcdefghij",
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$short",
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA==$0123456789abcdefghij",
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij$x",
        "x$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghij",
    ];
    for b in bad {
        let reason = check_password_hash(b).unwrap_err();
        let mut a = account("root", AdminRole::Administrator);
        a.password_hash = b.into();
        let e = refused(
            &AdminData::default(),
            AdminChange::PutAccount {
                account: a,
                create: true,
            },
        );
        let msg = e.to_string();
        assert!(msg.contains(&reason), "{msg}");
        assert!(msg.contains("\"root\""), "{msg}");
        // The message never carries the salt or hash part.
        assert!(!msg.contains("c29tZXNhbHRzb21lc2FsdA"), "{msg}");
        assert!(!msg.contains("0123456789abcdef"), "{msg}");
    }
}

#[test]
fn debug_never_shows_a_hash_or_key() {
    let d = seeded();
    let mut d = d;
    d.apply(&AdminChange::SetCertificate(Some(cert()))).unwrap();
    let shown = format!("{d:?}");
    assert!(!shown.contains("c29tZXNhbHRz"), "{shown}");
    assert!(!shown.contains("SECRETKEY"), "{shown}");
    let change = put("root", AdminRole::Administrator, false);
    assert!(!format!("{change:?}").contains("c29tZXNhbHRz"));
    assert_eq!(change.to_string(), "change account root (administrator)");
}

fn settings(dns: &[&str], ntp: &[&str], nets: &[&str]) -> Result<Settings, AdminError> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Settings::parse(&s(dns), &s(ntp), &s(nets))
}

#[test]
fn settings_accepted() {
    let s = settings(
        &["192.0.2.53", "2001:db8::53"],
        &["pool.ntp.org", "192.0.2.123"],
        &["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"],
    )
    .unwrap();
    let mut d = seeded();
    d.apply(&AdminChange::SetSettings(s.clone())).unwrap();
    assert_eq!(d.settings(), &s);
    assert!(s.allows(&"10.1.2.3".parse().unwrap()));
    assert!(!s.allows(&"192.0.2.8".parse().unwrap()));
    assert!(Settings::default().allows(&"192.0.2.8".parse().unwrap()));
    // Back to nothing.
    d.apply(&AdminChange::SetSettings(Settings::default()))
        .unwrap();
    assert_eq!(d, seeded());
}

#[test]
fn settings_refused() {
    let cases: Vec<(Result<Settings, AdminError>, &str)> = vec![
        (settings(&["dns.example"], &[], &[]), "\"dns.example\""),
        (settings(&["0.0.0.0"], &[], &[]), "\"0.0.0.0\""),
        (settings(&["224.0.0.1"], &[], &[]), "\"224.0.0.1\""),
        (
            settings(&["192.0.2.1", "192.0.2.1"], &[], &[]),
            "192.0.2.1 is listed twice in the DNS servers",
        ),
        (settings(&[], &["bad_name"], &[]), "\"bad_name\""),
        (
            settings(&[], &["a.example", "a.example"], &[]),
            "a.example is listed twice",
        ),
        (
            settings(&[], &[], &["10.0.0.1"]),
            "\"10.0.0.1\" has no prefix length",
        ),
        (settings(&[], &[], &["10.0.0.0/33"]), "\"10.0.0.0/33\""),
        (
            settings(&[], &[], &["10.1.0.0/8"]),
            "write the network, 10.0.0.0/8",
        ),
        (
            settings(&[], &[], &["10.0.0.0/8", "10.0.0.0/8"]),
            "10.0.0.0/8 is listed twice",
        ),
    ];
    for (r, needle) in cases {
        let e = r.unwrap_err();
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
    let nine: Vec<String> = (1..=9).map(|i| format!("192.0.2.{i}")).collect();
    let e = Settings::parse(&nine, &[], &[]).unwrap_err();
    assert_eq!(
        e,
        AdminError::TooMany {
            what: "DNS servers",
            count: 9
        }
    );
    // A typed value that breaks a rule is refused by apply too.
    let bad = Settings {
        management_networks: vec!["10.1.0.0/8".parse().unwrap()],
        ..Settings::default()
    };
    refused(&seeded(), AdminChange::SetSettings(bad));
}

#[test]
fn settings_must_keep_the_client_in() {
    let s = settings(&[], &[], &["10.0.0.0/8"]).unwrap();
    s.check_client(&"10.9.9.9".parse().unwrap()).unwrap();
    let e = s.check_client(&"192.0.2.9".parse().unwrap()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("192.0.2.9") && msg.contains("10.0.0.0/8"),
        "{msg}"
    );
    Settings::default()
        .check_client(&"192.0.2.9".parse().unwrap())
        .unwrap();
}

fn cert() -> UploadedCert {
    UploadedCert {
        cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n".into(),
    }
}

#[test]
fn certificate_set_and_cleared() {
    let mut d = seeded();
    d.apply(&AdminChange::SetCertificate(Some(cert()))).unwrap();
    assert_eq!(d.certificate(), Some(&cert()));
    let e = refused(
        &d,
        AdminChange::SetCertificate(Some(UploadedCert {
            cert_pem: "nope".into(),
            key_pem: cert().key_pem,
        })),
    );
    assert!(matches!(e, AdminError::InvalidCertificate { .. }));
    refused(
        &d,
        AdminChange::SetCertificate(Some(UploadedCert {
            cert_pem: cert().cert_pem,
            key_pem: "nope".into(),
        })),
    );
    d.apply(&AdminChange::SetCertificate(None)).unwrap();
    assert_eq!(d, seeded());
}

#[test]
fn roles_parse() {
    assert_eq!("viewer".parse::<AdminRole>().unwrap(), AdminRole::Viewer);
    assert_eq!(
        "administrator".parse::<AdminRole>().unwrap(),
        AdminRole::Administrator
    );
    let e = "admin".parse::<AdminRole>().unwrap_err();
    assert!(e.to_string().contains("\"admin\""));
}

#[test]
fn serde_round_trip_and_validation() {
    let mut d = seeded();
    d.apply(&AdminChange::SetSettings(
        settings(&["192.0.2.53"], &["pool.ntp.org"], &["10.0.0.0/8"]).unwrap(),
    ))
    .unwrap();
    let json = serde_json::to_string(&d).unwrap();
    let back: AdminData = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    back.validate().unwrap();
    // Stored data without an administrator is caught.
    let bad = json.replace("\"administrator\"", "\"viewer\"");
    let bad: AdminData = serde_json::from_str(&bad).unwrap();
    assert!(bad.validate().is_err());
    // Every change survives the wire inside a cluster Change.
    for change in [
        put("root", AdminRole::Administrator, true),
        AdminChange::RemoveAccount { name: "x".into() },
        AdminChange::SetSettings(d.settings().clone()),
        AdminChange::SetCertificate(Some(cert())),
        AdminChange::SetCertificate(None),
    ] {
        let c = crate::membership::Change::Admin(change);
        let json = serde_json::to_string(&c).unwrap();
        let back: crate::membership::Change = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c, "{json}");
    }
}

#[test]
fn first_admin_from_text() {
    let a = parse_first_admin(&format!(" root:{HASH} "), 5).unwrap();
    assert_eq!(a.name, "root");
    assert_eq!(a.role, AdminRole::Administrator);
    assert_eq!(a.password_hash, HASH);
    assert_eq!(a.changed_unix_ms, 5);
    let e = parse_first_admin("root", 5).unwrap_err().to_string();
    assert!(e.contains("no ':'"), "{e}");
    let e = parse_first_admin(&format!("Root:{HASH}"), 5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"Root\""), "{e}");
    let e = parse_first_admin("root:hunter2", 5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("password hash of account \"root\""), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
