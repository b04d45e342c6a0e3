//! Kernel modules: finding them in the kernel package, reading their
//! dependencies from each module's `.modinfo` (`depends=`, and `softdep=pre:`
//! through the declared aliases, since nothing resolves aliases at boot), the
//! load order, and depmod's files for the included modules: `modules.dep`,
//! `modules.softdep` (with the aliases resolved to module names) and
//! `modules.alias` (the `alias=` entries, which applianced matches against
//! the devices' modaliases to load only the drivers of present hardware).
//!
//! Debian's kernel package ships none of these (depmod runs at install
//! time), so they are computed here from the same data depmod's output encodes.

use std::collections::{BTreeMap, BTreeSet};
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

/// A resolved set of modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Every module, in an order it can be loaded in (dependencies and
    /// softdep prerequisites first).
    pub order: Vec<String>,
    /// Module name → path relative to /lib/modules/KVER.
    pub paths: BTreeMap<String, String>,
    /// Module name → direct hard dependencies (`depends=`).
    pub depends: BTreeMap<String, Vec<String>>,
    /// Module name → its `softdep=pre:` modules, aliases resolved to names
    /// (only modules that have some).
    pub softdeps: BTreeMap<String, Vec<String>>,
    /// Module name → its `alias=` patterns (only modules that have some).
    pub aliases: BTreeMap<String, Vec<String>>,
}

impl Resolved {
    /// Adds every module of `other` not already here (keeping this order first).
    pub fn merge(&mut self, other: &Resolved) {
        for name in &other.order {
            if !self.paths.contains_key(name) {
                self.order.push(name.clone());
                self.paths.insert(name.clone(), other.paths[name].clone());
                self.depends
                    .insert(name.clone(), other.depends[name].clone());
                if let Some(s) = other.softdeps.get(name) {
                    self.softdeps.insert(name.clone(), s.clone());
                }
                if let Some(a) = other.aliases.get(name) {
                    self.aliases.insert(name.clone(), a.clone());
                }
            }
        }
    }

    /// The set as depmod's `modules.alias`: `alias <pattern> <module>` for
    /// every `alias=` of every module, sorted by module, then pattern.
    pub fn modules_alias(&self) -> String {
        let mut out = String::from("# Aliases extracted from modules themselves.\n");
        for (name, patterns) in &self.aliases {
            let sorted: BTreeSet<&String> = patterns.iter().collect();
            for p in sorted {
                out.push_str(&format!("alias {p} {name}\n"));
            }
        }
        out
    }

    /// The set as depmod's `modules.softdep`: `softdep <module> pre: <modules>`,
    /// with the image's aliases already resolved (there is no modprobe at
    /// boot to resolve them), sorted by module.
    pub fn modules_softdep(&self) -> String {
        let mut out = String::from("# Soft dependencies extracted from modules themselves.\n");
        for (name, pre) in &self.softdeps {
            out.push_str(&format!("softdep {name} pre: {}\n", pre.join(" ")));
        }
        out
    }

    /// The set as depmod's `modules.dep`: one line per module, its
    /// transitive dependencies in reverse load order (modprobe loads a line
    /// from its end).
    pub fn modules_dep(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let mut closure = Vec::new();
            let mut seen = BTreeSet::new();
            for d in &self.depends[name] {
                self.post_order(d, &mut seen, &mut closure);
            }
            out.push_str(&self.paths[name]);
            out.push(':');
            for d in closure.iter().rev() {
                out.push(' ');
                out.push_str(&self.paths[d]);
            }
            out.push('\n');
        }
        out
    }

    fn post_order(&self, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        for d in &self.depends[name] {
            self.post_order(d, seen, out);
        }
        out.push(name.to_owned());
    }
}

/// Resolves `requested` (in order) with their dependencies from `catalog`.
pub fn resolve(
    catalog: &dyn Catalog,
    requested: &[String],
    aliases: &BTreeMap<String, String>,
) -> Result<Resolved> {
    let mut r = Resolved::default();
    let mut visiting = BTreeSet::new();
    for name in requested {
        visit(
            catalog,
            aliases,
            &normalize(name),
            "image.toml",
            &mut r,
            &mut visiting,
        )?;
    }
    Ok(r)
}

