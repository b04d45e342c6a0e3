//! Pure tests: the exact wire bytes, a refusal for every kind of garbage,
//! seeded random garbage and bit flips, and the table's expiry and bounds.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn beacon() -> Beacon {
    Beacon {
        hostname: "appliance-3".into(),
        addresses: vec![IpAddr::from([10, 77, 0, 13]), "fd77::13".parse().unwrap()],
        version: "0.1.0".into(),
        fingerprint: CertFingerprint::from_bytes([0xab; 32]),
        join_port: 7443,
    }
}

fn encoded() -> Vec<u8> {
    beacon().encode().unwrap()
}

#[test]
fn a_beacon_round_trips_through_its_exact_wire_bytes() {
    let bytes = encoded();
    let mut expected = Vec::new();
    expected.extend_from_slice(b"APLB\x01\x00");
    expected.extend_from_slice(&7443u16.to_be_bytes());
    expected.extend_from_slice(&[0xab; 32]);
    expected.push(11);
    expected.extend_from_slice(b"appliance-3");
    expected.push(5);
    expected.extend_from_slice(b"0.1.0");
    expected.push(2);
    expected.extend_from_slice(&[4, 10, 77, 0, 13]);
    expected.push(6);
    expected.extend_from_slice(&"fd77::13".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(bytes, expected);
    assert_eq!(Beacon::decode(&bytes).unwrap(), beacon());
}

#[test]
fn the_largest_beacon_fits_the_limit() {
    let mut b = beacon();
    b.hostname = "a".repeat(63);
    b.version = "1".repeat(MAX_VERSION_LEN);
    b.addresses = (1..=8u16)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, i)))
        .collect();
    let bytes = b.encode().unwrap();
    assert!(bytes.len() <= MAX_BEACON_LEN, "{}", bytes.len());
    assert_eq!(Beacon::decode(&bytes).unwrap(), b);
}

fn refused(bytes: &[u8]) -> BeaconError {
    Beacon::decode(bytes).unwrap_err()
}

#[test]
fn garbage_is_refused_with_the_reason() {
    assert_eq!(refused(b""), BeaconError::BadMagic);
    assert_eq!(refused(b"HTTP/1.1 200 OK"), BeaconError::BadMagic);
    assert_eq!(
        refused(&vec![0; MAX_BEACON_LEN + 1]),
        BeaconError::TooLong {
            len: MAX_BEACON_LEN + 1
        }
    );

    let with = |at: usize, value: u8| {
        let mut b = encoded();
        b[at] = value;
        b
    };
    assert_eq!(
        refused(&with(4, 2)),
        BeaconError::UnsupportedVersion { version: 2 }
    );
    assert_eq!(
        refused(&with(5, 0x80)).to_string(),
        "beacon refused: reserved flags 0x80 are set"
    );
    let mut zero_port = encoded();
    zero_port[6] = 0;
    zero_port[7] = 0;
    assert_eq!(refused(&zero_port), BeaconError::ZeroPort);

    let mut trailing = encoded();
    trailing.push(0);
    assert_eq!(refused(&trailing), BeaconError::TrailingBytes { count: 1 });
}

