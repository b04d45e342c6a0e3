//! The GUID partition table of the appliance's disk, read and grown in place:
//! when the administrator enlarges the virtual disk, the last partition (the
//! data partition) is extended to the new end and the backup table moved
//! there. Pure: the table is read from anything seekable (a device, a file,
//! a byte buffer), the growth is planned as a list of writes, and
//! [`apply`] performs them on a file or device in the order that keeps a
//! valid table on the disk at every step.
//!
//! One file of about 720 lines (its tests are in `tests.rs`), kept whole on
//! purpose: it is one on-disk format, and the reader, the checks and the
//! growth plan share its byte layout (the `H_*`/`E_*` offsets, the CRCs,
//! the little-endian helpers) and the invariants between the primary and
//! backup tables; split apart, each half would need the other's internals.
//! qa keeps its own, independent GPT reader to check what this one wrote.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// One mebibyte, for sizes on the console.
pub const MIB: u64 = 1 << 20;
/// Where the primary header lives.
pub const PRIMARY_LBA: u64 = 1;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0, the only one UEFI has defined.
const REVISION: u32 = 0x0001_0000;
/// The header's size up to the entries' CRC32; the rest of its sector is reserved.
const HEADER_MIN: u32 = 92;
/// Entries are 128 × 2^n bytes.
const ENTRY_MIN: u32 = 128;
/// More than this is no table any tool writes: refuse rather than read it.
const ENTRIES_MAX_BYTES: u64 = 1 << 20;
/// The protective MBR's partition record, its type byte and its size field.
const MBR_RECORD: usize = 446;
const MBR_TYPE_PROTECTIVE: u8 = 0xEE;

// Header fields (UEFI 2.10, table 5.21).
const H_REVISION: usize = 8;
const H_SIZE: usize = 12;
const H_CRC: usize = 16;
const H_MY_LBA: usize = 24;
const H_ALTERNATE_LBA: usize = 32;
const H_FIRST_USABLE: usize = 40;
const H_LAST_USABLE: usize = 48;
const H_ENTRIES_LBA: usize = 72;
const H_ENTRY_COUNT: usize = 80;
const H_ENTRY_SIZE: usize = 84;
const H_ENTRIES_CRC: usize = 88;
// Entry fields (table 5.22).
const E_FIRST_LBA: usize = 32;
const E_LAST_LBA: usize = 40;
const E_NAME: usize = 56;
const E_NAME_LEN: usize = 72;

/// Why a table cannot be read or grown; each names the field and its value.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{table} GPT header: signature is {found:?}, not \"EFI PART\"")]
    Signature { table: &'static str, found: String },
    #[error("{table} GPT header: {field} is {value}, {expected}")]
    Field {
        table: &'static str,
        field: &'static str,
        value: u64,
        expected: String,
    },
    #[error("{table} GPT header: header CRC32 is {stored:#010x}, the header's bytes give {computed:#010x}")]
    HeaderCrc {
        table: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error(
        "{table} GPT: partition entries CRC32 is {stored:#010x}, the entries give {computed:#010x}"
    )]
    EntriesCrc {
        table: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("GPT partition {number} ({name:?}): {field} is {value}, {expected}")]
    Entry {
        number: u32,
        name: String,
        field: &'static str,
        value: u64,
        expected: String,
    },
    #[error("no GPT partition is named {0:?}")]
    NoPartition(String),
    #[error("GPT partitions {numbers:?} are all named {name:?}")]
    Duplicate { name: String, numbers: Vec<u32> },
    #[error(
        "GPT partition {number} ({name:?}, first sector {first_lba}) is not the last on the \
         disk: partition {other_number} ({other_name:?}) ends at sector {other_last_lba}"
    )]
    NotLast {
        number: u32,
        name: String,
        first_lba: u64,
        other_number: u32,
        other_name: String,
        other_last_lba: u64,
    },
    #[error(
        "the disk has {disk_sectors} sectors, but the GPT's alternate_lba is {alternate_lba}: \
         the disk is smaller than its partition table"
    )]
    DiskSmaller {
        disk_sectors: u64,
        alternate_lba: u64,
    },
    #[error("sector size {0} is not a power of two of at least 512 bytes")]
    SectorSize(u64),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> GptError {
    let what = what.into();
    move |source| GptError::Io { what, source }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// CRC32 of the header's `size` bytes with its own CRC field as zero.
fn header_crc(sector: &[u8], size: usize) -> u32 {
    let mut h = sector[..size].to_vec();
    put32(&mut h, H_CRC, 0);
    crc32fast::hash(&h)
}

/// A used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Partition number: the entry's index + 1, as Linux numbers it (`vda4`).
    pub number: u32,
    /// The GPT name (PARTLABEL).
    pub name: String,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
}

