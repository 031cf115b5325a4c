//! Apply: execute a plan, exactly as planned.
//!
//! Images are built by walking the plan's dependency order with tokio, at
//! most `parallelism` at a time. An image starts when every parent that this
//! plan rebuilds has been built; a failed image skips its dependents while
//! independent images go on. After each image the state of its target is
//! written (atomically) before the image counts as done, so a crash loses at
//! most the image in flight. Cancellation (Ctrl-C) stops starting new
//! images, lets running builders clean up, records what finished, and
//! returns.
//!
//! Callers must hold the state lock for the whole apply.

pub mod events;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::addr::{ImageAddr, TargetAddr};
use crate::drivers::{self, BuildContext, BuildError};
use crate::fingerprint::TextInput;
use crate::plan::{Action, Plan};
use crate::spec::{substitute_image_refs, ImageSpec};
use crate::state::{Artifact, ImageRecord, ParentRef, StateBackend, StateError, StateFile};
use events::{CancelToken, Event, EventSink};

/// Everything apply needs about one image the plan builds.
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub spec: ImageSpec,
    pub content_address: String,
    pub manifest_bytes: Vec<u8>,
    pub text_inputs: BTreeMap<String, TextInput>,
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    /// Keep artifacts whose tests failed (they are not recorded).
    pub keep_failed: bool,
    /// `--on-error=abort`: keep a failed build's temporary resources.
    pub keep_on_error: bool,
    /// The definition dir (local artifact ids are relative to it).
    pub def_dir: std::path::PathBuf,
    pub run_id: String,
}

#[derive(Debug, Default, Clone)]
pub struct ApplyOutcome {
    pub built: Vec<(ImageAddr, String)>,
    pub failed: Vec<(ImageAddr, String)>,
    pub skipped: Vec<(ImageAddr, ImageAddr)>,
    pub destroyed: Vec<(ImageAddr, String)>,
    pub not_started: Vec<ImageAddr>,
    pub interrupted: bool,
}

impl ApplyOutcome {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.interrupted
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("writing state: {0}")]
    State(#[from] StateError),
    #[error("no builder for source type `{0}` yet")]
    NoBuilder(String),
    #[error("the plan builds {0} but its definition is missing")]
    MissingJob(ImageAddr),
}

struct Finished {
    addr: ImageAddr,
    result: Result<Artifact, BuildError>,
    elapsed: std::time::Duration,
}

