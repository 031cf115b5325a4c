//! CycloneDX 1.5 JSON: how an SBOM is stored (beside a local artifact and in
//! the state's object store) and what scanners read (`grype sbom:FILE`,
//! `trivy sbom FILE`).
//!
//! The document is a function of its inputs: the serial number is derived
//! from the image, its content address and its packages, and the timestamp
//! is the build's, so one build's SBOM has one set of bytes.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Inventory, OsRelease, Package, PackageKind, SbomError};

/// The image an SBOM describes.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The image address, e.g. `local.chroot.base`.
    pub address: &'a str,
    /// `sha256:<hex>`.
    pub content_address: &'a str,
    /// RFC 3339.
    pub built_at: &'a str,
}

const SOURCE: &str = "imgform:package:source";
const ARCH: &str = "imgform:package:arch";

/// The CycloneDX 1.5 document of `inventory`, pretty-printed, ending in a
/// newline.
pub fn to_cyclonedx(subject: &Subject<'_>, inventory: &Inventory) -> Vec<u8> {
    let components: Vec<Value> = std::iter::once(os_component(&inventory.os))
        .filter(|_| !inventory.os.id.is_empty())
        .chain(inventory.packages.iter().map(|p| {
            let purl = inventory.purl(p);
            let mut properties = vec![json!({"name": ARCH, "value": p.arch})];
            if let Some(source) = &p.source {
                properties.push(json!({"name": SOURCE, "value": source}));
            }
            json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "properties": properties,
            })
        }))
        .collect();
    let doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial_number(subject, inventory),
        "version": 1,
        "metadata": {
            "timestamp": subject.built_at,
            "tools": {"components": [{
                "type": "application",
                "name": "imgform",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "operating-system",
                "bom-ref": subject.address,
                "name": subject.address,
                "version": subject.content_address,
                "description": if inventory.os.pretty_name.is_empty() {
                    "machine image".to_owned()
                } else {
                    format!("machine image ({})", inventory.os.pretty_name)
                },
            },
        },
        "components": components,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

/// The distribution itself, as syft and grype describe it.
fn os_component(os: &OsRelease) -> Value {
    json!({
        "type": "operating-system",
        "bom-ref": format!("os:{}@{}", os.id, os.version_id),
        "name": os.id,
        "version": os.version_id,
        "description": os.pretty_name,
    })
}

/// `urn:uuid:` + a version-4-shaped UUID made of the document's digest.
fn serial_number(subject: &Subject<'_>, inventory: &Inventory) -> String {
    let mut h = Sha256::new();
    h.update(subject.address.as_bytes());
    h.update([0]);
    h.update(subject.content_address.as_bytes());
    for p in &inventory.packages {
        h.update([0]);
        h.update(inventory.purl(p).as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    format!(
        "urn:uuid:{}",
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    )
}

/// Reads back an SBOM [`to_cyclonedx`] wrote.
pub fn from_cyclonedx(bytes: &[u8]) -> Result<Inventory, SbomError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| SbomError(e.to_string()))?;
    if doc["bomFormat"] != "CycloneDX" {
        return Err(SbomError("bomFormat is not CycloneDX".into()));
    }
    let components = doc["components"].as_array().cloned().unwrap_or_default();
    let mut os = OsRelease::default();
    let mut packages = Vec::new();
    for c in &components {
        let text = |k: &str| c[k].as_str().unwrap_or("").to_owned();
        if c["type"] == "operating-system" {
            os = OsRelease {
                id: text("name"),
                version_id: text("version"),
                pretty_name: text("description"),
            };
            continue;
        }
        let purl = text("purl");
        let kind = purl
            .strip_prefix("pkg:")
            .and_then(|rest| rest.split('/').next())
            .and_then(PackageKind::parse)
            .ok_or_else(|| SbomError(format!("component {} has no known purl", text("name"))))?;
        let property = |name: &str| {
            c["properties"].as_array().and_then(|ps| {
                ps.iter()
                    .find(|p| p["name"] == name)
                    .and_then(|p| p["value"].as_str())
                    .map(str::to_owned)
            })
        };
        packages.push(Package {
            name: text("name"),
            version: text("version"),
            arch: property(ARCH).unwrap_or_default(),
            kind,
            source: property(SOURCE),
        });
    }
    Ok(Inventory::new(os, packages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::tests::sample;

    fn subject() -> Subject<'static> {
        Subject {
            address: "local.chroot.base",
            content_address: "sha256:0123",
            built_at: "2026-12-02T08:00:00Z",
        }
    }

    #[test]
    fn a_document_reads_back_as_the_inventory_it_was_made_of() {
        let inv = sample();
        let bytes = to_cyclonedx(&subject(), &inv);
        assert_eq!(from_cyclonedx(&bytes).unwrap(), inv);
    }

    #[test]
    fn the_same_build_gives_the_same_bytes_and_a_valid_serial() {
        let a = to_cyclonedx(&subject(), &sample());
        assert_eq!(a, to_cyclonedx(&subject(), &sample()));
        let doc: Value = serde_json::from_slice(&a).unwrap();
        let serial = doc["serialNumber"].as_str().unwrap();
        let uuid = serial.strip_prefix("urn:uuid:").unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_eq!(doc["specVersion"], "1.5");
        assert_eq!(doc["components"][0]["type"], "operating-system");
        assert_eq!(
            doc["components"][1]["purl"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
    }

    #[test]
    fn other_documents_are_refused() {
        assert!(from_cyclonedx(b"{\"spdxVersion\":\"SPDX-2.3\"}").is_err());
        assert!(from_cyclonedx(b"not json").is_err());
    }
}
