//! What the build writes beside the raw disk: the hypervisor formats
//! (qcow2, VHDX, and the OVA holding a stream-optimized VMDK with its OVF
//! descriptor and manifest), and SHA256SUMS over every artefact.

use std::path::Path;

use sha2::Digest;

use super::{base_name, PRODUCT, VERSION};
use crate::error::{Error, IoContext, Result};
use crate::formats;
use crate::info::{self, Artefact, Artefacts};
use crate::manifest::Manifest;
use crate::ovf;

/// The formats made from the raw disk.
pub(super) struct Formats {
    /// File names in `out`: qcow2, VHDX, OVA.
    pub names: [String; 3],
    /// Size of the VMDK inside the OVA.
    pub vmdk_size: u64,
}

/// Converts `<out>/<raw_name>` to qcow2 and VHDX, and packs an OVA (its VMDK
/// made in `work`).
pub(super) fn hypervisor_formats(
    m: &Manifest,
    out: &Path,
    work: &Path,
    raw_name: &str,
    populated: u64,
    epoch: u64,
) -> Result<Formats> {
    let base = base_name();
    let raw = out.join(raw_name);
    let (qcow2_name, vhdx_name, ova_name) = (
        format!("{base}.qcow2"),
        format!("{base}.vhdx"),
        format!("{base}.ova"),
    );
    formats::qcow2(&raw, &out.join(&qcow2_name))?;
    formats::vhdx(&raw, &out.join(&vhdx_name), &m.disk.disk_guid)?;
    let vmdk_name = format!("{base}-disk1.vmdk");
    let vmdk = work.join(&vmdk_name);
    let cid = u32::from_str_radix(&m.disk.disk_guid[..8], 16).unwrap_or(0x0a11ce00);
    formats::vmdk(&raw, &vmdk, cid)?;
    let vmdk_size = std::fs::metadata(&vmdk).ctx("reading", &vmdk)?.len();
    let ovf_name = format!("{base}.ovf");
    let mf_name = format!("{base}.mf");
    let ovf_text = ovf::descriptor(&ovf::Descriptor {
        name: "appliance",
        product: PRODUCT,
        version: VERSION,
        vmdk_name: &vmdk_name,
        vmdk_size,
        capacity: m.disk.size_mib << 20,
        populated_size: populated,
        cpus: 2,
        memory_mib: 2048,
    })?;
    let mf = ovf::manifest(&[
        (
            &ovf_name,
            &ovf::hex(&sha2::Sha256::digest(ovf_text.as_bytes())),
        ),
        (&vmdk_name, &ovf::sha256_file(&vmdk)?),
    ]);
    ovf::write_tar(
        &out.join(&ova_name),
        &[
            ovf::Member::Bytes(&ovf_name, ovf_text.as_bytes()),
            ovf::Member::Bytes(&mf_name, mf.as_bytes()),
            ovf::Member::File(&vmdk_name, &vmdk),
        ],
        epoch,
    )?;
    Ok(Formats {
        names: [qcow2_name, vhdx_name, ova_name],
        vmdk_size,
    })
}

fn artefact(out: &Path, file: String) -> Result<Artefact> {
    let path = out.join(&file);
    Ok(Artefact {
        size: std::fs::metadata(&path).ctx("reading", &path)?.len(),
        sha256: ovf::sha256_file(&path)?,
        file,
    })
}

/// Hashes the four artefacts in `out` and writes `SHA256SUMS`.
pub(super) fn checksums(out: &Path, raw_name: String, formats: [String; 3]) -> Result<Artefacts> {
    let [qcow2_name, vhdx_name, ova_name] = formats;
    // Hashing 2 GiB of raw disk dominates the build's tail: one thread each.
    let names = [raw_name, qcow2_name, vhdx_name, ova_name];
    let hashed: Vec<Result<Artefact>> = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .into_iter()
            .map(|n| s.spawn(|| artefact(out, n)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        "hashing",
                        out,
                        std::io::Error::other("hash thread panicked"),
                    ))
                })
            })
            .collect()
    });
    let [raw_a, qcow2_a, vhdx_a, ova_a]: [Result<Artefact>; 4] = hashed
        .try_into()
        .map_err(|_| Error::io("hashing", out, std::io::Error::other("artefact count")))?;
    let artefacts = Artefacts {
        raw: raw_a?,
        qcow2: qcow2_a?,
        vhdx: vhdx_a?,
        ova: ova_a?,
        sha256sums: "SHA256SUMS".into(),
    };
    let sums = out.join(&artefacts.sha256sums);
    std::fs::write(&sums, info::sha256sums(&artefacts.all())).ctx("writing", &sums)?;
    Ok(artefacts)
}
