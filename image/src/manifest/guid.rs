//! GPT's GUIDs: the text form the declaration uses, and the mixed-endian
//! bytes on disk.

/// A GUID that is not `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` in hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a GUID (XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)")]
pub struct GuidError {
    /// The text given.
    pub input: String,
}

/// Parses a GUID in its textual form (`8-4-4-4-12` hex digits) into the
/// 16 bytes of GPT's mixed-endian encoding.
pub fn parse_guid(s: &str) -> std::result::Result<[u8; 16], GuidError> {
    let err = || GuidError {
        input: s.to_owned(),
    };
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] || !s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()) {
        return Err(err());
    }
    let hex: String = groups.concat();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| err())?;
    }
    // The first three groups are little-endian on disk.
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

/// Formats GPT's mixed-endian GUID bytes as upper-case text.
pub fn format_guid(b: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_round_trips_in_gpt_byte_order() {
        let g = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
        let b = parse_guid(g).unwrap();
        assert_eq!(b[0], 0xE3);
        assert_eq!(b[8], 0x96);
        assert_eq!(format_guid(&b), g);
        assert!(parse_guid("4F68BCE3E8CD4DB196E7FBCAF984B709").is_err());
    }
}
