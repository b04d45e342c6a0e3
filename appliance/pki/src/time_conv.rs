//! Conversions between `SystemTime` (the API) and the `time` and X.509 forms
//! rcgen and x509-parser use, all checked: a clock far off must be an error,
//! not a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::PkiError;

/// `t` as an `OffsetDateTime`, for rcgen.
pub(crate) fn to_offset(t: SystemTime, what: &str) -> Result<OffsetDateTime, PkiError> {
    let out_of_range = || PkiError::TimeOutOfRange {
        what: what.to_string(),
    };
    let (secs, after) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), true),
        Err(e) => (e.duration().as_secs(), false),
    };
    let secs = i64::try_from(secs).map_err(|_| out_of_range())?;
    // Whole seconds: X.509 times have no fractions.
    OffsetDateTime::from_unix_timestamp(if after { secs } else { -secs })
        .map_err(|_| out_of_range())
}

/// A Unix timestamp (seconds, as X.509 times come out of x509-parser) as a
/// `SystemTime`.
pub(crate) fn from_timestamp(ts: i64) -> Option<SystemTime> {
    if ts >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(ts.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(ts.unsigned_abs()))
    }
}

/// `t + d`, or an error naming `what`.
pub(crate) fn add(t: SystemTime, d: Duration, what: &str) -> Result<SystemTime, PkiError> {
    t.checked_add(d).ok_or_else(|| PkiError::TimeOutOfRange {
        what: what.to_string(),
    })
}

/// `t - d`, or an error naming `what`.
pub(crate) fn sub(t: SystemTime, d: Duration, what: &str) -> Result<SystemTime, PkiError> {
    t.checked_sub(d).ok_or_else(|| PkiError::TimeOutOfRange {
        what: what.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds_both_sides_of_the_epoch() {
        for ts in [0i64, 1_700_000_000, -86_400] {
            let t = from_timestamp(ts).unwrap();
            assert_eq!(to_offset(t, "t").unwrap().unix_timestamp(), ts);
        }
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(to_offset(t, "t").unwrap().unix_timestamp(), 1);
    }

    #[test]
    fn far_times_are_errors_naming_them() {
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let e = to_offset(far, "the far future").unwrap_err();
        assert!(e.to_string().contains("the far future"), "{e}");
    }
}
