//! Pure tests of the handshake: success, and every attack in the issue
//! (wrong code, man in the middle relaying TLS, replayed transcripts, the
//! sixth attempt, expired code, version mismatch), with seeded RNGs.

use std::time::Duration;

use super::*;
use crate::identity::CertFingerprint;
use crate::joincode::SlotPolicy;
use crate::joincode::{JoinCode, JoinCodeSlot};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;
use uuid::Uuid;

fn fp(n: u8) -> CertFingerprint {
    CertFingerprint::of_certificate_der(&[n; 3])
}

fn admin_fp() -> CertFingerprint {
    fp(1)
}

fn joiner_fp() -> CertFingerprint {
    fp(2)
}

/// The certificate a relaying man in the middle shows.
fn mallory_fp() -> CertFingerprint {
    fp(66)
}

fn cluster() -> Uuid {
    Uuid::from_u128(0xc1)
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn slot(t0: Instant) -> JoinCodeSlot<StdRng> {
    JoinCodeSlot::new(rng(1000), SlotPolicy::default(), t0)
}

fn code_of(slot: &mut JoinCodeSlot<StdRng>, now: Instant) -> JoinCode {
    slot.current(now).unwrap().0.clone()
}

fn wrong_code(right: &JoinCode) -> JoinCode {
    JoinCode::parse(if right.canonical() == "0000000000" {
        "1111111110"
    } else {
        "0000000000"
    })
    .unwrap()
}

/// What each side saw in one run.
#[derive(Debug)]
struct Run {
    hello: Vec<u8>,
    reply: Vec<u8>,
    confirm_admin: Option<Vec<u8>>,
    confirm_joiner: Option<Vec<u8>>,
    admin: Result<SecureChannel, PakeError>,
    joiner: Result<SecureChannel, PakeError>,
}

/// One handshake where bytes are relayed unchanged. `admin_sees` is the
/// joiner certificate the admin's TLS connection shows, `joiner_sees` the
/// admin certificate the joiner's shows: both honest unless a relay
/// terminates TLS.
fn run(
    typed: &JoinCode,
    slot: &mut JoinCodeSlot<StdRng>,
    admin_sees: CertFingerprint,
    joiner_sees: CertFingerprint,
    now: Instant,
    seed: u64,
) -> Run {
    let mut admin_rng = rng(seed);
    let mut joiner_rng = rng(seed + 1);
    let (admin, hello) =
        AdminHandshake::start(typed, cluster(), admin_fp(), admin_sees, &mut admin_rng);
    let (confirming, reply) = match JoinerHandshake::receive_hello(
        &hello,
        slot,
        joiner_fp(),
        joiner_sees,
        now,
        &mut joiner_rng,
    ) {
        Ok(x) => x,
        Err(f) => {
            let admin = admin.receive_reply(&f.reply).map(|_| unreachable!());
            return Run {
                hello,
                reply: f.reply,
                confirm_admin: None,
                confirm_joiner: None,
                admin,
                joiner: Err(f.error),
            };
        }
    };
    let (admin, confirm_admin) = admin.receive_reply(&reply).unwrap();
    let (joiner, answer) = match confirming.receive_confirm(&confirm_admin, slot, now) {
        Ok((ch, msg)) => (Ok(ch), msg),
        Err(f) => (Err(f.error), f.reply),
    };
    let admin = admin.receive_confirm(&answer);
    Run {
        hello,
        reply,
        confirm_admin: Some(confirm_admin),
        confirm_joiner: Some(answer),
        admin,
        joiner,
    }
}

#[test]
fn the_right_code_joins_and_the_payload_travels_sealed() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let r = run(&code, &mut s, joiner_fp(), admin_fp(), t0, 1);
    let mut admin = r.admin.unwrap();
    let mut joiner = r.joiner.unwrap();
    assert!(s.is_used());
    assert_eq!(admin.session_id(), joiner.session_id());
    assert_eq!(joiner.cluster_id(), cluster());
    assert_eq!(admin.peer_fingerprint(), joiner_fp());
    assert_eq!(joiner.peer_fingerprint(), admin_fp());

    let config = br#"{"cluster_id":"...","generation":4}"#;
    let sealed = admin.seal(config).unwrap();
    assert!(!sealed.windows(10).any(|w| w == b"generation"));
    assert_eq!(joiner.open(&sealed).unwrap(), config);
    let csr = b"certificate request";
    assert_eq!(admin.open(&joiner.seal(csr).unwrap()).unwrap(), csr);
    // The code never appears on the wire.
    let typed = code.canonical();
    for m in [&r.hello, &r.reply] {
        assert!(!String::from_utf8_lossy(m).contains(&typed));
    }
}