fn visit(
    catalog: &dyn Catalog,
    aliases: &BTreeMap<String, String>,
    name: &str,
    needed_by: &str,
    r: &mut Resolved,
    visiting: &mut BTreeSet<String>,
) -> Result<()> {
    if r.paths.contains_key(name) {
        return Ok(());
    }
    if !visiting.insert(name.to_owned()) {
        return Err(Error::ModuleCycle(name.to_owned()));
    }
    let (rel, info) = catalog.lookup(name)?.ok_or_else(|| Error::ModuleNotFound {
        name: name.to_owned(),
        needed_by: needed_by.to_owned(),
        dir: catalog.dir().to_owned(),
    })?;
    let mut pre = Vec::new();
    for soft in &info.softdep_pre {
        let target = aliases
            .get(soft)
            .map_or_else(|| normalize(soft), |m| normalize(m));
        let by = format!("{name} (softdep pre: {soft}; add an alias in [modules.aliases])");
        visit(catalog, aliases, &target, &by, r, visiting)?;
        pre.push(target);
    }
    for dep in &info.depends {
        visit(catalog, aliases, dep, name, r, visiting)?;
    }
    visiting.remove(name);
    r.order.push(name.to_owned());
    r.paths.insert(name.to_owned(), rel);
    r.depends.insert(name.to_owned(), info.depends);
    if !pre.is_empty() {
        r.softdeps.insert(name.to_owned(), pre);
    }
    if !info.aliases.is_empty() {
        r.aliases.insert(name.to_owned(), info.aliases);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(BTreeMap<&'static str, (&'static str, &'static str)>);

    impl Catalog for Fake {
        fn lookup(&self, name: &str) -> Result<Option<(String, ModInfo)>> {
            Ok(self
                .0
                .get(name)
                .map(|(path, modinfo)| (path.to_string(), parse_modinfo(modinfo.as_bytes()))))
        }
        fn dir(&self) -> &Path {
            Path::new("/lib/modules/test")
        }
    }

    fn fake() -> Fake {
        Fake(BTreeMap::from([
            (
                "nft_ct",
                (
                    "kernel/net/netfilter/nft_ct.ko",
                    "license=GPL\0depends=nf_tables,nf_conntrack\0",
                ),
            ),
            (
                "nf_tables",
                (
                    "kernel/net/netfilter/nf_tables.ko",
                    "depends=nfnetlink,libcrc32c\0",
                ),
            ),
            (
                "nf_conntrack",
                (
                    "kernel/net/netfilter/nf_conntrack.ko",
                    "depends=nf_defrag_ipv4,nf_defrag_ipv6,libcrc32c\0",
                ),
            ),
            (
                "nfnetlink",
                ("kernel/net/netfilter/nfnetlink.ko", "depends=\0"),
            ),
            (
                "libcrc32c",
                ("kernel/lib/libcrc32c.ko", "softdep=pre: crc32c\0depends=\0"),
            ),
            (
                "crc32c_generic",
                (
                    "kernel/crypto/crc32c_generic.ko",
                    "alias=crc32c\0depends=\0",
                ),
            ),
            (
                "nf_defrag_ipv4",
                ("kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko", "depends=\0"),
            ),
            (
                "nf_defrag_ipv6",
                ("kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko", "depends=\0"),
            ),
            (
                "sd_mod",
                ("kernel/drivers/scsi/sd_mod.ko", "depends=scsi_mod,t10-pi\0"),
            ),
            ("t10_pi", ("kernel/block/t10-pi.ko", "depends=\0")),
            (
                "scsi_mod",
                ("kernel/drivers/scsi/scsi_mod.ko", "depends=\0"),
            ),
            ("loop_a", ("a.ko", "depends=loop_b\0")),
            ("loop_b", ("b.ko", "depends=loop_a\0")),
        ]))
    }

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
    fn load_order_puts_dependencies_and_softdeps_first() {
        let r = resolve(&fake(), &names(&["nft_ct", "sd_mod"]), &aliases()).unwrap();
        assert_eq!(
            r.order,
            [
                "nfnetlink",
                "crc32c_generic",
                "libcrc32c",
                "nf_tables",
                "nf_defrag_ipv4",
                "nf_defrag_ipv6",
                "nf_conntrack",
                "nft_ct",
                "scsi_mod",
                "t10_pi",
                "sd_mod"
            ]
        );
        assert_eq!(r.paths["t10_pi"], "kernel/block/t10-pi.ko");
    }

    #[test]
    fn modules_dep_lists_transitive_dependencies_in_reverse_load_order() {
        let r = resolve(&fake(), &names(&["nft_ct"]), &aliases()).unwrap();
        let dep = r.modules_dep();
        let line = dep
            .lines()
            .find(|l| l.starts_with("kernel/net/netfilter/nft_ct.ko:"))
            .unwrap();
        assert_eq!(
            line,
            "kernel/net/netfilter/nft_ct.ko: kernel/net/netfilter/nf_conntrack.ko \
             kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko \
             kernel/net/netfilter/nf_tables.ko kernel/lib/libcrc32c.ko kernel/net/netfilter/nfnetlink.ko"
        );
        // Softdeps are not hard dependencies: libcrc32c's line is empty.
        assert!(dep.contains("kernel/lib/libcrc32c.ko:\n"));
        assert_eq!(dep.lines().count(), r.order.len());
    }

    #[test]
    fn missing_modules_cycles_and_unaliased_softdeps_are_named() {
        let err = resolve(&fake(), &names(&["nope"]), &aliases())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope") && err.contains("image.toml"), "{err}");
        let err = resolve(&fake(), &names(&["loop_a"]), &aliases())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
        let err = resolve(&fake(), &names(&["libcrc32c"]), &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("crc32c") && err.contains("modules.aliases"),
            "{err}"
        );
    }

    #[test]
    fn merge_keeps_the_first_order_and_adds_the_rest() {
        let a = resolve(&fake(), &names(&["sd_mod"]), &aliases()).unwrap();
        let b = resolve(&fake(), &names(&["sd_mod", "nf_tables"]), &aliases()).unwrap();
        let mut all = a.clone();
        all.merge(&b);
        assert_eq!(all.order.len(), 7);
        assert_eq!(all.order[..3], a.order[..]);
        assert_eq!(
            all.order[3..],
            ["nfnetlink", "crc32c_generic", "libcrc32c", "nf_tables"]
        );
        // Softdeps and aliases travel with their modules.
        assert_eq!(all.softdeps["libcrc32c"], ["crc32c_generic"]);
        assert_eq!(all.aliases["crc32c_generic"], ["crc32c"]);
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

    #[test]
    fn modules_alias_and_softdep_are_in_depmods_format_and_sorted() {
        let mut f = fake();
        f.0.insert(
            "virtio_net",
            (
                "kernel/drivers/net/virtio_net.ko",
                "alias=virtio:d00000001v*\0depends=\0",
            ),
        );
        f.0.insert(
            "e1000",
            (
                "kernel/drivers/net/e1000.ko",
                "alias=pci:v00008086d0000100Fsv*sd*bc*sc*i*\0alias=pci:v00008086d00001000sv*sd*bc*sc*i*\0depends=\0",
            ),
        );
        let r = resolve(
            &f,
            &names(&["virtio_net", "nf_tables", "e1000"]),
            &aliases(),
        )
        .unwrap();
        assert_eq!(
            r.modules_alias(),
            "# Aliases extracted from modules themselves.\n\
             alias crc32c crc32c_generic\n\
             alias pci:v00008086d00001000sv*sd*bc*sc*i* e1000\n\
             alias pci:v00008086d0000100Fsv*sd*bc*sc*i* e1000\n\
             alias virtio:d00000001v* virtio_net\n"
        );
        // The softdep names the module the image's alias resolved to.
        assert_eq!(
            r.modules_softdep(),
            "# Soft dependencies extracted from modules themselves.\n\
             softdep libcrc32c pre: crc32c_generic\n"
        );
        // The same modules asked in another order give the same files.
        let again = resolve(
            &f,
            &names(&["e1000", "nf_tables", "virtio_net"]),
            &aliases(),
        )
        .unwrap();
        assert_eq!(again.modules_alias(), r.modules_alias());
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
