//! A kernel's modules as the build finds them: each `.ko` of an unpacked
//! kernel package indexed by module name, and what its `.modinfo` section
//! says (`depends=`, `softdep=`, `alias=`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Module names use `_`; file names and `depends=` may use `-`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// What a module's `.modinfo` says about its dependencies and devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `depends=`: modules whose symbols it uses.
    pub depends: Vec<String>,
    /// `softdep=pre:`: modules (or aliases) to load before it.
    pub softdep_pre: Vec<String>,
    /// `alias=`: the patterns it is requested by (device modaliases such as
    /// `pci:v00001AF4d*sv*sd*bc*sc*i*`, or names such as `fs-erofs`).
    pub aliases: Vec<String>,
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in section.split(|b| *b == 0) {
        let entry = String::from_utf8_lossy(entry);
        if let Some(alias) = entry.strip_prefix("alias=") {
            // A pattern with white space could not be written as one word.
            if !alias.is_empty() && !alias.contains(char::is_whitespace) {
                info.aliases.push(alias.to_owned());
            }
        } else if let Some(deps) = entry.strip_prefix("depends=") {
            info.depends
                .extend(deps.split(',').filter(|d| !d.is_empty()).map(normalize));
        } else if let Some(soft) = entry.strip_prefix("softdep=") {
            // "pre: a b post: c"
            let mut pre = false;
            for word in soft.split_whitespace() {
                match word {
                    "pre:" => pre = true,
                    "post:" => pre = false,
                    w if pre => info.softdep_pre.push(w.to_owned()),
                    _ => {}
                }
            }
        }
    }
    info
}

/// Where to find modules and what they need.
pub trait Catalog {
    /// The module's path relative to /lib/modules/KVER and its modinfo, or
    /// `None` if the kernel has no such module.
    fn lookup(&self, name: &str) -> Result<Option<(String, ModInfo)>>;
    /// The directory named in "not found" errors.
    fn dir(&self) -> &Path;
}

/// The modules of an unpacked kernel package.
#[derive(Debug)]
pub struct KernelModules {
    dir: PathBuf,
    paths: BTreeMap<String, String>,
}

