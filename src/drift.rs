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

use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::fingerprint::{Manifest, RebuildReason};
use crate::state::{ArtifactChange, ImageRecord, StateFile};

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
    /// Its parent was rebuilt after it: it was built from `built_from`, the
    /// parent's artifact is `current` now.
    ParentRebuilt {
        address: String,
        built_from: String,
        current: String,
    },
    /// Older than the build's `max_age`.
    TooOld { built_at: String, max_age: String },
    /// A reason that means here what it means in a plan, and is written the
    /// same: `base_updated` (its base filter resolves to a newer upstream
    /// image now), `data_changed` (a data source its inputs use answers
    /// something else now), `removed_from_config` (recorded, no longer
    /// defined).
    #[serde(untagged)]
    Rebuild(RebuildReason),
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
    pub content_address: &'a ContentAddress,
    pub manifest: &'a Manifest,
    pub max_age: Option<(&'a str, Duration)>,
}

pub struct DriftInput<'a> {
    pub states: &'a BTreeMap<TargetAddr, StateFile>,
    pub images: &'a BTreeMap<ImageAddr, CurrentImage<'a>>,
    pub old_manifests: &'a BTreeMap<ContentAddress, Manifest>,
    /// Recorded artifacts refresh found gone.
    pub missing: &'a BTreeSet<ImageAddr>,
    /// Recorded artifacts refresh found with other bytes than recorded.
    pub changed: &'a BTreeMap<ImageAddr, ArtifactChange>,
    /// Artifacts of defined images that no state records.
    pub untracked: &'a [Untracked],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// An artifact of a defined image that no state records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untracked {
    pub address: ImageAddr,
    pub target: TargetAddr,
    pub artifact_id: String,
}

pub fn drift(input: DriftInput<'_>) -> DriftReport {
    let mut images = Vec::new();
    // Recorded artifact of every image, across targets.
    let recorded: BTreeMap<&ImageAddr, &str> = input
        .states
        .values()
        .flat_map(|s| s.images.iter().map(|(a, r)| (a, r.artifact.id.as_str())))
        .collect();
    for (target, state) in input.states {
        for (address, record) in &state.images {
            let now_image = input.images.get(address).filter(|i| i.target == target);
            let mut reasons = match now_image {
                None => vec![DriftReason::Rebuild(RebuildReason::RemovedFromConfig)],
                Some(image) => {
                    let mut reasons = input_reasons(&input, record, image);
                    reasons.extend(age_reason(&input, record, image));
                    reasons
                }
            };
            if let Some(change) = input.changed.get(address) {
                reasons.push(DriftReason::Rebuild(RebuildReason::ArtifactChanged {
                    id: record.artifact.id.clone(),
                    recorded: change.recorded.clone(),
                    found: change.found.clone(),
                }));
            }
            let parents = ancestry(record, &recorded);
            for p in parents.iter().filter(|p| p.moved_on) {
                reasons.push(DriftReason::ParentRebuilt {
                    address: p.address.clone(),
                    built_from: p.built_from.clone(),
                    current: p.current.clone().unwrap_or_default(),
                });
            }
            // A rebuilt parent is said once, with its artifacts.
            let moved: BTreeSet<&str> = parents
                .iter()
                .filter(|p| p.moved_on)
                .map(|p| p.address.as_str())
                .collect();
            reasons.retain_mut(|r| match r {
                DriftReason::InputsChanged { changes } => {
                    changes.retain(|c| !matches!(c, RebuildReason::ParentRebuilt { address } if moved.contains(address.as_str())));
                    !changes.is_empty()
                }
                _ => true,
            });
            let status = if input.missing.contains(address) {
                DriftStatus::Missing
            } else if reasons.is_empty() {
                DriftStatus::Current
            } else {
                DriftStatus::Stale
            };
            images.push(DriftEntry {
                address: address.to_string(),
                target: target.to_string(),
                status,
                artifact_id: record.artifact.id.clone(),
                built_at: Some(record.built_at.clone()),
                reasons,
                parents,
            });
        }
    }
    for u in input.untracked {
        images.push(DriftEntry {
            address: u.address.to_string(),
            target: u.target.to_string(),
            status: DriftStatus::Untracked,
            artifact_id: u.artifact_id.clone(),
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

/// How the definitions of a recorded image changed since it was built: a
/// newer upstream base on its own, the rest as `inputs_changed`.
fn input_reasons(
    input: &DriftInput<'_>,
    record: &ImageRecord,
    image: &CurrentImage<'_>,
) -> Vec<DriftReason> {
    if image.content_address == &record.content_address {
        return Vec::new();
    }
    let changes = match input.old_manifests.get(&record.content_address) {
        Some(old) => match image.manifest.compare(old) {
            none if none.is_empty() => vec![RebuildReason::UnknownChange],
            changes => changes,
        },
        // Without the old manifest, the recorded base still tells whether
        // upstream moved.
        None => {
            let mut upstream = Vec::new();
            if let (Some(b), Some(now)) = (record.base.as_ref(), image.manifest.base.as_ref()) {
                if &b.id != now {
                    upstream.push(RebuildReason::BaseUpdated {
                        old_id: b.id.clone(),
                        new_id: now.clone(),
                    });
                }
            }
            for (address, was) in &record.data {
                match image.manifest.data.get(address) {
                    Some(now) if now != &was.summary => upstream.push(RebuildReason::DataChanged {
                        address: address.clone(),
                        old: Some(was.summary.clone()),
                        new: Some(now.clone()),
                    }),
                    _ => {}
                }
            }
            if upstream.is_empty() {
                vec![RebuildReason::ContentChanged]
            } else {
                upstream
            }
        }
    };
    // A newer upstream base, or a data source answering something else, is
    // its own status reason. A parent's new content shows up as
    // parent_rebuilt once the parent is rebuilt; until then it is an input
    // change.
    let (base, changes): (Vec<RebuildReason>, Vec<RebuildReason>) =
        changes.into_iter().partition(|c| {
            matches!(
                c,
                RebuildReason::BaseUpdated { .. } | RebuildReason::DataChanged { .. }
            )
        });
    let mut reasons: Vec<DriftReason> = base.into_iter().map(DriftReason::Rebuild).collect();
    if !changes.is_empty() {
        reasons.push(DriftReason::InputsChanged { changes });
    }
    reasons
}

/// `too_old` when the image is older than its `max_age`.
fn age_reason(
    input: &DriftInput<'_>,
    record: &ImageRecord,
    image: &CurrentImage<'_>,
) -> Option<DriftReason> {
    let (text, max_age) = image.max_age?;
    let built = chrono::DateTime::parse_from_rfc3339(&record.built_at).ok()?;
    let age = input
        .now
        .signed_duration_since(built.with_timezone(&chrono::Utc));
    (age.num_seconds() > max_age.as_secs() as i64).then(|| DriftReason::TooOld {
        built_at: record.built_at.clone(),
        max_age: text.to_owned(),
    })
}

/// Which parent artifact a recorded image was built from, and whether the
/// parent has moved on since.
fn ancestry(record: &ImageRecord, recorded: &BTreeMap<&ImageAddr, &str>) -> Vec<Ancestry> {
    record
        .parents
        .iter()
        .map(|(parent, from)| {
            let current = recorded.get(parent).map(|s| (*s).to_owned());
            let moved_on = current.as_deref().is_some_and(|c| c != from.artifact_id);
            Ancestry {
                address: parent.to_string(),
                built_from: from.artifact_id.clone(),
                current,
                moved_on,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