/// Runs the plan. `states` are the targets' states as loaded under the lock.
pub async fn apply(
    plan: &Plan,
    mut jobs: BTreeMap<ImageAddr, BuildJob>,
    backend: &dyn StateBackend,
    mut states: BTreeMap<TargetAddr, StateFile>,
    options: &ApplyOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelToken,
) -> Result<ApplyOutcome, ApplyError> {
    let mut outcome = ApplyOutcome::default();
    let to_build: Vec<&crate::plan::Change> =
        plan.changes.iter().filter(|c| c.action.builds()).collect();
    let building: BTreeSet<ImageAddr> = to_build.iter().map(|c| c.address.clone()).collect();
    for change in &to_build {
        if !jobs.contains_key(&change.address) {
            return Err(ApplyError::MissingJob(change.address.clone()));
        }
        if drivers::builder_for(&change.builder).is_none() {
            return Err(ApplyError::NoBuilder(change.builder.clone()));
        }
    }

    // Artifact ids known so far: recorded ones, then this run's.
    let mut artifacts = recorded_artifacts(&states);

    let mut pending: Vec<ImageAddr> = to_build.iter().map(|c| c.address.clone()).collect();
    let mut done: BTreeSet<ImageAddr> = BTreeSet::new();
    let mut failed: BTreeSet<ImageAddr> = BTreeSet::new();
    let mut running: JoinSet<Finished> = JoinSet::new();
    let parallelism = options.parallelism.max(1);
    let run_id = Arc::new(options.run_id.clone());

    loop {
        // Skip images whose parents failed (transitively, in plan order).
        let mut i = 0;
        while i < pending.len() {
            let addr = pending[i].clone();
            let parents = &plan
                .change(&addr)
                .map(|c| c.parents.clone())
                .unwrap_or_default();
            if let Some(bad) = parents.iter().find(|p| failed.contains(*p)) {
                events
                    .send(Event::Skipped {
                        addr: addr.clone(),
                        because: bad.clone(),
                    })
                    .ok();
                outcome.skipped.push((addr.clone(), bad.clone()));
                failed.insert(addr);
                pending.remove(i);
            } else {
                i += 1;
            }
        }
        // Start what is ready.
        if !cancel.is_cancelled() {
            let mut i = 0;
            while i < pending.len() && running.len() < parallelism {
                let addr = pending[i].clone();
                let parents = plan
                    .change(&addr)
                    .map(|c| c.parents.clone())
                    .unwrap_or_default();
                let ready = parents
                    .iter()
                    .all(|p| !building.contains(p) || done.contains(p));
                if !ready {
                    i += 1;
                    continue;
                }
                pending.remove(i);
                let mut job = jobs.remove(&addr).expect("checked above");
                resolve_refs(&mut job.spec, &artifacts);
                let sink = EventSink::new(
                    events.clone(),
                    addr.clone(),
                    job.spec.sensitive_values.clone(),
                );
                let cancel = cancel.clone();
                let run_id = Arc::clone(&run_id);
                let keep_failed = options.keep_failed;
                let keep_on_error = options.keep_on_error;
                let builder_kind = job.spec.builder.clone();
                jobs.insert(addr.clone(), job.clone());
                running.spawn(async move {
                    let started = Instant::now();
                    sink.send(Event::Started { addr: addr.clone() });
                    let builder = drivers::builder_for(&builder_kind).expect("checked above");
                    let ctx = BuildContext {
                        spec: &job.spec,
                        content_address: &job.content_address,
                        run_id: &run_id,
                        events: sink.clone(),
                        cancel,
                        keep_failed,
                        keep_on_error,
                    };
                    let result = builder.build(ctx).await;
                    Finished {
                        addr,
                        result,
                        elapsed: started.elapsed(),
                    }
                });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let finished = match joined {
            Ok(f) => f,
            Err(e) => {
                // A panicking build task: report, keep going with the rest.
                outcome.failed.push((
                    ImageAddr::new(None, "unknown", "unknown"),
                    format!("build task failed: {e}"),
                ));
                continue;
            }
        };
        let addr = finished.addr.clone();
        match finished.result {
            Ok(artifact) => {
                let job = jobs.get(&addr).expect("job");
                // Fault injection for the recovery tests: die like a SIGKILL
                // between capturing an artifact and recording it.
                if std::env::var("IMGFORM_FAULT").is_ok_and(|f| f == "kill-after-capture") {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &std::process::id().to_string()])
                        .status();
                    std::process::abort();
                }
                let record = record_for(job, &artifact, &artifacts, &mut states, backend)?;
                let target = job.spec.target.clone();
                let previous =
                    replace_record(&mut states, &target, &addr, record, job.spec.keep_previous);
                let state = states.get_mut(&target).expect("state present");
                if backend.save(state)? {
                    events
                        .send(Event::StateSaved {
                            target: target.to_string(),
                            serial: state.serial,
                        })
                        .ok();
                }
                events
                    .send(Event::Built {
                        addr: addr.clone(),
                        artifact_id: artifact.id.clone(),
                        elapsed: finished.elapsed,
                    })
                    .ok();
                artifacts.insert(
                    addr.clone(),
                    (artifact.id.clone(), job.content_address.clone()),
                );
                // Retention: old artifacts beyond keep_previous go after the new one is recorded.
                if let Some(builder) = drivers::builder_for(&job.spec.builder) {
                    for old in previous {
                        let at = drivers::Recorded {
                            def_dir: &options.def_dir,
                            spec: Some(&job.spec),
                        };
                        match builder.destroy(at, &old).await {
                            Ok(()) => {
                                events
                                    .send(Event::Destroyed {
                                        addr: addr.clone(),
                                        artifact_id: old.id.clone(),
                                    })
                                    .ok();
                            }
                            Err(e) => {
                                events
                                    .send(Event::Step {
                                        addr: addr.clone(),
                                        message: format!(
                                            "could not delete old artifact {}: {e}",
                                            old.id
                                        ),
                                    })
                                    .ok();
                            }
                        }
                    }
                }
                outcome.built.push((addr.clone(), artifact.id));
                done.insert(addr);
            }
            Err(BuildError::Cancelled) => {
                events.send(Event::Cancelled { addr: addr.clone() }).ok();
                outcome.failed.push((addr.clone(), "cancelled".to_owned()));
                failed.insert(addr);
            }
            Err(e) => {
                let message = jobs
                    .get(&addr)
                    .map(|j| j.spec.scrub(&e.to_string()))
                    .unwrap_or_else(|| e.to_string());
                events
                    .send(Event::Failed {
                        addr: addr.clone(),
                        message: message.clone(),
                        elapsed: finished.elapsed,
                    })
                    .ok();
                outcome.failed.push((addr.clone(), message));
                failed.insert(addr);
            }
        }
        if cancel.is_cancelled() && running.is_empty() {
            break;
        }
    }

    if cancel.is_cancelled() {
        outcome.interrupted = true;
        outcome.not_started = pending;
        return Ok(outcome);
    }

    // Destroys last, children before parents (reverse plan order).
    for change in plan
        .changes
        .iter()
        .rev()
        .filter(|c| c.action == Action::Destroy)
    {
        if cancel.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        let Some(artifact) = &change.current_artifact else {
            continue;
        };
        let Some(builder) = drivers::builder_for(&change.builder) else {
            outcome.failed.push((
                change.address.clone(),
                format!(
                    "no builder for `{}` to destroy {}",
                    change.builder, artifact.id
                ),
            ));
            continue;
        };
        let state = states
            .get_mut(&change.target)
            .expect("planned target state loaded");
        let record = state.images.get(&change.address.to_string()).cloned();
        let mut all = vec![artifact.clone()];
        if let Some(r) = &record {
            all.extend(r.previous.iter().cloned());
        }
        let mut error = None;
        for a in &all {
            let at = drivers::Recorded {
                def_dir: &options.def_dir,
                spec: None,
            };
            if let Err(e) = builder.destroy(at, a).await {
                error = Some(format!("deleting {}: {e}", a.id));
                break;
            }
        }
        match error {
            None => {
                state.images.remove(&change.address.to_string());
                backend.save(state)?;
                events
                    .send(Event::Destroyed {
                        addr: change.address.clone(),
                        artifact_id: artifact.id.clone(),
                    })
                    .ok();
                outcome
                    .destroyed
                    .push((change.address.clone(), artifact.id.clone()));
            }
            Some(message) => {
                events
                    .send(Event::Failed {
                        addr: change.address.clone(),
                        message: message.clone(),
                        elapsed: Default::default(),
                    })
                    .ok();
                outcome.failed.push((change.address.clone(), message));
            }
        }
    }
    Ok(outcome)
}

