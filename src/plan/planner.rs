//! The planner. See the module doc of `plan`.

use std::collections::{BTreeMap, BTreeSet};

use super::diff;
use super::model::*;
use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::fingerprint::Manifest;
use crate::state::StateFile;

/// One defined image, fingerprinted.
#[derive(Debug, Clone)]
pub struct PlannedImage<'a> {
    pub addr: &'a ImageAddr,
    pub target: &'a TargetAddr,
    pub builder: &'a str,
    pub content_address: &'a ContentAddress,
    pub manifest: &'a Manifest,
    /// Text inputs now: path → bytes.
    pub texts: BTreeMap<String, &'a [u8]>,
    pub parents: Vec<ImageAddr>,
}

pub struct PlanInput<'a> {
    /// Parents before children.
    pub images: Vec<PlannedImage<'a>>,
    pub states: &'a BTreeMap<TargetAddr, StateFile>,
    /// Previous manifests by content address (those the object store had).
    pub old_manifests: &'a BTreeMap<ContentAddress, Manifest>,
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
    let defined: BTreeSet<(&TargetAddr, &ImageAddr)> =
        input.images.iter().map(|i| (i.target, i.addr)).collect();

    // Where each defined image lives, to find its parents' records.
    let targets: BTreeMap<&ImageAddr, &TargetAddr> =
        input.images.iter().map(|i| (i.addr, i.target)).collect();
    for image in &input.images {
        if input.only.is_some_and(|only| !only.contains(image.addr)) {
            continue;
        }
        let record = input
            .states
            .get(image.target)
            .and_then(|s| s.images.get(image.addr));
        let mut reasons = Vec::new();
        let mut change_diff = ChangeDiff::default();
        match record {
            None => reasons.push(RebuildReason::NotInState),
            Some(record) => {
                if &record.content_address != image.content_address {
                    match input.old_manifests.get(&record.content_address) {
                        Some(old) => {
                            reasons.extend(image.manifest.compare(old));
                            if reasons.is_empty() {
                                // Equal manifests under different addresses.
                                reasons.push(RebuildReason::UnknownChange);
                            }
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
                    let parent_name = parent.to_string();
                    let already = reasons.iter().any(|r| matches!(r, RebuildReason::ParentRebuilt { address } if *address == parent_name));
                    if parent_changes && !already {
                        reasons.push(RebuildReason::ParentRebuilt {
                            address: parent_name,
                        });
                        continue;
                    }
                    // Rebuilt since this image was built from it?
                    let built_from = record.parents.get(parent).map(|p| p.artifact_id.as_str());
                    let parent_now = targets
                        .get(parent)
                        .and_then(|t| input.states.get(*t))
                        .and_then(|s| s.images.get(parent))
                        .map(|r| r.artifact.id.as_str());
                    if let (Some(from), Some(now)) = (built_from, parent_now) {
                        if from != now && !already {
                            reasons.push(RebuildReason::ParentRebuilt {
                                address: parent_name,
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
                new: Some(image.content_address.clone()),
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
                if defined.contains(&(target, addr)) {
                    continue;
                }
                changes.push(Change {
                    address: addr.clone(),
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