#[test]
fn a_wrong_code_fails_and_counts_as_a_wrong_attempt() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let right = code_of(&mut s, t0);
    let r = run(&wrong_code(&right), &mut s, joiner_fp(), admin_fp(), t0, 1);
    let refusal = Refusal::WrongCode { attempts_left: 4 };
    assert_eq!(r.joiner.unwrap_err(), PakeError::Code(refusal.clone()));
    let e = r.admin.unwrap_err();
    assert_eq!(e, PakeError::Refused(HandshakeRefusal::Code(refusal)));
    assert!(
        e.to_string()
            .starts_with("the appliance refused the join: the join code did not match"),
        "{e}"
    );
    assert_eq!(s.wrong_attempts(), 1);
    assert!(!s.is_used());
}

#[test]
fn a_relay_that_terminates_tls_on_one_side_fails_confirmation() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    // The admin's TLS connection ends at Mallory, who shows her certificate;
    // she relays every handshake byte unchanged to the real appliance.
    let r = run(&code, &mut s, mallory_fp(), admin_fp(), t0, 1);
    assert_eq!(
        r.joiner.unwrap_err(),
        PakeError::Code(Refusal::WrongCode { attempts_left: 4 })
    );
    assert!(matches!(r.admin.unwrap_err(), PakeError::Refused(_)));
    assert_eq!(s.wrong_attempts(), 1);
    assert!(!s.is_used());

    // Mallory drops the refusal and forwards something else: the admin
    // still cannot complete, since only the appliance's MAC verifies.
    let (admin, hello) =
        AdminHandshake::start(&code, cluster(), admin_fp(), mallory_fp(), &mut rng(5));
    let mut s2 = slot(t0);
    let (_abandoned, reply) =
        JoinerHandshake::receive_hello(&hello, &mut s2, joiner_fp(), admin_fp(), t0, &mut rng(6))
            .unwrap();
    let (admin, _) = admin.receive_reply(&reply).unwrap();
    let forged = Message::Confirm { mac: vec![0; 32] }.encode();
    assert_eq!(
        admin.receive_confirm(&forged).unwrap_err(),
        PakeError::ConfirmationFailed
    );

    // Without the relay, the same code works once the delay has passed.
    let r = run(
        &code,
        &mut s,
        joiner_fp(),
        admin_fp(),
        t0 + Duration::from_secs(1),
        2,
    );
    assert!(r.admin.is_ok() && r.joiner.is_ok());
}

#[test]
fn a_relay_on_the_appliance_side_or_both_sides_fails_too() {
    let t0 = Instant::now();
    for (admin_sees, joiner_sees) in [
        (joiner_fp(), mallory_fp()),
        (mallory_fp(), fp(67)),
        // Mallory even swaps the two real certificates.
        (admin_fp(), joiner_fp()),
    ] {
        let mut s = slot(t0);
        let code = code_of(&mut s, t0);
        let r = run(&code, &mut s, admin_sees, joiner_sees, t0, 1);
        assert!(r.joiner.is_err() && r.admin.is_err());
        assert_eq!(s.wrong_attempts(), 1);
    }
}

