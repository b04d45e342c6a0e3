//! The EFI system partition: FAT32 made by mkfs.fat (fixed volume id and
//! `--invariant`), our files written through the `fatfs` crate with a fixed
//! clock, syslinux's BIOS installer (which honours SOURCE_DATE_EPOCH through
//! mtools); and editing the kernel command line of a built image.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};

use crate::disk::{read_gpt, SECTOR};
use crate::error::{Error, IoContext, Result};
use crate::tools::run;

/// The two syslinux.cfg files (UEFI and BIOS); they are identical.
pub const CFG_PATHS: [&str; 2] = ["EFI/BOOT/syslinux.cfg", "syslinux/syslinux.cfg"];
/// The kernel and initramfs on the ESP.
pub const KERNEL_PATH: &str = "a/vmlinuz";
/// The initramfs on the ESP.
pub const INITRD_PATH: &str = "a/initrd.img";

/// The syslinux configuration for `cmdline`.
pub fn syslinux_cfg(cmdline: &str) -> String {
    format!(
        "DEFAULT appliance\nPROMPT 0\nTIMEOUT 0\nLABEL appliance\n  LINUX /{KERNEL_PATH}\n  INITRD /{INITRD_PATH}\n  APPEND {cmdline}\n"
    )
}

/// Appends `params` to the APPEND line of a syslinux configuration.
pub fn append_params(cfg: &str, params: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(cfg.len() + params.len() + 1);
    for line in cfg.lines() {
        out.push_str(line);
        if !found
            && line
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("APPEND ")
        {
            found = true;
            out.push(' ');
            out.push_str(params.trim());
        }
        out.push('\n');
    }
    found.then_some(out)
}

/// Civil date and time (UTC) of a UNIX timestamp, clamped to FAT's range.
pub fn fat_datetime(unix: u64) -> DateTime {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u16;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    if year < 1980 {
        return DateTime {
            date: Date {
                year: 1980,
                month: 1,
                day: 1,
            },
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        };
    }
    DateTime {
        date: Date {
            year: year.min(2107),
            month,
            day,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// A clock that always says the same time (fatfs wants a `'static` one).
#[derive(Debug)]
struct FixedClock(DateTime);

impl TimeProvider for FixedClock {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// A clock reading the system time, for edits of a built image.
#[derive(Debug)]
struct SystemClock;

impl TimeProvider for SystemClock {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }
    fn get_current_date_time(&self) -> DateTime {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        fat_datetime(now)
    }
}

static SYSTEM_CLOCK: SystemClock = SystemClock;

fn fixed_clock(epoch: u64) -> &'static FixedClock {
    // One small allocation per image built; fatfs needs a 'static clock.
    Box::leak(Box::new(FixedClock(fat_datetime(epoch))))
}

/// What goes onto the ESP.
#[derive(Debug)]
pub struct EspContents<'a> {
    /// syslinux's mtools installer (run on the image).
    pub bios_installer: &'a Path,
    /// syslinux.efi, installed as /EFI/BOOT/BOOTX64.EFI.
    pub efi_loader: &'a Path,
    /// ldlinux.e64.
    pub efi_ldlinux: &'a Path,
    /// The kernel.
    pub vmlinuz: &'a Path,
    /// The compressed initramfs.
    pub initrd: &'a [u8],
    /// The kernel command line.
    pub cmdline: &'a str,
}

/// Builds the ESP image at `path`: `size` bytes, FAT32, volume id
/// `volume_id` (8 hex digits), `hidden_sectors` = the partition's first LBA.
pub fn build(
    path: &Path,
    size: u64,
    hidden_sectors: u64,
    volume_id: &str,
    epoch: u64,
    c: &EspContents<'_>,
) -> Result<()> {
    if path.exists() {
        std::fs::remove_file(path).ctx("removing", path)?;
    }
    let f = std::fs::File::create(path).ctx("creating", path)?;
    f.set_len(size).ctx("sizing", path)?;
    drop(f);
    run(Command::new("mkfs.fat")
        .args(["-F", "32", "-s", "1", "-n", "ESP", "--invariant"])
        .args(["-i", volume_id, "-h", &hidden_sectors.to_string()])
        .arg(path)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()))?;
    {
        let disk = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ctx("opening", path)?;
        let fs = FileSystem::new(disk, FsOptions::new().time_provider(fixed_clock(epoch)))
            .ctx("opening the FAT filesystem", path)?;
        let root = fs.root_dir();
        let fat = |e| Error::io("writing into the FAT image", path, e);
        for d in ["EFI", "EFI/BOOT", "syslinux", "a"] {
            root.create_dir(d).map_err(fat)?;
        }
        let cfg = syslinux_cfg(c.cmdline);
        let files: [(&str, Vec<u8>); 6] = [
            (
                "EFI/BOOT/BOOTX64.EFI",
                std::fs::read(c.efi_loader).ctx("reading", c.efi_loader)?,
            ),
            (
                "EFI/BOOT/ldlinux.e64",
                std::fs::read(c.efi_ldlinux).ctx("reading", c.efi_ldlinux)?,
            ),
            (CFG_PATHS[0], cfg.clone().into_bytes()),
            (CFG_PATHS[1], cfg.into_bytes()),
            (
                KERNEL_PATH,
                std::fs::read(c.vmlinuz).ctx("reading", c.vmlinuz)?,
            ),
            (INITRD_PATH, c.initrd.to_vec()),
        ];
        for (name, bytes) in files {
            let mut file = root.create_file(name).map_err(fat)?;
            file.truncate().map_err(fat)?;
            file.write_all(&bytes).map_err(fat)?;
            file.flush().map_err(fat)?;
        }
        drop(root);
        fs.unmount().map_err(fat)?;
    }
    // Writes /syslinux/ldlinux.sys and ldlinux.c32 (through mcopy, which
    // stamps them with SOURCE_DATE_EPOCH in TZ) and the FAT boot sector.
    run(Command::new(c.bios_installer)
        .args(["--install", "--directory", "/syslinux"])
        .arg(path)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("TZ", "UTC")
        .env("MTOOLS_SKIP_CHECK", "1"))?;
    Ok(())
}

