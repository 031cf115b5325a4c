//! Apply: execute a plan, exactly as planned.
//!
//! Images are built by walking the plan's dependency order with tokio, at
//! most `parallelism` at a time. An image starts when every parent that this
//! plan rebuilds has been built; a failed image (a build error, a cancelled
//! build, a panicking build task) skips its dependents while independent
//! images go on. After each image its record is made durable before the
//! image counts as done (the backend's `record_image`: one fsynced journal
//! line locally, so the cost per image does not grow with the state), and
//! every changed state is written whole once at the end, so a crash loses
//! at most the images in flight. A backend that batches (S3, see
//! `StateBackend::write_delay`) gets its state written at most that delay
//! after an image is recorded, and at the end. The scheduler counts each
//! image's unbuilt parents, so picking the next image costs O(log N). Cancellation (Ctrl-C) stops starting new images,
//! lets running builders clean up, records what finished, and returns.
//!
//! Callers must hold the state lock for the whole apply.

pub mod manifest;
mod record;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};

use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::build::events::{CancelToken, Event, EventSink};
use crate::build::{BuildContext, BuildError};
use crate::drivers::{self, kind::MissingBuilder, Builder, Recorded};
use crate::fingerprint::TextInput;
use crate::plan::{Action, Change, Plan};
use crate::spec::{substitute_image_refs, ImageSpec};
use crate::state::{Artifact, StateBackend, StateError, StateFile};
pub use record::adopt;
use record::{record_for, recorded_artifacts, replace_record, ArtifactsByImage};

/// Everything apply needs about one image the plan builds.
#[derive(Debug, Clone)]
pub struct BuildJob {
    pub spec: ImageSpec,
    pub content_address: ContentAddress,
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

/// An image built and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Built {
    pub address: ImageAddr,
    pub artifact_id: String,
    /// Package changes against the artifact this build replaced (when both
    /// have an SBOM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<crate::sbom::PackageChanges>,
}

/// An image (or a destroy) that failed, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub address: ImageAddr,
    pub message: String,
}

/// An image not built because an image it is built from failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub address: ImageAddr,
    pub because: ImageAddr,
}

