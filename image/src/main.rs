//! `mkimage`: builds the appliance image into `out/` (`build`), the baseline
//! kernel + initramfs (`baseline`), or appends kernel parameters to a copy of
//! a raw image (`append-params`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mkimage",
    about = "Builds the appliance disk image and its hypervisor formats"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Common {
    /// The image declaration.
    #[arg(long, default_value = "image/image.toml")]
    config: PathBuf,
    /// Workspace root (service manifests are relative to it).
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Directory holding our release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Package cache [default: <out>/.cache, or out/.cache for baseline].
    #[arg(long)]
    cache: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the raw, qcow2, VHDX and OVA images, image.json and SHA256SUMS.
    Build {
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Build the baseline kernel + busybox initramfs.
    Baseline {
        /// Output directory.
        #[arg(long, default_value = "out/baseline")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Append kernel parameters to both syslinux.cfg of a raw image (edit a copy).
    AppendParams {
        /// The raw disk image to edit in place.
        raw: PathBuf,
        /// Parameters to append, e.g. "appliance.ip=10.0.0.2/24".
        params: String,
    },
}

fn options(
    out: &std::path::Path,
    c: Common,
    default_cache: PathBuf,
) -> appliance_image::BuildOptions {
    appliance_image::BuildOptions {
        manifest: c.config,
        workspace: c.workspace,
        bin_dir: c.bin_dir,
        out: out.to_owned(),
        cache: Some(c.cache.unwrap_or(default_cache)),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: CI keeps the log as text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let started = Instant::now();
    match Cli::parse().command {
        Cmd::Build { out, common } => {
            let opts = options(&out, common, out.join(".cache"));
            let info = appliance_image::build(&opts).context("building the image")?;
            let raw = out.join(&info.artefacts.raw.file);
            let used = appliance_image::disk::used_bytes(&raw)?;
            println!(
                "mkimage: built {} {} in {:.1} s",
                info.product,
                info.version,
                started.elapsed().as_secs_f64()
            );
            println!(
                "  raw disk: {} ({} bytes virtual, {} bytes used)",
                raw.display(),
                info.disk.size,
                used
            );
            println!(
                "  root EROFS: {} bytes; initramfs: {} bytes; kernel: {} bytes",
                info.sizes.root_erofs, info.sizes.initramfs, info.sizes.vmlinuz
            );
            for a in [
                &info.artefacts.qcow2,
                &info.artefacts.vhdx,
                &info.artefacts.ova,
            ] {
                println!("  {}: {} bytes", a.file, a.size);
            }
            println!("  {}", out.join(&info.artefacts.sha256sums).display());
        }
        Cmd::Baseline { out, common } => {
            let opts = options(&out, common, PathBuf::from("out/.cache"));
            appliance_image::baseline(&opts, &out).context("building the baseline")?;
            println!(
                "mkimage: baseline kernel and initramfs in {}",
                out.display()
            );
        }
        Cmd::AppendParams { raw, params } => {
            appliance_image::append_kernel_params(&raw, &params)
                .with_context(|| format!("appending {params:?} to {}", raw.display()))?;
        }
    }
    Ok(())
}
