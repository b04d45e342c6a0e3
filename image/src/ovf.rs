//! The OVA: an OVF 1.0 descriptor (written with an XML writer) that VMware
//! and VirtualBox import, a manifest of SHA-256 sums, and the ustar archive
//! holding them with the streamOptimized VMDK (order .ovf, .mf, .vmdk;
//! fixed mtime, owner and modes).

use std::io::{Read, Write};
use std::path::Path;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

const NS_OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const NS_RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const NS_VSSD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const NS_VMW: &str = "http://www.vmware.com/schema/ovf";
const NS_CIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// OVF's name for a streamOptimized VMDK.
pub const VMDK_FORMAT: &str =
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized";

/// What the descriptor describes.
#[derive(Debug, Clone)]
pub struct Descriptor<'a> {
    /// Virtual machine name.
    pub name: &'a str,
    /// Product name.
    pub product: &'a str,
    /// Product version.
    pub version: &'a str,
    /// File name of the VMDK inside the OVA.
    pub vmdk_name: &'a str,
    /// Size of the VMDK file in bytes.
    pub vmdk_size: u64,
    /// Virtual disk capacity in bytes.
    pub capacity: u64,
    /// Bytes of the disk holding data.
    pub populated_size: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

type W = Writer<Vec<u8>>;

fn text(w: &mut W, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))
        .map(|_| ())
}

