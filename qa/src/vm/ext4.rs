//! qa's own reader of an ext4 superblock: its label and whether the
//! filesystem was unmounted cleanly, read from a disk image after a VM
//! powered off (what applianced's shutdown left behind).

use std::path::Path;

use anyhow::Context;

/// The fields of an ext4 superblock that tell whether it was unmounted
/// cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Super {
    /// `s_state`: bit 0 (1) cleanly unmounted, bit 1 (2) errors detected.
    pub state: u16,
    /// `s_feature_incompat`; 0x4 (`needs_recovery`) is set while the journal
    /// holds transactions not yet written back (mounted, or not unmounted).
    pub feature_incompat: u32,
    /// `s_volume_name`.
    pub label: String,
}

/// `needs_recovery` in `s_feature_incompat`.
pub const EXT4_INCOMPAT_RECOVER: u32 = 0x4;

impl Ext4Super {
    /// Reads the primary superblock of the ext4 filesystem at byte `offset`
    /// of `image`.
    pub fn read(image: &Path, offset: u64) -> anyhow::Result<Self> {
        use std::os::unix::fs::FileExt;
        let f =
            std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
        let mut sb = [0u8; 1024];
        f.read_exact_at(&mut sb, offset + 1024).with_context(|| {
            format!("reading the superblock at {offset} in {}", image.display())
        })?;
        let magic = u16::from_le_bytes([sb[0x38], sb[0x39]]);
        anyhow::ensure!(
            magic == 0xEF53,
            "no ext4 superblock at byte {offset} of {} (magic {magic:#x})",
            image.display()
        );
        let label: Vec<u8> = sb[0x78..0x88]
            .iter()
            .copied()
            .take_while(|b| *b != 0)
            .collect();
        Ok(Self {
            state: u16::from_le_bytes([sb[0x3A], sb[0x3B]]),
            feature_incompat: u32::from_le_bytes([sb[0x60], sb[0x61], sb[0x62], sb[0x63]]),
            label: String::from_utf8_lossy(&label).into_owned(),
        })
    }

    /// Cleanly unmounted, no errors recorded and nothing left to replay.
    pub fn clean(&self) -> bool {
        self.state & 1 != 0
            && self.state & 2 == 0
            && self.feature_incompat & EXT4_INCOMPAT_RECOVER == 0
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn reads_a_fresh_ext4_superblock_at_an_offset() {
        if Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("skipped: mke2fs is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("fs.img");
        crate::netns::run(
            Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-L", "data"])
                .arg(&fs)
                .arg("8M"),
        )
        .unwrap();
        // Behind 1 MiB of something else, like a partition in a disk.
        let disk = dir.path().join("disk.img");
        let mut bytes = vec![0xAAu8; 1 << 20];
        bytes.extend(std::fs::read(&fs).unwrap());
        std::fs::write(&disk, &bytes).unwrap();
        let sb = Ext4Super::read(&disk, 1 << 20).unwrap();
        assert_eq!(sb.label, "data");
        assert!(sb.clean(), "{sb:?}");
        // A filesystem mounted and not unmounted: journal to replay.
        let at = (1 << 20) + 1024 + 0x60;
        bytes[at] |= EXT4_INCOMPAT_RECOVER as u8;
        std::fs::write(&disk, &bytes).unwrap();
        assert!(!Ext4Super::read(&disk, 1 << 20).unwrap().clean());
        assert!(Ext4Super::read(&disk, 0).is_err());
    }
}
