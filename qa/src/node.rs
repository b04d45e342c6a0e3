//! A hosted applianced node: its own namespace on a [`Lan`], its own state,
//! runtime and services directories, and an API client; optionally a seeded
//! first administrator ([`FirstAdmin`]) and, from a namespace on the LAN,
//! `appliancectl --server` against its management port ([`RemoteCtl`]).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use anyhow::Context;
use appliance_api::v1::node_client::NodeClient;
use appliance_api::v1::{
    ClusterStatusReply, ClusterStatusRequest, GetManagementTlsRequest, StatusRequest,
};
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
    /// The first administrator, given to applianced as `--first-admin
    /// NAME:PHC` (applied once, when the node has no account).
    pub first_admin: Option<FirstAdmin>,
}

/// The management port (managementd, HTTPS) of every node.
pub const MANAGEMENT_PORT: u16 = 8443;

/// An administrator seeded at the node's first start.
#[derive(Debug, Clone)]
pub struct FirstAdmin {
    /// The account name.
    pub name: String,
    /// Its password (the node only ever sees its Argon2id hash).
    pub password: String,
}

impl FirstAdmin {
    /// An administrator `name` with `password`.
    pub fn new(name: &str, password: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The Argon2id PHC string of the password (argon2's defaults, as
    /// managementd hashes them), with a fresh salt.
    pub fn phc(&self) -> anyhow::Result<String> {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(self.password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing the password of {}: {e}", self.name))
    }

    /// applianced's argument: `NAME:PHC`.
    pub fn arg(&self) -> anyhow::Result<String> {
        Ok(format!("{}:{}", self.name, self.phc()?))
    }
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
            first_admin: None,
        }
    }

    /// The same node with a first administrator seeded at its first start.
    pub fn with_first_admin(mut self, name: &str, password: &str) -> Self {
        self.first_admin = Some(FirstAdmin::new(name, password));
        self
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

/// A repository manifest as a hosted node runs it: a `user = "NAME"` line
/// naming a user this host does not have (the image's own, such as
/// `management`) is left out, so the service runs as the harness does (root).
fn hosted_manifest(text: &str) -> String {
    let known = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let exists = |user: &str| known.lines().any(|l| l.split(':').next() == Some(user));
    text.lines()
        .filter(|line| {
            let user = line
                .trim()
                .strip_prefix("user")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix('='))
                .map(|r| r.trim().trim_matches('"'));
            user.is_none_or(exists)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A running hosted node. Dropping it kills applianced and removes the namespace.
#[derive(Debug)]
pub struct HostedNode {
    /// The node's name.
    pub name: String,
    /// Its network namespace.
    pub ns: Netns,
    /// Its addresses with prefix, as in [`NodeSpec::addresses`].
    pub addresses: Vec<String>,
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
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    std::fs::write(root.join("services").join(name), hosted_manifest(&text))?;
                }
            }
        }
        for (file, text) in &spec.extra_manifests {
            std::fs::write(root.join("services").join(file), text)?;
        }
        let mut extra_args = spec.extra_args.clone();
        if let Some(admin) = &spec.first_admin {
            extra_args.extend(["--first-admin".to_owned(), admin.arg()?]);
        }
        let mut node = Self {
            name: spec.name.clone(),
            ns,
            addresses: spec.addresses.clone(),
            root,
            _tmp: Some(tmp),
            child: None,
            extra_args,
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

    /// Its first address without the prefix (what a client on the LAN dials).
    pub fn address(&self) -> anyhow::Result<std::net::IpAddr> {
        let first = self
            .addresses
            .first()
            .with_context(|| format!("node {} has no address", self.name))?;
        let ip = first.split('/').next().unwrap_or(first);
        ip.parse()
            .with_context(|| format!("node {}: address {first:?}", self.name))
    }

    /// Its management port, from the LAN.
    pub fn management_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::new(self.address()?, MANAGEMENT_PORT))
    }

    /// `https://ADDRESS:8443`, the `--server` of `appliancectl`.
    pub fn management_url(&self) -> anyhow::Result<String> {
        Ok(format!("https://{}", self.management_addr()?))
    }

    /// The SHA-256 fingerprint of the certificate its management port
    /// serves, as its console shows it (`Admin.GetManagementTls` on the socket).
    pub async fn management_fingerprint(&self) -> anyhow::Result<String> {
        let channel = appliance_api::connect_unix(&self.socket()).await?;
        let tls = appliance_api::v1::admin_client::AdminClient::new(channel)
            .get_management_tls(GetManagementTlsRequest {})
            .await?
            .into_inner();
        Ok(tls.fingerprint)
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

/// `appliancectl --server` as an administrator runs it: from a namespace on
/// the LAN (the host side of the nodes' management ports), with its own
/// configuration directory (tokens and pinned certificates), in a session of
/// its own (no terminal: first contact needs `--yes` or
/// `--accept-fingerprint`, as in a script).
#[derive(Debug)]
pub struct RemoteCtl {
    ns: String,
    /// `XDG_CONFIG_HOME` of every run: `appliancectl/` below holds the state.
    pub config: PathBuf,
    _tmp: tempfile::TempDir,
}

/// One remote appliancectl call's bound.
pub const REMOTE_CTL_LIMIT: Duration = Duration::from_secs(60);

impl RemoteCtl {
    /// A client in `ns` with an empty configuration directory.
    pub fn new(ns: &Netns) -> anyhow::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("qa-ctl-").tempdir()?;
        Ok(Self {
            ns: ns.name().to_owned(),
            config: tmp.path().to_path_buf(),
            _tmp: tmp,
        })
    }

    /// Runs `appliancectl --server URL ARGS` with `stdin` as standard input,
    /// bounded by [`REMOTE_CTL_LIMIT`].
    pub async fn run(&self, url: &str, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(bins::path("appliancectl")?)
            .args(["--server", url])
            .args(args)
            .env("XDG_CONFIG_HOME", &self.config)
            .env_remove("APPLIANCE_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: setsid is async-signal-safe and touches no parent memory;
        // without a controlling terminal appliancectl never waits on a prompt.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().context("starting appliancectl")?;
        if let Some(mut input) = child.stdin.take() {
            // It may end before reading (refused first): a broken pipe is fine.
            let _ = input.write_all(stdin.as_bytes()).await;
        }
        tokio::time::timeout(REMOTE_CTL_LIMIT, child.wait_with_output())
            .await
            .with_context(|| {
                format!(
                    "appliancectl --server {url} {} took more than {REMOTE_CTL_LIMIT:?}",
                    args.join(" ")
                )
            })?
            .context("running appliancectl")
    }

    /// Signs in as `name` (accepting the certificate on first contact);
    /// fails with appliancectl's message.
    pub async fn login(&self, url: &str, name: &str, password: &str) -> anyhow::Result<()> {
        let out = self
            .run(
                url,
                &["--yes", "login", "--user", name, "--password-stdin"],
                &format!("{password}\n"),
            )
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "login as {name} at {url} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// `ARGS --output json`; fails with appliancectl's message.
    pub async fn json(&self, url: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(url, &all, "").await?;
        anyhow::ensure!(
            out.status.success(),
            "appliancectl --server {url} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "the JSON of appliancectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Forgets the pinned certificate of `url` (after a node's certificate
    /// changed on purpose, e.g. it joined a cluster), as the refusal tells
    /// one to: its line goes from `known_servers`, the others stay.
    pub fn forget_pin(&self, url: &str) -> anyhow::Result<()> {
        let path = self.config.join("appliancectl/known_servers");
        let key = url.trim_start_matches("https://").trim_end_matches('/');
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let kept: String = text
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(key))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept)?;
        Ok(())
    }
}

/// Accepts any server certificate: the checks and figures that use it are
/// about what a management port answers, not about trusting it
/// (appliancectl's pinning has its own tests). Signatures are still checked.
#[derive(Debug)]
struct AnyCert(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A TLS connector for a management port: TLS 1.3 and 1.2 or
/// (`tls12_only`) 1.2 alone, offering `alpn` (`h2`, `http/1.1`), any certificate.
pub fn management_tls(tls12_only: bool, alpn: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(
            provider.signature_verification_algorithms,
        )))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// A TCP connection opened inside the namespace named `ns` (bounded by `limit`).
pub fn tcp_in(ns: &str, addr: SocketAddr, limit: Duration) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsFd;
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::net::TcpStream::connect_timeout(&addr, limit)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("connect thread panicked")))
    })
}

