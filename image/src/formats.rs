//! Hypervisor formats made from the raw disk with qemu-img, and made
//! reproducible: qemu-img writes random identifiers into VHDX (file/data
//! write GUIDs in CRC-32C-protected headers, the Page 83 disk id in the
//! metadata region) and VMDK (the descriptor's CID). They are replaced by
//! fixed values derived from the disk GUID.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::manifest::parse_guid;
use crate::tools::run;

/// Compressed qcow2.
pub fn qcow2(raw: &Path, out: &Path) -> Result<()> {
    convert(raw, out, &["-O", "qcow2", "-c"])
}

/// Dynamic VHDX with fixed identifiers.
pub fn vhdx(raw: &Path, out: &Path, disk_guid: &str) -> Result<()> {
    convert(raw, out, &["-O", "vhdx", "-o", "subformat=dynamic"])?;
    fix_vhdx(out, disk_guid)
}

/// streamOptimized VMDK (for the OVA) with a fixed CID.
pub fn vmdk(raw: &Path, out: &Path, cid: u32) -> Result<()> {
    convert(
        raw,
        out,
        &[
            "-O",
            "vmdk",
            "-o",
            "subformat=streamOptimized,adapter_type=lsilogic",
        ],
    )?;
    fix_vmdk(out, cid)
}

fn convert(raw: &Path, out: &Path, args: &[&str]) -> Result<()> {
    if out.exists() {
        std::fs::remove_file(out).ctx("removing", out)?;
    }
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw"])
        .args(args)
        .arg(raw)
        .arg(out))?;
    Ok(())
}

/// Replaces the descriptor's `CID=<hex>` (random in qemu-img's output, and
/// printed without padding, so its length varies) with `cid`, rewriting the
/// descriptor text inside its fixed, NUL-padded area. The descriptor of a
/// streamOptimized VMDK has no checksum.
pub fn fix_vmdk(path: &Path, cid: u32) -> Result<()> {
    let bad = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx("opening", path)?;
    let mut header = [0u8; 512];
    f.read_exact_at(&mut header, 0).ctx("reading", path)?;
    if !header.starts_with(b"KDMV") {
        return Err(bad("not a VMDK sparse extent (no KDMV magic)".into()));
    }
    let le = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or_default());
    let (desc_sector, desc_sectors) = (le(28), le(36));
    if desc_sector == 0 || desc_sectors == 0 || desc_sectors > 2048 {
        return Err(bad(format!(
            "implausible descriptor area: sector {desc_sector}, {desc_sectors} sectors"
        )));
    }
    let mut area = vec![0u8; (desc_sectors * 512) as usize];
    f.read_exact_at(&mut area, desc_sector * 512)
        .ctx("reading", path)?;
    let len = area.iter().position(|b| *b == 0).unwrap_or(area.len());
    let text = std::str::from_utf8(&area[..len])
        .map_err(|e| bad(format!("descriptor is not text: {e}")))?;
    let fixed =
        replace_cid(text, cid).ok_or_else(|| bad("no CID= line in the descriptor".into()))?;
    if fixed.len() > area.len() {
        return Err(bad(
            "descriptor does not fit its area with the new CID".into()
        ));
    }
    let mut out = fixed.into_bytes();
    out.resize(area.len(), 0);
    f.write_all_at(&out, desc_sector * 512)
        .ctx("writing", path)?;
    Ok(())
}