/// An artifact deleted (an image removed from the definitions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destroyed {
    pub address: ImageAddr,
    pub artifact_id: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ApplyOutcome {
    pub built: Vec<Built>,
    pub failed: Vec<Failed>,
    pub skipped: Vec<Skipped>,
    pub destroyed: Vec<Destroyed>,
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
    #[error(transparent)]
    NoBuilder(#[from] MissingBuilder),
    #[error("no builder kind `{0}`")]
    UnknownBuilder(String),
    #[error("the plan builds {0} but its definition is missing")]
    MissingJob(ImageAddr),
}

/// A build task's end.
struct Finished {
    addr: ImageAddr,
    result: Result<Artifact, BuildError>,
    /// The packages the build found (see `provision::inventory`).
    inventory: Option<crate::sbom::Inventory>,
    elapsed: Duration,
}

/// Runs the plan. `states` are the targets' states as loaded under the lock.
pub async fn apply(
    plan: &Plan,
    jobs: BTreeMap<ImageAddr, BuildJob>,
    backend: &dyn StateBackend,
    states: BTreeMap<TargetAddr, StateFile>,
    options: &ApplyOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelToken,
) -> Result<ApplyOutcome, ApplyError> {
    let mut run = Run::new(plan, jobs, backend, states, options, events, cancel)?;
    let built = run.build_all().await;
    // Whatever happened, what was recorded goes into the state files now
    // (journals compacted, batches written).
    let saved = run.save_touched();
    built?;
    saved?;
    if run.cancel.is_cancelled() {
        run.outcome.interrupted = true;
        run.outcome.not_started = run.not_started();
        return Ok(run.outcome);
    }
    let destroyed = run.destroy_removed().await;
    let saved = run.save_touched();
    destroyed?;
    saved?;
    Ok(run.outcome)
}

/// Folds what a crashed run left in a journal into the state files (a
/// read, and no write, for a state that has none), as `apply` does first,
/// even when it has nothing to build. States never written (serial 0) stay
/// unwritten. Callers hold the lock.
pub fn compact_leftovers(
    backend: &dyn StateBackend,
    states: &mut BTreeMap<TargetAddr, StateFile>,
) -> Result<(), ApplyError> {
    for state in states.values_mut().filter(|s| s.serial > 0) {
        // Saving re-reads the whole file to compare: only where a journal
        // is left to fold in.
        if backend.has_leftovers(state)? {
            backend.save(state)?;
        }
    }
    Ok(())
}

/// One apply in progress.
struct Run<'a> {
    plan: &'a Plan,
    jobs: BTreeMap<ImageAddr, BuildJob>,
    backend: &'a dyn StateBackend,
    states: BTreeMap<TargetAddr, StateFile>,
    options: &'a ApplyOptions,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelToken,
    outcome: ApplyOutcome,
    /// Each image's parents, as the plan says.
    parents: HashMap<&'a ImageAddr, &'a [ImageAddr]>,
    /// What this plan builds, in plan order; images are named by their
    /// index here from now on.
    order: Vec<ImageAddr>,
    index: HashMap<ImageAddr, usize>,
    /// Children (by index) of each image this plan builds.
    children: Vec<Vec<usize>>,
    /// How many of each image's parents this plan builds and has not built.
    waiting: Vec<usize>,
    /// Images whose parents are all built and that are not started, so the
    /// earliest in plan order starts first.
    ready: BTreeSet<usize>,
    /// Started, skipped or failed: not pending any more.
    gone: Vec<bool>,
    /// Artifact ids known so far: recorded ones, then this run's.
    artifacts: ArtifactsByImage,
    failed: BTreeSet<ImageAddr>,
    running: JoinSet<Finished>,
    /// Which image each running task builds (a panicking task has only its id).
    tasks: BTreeMap<task::Id, ImageAddr>,
    /// Targets changed by this run, with when their first change not yet
    /// written happened (`None`: all written), for backends that batch.
    touched: BTreeMap<TargetAddr, Option<Instant>>,
}

