//! Block devices as sysfs shows them (`/sys/class/block/*`): names, GPT
//! partition names, device numbers and the disk each partition is on. The
//! sysfs root is an argument, so tests build a small tree of their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name, e.g. `vda2`; the device file is `/dev/<name>`.
    pub name: String,
    /// The disk a partition is on (`vda`); `None` for a whole disk.
    pub disk: Option<String>,
    /// GPT partition name (`PARTNAME` in its uevent), if any.
    pub partname: Option<String>,
    /// `major:minor`.
    pub devnum: (u32, u32),
    /// Size in 512-byte sectors.
    pub sectors: u64,
}

impl BlockDev {
    /// The device file.
    pub fn dev_path(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }
}

/// Parses a sysfs `uevent` file (`KEY=value` lines).
pub fn parse_uevent(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Reads one device from its sysfs directory (`<class>/<name>`).
pub fn read_dev(dir: &Path) -> Option<BlockDev> {
    let name = dir.file_name()?.to_str()?.to_owned();
    let uevent = parse_uevent(&std::fs::read_to_string(dir.join("uevent")).ok()?);
    let num = |k: &str| uevent.get(k).and_then(|v| v.parse::<u32>().ok());
    let devnum = (num("MAJOR")?, num("MINOR")?);
    let partition = uevent.get("DEVTYPE").map(String::as_str) == Some("partition");
    // A partition's sysfs directory sits inside its disk's.
    let disk = if partition {
        std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.parent()?.file_name()?.to_str().map(str::to_owned))
    } else {
        None
    };
    let sectors = std::fs::read_to_string(dir.join("size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some(BlockDev {
        name: uevent.get("DEVNAME").cloned().unwrap_or(name),
        disk,
        partname: uevent.get("PARTNAME").cloned(),
        devnum,
        sectors,
    })
}

/// Every block device under `class` (normally `/sys/class/block`), by name.
pub fn scan(class: &Path) -> Vec<BlockDev> {
    let mut devs: Vec<BlockDev> = std::fs::read_dir(class)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| read_dev(&e.path()))
        .collect();
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    devs
}

/// The partition named `partname` (GPT name), on `disk` when given.
pub fn find_partition<'a>(
    devs: &'a [BlockDev],
    partname: &str,
    disk: Option<&str>,
) -> Option<&'a BlockDev> {
    devs.iter().find(|d| {
        d.partname.as_deref() == Some(partname) && (disk.is_none() || d.disk.as_deref() == disk)
    })
}

/// The device with number `devnum`.
pub fn find_devnum(devs: &[BlockDev], devnum: (u32, u32)) -> Option<&BlockDev> {
    devs.iter().find(|d| d.devnum == devnum)
}

/// Splits a `st_dev` into major and minor numbers.
pub fn split_devnum(dev: u64) -> (u32, u32) {
    let major = libc::major(dev);
    let minor = libc::minor(dev);
    (major, minor)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// A fake device: name, disk (for a partition), GPT name, first minor, sectors.
    pub type Fake<'a> = (&'a str, Option<&'a str>, Option<&'a str>, u32, u64);

    /// A sysfs tree: `class/<name>` links into `devices/.../<disk>/<part>`.
    pub fn fake_sysfs(root: &Path, devs: &[Fake<'_>]) -> PathBuf {
        let class = root.join("class/block");
        fs::create_dir_all(&class).unwrap();
        for (i, (name, disk, partname, minor_base, sectors)) in devs.iter().enumerate() {
            let dir = match disk {
                Some(d) => root.join("devices/pci/block").join(d).join(name),
                None => root.join("devices/pci/block").join(name),
            };
            fs::create_dir_all(&dir).unwrap();
            let mut uevent = format!(
                "MAJOR=254\nMINOR={}\nDEVNAME={name}\nDEVTYPE={}\n",
                minor_base + i as u32,
                if disk.is_some() { "partition" } else { "disk" }
            );
            if let Some(p) = partname {
                uevent.push_str(&format!("PARTN={i}\nPARTNAME={p}\n"));
            }
            fs::write(dir.join("uevent"), uevent).unwrap();
            fs::write(dir.join("size"), format!("{sectors}\n")).unwrap();
            std::os::unix::fs::symlink(&dir, class.join(name)).unwrap();
        }
        class
    }

    #[test]
    fn partitions_are_found_by_name_on_their_disk() {
        let dir = tempfile::tempdir().unwrap();
        let class = fake_sysfs(
            dir.path(),
            &[
                ("vda", None, None, 0, 4_194_304),
                ("vda1", Some("vda"), Some("esp"), 0, 131_072),
                ("vda2", Some("vda"), Some("root-a"), 0, 524_288),
                ("vda4", Some("vda"), Some("data"), 0, 2_000_000),
                ("vdb", None, None, 16, 2048),
                ("vdb1", Some("vdb"), Some("data"), 16, 1024),
            ],
        );
        let devs = scan(&class);
        assert_eq!(devs.len(), 6);
        let root = find_partition(&devs, "root-a", None).unwrap();
        assert_eq!(root.name, "vda2");
        assert_eq!(root.disk.as_deref(), Some("vda"));
        assert_eq!(root.devnum, (254, 2));
        assert_eq!(root.dev_path(), PathBuf::from("/dev/vda2"));
        assert_eq!(
            find_partition(&devs, "data", Some("vda")).unwrap().name,
            "vda4"
        );
        assert_eq!(
            find_partition(&devs, "data", Some("vdb")).unwrap().name,
            "vdb1"
        );
        assert_eq!(find_devnum(&devs, (254, 3)).unwrap().name, "vda4");
        assert!(find_partition(&devs, "root-b", None).is_none());
        assert_eq!(devs[0].disk, None);
        assert_eq!(devs[0].sectors, 4_194_304);
    }

    #[test]
    fn uevent_lines_are_read() {
        let u = parse_uevent("MAJOR=8\nMINOR=1\nDEVNAME=sda1\nPARTNAME=root-a\nbogus\n");
        assert_eq!(u["PARTNAME"], "root-a");
        assert_eq!(u.len(), 4);
    }
}
