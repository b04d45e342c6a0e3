//! The initramfs format: cpio "newc" written from a [`Tree`], reproducibly
//! (paths sorted, every mtime the build's epoch, uid/gid 0, inode numbers
//! counted from 1), then gzip-compressed with a fixed header.

use std::io::{Read, Write};

use flate2::{Compression, GzBuilder};

use crate::error::{Error, IoContext, Result};
use crate::tree::{Node, Source, Tree};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// One newc header with its name, padded to 4 bytes.
#[allow(clippy::too_many_arguments)]
fn header(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> std::io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        out,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{mtime:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, 110 + namesize)
}

fn pad(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    out.write_all(&[0; 3][..(4 - len % 4) % 4])
}

/// Writes `tree` as an uncompressed newc archive.
pub fn write_newc(tree: &Tree, mtime: u64, out: &mut impl Write) -> Result<()> {
    let mtime = u32::try_from(mtime).map_err(|_| Error::TooLarge {
        what: "SOURCE_DATE_EPOCH for cpio".into(),
        size: mtime,
        limit: u64::from(u32::MAX),
    })?;
    let io = |e| Error::io("writing the cpio archive", "initramfs", e);
    let mut ino = 0u32;
    for (path, node) in tree.iter() {
        ino += 1;
        match node {
            Node::Dir { mode } => {
                header(out, ino, S_IFDIR | mode, 2, mtime, 0, (0, 0), path).map_err(io)?
            }
            Node::Symlink { target } => {
                let size = target.len() as u32;
                header(out, ino, S_IFLNK | 0o777, 1, mtime, size, (0, 0), path).map_err(io)?;
                out.write_all(target.as_bytes()).map_err(io)?;
                pad(out, target.len()).map_err(io)?;
            }
            Node::CharDev { major, minor, mode } => header(
                out,
                ino,
                S_IFCHR | mode,
                1,
                mtime,
                0,
                (*major, *minor),
                path,
            )
            .map_err(io)?,
            Node::File { source, mode } => {
                let data = match source {
                    Source::Bytes(b) => std::borrow::Cow::Borrowed(b),
                    Source::Host(h) => {
                        let mut v = Vec::new();
                        std::fs::File::open(h)
                            .and_then(|mut f| f.read_to_end(&mut v))
                            .ctx("reading", h)?;
                        std::borrow::Cow::Owned(v)
                    }
                };
                let size = u32::try_from(data.len()).map_err(|_| Error::TooLarge {
                    what: format!("initramfs file {path}"),
                    size: data.len() as u64,
                    limit: u64::from(u32::MAX),
                })?;
                header(out, ino, S_IFREG | mode, 1, mtime, size, (0, 0), path).map_err(io)?;
                out.write_all(&data).map_err(io)?;
                pad(out, data.len()).map_err(io)?;
            }
        }
    }
    header(out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!").map_err(io)?;
    Ok(())
}

/// `tree` as a gzip-compressed newc archive (no name, mtime 0 in the gzip
/// header: the same tree always gives the same bytes).
pub fn initramfs(tree: &Tree, mtime: u64) -> Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    write_newc(tree, mtime, &mut gz)?;
    gz.finish()
        .map_err(|e| Error::io("compressing", "initramfs", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: (name, mode, mtime, ino, rdev, data).
    type Entry = (String, u32, u32, u32, (u32, u32), Vec<u8>);

    /// A minimal newc reader.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (ino, mode, mtime, size, rmaj, rmin, namesize) = (
                field(0),
                field(1),
                field(5),
                field(6),
                field(9),
                field(10),
                field(11),
            );
            let name = String::from_utf8(b[110..110 + namesize as usize - 1].to_vec()).unwrap();
            let start = (110 + namesize as usize).div_ceil(4) * 4;
            let data = b[start..start + size as usize].to_vec();
            let next = (start + size as usize).div_ceil(4) * 4;
            assert_eq!((total - b.len() + next) % 4, 0);
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, mtime, ino, (rmaj, rmin), data));
        }
    }

    fn sample() -> Tree {
        let mut t = Tree::new();
        t.file(
            "init",
            Source::Bytes(b"#!/bin/sh\n".to_vec()),
            0o755,
            "init",
        )
        .unwrap();
        t.merged_usr().unwrap();
        t.chardev("dev/console", 5, 1, 0o600).unwrap();
        t.file("usr/lib/a-b", Source::Bytes(vec![1, 2, 3]), 0o644, "x")
            .unwrap();
        t
    }

    #[test]
    fn newc_entries_are_sorted_numbered_and_stamped() {
        let mut buf = Vec::new();
        write_newc(&sample(), 1_767_225_600, &mut buf).unwrap();
        let entries = parse(&buf);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib64",
                "sbin",
                "usr",
                "usr/bin",
                "usr/lib",
                "usr/lib/a-b",
                "usr/lib64",
                "usr/sbin"
            ]
        );
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.3, i as u32 + 1, "inode of {}", e.0);
            assert_eq!(e.2, 1_767_225_600);
        }
        let console = &entries[2];
        assert_eq!((console.1, console.4), (0o020600, (5, 1)));
        assert_eq!(entries[3].1, 0o100755);
        assert_eq!(entries[3].5, b"#!/bin/sh\n");
        assert_eq!(
            (entries[4].1, entries[4].5.as_slice()),
            (0o120777, &b"usr/lib"[..])
        );
        assert_eq!(entries[10].5, [1, 2, 3]);
    }

    #[test]
    fn compressed_archive_is_reproducible() {
        let a = initramfs(&sample(), 5).unwrap();
        let b = initramfs(&sample(), 5).unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(parse(&raw).len(), sample().len());
        assert_ne!(initramfs(&sample(), 6).unwrap(), a);
    }
}