impl<'a> Run<'a> {
    fn new(
        plan: &'a Plan,
        jobs: BTreeMap<ImageAddr, BuildJob>,
        backend: &'a dyn StateBackend,
        states: BTreeMap<TargetAddr, StateFile>,
        options: &'a ApplyOptions,
        events: mpsc::UnboundedSender<Event>,
        cancel: CancelToken,
    ) -> Result<Run<'a>, ApplyError> {
        let to_build: Vec<&Change> = plan.changes.iter().filter(|c| c.action.builds()).collect();
        for change in &to_build {
            if !jobs.contains_key(&change.address) {
                return Err(ApplyError::MissingJob(change.address.clone()));
            }
            builder(&change.builder)?;
        }
        let order: Vec<ImageAddr> = to_build.iter().map(|c| c.address.clone()).collect();
        let index: HashMap<ImageAddr, usize> = order
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i))
            .collect();
        let mut children = vec![Vec::new(); order.len()];
        let mut waiting = vec![0; order.len()];
        for (i, change) in to_build.iter().enumerate() {
            for parent in &change.parents {
                if let Some(&p) = index.get(parent) {
                    children[p].push(i);
                    waiting[i] += 1;
                }
            }
        }
        let ready = (0..order.len()).filter(|&i| waiting[i] == 0).collect();
        Ok(Run {
            parents: plan
                .changes
                .iter()
                .map(|c| (&c.address, c.parents.as_slice()))
                .collect(),
            gone: vec![false; order.len()],
            order,
            index,
            children,
            waiting,
            ready,
            artifacts: recorded_artifacts(&states),
            plan,
            jobs,
            backend,
            states,
            options,
            events,
            cancel,
            outcome: ApplyOutcome::default(),
            failed: BTreeSet::new(),
            running: JoinSet::new(),
            tasks: BTreeMap::new(),
            touched: BTreeMap::new(),
        })
    }

    fn send(&self, event: Event) {
        self.events.send(event).ok();
    }

    fn parents_of(&self, addr: &ImageAddr) -> &'a [ImageAddr] {
        self.parents.get(addr).copied().unwrap_or_default()
    }

    /// Builds every image of the plan, until all are done or cancelled.
    async fn build_all(&mut self) -> Result<(), ApplyError> {
        loop {
            if !self.cancel.is_cancelled() {
                self.start_ready();
            }
            let joined = match self.write_due_at() {
                // A backend that batches writes: wake up to write in time
                // even when no build finishes.
                Some(due) => tokio::select! {
                    joined = self.running.join_next_with_id() => joined,
                    () = tokio::time::sleep_until(due.into()) => {
                        self.write_due()?;
                        continue;
                    }
                },
                None => self.running.join_next_with_id().await,
            };
            let Some(joined) = joined else {
                break;
            };
            match joined {
                Ok((id, finished)) => {
                    self.tasks.remove(&id);
                    self.finish(finished).await?;
                }
                Err(e) => self.task_failed(e),
            }
            if self.cancel.is_cancelled() && self.running.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Not started (nor skipped), in plan order.
    fn not_started(&self) -> Vec<ImageAddr> {
        self.order
            .iter()
            .zip(&self.gone)
            .filter(|(_, gone)| !**gone)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Skips the not yet started images below `failed` (transitively, in
    /// plan order), each because of its first failed parent.
    fn skip_dependents_of(&mut self, failed: &ImageAddr) {
        let Some(&start) = self.index.get(failed) else {
            return;
        };
        let mut below = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &child in &self.children[i] {
                if !self.gone[child] && below.insert(child) {
                    stack.push(child);
                }
            }
        }
        for i in below {
            let addr = self.order[i].clone();
            let Some(because) = self
                .parents_of(&addr)
                .iter()
                .find(|p| self.failed.contains(*p))
                .cloned()
            else {
                continue;
            };
            self.gone[i] = true;
            self.ready.remove(&i);
            self.send(Event::Skipped {
                addr: addr.clone(),
                because: because.clone(),
            });
            self.outcome.skipped.push(Skipped {
                address: addr.clone(),
                because,
            });
            self.failed.insert(addr);
        }
    }

    /// Starts ready images, earliest in plan order first, up to
    /// `parallelism`.
    fn start_ready(&mut self) {
        let parallelism = self.options.parallelism.max(1);
        while self.running.len() < parallelism {
            let Some(i) = self.ready.pop_first() else {
                break;
            };
            self.gone[i] = true;
            self.start(self.order[i].clone());
        }
    }

    /// An image of this plan is built: its children may be ready.
    fn mark_built(&mut self, addr: &ImageAddr) {
        let Some(&i) = self.index.get(addr) else {
            return;
        };
        for c in 0..self.children[i].len() {
            let child = self.children[i][c];
            self.waiting[child] -= 1;
            if self.waiting[child] == 0 && !self.gone[child] {
                self.ready.insert(child);
            }
        }
    }

    /// When the earliest change held back by a batching backend is due.
    fn write_due_at(&self) -> Option<Instant> {
        let delay = self.backend.write_delay();
        self.touched
            .values()
            .flatten()
            .min()
            .map(|first| *first + delay)
    }

    /// Writes the targets whose held-back changes are due.
    fn write_due(&mut self) -> Result<(), ApplyError> {
        let delay = self.backend.write_delay();
        let now = Instant::now();
        let due: Vec<TargetAddr> = self
            .touched
            .iter()
            .filter(|(_, first)| first.is_some_and(|f| f + delay <= now))
            .map(|(t, _)| t.clone())
            .collect();
        for target in due {
            self.write_state(&target)?;
        }
        Ok(())
    }

    /// Writes the state of `target` now.
    fn write_state(&mut self, target: &TargetAddr) -> Result<(), ApplyError> {
        let state = self.states.get_mut(target).expect("touched states exist");
        if self.backend.save(state)? {
            let serial = state.serial;
            self.send(Event::StateSaved {
                target: target.to_string(),
                serial,
            });
        }
        self.touched.insert(target.clone(), None);
        Ok(())
    }

    /// Writes every state this run changed into its state file: compacts
    /// journals, writes held-back batches. Tries them all; the first error
    /// is returned.
    fn save_touched(&mut self) -> Result<(), ApplyError> {
        let targets: Vec<TargetAddr> = self.touched.keys().cloned().collect();
        let mut first_error = None;
        for target in targets {
            if let Err(e) = self.write_state(&target) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records that `addr`'s record in `target` changed: durably now, or
    /// held back for a batching backend until its write delay is due.
    fn record_change(&mut self, target: &TargetAddr, addr: &ImageAddr) -> Result<(), ApplyError> {
        let delay = self.backend.write_delay();
        if delay.is_zero() {
            let state = self.states.get_mut(target).expect("state present");
            if self.backend.record_image(state, addr)? {
                let serial = state.serial;
                self.send(Event::StateSaved {
                    target: target.to_string(),
                    serial,
                });
            }
            self.touched.insert(target.clone(), None);
            return Ok(());
        }
        let first = *self
            .touched
            .entry(target.clone())
            .or_insert(None)
            .get_or_insert_with(Instant::now);
        if first.elapsed() >= delay {
            self.write_state(target)?;
        }
        Ok(())
    }

    fn start(&mut self, addr: ImageAddr) {
        let job = self.jobs.get_mut(&addr).expect("checked in Run::new");
        resolve_refs(&mut job.spec, &self.artifacts);
        let job = job.clone();
        let sink = EventSink::new(
            self.events.clone(),
            addr.clone(),
            job.spec.sensitive_values.clone(),
        );
        let cancel = self.cancel.clone();
        let run_id = Arc::new(self.options.run_id.clone());
        let (keep_failed, keep_on_error) = (self.options.keep_failed, self.options.keep_on_error);
        let builder = builder(&job.spec.builder).expect("checked in Run::new");
        let task_addr = addr.clone();
        let cancel_after = cancel.clone();
        let handle = self.running.spawn(async move {
            let started = Instant::now();
            sink.send(Event::Started {
                addr: task_addr.clone(),
            });
            if crate::fault::armed("panic-in-build", &task_addr) {
                panic!("injected fault panic-in-build");
            }
            let inventory = crate::build::InventorySlot::default();
            let ctx = BuildContext {
                spec: &job.spec,
                content_address: &job.content_address,
                run_id: &run_id,
                events: sink.clone(),
                cancel,
                keep_failed,
                keep_on_error,
                inventory: &inventory,
            };
            let result = match builder.build(ctx).await {
                Ok(artifact) => {
                    post_process(
                        builder,
                        &job,
                        &run_id,
                        sink.clone(),
                        &cancel_after,
                        keep_on_error,
                        artifact,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            Finished {
                addr: task_addr,
                result,
                inventory: inventory.into_inner().unwrap_or_else(|e| e.into_inner()),
                elapsed: started.elapsed(),
            }
        });
        self.tasks.insert(handle.id(), addr);
    }

    /// A build task that panicked (or was aborted): its image fails by its
    /// own address with the panic's message, so its dependents are skipped.
    fn task_failed(&mut self, error: task::JoinError) {
        let addr = self
            .tasks
            .remove(&error.id())
            .expect("every task is recorded when it starts");
        let message = if error.is_panic() {
            let payload = error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            format!("the build panicked: {text}")
        } else {
            "the build task was cancelled".to_owned()
        };
        self.fail(addr, message, Duration::ZERO);
    }

    fn fail(&mut self, addr: ImageAddr, message: String, elapsed: Duration) {
        self.send(Event::Failed {
            addr: addr.clone(),
            message: message.clone(),
            elapsed,
        });
        self.outcome.failed.push(Failed {
            address: addr.clone(),
            message,
        });
        self.failed.insert(addr.clone());
        self.skip_dependents_of(&addr);
    }

    async fn finish(&mut self, finished: Finished) -> Result<(), ApplyError> {
        let addr = finished.addr;
        match finished.result {
            Ok(artifact) => {
                self.built(addr, artifact, finished.inventory, finished.elapsed)
                    .await?
            }
            Err(BuildError::Cancelled) => {
                self.send(Event::Cancelled { addr: addr.clone() });
                self.outcome.failed.push(Failed {
                    address: addr.clone(),
                    message: "cancelled".to_owned(),
                });
                self.failed.insert(addr.clone());
                self.skip_dependents_of(&addr);
            }
            Err(e) => {
                let message = self.jobs[&addr].spec.scrub(&e.to_string());
                self.fail(addr, message, finished.elapsed);
            }
        }
        Ok(())
    }

    /// Records a built image (objects, then the state), then deletes the
    /// artifacts retention no longer keeps.
    async fn built(
        &mut self,
        addr: ImageAddr,
        artifact: Artifact,
        inventory: Option<crate::sbom::Inventory>,
        elapsed: Duration,
    ) -> Result<(), ApplyError> {
        let job = &self.jobs[&addr];
        if crate::fault::armed("kill-after-capture", &addr) {
            crate::fault::die();
        }
        let mut record = record_for(
            job,
            &artifact,
            &self.artifacts,
            &mut self.states,
            self.backend,
        )?;
        let target = job.spec.target.clone();
        let old = self.states.get(&target).and_then(|s| s.images.get(&addr));
        let packages = match &inventory {
            Some(inventory) => record::record_sbom(
                job,
                &mut record,
                old,
                inventory,
                self.backend,
                &self.options.def_dir,
            )?,
            None => None,
        };
        let previous = replace_record(
            &mut self.states,
            &target,
            &addr,
            record,
            job.spec.keep_previous,
        );
        self.record_change(&target, &addr)?;
        if crate::fault::armed("kill-after-record", &addr) {
            crate::fault::die();
        }
        // Post-processors run on the recorded image (Packer's manifest).
        let job = &self.jobs[&addr];
        if let Err(message) = manifest::write_all(&job.spec, &artifact, &self.options.run_id) {
            self.fail(addr, message, elapsed);
            return Ok(());
        }
        self.send(Event::Built {
            addr: addr.clone(),
            artifact_id: artifact.id.clone(),
            elapsed,
        });
        let job = &self.jobs[&addr];
        self.artifacts.insert(
            addr.clone(),
            (artifact.id.clone(), job.content_address.clone()),
        );
        // Retention: old artifacts beyond keep_previous go after the new
        // one is recorded.
        let builder = builder(&job.spec.builder)?;
        for old in previous {
            let at = Recorded {
                def_dir: &self.options.def_dir,
                spec: Some(&job.spec),
            };
            match builder.destroy(at, &old).await {
                Ok(()) => self.send(Event::Destroyed {
                    addr: addr.clone(),
                    artifact_id: old.id.clone(),
                }),
                Err(e) => self.send(Event::Step {
                    addr: addr.clone(),
                    message: format!("could not delete old artifact {}: {e}", old.id),
                }),
            }
        }
        self.outcome.built.push(Built {
            address: addr.clone(),
            artifact_id: artifact.id,
            packages,
        });
        self.mark_built(&addr);
        Ok(())
    }

    /// Destroys what the plan destroys: last, children before parents
    /// (reverse plan order).
    async fn destroy_removed(&mut self) -> Result<(), ApplyError> {
        let plan = self.plan;
        for change in plan
            .changes
            .iter()
            .rev()
            .filter(|c| c.action == Action::Destroy)
        {
            if self.cancel.is_cancelled() {
                self.outcome.interrupted = true;
                break;
            }
            // What the state records, never what the plan says: a plan file
            // cannot name an artifact to delete.
            let Some(artifact) = self
                .states
                .get(&change.target)
                .and_then(|s| s.images.get(&change.address))
                .map(|r| r.artifact.clone())
            else {
                continue;
            };
            let artifact = &artifact;
            match self.destroy_one(change, artifact).await? {
                Ok(()) => {
                    self.send(Event::Destroyed {
                        addr: change.address.clone(),
                        artifact_id: artifact.id.clone(),
                    });
                    self.outcome.destroyed.push(Destroyed {
                        address: change.address.clone(),
                        artifact_id: artifact.id.clone(),
                    });
                }
                Err(message) => self.fail(change.address.clone(), message, Duration::ZERO),
            }
        }
        Ok(())
    }

    /// Deletes a removed image's artifact and the older ones kept with it,
    /// then its record. The inner error says what could not be deleted.
    async fn destroy_one(
        &mut self,
        change: &Change,
        artifact: &Artifact,
    ) -> Result<Result<(), String>, ApplyError> {
        let recorded_builder = self
            .states
            .get(&change.target)
            .and_then(|s| s.images.get(&change.address))
            .map_or(change.builder.as_str(), |r| r.builder.as_str());
        let builder = match builder(recorded_builder) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("{e}: cannot destroy {}", artifact.id))),
        };
        let state = self
            .states
            .get_mut(&change.target)
            .expect("planned target state loaded");
        let mut all = vec![artifact.clone()];
        if let Some(record) = state.images.get(&change.address) {
            all.extend(record.previous.iter().cloned());
        }
        for a in &all {
            let at = Recorded {
                def_dir: &self.options.def_dir,
                spec: None,
            };
            if let Err(e) = builder.destroy(at, a).await {
                return Ok(Err(format!("deleting {}: {e}", a.id)));
            }
        }
        state.images.remove(&change.address);
        self.record_change(&change.target, &change.address)?;
        Ok(Ok(()))
    }
}

/// The implementation of builder kind `name`.
fn builder(name: &str) -> Result<&'static dyn Builder, ApplyError> {
    let kind = drivers::kind_of(name).ok_or_else(|| ApplyError::UnknownBuilder(name.to_owned()))?;
    Ok(kind.implementation()?)
}

/// Runs the image's post-processors (`postprocess`) on the artifact the
/// builder returned, before the image is recorded. When one fails, what
/// they wrote is gone already; the artifact is deleted too (it will not be
/// recorded, so it would be left behind), unless `--on-error=abort` keeps
/// it for debugging.
async fn post_process(
    builder: &'static dyn Builder,
    job: &BuildJob,
    run_id: &str,
    sink: EventSink,
    cancel: &CancelToken,
    keep_on_error: bool,
    artifact: Artifact,
) -> Result<Artifact, BuildError> {
    if crate::postprocess::identity(&job.spec).next().is_none() {
        return Ok(artifact);
    }
    let inventory = crate::build::InventorySlot::default();
    let ctx = BuildContext {
        spec: &job.spec,
        content_address: &job.content_address,
        run_id,
        events: sink.clone(),
        cancel: cancel.clone(),
        keep_failed: false,
        keep_on_error,
        inventory: &inventory,
    };
    let error = match crate::postprocess::run_all(&ctx, &artifact).await {
        Ok(_) => return Ok(artifact),
        Err(e) => e,
    };
    if keep_on_error {
        sink.step(format!(
            "post-processing failed; kept artifact {} (--on-error=abort), not recorded",
            artifact.id
        ));
        return Err(error);
    }
    let at = Recorded {
        def_dir: &job.spec.def_dir,
        spec: Some(&job.spec),
    };
    if let Err(e) = builder.destroy(at, &artifact).await {
        sink.step(format!(
            "could not delete artifact {} after post-processing failed: {e}",
            artifact.id
        ));
    }
    Err(error)
}

/// Replaces `imgform-image://` tokens with parents' real artifact ids.
fn resolve_refs(spec: &mut ImageSpec, artifacts: &ArtifactsByImage) {
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