#[test]
fn a_beacon_cut_anywhere_is_refused_naming_the_field() {
    let bytes = encoded();
    for cut in 4..bytes.len() {
        match refused(&bytes[..cut]) {
            BeaconError::Truncated { len, .. } => assert_eq!(len, cut),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert_eq!(
        refused(&bytes[..20]).to_string(),
        "beacon refused: it ends inside the fingerprint field (20 bytes in all)"
    );
}

#[test]
fn invalid_fields_are_refused() {
    // Offsets in the encoded beacon: hostname at 41, version length at 52.
    let mut bad_host = encoded();
    bad_host[41] = b'_';
    assert!(matches!(
        refused(&bad_host),
        BeaconError::BadHostname { hostname, .. } if hostname == "_ppliance-3"
    ));
    let mut non_utf8 = encoded();
    non_utf8[41] = 0xff;
    assert!(matches!(
        refused(&non_utf8),
        BeaconError::BadHostname { .. }
    ));
    let mut bad_version = encoded();
    bad_version[53] = b' ';
    assert!(matches!(
        refused(&bad_version),
        BeaconError::BadVersion { .. }
    ));
    // Address count at 58, first family at 59.
    let mut no_addr = encoded();
    no_addr[58] = 0;
    no_addr.truncate(59);
    assert_eq!(refused(&no_addr), BeaconError::AddressCount { count: 0 });
    let mut many = encoded();
    many[58] = 9;
    assert_eq!(refused(&many), BeaconError::AddressCount { count: 9 });
    let mut family = encoded();
    family[59] = 5;
    assert_eq!(
        refused(&family),
        BeaconError::BadAddressFamily { family: 5 }
    );
    for unusable in ["0.0.0.0", "127.0.0.1", "224.0.0.1"] {
        let mut b = beacon();
        b.addresses[0] = unusable.parse().unwrap();
        let mut bytes = encoded();
        bytes[60..64].copy_from_slice(&unusable.parse::<Ipv4Addr>().unwrap().octets());
        assert_eq!(
            refused(&bytes),
            BeaconError::UnusableAddress {
                address: b.addresses[0]
            }
        );
        // And it is not sent either.
        assert!(b.encode().is_err());
    }
}

#[test]
fn encoding_refuses_what_decoding_would() {
    let mut b = beacon();
    b.hostname = "x".repeat(64);
    assert!(matches!(b.encode(), Err(BeaconError::BadHostname { .. })));
    let mut b = beacon();
    b.version = String::new();
    assert!(matches!(b.encode(), Err(BeaconError::BadVersion { .. })));
    let mut b = beacon();
    b.addresses.clear();
    assert!(matches!(
        b.encode(),
        Err(BeaconError::AddressCount { count: 0 })
    ));
    let mut b = beacon();
    b.join_port = 0;
    assert_eq!(b.encode(), Err(BeaconError::ZeroPort));
    let mut b = beacon();
    b.addresses = vec!["::".parse().unwrap()];
    assert!(b.encode().is_err());
}

#[test]
fn random_garbage_and_bit_flips_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..20_000 {
        let mut bytes = vec![0u8; rng.gen_range(0..600)];
        rng.fill(&mut bytes[..]);
        if rng.gen_bool(0.5) && bytes.len() >= 6 {
            bytes[..6].copy_from_slice(b"APLB\x01\x00");
        }
        if let Ok(b) = Beacon::decode(&bytes) {
            // Anything accepted is valid and re-encodes to the same bytes.
            assert_eq!(b.encode().unwrap(), bytes);
        }
    }
    let good = encoded();
    for bit in 0..good.len() * 8 {
        let mut b = good.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = Beacon::decode(&b) {
            assert_eq!(decoded.encode().unwrap(), b);
        }
    }
}

fn from(i: u8) -> IpAddr {
    IpAddr::from([10, 77, 0, i])
}

fn beacon_n(i: u8) -> Beacon {
    let mut b = beacon();
    b.hostname = format!("appliance-{i}");
    b.fingerprint = CertFingerprint::from_bytes([i; 32]);
    b.addresses = vec![from(i)];
    b
}

#[test]
fn the_table_lists_fresh_appliances_and_expires_silent_ones() {
    let t0 = Instant::now();
    let mut d = Discovered::default();
    assert_eq!(d.observe(beacon_n(2), from(2), t0), Observation::New);
    assert_eq!(d.observe(beacon_n(1), from(1), t0), Observation::New);
    let s = Duration::from_secs;
    assert_eq!(
        d.observe(beacon_n(2), from(2), t0 + s(5)),
        Observation::Refreshed
    );
    let mut moved = beacon_n(2);
    moved.version = "0.2.0".into();
    assert_eq!(d.observe(moved, from(2), t0 + s(10)), Observation::Changed);

    let names: Vec<_> = d
        .list(t0 + s(10))
        .iter()
        .map(|e| e.beacon.hostname.clone())
        .collect();
    assert_eq!(names, vec!["appliance-1", "appliance-2"]);
    let e = d.get(&beacon_n(2).fingerprint, t0 + s(10)).unwrap();
    assert_eq!((e.first_seen, e.last_seen), (t0, t0 + s(10)));
    assert_eq!(e.beacon.version, "0.2.0");

    // appliance-1 was last heard at t0: gone from the list at the TTL.
    let later = t0 + DEFAULT_TTL;
    assert_eq!(d.list(later).len(), 1);
    assert!(d.get(&beacon_n(1).fingerprint, later).is_none());
    assert_eq!(d.len(), 2);
    let expired = d.expire(later);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].beacon.hostname, "appliance-1");
    assert_eq!(d.len(), 1);
    assert!(d.remove(&beacon_n(2).fingerprint).is_some());
    assert!(d.is_empty());
}

#[test]
fn the_table_is_bounded_and_drops_the_longest_silent_first() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut d = Discovered::new(s(20), 3);
    for i in 1..=3u8 {
        d.observe(beacon_n(i), from(i), t0 + s(u64::from(i)));
    }
    d.observe(beacon_n(4), from(4), t0 + s(5));
    assert_eq!(d.len(), 3);
    assert!(d.get(&beacon_n(1).fingerprint, t0 + s(5)).is_none());
    // Stale entries make room before fresh ones are dropped.
    d.observe(beacon_n(5), from(5), t0 + s(23));
    let left: Vec<_> = d
        .list(t0 + s(23))
        .iter()
        .map(|e| e.beacon.hostname.clone())
        .collect();
    assert_eq!(left, vec!["appliance-4", "appliance-5"]);
    assert_eq!(d.len(), 2);
}
