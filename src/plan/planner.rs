//! The planner. See the module doc of `plan`.

use std::collections::{BTreeMap, BTreeSet};

use super::diff;
use super::model::*;
use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::fingerprint::Manifest;
use crate::state::{ArtifactChange, ImageRecord, StateFile};

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
    /// Recorded artifacts refresh found with other bytes than recorded.
    pub changed: &'a BTreeMap<ImageAddr, ArtifactChange>,
    /// `--replace`.
    pub replace: &'a BTreeSet<ImageAddr>,
    /// `--target`, already widened to the targets' ancestors; None = all.
    pub only: Option<&'a BTreeSet<ImageAddr>>,
    pub refresh: bool,
}

pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut planner = Planner {
        input: &input,
        targets: input.images.iter().map(|i| (i.addr, i.target)).collect(),
        actions: BTreeMap::new(),
    };
    let mut changes: Vec<Change> = input
        .images
        .iter()
        .filter(|i| input.only.is_none_or(|only| only.contains(i.addr)))
        .map(|image| planner.change(image))
        .collect();
    // Recorded but no longer defined: destroy (not when planning a subset).
    if input.only.is_none() {
        changes.extend(destroys(&input));
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

struct Planner<'p, 'a> {
    input: &'p PlanInput<'a>,
    /// Where each defined image lives, to find its parents' records.
    targets: BTreeMap<&'a ImageAddr, &'a TargetAddr>,
    /// What this plan does to each image planned so far.
    actions: BTreeMap<ImageAddr, Action>,
}

impl<'a> Planner<'_, 'a> {
    fn record(&self, addr: &ImageAddr, target: &TargetAddr) -> Option<&'a ImageRecord> {
        self.input.states.get(target)?.images.get(addr)
    }

    /// What happens to one defined image, and why.
    fn change(&mut self, image: &PlannedImage<'a>) -> Change {
        let record = self.record(image.addr, image.target);
        let mut reasons = Vec::new();
        let mut change_diff = ChangeDiff::default();
        match record {
            None => reasons.push(RebuildReason::NotInState),
            Some(record) => {
                if &record.content_address != image.content_address {
                    self.content_reasons(image, record, &mut reasons, &mut change_diff);
                }
                if record.tainted {
                    reasons.push(RebuildReason::Tainted);
                }
                if self.input.missing.contains(image.addr) {
                    reasons.push(RebuildReason::ArtifactMissing {
                        id: record.artifact.id.clone(),
                    });
                }
                if let Some(change) = self.input.changed.get(image.addr) {
                    reasons.push(RebuildReason::ArtifactChanged {
                        id: record.artifact.id.clone(),
                        recorded: change.recorded.clone(),
                        found: change.found.clone(),
                    });
                }
                self.parent_reasons(image, record, &mut reasons);
            }
        }
        if self.input.replace.contains(image.addr) {
            reasons.push(RebuildReason::Forced);
        }
        dedup(&mut reasons);
        let action = match (record, reasons.is_empty()) {
            (None, _) => Action::Build,
            (Some(_), true) => Action::NoOp,
            (Some(_), false) => Action::Rebuild,
        };
        self.actions.insert(image.addr.clone(), action);
        Change {
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
        }
    }

    /// Why the content address moved: the manifests compared field by
    /// field, with diffs for humans.
    fn content_reasons(
        &self,
        image: &PlannedImage<'a>,
        record: &ImageRecord,
        reasons: &mut Vec<RebuildReason>,
        change_diff: &mut ChangeDiff,
    ) {
        let Some(old) = self.input.old_manifests.get(&record.content_address) else {
            reasons.push(RebuildReason::ContentChanged);
            return;
        };
        reasons.extend(image.manifest.compare(old));
        if reasons.is_empty() {
            // Equal manifests under different addresses.
            reasons.push(RebuildReason::UnknownChange);
        }
        // File and parent changes speak for themselves; show the manifest
        // only when a setting-like input changed.
        if reasons.iter().any(|r| {
            matches!(
                r,
                RebuildReason::InputChanged { .. } | RebuildReason::VariableChanged { .. }
            )
        }) {
            change_diff.manifest = diff::manifest_diff(old, image.manifest);
        }
        for reason in reasons.iter() {
            if let RebuildReason::FileChanged { path, .. } = reason {
                let old = record
                    .text_inputs
                    .get(path)
                    .and_then(|hex| self.input.old_texts.get(hex));
                if let (Some(old), Some(new)) = (old, image.texts.get(path)) {
                    if let Some(d) = diff::text_diff(path, old, new) {
                        change_diff.files.insert(path.clone(), d);
                    }
                }
            }
        }
    }

    /// A parent rebuilt in this plan, or rebuilt since this image was built
    /// from it.
    fn parent_reasons(
        &self,
        image: &PlannedImage<'a>,
        record: &ImageRecord,
        reasons: &mut Vec<RebuildReason>,
    ) {
        for parent in &image.parents {
            let name = parent.to_string();
            let said = reasons
                .iter()
                .any(|r| matches!(r, RebuildReason::ParentRebuilt { address } if *address == name));
            if said {
                continue;
            }
            let rebuilt_now = self.actions.get(parent).is_some_and(|a| a.builds());
            let built_from = record.parents.get(parent).map(|p| p.artifact_id.as_str());
            let parent_now = self
                .targets
                .get(parent)
                .and_then(|t| self.record(parent, t))
                .map(|r| r.artifact.id.as_str());
            let rebuilt_since =
                matches!((built_from, parent_now), (Some(from), Some(now)) if from != now);
            if rebuilt_now || rebuilt_since {
                reasons.push(RebuildReason::ParentRebuilt { address: name });
            }
        }
    }
}

/// Recorded images that are no longer defined (at that target).
fn destroys(input: &PlanInput<'_>) -> Vec<Change> {
    let defined: BTreeSet<(&TargetAddr, &ImageAddr)> =
        input.images.iter().map(|i| (i.target, i.addr)).collect();
    let mut out = Vec::new();
    for (target, state) in input.states {
        for (addr, record) in &state.images {
            if defined.contains(&(target, addr)) {
                continue;
            }
            out.push(Change {
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
    out
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

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