impl KernelModules {
    /// Indexes every `.ko` under `dir` (= `/lib/modules/KVER`) by module name.
    pub fn scan(dir: &Path) -> Result<Self> {
        let mut paths = BTreeMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).ctx("listing", &d)? {
                let entry = entry.ctx("listing", &d)?;
                let p = entry.path();
                if entry.file_type().ctx("reading", &p)?.is_dir() {
                    stack.push(p);
                } else if let Some(stem) = p
                    .file_name()
                    .and_then(|f| f.to_str())
                    .and_then(|f| f.strip_suffix(".ko"))
                {
                    if let Ok(rel) = p.strip_prefix(dir) {
                        paths.insert(normalize(stem), rel.to_string_lossy().into_owned());
                    }
                }
            }
        }
        Ok(KernelModules {
            dir: dir.to_owned(),
            paths,
        })
    }

    /// The host path of a module given its relative path.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Catalog for KernelModules {
    fn lookup(&self, name: &str) -> Result<Option<(String, ModInfo)>> {
        let Some(rel) = self.paths.get(&normalize(name)) else {
            return Ok(None);
        };
        let path = self.dir.join(rel);
        let bytes = std::fs::read(&path).ctx("reading", &path)?;
        let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| Error::Elf {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let section = elf
            .section_headers
            .iter()
            .find(|s| elf.shdr_strtab.get_at(s.sh_name) == Some(".modinfo"));
        let info = match section {
            Some(s) => {
                let start = s.sh_offset as usize;
                let end = start.saturating_add(s.sh_size as usize);
                let data = bytes.get(start..end).ok_or_else(|| Error::Elf {
                    path: path.clone(),
                    message: ".modinfo lies outside the file".into(),
                })?;
                parse_modinfo(data)
            }
            None => ModInfo::default(),
        };
        Ok(Some((rel.clone(), info)))
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::modules::resolve;

    fn aliases() -> BTreeMap<String, String> {
        BTreeMap::from([("crc32c".to_owned(), "crc32c_generic".to_owned())])
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modinfo_depends_and_softdeps() {
        let i = parse_modinfo(
            b"softdep=pre: crypto-crc32c post: x\0depends=jbd2,mbcache,t10-pi\0vermagic=6.1\0",
        );
        assert_eq!(i.depends, ["jbd2", "mbcache", "t10_pi"]);
        assert_eq!(i.softdep_pre, ["crypto-crc32c"]);
        assert_eq!(parse_modinfo(b"depends=\0"), ModInfo::default());
    }

    #[test]
    fn modinfo_aliases_are_read() {
        let i = parse_modinfo(
            b"alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0depends=virtio\0alias=virtio:d00000001v*\0alias=\0",
        );
        assert_eq!(
            i.aliases,
            ["pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio:d00000001v*"]
        );
    }

    /// A minimal relocatable ELF64 object (what a `.ko` is) whose only
    /// contents are a `.modinfo` section holding `modinfo`.
    fn ko(modinfo: &str) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let data_at = 64u64;
        let strtab_at = data_at + modinfo.len() as u64;
        let sh_at = (strtab_at + shstrtab.len() as u64).next_multiple_of(8);
        let mut f = Vec::new();
        f.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        f.extend(1u16.to_le_bytes()); // ET_REL
        f.extend(62u16.to_le_bytes()); // EM_X86_64
        f.extend(1u32.to_le_bytes());
        f.extend(0u64.to_le_bytes()); // entry
        f.extend(0u64.to_le_bytes()); // no program headers
        f.extend(sh_at.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        for v in [64u16, 0, 0, 64, 3, 2] {
            // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
            f.extend(v.to_le_bytes());
        }
        f.extend(modinfo.as_bytes());
        f.extend(shstrtab);
        f.resize(sh_at as usize, 0);
        let mut section = |name: u32, kind: u32, flags: u64, at: u64, size: u64| {
            f.extend(name.to_le_bytes());
            f.extend(kind.to_le_bytes());
            f.extend(flags.to_le_bytes());
            f.extend(0u64.to_le_bytes()); // addr
            f.extend(at.to_le_bytes());
            f.extend(size.to_le_bytes());
            f.extend([0u8; 8]); // link, info
            f.extend(1u64.to_le_bytes()); // align
            f.extend(0u64.to_le_bytes()); // entsize
        };
        section(0, 0, 0, 0, 0);
        section(1, 1, 2, data_at, modinfo.len() as u64); // PROGBITS, ALLOC
        section(10, 3, 0, strtab_at, shstrtab.len() as u64); // STRTAB
        f
    }

    /// Writes the fixture kernel's `/lib/modules/KVER` under `root`: `.ko`
    /// files in nested directories (one named with `-`, as the kernel's
    /// files may be), plus files that are not modules.
    fn fixture_kernel(root: &Path) -> PathBuf {
        let dir = root.join("lib/modules/6.1.0-test-amd64");
        let modules: [(&str, &str); 7] = [
            (
                "fs/ext4/ext4.ko",
                "license=GPL\0depends=jbd2,mbcache\0softdep=pre: crc32c\0alias=fs-ext4\0",
            ),
            ("fs/jbd2/jbd2.ko", "depends=\0"),
            ("fs/mbcache.ko", "depends=\0"),
            (
                "crypto/crc32c_generic.ko",
                "depends=\0alias=crypto-crc32c\0alias=crc32c\0",
            ),
            (
                "drivers/virtio/virtio_pci.ko",
                "depends=virtio-ring\0alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0",
            ),
            ("drivers/virtio/virtio-ring.ko", "depends=\0"),
            (
                "drivers/net/ethernet/intel/e1000/e1000.ko",
                "depends=\0alias=pci:v00008086d0000100Esv*sd*bc*sc*i*\0",
            ),
        ];
        for (rel, modinfo) in modules {
            let path = dir.join("kernel").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, ko(modinfo)).unwrap();
        }
        // Not modules: skipped by the scan, never read as ELF.
        std::fs::write(dir.join("kernel/fs/README"), "not a module").unwrap();
        std::fs::write(dir.join("modules.builtin"), "kernel/fs/erofs/erofs.ko\n").unwrap();
        dir
    }

    #[test]
    fn kernel_modules_on_disk_are_scanned_read_and_resolved() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fixture_kernel(tmp.path());
        let km = KernelModules::scan(&dir).unwrap();
        assert_eq!(km.dir(), dir);
        assert_eq!(
            km.host_path("kernel/fs/jbd2/jbd2.ko"),
            dir.join("kernel/fs/jbd2/jbd2.ko")
        );
        // The file virtio-ring.ko is the module virtio_ring, found by either name.
        let (rel, info) = km.lookup("virtio-ring").unwrap().unwrap();
        assert_eq!(rel, "kernel/drivers/virtio/virtio-ring.ko");
        assert_eq!(info, ModInfo::default());
        assert!(
            km.lookup("erofs").unwrap().is_none(),
            "built in, not a module file"
        );
        let (_, info) = km.lookup("ext4").unwrap().unwrap();
        assert_eq!(info.depends, ["jbd2", "mbcache"]);
        assert_eq!(info.softdep_pre, ["crc32c"]);
        assert_eq!(info.aliases, ["fs-ext4"]);

        let r = resolve(&km, &names(&["ext4", "virtio_pci", "e1000"]), &aliases()).unwrap();
        assert_eq!(
            r.order,
            [
                "crc32c_generic",
                "jbd2",
                "mbcache",
                "ext4",
                "virtio_ring",
                "virtio_pci",
                "e1000"
            ]
        );
        assert_eq!(
            r.modules_dep(),
            "kernel/crypto/crc32c_generic.ko:\n\
             kernel/fs/jbd2/jbd2.ko:\n\
             kernel/fs/mbcache.ko:\n\
             kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/drivers/virtio/virtio-ring.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio-ring.ko\n\
             kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n"
        );
        assert_eq!(
            r.modules_softdep(),
            "# Soft dependencies extracted from modules themselves.\n\
             softdep ext4 pre: crc32c_generic\n"
        );
        assert_eq!(
            r.modules_alias(),
            "# Aliases extracted from modules themselves.\n\
             alias crc32c crc32c_generic\n\
             alias crypto-crc32c crc32c_generic\n\
             alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n\
             alias fs-ext4 ext4\n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n"
        );

        // A module the kernel lacks is named with the directory searched.
        let err = resolve(&km, &names(&["nft_ct"]), &aliases())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nft_ct") && err.contains(&dir.display().to_string()),
            "{err}"
        );
        // A file named .ko that is no ELF object is refused with its path.
        std::fs::write(dir.join("kernel/fs/mbcache.ko"), "garbage").unwrap();
        let err = KernelModules::scan(&dir)
            .unwrap()
            .lookup("mbcache")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kernel/fs/mbcache.ko"), "{err}");
    }
}