/// Reads a file from the FAT image `path` (a whole ESP image file).
pub fn read_file(path: &Path, name: &str) -> Result<Vec<u8>> {
    let disk = std::fs::File::open(path).ctx("opening", path)?;
    read_from(disk, path, name)
}

fn read_from<T: Read + Write + Seek>(disk: T, path: &Path, name: &str) -> Result<Vec<u8>> {
    let fat = |e| Error::io("reading the FAT filesystem in", path, e);
    let fs = FileSystem::new(disk, FsOptions::new()).map_err(fat)?;
    let mut out = Vec::new();
    fs.root_dir()
        .open_file(name)
        .and_then(|mut f| f.read_to_end(&mut out))
        .map_err(fat)?;
    Ok(out)
}

fn esp_slice(raw: &Path, write: bool) -> Result<fscommon::StreamSlice<std::fs::File>> {
    let gpt = read_gpt(raw)?;
    let esp = gpt.partition("esp").ok_or_else(|| Error::Layout {
        path: raw.to_owned(),
        message: "no partition named esp".into(),
    })?;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(raw)
        .ctx("opening", raw)?;
    debug_assert_eq!(esp.offset % SECTOR, 0);
    fscommon::StreamSlice::new(file, esp.offset, esp.offset + esp.size)
        .ctx("seeking to the ESP of", raw)
}

/// Reads file `name` (e.g. `syslinux/syslinux.cfg`) from the ESP of the
/// raw disk image `raw`.
pub fn read_esp_file(raw: &Path, name: &str) -> Result<Vec<u8>> {
    read_from(esp_slice(raw, false)?, raw, name)
}