/// A header that passed the checks, with the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    /// The whole sector as read, for rewriting with a few fields changed.
    raw: Vec<u8>,
}

/// A checked table: its header, every entry's bytes, and the used entries.
#[derive(Debug, Clone)]
pub struct Gpt {
    pub sector_size: u64,
    pub header: Header,
    /// Used entries, by number.
    pub entries: Vec<Entry>,
    /// The entry array as read (`entry_count × entry_size` bytes).
    entry_bytes: Vec<u8>,
    /// Sector 0's first 512 bytes (the protective MBR).
    mbr: Vec<u8>,
}

fn check_sector_size(sector_size: u64) -> Result<(), GptError> {
    if sector_size < 512 || !sector_size.is_power_of_two() {
        return Err(GptError::SectorSize(sector_size));
    }
    Ok(())
}

/// Checks the header sector read at `lba` ("primary" or "backup" in errors);
/// the entries are checked by [`Gpt::read`].
pub fn parse_header(
    table: &'static str,
    sector: &[u8],
    lba: u64,
    sector_size: u64,
) -> Result<Header, GptError> {
    check_sector_size(sector_size)?;
    let field = |field: &'static str, value: u64, expected: String| GptError::Field {
        table,
        field,
        value,
        expected,
    };
    if sector.len() < sector_size as usize {
        return Err(field(
            "sector length",
            sector.len() as u64,
            format!("expected {sector_size}"),
        ));
    }
    if &sector[..8] != SIGNATURE {
        return Err(GptError::Signature {
            table,
            found: String::from_utf8_lossy(&sector[..8]).into_owned(),
        });
    }
    let revision = le32(sector, H_REVISION);
    if revision != REVISION {
        return Err(field(
            "revision",
            revision.into(),
            format!("expected {REVISION:#x} (1.0)"),
        ));
    }
    let size = le32(sector, H_SIZE);
    if size < HEADER_MIN || u64::from(size) > sector_size {
        return Err(field(
            "header_size",
            size.into(),
            format!("expected {HEADER_MIN} to {sector_size}"),
        ));
    }
    let stored = le32(sector, H_CRC);
    let computed = header_crc(sector, size as usize);
    if stored != computed {
        return Err(GptError::HeaderCrc {
            table,
            stored,
            computed,
        });
    }
    let h = Header {
        my_lba: le64(sector, H_MY_LBA),
        alternate_lba: le64(sector, H_ALTERNATE_LBA),
        first_usable_lba: le64(sector, H_FIRST_USABLE),
        last_usable_lba: le64(sector, H_LAST_USABLE),
        entries_lba: le64(sector, H_ENTRIES_LBA),
        entry_count: le32(sector, H_ENTRY_COUNT),
        entry_size: le32(sector, H_ENTRY_SIZE),
        raw: sector[..sector_size as usize].to_vec(),
    };
    if h.my_lba != lba {
        return Err(field(
            "my_lba",
            h.my_lba,
            format!("expected {lba}, where it was read"),
        ));
    }
    if h.entry_size < ENTRY_MIN || !h.entry_size.is_power_of_two() {
        return Err(field(
            "size_of_partition_entry",
            h.entry_size.into(),
            "expected 128 × 2^n".into(),
        ));
    }
    let bytes = u64::from(h.entry_count) * u64::from(h.entry_size);
    if h.entry_count == 0 || bytes > ENTRIES_MAX_BYTES {
        return Err(field(
            "number_of_partition_entries",
            h.entry_count.into(),
            format!(
                "expected 1 to {} entries of {} bytes",
                ENTRIES_MAX_BYTES / u64::from(h.entry_size),
                h.entry_size
            ),
        ));
    }
    if h.first_usable_lba > h.last_usable_lba {
        return Err(field(
            "first_usable_lba",
            h.first_usable_lba,
            format!("expected at most last_usable_lba {}", h.last_usable_lba),
        ));
    }
    let entry_sectors = bytes.div_ceil(sector_size);
    // The entries lie outside the usable area, before it (primary) or after
    // it (backup), and the headers outside both.
    let entries_end = h.entries_lba.saturating_add(entry_sectors - 1);
    let before = entries_end < h.first_usable_lba && h.entries_lba > PRIMARY_LBA.min(lba);
    let after = h.entries_lba > h.last_usable_lba && entries_end < h.my_lba.max(h.alternate_lba);
    if !(before || after) || h.entries_lba == lba {
        return Err(field(
            "partition_entry_lba",
            h.entries_lba,
            format!(
                "expected {entry_sectors} sectors outside the usable sectors {} to {} and the headers",
                h.first_usable_lba, h.last_usable_lba
            ),
        ));
    }
    let (low, high) = (h.my_lba.min(h.alternate_lba), h.my_lba.max(h.alternate_lba));
    if low >= h.first_usable_lba || high <= h.last_usable_lba {
        return Err(field(
            "alternate_lba",
            h.alternate_lba,
            format!(
                "expected the two headers on either side of the usable sectors {} to {}",
                h.first_usable_lba, h.last_usable_lba
            ),
        ));
    }
    // A primary leaves room for the backup entries between the usable
    // sectors and the backup header: where the grown table puts them.
    if lba == PRIMARY_LBA && h.last_usable_lba.saturating_add(entry_sectors) >= h.alternate_lba {
        return Err(field(
            "last_usable_lba",
            h.last_usable_lba,
            format!(
                "expected below the {entry_sectors} sectors of backup entries before \
                 alternate_lba {}",
                h.alternate_lba
            ),
        ));
    }
    Ok(h)
}

