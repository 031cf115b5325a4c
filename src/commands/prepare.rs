//! The shared front half of plan/apply/validate/graph: load → evaluate →
//! fingerprint (in dependency order) → plan against the recorded state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::addr::{ImageAddr, TargetAddr};
use crate::apply::BuildJob;
use crate::config::{self, LoadOptions, Project};
use crate::diag::{Diagnostic, Diagnostics};
use crate::drivers;
use crate::fingerprint::{self, FileHasher, Manifest};
use crate::graph::ImageGraph;
use crate::plan::{self, Plan, PlanInput, PlannedImage};
use crate::spec::{ImageRef, ImageSpec};
use crate::state::{LocalBackend, StateBackend, StateFile};

pub struct PreparedImage {
    pub spec: ImageSpec,
    pub manifest: Manifest,
}

pub struct Prepared {
    pub project: Project,
    pub graph: ImageGraph,
    /// Parents before children.
    pub order: Vec<ImageAddr>,
    pub images: BTreeMap<ImageAddr, PreparedImage>,
    pub warnings: Vec<Diagnostic>,
}

/// Loads, evaluates and fingerprints every image. All problems are
/// collected into one `Diagnostics` error.
pub fn prepare(dir: &Path, options: &LoadOptions) -> Result<Prepared, Diagnostics> {
    let project = config::load(dir, options)?;
    let graph = ImageGraph::build(project.images.iter().map(|i| (&i.addr, &i.refs)))
        .map_err(Diagnostics)?;
    let order = graph.topo_order();
    let hasher = FileHasher::new();
    let mut images: BTreeMap<ImageAddr, PreparedImage> = BTreeMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut broken: BTreeSet<ImageAddr> = BTreeSet::new();
    for addr in &order {
        let def = project.image(addr).expect("graph nodes are images");
        if def.refs.keys().any(|p| broken.contains(p)) {
            broken.insert(addr.clone());
            continue;
        }
        let parent_addresses: BTreeMap<ImageAddr, String> = def
            .refs
            .keys()
            .filter_map(|p| {
                images
                    .get(p)
                    .map(|i| (p.clone(), i.manifest.content_address.clone()))
            })
            .collect();
        let tokens = parent_addresses
            .iter()
            .map(|(p, ca)| (p.clone(), ImageRef::token(p, ca)))
            .collect();
        let spec = match project.evaluate_image(def, &tokens) {
            Ok(spec) => spec,
            Err(d) => {
                diags.extend(d);
                broken.insert(addr.clone());
                continue;
            }
        };
        if let Some(builder) = drivers::builder_for(&spec.builder) {
            let problems = builder.validate(&spec);
            if problems.iter().any(Diagnostic::is_error) {
                diags.extend(problems);
                broken.insert(addr.clone());
                continue;
            }
            diags.extend(problems);
        }
        match fingerprint::fingerprint(&spec, &parent_addresses, &hasher) {
            Ok(manifest) => {
                images.insert(addr.clone(), PreparedImage { spec, manifest });
            }
            Err(d) => {
                diags.extend(d);
                broken.insert(addr.clone());
            }
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        let mut all = project.warnings.clone();
        all.extend(diags);
        return Err(Diagnostics(all));
    }
    let mut warnings = project.warnings.clone();
    warnings.extend(diags);
    Ok(Prepared {
        project,
        graph,
        order,
        images,
        warnings,
    })
}

pub fn state_dir(def_dir: &Path) -> PathBuf {
    def_dir.join("state")
}

pub fn backend_for(def_dir: &Path) -> LocalBackend {
    LocalBackend::new(state_dir(def_dir))
}

/// Loads the state of every target that is defined or recorded.
pub fn load_states(
    backend: &dyn StateBackend,
    prepared: &Prepared,
) -> Result<BTreeMap<TargetAddr, StateFile>> {
    let mut targets: BTreeSet<TargetAddr> = prepared
        .images
        .values()
        .map(|i| i.spec.target.clone())
        .collect();
    targets.extend(
        backend
            .targets()
            .context("listing state targets")?
            .into_iter()
            .map(TargetAddr),
    );
    let mut states = BTreeMap::new();
    for target in targets {
        let state = backend
            .load(&target.0)
            .with_context(|| format!("loading the state of target {target}"))?;
        states.insert(target, state);
    }
    Ok(states)
}

pub struct PlanRequest<'a> {
    pub replace: &'a [String],
    pub targets: &'a [String],
    pub refresh: bool,
}

