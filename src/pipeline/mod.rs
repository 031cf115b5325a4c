//! The core pipeline, in the order data flows:
//!
//! ```text
//! load ─▶ evaluate ─▶ resolve ─▶ fingerprint ─▶ graph ─▶ plan
//! ```
//!
//! [`prepare`] loads and checks the definitions (`config`), looks up the
//! data sources ([`data`]), builds the dependency graph, then evaluates,
//! resolves (`resolve`) and fingerprints every image, parents before
//! children, each dependency level in parallel.
//! [`plan::make_plan`] reads back what it needs ([`refresh`]) and runs the
//! pure planner; [`drift::report`] does the same for drift. [`backend`]
//! chooses where the state is kept, [`saved`] turns plans into plan files
//! and back (and checks a saved plan still applies), [`recover`] adopts
//! artifacts the state lacks, [`memo`] keeps the last plan with what it
//! read, to answer the next one while none of it changed.
//!
//! Commands call these and pick a view; nothing here prints (warnings are
//! returned with the result) or knows the command line. Errors are
//! [`PipelineError`]s, each with its hint.

pub mod backend;
pub mod data;
pub mod drift;
pub mod error;
pub mod memo;
pub mod plan;
pub mod recover;
pub mod refresh;
pub mod resolve;
pub mod saved;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::addr::{ContentAddress, ImageAddr};
use crate::config::{self, ImageDef, LoadOptions, Project};
use crate::diag::{Diagnostic, Diagnostics};
use crate::drivers;
use crate::fingerprint::{self, FileHasher, Fingerprint, HashCache};
use crate::graph::ImageGraph;
use crate::provision;
use crate::spec::{ImageRef, ImageSpec};
pub use error::PipelineError;
use resolve::ResolveCache;
pub use resolve::{Recordings, Resolve};

/// One image, evaluated and fingerprinted.
pub struct PreparedImage {
    pub spec: ImageSpec,
    pub fingerprint: Fingerprint,
}

/// The definitions, ready to plan.
pub struct Prepared {
    pub project: Project,
    pub graph: ImageGraph,
    /// Parents before children.
    pub order: Vec<ImageAddr>,
    pub images: BTreeMap<ImageAddr, PreparedImage>,
    /// Warnings and notes, for the command to show.
    pub warnings: Vec<Diagnostic>,
    /// What the files hashed to, for the persistent cache.
    hasher: FileHasher,
}

impl Prepared {
    /// The image `addr`, if defined.
    pub fn image(&self, addr: &ImageAddr) -> Option<&PreparedImage> {
        self.images.get(addr)
    }

    /// Writes the file-hash cache (`.imgform/cache/`), if it is on and
    /// changed. Commands call it once their run is known good, so a run
    /// that fails on bad input writes nothing.
    pub fn save_file_cache(&self) {
        self.hasher.save_cache();
    }
}

/// Checks that the template folder or file exists before anything reads it.
pub fn definition_dir_exists(dir: &Path) -> Result<(), PipelineError> {
    if dir.is_dir() || dir.is_file() {
        Ok(())
    } else {
        Err(PipelineError::NoDefinitionDir {
            dir: dir.to_path_buf(),
        })
    }
}

/// Loads, evaluates, resolves and fingerprints every image. All problems
/// are collected into one [`PipelineError::Definitions`].
pub fn prepare(
    dir: &Path,
    options: &LoadOptions,
    resolve: &Resolve,
) -> Result<Prepared, PipelineError> {
    // The file-hash cache is read while the definitions are parsed (both
    // take a while at thousands of images).
    let cache = options.file_cache.then(|| {
        let folder = config::template_folder(dir);
        std::thread::spawn(move || {
            let folder = std::fs::canonicalize(folder).ok()?;
            Some((HashCache::open(&folder), folder))
        })
    });
    let mut project = config::load(dir, options)?;
    let cache = cache
        .and_then(|c| c.join().ok().flatten())
        .filter(|(_, folder)| *folder == project.template_dir)
        .map(|(cache, _)| cache)
        .or_else(|| {
            options
                .file_cache
                .then(|| HashCache::open(&project.template_dir))
        });
    let in_state;
    let resolve = match resolve {
        Resolve::RecordedInState(handle, flags) => {
            in_state = Resolve::Recorded(handle.clone(), recorded_in_state(&project, flags)?);
            &in_state
        }
        other => other,
    };
    let data = data::resolve_data(&mut project, resolve).map_err(Diagnostics)?;
    if project.static_uses_data && !data.is_empty() {
        // A dynamic block's for_each or a build's name used a data source:
        // load again with the answers (nothing is looked up twice).
        let answers = project.data_answers().clone();
        let options = LoadOptions {
            data: Some(answers.clone()),
            ..options.clone()
        };
        project = config::load(dir, &options)?;
        project.set_data(&answers);
    }
    if project.has_secrets() {
        crate::sensitive::use_project_key(&project.template_dir).map_err(|source| {
            PipelineError::SensitiveKey {
                path: project.template_dir.join(crate::sensitive::KEY_FILE),
                source,
            }
        })?;
    }
    let graph = ImageGraph::build(project.images.iter().map(|i| (&i.addr, &i.refs)))
        .map_err(Diagnostics)?;
    let order = graph.topo_order();
    let stage = Stage {
        project: &project,
        hasher: match cache {
            Some(cache) => FileHasher::with_cache(cache),
            None => FileHasher::new(),
        },
        resolve,
        cache: ResolveCache::default(),
        data,
    };
    let defs: BTreeMap<&ImageAddr, &ImageDef> =
        project.images.iter().map(|d| (&d.addr, d)).collect();
    let mut images: BTreeMap<ImageAddr, PreparedImage> = BTreeMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut broken: BTreeSet<ImageAddr> = BTreeSet::new();
    for level in levels(&graph, &order) {
        let mut ready: Vec<(&ImageDef, BTreeMap<ImageAddr, ContentAddress>)> = Vec::new();
        for addr in level {
            let def = defs[&addr];
            if def.refs.keys().any(|p| broken.contains(p)) {
                broken.insert(addr);
                continue;
            }
            let parents = def
                .refs
                .keys()
                .filter_map(|p| {
                    let parent = images.get(p)?;
                    Some((p.clone(), parent.fingerprint.content_address.clone()))
                })
                .collect();
            ready.push((def, parents));
        }
        for (addr, result, notes) in stage.prepare_level(&ready) {
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
    let mut all = project.warnings.clone();
    all.extend(diags);
    if all.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(all).into());
    }
    let mut hasher = stage.hasher;
    hasher.forget_run();
    // Every image is evaluated: the parsed definitions are not needed any
    // more, and at 10,000 images they are a tenth of a plan's memory.
    drop(defs);
    project.images = Vec::new();
    Ok(Prepared {
        project,
        graph,
        order,
        images,
        warnings: all,
        hasher,
    })
}

