//! Runs one [`Action`] against the kernel: over rtnetlink, and for
//! [`Action::PromoteSecondaries`] by writing the sysctl under `/proc/sys`.
//! Thin on purpose: deciding what to do is [`mod@crate::plan`]'s job.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};

use crate::model::{Action, RouteAction};

/// Why one action failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kernel refused the request.
    #[error("the kernel refused to {action}: {source}")]
    Kernel {
        /// The action, as text.
        action: String,
        /// The netlink error, with the kernel's errno.
        source: rtnetlink::Error,
    },
    /// Writing a sysctl failed.
    #[error(
        "cannot turn on IPv4 promote_secondaries for link {link:?}: writing 1 to {} failed: \
         {source}; check that /proc is mounted and writable and that applianced runs as root \
         in the intended network namespace",
        path.display()
    )]
    Sysctl {
        /// Link name.
        link: String,
        /// The sysctl file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The link name cannot name a sysctl directory (a hand-made plan).
    #[error("cannot set a sysctl for link {link:?}: not a valid interface name")]
    BadLinkName {
        /// The link name.
        link: String,
    },
    /// The action mixes IPv4 and IPv6 (a planner bug or a hand-made plan).
    #[error("cannot {action}: destination and next hop are of different IP families")]
    MixedFamilies {
        /// The action, as text.
        action: String,
    },
}

impl ApplyError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ApplyError::Kernel {
                source: rtnetlink::Error::NetlinkError(m),
                ..
            } => m.code.map(|c| -c.get()),
            ApplyError::Sysctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Where the kernel's sysctls live. `/proc/sys/net` shows the network
/// namespace of the thread that opens the file.
pub const SYSCTL_ROOT: &str = "/proc/sys";

/// `<sysctl_root>/net/ipv4/conf/<link>/promote_secondaries`.
pub fn promote_secondaries_path(sysctl_root: &Path, link: &str) -> PathBuf {
    sysctl_root
        .join("net/ipv4/conf")
        .join(link)
        .join("promote_secondaries")
}

/// Writes `1` to `link`'s `promote_secondaries` under `sysctl_root`
/// ([`SYSCTL_ROOT`] on a live system). Never creates the file: a missing one
/// means the link (or its IPv4 settings) does not exist.
///
/// Synchronous on purpose: the write must come from the calling thread, whose
/// network namespace `/proc/sys/net` shows (a blocking pool thread may sit in
/// another one).
pub fn set_promote_secondaries(sysctl_root: &Path, link: &str) -> Result<(), ApplyError> {
    // The kernel forbids these in interface names; refusing them keeps a
    // hand-made plan from writing outside the link's directory.
    if link.is_empty() || link == "." || link == ".." || link.contains('/') {
        return Err(ApplyError::BadLinkName { link: link.into() });
    }
    let path = promote_secondaries_path(sysctl_root, link);
    let write = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .write_all(b"1\n")
    };
    write().map_err(|source| ApplyError::Sysctl {
        link: link.into(),
        path: path.clone(),
        source,
    })
}

/// Runs `action` on the kernel behind `handle`.
pub async fn run(handle: &Handle, action: &Action) -> Result<(), ApplyError> {
    let kernel = |source| ApplyError::Kernel {
        action: action.to_string(),
        source,
    };
    match action {
        Action::SetMtu { index, mtu, .. } => {
            let msg = LinkUnspec::new_with_index(*index).mtu(*mtu).build();
            handle.link().set(msg).execute().await.map_err(kernel)
        }
        Action::SetUp { index, .. } => {
            let msg = LinkUnspec::new_with_index(*index).up().build();
            handle.link().set(msg).execute().await.map_err(kernel)
        }
        Action::PromoteSecondaries { link } => {
            set_promote_secondaries(Path::new(SYSCTL_ROOT), link)
        }
        Action::AddAddress { index, addr, .. } => {
            let req = handle.address().add(*index, addr.addr(), addr.prefix_len());
            req.execute().await.map_err(kernel)
        }
        Action::DelAddress { index, addr, .. } => handle
            .address()
            .del(address_message(*index, *addr))
            .execute()
            .await
            .map_err(kernel),
        Action::AddRoute(r) => {
            let msg = route_message(r).ok_or_else(|| mixed(action))?;
            handle.route().add(msg).execute().await.map_err(kernel)
        }
        Action::DelRoute(r) => {
            let msg = route_message(r).ok_or_else(|| mixed(action))?;
            handle.route().del(msg).execute().await.map_err(kernel)
        }
    }
}

fn mixed(action: &Action) -> ApplyError {
    ApplyError::MixedFamilies {
        action: action.to_string(),
    }
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr {
        IpNet::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a.addr(), a.prefix_len())
            .build(),
        IpNet::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a.addr(), a.prefix_len())
            .build(),
    }
}

/// Builds the route message; `None` if destination and next hop differ in family.
fn route_message(r: &RouteAction) -> Option<RouteMessage> {
    match (r.key.dst, r.key.via) {
        (IpNet::V4(d), via) => {
            let b =
                RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            let b = match via {
                Some(IpAddr::V4(g)) => b.gateway(g),
                None => b.scope(RouteScope::Link),
                Some(IpAddr::V6(_)) => return None,
            };
            Some(finish(b, r))
        }
        (IpNet::V6(d), via) => {
            let b =
                RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(d.addr(), d.prefix_len());
            let b = match via {
                Some(IpAddr::V6(g)) => b.gateway(g),
                None => b,
                Some(IpAddr::V4(_)) => return None,
            };
            Some(finish(b, r))
        }
    }
}

/// Sets what both families share: protocol (our mark), output link, metric.
fn finish<T>(mut b: RouteMessageBuilder<T>, r: &RouteAction) -> RouteMessage {
    b = b.protocol(RouteProtocol::from(r.protocol));
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    if let Some(p) = r.priority {
        b = b.priority(p);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysctl tree with `link`'s file holding `0`.
    fn fake_root(link: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("net/ipv4/conf").join(link);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("promote_secondaries"), "0\n").expect("write");
        root
    }

    #[test]
    fn writes_one_to_the_links_file() {
        let root = fake_root("eth0");
        set_promote_secondaries(root.path(), "eth0").expect("set");
        let path = root.path().join("net/ipv4/conf/eth0/promote_secondaries");
        assert_eq!(promote_secondaries_path(root.path(), "eth0"), path);
        assert_eq!(std::fs::read_to_string(path).expect("read").trim(), "1");
    }

    #[test]
    fn missing_link_names_link_and_path_and_creates_nothing() {
        let root = fake_root("eth0");
        let err = set_promote_secondaries(root.path(), "eth9").expect_err("no such link");
        let path = promote_secondaries_path(root.path(), "eth9");
        let msg = err.to_string();
        assert!(msg.contains("\"eth9\""), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT as i32));
        assert!(!path.exists());
    }

    #[test]
    fn names_that_escape_the_directory_are_refused() {
        let root = fake_root("eth0");
        for bad in ["", ".", "..", "../../x", "a/b"] {
            let err = set_promote_secondaries(root.path(), bad).expect_err(bad);
            assert!(
                matches!(err, ApplyError::BadLinkName { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn action_text_names_the_sysctl() {
        let a = Action::PromoteSecondaries {
            link: "eth0".into(),
        };
        assert_eq!(
            a.to_string(),
            "set net.ipv4.conf.eth0.promote_secondaries to 1"
        );
    }
}
