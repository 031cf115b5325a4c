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

/// How the **resolve** stage finds base images given by a filter.
pub enum Resolve {
    /// Not at all (`validate`, `graph`): manifests of images whose base is a
    /// filter carry no base id, so their addresses are not final.
    Skip,
    /// Ask the cloud now (`plan`, `apply`, `drift`). Runs on the prepare
    /// threads through the runtime's handle; each distinct query is asked
    /// once.
    Refresh(tokio::runtime::Handle),
    /// `--refresh=false`: reuse the resolution recorded in the state when
    /// the query is the same; ask only for the others.
    Recorded(
        tokio::runtime::Handle,
        BTreeMap<ImageAddr, crate::state::BaseRecord>,
    ),
}

impl Resolve {
    /// `Refresh` or `Recorded` (from the states in `backend`) on the
    /// current runtime.
    pub fn for_plan(
        refresh: bool,
        recorded: impl FnOnce() -> Result<Vec<StateFile>>,
    ) -> Result<Resolve> {
        let handle = tokio::runtime::Handle::current();
        if refresh {
            return Ok(Resolve::Refresh(handle));
        }
        let mut bases = BTreeMap::new();
        for state in recorded()? {
            for (addr, record) in state.images {
                if let (Ok(a), Some(base)) = (addr.parse::<ImageAddr>(), record.base) {
                    bases.insert(a, base);
                }
            }
        }
        Ok(Resolve::Recorded(handle, bases))
    }
}

/// The resolve mode of `plan`/`apply` in `dir`: fresh lookups, or with
/// `--refresh=false` the resolutions recorded in the state (read without
/// the lock: it is only a hint for the lookups that follow).
pub fn resolve_for(dir: &Path, refresh: bool, backend_flags: &[String]) -> Result<Resolve> {
    Resolve::for_plan(refresh, || {
        backend_for_dir(dir, backend_flags)?
            .load_all()
            .context("loading the state for its recorded base images")
    })
}

/// Resolutions made during one prepare: query → id (or the error).
type ResolveCache = std::sync::Mutex<BTreeMap<String, Result<String, String>>>;