/// Appends `params` to the APPEND line of both syslinux.cfg in the ESP of
/// the raw disk image `raw` (edit a copy: the image's checksums change).
pub fn append_kernel_params(raw: &Path, params: &str) -> Result<()> {
    let slice = esp_slice(raw, true)?;
    let fat = |e| Error::io("editing the ESP of", raw, e);
    let fs = FileSystem::new(slice, FsOptions::new().time_provider(&SYSTEM_CLOCK)).map_err(fat)?;
    for name in CFG_PATHS {
        let mut file = fs.root_dir().open_file(name).map_err(fat)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(fat)?;
        let edited = append_params(&text, params).ok_or_else(|| Error::Layout {
            path: raw.to_owned(),
            message: format!("{name} has no APPEND line"),
        })?;
        file.seek(SeekFrom::Start(0)).map_err(fat)?;
        file.truncate().map_err(fat)?;
        file.write_all(edited.as_bytes()).map_err(fat)?;
        file.flush().map_err(fat)?;
    }
    fs.unmount().map_err(fat)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_matches_the_contract_and_params_are_appended() {
        let cfg = syslinux_cfg("console=ttyS0 panic=10");
        assert_eq!(
            cfg,
            "DEFAULT appliance\nPROMPT 0\nTIMEOUT 0\nLABEL appliance\n  LINUX /a/vmlinuz\n  INITRD /a/initrd.img\n  APPEND console=ttyS0 panic=10\n"
        );
        let edited = append_params(&cfg, " appliance.ip=10.0.0.2/24 ").unwrap();
        assert!(edited.ends_with("  APPEND console=ttyS0 panic=10 appliance.ip=10.0.0.2/24\n"));
        assert_eq!(edited.lines().count(), 7);
        assert!(append_params("DEFAULT x\n", "a=b").is_none());
    }

    #[test]
    fn fat_dates_from_unix_time() {
        let dt = fat_datetime(1_767_225_600); // 2026-01-01T00:00:00Z
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2026, 1, 1));
        let dt = fat_datetime(951_827_696); // 2000-02-29T12:34:56Z
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2000, 2, 29));
        assert_eq!((dt.time.hour, dt.time.min, dt.time.sec), (12, 34, 56));
        assert_eq!(fat_datetime(0).date.year, 1980);
    }

    /// A FAT32 ESP (made with fatfs) in a small GPT disk: the kernel
    /// parameters land on both APPEND lines and nothing else changes.
    #[test]
    fn append_kernel_params_edits_both_cfgs_of_a_disk() {
        if crate::tools::which("sgdisk").is_none() {
            return; // a host tool the builder installs
        }
        let mut img = std::io::Cursor::new(vec![0u8; 40 << 20]);
        let opts = fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512);
        fatfs::format_volume(&mut img, opts).unwrap();
        {
            let clock = fixed_clock(1_767_225_600);
            let fs = FileSystem::new(&mut img, FsOptions::new().time_provider(clock)).unwrap();
            for d in ["EFI", "EFI/BOOT", "syslinux", "a"] {
                fs.root_dir().create_dir(d).unwrap();
            }
            for name in CFG_PATHS {
                let mut f = fs.root_dir().create_file(name).unwrap();
                f.write_all(syslinux_cfg("console=ttyS0").as_bytes())
                    .unwrap();
            }
            let mut k = fs.root_dir().create_file(KERNEL_PATH).unwrap();
            k.write_all(&[0x4d; 3000]).unwrap();
            drop(k);
            let e = fs
                .root_dir()
                .iter()
                .map(|e| e.unwrap())
                .find(|e| e.file_name() == "a")
                .unwrap();
            assert_eq!(
                e.modified().date.year,
                2026,
                "the fixed clock stamps entries"
            );
        }
        let d = tempfile::tempdir().unwrap();
        let (esp, root, mbr) = (
            d.path().join("esp"),
            d.path().join("root"),
            d.path().join("mbr"),
        );
        std::fs::write(&esp, img.into_inner()).unwrap();
        assert!(String::from_utf8(read_file(&esp, CFG_PATHS[1]).unwrap())
            .unwrap()
            .contains("APPEND console=ttyS0\n"));
        std::fs::write(&root, b"root").unwrap();
        std::fs::write(&mbr, [0u8; 440]).unwrap();
        let m = crate::manifest::Manifest::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/image.toml"
        )))
        .unwrap();
        let spec = crate::manifest::Disk {
            size_mib: 200,
            esp_mib: 40,
            root_mib: 8,
            ..m.disk
        };
        let raw = d.path().join("disk.raw");
        crate::disk::create(&raw, &spec, &mbr, &esp, &root).unwrap();

        append_kernel_params(&raw, "appliance.ip=10.0.0.2/24 appliance.hostname=a").unwrap();
        for name in CFG_PATHS {
            let cfg = String::from_utf8(read_esp_file(&raw, name).unwrap()).unwrap();
            assert_eq!(
                cfg,
                syslinux_cfg("console=ttyS0 appliance.ip=10.0.0.2/24 appliance.hostname=a"),
                "{name}"
            );
        }
        assert_eq!(read_esp_file(&raw, KERNEL_PATH).unwrap(), vec![0x4d; 3000]);
        // Root partition untouched.
        let bytes = std::fs::read(&raw).unwrap();
        assert_eq!(&bytes[41 << 20..(41 << 20) + 4], b"root");
        // A second edit appends again; a disk without an ESP is refused.
        append_kernel_params(&raw, "quiet").unwrap();
        let cfg = String::from_utf8(read_esp_file(&raw, CFG_PATHS[0]).unwrap()).unwrap();
        assert!(cfg.contains("appliance.hostname=a quiet\n"));
        assert!(append_kernel_params(&esp, "x").is_err());
    }
}
