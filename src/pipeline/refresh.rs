//! What the pipeline reads back before planning: the recorded states, what
//! refresh finds at the targets (artifacts gone, artifacts no state knows),
//! and the previous manifests and text inputs a diff needs.

use std::collections::{BTreeMap, BTreeSet};

use super::error::{state_error, PipelineError};
use super::Prepared;
use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::build::{join_all, BoxFuture};
use crate::drift::Untracked;
use crate::drivers::{self, Recorded};
use crate::fingerprint::Manifest;
use crate::state::{ArtifactChange, StateBackend, StateFile};

/// At most this many calls to a cloud are in flight during refresh.
const REFRESH_CONCURRENCY: usize = 16;

/// Loads the state of every target that is defined or recorded.
pub fn load_states(
    backend: &dyn StateBackend,
    prepared: &Prepared,
) -> Result<BTreeMap<TargetAddr, StateFile>, PipelineError> {
    let mut states: BTreeMap<TargetAddr, StateFile> = backend
        .load_all()
        .map_err(state_error("loading the state"))?
        .into_iter()
        .map(|s| (TargetAddr(s.target.clone()), s))
        .collect();
    for image in prepared.images.values() {
        let target = &image.spec.target;
        if !states.contains_key(target) {
            let state = backend
                .load(&target.0)
                .map_err(state_error(format!("loading the state of target {target}")))?;
            states.insert(target.clone(), state);
        }
    }
    Ok(states)
}

/// What refresh found about the recorded artifacts.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Recorded images whose artifact no longer exists.
    pub missing: BTreeSet<ImageAddr>,
    /// Recorded images whose artifact exists with other bytes than its
    /// build recorded.
    pub changed: BTreeMap<ImageAddr, ArtifactChange>,
}

/// Refresh: the recorded images (of `only`, when given) whose artifact no
/// longer exists, or exists with other bytes. Every builder is asked at once
/// (a bounded number of calls in flight), each with the image's current
/// spec while it is defined.
pub async fn refresh_artifacts(
    prepared: &Prepared,
    states: &BTreeMap<TargetAddr, StateFile>,
    only: Option<&BTreeSet<ImageAddr>>,
) -> Result<Refreshed, PipelineError> {
    let asks: Vec<_> = states
        .values()
        .flat_map(|s| &s.images)
        .filter(|(addr, _)| only.is_none_or(|o| o.contains(*addr)))
        .filter_map(|(addr, record)| {
            drivers::builder_for(&record.builder).map(|b| (addr, b, &record.artifact))
        })
        .collect();
    let limit = tokio::sync::Semaphore::new(REFRESH_CONCURRENCY);
    type Found = (ImageAddr, Option<ArtifactChange>, bool);
    let futures: Vec<BoxFuture<'_, Result<Found, PipelineError>>> = asks
        .into_iter()
        .map(|(addr, builder, artifact)| {
            let limit = &limit;
            let at = Recorded {
                def_dir: &prepared.project.def_dir,
                spec: prepared.images.get(addr).map(|i| &i.spec),
            };
            Box::pin(async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                let failed = |source| PipelineError::Refresh {
                    address: addr.clone(),
                    source,
                };
                let exists = builder.exists(at, artifact).await.map_err(failed)?;
                let changed = if exists {
                    builder.changed(at, artifact).await.map_err(failed)?
                } else {
                    None
                };
                Ok((addr.clone(), changed, exists))
            }) as BoxFuture<'_, _>
        })
        .collect();
    let mut refreshed = Refreshed::default();
    for result in join_all(futures).await {
        let (addr, changed, exists) = result?;
        if !exists {
            refreshed.missing.insert(addr);
        } else if let Some(change) = changed {
            refreshed.changed.insert(addr, change);
        }
    }
    Ok(refreshed)
}

/// Artifacts of defined images at their targets that no state records (not
/// as the current artifact, nor as a kept previous one).
pub async fn untracked_artifacts(
    prepared: &Prepared,
    states: &BTreeMap<TargetAddr, StateFile>,
) -> Result<Vec<Untracked>, PipelineError> {
    let mut known: BTreeSet<(&ImageAddr, &str)> = BTreeSet::new();
    for (addr, record) in states.values().flat_map(|s| &s.images) {
        known.insert((addr, record.artifact.id.as_str()));
        known.extend(record.previous.iter().map(|p| (addr, p.id.as_str())));
    }
    let builders: Vec<_> = prepared
        .images
        .iter()
        .filter_map(|(addr, image)| {
            drivers::builder_for(&image.spec.builder).map(|b| (addr, &image.spec, b))
        })
        .collect();
    let limit = tokio::sync::Semaphore::new(REFRESH_CONCURRENCY);
    let listings = join_all(
        builders
            .iter()
            .map(|(addr, spec, builder)| {
                let limit = &limit;
                Box::pin(async move {
                    let _permit = limit.acquire().await.expect("semaphore open");
                    builder.list_artifacts(spec).await.map_err(|source| {
                        PipelineError::ListArtifacts {
                            address: (*addr).clone(),
                            source,
                        }
                    })
                }) as BoxFuture<'_, _>
            })
            .collect(),
    )
    .await;
    let mut untracked = Vec::new();
    for ((addr, spec, _), listed) in builders.iter().zip(listings) {
        let listed: Vec<String> = listed?;
        for id in listed {
            if !known.contains(&(*addr, id.as_str())) {
                untracked.push(Untracked {
                    address: (*addr).clone(),
                    target: spec.target.clone(),
                    artifact_id: id,
                });
            }
        }
    }
    Ok(untracked)
}

/// What a diff needs from the object store: the previous manifest of every
/// defined image whose content changed, and (with `texts`) the previous
/// bytes of its text inputs. Missing or unreadable objects are left out:
/// the plan then says it cannot tell what changed.
#[derive(Default)]
pub struct Previous {
    pub manifests: BTreeMap<ContentAddress, Manifest>,
    /// By sha256 hex.
    pub texts: BTreeMap<String, Vec<u8>>,
}

impl Previous {
    pub fn load(
        backend: &dyn StateBackend,
        prepared: &Prepared,
        states: &BTreeMap<TargetAddr, StateFile>,
        texts: bool,
    ) -> Previous {
        let mut previous = Previous::default();
        for (addr, image) in &prepared.images {
            let Some(record) = states
                .get(&image.spec.target)
                .and_then(|s| s.images.get(addr))
            else {
                continue;
            };
            if record.content_address == image.fingerprint.content_address {
                continue;
            }
            let stored = backend
                .get_object(record.content_address.hex())
                .ok()
                .flatten();
            if let Some(manifest) = stored.and_then(|b| Manifest::from_bytes(&b).ok()) {
                previous
                    .manifests
                    .insert(record.content_address.clone(), manifest);
            }
            if texts {
                for hex in record.text_inputs.values() {
                    if let Some(bytes) = backend.get_object(hex).ok().flatten() {
                        previous.texts.insert(hex.clone(), bytes);
                    }
                }
            }
        }
        previous
    }
}
