//! From a plan to the jobs `apply` runs, and to and from saved plan files.

use std::collections::BTreeMap;

use super::error::{state_error, PipelineError};
use super::{Prepared, Resolve};
use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::apply::BuildJob;
use crate::config::LoadOptions;
use crate::fingerprint::TextInput;
use crate::plan::file::{PlanFile, PlannedBuild, PLAN_FILE_FORMAT_VERSION};
use crate::plan::Plan;
use crate::spec::ImageSpec;
use crate::state::{StateBackend, StateFile};

/// The build jobs for the images a plan builds.
pub fn build_jobs(prepared: &Prepared, plan: &Plan) -> BTreeMap<ImageAddr, BuildJob> {
    build_jobs_for(
        prepared,
        plan.changes
            .iter()
            .filter(|c| c.action.builds())
            .map(|c| c.address.clone()),
    )
}

/// Build jobs (spec, manifest, text inputs) for the given images.
pub fn build_jobs_for(
    prepared: &Prepared,
    addrs: impl IntoIterator<Item = ImageAddr>,
) -> BTreeMap<ImageAddr, BuildJob> {
    addrs
        .into_iter()
        .filter_map(|a| prepared.images.get(&a))
        .map(|i| {
            (
                i.spec.addr.clone(),
                BuildJob {
                    spec: i.spec.clone(),
                    content_address: i.fingerprint.content_address.clone(),
                    manifest_bytes: i.fingerprint.bytes(),
                    text_inputs: i.fingerprint.text_inputs.clone(),
                },
            )
        })
        .collect()
}

/// The saved form of a plan: specs, manifests and text inputs of every
/// image it builds. `backend` is the one the plan was made against.
pub fn plan_file(
    prepared: &Prepared,
    plan: &Plan,
    backend: Option<crate::plan::file::SavedBackend>,
) -> PlanFile {
    let jobs = build_jobs(prepared, plan);
    let needs_secrets = jobs
        .values()
        .any(|j| !j.spec.secrets.is_empty() || !j.spec.sensitive_values.is_empty());
    PlanFile {
        format_version: PLAN_FILE_FORMAT_VERSION,
        imgform_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        plan: plan.clone(),
        builds: jobs
            .into_values()
            .map(|j| PlannedBuild {
                content_address: j.content_address,
                manifest: String::from_utf8_lossy(&j.manifest_bytes).into_owned(),
                text_inputs: j
                    .text_inputs
                    .iter()
                    .filter_map(|(p, t)| {
                        let bytes = t.read()?;
                        Some((p.clone(), String::from_utf8_lossy(&bytes).into_owned()))
                    })
                    .collect(),
                spec: redacted(j.spec),
            })
            .collect(),
        needs_secrets,
        templates: None,
        backend,
    }
}

/// A spec with every sensitive value replaced by its digest (as in
/// manifests); apply takes the real values from a fresh evaluation.
fn redacted(spec: ImageSpec) -> ImageSpec {
    if spec.sensitive_values.is_empty() {
        return spec;
    }
    let secrets = spec.sensitive_values.clone();
    let mut json = serde_json::to_value(&spec).expect("spec serializes");
    crate::sensitive::redact_in(&mut json, &secrets);
    serde_json::from_value(json).expect("redacted spec deserializes")
}

/// Build jobs from a saved plan.
pub fn jobs_from_plan_file(file: &PlanFile) -> BTreeMap<ImageAddr, BuildJob> {
    file.builds
        .iter()
        .map(|b| {
            let text_inputs = b
                .text_inputs
                .iter()
                .map(|(p, t)| (p.clone(), TextInput::bytes(t.as_bytes().to_vec())))
                .collect();
            (
                b.spec.addr.clone(),
                BuildJob {
                    spec: b.spec.clone(),
                    content_address: b.content_address.clone(),
                    manifest_bytes: b.manifest.as_bytes().to_vec(),
                    text_inputs,
                },
            )
        })
        .collect()
}