/// Replaces `imgform-image://` tokens with parents' real artifact ids.
fn resolve_refs(spec: &mut ImageSpec, artifacts: &BTreeMap<ImageAddr, (String, String)>) {
    let lookup = |a: &ImageAddr| artifacts.get(a).map(|(id, _)| id.clone());
    for attrs in [&mut spec.inputs, &mut spec.settings, &mut spec.secrets] {
        for value in attrs.values_mut() {
            substitute_image_refs(value, &lookup);
        }
    }
    for p in &mut spec.provisioners {
        for value in p.config.values_mut().chain(p.settings.values_mut()) {
            substitute_image_refs(value, &lookup);
        }
    }
}

/// Recorded artifact id and content address of every image, by address.
fn recorded_artifacts(
    states: &BTreeMap<TargetAddr, StateFile>,
) -> BTreeMap<ImageAddr, (String, String)> {
    let mut artifacts = BTreeMap::new();
    for state in states.values() {
        for (addr, record) in &state.images {
            if let Ok(a) = addr.parse::<ImageAddr>() {
                artifacts.insert(
                    a,
                    (record.artifact.id.clone(), record.content_address.clone()),
                );
            }
        }
    }
    artifacts
}

/// Records an artifact that exists but that the state lacks (`state
/// recover`, `state import`): stores its manifest and text inputs and puts
/// the record in place. The caller saves the state.
pub fn adopt(
    job: &BuildJob,
    artifact: &Artifact,
    states: &mut BTreeMap<TargetAddr, StateFile>,
    backend: &dyn StateBackend,
) -> Result<(), ApplyError> {
    let artifacts = recorded_artifacts(states);
    let record = record_for(job, artifact, &artifacts, states, backend)?;
    let state = states
        .get_mut(&job.spec.target)
        .expect("state created by record_for");
    let key = job.spec.addr.to_string();
    let mut record = record;
    if let Some(old) = state.images.remove(&key) {
        record.previous = std::iter::once(old.artifact)
            .chain(old.previous)
            .filter(|a| a.id != artifact.id)
            .collect();
    }
    state.images.insert(key, record);
    Ok(())
}