#[test]
fn a_relay_cannot_alter_the_cluster_id() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let (admin, hello) =
        AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    let mut v: serde_json::Value = serde_json::from_slice(&hello).unwrap();
    v["hello"]["cluster_id"] = serde_json::json!(Uuid::from_u128(0xbad).to_string());
    let altered = serde_json::to_vec(&v).unwrap();
    let (confirming, reply) =
        JoinerHandshake::receive_hello(&altered, &mut s, joiner_fp(), admin_fp(), t0, &mut rng(2))
            .unwrap();
    assert_eq!(confirming.cluster_id(), Uuid::from_u128(0xbad));
    let (_admin, confirm) = admin.receive_reply(&reply).unwrap();
    let f = confirming
        .receive_confirm(&confirm, &mut s, t0)
        .unwrap_err();
    assert!(matches!(
        f.error,
        PakeError::Code(Refusal::WrongCode { .. })
    ));
}

#[test]
fn a_replayed_transcript_fails() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let first = run(&code, &mut s, joiner_fp(), admin_fp(), t0, 1);
    assert!(first.joiner.is_ok());
    let confirm_admin = first.confirm_admin.unwrap();

    // Replayed to the same appliance: the code is used up.
    let f = JoinerHandshake::receive_hello(
        &first.hello,
        &mut s,
        joiner_fp(),
        admin_fp(),
        t0,
        &mut rng(9),
    )
    .unwrap_err();
    assert_eq!(f.error, PakeError::Code(Refusal::Used));

    // Replayed to an appliance showing the same code (a slot seeded alike):
    // its fresh SPAKE2 share makes the recorded confirmation worthless.
    let mut twin = slot(t0);
    assert_eq!(code_of(&mut twin, t0), code);
    let (confirming, reply) = JoinerHandshake::receive_hello(
        &first.hello,
        &mut twin,
        joiner_fp(),
        admin_fp(),
        t0,
        &mut rng(9),
    )
    .unwrap();
    assert_ne!(reply, first.reply);
    let f = confirming
        .receive_confirm(&confirm_admin, &mut twin, t0)
        .unwrap_err();
    assert_eq!(
        f.error,
        PakeError::Code(Refusal::WrongCode { attempts_left: 4 })
    );
    assert!(!twin.is_used());

    // Replayed to the admin side: the appliance's recorded answers fail too.
    let (admin, _) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(11));
    let (admin, _) = admin.receive_reply(&first.reply).unwrap();
    assert_eq!(
        admin
            .receive_confirm(&first.confirm_joiner.unwrap())
            .unwrap_err(),
        PakeError::ConfirmationFailed
    );
}

#[test]
fn the_sixth_attempt_after_five_wrong_ones_fails() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let right = code_of(&mut s, t0);
    let wrong = wrong_code(&right);
    let mut t = t0;
    for n in 1..=5u32 {
        let r = run(
            &wrong,
            &mut s,
            joiner_fp(),
            admin_fp(),
            t,
            u64::from(n) * 10,
        );
        let expected = if n < 5 {
            Refusal::WrongCode {
                attempts_left: 5 - n,
            }
        } else {
            Refusal::TooManyAttempts
        };
        assert_eq!(r.joiner.unwrap_err(), PakeError::Code(expected));
        t += Duration::from_secs(60);
    }
    // The sixth attempt, with the code that was right, fails: it was replaced.
    let r = run(&right, &mut s, joiner_fp(), admin_fp(), t, 60);
    assert_eq!(
        r.joiner.unwrap_err(),
        PakeError::Code(Refusal::WrongCode { attempts_left: 4 })
    );
    assert!(r.admin.is_err());
    // The new code works (after the delay six wrong attempts impose).
    let new = code_of(&mut s, t);
    assert_ne!(new, right);
    let r = run(
        &new,
        &mut s,
        joiner_fp(),
        admin_fp(),
        t + Duration::from_secs(32),
        70,
    );
    assert!(r.joiner.is_ok() && r.admin.is_ok());
}