/// What the state records of base images and data sources, for
/// `--refresh=false`; nothing is read when no data block or base image
/// filter can use it. Read without the lock: it is only a hint for the
/// lookups that follow (the plan reads the state again under the lock).
fn recorded_in_state(project: &Project, flags: &[String]) -> Result<Recordings, PipelineError> {
    let needed = !project.data.is_empty()
        || project
            .images
            .iter()
            .any(|i| drivers::builder_for(&i.builder).is_none_or(|b| b.has_base_filter()));
    if !needed {
        return Ok(Recordings::default());
    }
    let backend = backend::backend_for(&project.template_dir, project.backend.as_ref(), flags)?;
    let states = backend.load_all().map_err(error::state_error(
        "loading the state for its recorded base images",
    ))?;
    Ok(Recordings::from_states(states))
}

/// What every image's preparation shares.
struct Stage<'a> {
    project: &'a Project,
    hasher: FileHasher,
    resolve: &'a Resolve,
    cache: ResolveCache,
    /// Every data source's record (`data.KIND.NAME` → record).
    data: BTreeMap<String, crate::state::DataRecord>,
}

/// One image's preparation: its result, and warnings beside it.
type ImageOutcome = (
    ImageAddr,
    Result<PreparedImage, Vec<Diagnostic>>,
    Vec<Diagnostic>,
);

impl Stage<'_> {
    /// Prepares images whose parents are addressed, on several threads:
    /// they are independent of each other.
    fn prepare_level(
        &self,
        ready: &[(&ImageDef, BTreeMap<ImageAddr, ContentAddress>)],
    ) -> Vec<ImageOutcome> {
        let threads = crate::threads(8);
        let chunk = ready.len().div_ceil(threads).max(16);
        std::thread::scope(|scope| {
            let handles: Vec<_> = ready
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(|| {
                        part.iter()
                            .map(|(def, parents)| self.prepare_image(def, parents))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("prepare thread"))
                .collect()
        })
    }

    /// Evaluates, checks, resolves and fingerprints one image whose parents
    /// are addressed. Returns warnings beside the result.
    fn prepare_image(
        &self,
        def: &ImageDef,
        parents: &BTreeMap<ImageAddr, ContentAddress>,
    ) -> ImageOutcome {
        let addr = def.addr.clone();
        let tokens = parents
            .iter()
            .map(|(p, ca)| (p.clone(), ImageRef::token(p, ca)))
            .collect();
        let mut spec = match self.project.evaluate_image(def, &tokens) {
            Ok(spec) => spec,
            Err(d) => return (addr, Err(d), Vec::new()),
        };
        spec.data = self
            .project
            .image_data(def)
            .into_iter()
            .filter_map(|address| {
                let record = self.data.get(&address)?.clone();
                Some((address, record))
            })
            .collect();
        let notes = validate(&spec);
        if notes.iter().any(Diagnostic::is_error) {
            return (addr, Err(notes), Vec::new());
        }
        match self.cache.resolve_base(self.resolve, &spec) {
            Ok(base) => spec.base = base,
            Err(d) => return (addr, Err(vec![d]), notes),
        }
        let result = fingerprint::fingerprint(&spec, parents, &self.hasher)
            .map(|fingerprint| PreparedImage { spec, fingerprint });
        (addr, result, notes)
    }
}

/// Plan-time checks of an evaluated image: its builder kind's, then each
/// of its provisioners' kinds'.
fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    if let Some(kind) = drivers::kind_of(&spec.builder) {
        diags.extend(ignored_warnings(spec, kind));
        diags.extend((kind.validate)(spec));
    }
    diags.extend(provision::validate(spec));
    diags.extend(crate::postprocess::validate(spec));
    diags.extend(crate::apply::manifest::unsupported_warnings(spec));
    diags
}

/// A warning for each Packer attribute the source sets that imgform loads
/// but does not act on, so nothing is built differently from what was
/// asked without a word.
fn ignored_warnings(spec: &ImageSpec, kind: &drivers::BuilderKind) -> Vec<Diagnostic> {
    kind.schema
        .ignored_in(|name| spec.attr(name))
        .into_iter()
        .map(|(name, hint)| {
            Diagnostic::warning(format!(
                "{}: {} `{name}` is not acted on by imgform and is ignored",
                spec.addr, spec.builder
            ))
            .at(drivers::kind::loc_of(spec, name))
            .hint(hint)
        })
        .collect()
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
