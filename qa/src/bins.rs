//! Finds the workspace's binaries (applianced, appliancectl, the demo services)
//! next to the running test or bench executable.

use std::path::{Path, PathBuf};

/// The directory holding the workspace's binaries for this profile
/// (`target/debug` for tests, `target/release` for the bench).
pub fn dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", exe.display()))?
        .to_path_buf();
    // Test executables live in target/<profile>/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// The path of binary `name`, which must have been built (`cargo build --workspace --bins`).
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let p = dir()?.join(name);
    if !p.is_file() {
        anyhow::bail!(
            "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
            p.display()
        );
    }
    Ok(p)
}

/// The repository's `services/` directory (manifests).
pub fn services_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../services")
}
