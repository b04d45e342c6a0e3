//! Pure tests: the code's text form and every rule of the slot, on a
//! seeded RNG and instants offset from one starting point.

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn slot(t0: Instant) -> JoinCodeSlot<StdRng> {
    JoinCodeSlot::new(rng(7), SlotPolicy::default(), t0)
}

/// A code that is certainly not the slot's current one.
fn other_than(code: &JoinCode) -> JoinCode {
    let mut bytes = code.0;
    bytes[0] ^= 0xff;
    JoinCode(bytes)
}

#[test]
fn codes_are_ten_crockford_characters_in_two_groups() {
    let mut r = rng(1);
    for _ in 0..50 {
        let code = JoinCode::generate(&mut r);
        let shown = code.to_string();
        assert_eq!(shown.len(), 11, "{shown}");
        assert_eq!(&shown[5..6], "-");
        assert!(shown
            .chars()
            .filter(|&c| c != '-')
            .all(|c| ALPHABET.contains(c)));
        assert_eq!(JoinCode::parse(&shown).unwrap(), code);
        assert_eq!(code.canonical().len(), CODE_LEN);
    }
    // The same seed gives the same code.
    assert_eq!(
        JoinCode::generate(&mut rng(3)),
        JoinCode::generate(&mut rng(3))
    );
}

#[test]
fn parsing_ignores_case_spaces_dashes_and_common_misreadings() {
    let code = JoinCode::parse("01ABC-DEFG0").unwrap();
    for typed in [
        "01abc-defg0",
        "01ABCDEFG0",
        " 01 ABC DE-FG0 ",
        "oiabc-defgo",
        "OLABC-DEFGO",
        "0-1-A-B-C-D-E-F-G-0",
    ] {
        assert_eq!(JoinCode::parse(typed).unwrap(), code, "{typed}");
    }
    assert_eq!(code.to_string(), "01ABC-DEFG0");
}

#[test]
fn parsing_refuses_non_codes_with_a_reason() {
    assert_eq!(
        JoinCode::parse("01ABC-DEF").unwrap_err(),
        JoinCodeError::WrongLength { count: 8 }
    );
    assert_eq!(
        JoinCode::parse("01ABC-DEFG0X").unwrap_err(),
        JoinCodeError::WrongLength { count: 11 }
    );
    let e = JoinCode::parse("01ABU-DEFG0").unwrap_err();
    assert_eq!(
        e,
        JoinCodeError::InvalidCharacter {
            character: 'U',
            position: 5
        }
    );
    assert!(e.to_string().contains("'U' at position 5"), "{e}");
    // The last character carries 3 bits and two zero bits: T (26) cannot end a code.
    assert_eq!(
        JoinCode::parse("01ABC-DEFGT").unwrap_err(),
        JoinCodeError::NotACode
    );
    assert!(JoinCode::parse("").is_err());
    assert!(JoinCode::parse("ÄÄÄÄÄ-ÄÄÄÄÄ").is_err());
}

#[test]
fn debug_hides_the_code_and_comparison_is_exact() {
    let code = JoinCode::generate(&mut rng(2));
    assert_eq!(format!("{code:?}"), "JoinCode(hidden)");
    assert!(code.ct_eq(&code.clone()));
    assert!(!code.ct_eq(&other_than(&code)));
}

#[test]
fn a_right_code_is_accepted_once() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = s.current(t0).unwrap().0.clone();
    assert_eq!(s.check(&code, t0 + secs(10)), Ok(()));
    assert!(s.is_used());
    assert_eq!(s.check(&code, t0 + secs(20)), Err(Refusal::Used));
    assert!(s.current(t0 + secs(20)).is_none());
}

#[test]
fn a_code_expires_after_15_minutes_and_is_replaced() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let (code, expires) = s.current(t0).map(|(c, e)| (c.clone(), e)).unwrap();
    assert_eq!(expires, t0 + secs(900));
    assert_eq!(s.check(&code, t0 + secs(900)), Err(Refusal::Expired));
    let (new, new_expiry) = s.current(t0 + secs(900)).unwrap();
    assert_ne!(new, &code);
    assert_eq!(new_expiry, t0 + secs(1800));
    // The expired attempt did not count as wrong.
    assert_eq!(s.wrong_attempts(), 0);
    // The displayed code renews itself too.
    let mut s = slot(t0);
    let first = s.current(t0).unwrap().0.clone();
    assert_ne!(s.current(t0 + secs(901)).unwrap().0, &first);
}