fn record_for(
    job: &BuildJob,
    artifact: &Artifact,
    artifacts: &BTreeMap<ImageAddr, (String, String)>,
    states: &mut BTreeMap<TargetAddr, StateFile>,
    backend: &dyn StateBackend,
) -> Result<ImageRecord, ApplyError> {
    // Objects first: a state must never name an object that is not stored.
    if cfg!(debug_assertions) {
        let rehash = crate::fingerprint::content_address_of(&job.manifest_bytes);
        assert_eq!(
            rehash, job.content_address,
            "manifest bytes do not hash to their content address"
        );
    }
    backend.put_object(&job.manifest_bytes)?;
    let mut text_inputs = BTreeMap::new();
    for (path, text) in &job.text_inputs {
        let hex = backend.put_object(&text.bytes)?;
        text_inputs.insert(path.clone(), hex);
    }
    states
        .entry(job.spec.target.clone())
        .or_insert_with(|| StateFile::new(&job.spec.target.0));
    Ok(ImageRecord {
        content_address: job.content_address.clone(),
        builder: job.spec.builder.clone(),
        artifact: artifact.clone(),
        parents: job
            .spec
            .parents
            .iter()
            .filter_map(|p| {
                artifacts.get(p).map(|(id, ca)| {
                    (
                        p.to_string(),
                        ParentRef {
                            content_address: ca.clone(),
                            artifact_id: id.clone(),
                        },
                    )
                })
            })
            .collect(),
        base: job.spec.base.clone(),
        text_inputs,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tainted: false,
        previous: Vec::new(),
    })
}

/// Puts `record` in place; returns the artifacts to delete under
/// `keep_previous` (the newest `keep_previous` earlier artifacts are kept).
fn replace_record(
    states: &mut BTreeMap<TargetAddr, StateFile>,
    target: &TargetAddr,
    addr: &ImageAddr,
    mut record: ImageRecord,
    keep_previous: u32,
) -> Vec<Artifact> {
    let state = states.get_mut(target).expect("state created");
    let key = addr.to_string();
    let mut previous = Vec::new();
    if let Some(old) = state.images.remove(&key) {
        if old.artifact.id != record.artifact.id {
            previous.push(old.artifact);
        }
        previous.extend(
            old.previous
                .into_iter()
                .filter(|a| a.id != record.artifact.id),
        );
    }
    let keep = (keep_previous as usize).min(previous.len());
    let drop = previous.split_off(keep);
    record.previous = previous;
    state.images.insert(key, record);
    drop
}
