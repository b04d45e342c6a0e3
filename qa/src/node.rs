//! A hosted applianced node: its own namespace on a [`Lan`], its own state,
//! runtime and services directories, and an API client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::Context;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::{ClusterStatusReply, ClusterStatusRequest, StatusRequest};
use tonic::transport::Channel;

use crate::lan::Lan;
use crate::netns::Netns;
use crate::{bins, wait};

/// What a test asks of a node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name, also its hostname and (with the LAN tag) its namespace name.
    pub name: String,
    /// Addresses with prefix for eth0, e.g. `10.77.0.11/24`.
    pub addresses: Vec<String>,
    /// Roles, e.g. `["frontend", "backend"]`.
    pub roles: Vec<String>,
    /// Extra manifests (file name, TOML) beside the repository's.
    pub extra_manifests: Vec<(String, String)>,
    /// Leave out the repository's manifests.
    pub no_default_manifests: bool,
    /// Extra applianced arguments, e.g. `--reconcile-interval 1`.
    pub extra_args: Vec<String>,
    /// Extra environment of applianced, e.g. `FAILPOINTS` (needs a build
    /// with `--features applianced/failpoints`, as `make test` does).
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    /// A front-end and back-end node with one IPv4 address.
    pub fn new(name: &str, addr: &str) -> Self {
        Self {
            name: name.to_owned(),
            addresses: vec![addr.to_owned()],
            roles: vec!["frontend".into(), "backend".into()],
            extra_manifests: Vec::new(),
            no_default_manifests: false,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The node's config file.
    pub fn config_toml(&self) -> String {
        let quote = |v: &[String]| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "version = 1\nhostname = {:?}\nroles = [{}]\n\n[[interface]]\nname = \"eth0\"\naddresses = [{}]\n",
            self.name,
            quote(&self.roles),
            quote(&self.addresses)
        )
    }
}

/// A running hosted node. Dropping it kills applianced and removes the namespace.
#[derive(Debug)]
pub struct HostedNode {
    /// The node's name.
    pub name: String,
    /// Its network namespace.
    pub ns: Netns,
    /// State, runtime and services directories live below this.
    pub root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Extra environment of applianced, applied at each [`HostedNode::launch`]
    /// (starts with [`NodeSpec::env`]).
    pub env: Vec<(String, String)>,
}

impl HostedNode {
    /// Creates the namespace, plugs it into `lan` as eth0, writes the config and
    /// the manifests and starts applianced. Does not wait for readiness.
    pub fn start(lan: &Lan, tag: &str, spec: &NodeSpec) -> anyhow::Result<Self> {
        let ns = Netns::create(&format!("qa-{tag}-{}", spec.name))?;
        lan.attach(&ns, "eth0")?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!("qa-{}-", spec.name))
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        // Services run as `nobody`: they must be able to reach their data directory.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        for d in ["state", "run", "services"] {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::write(root.join("state/config.toml"), spec.config_toml())?;
        if !spec.no_default_manifests {
            for entry in std::fs::read_dir(bins::services_dir())? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let name = path.file_name().context("manifest without a name")?;
                    std::fs::copy(&path, root.join("services").join(name))?;
                }
            }
        }
        for (file, text) in &spec.extra_manifests {
            std::fs::write(root.join("services").join(file), text)?;
        }
        let mut node = Self {
            name: spec.name.clone(),
            ns,
            root,
            _tmp: Some(tmp),
            child: None,
            extra_args: spec.extra_args.clone(),
            env: spec.env.clone(),
        };
        node.launch()?;
        Ok(node)
    }

    /// Starts applianced (again) on the node's directories.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.root.join("applianced.stderr"))?;
        let child = self
            .ns
            .command(
                bins::path("applianced")?
                    .to_str()
                    .context("non-UTF-8 path")?,
            )
            .arg("--state-dir")
            .arg(self.root.join("state"))
            .arg("--runtime-dir")
            .arg(self.root.join("run"))
            .arg("--services-dir")
            .arg(self.root.join("services"))
            .arg("--bin-dir")
            .arg(bins::dir()?)
            .arg("--log")
            .arg("info,applianced=debug")
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting applianced")?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops applianced with SIGTERM (clean shutdown) and waits, bounded.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let exited = wait::until(
                Duration::from_secs(20),
                Duration::from_millis(50),
                "applianced to exit",
                || child.try_wait().ok().flatten(),
            );
            if exited.is_err() {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "applianced of {} did not stop within 20 s of SIGTERM",
                    self.name
                );
            }
        }
        Ok(())
    }

    /// Kills applianced with SIGKILL, as a crash would: nothing is cleaned up.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The pid of applianced (the `ip netns exec` process execs it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("run/applianced.sock")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// What applianced printed, for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.root.join("applianced.stderr")).unwrap_or_default()
    }

    /// A connected API client.
    pub async fn client(&self) -> anyhow::Result<NodeClient<Channel>> {
        Ok(NodeClient::new(
            appliance_api::connect_unix(&self.socket()).await?,
        ))
    }

    /// Waits until applianced reports ready, or fails with its log.
    pub async fn wait_ready(
        &self,
        limit: Duration,
    ) -> anyhow::Result<appliance_api::v1::StatusReply> {
        let socket = self.socket();
        let result = wait::until_async(
            limit,
            Duration::from_millis(200),
            "the node to be ready",
            || {
                let socket = socket.clone();
                async move { ready(&socket).await }
            },
        )
        .await;
        result.with_context(|| {
            format!(
                "node {} not ready; applianced said:\n{}",
                self.name,
                self.stderr()
            )
        })
    }
}

async fn ready(socket: &Path) -> Option<appliance_api::v1::StatusReply> {
    let channel = appliance_api::connect_unix(socket).await.ok()?;
    let status = NodeClient::new(channel)
        .status(StatusRequest {})
        .await
        .ok()?
        .into_inner();
    status.ready.then_some(status)
}

impl Drop for HostedNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("QA_KEEP").is_some() {
            if let Some(tmp) = self._tmp.take() {
                eprintln!(
                    "QA_KEEP: node {} kept in {}",
                    self.name,
                    tmp.keep().display()
                );
            }
        }
    }
}

/// This node's view of the cluster (`ClusterStatus`).
pub async fn cluster_status(node: &HostedNode) -> anyhow::Result<ClusterStatusReply> {
    Ok(node
        .client()
        .await?
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner())
}

/// Waits (bounded by `limit`, asking every `poll`) until every node in
/// `nodes` is a member at the same generation, with `members` members, all
/// active; returns that generation.
pub async fn wait_converged(
    nodes: &[&HostedNode],
    members: usize,
    limit: Duration,
    poll: Duration,
) -> anyhow::Result<u64> {
    let what = format!(
        "{} to agree on {members} active members",
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::wait::until_async(limit, poll, &what, || async {
        let mut generation = None;
        for n in nodes {
            let s = cluster_status(n).await.ok()?;
            let ok = s.node_state == "member"
                && s.members.len() == members
                && s.members.iter().all(|m| m.state == "active");
            if !ok || generation.is_some_and(|g| g != s.generation) {
                return None;
            }
            generation = Some(s.generation);
        }
        generation
    })
    .await
}
