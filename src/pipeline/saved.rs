//! From a plan to the jobs `apply` runs, and to and from saved plan files.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Prepared;
use crate::addr::ImageAddr;
use crate::apply::BuildJob;
use crate::fingerprint::TextInput;
use crate::plan::file::{PlanFile, PlannedBuild, PLAN_FILE_FORMAT_VERSION};
use crate::plan::Plan;
use crate::spec::ImageSpec;

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
                    manifest_bytes: i.fingerprint.bytes.clone(),
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
                    .map(|(p, t)| (p.clone(), String::from_utf8_lossy(&t.bytes).into_owned()))
                    .collect(),
                spec: redacted(j.spec),
            })
            .collect(),
        needs_secrets,
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
                .map(|(p, t)| {
                    let bytes = t.as_bytes().to_vec();
                    let sha256 = hex::encode(Sha256::digest(&bytes));
                    (
                        p.clone(),
                        TextInput {
                            sha256,
                            bytes: Arc::new(bytes),
                        },
                    )
                })
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
