//! Pinned Debian packages: downloaded with `apt-get download name=version`
//! into a cache (reused when present) and unpacked with `dpkg-deb -x`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::tools::run;

/// Marker written into an unpacked package once `dpkg-deb -x` succeeded.
const COMPLETE: &str = ".mkimage-complete";

/// The downloaded and unpacked packages of one build.
#[derive(Debug)]
pub struct Packages {
    cache: PathBuf,
    roots: BTreeMap<String, PathBuf>,
    /// Declaration order: library look-ups try packages in this order.
    order: Vec<String>,
    apt_updated: bool,
}

impl Packages {
    /// An empty set caching `.deb` files in `cache/debs` and their contents
    /// in `cache/extract`.
    pub fn new(cache: &Path) -> Self {
        Packages {
            cache: cache.to_owned(),
            roots: BTreeMap::new(),
            order: Vec::new(),
            apt_updated: false,
        }
    }

    /// Downloads (unless cached) and unpacks (unless done before) `name` at
    /// exactly `version`; returns the directory it is unpacked in.
    pub fn add(&mut self, name: &str, version: &str) -> Result<PathBuf> {
        let deb = self.download(name, version)?;
        let root = self
            .cache
            .join("extract")
            .join(format!("{name}_{}", encode_version(version)));
        if !root.join(COMPLETE).exists() {
            if root.exists() {
                std::fs::remove_dir_all(&root).ctx("removing", &root)?;
            }
            std::fs::create_dir_all(&root).ctx("creating", &root)?;
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
            std::fs::write(root.join(COMPLETE), b"").ctx("writing", root.join(COMPLETE))?;
        }
        if !self.roots.contains_key(name) {
            self.order.push(name.to_owned());
        }
        self.roots.insert(name.to_owned(), root.clone());
        Ok(root)
    }

    /// The directory package `name` is unpacked in.
    pub fn root(&self, name: &str) -> Option<&Path> {
        self.roots.get(name).map(PathBuf::as_path)
    }

    /// Unpacked packages in declaration order, as (name, directory).
    pub fn in_order(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.order
            .iter()
            .filter_map(|n| self.roots.get(n).map(|r| (n.as_str(), r.as_path())))
    }

    /// The host path of `path` (absolute, inside package `name`), which must exist.
    pub fn file(&self, name: &str, path: &str) -> Result<PathBuf> {
        let root = self.root(name).ok_or_else(|| Error::NotInPackage {
            package: name.to_owned(),
            path: path.to_owned(),
            root: self.cache.join("extract"),
        })?;
        let p = root.join(path.trim_start_matches('/'));
        if p.symlink_metadata().is_err() {
            return Err(Error::NotInPackage {
                package: name.to_owned(),
                path: path.to_owned(),
                root: root.to_owned(),
            });
        }
        Ok(p)
    }

    fn download(&mut self, name: &str, version: &str) -> Result<PathBuf> {
        let dir = self.cache.join("debs");
        std::fs::create_dir_all(&dir).ctx("creating", &dir)?;
        if let Some(deb) = find_deb(&dir, name, version)? {
            return Ok(deb);
        }
        // Into a private directory first, so an interrupted download never
        // looks like a cached package.
        let partial = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(&dir)
            .ctx("creating a directory in", &dir)?;
        println!("mkimage: downloading {name}={version}");
        let get = || {
            run(Command::new("apt-get")
                .args(["download", &format!("{name}={version}")])
                .current_dir(partial.path()))
        };
        let mut result = get();
        if result.is_err() && !self.apt_updated {
            // A fresh machine has no (or old) package lists.
            self.apt_updated = true;
            run(Command::new("apt-get").arg("update"))?;
            result = get();
        }
        if let Err(e) = result {
            let reason = match e {
                Error::Command { stderr, .. } => stderr,
                other => other.to_string(),
            };
            return Err(Error::PackageUnavailable {
                name: name.to_owned(),
                version: version.to_owned(),
                reason,
                available: madison(name),
            });
        }
        let got = find_deb(partial.path(), name, version)?.ok_or_else(|| Error::Command {
            program: "apt-get".into(),
            args: format!("download {name}={version}"),
            status: "exit status: 0".into(),
            stderr: format!("no {name}_*.deb appeared in {}", partial.path().display()),
        })?;
        check_control(&got, name, version)?;
        let file_name = got.file_name().map(PathBuf::from).unwrap_or_default();
        let dest = dir.join(file_name);
        std::fs::rename(&got, &dest).ctx("moving into the cache", &dest)?;
        Ok(dest)
    }
}

/// apt's file-name form of a version: the epoch colon is `%3a`.
pub fn encode_version(version: &str) -> String {
    version.replace(':', "%3a")
}

fn find_deb(dir: &Path, name: &str, version: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{name}_{}_", encode_version(version));
    for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
        let entry = entry.ctx("listing", dir)?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix) && file.ends_with(".deb") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Checks that the downloaded file is the package and version asked for.
fn check_control(deb: &Path, name: &str, version: &str) -> Result<()> {
    let out = run(Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .args(["Package", "Version"]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("Package: {name}\nVersion: {version}");
    if text.trim() != want {
        return Err(Error::Command {
            program: "dpkg-deb".into(),
            args: format!("-f {} Package Version", deb.display()),
            status: "exit status: 0".into(),
            stderr: format!("expected {want:?}, the file says {:?}", text.trim()),
        });
    }
    Ok(())
}

/// The versions `apt-cache madison` lists for `name`, comma-separated.
fn madison(name: &str) -> String {
    match run(Command::new("apt-cache").args(["madison", name])) {
        Ok(out) => {
            let versions = parse_madison(&String::from_utf8_lossy(&out.stdout));
            if versions.is_empty() {
                "none".into()
            } else {
                versions.join(", ")
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}

/// The version column of `apt-cache madison` output, without repeats.
pub fn parse_madison(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.split('|').nth(1).map(str::trim) {
            if !v.is_empty() && !out.iter().any(|o| o == v) {
                out.push(v.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_versions_are_the_second_column() {
        let text = "  nftables | 1.0.6-2+deb12u2 | http://deb.example/debian bookworm/main amd64 Packages\n\
                    \x20 nftables | 1.0.6-2+deb12u2 | http://deb.example/debian bookworm/main Sources\n\
                    \x20 nftables | 1.0.6-2 | http://deb.example/debian bookworm/main amd64 Packages\n";
        assert_eq!(parse_madison(text), ["1.0.6-2+deb12u2", "1.0.6-2"]);
        assert!(parse_madison("").is_empty());
    }

    #[test]
    fn epochs_are_encoded_as_apt_names_files() {
        assert_eq!(encode_version("2:6.2.1+dfsg1-1.1"), "2%3a6.2.1+dfsg1-1.1");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("libgmp10_2%3a6.2.1+dfsg1-1.1_amd64.deb"),
            b"",
        )
        .unwrap();
        std::fs::write(dir.path().join("libgmp10_2%3a6.3_amd64.deb"), b"").unwrap();
        let found = find_deb(dir.path(), "libgmp10", "2:6.2.1+dfsg1-1.1").unwrap();
        assert!(found
            .unwrap()
            .ends_with("libgmp10_2%3a6.2.1+dfsg1-1.1_amd64.deb"));
        assert!(find_deb(dir.path(), "libgmp10", "2:6.2").unwrap().is_none());
    }
}
