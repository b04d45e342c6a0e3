//! Telling the kernel a partition's new length (`BLKPG_RESIZE_PARTITION`):
//! the root partition on the same disk is mounted, so it cannot re-read the
//! whole table.

use std::fs::File;
use std::io;

/// `struct blkpg_partition` of `<linux/blkpg.h>`.
#[repr(C)]
pub(super) struct BlkpgPartition {
    /// Bytes.
    start: libc::c_longlong,
    /// Bytes.
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
pub(super) struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// `BLKPG` = `_IO(0x12, 105)`.
const BLKPG: libc::Ioctl = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

/// Sets the kernel's length of partition `number` of the disk open as
/// `disk` (its start must be the one the kernel has).
pub fn resize_kernel_partition(
    disk: &File,
    number: u32,
    start: u64,
    length: u64,
) -> io::Result<()> {
    let too_big = |_| io::Error::from(io::ErrorKind::InvalidInput);
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(too_big)?,
        length: i64::try_from(length).map_err(too_big)?,
        pno: i32::try_from(number).map_err(too_big)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: BLKPG reads `arg` and the `datalen` bytes at `arg.data`, both
    // live on this stack frame for the whole call; the fd is open.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(disk), BLKPG, &mut arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