/// The states a saved plan was made against, refusing a plan whose state
/// moved on, that belongs to another lineage, or that was already applied.
pub fn states_for_saved_plan(
    backend: &dyn StateBackend,
    plan: &Plan,
) -> Result<BTreeMap<TargetAddr, StateFile>, PipelineError> {
    let mut states = BTreeMap::new();
    for (target, planned) in &plan.states {
        let mut state = backend
            .load(target)
            .map_err(state_error(format!("loading the state of target {target}")))?;
        let never_written = state.serial == 0 && state.images.is_empty();
        if never_written && planned.serial == 0 {
            // Neither existed: the plan's lineage becomes the state's.
            state.lineage = planned.lineage.clone();
        } else if state.lineage != planned.lineage {
            return Err(PipelineError::OtherLineage {
                target: target.clone(),
                planned: planned.lineage.clone(),
                actual: state.lineage,
            });
        } else if state.serial != planned.serial {
            return Err(PipelineError::StalePlan {
                target: target.clone(),
                planned: planned.serial,
                actual: state.serial,
            });
        }
        states.insert(TargetAddr(target.clone()), state);
    }
    Ok(states)
}

/// Secrets are never saved in a plan: evaluate the definitions again to
/// take them, and refuse if any image's inputs changed since the plan (the
/// content address covers a digest of every sensitive value, so a different
/// secret is refused too).
pub fn take_secrets_from_definitions(
    dir: &std::path::Path,
    options: &LoadOptions,
    jobs: &mut BTreeMap<ImageAddr, BuildJob>,
) -> Result<(), PipelineError> {
    // The plan's own resolutions: a saved plan is applied exactly.
    let mut recorded = super::resolve::Recordings::default();
    for (addr, job) in jobs.iter() {
        if let Some(base) = &job.spec.base {
            recorded.bases.insert(addr.clone(), base.clone());
        }
        recorded.data.extend(job.spec.data.clone());
    }
    let resolve = Resolve::Recorded(tokio::runtime::Handle::current(), recorded);
    let prepared = super::prepare(dir, options, &resolve)?;
    for (addr, job) in jobs.iter_mut() {
        let Some(now) = prepared.images.get(addr) else {
            return Err(PipelineError::NoLongerDefined {
                address: addr.clone(),
            });
        };
        if now.fingerprint.content_address != job.content_address {
            return Err(PipelineError::DefinitionsChanged {
                address: addr.clone(),
                now: now.fingerprint.content_address.clone(),
                planned: job.content_address.clone(),
            });
        }
        // Same inputs: the fresh spec is the plan's, with the secrets.
        let def_dir = job.spec.def_dir.clone();
        job.spec = now.spec.clone();
        job.spec.def_dir = def_dir;
    }
    Ok(())
}

/// Checks a saved plan's jobs before anything runs: each manifest hashes to
/// its content address, and each recorded definition (spec), fingerprinted
/// again against the files here, gives that address. An edited command, a
/// swapped manifest or a file changed since the plan was made is refused.
pub fn verify_jobs(
    jobs: &BTreeMap<ImageAddr, BuildJob>,
    states: &BTreeMap<TargetAddr, StateFile>,
) -> Result<(), PipelineError> {
    let hasher = crate::fingerprint::FileHasher::new();
    let recorded = |addr: &ImageAddr| {
        states
            .values()
            .find_map(|s| s.images.get(addr))
            .map(|r| r.content_address.clone())
    };
    for (addr, job) in jobs {
        let modified = |now: ContentAddress| PipelineError::PlanModified {
            address: addr.clone(),
            now,
            planned: job.content_address.clone(),
        };
        let manifest = ContentAddress::of(&job.manifest_bytes);
        if manifest != job.content_address {
            return Err(modified(manifest));
        }
        let parents = job
            .spec
            .parents
            .iter()
            .filter_map(|p| {
                let ca = jobs
                    .get(p)
                    .map(|j| j.content_address.clone())
                    .or_else(|| recorded(p))?;
                Some((p.clone(), ca))
            })
            .collect();
        let now = crate::fingerprint::fingerprint(&job.spec, &parents, &hasher)
            .map_err(|d| PipelineError::Definitions(crate::diag::Diagnostics(d)))?;
        if now.content_address != job.content_address {
            return Err(modified(now.content_address));
        }
    }
    Ok(())
}
