//! Drift: which recorded images are stale, and why.
//!
//! A pure function of (recorded states, current definitions, what refresh
//! found, now) → [`DriftReport`]. Every recorded image is `current`,
//! `stale` (with typed reasons), or `missing` (its artifact is gone); an
//! artifact that belongs to a defined image but that no state knows is
//! `untracked`. For every child the report also says which parent artifact
//! it was built from and whether that parent has moved on (the ancestry
//! view of HCP Packer).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::addr::{ImageAddr, TargetAddr};
use crate::plan::diff::manifest_reasons;
use crate::plan::RebuildReason;
use crate::state::StateFile;

pub const DRIFT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    Current,
    Stale,
    Missing,
    Untracked,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Current => "current",
            DriftStatus::Stale => "stale",
            DriftStatus::Missing => "missing",
            DriftStatus::Untracked => "untracked",
        }
    }
}

/// Why a recorded image is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriftReason {
    /// The definitions changed since it was built; `changes` says how.
    InputsChanged { changes: Vec<RebuildReason> },
    /// Its base filter resolves to a newer upstream image now.
    BaseUpdated { old_id: String, new_id: String },
    /// Its parent was rebuilt after it: it was built from `built_from`, the
    /// parent's artifact is `current` now.
    ParentRebuilt {
        address: String,
        built_from: String,
        current: String,
    },
    /// Older than the build's `max_age`.
    TooOld { built_at: String, max_age: String },
    /// Recorded, but no longer defined.
    RemovedFromConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestry {
    pub address: String,
    pub built_from: String,
    /// The parent's recorded artifact now (None if the parent is not recorded).
    pub current: Option<String>,
    pub moved_on: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftEntry {
    pub address: String,
    pub target: String,
    pub status: DriftStatus,
    pub artifact_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<DriftReason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Ancestry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub format_version: u32,
    pub images: Vec<DriftEntry>,
}

impl DriftReport {
    pub fn count(&self, status: DriftStatus) -> usize {
        self.images.iter().filter(|e| e.status == status).count()
    }

    /// Whether anything is stale, missing or untracked.
    pub fn has_drift(&self) -> bool {
        self.images.iter().any(|e| e.status != DriftStatus::Current)
    }
}

/// A defined image, as it is now.
pub struct CurrentImage<'a> {
    pub target: &'a TargetAddr,
    pub content_address: &'a str,
    pub manifest: &'a Value,
    pub max_age: Option<(&'a str, Duration)>,
}

pub struct DriftInput<'a> {
    pub states: &'a BTreeMap<TargetAddr, StateFile>,
    pub images: &'a BTreeMap<ImageAddr, CurrentImage<'a>>,
    pub old_manifests: &'a BTreeMap<String, Value>,
    /// Recorded artifacts refresh found gone.
    pub missing: &'a BTreeSet<ImageAddr>,
    /// Artifacts of defined images that no state records: (image, target, id).
    pub untracked: &'a [(ImageAddr, TargetAddr, String)],
    pub now: chrono::DateTime<chrono::Utc>,
}

pub fn drift(input: DriftInput<'_>) -> DriftReport {
    let mut images = Vec::new();
    // Recorded artifact of every image, across targets.
    let recorded: BTreeMap<&str, &str> = input
        .states
        .values()
        .flat_map(|s| {
            s.images
                .iter()
                .map(|(a, r)| (a.as_str(), r.artifact.id.as_str()))
        })
        .collect();
    for (target, state) in input.states {
        for (address, record) in &state.images {
            let addr: Option<ImageAddr> = address.parse().ok();
            let mut reasons = Vec::new();
            let mut status = DriftStatus::Current;
            let now_image = addr
                .as_ref()
                .and_then(|a| input.images.get(a))
                .filter(|i| i.target == target);
            match now_image {
                None => reasons.push(DriftReason::RemovedFromConfig),
                Some(image) => {
                    if image.content_address != record.content_address {
                        let mut changes = match input.old_manifests.get(&record.content_address) {
                            Some(old) => manifest_reasons(old, image.manifest),
                            None => {
                                // Without the old manifest, the recorded base
                                // still tells whether upstream moved.
                                let now = image.manifest.get("base").and_then(Value::as_str);
                                match (record.base.as_ref(), now) {
                                    (Some(b), Some(now)) if b.id != now => {
                                        vec![RebuildReason::BaseUpdated {
                                            old_id: b.id.clone(),
                                            new_id: now.to_owned(),
                                        }]
                                    }
                                    _ => vec![RebuildReason::ContentChanged],
                                }
                            }
                        };
                        // A newer upstream base is its own status reason.
                        changes.retain(|c| match c {
                            RebuildReason::BaseUpdated { old_id, new_id } => {
                                reasons.push(DriftReason::BaseUpdated {
                                    old_id: old_id.clone(),
                                    new_id: new_id.clone(),
                                });
                                false
                            }
                            _ => true,
                        });
                        // A parent's new content shows up as parent_rebuilt below
                        // once it is rebuilt; until then it is an input change.
                        if !changes.is_empty() {
                            reasons.push(DriftReason::InputsChanged { changes });
                        }
                    }
                    if let Some((text, max_age)) = image.max_age {
                        let built = chrono::DateTime::parse_from_rfc3339(&record.built_at).ok();
                        let age = built.map(|b| {
                            input
                                .now
                                .signed_duration_since(b.with_timezone(&chrono::Utc))
                        });
                        if age.is_some_and(|a| a.num_seconds() > max_age.as_secs() as i64) {
                            reasons.push(DriftReason::TooOld {
                                built_at: record.built_at.clone(),
                                max_age: text.to_owned(),
                            });
                        }
                    }
                }
            }
            let mut parents = Vec::new();
            for (parent, from) in &record.parents {
                let current = recorded.get(parent.as_str()).map(|s| (*s).to_owned());
                let moved_on = current.as_deref().is_some_and(|c| c != from.artifact_id);
                if moved_on {
                    reasons.push(DriftReason::ParentRebuilt {
                        address: parent.clone(),
                        built_from: from.artifact_id.clone(),
                        current: current.clone().unwrap_or_default(),
                    });
                }
                parents.push(Ancestry {
                    address: parent.clone(),
                    built_from: from.artifact_id.clone(),
                    current,
                    moved_on,
                });
            }
            // A rebuilt parent is said once, with its artifacts.
            let moved: BTreeSet<String> = parents
                .iter()
                .filter(|p| p.moved_on)
                .map(|p| p.address.clone())
                .collect();
            reasons.retain_mut(|r| match r {
                DriftReason::InputsChanged { changes } => {
                    changes.retain(|c| !matches!(c, RebuildReason::ParentRebuilt { address } if moved.contains(address)));
                    !changes.is_empty()
                }
                _ => true,
            });
            if !reasons.is_empty() {
                status = DriftStatus::Stale;
            }
            if addr.as_ref().is_some_and(|a| input.missing.contains(a)) {
                status = DriftStatus::Missing;
            }
            images.push(DriftEntry {
                address: address.clone(),
                target: target.to_string(),
                status,
                artifact_id: record.artifact.id.clone(),
                built_at: Some(record.built_at.clone()),
                reasons,
                parents,
            });
        }
    }
    for (addr, target, id) in input.untracked {
        images.push(DriftEntry {
            address: addr.to_string(),
            target: target.to_string(),
            status: DriftStatus::Untracked,
            artifact_id: id.clone(),
            built_at: None,
            reasons: Vec::new(),
            parents: Vec::new(),
        });
    }
    DriftReport {
        format_version: DRIFT_FORMAT_VERSION,
        images,
    }
}