/// `text` with its `CID=` line set to `cid` (8 hex digits).
pub fn replace_cid(text: &str, cid: u32) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            if !found && l.starts_with("CID=") {
                found = true;
                format!("CID={cid:08x}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    found.then(|| lines.join("\n"))
}

const KIB: u64 = 1024;
/// VHDX header locations (two copies).
const HEADERS: [u64; 2] = [64 * KIB, 128 * KIB];
/// Region table location (the copy at 256 KiB is identical).
const REGION_TABLE: u64 = 192 * KIB;
const METADATA_REGION: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const PAGE83_ITEM: &str = "BECA12AB-B2E6-4523-93EF-C309E000C746";

/// Sets the VHDX header GUIDs, sequence numbers (random in qemu-img's
/// output; their order, which says which header is current, is kept) and
/// the Page 83 virtual disk id to fixed values derived from `disk_guid`,
/// recomputing the headers' CRC-32C, and zeroes the log region. Refuses a
/// file whose log is not empty (a non-zero log GUID): then the log would
/// have to be replayed, and its entries carry that GUID.
pub fn fix_vhdx(path: &Path, disk_guid: &str) -> Result<()> {
    let bad = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let id = parse_guid(disk_guid).map_err(|e| bad(e.to_string()))?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx("opening", path)?;
    let mut ident = [0u8; 8];
    f.read_exact_at(&mut ident, 0).ctx("reading", path)?;
    if &ident != b"vhdxfile" {
        return Err(bad("not a VHDX file (no vhdxfile identifier)".into()));
    }
    let mut headers = Vec::new();
    for at in HEADERS {
        let mut h = vec![0u8; 4096];
        f.read_exact_at(&mut h, at).ctx("reading", path)?;
        if &h[0..4] != b"head" {
            return Err(bad(format!("no VHDX header at {at}")));
        }
        if h[48..64].iter().any(|b| *b != 0) {
            return Err(bad(format!(
                "header at {at} has a log GUID: the log is not empty"
            )));
        }
        headers.push(h);
    }
    let seq = |h: &[u8]| u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
    let first_is_current = seq(&headers[0]) > seq(&headers[1]);
    let log_length = u32::from_le_bytes([
        headers[0][68],
        headers[0][69],
        headers[0][70],
        headers[0][71],
    ]);
    let log_offset = u64::from_le_bytes(headers[0][72..80].try_into().unwrap_or_default());
    for (i, (at, h)) in HEADERS.into_iter().zip(headers.iter_mut()).enumerate() {
        let current = (i == 0) == first_is_current;
        let mut file_write = id;
        file_write[15] ^= 0x01;
        let mut data_write = id;
        data_write[15] ^= 0x02;
        h[8..16].copy_from_slice(&(if current { 2u64 } else { 1 }).to_le_bytes());
        h[16..32].copy_from_slice(&file_write);
        h[32..48].copy_from_slice(&data_write);
        h[4..8].fill(0);
        let crc = crc32c::crc32c(h);
        h[4..8].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(h, at).ctx("writing", path)?;
    }
    // Stale log entries (qemu-img logs its metadata updates, then applies
    // them) carry a random GUID; with a zero log GUID they are never read.
    if log_length > 0 {
        if log_offset < 1 << 20 || log_length > 1 << 30 {
            return Err(bad(format!(
                "implausible log at {log_offset}, {log_length} bytes"
            )));
        }
        f.write_all_at(&vec![0u8; log_length as usize], log_offset)
            .ctx("writing", path)?;
    }
    // Find the metadata region, then the Page 83 item in its table.
    let mut rt = vec![0u8; 64 * KIB as usize];
    f.read_exact_at(&mut rt, REGION_TABLE)
        .ctx("reading", path)?;
    if &rt[0..4] != b"regi" {
        return Err(bad("no VHDX region table at 192 KiB".into()));
    }
    let count = u32::from_le_bytes([rt[8], rt[9], rt[10], rt[11]]) as usize;
    let meta_guid = parse_guid(METADATA_REGION).map_err(|e| bad(e.to_string()))?;
    let meta_offset = rt[16..]
        .chunks(32)
        .take(count.min(2047))
        .find(|e| e[0..16] == meta_guid)
        .map(|e| u64::from_le_bytes(e[16..24].try_into().unwrap_or_default()))
        .ok_or_else(|| bad("no metadata region in the region table".into()))?;
    let mut mt = vec![0u8; 64 * KIB as usize];
    f.read_exact_at(&mut mt, meta_offset).ctx("reading", path)?;
    if &mt[0..8] != b"metadata" {
        return Err(bad(format!("no metadata table at {meta_offset}")));
    }
    let entries = u16::from_le_bytes([mt[10], mt[11]]) as usize;
    let page83 = parse_guid(PAGE83_ITEM).map_err(|e| bad(e.to_string()))?;
    let item = mt[32..]
        .chunks(32)
        .take(entries.min(2047))
        .find(|e| e[0..16] == page83)
        .map(|e| {
            (
                u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
                u32::from_le_bytes([e[20], e[21], e[22], e[23]]),
            )
        })
        .ok_or_else(|| bad("no Page 83 item in the metadata table".into()))?;
    if item.1 != 16 {
        return Err(bad(format!("Page 83 item is {} bytes, not 16", item.1)));
    }
    f.write_all_at(&id, meta_offset + u64::from(item.0))
        .ctx("writing", path)?;
    Ok(())
}

/// Reads the VHDX Page 83 virtual disk id and checks both headers' CRC-32C.
pub fn vhdx_disk_id(path: &Path) -> Result<[u8; 16]> {
    let bad = |message: String| Error::Format {
        path: path.to_owned(),
        message,
    };
    let f = std::fs::File::open(path).ctx("opening", path)?;
    for at in HEADERS {
        let mut h = vec![0u8; 4096];
        f.read_exact_at(&mut h, at).ctx("reading", path)?;
        let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        h[4..8].fill(0);
        if crc32c::crc32c(&h) != stored {
            return Err(bad(format!("header at {at}: CRC-32C mismatch")));
        }
    }
    let mut rt = vec![0u8; 4096];
    f.read_exact_at(&mut rt, REGION_TABLE)
        .ctx("reading", path)?;
    let meta_guid = parse_guid(METADATA_REGION).map_err(|e| bad(e.to_string()))?;
    let meta_offset = rt[16..]
        .chunks(32)
        .find(|e| e[0..16] == meta_guid)
        .map(|e| u64::from_le_bytes(e[16..24].try_into().unwrap_or_default()))
        .ok_or_else(|| bad("no metadata region".into()))?;
    let mut mt = vec![0u8; 4096];
    f.read_exact_at(&mut mt, meta_offset).ctx("reading", path)?;
    let page83 = parse_guid(PAGE83_ITEM).map_err(|e| bad(e.to_string()))?;
    let off = mt[32..]
        .chunks(32)
        .find(|e| e[0..16] == page83)
        .map(|e| u32::from_le_bytes([e[16], e[17], e[18], e[19]]))
        .ok_or_else(|| bad("no Page 83 item".into()))?;
    let mut id = [0u8; 16];
    f.read_exact_at(&mut id, meta_offset + u64::from(off))
        .ctx("reading", path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_line_is_replaced_whatever_its_length() {
        let text = "# Disk DescriptorFile\nversion=1\nCID=5a3\nparentCID=ffffffff\n";
        assert_eq!(
            replace_cid(text, 0xaa544b47).unwrap(),
            "# Disk DescriptorFile\nversion=1\nCID=aa544b47\nparentCID=ffffffff\n"
        );
        assert_eq!(replace_cid("CID=1\n", 1).unwrap(), "CID=00000001\n");
        assert!(replace_cid("parentCID=ffffffff\n", 1).is_none());
    }
}