#[test]
fn wrong_attempts_are_rate_limited_with_a_doubling_delay() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = s.current(t0).unwrap().0.clone();
    let wrong = other_than(&code);
    let mut t = t0;
    for (n, delay) in [1u64, 2, 4, 8].into_iter().enumerate() {
        assert_eq!(
            s.check(&wrong, t),
            Err(Refusal::WrongCode {
                attempts_left: 4 - n as u32
            })
        );
        // Too early: refused without counting.
        let early = t + Duration::from_millis(delay * 1000 - 1);
        let e = s.check(&code, early).unwrap_err();
        assert_eq!(
            e,
            Refusal::RateLimited {
                retry_after: Duration::from_millis(1)
            }
        );
        assert_eq!(s.wrong_attempts(), n as u32 + 1);
        t += secs(delay);
    }
    assert_eq!(
        Refusal::RateLimited {
            retry_after: Duration::from_millis(1500)
        }
        .to_string(),
        "too soon after a wrong attempt: try again in 2 s"
    );
    // On time, the right code still works.
    assert_eq!(s.check(&code, t), Ok(()));
}

#[test]
fn five_wrong_attempts_replace_the_code_and_the_sixth_fails() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = s.current(t0).unwrap().0.clone();
    let wrong = other_than(&code);
    let mut t = t0;
    for n in 1..=5u32 {
        let r = s.check(&wrong, t);
        if n < 5 {
            assert!(matches!(r, Err(Refusal::WrongCode { .. })), "{r:?}");
        } else {
            assert_eq!(r, Err(Refusal::TooManyAttempts));
        }
        t += secs(60);
    }
    let new = s.current(t).unwrap().0.clone();
    assert_ne!(new, code);
    // The sixth attempt, with the old (formerly right) code, fails.
    assert_eq!(
        s.check(&code, t),
        Err(Refusal::WrongCode { attempts_left: 4 })
    );
    // The delay keeps growing across the replacement (6 wrong in a row: 32 s).
    assert!(matches!(
        s.check(&new, t + secs(31)),
        Err(Refusal::RateLimited { .. })
    ));
    assert_eq!(s.check(&new, t + secs(32)), Ok(()));
}

#[test]
fn abandoned_attempts_count_as_wrong() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let code = s.current(t0).unwrap().0.clone();
    let mut t = t0;
    for _ in 0..5 {
        // Began, never reported back (the peer hung up mid-handshake).
        let _ = s.begin(t).unwrap();
        t += secs(60);
    }
    assert_eq!(s.wrong_attempts(), 5);
    assert_eq!(s.begin(t).unwrap_err(), Refusal::TooManyAttempts);
    assert_ne!(s.current(t).unwrap().0, &code);
}

#[test]
fn an_attempt_that_outlives_its_code_is_refused() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let attempt = s.begin(t0).unwrap();
    s.renew(t0 + secs(1));
    assert_eq!(s.succeed(attempt), Err(Refusal::Replaced));
    let attempt = s.begin(t0 + secs(2)).unwrap();
    s.renew(t0 + secs(3));
    assert_eq!(s.fail(attempt, t0 + secs(3)), Refusal::Replaced);
}

#[test]
fn a_success_refunds_the_attempt_it_began_with() {
    let t0 = Instant::now();
    let mut s = slot(t0);
    let a = s.begin(t0).unwrap();
    assert_eq!(s.wrong_attempts(), 1);
    s.succeed(a).unwrap();
    assert_eq!(s.wrong_attempts(), 0);
}

#[test]
fn the_delay_doubles_up_to_its_cap() {
    let p = SlotPolicy::default();
    let got: Vec<u64> = (0..10).map(|n| p.delay_after(n).as_secs()).collect();
    assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(p.delay_after(u32::MAX), secs(60));
}

#[test]
fn refusals_serialize_with_their_reason() {
    let r = Refusal::WrongCode { attempts_left: 3 };
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"reason":"wrong_code","attempts_left":3}"#
    );
    let r = Refusal::RateLimited {
        retry_after: secs(2),
    };
    let back: Refusal = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    for r in [
        Refusal::Expired,
        Refusal::Used,
        Refusal::WrongCode { attempts_left: 1 },
        Refusal::TooManyAttempts,
        Refusal::Replaced,
        Refusal::RateLimited {
            retry_after: secs(1),
        },
    ] {
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["reason"], r.kind());
        assert!(!r.to_string().is_empty());
    }
}
