//! RFC 1123 name checks, shared by the hostname, DNS search domains and NTP
//! server names.
//!
//! Each check returns the reason a name is refused ([`NameError`]), worded
//! for the administrator as the end of a sentence about the name ("it ...");
//! the caller adds the field path and the value.

/// Longest hostname accepted: Linux `HOST_NAME_MAX` is 64 and we keep one
/// byte of margin so the name fits every tool that counts a terminator.
pub const HOSTNAME_MAX_LEN: usize = 63;

/// Longest domain name in text form (RFC 1035: 255 octets on the wire).
pub const DOMAIN_MAX_LEN: usize = 253;

/// Longest label between dots (RFC 1035).
pub const LABEL_MAX_LEN: usize = 63;

/// Why a name is refused. The messages continue a sentence about the name
/// ("the hostname ... is empty; ..."), so they do not repeat it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// No characters at all.
    #[error("is empty; write {what} such as \"node-a\" or \"corp.example\"")]
    Empty {
        /// "a host name" or "a domain name".
        what: &'static str,
    },
    /// Longer than the kind of name allows.
    #[error("is {len} characters long; {what} may have at most {max_len}, shorten it")]
    TooLong {
        /// "a host name" or "a domain name".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max_len: usize,
    },
    /// A character outside letters, digits, '-' and '.'.
    #[error(
        "contains {c:?} at byte {pos}; use only letters a-z, digits 0-9, '-', and '.' between labels"
    )]
    BadChar {
        /// The character.
        c: char,
        /// Its byte offset.
        pos: usize,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("has an empty label (a leading, trailing or doubled '.'); remove the extra dot")]
    EmptyLabel,
    /// A label longer than [`LABEL_MAX_LEN`].
    #[error(
        "has a label of {len} characters; each label between dots may have at most {LABEL_MAX_LEN}"
    )]
    LongLabel {
        /// The label's length.
        len: usize,
    },
    /// A label that starts or ends with '-'.
    #[error(
        "has the label {label:?}, which starts or ends with '-'; \
         labels must start and end with a letter or digit"
    )]
    HyphenEdge {
        /// The label.
        label: String,
    },
    /// The last label is all digits, so the name reads as an IP address.
    #[error(
        "ends in the all-digit label {label:?}, which reads as an IP address; \
         add a letter to that label (RFC 1123 section 2.1)"
    )]
    NumericTld {
        /// The last label.
        label: String,
    },
}

/// Checks a node hostname: an RFC 1123 name of at most [`HOSTNAME_MAX_LEN`] characters.
pub fn check_hostname(name: &str) -> Result<(), NameError> {
    check_name(name, HOSTNAME_MAX_LEN, "a host name")
}

/// Checks a domain name such as a search domain or an NTP server name:
/// an RFC 1123 name of at most [`DOMAIN_MAX_LEN`] characters.
pub fn check_domain_name(name: &str) -> Result<(), NameError> {
    check_name(name, DOMAIN_MAX_LEN, "a domain name")
}

fn check_name(name: &str, max_len: usize, what: &'static str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > max_len {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
            max_len,
        });
    }
    if let Some((pos, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(NameError::BadChar { c, pos });
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        check_label(label)?;
    }
    // Non-empty name: split yields at least one label.
    let last = labels.last().copied().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericTld {
            label: last.to_string(),
        });
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel);
    }
    if label.len() > LABEL_MAX_LEN {
        return Err(NameError::LongLabel { len: label.len() });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::HyphenEdge {
            label: label.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "node-a",
            "Node-A",
            "1node",
            "n1.corp.example",
            "x.y2k",
            &"a".repeat(63),
        ] {
            assert_eq!(check_hostname(ok), Ok(()), "{ok}");
        }
    }

    fn refused(name: &str) -> String {
        check_hostname(name).expect_err(name).to_string()
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        assert!(refused("").contains("is empty"));
        assert!(refused(&"a".repeat(64)).contains("at most 63"));
        assert!(refused("node_a").contains("'_'"));
        assert!(refused("node a").contains("' '"));
        assert!(refused("nöde").contains("'ö'"));
        assert!(refused("-node").contains("starts or ends with '-'"));
        assert!(refused("node-").contains("starts or ends with '-'"));
        assert!(refused("a..b").contains("empty label"));
        assert!(refused(".a").contains("empty label"));
        assert!(refused("a.").contains("empty label"));
        assert!(refused("1234").contains("all-digit"));
        assert!(refused("10.0.0.1").contains("all-digit"));
    }

    #[test]
    fn domain_names_may_be_longer_but_labels_may_not() {
        let long = ["a".repeat(60), "b".repeat(60), "example".into()].join(".");
        assert_eq!(check_domain_name(&long), Ok(()));
        assert!(check_hostname(&long).is_err());
        let fat_label = format!("{}.example", "a".repeat(64));
        let err = check_domain_name(&fat_label)
            .expect_err("label too long")
            .to_string();
        assert!(err.contains("label of 64 characters"), "{err}");
        let huge = vec!["abc"; 70].join(".");
        assert!(check_domain_name(&huge)
            .expect_err("too long")
            .to_string()
            .contains("at most 253"));
    }
}
