//! The plan stage: refresh what the state records, read back what a diff
//! needs, and run the pure planner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::error::PipelineError;
use super::refresh::{refresh_artifacts, Previous, Refreshed};
use super::Prepared;
use crate::addr::{ImageAddr, TargetAddr};
use crate::plan::{self, Plan, PlanInput, PlannedImage};
use crate::state::{StateBackend, StateFile};

/// What the command line asks of a plan.
pub struct PlanRequest<'a> {
    /// `--replace ADDR`: rebuild these even if unchanged.
    pub replace: &'a [String],
    /// `--target ADDR`: plan only these images and what they are built from.
    pub selected: &'a [String],
    /// Ask the targets whether recorded artifacts still exist.
    pub refresh: bool,
}

/// The images `list` names, each defined; `flag` names the option.
fn parse_addrs(
    list: &[String],
    prepared: &Prepared,
    flag: &'static str,
) -> Result<BTreeSet<ImageAddr>, PipelineError> {
    let mut out = BTreeSet::new();
    for s in list {
        let addr: ImageAddr = s
            .parse()
            .map_err(|source| PipelineError::BadAddress { flag, source })?;
        if !prepared.images.contains_key(&addr) {
            let known: Vec<String> = prepared.images.keys().map(ToString::to_string).collect();
            return Err(PipelineError::UnknownImage {
                flag,
                address: s.clone(),
                suggestion: crate::diag::closest(s, known.iter().map(String::as_str))
                    .map(str::to_owned),
            });
        }
        out.insert(addr);
    }
    Ok(out)
}

/// Refreshes recorded artifacts, loads what the diff needs from the object
/// store, and runs the planner.
pub async fn make_plan(
    prepared: &Prepared,
    backend: &dyn StateBackend,
    states: &BTreeMap<TargetAddr, StateFile>,
    request: &PlanRequest<'_>,
) -> Result<Plan, PipelineError> {
    let replace = parse_addrs(request.replace, prepared, "--replace")?;
    let selected = parse_addrs(request.selected, prepared, "--target")?;
    let only: Option<BTreeSet<ImageAddr>> = (!selected.is_empty()).then(|| {
        selected
            .iter()
            .flat_map(|t| prepared.graph.with_ancestors(t))
            .collect()
    });
    let refreshed = if request.refresh {
        refresh_artifacts(prepared, states, only.as_ref()).await?
    } else {
        Refreshed::default()
    };
    let previous = Previous::load(backend, prepared, states, true);
    let texts = current_texts(prepared, states);
    let planned: Vec<PlannedImage> = prepared
        .order
        .iter()
        .filter_map(|addr| prepared.images.get(addr))
        .map(|i| PlannedImage {
            addr: &i.spec.addr,
            target: &i.spec.target,
            builder: &i.spec.builder,
            content_address: &i.fingerprint.content_address,
            manifest: &i.fingerprint.manifest,
            texts: texts
                .get(&i.spec.addr)
                .map(|t| t.iter().map(|(p, b)| (p.clone(), b.as_slice())).collect())
                .unwrap_or_default(),
            parents: i.spec.parents.iter().cloned().collect(),
        })
        .collect();
    Ok(plan::plan(PlanInput {
        images: planned,
        states,
        old_manifests: &previous.manifests,
        old_texts: &previous.texts,
        missing: &refreshed.missing,
        changed: &refreshed.changed,
        replace: &replace,
        only: only.as_ref(),
        refresh: request.refresh,
    }))
}

/// The text inputs of the recorded images whose content changed (the only
/// ones a diff is shown for), read back now: an unchanged plan of 10,000
/// images reads none.
fn current_texts(
    prepared: &Prepared,
    states: &BTreeMap<TargetAddr, StateFile>,
) -> BTreeMap<ImageAddr, BTreeMap<String, Arc<Vec<u8>>>> {
    prepared
        .images
        .iter()
        .filter(|(addr, i)| {
            states
                .get(&i.spec.target)
                .and_then(|s| s.images.get(*addr))
                .is_some_and(|r| r.content_address != i.fingerprint.content_address)
        })
        .map(|(addr, i)| {
            let texts = i
                .fingerprint
                .text_inputs
                .iter()
                .filter_map(|(p, t)| Some((p.clone(), t.read()?)))
                .collect();
            (addr.clone(), texts)
        })
        .collect()
}
