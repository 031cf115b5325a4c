//! SPDX 2.3 JSON, made from the stored CycloneDX document's inventory
//! (`imgform sbom ADDR --format spdx`).

use serde_json::{json, Value};

use super::cyclonedx::Subject;
use super::Inventory;

/// The SPDX 2.3 document of `inventory`, pretty-printed, ending in a newline.
pub fn to_spdx(subject: &Subject<'_>, inventory: &Inventory) -> Vec<u8> {
    let hex = subject
        .content_address
        .strip_prefix("sha256:")
        .unwrap_or(subject.content_address);
    let mut packages = vec![json!({
        "name": subject.address,
        "SPDXID": "SPDXRef-Image",
        "versionInfo": subject.content_address,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": if inventory.os.pretty_name.is_empty() {
            "machine image".to_owned()
        } else {
            format!("machine image ({})", inventory.os.pretty_name)
        },
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in inventory.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}-{i}",
            p.kind.as_str(),
            spdx_id_part(&p.name)
        );
        let mut package = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": inventory.purl(p),
            }],
        });
        if let Some(source) = &p.source {
            package["sourceInfo"] = Value::String(format!("built from source package {source}"));
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.address,
        "documentNamespace": format!(
            "https://imgform.invalid/spdx/{}/{hex}",
            spdx_id_part(subject.address)
        ),
        "creationInfo": {
            "created": subject.built_at,
            "creators": [format!("Tool: imgform-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

/// What an SPDX id may hold: letters, digits, `.` and `-`.
fn spdx_id_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::tests::sample;

    #[test]
    fn every_package_is_contained_in_the_image_with_its_purl() {
        let subject = Subject {
            address: "local.chroot.base",
            content_address: "sha256:0123",
            built_at: "2026-12-02T08:00:00Z",
        };
        let doc: Value = serde_json::from_slice(&to_spdx(&subject, &sample())).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"].as_array().unwrap().len(), 3);
        assert_eq!(doc["packages"][1]["SPDXID"], "SPDXRef-Package-deb-libc6-0");
        assert_eq!(
            doc["packages"][1]["sourceInfo"],
            "built from source package glibc"
        );
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 3);
        assert_eq!(
            doc["documentNamespace"],
            "https://imgform.invalid/spdx/local.chroot.base/0123"
        );
    }
}
