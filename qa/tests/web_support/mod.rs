//! The browser tests' side in Rust: installs the scripts' one dependency
//! (`npm ci` in `qa/web`, playwright-core at the version the lockfile pins;
//! CI starts from a clean clone), runs one script of `qa/web` with node,
//! inside a namespace when given, bounded in time, and fails with the
//! script's output when it fails. The browser is Debian's chromium
//! (`make deps` installs it); no browser is ever downloaded.
//!
//! Screenshots go to `out/screenshots/<run>/`; with
//! `APPLIANCE_UPDATE_SCREENSHOTS=1` the named ones are also copied to
//! `docs/screenshots/`, so that an ordinary run never dirties the tree.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use qa::netns::Netns;

/// The browser every script drives (Debian's package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Set to `1` to copy the screenshots into `docs/screenshots/`.
pub const UPDATE_VAR: &str = "APPLIANCE_UPDATE_SCREENSHOTS";

/// `npm ci` from the registry (a cold cache fetches one package).
const NPM_CI_LIMIT: Duration = Duration::from_secs(300);

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `qa/web`: the scripts, package.json and its lockfile.
pub fn web_dir() -> PathBuf {
    workspace().join("qa/web")
}

/// The version of playwright-core the lockfile pins.
fn locked_version(web: &Path) -> anyhow::Result<String> {
    let path = web.join("package-lock.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let lock: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    lock["packages"]["node_modules/playwright-core"]["version"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} pins no playwright-core", path.display()))
}

/// The version installed in `qa/web/node_modules`, if any.
fn installed_version(web: &Path) -> Option<String> {
    let text =
        std::fs::read_to_string(web.join("node_modules/playwright-core/package.json")).ok()?;
    let pkg: serde_json::Value = serde_json::from_str(&text).ok()?;
    pkg["version"].as_str().map(str::to_owned)
}

/// Makes sure node, npm and chromium are there and that `qa/web` has the
/// locked playwright-core (`npm ci` when not, under a lock: two test binaries
/// may get here at once, and `npm ci` first removes `node_modules`).
pub fn prepare() -> anyhow::Result<()> {
    for (program, package) in [("node", "nodejs"), ("npm", "npm")] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(
            found,
            "`{program}` is missing: install {package} (`make deps` as root)"
        );
    }
    anyhow::ensure!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install chromium (`make deps` as root)"
    );
    let web = web_dir();
    let want = locked_version(&web)?;
    let out = Command::new("flock")
        .arg(std::env::temp_dir().join("qa-web-npm.lock"))
        .arg("sh")
        .arg("-c")
        // Checked again under the lock: another binary may have just installed it.
        .arg(format!(
            "grep -q '\"version\": \"{want}\"' node_modules/playwright-core/package.json 2>/dev/null \
             || npm ci --no-audit --no-fund --loglevel=error"
        ))
        .current_dir(&web)
        .stdin(Stdio::null())
        .output_bounded(NPM_CI_LIMIT)
        .context("npm ci in qa/web")?;
    anyhow::ensure!(out.ok, "npm ci in {} failed: {}", web.display(), out.text);
    let got = installed_version(&web);
    anyhow::ensure!(
        got.as_deref() == Some(want.as_str()),
        "qa/web has playwright-core {got:?} after npm ci, the lockfile pins {want}"
    );
    Ok(())
}

/// A finished process: success and stdout+stderr.
#[derive(Debug)]
pub struct Output {
    /// Exited with status 0.
    pub ok: bool,
    /// Everything it printed, stdout then stderr.
    pub text: String,
}

/// Running a command with a time bound.
pub trait Bounded {
    /// Runs to its end, or kills it (its whole process group) after `limit`.
    fn output_bounded(&mut self, limit: Duration) -> anyhow::Result<Output>;
}

impl Bounded for Command {
    fn output_bounded(&mut self, limit: Duration) -> anyhow::Result<Output> {
        use std::os::unix::process::CommandExt;
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout also ends chromium.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {self:?}"))?;
        let mut stdout = child.stdout.take().context("no stdout pipe")?;
        let mut stderr = child.stderr.take().context("no stderr pipe")?;
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = format!(
            "{}{}",
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default()
        );
        match status {
            Some(status) => Ok(Output {
                ok: status.success(),
                text,
            }),
            None => anyhow::bail!("{self:?} did not finish within {limit:?}; it printed:\n{text}"),
        }
    }
}

/// Where a run's screenshots go: `out/screenshots/<run>/`, emptied.
pub fn screenshot_dir(run: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace().join("out/screenshots").join(run);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("emptying {}", dir.display())),
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs `node qa/web/<script>` (in `ns` when given) with `env` and
/// `WEB_SCREENSHOTS=<shots>`, bounded by `limit`; returns what it printed,
/// or fails with it.
pub fn run_script(
    ns: Option<&Netns>,
    script: &str,
    env: &[(&str, String)],
    shots: &Path,
    limit: Duration,
) -> anyhow::Result<String> {
    let web = web_dir();
    let path = web.join(script);
    let path = path.to_str().context("non-UTF-8 path of qa/web")?;
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = ns.command("node");
            c.arg(path);
            c
        }
        None => {
            let mut c = Command::new("node");
            c.arg(path);
            c
        }
    };
    cmd.current_dir(&web)
        .stdin(Stdio::null())
        .env("WEB_SCREENSHOTS", shots)
        .env("WEB_CHROMIUM", CHROMIUM)
        // No desktop session: chromium must not look for one.
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd
        .output_bounded(limit)
        .with_context(|| format!("qa/web/{script}"))?;
    eprintln!(
        "qa/web/{script} ({:.1} s):\n{}",
        started.elapsed().as_secs_f64(),
        out.text
    );
    anyhow::ensure!(
        out.ok,
        "qa/web/{script} failed (screenshots in {}):\n{}",
        shots.display(),
        out.text
    );
    Ok(out.text)
}

/// With [`UPDATE_VAR`]`=1`, copies `names` (`<name>.png` in `shots`) into
/// `docs/screenshots/`; fails when one is missing. Otherwise does nothing.
pub fn publish(shots: &Path, names: &[&str]) -> anyhow::Result<()> {
    if std::env::var(UPDATE_VAR).as_deref() != Ok("1") {
        return Ok(());
    }
    let docs = workspace().join("docs/screenshots");
    std::fs::create_dir_all(&docs)?;
    for name in names {
        let from = shots.join(format!("{name}.png"));
        let to = docs.join(format!("{name}.png"));
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    eprintln!(
        "{UPDATE_VAR}=1: {} screenshots into {}",
        names.len(),
        docs.display()
    );
    Ok(())
}