fn resolve_base(
    resolve: &Resolve,
    cache: &ResolveCache,
    spec: &ImageSpec,
) -> Result<Option<crate::state::BaseRecord>, Diagnostic> {
    let handle = match resolve {
        Resolve::Skip => return Ok(None),
        Resolve::Refresh(h) | Resolve::Recorded(h, _) => h,
    };
    let Some(builder) = drivers::builder_for(&spec.builder) else {
        return Ok(None);
    };
    let Some(query) = builder.base_query(spec) else {
        return Ok(None);
    };
    if let Resolve::Recorded(_, recorded) = resolve {
        if let Some(base) = recorded.get(&spec.addr).filter(|b| b.query == query) {
            return Ok(Some(base.clone()));
        }
    }
    let cached = cache.lock().expect("resolve cache").get(&query).cloned();
    let result = match cached {
        Some(r) => r,
        None => {
            let r = handle
                .block_on(builder.resolve_base(spec))
                .map_err(|e| spec.scrub(&e.to_string()));
            cache
                .lock()
                .expect("resolve cache")
                .insert(query.clone(), r.clone());
            r
        }
    };
    match result {
        Ok(id) => Ok(Some(crate::state::BaseRecord { query, id })),
        Err(message) => {
            let filter = [
                "source_ami_filter",
                "source_image_filter",
                "source_image_name",
            ]
            .iter()
            .find_map(|k| spec.attr_locs.get(*k))
            .cloned()
            .unwrap_or_else(|| spec.loc.clone());
            Err(Diagnostic::error(format!(
                "{}: cannot resolve the base image: {message}",
                spec.addr
            ))
            .at(Some(filter))
            .hint("check the filter and the credentials; with --refresh=false the resolution recorded in the state is reused"))
        }
    }
}

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
pub fn prepare(
    dir: &Path,
    options: &LoadOptions,
    resolve: &Resolve,
) -> Result<Prepared, Diagnostics> {
    let project = config::load(dir, options)?;
    let cache = ResolveCache::default();
    let graph = ImageGraph::build(project.images.iter().map(|i| (&i.addr, &i.refs)))
        .map_err(Diagnostics)?;
    let order = graph.topo_order();
    let hasher = FileHasher::new();
    let mut images: BTreeMap<ImageAddr, PreparedImage> = BTreeMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut broken: BTreeSet<ImageAddr> = BTreeSet::new();
    // Images are independent once their parents are addressed: evaluate and
    // fingerprint each dependency level in parallel.
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    for level in levels(&graph, &order) {
        let mut ready: Vec<(&config::ImageDef, BTreeMap<ImageAddr, String>)> = Vec::new();
        for addr in level {
            let def = project.image(&addr).expect("graph nodes are images");
            if def.refs.keys().any(|p| broken.contains(p)) {
                broken.insert(addr);
                continue;
            }
            let parents = def
                .refs
                .keys()
                .filter_map(|p| {
                    images
                        .get(p)
                        .map(|i| (p.clone(), i.manifest.content_address.clone()))
                })
                .collect();
            ready.push((def, parents));
        }
        let chunk = ready.len().div_ceil(threads).max(16);
        let results: Vec<ImageOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(|| {
                        part.iter()
                            .map(|(def, parents)| {
                                prepare_image(&project, def, parents, &hasher, resolve, &cache)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("prepare thread"))
                .collect()
        });
        for (addr, result, notes) in results {
            diags.extend(notes);
            match result {
                Ok(image) => {
                    images.insert(addr, image);
                }
                Err(d) => {
                    diags.extend(d);
                    broken.insert(addr);
                }
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

/// One image's preparation: its result, and warnings beside it.
type ImageOutcome = (
    ImageAddr,
    Result<PreparedImage, Vec<Diagnostic>>,
    Vec<Diagnostic>,
);

/// Evaluates, validates and fingerprints one image whose parents are
/// addressed. Returns warnings beside the result.
fn prepare_image(
    project: &Project,
    def: &config::ImageDef,
    parent_addresses: &BTreeMap<ImageAddr, String>,
    hasher: &FileHasher,
    resolve: &Resolve,
    cache: &ResolveCache,
) -> (
    ImageAddr,
    Result<PreparedImage, Vec<Diagnostic>>,
    Vec<Diagnostic>,
) {
    let addr = def.addr.clone();
    let tokens = parent_addresses
        .iter()
        .map(|(p, ca)| (p.clone(), ImageRef::token(p, ca)))
        .collect();
    let mut spec = match project.evaluate_image(def, &tokens) {
        Ok(spec) => spec,
        Err(d) => return (addr, Err(d), Vec::new()),
    };
    let mut notes = Vec::new();
    if let Some(builder) = drivers::builder_for(&spec.builder) {
        let problems = builder.validate(&spec);
        if problems.iter().any(Diagnostic::is_error) {
            return (addr, Err(problems), Vec::new());
        }
        notes = problems;
    }
    match resolve_base(resolve, cache, &spec) {
        Ok(base) => spec.base = base,
        Err(d) => return (addr, Err(vec![d]), notes),
    }
    let result = fingerprint::fingerprint(&spec, parent_addresses, hasher)
        .map(|manifest| PreparedImage { spec, manifest });
    (addr, result, notes)
}

/// The topological order cut into levels: every image's parents are in
/// earlier levels.
fn levels(graph: &ImageGraph, order: &[ImageAddr]) -> Vec<Vec<ImageAddr>> {
    let mut depth: BTreeMap<&ImageAddr, usize> = BTreeMap::new();
    let mut out: Vec<Vec<ImageAddr>> = Vec::new();
    for addr in order {
        let d = graph
            .parents(addr)
            .iter()
            .filter_map(|p| depth.get(p))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(addr, d);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(addr.clone());
    }
    out
}

pub fn state_dir(def_dir: &Path) -> PathBuf {
    def_dir.join("state")
}

/// The state backend of the definitions in `def_dir`: their `backend` block
/// (`block`, as loaded with the project) with `--backend-config` `flags`
/// applied; `state/` in the definition dir when there is neither.
pub fn backend_for(
    def_dir: &Path,
    block: Option<&config::BackendConfig>,
    flags: &[String],
) -> Result<Box<dyn StateBackend>> {
    let chosen = config::backend::with_flags(block.cloned(), flags).map_err(anyhow::Error::msg)?;
    match chosen {
        None => Ok(Box::new(LocalBackend::new(state_dir(def_dir)))),
        Some(c) if c.kind == config::BackendKind::Local => {
            Ok(Box::new(LocalBackend::new(state_dir(def_dir))))
        }
        Some(c) => s3_backend(&c),
    }
}

/// [`backend_for`] for commands that do not load the definitions: only the
/// `backend` block is read from the files in `dir`.
pub fn backend_for_dir(dir: &Path, flags: &[String]) -> Result<Box<dyn StateBackend>> {
    let block = config::load_backend(dir)?;
    backend_for(dir, block.as_ref(), flags)
}

/// [`backend_for_dir`] for `apply PLANFILE` when the plan file records no
/// backend (made against local state, or by an older imgform): it must work
/// even when the definitions no longer parse; then only `--backend-config`
/// flags can choose S3, and a warning says so. The saved plan's lineage
/// check still refuses a state the plan was not made against.
pub fn backend_for_saved_plan(dir: &Path, flags: &[String]) -> Result<Box<dyn StateBackend>> {
    match config::load_backend(dir) {
        Ok(block) => backend_for(dir, block.as_ref(), flags),
        Err(diags) => {
            eprintln!(
                "warning: the definitions in {} do not parse ({}), so no backend block can be read; \
                 using {}\n  hint: pass --backend-config to choose the backend explicitly",
                dir.display(),
                diags,
                if flags.is_empty() {
                    "the local state in state/"
                } else {
                    "the --backend-config settings"
                }
            );
            backend_for(dir, None, flags)
        }
    }
}

#[cfg(feature = "aws")]
fn s3_backend(c: &config::BackendConfig) -> Result<Box<dyn StateBackend>> {
    let setting = |name: &str| c.get(name).map(str::to_owned).filter(|v| !v.is_empty());
    let Some(bucket) = setting("bucket") else {
        anyhow::bail!(
            "the s3 backend needs a bucket{}\n  hint: set `bucket = \"NAME\"` in the backend \"s3\" block, or pass --backend-config bucket=NAME",
            c.loc.as_ref().map(|l| format!(" (backend block at {l})")).unwrap_or_default()
        );
    };
    let settings = crate::state::S3Settings {
        bucket,
        key_prefix: c
            .get("key_prefix")
            .unwrap_or(crate::state::s3::DEFAULT_KEY_PREFIX)
            .to_owned(),
        region: setting("region"),
        endpoint: setting("endpoint"),
        profile: setting("profile"),
    };
    Ok(Box::new(crate::state::S3Backend::new(settings)?))
}

#[cfg(not(feature = "aws"))]
fn s3_backend(_: &config::BackendConfig) -> Result<Box<dyn StateBackend>> {
    anyhow::bail!(
        "this imgform was built without S3 support (cargo feature `aws`), so it cannot use the s3 backend\n  hint: build with the default features"
    )
}

/// Loads the state of every target that is defined or recorded.
pub fn load_states(
    backend: &dyn StateBackend,
    prepared: &Prepared,
) -> Result<BTreeMap<TargetAddr, StateFile>> {
    let mut states: BTreeMap<TargetAddr, StateFile> = backend
        .load_all()
        .context("loading the state")?
        .into_iter()
        .map(|s| (TargetAddr(s.target.clone()), s))
        .collect();
    for image in prepared.images.values() {
        if !states.contains_key(&image.spec.target) {
            let target = &image.spec.target;
            let state = backend
                .load(&target.0)
                .with_context(|| format!("loading the state of target {target}"))?;
            states.insert(target.clone(), state);
        }
    }
    Ok(states)
}

/// Refresh: the recorded images (of `only`, when given) whose artifact no
/// longer exists. Every builder is asked at once (at most 16 calls in
/// flight), each with the image's current spec while it is defined.
pub async fn missing_artifacts(
    prepared: &Prepared,
    states: &BTreeMap<TargetAddr, StateFile>,
    only: Option<&BTreeSet<ImageAddr>>,
) -> Result<BTreeSet<ImageAddr>> {
    let mut asks: Vec<(
        ImageAddr,
        Box<dyn drivers::Builder>,
        &crate::state::Artifact,
    )> = Vec::new();
    for state in states.values() {
        for (addr, record) in &state.images {
            let Ok(a) = addr.parse::<ImageAddr>() else {
                continue;
            };
            if only.is_some_and(|o| !o.contains(&a)) {
                continue;
            }
            if let Some(builder) = drivers::builder_for(&record.builder) {
                asks.push((a, builder, &record.artifact));
            }
        }
    }
    let limit = tokio::sync::Semaphore::new(16);
    let futures: Vec<drivers::BoxFuture<'_, Result<Option<ImageAddr>>>> = asks
        .iter()
        .map(|(addr, builder, artifact)| {
            let limit = &limit;
            let at = drivers::Recorded {
                def_dir: &prepared.project.def_dir,
                spec: prepared.images.get(addr).map(|i| &i.spec),
            };
            Box::pin(async move {
                let _permit = limit.acquire().await.expect("semaphore open");
                let exists = builder
                    .exists(at, artifact)
                    .await
                    .with_context(|| format!("refreshing {addr}"))?;
                Ok((!exists).then(|| addr.clone()))
            }) as drivers::BoxFuture<'_, _>
        })
        .collect();
    let mut missing = BTreeSet::new();
    for result in drivers::join_all(futures).await {
        if let Some(addr) = result? {
            missing.insert(addr);
        }
    }
    Ok(missing)
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

    let missing = if request.refresh {
        missing_artifacts(prepared, states, only.as_ref()).await?
    } else {
        BTreeSet::new()
    };

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
                    content_address: i.manifest.content_address.clone(),
                    manifest_bytes: i.manifest.bytes.clone(),
                    text_inputs: i.manifest.text_inputs.clone(),
                },
            )
        })
        .collect()
}

/// The saved form of a plan: specs, manifests and text inputs of every
/// image it builds.
pub fn plan_file(prepared: &Prepared, plan: &Plan) -> crate::plan::file::PlanFile {
    use crate::plan::file::{PlanFile, PlannedBuild, PLAN_FILE_FORMAT_VERSION};
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
        backend: None,
    }
}