#[test]
fn an_expired_code_is_refused_before_any_exchange_and_not_counted() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let late = t0 + Duration::from_secs(15 * 60 + 1);
    let r = run(&code, &mut s, joiner_fp(), admin_fp(), late, 1);
    assert_eq!(r.joiner.unwrap_err(), PakeError::Code(Refusal::Expired));
    let e = r.admin.unwrap_err();
    assert_eq!(
        e,
        PakeError::Refused(HandshakeRefusal::Code(Refusal::Expired))
    );
    assert!(e.to_string().contains("has expired"), "{e}");
    assert!(r.confirm_admin.is_none());
    assert_eq!(s.wrong_attempts(), 0);
}

#[test]
fn attempts_too_soon_after_a_wrong_one_are_refused_with_a_retry_time() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let right = code_of(&mut s, t0);
    let _ = run(&wrong_code(&right), &mut s, joiner_fp(), admin_fp(), t0, 1);
    let r = run(
        &right,
        &mut s,
        joiner_fp(),
        admin_fp(),
        t0 + Duration::from_millis(400),
        2,
    );
    assert_eq!(
        r.admin.unwrap_err(),
        PakeError::Refused(HandshakeRefusal::Code(Refusal::RateLimited {
            retry_after: Duration::from_millis(600)
        }))
    );
    assert_eq!(s.wrong_attempts(), 1);
}

#[test]
fn another_protocol_version_or_garbage_is_refused_without_counting() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let (_, hello) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    let mut v: serde_json::Value = serde_json::from_slice(&hello).unwrap();
    v["hello"]["version"] = serde_json::json!(2);
    let f = JoinerHandshake::receive_hello(
        &serde_json::to_vec(&v).unwrap(),
        &mut s,
        joiner_fp(),
        admin_fp(),
        t0,
        &mut rng(2),
    )
    .unwrap_err();
    assert_eq!(
        f.error,
        PakeError::UnsupportedVersion {
            offered: 2,
            supported: 1
        }
    );
    // The admin side reads the refusal.
    let (admin, _) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    let e = admin.receive_reply(&f.reply).unwrap_err();
    assert!(
        e.to_string()
            .contains("speaks join protocol version 1, not 2"),
        "{e}"
    );

    let too_big = vec![b' '; MAX_MESSAGE_LEN + 1];
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe".to_vec(),
        b"{}".to_vec(),
        br#"{"hello":{"version":1}}"#.to_vec(),
        br#"{"confirm":{"mac":"00"}}"#.to_vec(),
        too_big,
    ];
    // A hello with a short, a wrong-side and a non-hex SPAKE2 message, and an unknown field.
    for spake in [
        serde_json::json!("41"),
        serde_json::json!(format!("42{}", "00".repeat(32))),
        serde_json::json!("zz"),
    ] {
        let mut v: serde_json::Value = serde_json::from_slice(&hello).unwrap();
        v["hello"]["spake"] = spake;
        cases.push(serde_json::to_vec(&v).unwrap());
    }
    let mut v: serde_json::Value = serde_json::from_slice(&hello).unwrap();
    v["hello"]["extra"] = serde_json::json!(1);
    cases.push(serde_json::to_vec(&v).unwrap());
    for bad in cases {
        let f =
            JoinerHandshake::receive_hello(&bad, &mut s, joiner_fp(), admin_fp(), t0, &mut rng(3))
                .unwrap_err();
        assert!(
            matches!(
                f.error,
                PakeError::Malformed { .. }
                    | PakeError::TooLarge { .. }
                    | PakeError::Unexpected { .. }
            ),
            "{:?}",
            f.error
        );
        let reply: Message = serde_json::from_slice(&f.reply).unwrap();
        assert!(matches!(
            reply,
            Message::Refused(HandshakeRefusal::Malformed { .. })
        ));
    }
    assert_eq!(s.wrong_attempts(), 0);
}

