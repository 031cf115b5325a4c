//! Recovery: artifacts that exist at their targets, were built from exactly
//! the current definitions, and that the state lacks (a crash between
//! capture and record, `state rm`, a copy) — found by their tags or names,
//! and adopted into the state with their manifests.

use std::collections::BTreeMap;

use super::error::{state_error, PipelineError};
use super::saved::build_jobs_for;
use super::Prepared;
use crate::addr::{ImageAddr, TargetAddr};
use crate::state::{Artifact, StateBackend, StateFile};

/// Artifacts of defined images that the state lacks and that were built
/// from exactly the current definitions.
pub async fn adoptable(
    prepared: &Prepared,
    states: &BTreeMap<TargetAddr, StateFile>,
) -> Result<Vec<(ImageAddr, Artifact)>, PipelineError> {
    let mut out = Vec::new();
    for (addr, image) in &prepared.images {
        let Some(builder) = crate::drivers::builder_for(&image.spec.builder) else {
            continue;
        };
        let content = &image.fingerprint.content_address;
        let recorded = states
            .get(&image.spec.target)
            .and_then(|s| s.images.get(addr));
        if recorded.is_some_and(|r| &r.content_address == content) {
            continue;
        }
        let listed = builder
            .list_artifacts(&image.spec)
            .await
            .map_err(|source| PipelineError::ListArtifacts {
                address: addr.clone(),
                source,
            })?;
        for id in listed {
            let adopted = builder
                .adopt(&image.spec, content, &id)
                .await
                .map_err(|source| PipelineError::Inspect {
                    id: id.clone(),
                    source,
                })?;
            out.extend(adopted.map(|artifact| (addr.clone(), artifact)));
        }
    }
    Ok(out)
}

/// Records `artifact` as the image `addr` (its manifest and text inputs into
/// the object store, then the record) and saves its target's state.
pub fn adopt(
    prepared: &Prepared,
    addr: &ImageAddr,
    artifact: &Artifact,
    states: &mut BTreeMap<TargetAddr, StateFile>,
    backend: &dyn StateBackend,
) -> Result<(), PipelineError> {
    let jobs = build_jobs_for(prepared, std::iter::once(addr.clone()));
    let job = jobs.get(addr).expect("a defined image has a job");
    crate::apply::adopt(job, artifact, states, backend).map_err(|source| {
        PipelineError::Record {
            address: addr.clone(),
            source: Box::new(source),
        }
    })?;
    let state = states
        .get_mut(&job.spec.target)
        .expect("adopt made the state");
    backend.save(state).map_err(state_error(format!(
        "saving the state of {}",
        job.spec.target
    )))?;
    Ok(())
}
