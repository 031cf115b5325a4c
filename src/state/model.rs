//! The recorded state of one target, as stored on disk (format version 1).
//!
//! Invariants: `serial` grows by one each time the stored contents change and
//! never otherwise; `lineage` is fixed when a state is first created and ties
//! saved plans to this state; nothing secret is ever put in a record (the
//! manifest behind `content_address` is built from redacted values).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::addr::{ContentAddress, ImageAddr};

pub const STATE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub format_version: u32,
    pub lineage: String,
    pub serial: u64,
    pub target: String,
    #[serde(default)]
    pub images: BTreeMap<ImageAddr, ImageRecord>,
}

impl StateFile {
    /// A fresh, empty state with a new lineage (serial 0, not yet written).
    pub fn new(target: &str) -> StateFile {
        StateFile {
            format_version: STATE_FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            target: target.to_owned(),
            images: BTreeMap::new(),
        }
    }
}

/// What is known about one built image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the canonical manifest; the manifest itself is in the
    /// object store under the same hex.
    pub content_address: ContentAddress,
    /// Builder type, e.g. `null`, `chroot`, `amazon-ebs`.
    pub builder: String,
    pub artifact: Artifact,
    /// Parent image address → what this image was built from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parents: BTreeMap<ImageAddr, ParentRef>,
    /// The base image as resolved when this image was built (reused by
    /// `--refresh=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRecord>,
    /// The data sources its inputs use, as looked up when it was built
    /// (reused by `--refresh=false`): `data.KIND.NAME` → record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, DataRecord>,
    /// Small text inputs (scripts, playbooks, templates): relative path →
    /// sha256 hex of the bytes, stored in the object store so a later plan can
    /// diff them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub text_inputs: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub built_at: String,
    /// The image's packages as a CycloneDX 1.5 document: the object store's
    /// hex of its bytes (`imgform sbom`). None when the image has no package
    /// database imgform reads, or was built before imgform recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
    /// The SBOM of the version this build replaced (`imgform diff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sbom: Option<String>,
    /// Marked for rebuild by the user or by a failed post-build step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tainted: bool,
    /// Older artifacts kept by `keep_previous`, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// `null:<hex12>`, an AMI id, a Glance image id, a qcow2 path.
    pub id: String,
    /// Builder-specific details: region, sha256 of a file, snapshot ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// Refresh found a recorded artifact whose bytes are no longer those its
/// build recorded (a local image edited, damaged or replaced since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactChange {
    /// `sha256:<hex>` as recorded.
    pub recorded: String,
    /// `sha256:<hex>` of the bytes now.
    pub found: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub content_address: ContentAddress,
    pub artifact_id: String,
}

/// One data source look-up. Holds no secret: a secret output is neither in
/// `summary` (a keyed digest stands for it) nor in `outputs` (absent when
/// any output is secret; such a data source is looked up again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRecord {
    /// A stable description of how it was asked (the block's inputs).
    pub query: String,
    /// What of the result enters content addresses.
    pub summary: serde_json::Value,
    /// Every output, for `--refresh=false` and saved plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// A stable description of how the base was asked for (the filter).
    pub query: String,
    /// What it resolved to.
    pub id: String,
}