/// A TLS connection from the namespace named `ns` to `addr`.
pub async fn tls_in(
    ns: &str,
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = ns.to_owned();
    let std = tokio::task::spawn_blocking(move || tcp_in(&name, addr, Duration::from_secs(5)))
        .await
        .map_err(std::io::Error::other)??;
    std.set_nonblocking(true)?;
    std.set_nodelay(true)?;
    let tcp = tokio::net::TcpStream::from_std(std)?;
    connector
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
}

/// A gRPC channel from `ns` to the management port at `addr` (HTTP/2 over
/// TLS 1.3 and 1.2, or 1.2 alone), trusting any certificate.
pub async fn management_channel(
    ns: &Netns,
    addr: SocketAddr,
    tls12_only: bool,
) -> anyhow::Result<Channel> {
    let connector = management_tls(tls12_only, b"h2")?;
    let ns = ns.name().to_owned();
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let (connector, ns) = (connector.clone(), ns.clone());
                async move {
                    let tls = tls_in(&ns, addr, &connector).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_lose_only_users_this_host_lacks() {
        let text = "name = \"x\"\nuser = \"nobody\"\nuser = \"no-such-user-qa\"\nusers = 1\n";
        assert_eq!(
            hosted_manifest(text),
            "name = \"x\"\nuser = \"nobody\"\nusers = 1\n"
        );
    }

    #[test]
    fn the_seeded_hash_is_argon2id_and_verifies() -> anyhow::Result<()> {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let admin = FirstAdmin::new("admin", "a long enough password");
        let arg = admin.arg()?;
        let (name, phc) = arg.split_once(':').context("no colon")?;
        assert_eq!(name, "admin");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(phc).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(argon2::Argon2::default()
            .verify_password(b"a long enough password", &parsed)
            .is_ok());
        assert!(argon2::Argon2::default()
            .verify_password(b"another password", &parsed)
            .is_err());
        Ok(())
    }
}
