//! The drift stage: refresh every recorded image and defined target, then
//! the pure drift report.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::PipelineError;
use super::refresh::{refresh_artifacts, untracked_artifacts, Previous};
use super::Prepared;
use crate::addr::{ImageAddr, TargetAddr};
use crate::drift::{self, CurrentImage, DriftInput, DriftReport};
use crate::state::{StateBackend, StateFile};

/// Which recorded images are current, stale (why), missing or untracked.
pub async fn report(
    prepared: &Prepared,
    backend: &dyn StateBackend,
    states: &BTreeMap<TargetAddr, StateFile>,
) -> Result<DriftReport, PipelineError> {
    let refreshed = refresh_artifacts(prepared, states, None).await?;
    let untracked = untracked_artifacts(prepared, states).await?;
    let previous = Previous::load(backend, prepared, states, false);
    let durations: BTreeMap<&ImageAddr, Duration> = prepared
        .images
        .iter()
        .filter_map(|(a, i)| {
            let max_age = i.spec.max_age.as_deref()?;
            crate::spec::parse_duration(max_age).map(|d| (a, d))
        })
        .collect();
    let images: BTreeMap<ImageAddr, CurrentImage> = prepared
        .images
        .iter()
        .map(|(a, i)| {
            (
                a.clone(),
                CurrentImage {
                    target: &i.spec.target,
                    content_address: &i.fingerprint.content_address,
                    manifest: &i.fingerprint.manifest,
                    max_age: i.spec.max_age.as_deref().zip(durations.get(a).copied()),
                },
            )
        })
        .collect();
    Ok(drift::drift(DriftInput {
        states,
        images: &images,
        old_manifests: &previous.manifests,
        missing: &refreshed.missing,
        changed: &refreshed.changed,
        untracked: &untracked,
        now: chrono::Utc::now(),
    }))
}
