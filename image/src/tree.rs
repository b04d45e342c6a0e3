//! A file tree to be put into an image (initramfs or root filesystem), held
//! as data: every path with what it is and where its bytes come from. Both
//! the cpio writer and the directory handed to mkfs.erofs are made from it,
//! so ownership, modes and order are decided here and nowhere else.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the build host.
    Host(PathBuf),
    /// Bytes made by the builder.
    Bytes(Vec<u8>),
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Its contents.
        source: Source,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as stored.
        target: String,
    },
    /// A character device node.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
        /// Permission bits.
        mode: u32,
    },
}

/// A tree of image paths (relative, `usr/sbin/nft`), kept sorted.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, (Node, String)>,
}

/// Top-level directories that are symlinks into /usr (merged /usr).
pub const MERGED_USR: &[&str] = &["bin", "sbin", "lib", "lib64"];

/// The merged-/usr form of an absolute or relative path: `/sbin/mke2fs` →
/// `usr/sbin/mke2fs`, `/lib/x86_64-linux-gnu/libc.so.6` →
/// `usr/lib/x86_64-linux-gnu/libc.so.6`.
pub fn canonical(path: &str) -> String {
    let rel = path.trim_start_matches('/');
    let first = rel.split('/').next().unwrap_or_default();
    if MERGED_USR.contains(&first) {
        format!("usr/{rel}")
    } else {
        rel.to_owned()
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the merged-/usr symlinks and their target directories.
    pub fn merged_usr(&mut self) -> Result<()> {
        for d in MERGED_USR {
            self.dir(&format!("usr/{d}"), 0o755)?;
            self.symlink(d, &format!("usr/{d}"), "merged /usr")?;
        }
        Ok(())
    }

    /// Adds a directory (and its parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.insert(path, Node::Dir { mode }, "directory")
    }

    /// Adds a regular file (and its parent directories, mode 0755).
    pub fn file(&mut self, path: &str, source: Source, mode: u32, origin: &str) -> Result<()> {
        self.insert(path, Node::File { source, mode }, origin)
    }

    /// Adds a host file with its own permission bits.
    pub fn host_file(&mut self, path: &str, host: &Path, origin: &str) -> Result<()> {
        let mode = std::fs::metadata(host)
            .ctx("reading", host)?
            .permissions()
            .mode()
            & 0o7777;
        self.file(path, Source::Host(host.to_owned()), mode, origin)
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str, origin: &str) -> Result<()> {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
            origin,
        )
    }

    /// Adds a character device node.
    pub fn chardev(&mut self, path: &str, major: u32, minor: u32, mode: u32) -> Result<()> {
        self.insert(path, Node::CharDev { major, minor, mode }, "device node")
    }

    /// Whether `path` is in the tree.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path.trim_start_matches('/'))
    }

    /// The entries, sorted by path (parents before their children).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, (n, _))| (p.as_str(), n))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn insert(&mut self, path: &str, node: Node, origin: &str) -> Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty()
            || path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::TreeConflict {
                path: path.to_owned(),
                first: "a well-formed image path".into(),
                second: origin.to_owned(),
            });
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            match self.nodes.get(parent) {
                Some((Node::Dir { .. }, _)) => {}
                Some((_, first)) => {
                    return Err(Error::TreeConflict {
                        path: parent.to_owned(),
                        first: first.clone(),
                        second: format!("the directory of {path} ({origin})"),
                    })
                }
                None => self.insert(parent, Node::Dir { mode: 0o755 }, "directory")?,
            }
        }
        match self.nodes.get(path) {
            None => {
                self.nodes
                    .insert(path.to_owned(), (node, origin.to_owned()));
                Ok(())
            }
            Some((existing, _)) if *existing == node => Ok(()),
            // An implicit parent directory takes the mode asked for later.
            Some((Node::Dir { .. }, _)) if matches!(node, Node::Dir { .. }) => {
                self.nodes
                    .insert(path.to_owned(), (node, origin.to_owned()));
                Ok(())
            }
            Some((_, first)) => Err(Error::TreeConflict {
                path: path.to_owned(),
                first: first.clone(),
                second: origin.to_owned(),
            }),
        }
    }

    /// Writes the tree into `dest` (which must not exist), e.g. for
    /// mkfs.erofs. Device nodes are refused: the root tree has none.
    pub fn materialize(&self, dest: &Path) -> Result<()> {
        std::fs::create_dir(dest).ctx("creating", dest)?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
            .ctx("setting the mode of", dest)?;
        for (path, node) in self.iter() {
            let p = dest.join(path);
            match node {
                Node::Dir { mode } => {
                    std::fs::create_dir(&p).ctx("creating", &p)?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                        .ctx("setting the mode of", &p)?;
                }
                Node::File { source, mode } => {
                    match source {
                        Source::Host(h) => {
                            std::fs::copy(h, &p).ctx("copying", h)?;
                        }
                        Source::Bytes(b) => std::fs::write(&p, b).ctx("writing", &p)?,
                    }
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
                        .ctx("setting the mode of", &p)?;
                }
                Node::Symlink { target } => {
                    std::os::unix::fs::symlink(target, &p).ctx("creating the symlink", &p)?
                }
                Node::CharDev { .. } => {
                    return Err(Error::TreeConflict {
                        path: path.to_owned(),
                        first: "a filesystem tree without device nodes".into(),
                        second: "a device node".into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Total bytes of regular file contents.
    pub fn content_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for (_, node) in self.iter() {
            if let Node::File { source, .. } = node {
                total += match source {
                    Source::Host(h) => std::fs::metadata(h).ctx("reading", h)?.len(),
                    Source::Bytes(b) => b.len() as u64,
                };
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_paths() {
        assert_eq!(canonical("/sbin/mke2fs"), "usr/sbin/mke2fs");
        assert_eq!(
            canonical("/lib64/ld-linux-x86-64.so.2"),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(canonical("/usr/sbin/nft"), "usr/sbin/nft");
        assert_eq!(canonical("/etc/mke2fs.conf"), "etc/mke2fs.conf");
        assert_eq!(canonical("/library/x"), "library/x");
    }

    #[test]
    fn parents_are_added_and_conflicts_named() {
        let mut t = Tree::new();
        t.file("a/b/c", Source::Bytes(b"x".to_vec()), 0o644, "one")
            .unwrap();
        t.file("a/b/c", Source::Bytes(b"x".to_vec()), 0o644, "same again")
            .unwrap();
        let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c"]);
        let err = t
            .file("a/b/c", Source::Bytes(b"y".to_vec()), 0o644, "two")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a/b/c") && err.contains("one") && err.contains("two"),
            "{err}"
        );
        t.symlink("l", "a", "link").unwrap();
        assert!(t
            .file("l/x", Source::Bytes(vec![]), 0o644, "under a link")
            .is_err());
        assert!(t.dir("a/../etc", 0o755).is_err());
    }

    #[test]
    fn materialized_tree_has_modes_and_links() {
        let mut t = Tree::new();
        t.merged_usr().unwrap();
        t.file("usr/bin/x", Source::Bytes(b"#!".to_vec()), 0o755, "x")
            .unwrap();
        t.dir("tmp", 0o1777).unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        t.materialize(&root).unwrap();
        let mode = |p: &str| {
            std::fs::metadata(root.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("usr/bin/x"), 0o755);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(std::fs::read(root.join("bin/x")).unwrap(), b"#!");
        let mut dev = Tree::new();
        dev.chardev("dev/console", 5, 1, 0o600).unwrap();
        assert!(dev.materialize(&d.path().join("dev")).is_err());
    }
}
