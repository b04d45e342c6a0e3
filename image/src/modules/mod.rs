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
//!
//! Reading the modules of a kernel package is in [`catalog`]; this module
//! resolves a stage's set and writes depmod's files for it.

pub mod catalog;

use std::collections::{BTreeMap, BTreeSet};

pub use catalog::{normalize, parse_modinfo, Catalog, KernelModules, ModInfo};

use crate::error::{Error, Result};

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
    use std::path::Path;

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
}