impl Gpt {
    fn with_entries(
        table: &'static str,
        sector_size: u64,
        mbr: &[u8],
        header: Header,
        entry_bytes: &[u8],
    ) -> Result<Self, GptError> {
        let len = header.entry_count as usize * header.entry_size as usize;
        if entry_bytes.len() < len {
            return Err(GptError::Field {
                table,
                field: "partition entry array length",
                value: entry_bytes.len() as u64,
                expected: format!("expected {len} bytes"),
            });
        }
        let entry_bytes = entry_bytes[..len].to_vec();
        let stored = le32(&header.raw, H_ENTRIES_CRC);
        let computed = crc32fast::hash(&entry_bytes);
        if stored != computed {
            return Err(GptError::EntriesCrc {
                table,
                stored,
                computed,
            });
        }
        let mut entries = Vec::new();
        for (i, e) in entry_bytes
            .chunks_exact(header.entry_size as usize)
            .enumerate()
        {
            if e[..16].iter().all(|b| *b == 0) {
                continue;
            }
            let name: Vec<u16> = e[E_NAME..E_NAME + E_NAME_LEN]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|c| *c != 0)
                .collect();
            let entry = Entry {
                number: i as u32 + 1,
                name: String::from_utf16_lossy(&name),
                first_lba: le64(e, E_FIRST_LBA),
                last_lba: le64(e, E_LAST_LBA),
            };
            let bad = |field, value, expected| GptError::Entry {
                number: entry.number,
                name: entry.name.clone(),
                field,
                value,
                expected,
            };
            if entry.first_lba < header.first_usable_lba || entry.first_lba > entry.last_lba {
                return Err(bad(
                    "starting_lba",
                    entry.first_lba,
                    format!(
                        "expected from first_usable_lba {} to ending_lba {}",
                        header.first_usable_lba, entry.last_lba
                    ),
                ));
            }
            if entry.last_lba > header.last_usable_lba {
                return Err(bad(
                    "ending_lba",
                    entry.last_lba,
                    format!(
                        "expected at most last_usable_lba {}",
                        header.last_usable_lba
                    ),
                ));
            }
            entries.push(entry);
        }
        Ok(Self {
            sector_size,
            header,
            entries,
            entry_bytes,
            mbr: mbr.get(..512).unwrap_or_default().to_vec(),
        })
    }

    /// Reads and checks the primary table of `dev`.
    pub fn read<D: Read + Seek>(dev: &mut D, sector_size: u64) -> Result<Self, GptError> {
        check_sector_size(sector_size)?;
        let mut first = vec![0u8; 2 * sector_size as usize];
        dev.seek(SeekFrom::Start(0))
            .and_then(|_| dev.read_exact(&mut first))
            .map_err(io_err("reading the primary GPT header (sector 1)"))?;
        let (mbr, header_sector) = first.split_at(sector_size as usize);
        let header = parse_header("primary", header_sector, PRIMARY_LBA, sector_size)?;
        let entries = read_entries(dev, &header, sector_size, "primary")?;
        Self::with_entries("primary", sector_size, mbr, header, &entries)
    }

    /// Reads and checks the backup table of `dev` at `lba` (the last sector,
    /// normally); the MBR is not part of it. The boot never needs it: it
    /// writes the backup from the primary.
    #[cfg(test)]
    pub fn read_backup<D: Read + Seek>(
        dev: &mut D,
        sector_size: u64,
        lba: u64,
    ) -> Result<Self, GptError> {
        check_sector_size(sector_size)?;
        let mut sector = vec![0u8; sector_size as usize];
        dev.seek(SeekFrom::Start(lba * sector_size))
            .and_then(|_| dev.read_exact(&mut sector))
            .map_err(io_err(format!(
                "reading the backup GPT header (sector {lba})"
            )))?;
        let header = parse_header("backup", &sector, lba, sector_size)?;
        let entries = read_entries(dev, &header, sector_size, "backup")?;
        Self::with_entries("backup", sector_size, &[], header, &entries)
    }

    /// The used entry named `name`, which must be the only one so named.
    pub fn partition(&self, name: &str) -> Result<&Entry, GptError> {
        let named: Vec<&Entry> = self.entries.iter().filter(|e| e.name == name).collect();
        match named.as_slice() {
            [] => Err(GptError::NoPartition(name.to_owned())),
            [one] => Ok(one),
            many => Err(GptError::Duplicate {
                name: name.to_owned(),
                numbers: many.iter().map(|e| e.number).collect(),
            }),
        }
    }

    /// Sectors of the disk the table was made for (its backup header is
    /// the last one).
    pub fn disk_sectors(&self) -> u64 {
        self.header.alternate_lba + 1
    }

    fn entry_sectors(&self) -> u64 {
        (u64::from(self.header.entry_count) * u64::from(self.header.entry_size))
            .div_ceil(self.sector_size)
    }

    /// Plans growing partition `name` — the last one on the disk — to the end
    /// of a disk of `disk_sectors` sectors. `None` when the disk is not
    /// larger than the table says: nothing to write.
    pub fn plan_grow(&self, name: &str, disk_sectors: u64) -> Result<Option<GrowPlan>, GptError> {
        let h = &self.header;
        if disk_sectors <= h.alternate_lba {
            return Err(GptError::DiskSmaller {
                disk_sectors,
                alternate_lba: h.alternate_lba,
            });
        }
        if disk_sectors == h.alternate_lba + 1 {
            return Ok(None);
        }
        let part = self.partition(name)?;
        if let Some(other) = self
            .entries
            .iter()
            .filter(|e| e.number != part.number && e.last_lba >= part.first_lba)
            .max_by_key(|e| e.last_lba)
        {
            return Err(GptError::NotLast {
                number: part.number,
                name: part.name.clone(),
                first_lba: part.first_lba,
                other_number: other.number,
                other_name: other.name.clone(),
                other_last_lba: other.last_lba,
            });
        }
        let ss = self.sector_size;
        let entry_sectors = self.entry_sectors();
        let backup_lba = disk_sectors - 1;
        let backup_entries_lba = backup_lba - entry_sectors;
        let last_usable = backup_entries_lba - 1;

        // The entries, with the partition ending at the new last usable sector.
        let mut entries = self.entry_bytes.clone();
        let at = (part.number as usize - 1) * h.entry_size as usize;
        put64(&mut entries, at + E_LAST_LBA, last_usable);
        let entries_crc = crc32fast::hash(&entries);

        let header_size = le32(&h.raw, H_SIZE) as usize;
        let make_header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
            let mut s = h.raw.clone();
            put64(&mut s, H_MY_LBA, my_lba);
            put64(&mut s, H_ALTERNATE_LBA, alternate_lba);
            put64(&mut s, H_LAST_USABLE, last_usable);
            put64(&mut s, H_ENTRIES_LBA, entries_lba);
            put32(&mut s, H_ENTRIES_CRC, entries_crc);
            let crc = header_crc(&s, header_size);
            put32(&mut s, H_CRC, crc);
            s
        };
        let primary = make_header(PRIMARY_LBA, backup_lba, h.entries_lba);
        let backup = make_header(backup_lba, PRIMARY_LBA, backup_entries_lba);

        // The order is what keeps a valid table on the disk if the machine
        // stops between two writes (each write is followed by a flush):
        // 1. and 2. The backup entries, then the backup header, at the new
        //    end of the disk — space no partition uses. Until the primary
        //    changes, the primary (untouched, pointing to the old backup)
        //    is what Linux, firmware and tools use; a stop here leaves the
        //    old table, and the next boot simply grows again.
        // 3. The primary header with the one sector of entries that changed,
        //    in a single write when they are adjacent (the usual layout:
        //    header in sector 1, entries from sector 2): one write of two
        //    sectors within a page is as close to atomic as a disk gets.
        //    Should it tear anyway, the complete new backup is already at
        //    the end of the disk, where UEFI firmware and gdisk look for it
        //    (Linux itself only does with `gpt` on its command line).
        //    The other order — primary first — would leave, after a stop, a
        //    primary pointing to a backup not yet written, and after a torn
        //    write no valid table anywhere.
        // 4. The protective MBR's size: cosmetic (Linux only mentions a
        //    mismatch in debug messages), so last.
        let mut writes = vec![
            Write {
                what: "backup partition entries",
                offset: backup_entries_lba * ss,
                bytes: entries.clone(),
            },
            Write {
                what: "backup GPT header",
                offset: backup_lba * ss,
                bytes: backup,
            },
        ];
        let changed_sector = at as u64 / ss;
        let sector_bytes = |n: u64| {
            let from = (n * ss) as usize;
            let to = ((n + 1) * ss) as usize;
            let mut s = entries[from..to.min(entries.len())].to_vec();
            s.resize(ss as usize, 0);
            s
        };
        if h.entries_lba == PRIMARY_LBA + 1 {
            let mut bytes = primary;
            for n in 0..=changed_sector {
                bytes.extend(sector_bytes(n));
            }
            writes.push(Write {
                what: "primary GPT header and partition entries",
                offset: PRIMARY_LBA * ss,
                bytes,
            });
        } else {
            writes.push(Write {
                what: "primary partition entries",
                offset: (h.entries_lba + changed_sector) * ss,
                bytes: sector_bytes(changed_sector),
            });
            writes.push(Write {
                what: "primary GPT header",
                offset: PRIMARY_LBA * ss,
                bytes: primary,
            });
        }
        if let Some(mbr) = self.protective_mbr(disk_sectors) {
            writes.push(Write {
                what: "protective MBR",
                offset: 0,
                bytes: mbr,
            });
        }
        Ok(Some(GrowPlan {
            number: part.number,
            name: part.name.clone(),
            sector_size: ss,
            first_lba: part.first_lba,
            old_last_lba: part.last_lba,
            new_last_lba: last_usable,
            old_disk_sectors: self.disk_sectors(),
            new_disk_sectors: disk_sectors,
            writes,
        }))
    }

    /// Sector 0 with the protective partition's size set for a disk of
    /// `disk_sectors`; `None` when it is not a protective MBR covering the
    /// old disk (a hybrid MBR, or the 0xFFFFFFFF size of a large disk).
    fn protective_mbr(&self, disk_sectors: u64) -> Option<Vec<u8>> {
        let m = &self.mbr;
        if m.len() < 512 || m[510..512] != [0x55, 0xAA] {
            return None;
        }
        let rec = MBR_RECORD;
        let old = u64::from(le32(m, rec + 12));
        let cover = |sectors: u64| (sectors - 1).min(u64::from(u32::MAX));
        if m[rec + 4] != MBR_TYPE_PROTECTIVE
            || le32(m, rec + 8) != 1
            || old != cover(self.disk_sectors())
            || old == u64::from(u32::MAX)
        {
            return None;
        }
        let mut out = m.clone();
        put32(&mut out, rec + 12, cover(disk_sectors) as u32);
        Some(out)
    }
}

