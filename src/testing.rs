//! What the unit tests of the planner and of drift share: hand-made
//! manifests and the records of images built from them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::addr::ContentAddress;
use crate::fingerprint::Manifest;
use crate::state::{Artifact, ImageRecord};

/// A `null` image's manifest at `addr`.
pub fn manifest(
    addr: &str,
    inputs: Value,
    provisioners: Value,
    variables: Value,
    parents: Value,
) -> Manifest {
    serde_json::from_value(json!({
        "imgform_manifest": 1,
        "address": addr,
        "builder": "null",
        "inputs": inputs,
        "provisioners": provisioners,
        "parents": parents,
        "files": {},
        "modules": {},
        "variables": variables,
    }))
    .expect("a manifest")
}

pub fn address_of(m: &Manifest) -> ContentAddress {
    ContentAddress::of(&m.canonical_bytes())
}

/// The record of `m` built into `artifact`.
pub fn record(m: &Manifest, artifact: &str) -> ImageRecord {
    ImageRecord {
        content_address: address_of(m),
        builder: "null".to_owned(),
        artifact: Artifact {
            id: artifact.to_owned(),
            attributes: BTreeMap::new(),
        },
        parents: BTreeMap::new(),
        base: None,
        data: BTreeMap::new(),
        text_inputs: BTreeMap::new(),
        built_at: "2026-01-02T03:04:05Z".to_owned(),
        sbom: None,
        previous_sbom: None,
        tainted: false,
        previous: Vec::new(),
    }
}