/// One `<Item>` of the virtual hardware section: rasd fields in the
/// alphabetical order the CIM schema's sequence requires.
fn item(w: &mut W, fields: &[(&str, &str)]) -> std::io::Result<()> {
    let mut sorted = fields.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    w.create_element("Item").write_inner_content(|w| {
        for (k, v) in &sorted {
            text(w, &format!("rasd:{k}"), v)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The OVF descriptor for `d`.
pub fn descriptor(d: &Descriptor<'_>) -> Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_descriptor(&mut w, d).map_err(|e| Error::Xml(e.to_string()))?;
    let mut xml = w.into_inner();
    xml.push(b'\n');
    String::from_utf8(xml).map_err(|e| Error::Xml(e.to_string()))
}

fn write_descriptor(w: &mut W, d: &Descriptor<'_>) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let cpus = d.cpus.to_string();
    let memory = d.memory_mib.to_string();
    w.create_element("Envelope")
        .with_attributes([
            ("xmlns", NS_OVF),
            ("xmlns:ovf", NS_OVF),
            ("xmlns:cim", NS_CIM),
            ("xmlns:rasd", NS_RASD),
            ("xmlns:vssd", NS_VSSD),
            ("xmlns:vmw", NS_VMW),
            ("xmlns:xsi", NS_XSI),
        ])
        .write_inner_content(|w| {
            w.create_element("References").write_inner_content(|w| {
                w.create_element("File")
                    .with_attributes([
                        ("ovf:href", d.vmdk_name),
                        ("ovf:id", "file1"),
                        ("ovf:size", &d.vmdk_size.to_string()),
                    ])
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("DiskSection").write_inner_content(|w| {
                text(w, "Info", "Virtual disk information")?;
                w.create_element("Disk")
                    .with_attributes([
                        ("ovf:capacity", d.capacity.to_string().as_str()),
                        ("ovf:capacityAllocationUnits", "byte"),
                        ("ovf:diskId", "vmdisk1"),
                        ("ovf:fileRef", "file1"),
                        ("ovf:format", VMDK_FORMAT),
                        ("ovf:populatedSize", &d.populated_size.to_string()),
                    ])
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("NetworkSection")
                .write_inner_content(|w| {
                    text(w, "Info", "The list of logical networks")?;
                    w.create_element("Network")
                        .with_attribute(("ovf:name", "VM Network"))
                        .write_inner_content(|w| {
                            text(w, "Description", "The VM Network network")
                        })?;
                    Ok(())
                })?;
            w.create_element("VirtualSystem")
                .with_attribute(("ovf:id", d.name))
                .write_inner_content(|w| {
                    text(w, "Info", "A virtual appliance")?;
                    text(w, "Name", d.name)?;
                    w.create_element("ProductSection")
                        .write_inner_content(|w| {
                            text(w, "Info", "Information about the installed software")?;
                            text(w, "Product", d.product)?;
                            text(w, "Version", d.version)?;
                            text(w, "FullVersion", d.version)
                        })?;
                    // 101: "Linux 2.6.x 64-bit" in CIM_OperatingSystem.
                    w.create_element("OperatingSystemSection")
                        .with_attributes([("ovf:id", "101"), ("vmw:osType", "other3xLinux64Guest")])
                        .write_inner_content(|w| {
                            text(w, "Info", "The kind of installed guest operating system")
                        })?;
                    w.create_element("VirtualHardwareSection")
                        .write_inner_content(|w| {
                            text(w, "Info", "Virtual hardware requirements")?;
                            w.create_element("System").write_inner_content(|w| {
                                text(w, "vssd:ElementName", "Virtual Hardware Family")?;
                                text(w, "vssd:InstanceID", "0")?;
                                text(w, "vssd:VirtualSystemIdentifier", d.name)?;
                                text(w, "vssd:VirtualSystemType", "vmx-13")
                            })?;
                            item(
                                w,
                                &[
                                    ("AllocationUnits", "hertz * 10^6"),
                                    ("Description", "Number of virtual CPUs"),
                                    ("ElementName", &format!("{cpus} virtual CPU(s)")),
                                    ("InstanceID", "1"),
                                    ("ResourceType", "3"),
                                    ("VirtualQuantity", &cpus),
                                ],
                            )?;
                            item(
                                w,
                                &[
                                    ("AllocationUnits", "byte * 2^20"),
                                    ("Description", "Memory size"),
                                    ("ElementName", &format!("{memory} MB of memory")),
                                    ("InstanceID", "2"),
                                    ("ResourceType", "4"),
                                    ("VirtualQuantity", &memory),
                                ],
                            )?;
                            item(
                                w,
                                &[
                                    ("Address", "0"),
                                    ("Description", "SCSI controller"),
                                    ("ElementName", "SCSI controller 0"),
                                    ("InstanceID", "3"),
                                    ("ResourceSubType", "lsilogic"),
                                    ("ResourceType", "6"),
                                ],
                            )?;
                            item(
                                w,
                                &[
                                    ("AddressOnParent", "0"),
                                    ("ElementName", "Hard disk 1"),
                                    ("HostResource", "ovf:/disk/vmdisk1"),
                                    ("InstanceID", "4"),
                                    ("Parent", "3"),
                                    ("ResourceType", "17"),
                                ],
                            )?;
                            item(
                                w,
                                &[
                                    ("AddressOnParent", "7"),
                                    ("AutomaticAllocation", "true"),
                                    ("Connection", "VM Network"),
                                    ("Description", "VMXNET3 ethernet adapter on \"VM Network\""),
                                    ("ElementName", "Network adapter 1"),
                                    ("InstanceID", "5"),
                                    ("ResourceSubType", "VmxNet3"),
                                    ("ResourceType", "10"),
                                ],
                            )?;
                            // VMware boots it with UEFI; VirtualBox ignores this and
                            // boots with BIOS, which the disk supports too.
                            w.create_element("vmw:Config")
                                .with_attributes([
                                    ("ovf:required", "false"),
                                    ("vmw:key", "firmware"),
                                    ("vmw:value", "efi"),
                                ])
                                .write_empty()?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
            Ok(())
        })?;
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).ctx("opening", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx("reading", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The OVF manifest: `SHA256(name)= hex` per file.
pub fn manifest(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(name, sum)| format!("SHA256({name})= {sum}\n"))
        .collect()
}

/// One member of an OVA.
#[derive(Debug)]
pub enum Member<'a> {
    /// Bytes in memory.
    Bytes(&'a str, &'a [u8]),
    /// A file on disk.
    File(&'a str, &'a Path),
}

/// Writes a ustar archive of `members` (in order) to `out`, every member
/// mode 0644, owner 0:0, mtime `mtime`.
pub fn write_tar(out: &Path, members: &[Member<'_>], mtime: u64) -> Result<()> {
    let file = std::fs::File::create(out).ctx("creating", out)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let io = |e| Error::io("writing", out, e);
    for m in members {
        let (name, size) = match m {
            Member::Bytes(name, b) => (*name, b.len() as u64),
            Member::File(name, p) => (*name, std::fs::metadata(p).ctx("reading", *p)?.len()),
        };
        let mut h = tar::Header::new_ustar();
        h.set_path(name).map_err(io)?;
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        match m {
            Member::Bytes(_, b) => tar.append(&h, *b).map_err(io)?,
            Member::File(_, p) => {
                let f = std::fs::File::open(p).ctx("opening", *p)?;
                tar.append(&h, f).map_err(io)?
            }
        }
    }
    let mut w = tar.into_inner().map_err(io)?;
    w.flush().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Descriptor<'static> {
        Descriptor {
            name: "appliance",
            product: "Appliance OS",
            version: "0.1.0",
            vmdk_name: "appliance-0.1.0-disk1.vmdk",
            vmdk_size: 12_345,
            capacity: 2 << 30,
            populated_size: 77 << 20,
            cpus: 2,
            memory_mib: 2048,
        }
    }

    #[test]
    fn descriptor_parses_back_with_the_hardware_asked_for() {
        let xml = descriptor(&sample()).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "Envelope");
        assert_eq!(root.tag_name().namespace(), Some(NS_OVF));
        let by_name = |n: &str| {
            doc.descendants()
                .find(|d| d.tag_name().name() == n)
                .unwrap()
        };
        let file = by_name("File");
        assert_eq!(
            file.attribute((NS_OVF, "href")),
            Some("appliance-0.1.0-disk1.vmdk")
        );
        assert_eq!(file.attribute((NS_OVF, "size")), Some("12345"));
        let disk = by_name("Disk");
        assert_eq!(disk.attribute((NS_OVF, "capacity")), Some("2147483648"));
        assert_eq!(disk.attribute((NS_OVF, "format")), Some(VMDK_FORMAT));
        assert_eq!(disk.attribute((NS_OVF, "populatedSize")), Some("80740352"));
        assert_eq!(by_name("Product").text(), Some("Appliance OS"));
        assert_eq!(by_name("Version").text(), Some("0.1.0"));
        // Items by ResourceType: CPU 3, memory 4, SCSI 6, disk 17, NIC 10.
        let items: Vec<(String, String, Option<String>)> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "Item")
            .map(|i| {
                let field = |f: &str| {
                    i.children()
                        .find(|c| {
                            c.tag_name().name() == f && c.tag_name().namespace() == Some(NS_RASD)
                        })
                        .and_then(|c| c.text())
                        .map(str::to_owned)
                };
                (
                    field("ResourceType").unwrap(),
                    field("InstanceID").unwrap(),
                    field("VirtualQuantity").or(field("ResourceSubType")),
                )
            })
            .collect();
        assert_eq!(
            items,
            [
                ("3".into(), "1".into(), Some("2".into())),
                ("4".into(), "2".into(), Some("2048".into())),
                ("6".into(), "3".into(), Some("lsilogic".into())),
                ("17".into(), "4".into(), None),
                ("10".into(), "5".into(), Some("VmxNet3".into())),
            ]
        );
        let config = by_name("Config");
        assert_eq!(config.tag_name().namespace(), Some(NS_VMW));
        assert_eq!(config.attribute((NS_VMW, "key")), Some("firmware"));
        assert_eq!(config.attribute((NS_VMW, "value")), Some("efi"));
        // Text is escaped by the writer, not pasted.
        assert!(xml.contains("on &quot;VM Network&quot;") || xml.contains("on \"VM Network\""));
    }

    #[test]
    fn names_are_escaped() {
        let d = Descriptor {
            product: "A & B <x>",
            ..sample()
        };
        let xml = descriptor(&d).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let p = doc
            .descendants()
            .find(|n| n.tag_name().name() == "Product")
            .unwrap();
        assert_eq!(p.text(), Some("A & B <x>"));
    }

    #[test]
    fn manifest_lines() {
        assert_eq!(manifest(&[("a.ovf", "00ff")]), "SHA256(a.ovf)= 00ff\n");
        assert_eq!(hex(&[0, 171]), "00ab");
    }

    #[test]
    fn tar_is_ordered_and_reproducible() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("disk.vmdk");
        std::fs::write(&disk, vec![7u8; 1000]).unwrap();
        let members = [
            Member::Bytes("x.ovf", b"<Envelope/>"),
            Member::Bytes("x.mf", b"SHA256(x.ovf)= 00\n"),
            Member::File("x-disk1.vmdk", &disk),
        ];
        let (a, b) = (d.path().join("a.ova"), d.path().join("b.ova"));
        write_tar(&a, &members, 1_767_225_600).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_tar(&b, &members, 1_767_225_600).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(bytes, std::fs::read(&b).unwrap());
        assert_eq!(bytes.len() % 512, 0);
        let mut archive = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, u64, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("x.ovf".to_string(), 1_767_225_600, 0o644, 0, 11),
                ("x.mf".to_string(), 1_767_225_600, 0o644, 0, 18),
                ("x-disk1.vmdk".to_string(), 1_767_225_600, 0o644, 0, 1000),
            ]
        );
        assert!(bytes[257..262] == *b"ustar");
    }
}