/// The backend a plan is made against, for its plan file.
pub fn saved_backend(
    block: Option<&config::BackendConfig>,
    flags: &[String],
) -> Result<Option<crate::plan::file::SavedBackend>> {
    let chosen = config::backend::with_flags(block.cloned(), flags).map_err(anyhow::Error::msg)?;
    Ok(chosen
        .filter(|c| c.kind != config::BackendKind::Local)
        .map(|c| crate::plan::file::SavedBackend {
            kind: "s3".to_owned(),
            settings: c.settings.clone(),
        }))
}

/// The backend recorded in a plan file, with `--backend-config` flags on top.
pub fn backend_from_plan(
    def_dir: &Path,
    saved: &crate::plan::file::SavedBackend,
    flags: &[String],
) -> Result<Box<dyn StateBackend>> {
    let kind = match saved.kind.as_str() {
        "s3" => config::BackendKind::S3,
        _ => config::BackendKind::Local,
    };
    let block = config::BackendConfig {
        kind,
        settings: saved.settings.clone(),
        loc: None,
    };
    backend_for(def_dir, Some(&block), flags)
}

/// A spec with every sensitive value replaced by its digest (as in
/// manifests); apply takes the real values from a fresh evaluation.
fn redacted(spec: ImageSpec) -> ImageSpec {
    if spec.sensitive_values.is_empty() {
        return spec;
    }
    let secrets = spec.sensitive_values.clone();
    let mut json = serde_json::to_value(&spec).expect("spec serializes");
    fn walk(v: &mut serde_json::Value, secrets: &[String]) {
        match v {
            serde_json::Value::String(s) => {
                for secret in secrets.iter().filter(|s| s.len() >= 3) {
                    if s.contains(secret.as_str()) {
                        *s = s.replace(secret.as_str(), &crate::config::eval::redact(secret));
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, secrets)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| walk(i, secrets)),
            _ => {}
        }
    }
    walk(&mut json, &secrets);
    serde_json::from_value(json).expect("redacted spec deserializes")
}

/// Build jobs from a saved plan.
pub fn jobs_from_plan_file(file: &crate::plan::file::PlanFile) -> BTreeMap<ImageAddr, BuildJob> {
    use sha2::{Digest, Sha256};
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
                        crate::fingerprint::TextInput {
                            sha256,
                            bytes: std::sync::Arc::new(bytes),
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
