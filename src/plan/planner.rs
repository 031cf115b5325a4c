//! The planner. See the module doc of `plan`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::diff;
use super::model::*;
use crate::addr::{ImageAddr, TargetAddr};
use crate::state::StateFile;

/// One defined image, fingerprinted.
#[derive(Debug, Clone)]
pub struct PlannedImage<'a> {
    pub addr: &'a ImageAddr,
    pub target: &'a TargetAddr,
    pub builder: &'a str,
    pub content_address: &'a str,
    pub manifest: &'a Value,
    /// Text inputs now: path → bytes.
    pub texts: BTreeMap<String, &'a [u8]>,
    pub parents: Vec<ImageAddr>,
}

pub struct PlanInput<'a> {
    /// Parents before children.
    pub images: Vec<PlannedImage<'a>>,
    pub states: &'a BTreeMap<TargetAddr, StateFile>,
    /// Previous manifests by content address (those the object store had).
    pub old_manifests: &'a BTreeMap<String, Value>,
    /// Previous text inputs by sha256 hex.
    pub old_texts: &'a BTreeMap<String, Vec<u8>>,
    /// Recorded artifacts found missing by refresh.
    pub missing: &'a BTreeSet<ImageAddr>,
    /// `--replace`.
    pub replace: &'a BTreeSet<ImageAddr>,
    /// `--target`, already widened to the targets' ancestors; None = all.
    pub only: Option<&'a BTreeSet<ImageAddr>>,
    pub refresh: bool,
}

pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut changes: Vec<Change> = Vec::new();
    let mut actions: BTreeMap<ImageAddr, Action> = BTreeMap::new();
    let defined: BTreeSet<(&TargetAddr, String)> = input
        .images
        .iter()
        .map(|i| (i.target, i.addr.to_string()))
        .collect();

    for image in &input.images {
        if input.only.is_some_and(|only| !only.contains(image.addr)) {
            continue;
        }
        let record = input
            .states
            .get(image.target)
            .and_then(|s| s.images.get(&image.addr.to_string()));
        let mut reasons = Vec::new();
        let mut change_diff = ChangeDiff::default();
        match record {
            None => reasons.push(RebuildReason::NotInState),
            Some(record) => {
                if record.content_address != image.content_address {
                    match input.old_manifests.get(&record.content_address) {
                        Some(old) => {
                            reasons.extend(diff::manifest_reasons(old, image.manifest));
                            // File and parent changes speak for themselves; show
                            // the manifest only when a setting-like input changed.
                            if reasons.iter().any(|r| {
                                matches!(
                                    r,
                                    RebuildReason::InputChanged { .. }
                                        | RebuildReason::VariableChanged { .. }
                                )
                            }) {
                                change_diff.manifest = diff::manifest_diff(old, image.manifest);
                            }
                        }
                        None => reasons.push(RebuildReason::ContentChanged),
                    }
                    for reason in &reasons {
                        if let RebuildReason::FileChanged { path, .. } = reason {
                            let old = record
                                .text_inputs
                                .get(path)
                                .and_then(|hex| input.old_texts.get(hex));
                            let new = image.texts.get(path);
                            if let (Some(old), Some(new)) = (old, new) {
                                if let Some(d) = diff::text_diff(path, old, new) {
                                    change_diff.files.insert(path.clone(), d);
                                }
                            }
                        }
                    }
                }
                if record.tainted {
                    reasons.push(RebuildReason::Tainted);
                }
                if input.missing.contains(image.addr) {
                    reasons.push(RebuildReason::ArtifactMissing {
                        id: record.artifact.id.clone(),
                    });
                }
                for parent in &image.parents {
                    let parent_changes = actions.get(parent).is_some_and(|a| a.builds());
                    let already = reasons.iter().any(|r| matches!(r, RebuildReason::ParentRebuilt { address } if address == &parent.to_string()));
                    if parent_changes && !already {
                        reasons.push(RebuildReason::ParentRebuilt {
                            address: parent.to_string(),
                        });
                        continue;
                    }
                    // Rebuilt since this image was built from it?
                    let built_from = record
                        .parents
                        .get(&parent.to_string())
                        .map(|p| p.artifact_id.as_str());
                    let parent_now = input
                        .images
                        .iter()
                        .find(|i| i.addr == parent)
                        .and_then(|i| input.states.get(i.target))
                        .and_then(|s| s.images.get(&parent.to_string()))
                        .map(|r| r.artifact.id.as_str());
                    if let (Some(from), Some(now)) = (built_from, parent_now) {
                        if from != now && !already {
                            reasons.push(RebuildReason::ParentRebuilt {
                                address: parent.to_string(),
                            });
                        }
                    }
                }
            }
        }
        if input.replace.contains(image.addr) {
            reasons.push(RebuildReason::Forced);
        }
        dedup(&mut reasons);
        let action = match (record, reasons.is_empty()) {
            (None, _) => Action::Build,
            (Some(_), true) => Action::NoOp,
            (Some(_), false) => Action::Rebuild,
        };
        actions.insert(image.addr.clone(), action);
        changes.push(Change {
            address: image.addr.clone(),
            target: image.target.clone(),
            builder: image.builder.to_owned(),
            action,
            reasons,
            content: ContentChange {
                old: record.map(|r| r.content_address.clone()),
                new: Some(image.content_address.to_owned()),
            },
            parents: image.parents.clone(),
            current_artifact: record.map(|r| r.artifact.clone()),
            diff: change_diff,
        });
    }

    // Recorded but no longer defined: destroy (not when planning a subset).
    if input.only.is_none() {
        for (target, state) in input.states {
            for (addr, record) in &state.images {
                if defined.contains(&(target, addr.clone())) {
                    continue;
                }
                let Ok(address) = addr.parse::<ImageAddr>() else {
                    continue;
                };
                changes.push(Change {
                    address,
                    target: target.clone(),
                    builder: record.builder.clone(),
                    action: Action::Destroy,
                    reasons: vec![RebuildReason::RemovedFromConfig],
                    content: ContentChange {
                        old: Some(record.content_address.clone()),
                        new: None,
                    },
                    parents: Vec::new(),
                    current_artifact: Some(record.artifact.clone()),
                    diff: ChangeDiff::default(),
                });
            }
        }
    }

    Plan {
        format_version: PLAN_FORMAT_VERSION,
        changes,
        states: input
            .states
            .iter()
            .map(|(t, s)| {
                (
                    t.to_string(),
                    StateRef {
                        lineage: s.lineage.clone(),
                        serial: s.serial,
                    },
                )
            })
            .collect(),
        refresh: input.refresh,
    }
}

fn dedup(reasons: &mut Vec<RebuildReason>) {
    let mut out: Vec<RebuildReason> = Vec::with_capacity(reasons.len());
    for r in reasons.drain(..) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    *reasons = out;
}
