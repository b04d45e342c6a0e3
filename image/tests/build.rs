//! The real build, end to end: every artefact, twice, byte-identical; the
//! image.json a test reads; kernel parameters appended to a copy of the raw
//! disk. Ignored by default (it needs the release binaries, downloads the
//! pinned packages on a first run and takes about a minute); `make image`
//! runs the same build.

use std::path::{Path, PathBuf};

use appliance_image::{append_kernel_params, read_esp_file, read_image_info, BuildOptions};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(out: &Path) -> BuildOptions {
    let ws = workspace();
    BuildOptions {
        manifest: ws.join("image/image.toml"),
        workspace: ws.clone(),
        bin_dir: ws.join("target/release"),
        out: out.to_owned(),
        cache: Some(ws.join("out/.cache")),
    }
}

#[test]
#[ignore = "needs target/release/{applianced,portal,audit,managementd}, apt, and about a minute"]
fn build_is_reproducible_and_its_kernel_line_editable() {
    let d = tempfile::tempdir().unwrap();
    // A snapshot of the binaries, so a concurrent cargo build cannot make
    // the two builds differ.
    let bins = d.path().join("bins");
    std::fs::create_dir(&bins).unwrap();
    for b in ["applianced", "portal", "audit", "managementd"] {
        std::fs::copy(workspace().join("target/release").join(b), bins.join(b)).unwrap();
    }
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let info = appliance_image::build(&BuildOptions {
        bin_dir: bins.clone(),
        ..options(&a)
    })
    .unwrap();
    appliance_image::build(&BuildOptions {
        bin_dir: bins,
        ..options(&b)
    })
    .unwrap();
    let sums = std::fs::read_to_string(a.join("SHA256SUMS")).unwrap();
    assert_eq!(sums, std::fs::read_to_string(b.join("SHA256SUMS")).unwrap());
    assert_eq!(sums.lines().count(), 4);

    assert_eq!(read_image_info(&a.join("image.json")).unwrap(), info);
    assert_eq!(info.kernel.release, "6.1.0-56-amd64");
    let names: Vec<&str> = info
        .disk
        .partitions
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["esp", "root-a", "root-b", "data"]);
    let esp = info.disk.partition("esp").unwrap();
    assert_eq!((esp.offset, esp.size), (1 << 20, 64 << 20));
    let root = info.disk.partition("root-a").unwrap();
    assert!(info.sizes.root_erofs <= root.size);
    assert_eq!(info.disk.size, 2 << 30);
    for art in info.artefacts.all() {
        assert!(a.join(&art.file).is_file(), "{}", art.file);
    }

    // The VHDX carries the disk GUID as its Page 83 id, headers' CRCs valid.
    let id = appliance_image::formats::vhdx_disk_id(&a.join(&info.artefacts.vhdx.file)).unwrap();
    assert_eq!(appliance_image::manifest::format_guid(&id), info.disk.guid);

    let raw = a.join(&info.artefacts.raw.file);
    // The root partition holds an EROFS (magic 0xE0F5E1E2 at 1024).
    let mut magic = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&raw).unwrap(),
        &mut magic,
        root.offset + 1024,
    )
    .unwrap();
    assert_eq!(u32::from_le_bytes(magic), 0xE0F5_E1E2);

    let copy = d.path().join("copy.raw");
    std::fs::copy(&raw, &copy).unwrap();
    append_kernel_params(&copy, "appliance.ip=192.0.2.10/24").unwrap();
    for name in ["EFI/BOOT/syslinux.cfg", "syslinux/syslinux.cfg"] {
        let cfg = String::from_utf8(read_esp_file(&copy, name).unwrap()).unwrap();
        assert!(
            cfg.contains(&format!(
                "APPEND {} appliance.ip=192.0.2.10/24\n",
                info.cmdline
            )),
            "{cfg}"
        );
    }
    let ldlinux = read_esp_file(&copy, "syslinux/ldlinux.sys").unwrap();
    assert!(ldlinux.len() > 10_000);
}