fn read_entries<D: Read + Seek>(
    dev: &mut D,
    header: &Header,
    sector_size: u64,
    table: &str,
) -> Result<Vec<u8>, GptError> {
    let len = header.entry_count as usize * header.entry_size as usize;
    let mut entries = vec![0u8; len];
    dev.seek(SeekFrom::Start(
        header.entries_lba.saturating_mul(sector_size),
    ))
    .and_then(|_| dev.read_exact(&mut entries))
    .map_err(io_err(format!(
        "reading the {table} GPT partition entries (sector {})",
        header.entries_lba
    )))?;
    Ok(entries)
}

/// One write of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What it writes, for errors.
    pub what: &'static str,
    /// Byte offset on the disk.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Growing the last partition to the disk's end: the result, and the writes
/// that make it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowPlan {
    /// Partition number (Linux's: `vda4` is 4).
    pub number: u32,
    pub name: String,
    pub sector_size: u64,
    /// Unchanged.
    pub first_lba: u64,
    pub old_last_lba: u64,
    /// The new last usable sector.
    pub new_last_lba: u64,
    /// The disk size the table was made for, and the new one.
    pub old_disk_sectors: u64,
    pub new_disk_sectors: u64,
    /// To perform in this order, each flushed before the next.
    pub writes: Vec<Write>,
}

impl GrowPlan {
    /// Byte offset of the partition.
    pub fn start_bytes(&self) -> u64 {
        self.first_lba * self.sector_size
    }

    /// Size in bytes before.
    pub fn old_bytes(&self) -> u64 {
        (self.old_last_lba + 1 - self.first_lba) * self.sector_size
    }

    /// Size in bytes after.
    pub fn new_bytes(&self) -> u64 {
        (self.new_last_lba + 1 - self.first_lba) * self.sector_size
    }
}

/// Performs `plan`'s writes on `dev` in order, flushing each to the disk
/// before the next (see [`Gpt::plan_grow`] for why the order matters).
pub fn apply(dev: &File, plan: &GrowPlan) -> Result<(), GptError> {
    apply_first(dev, plan, plan.writes.len())
}

/// The first `n` writes of `plan`: [`apply`], and what a stop after `n`
/// writes leaves (for the tests).
pub fn apply_first(dev: &File, plan: &GrowPlan, n: usize) -> Result<(), GptError> {
    for w in plan.writes.iter().take(n) {
        dev.write_all_at(&w.bytes, w.offset)
            .and_then(|()| dev.sync_data())
            .map_err(io_err(format!(
                "writing the {} at byte {}",
                w.what, w.offset
            )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