#[test]
fn the_admin_side_refuses_garbage_and_out_of_turn_messages() {
    let code = JoinCode::parse("01ABC-DEFG0").unwrap();
    let start = || AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    let (admin, hello) = start();
    assert_eq!(
        admin.receive_reply(&hello).unwrap_err(),
        PakeError::Unexpected {
            expected: "reply",
            got: "hello"
        }
    );
    let (admin, _) = start();
    assert!(matches!(
        admin.receive_reply(b"nonsense").unwrap_err(),
        PakeError::Malformed { len: 8, .. }
    ));
    let (admin, _) = start();
    let bad_side = Message::Reply {
        spake: [vec![b'A'], vec![0; 32]].concat(),
    }
    .encode();
    assert!(matches!(
        admin.receive_reply(&bad_side).unwrap_err(),
        PakeError::Malformed { .. }
    ));
}

#[test]
fn a_handshake_abandoned_halfway_counts_as_a_wrong_attempt() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let (_, hello) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    let (confirming, _) =
        JoinerHandshake::receive_hello(&hello, &mut s, joiner_fp(), admin_fp(), t0, &mut rng(2))
            .unwrap();
    assert_eq!(s.wrong_attempts(), 1);
    assert_eq!(
        confirming.abandon(&mut s, t0),
        Refusal::WrongCode { attempts_left: 4 }
    );
    // Merely dropping the half-done handshake counts the same.
    let (_, hello) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(3));
    let later = t0 + Duration::from_secs(1);
    let confirming =
        JoinerHandshake::receive_hello(&hello, &mut s, joiner_fp(), admin_fp(), later, &mut rng(4));
    assert!(confirming.is_ok());
    let _ = confirming;
    assert_eq!(s.wrong_attempts(), 2);
}

#[test]
fn sealed_payloads_open_once_in_order_and_only_for_the_peer() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = code_of(&mut s, t0);
    let r = run(&code, &mut s, joiner_fp(), admin_fp(), t0, 1);
    let (mut admin, mut joiner) = (r.admin.unwrap(), r.joiner.unwrap());

    let one = admin.seal(b"one").unwrap();
    let two = admin.seal(b"two").unwrap();
    // Reordered: the second does not open first.
    assert_eq!(joiner.open(&two).unwrap_err(), PakeError::OpenFailed);
    // Altered: one flipped bit is refused.
    let mut altered = one.clone();
    altered[0] ^= 1;
    assert_eq!(joiner.open(&altered).unwrap_err(), PakeError::OpenFailed);
    // Reflected back to its sender: refused (one key per direction).
    assert_eq!(admin.open(&one).unwrap_err(), PakeError::OpenFailed);
    assert_eq!(joiner.open(&one).unwrap(), b"one");
    // Replayed: refused.
    assert_eq!(joiner.open(&one).unwrap_err(), PakeError::OpenFailed);
    assert_eq!(joiner.open(&two).unwrap(), b"two");

    // A channel of another run cannot open it.
    let mut s2 = slot(t0);
    let r2 = run(
        &code_of(&mut s2, t0),
        &mut s2,
        joiner_fp(),
        admin_fp(),
        t0,
        50,
    );
    let mut other = r2.joiner.unwrap();
    let three = admin.seal(b"three").unwrap();
    assert_eq!(other.open(&three).unwrap_err(), PakeError::OpenFailed);

    assert!(matches!(
        joiner.open(&vec![0; MAX_SEALED_LEN + 1]).unwrap_err(),
        PakeError::TooLarge { .. }
    ));
    assert!(matches!(
        admin.seal(&vec![0; MAX_SEALED_LEN]).unwrap_err(),
        PakeError::TooLarge { .. }
    ));
}

#[test]
fn messages_are_bounded_json() {
    let code = JoinCode::parse("01ABC-DEFG0").unwrap();
    let (_, hello) = AdminHandshake::start(&code, cluster(), admin_fp(), joiner_fp(), &mut rng(1));
    assert!(hello.len() < 300, "{}", hello.len());
    let v: serde_json::Value = serde_json::from_slice(&hello).unwrap();
    assert_eq!(v["hello"]["version"], 1);
    assert_eq!(v["hello"]["spake"].as_str().unwrap().len(), 66);
}
