//! Shared-library closure: reads DT_NEEDED and PT_INTERP of every ELF file
//! put into a tree and adds each library from the first declared package
//! that ships it, following the package's symlinks (`libfoo.so.1 ->
//! libfoo.so.1.2.3`) so the image has the same links as Debian.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::tree::{canonical, Tree};

/// Directories, relative to a package root, searched for a DT_NEEDED soname.
pub const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

/// A package tree to look libraries up in: (name for messages, root dir).
pub type Root<'a> = (&'a str, &'a Path);

/// What an ELF file needs from the dynamic linker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// DT_NEEDED sonames.
    pub libraries: Vec<String>,
    /// PT_INTERP, e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
}

/// Whether `bytes` start like an ELF file.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// The needs of the ELF file `bytes` (read from `path`, named in errors).
pub fn needs(bytes: &[u8], path: &Path) -> Result<Needs> {
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| Error::Elf {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Needs {
        libraries: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        interpreter: elf.interpreter.map(str::to_owned),
    })
}

/// Adds host file `host` at image path `path` and, if it is an ELF file,
/// every library it needs, transitively, from `roots` (first match wins).
pub fn add_with_libraries(
    tree: &mut Tree,
    path: &str,
    host: &Path,
    origin: &str,
    roots: &[Root<'_>],
) -> Result<()> {
    tree.host_file(path, host, origin)?;
    let mut queue = vec![(path.to_owned(), host.to_owned())];
    let mut seen = BTreeSet::new();
    while let Some((image_path, host)) = queue.pop() {
        if !seen.insert(image_path.clone()) {
            continue;
        }
        let bytes = std::fs::read(&host).ctx("reading", &host)?;
        if !is_elf(&bytes) {
            continue;
        }
        let needs = needs(&bytes, &host)?;
        if let Some(interp) = &needs.interpreter {
            let rel = interp.trim_start_matches('/');
            let (name, root) = roots
                .iter()
                .find(|(_, r)| r.join(rel).symlink_metadata().is_ok())
                .ok_or_else(|| Error::LibraryNotFound {
                    library: interp.clone(),
                    needed_by: format!("/{image_path}"),
                })?;
            queue.push(add_package_path(tree, name, root, rel)?);
        }
        for lib in &needs.libraries {
            let found = roots.iter().find_map(|(name, root)| {
                LIB_DIRS.iter().find_map(|d| {
                    let rel = format!("{d}/{lib}");
                    root.join(&rel)
                        .symlink_metadata()
                        .is_ok()
                        .then_some((*name, *root, rel))
                })
            });
            let (name, root, rel) = found.ok_or_else(|| Error::LibraryNotFound {
                library: lib.clone(),
                needed_by: format!("/{image_path}"),
            })?;
            queue.push(add_package_path(tree, name, root, &rel)?);
        }
    }
    Ok(())
}

/// Adds `rel` of package `name` (at `root`) at its merged-/usr image path,
/// following symlinks inside the package; returns the final file's image
/// path and host path.
pub fn add_package_path(
    tree: &mut Tree,
    name: &str,
    root: &Path,
    rel: &str,
) -> Result<(String, PathBuf)> {
    let origin = format!("package {name}");
    let mut rel = normalize(rel);
    for _ in 0..16 {
        let host = root.join(&rel);
        let meta = host.symlink_metadata().ctx("reading", &host)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&host).ctx("reading the link", &host)?;
            let target = target.to_string_lossy().into_owned();
            tree.symlink(&canonical(&rel), &target, &origin)?;
            rel = if let Some(abs) = target.strip_prefix('/') {
                normalize(abs)
            } else {
                let parent = rel.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
                normalize(&format!("{parent}/{target}"))
            };
            continue;
        }
        let path = canonical(&rel);
        tree.host_file(&path, &host, &origin)?;
        return Ok((path, host));
    }
    Err(Error::NotInPackage {
        package: name.to_owned(),
        path: format!("/{rel} (more than 16 symlinks)"),
        root: root.to_owned(),
    })
}

/// Lexically resolves `.` and `..` in a relative path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    #[test]
    fn host_binary_closure_has_libc_and_the_interpreter() {
        let host: &[Root<'_>] = &[("host", Path::new("/"))];
        let mut tree = Tree::new();
        tree.merged_usr().unwrap();
        let ls = Path::new("/bin/ls");
        add_with_libraries(&mut tree, "usr/bin/ls", ls, "test", host).unwrap();
        let needs = needs(&std::fs::read(ls).unwrap(), ls).unwrap();
        assert!(needs.libraries.iter().any(|l| l == "libc.so.6"));
        assert_eq!(
            needs.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert!(tree.contains("usr/lib/x86_64-linux-gnu/libc.so.6"));
        // Debian's interpreter is a link into /lib/x86_64-linux-gnu.
        let interp = tree
            .iter()
            .find(|(p, _)| *p == "usr/lib64/ld-linux-x86-64.so.2")
            .map(|(_, n)| n.clone());
        assert!(matches!(interp, Some(Node::Symlink { .. })), "{interp:?}");
        assert!(tree.contains("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
        // Every library ls needs (transitively) is there.
        for lib in needs.libraries {
            assert!(
                tree.contains(&format!("usr/lib/x86_64-linux-gnu/{lib}")),
                "{lib}"
            );
        }
    }

    #[test]
    fn nft_needs_its_whole_library_chain() {
        let nft = Path::new("/usr/sbin/nft");
        if !nft.exists() {
            return; // nftables is installed by the project's deps script
        }
        let mut tree = Tree::new();
        add_with_libraries(
            &mut tree,
            "usr/sbin/nft",
            nft,
            "t",
            &[("host", Path::new("/"))],
        )
        .unwrap();
        // libmd is needed by libbsd, which is needed by libedit: two hops away.
        for lib in [
            "libnftables.so.1",
            "libedit.so.2",
            "libbsd.so.0",
            "libmd.so.0",
            "libjansson.so.4",
        ] {
            let found = tree.iter().any(|(p, _)| p.ends_with(&format!("/{lib}")));
            assert!(found, "{lib}");
        }
    }

    #[test]
    fn a_library_in_no_package_is_named_with_its_user() {
        let empty = tempfile::tempdir().unwrap();
        let mut tree = Tree::new();
        let err = add_with_libraries(
            &mut tree,
            "usr/bin/ls",
            Path::new("/bin/ls"),
            "test",
            &[("empty", empty.path())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/usr/bin/ls"), "{err}");
        assert!(
            err.contains("ld-linux-x86-64.so.2") || err.contains("libc.so.6"),
            "{err}"
        );
    }

    #[test]
    fn non_elf_files_need_nothing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("script");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let mut tree = Tree::new();
        add_with_libraries(&mut tree, "usr/bin/script", &f, "t", &[]).unwrap();
        assert_eq!(tree.len(), 3);
        assert!(needs(b"\x7fELF garbage", &f).is_err());
    }

    #[test]
    fn relative_links_are_normalized() {
        assert_eq!(normalize("usr/lib/../lib/x/./y"), "usr/lib/x/y");
        assert_eq!(normalize("/a//b/"), "a/b");
    }
}