fn parse_addrs(list: &[String], prepared: &Prepared, flag: &str) -> Result<BTreeSet<ImageAddr>> {
    let mut out = BTreeSet::new();
    for s in list {
        let addr: ImageAddr = s.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        if !prepared.images.contains_key(&addr) {
            let known: Vec<String> = prepared.images.keys().map(ToString::to_string).collect();
            let hint = crate::drivers::schema::closest(s, known.iter().map(String::as_str))
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            anyhow::bail!("{flag} {s}: no such image in the definitions{hint}");
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
) -> Result<Plan> {
    let replace = parse_addrs(request.replace, prepared, "--replace")?;
    let targeted = parse_addrs(request.targets, prepared, "--target")?;
    let only: Option<BTreeSet<ImageAddr>> = (!targeted.is_empty()).then(|| {
        targeted
            .iter()
            .flat_map(|t| prepared.graph.with_ancestors(t))
            .collect()
    });

    // Refresh: does each recorded artifact still exist?
    let mut missing = BTreeSet::new();
    if request.refresh {
        for state in states.values() {
            for (addr, record) in &state.images {
                let Ok(a) = addr.parse::<ImageAddr>() else {
                    continue;
                };
                if only.as_ref().is_some_and(|o| !o.contains(&a)) {
                    continue;
                }
                let Some(builder) = drivers::builder_for(&record.builder) else {
                    continue;
                };
                if !builder
                    .exists(&prepared.project.def_dir, &record.artifact)
                    .await
                    .with_context(|| format!("refreshing {addr}"))?
                {
                    missing.insert(a);
                }
            }
        }
    }

    // What the diff needs from the object store.
    let mut old_manifests = BTreeMap::new();
    let mut old_texts = BTreeMap::new();
    for (addr, image) in &prepared.images {
        let Some(record) = states
            .get(&image.spec.target)
            .and_then(|s| s.images.get(&addr.to_string()))
        else {
            continue;
        };
        if record.content_address == image.manifest.content_address {
            continue;
        }
        let hex = record.content_address.trim_start_matches("sha256:");
        if let Some(bytes) = backend.get_object(hex).ok().flatten() {
            if let Ok(v) = serde_json::from_slice(&bytes) {
                old_manifests.insert(record.content_address.clone(), v);
            }
        }
        for hex in record.text_inputs.values() {
            if let Some(bytes) = backend.get_object(hex).ok().flatten() {
                old_texts.insert(hex.clone(), bytes);
            }
        }
    }

    let planned: Vec<PlannedImage> = prepared
        .order
        .iter()
        .filter_map(|addr| prepared.images.get(addr))
        .map(|i| PlannedImage {
            addr: &i.spec.addr,
            target: &i.spec.target,
            builder: &i.spec.builder,
            content_address: &i.manifest.content_address,
            manifest: &i.manifest.json,
            texts: i
                .manifest
                .text_inputs
                .iter()
                .map(|(p, t)| (p.clone(), t.bytes.as_slice()))
                .collect(),
            parents: i.spec.parents.iter().cloned().collect(),
        })
        .collect();
    Ok(plan::plan(PlanInput {
        images: planned,
        states,
        old_manifests: &old_manifests,
        old_texts: &old_texts,
        missing: &missing,
        replace: &replace,
        only: only.as_ref(),
        refresh: request.refresh,
    }))
}

/// The build jobs for the images a plan builds.
pub fn build_jobs(prepared: &Prepared, plan: &Plan) -> BTreeMap<ImageAddr, BuildJob> {
    plan.changes
        .iter()
        .filter(|c| c.action.builds())
        .filter_map(|c| prepared.images.get(&c.address))
        .map(|i| {
            (
                i.spec.addr.clone(),
                BuildJob {
                    spec: i.spec.clone(),
                    content_address: i.manifest.content_address.clone(),
                    manifest_bytes: i.manifest.bytes.clone(),
                    text_inputs: i.manifest.text_inputs.clone(),
                },
            )
        })
        .collect()
}
