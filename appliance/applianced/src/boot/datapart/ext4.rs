//! The ext4 superblock, as far as the boot needs it: whether the filesystem
//! was cleanly unmounted, and its size. Pure parsers and their reads.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Byte offset of the ext2/3/4 superblock.
pub(super) const SB_OFFSET: u64 = 1024;
/// Bytes of the superblock read (the fields used end well before).
pub(super) const SB_LEN: usize = 1024;
pub(super) const EXT4_MAGIC: u16 = 0xEF53;
/// `s_state`: cleanly unmounted.
pub(super) const STATE_VALID_FS: u16 = 0x0001;
/// `s_state`: errors detected.
pub(super) const STATE_ERROR_FS: u16 = 0x0002;
/// `s_feature_incompat`: the journal needs replaying.
pub(super) const INCOMPAT_RECOVER: u32 = 0x0004;
/// `s_feature_incompat`: block numbers have 64 bits (`s_blocks_count_hi`).
pub(super) const INCOMPAT_64BIT: u32 = 0x0080;

/// What an ext4 superblock says about the last unmount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4State {
    /// `s_state` has VALID_FS and the journal needs no recovery.
    pub clean: bool,
    /// `s_state` has ERROR_FS.
    pub errors: bool,
    /// The journal needs recovery (`needs_recovery`).
    pub needs_recovery: bool,
    /// Volume label.
    pub label: String,
}

pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads an ext2/3/4 superblock (the [`SB_LEN`] bytes at offset 1024); `None`
/// when it has no ext magic.
pub fn parse_superblock(sb: &[u8]) -> Option<Ext4State> {
    if sb.len() < 0x88 || le16(sb, 0x38) != EXT4_MAGIC {
        return None;
    }
    let state = le16(sb, 0x3A);
    let incompat = le32(sb, 0x60);
    let label_raw = &sb[0x78..0x88];
    let end = label_raw.iter().position(|&b| b == 0).unwrap_or(16);
    let needs_recovery = incompat & INCOMPAT_RECOVER != 0;
    Some(Ext4State {
        clean: state & STATE_VALID_FS != 0 && !needs_recovery,
        errors: state & STATE_ERROR_FS != 0,
        needs_recovery,
        label: String::from_utf8_lossy(&label_raw[..end]).into_owned(),
    })
}

/// Reads the superblock of the filesystem on `dev` (a device or an image file).
pub fn read_superblock(dev: &Path) -> io::Result<Option<Ext4State>> {
    let mut f = std::fs::File::open(dev)?;
    f.seek(SeekFrom::Start(SB_OFFSET))?;
    let mut buf = vec![0u8; SB_LEN];
    match f.read_exact(&mut buf) {
        Ok(()) => Ok(parse_superblock(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The size in bytes of the ext2/3/4 filesystem whose superblock is `sb`
/// (`s_blocks_count` × block size); `None` without the ext magic.
pub fn parse_fs_bytes(sb: &[u8]) -> Option<u64> {
    if sb.len() < 0x154 || le16(sb, 0x38) != EXT4_MAGIC {
        return None;
    }
    // s_log_block_size: 1 KiB to 64 KiB blocks.
    let log = le32(sb, 0x18);
    if log > 6 {
        return None;
    }
    let mut blocks = u64::from(le32(sb, 0x04));
    if le32(sb, 0x60) & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(sb, 0x150)) << 32;
    }
    Some(blocks * (1024 << log))
}

/// [`parse_fs_bytes`] of the filesystem on `dev`. Read through the device's
/// page cache, which holds the mounted filesystem's superblock, so it is
/// current after an online resize.
pub fn read_fs_bytes(dev: &Path) -> io::Result<Option<u64>> {
    let mut f = File::open(dev)?;
    f.seek(SeekFrom::Start(SB_OFFSET))?;
    let mut buf = vec![0u8; SB_LEN];
    match f.read_exact(&mut buf) {
        Ok(()) => Ok(parse_fs_bytes(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
