//! Loading and evaluating image definitions (Packer's HCL2 dialect).
//!
//! [`load`] reads every `*.pkr.hcl`, `*.img.hcl`, `*.pkr.json` and Packer
//! 1.x JSON template ([`legacy_json`]) of a template folder (or the one
//! file named), expands `dynamic` blocks (`dynamic`), checks every block and
//! attribute against the known
//! schemas, resolves variables (defaults < `PKR_VAR_x` < `IMGFORM_VAR_x` <
//! `*.auto.pkrvars.hcl` < `--var-file` < `--var`) and locals, and expands
//! builds into one [`ImageDef`] per (build, source) pair. Image expressions
//! are evaluated later, one image at a time, by [`Project::evaluate_image`],
//! because a child's values depend on its parents' content addresses.
//!
//! Invariants: all problems are collected (not just the first) and returned
//! as [`Diagnostics`], each with a place and a hint; nothing here touches
//! state or the network; nothing past [`crate::spec::ImageSpec`] sees HCL.
//!
//! This file holds the public types, [`load`] and small shared helpers. The
//! phases live beside it: `loader` (top-level blocks, schema checks, image
//! checks), `build` (one build into images), `variables` (variable blocks
//! and values), `scope` (the base context, locals and variable
//! validations), [`eval`] (one image at a time, rendering Packer's template
//! engine with [`packer_template`]), [`module`] (modules and DIB elements).
//!
//! Paths follow Packer: relative paths resolve against the current
//! directory, `path.root` is the template folder (see [`Project`]).

pub mod backend;
mod build;
mod data;
mod dib;
mod dynamic;
pub mod eval;
pub mod functions;
pub mod lazy_eval;
pub mod legacy_json;
mod loader;
pub mod module;
pub mod packer_template;
pub mod parse;
mod scope;
pub mod types;
mod variables;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

pub use backend::{load_backend, BackendConfig, BackendKind};

use crate::addr::ImageAddr;
use crate::diag::{closest, Diagnostic, Diagnostics, SourceLoc};
pub use data::{DataDef, DataValues};
use loader::Loader;
use module::ProvisionerDef;
use parse::{RawAttr, RawBlock};
use types::TypeExpr;

/// What the command line adds to the definitions.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<String>,
    /// `--var-file FILE`, in order.
    pub var_files: Vec<PathBuf>,
    /// The process environment (only `PKR_VAR_*`/`IMGFORM_VAR_*` are used,
    /// plus whatever `env()` reads in variable defaults).
    pub env: BTreeMap<String, String>,
    /// Trust the persistent file-hash cache (`.imgform/cache/`) for files
    /// whose `stat` did not change; `--no-cache` turns it off.
    pub file_cache: bool,
    /// The directory relative paths in templates resolve against; `None`:
    /// the process's current directory (what commands use, after `-C`).
    pub work_dir: Option<PathBuf>,
    /// Data sources' answers (address → outputs and secret output names)
    /// for what is evaluated while loading; `None` on the first load, when
    /// nothing is looked up yet.
    pub data: Option<BTreeMap<String, (crate::data::Outputs, BTreeSet<String>)>>,
}

impl LoadOptions {
    pub fn from_env(vars: Vec<String>, var_files: Vec<PathBuf>) -> LoadOptions {
        LoadOptions {
            vars,
            var_files,
            env: std::env::vars().collect(),
            file_cache: true,
            work_dir: None,
            data: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VariableDef {
    pub name: String,
    pub ty: TypeExpr,
    pub default: Option<RawAttr>,
    pub description: Option<String>,
    pub sensitive: bool,
    pub validations: Vec<RawBlock>,
    pub loc: SourceLoc,
}

#[derive(Debug, Clone)]
pub struct LocalDef {
    pub name: String,
    pub attr: RawAttr,
    pub sensitive: bool,
}

/// One image before evaluation: the merged attributes of its source (the
/// top-level `source` block, then the build's in-build `source` block on top)
/// and the build's provisioners that apply to it.
#[derive(Debug, Clone)]
pub struct ImageDef {
    pub addr: ImageAddr,
    pub build_name: Option<String>,
    pub builder: String,
    pub source_name: String,
    pub attrs: Vec<RawAttr>,
    pub blocks: Vec<RawBlock>,
    pub provisioners: Vec<ProvisionerDef>,
    /// Provisioners of the build's `test` blocks: run against the finished image.
    pub tests: Vec<ProvisionerDef>,
    /// Module folders used (relative to the definition dir): inputs.
    pub modules: Vec<String>,
    /// Element folders outside the definition dir with their manifest
    /// labels (see [`crate::spec::ImageSpec::path_labels`]).
    pub path_labels: Vec<(PathBuf, String)>,
    /// With the index of the post-processor sequence each belongs to.
    pub post_processors: Vec<(usize, RawBlock)>,
    pub build_attrs: Vec<RawAttr>,
    /// Parent images referenced by `image.<ADDR>.id`, with where.
    pub refs: BTreeMap<ImageAddr, SourceLoc>,
    pub loc: SourceLoc,
}

/// The loaded definitions: variables resolved, locals and images ready to
/// evaluate.
///
/// Paths follow Packer's rules: a relative path in a template names a file
/// under the *current directory* (`def_dir`, where the command runs, after
/// `-C DIR`), whatever folder the template is in; `path.root` is the
/// template's folder relative to it (`root`). The state, the file-hash
/// cache and the logs live with the templates, in `template_dir`.
#[derive(Debug)]
pub struct Project {
    /// The current directory (absolute): relative paths in the templates
    /// are resolved against it, and manifests show paths relative to it.
    pub def_dir: PathBuf,
    /// The folder holding the templates (absolute): the local state, the
    /// file-hash cache and the logs are kept here.
    pub template_dir: PathBuf,
    /// `path.root`: the template folder relative to `def_dir` (`.` when the
    /// command runs in it), forward slashes.
    pub root: String,
    pub variables: BTreeMap<String, VariableDef>,
    pub var_values: BTreeMap<String, hcl::Value>,
    pub locals: Vec<LocalDef>,
    /// Emptied by `pipeline::prepare` once every image is evaluated (its
    /// `Prepared` holds the evaluated images).
    pub images: Vec<ImageDef>,
    /// Notes and warnings found while loading (never errors).
    pub warnings: Vec<Diagnostic>,
    /// Every file the definitions came from, relative to the template folder.
    pub files: Vec<PathBuf>,
    /// The `backend` block, if any (where the state is kept).
    pub backend: Option<BackendConfig>,
    pub(crate) locals_cache: scope::LocalsCache,
    /// The `data` blocks, in the order written.
    pub data: Vec<DataDef>,
    /// What `data.*` holds: placeholders until the resolve stage sets the
    /// looked-up values ([`Project::set_data`]).
    pub(crate) data_values: DataValues,
    /// Whether something evaluated while loading (a dynamic block's
    /// `for_each`, a build's name or sources) uses a data source: then the
    /// files are loaded again once data sources are looked up.
    pub static_uses_data: bool,
}

impl Project {
    /// Values of sensitive variables and locals, to scrub from any output.
    pub fn sensitive_values(&self) -> Vec<String> {
        self.sensitive_seeds().values
    }

    /// What is sensitive before any image is evaluated: the variables marked
    /// `sensitive`, the secret outputs of data sources, the locals marked so
    /// and the locals whose expression refers to one of those
    /// (transitively), with their values.
    pub fn sensitive_seeds(&self) -> functions::sensitivity::Seeds {
        let mut seeds = functions::sensitivity::Seeds::default();
        let mut out = Vec::new();
        for (name, def) in &self.variables {
            if def.sensitive {
                seeds.variables.insert(name.clone());
                if let Some(v) = self.var_values.get(name) {
                    collect_strings(v, &mut out);
                }
            }
        }
        seeds.data = self.data_values.sensitive_refs.clone();
        out.extend(self.data_values.sensitive_values.iter().cloned());
        seeds.locals = self
            .locals
            .iter()
            .filter(|l| l.sensitive)
            .map(|l| l.name.clone())
            .collect();
        loop {
            let more: Vec<String> = self
                .locals
                .iter()
                .filter(|l| {
                    !seeds.locals.contains(&l.name) && seeds.refers_to_sensitive(&l.attr.text)
                })
                .map(|l| l.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            seeds.locals.extend(more);
        }
        if !seeds.locals.is_empty() {
            // A local that cannot be evaluated is reported where it is used.
            if let Ok(locals) = scope::evaluate_locals(self, functions::Clock::Real) {
                for name in &seeds.locals {
                    if let Some(v) = locals.values.get(name) {
                        collect_strings(v, &mut out);
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        seeds.values = out;
        seeds
    }

    /// Whether anything is secret (a sensitive variable or local, a secret
    /// data source output): then manifests need the project's digest key.
    pub fn has_secrets(&self) -> bool {
        self.variables.values().any(|v| v.sensitive)
            || self.locals.iter().any(|l| l.sensitive)
            || !self.data_values.sensitive_refs.is_empty()
    }

    pub fn image(&self, addr: &ImageAddr) -> Option<&ImageDef> {
        self.images.iter().find(|i| &i.addr == addr)
    }
}

fn collect_strings(value: &hcl::Value, out: &mut Vec<String>) {
    match value {
        hcl::Value::String(s) if !s.is_empty() => out.push(s.clone()),
        hcl::Value::Number(n) => out.push(n.to_string()),
        hcl::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        hcl::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Whether `name` is a template file name imgform reads from a folder.
pub fn is_definition_file_name(name: &str) -> bool {
    name.ends_with(".pkr.hcl") || name.ends_with(".img.hcl") || name.ends_with(".pkr.json")
}

/// Whether `path` is a Packer 1.x JSON template (`packer.json`: a JSON
/// object with `builders`), which a folder's `*.json` may be.
pub fn is_legacy_template(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if !name.ends_with(".json") || name.ends_with(".pkr.json") || name.ends_with(".pkrvars.json") {
        return false;
    }
    crate::watch::path(path);
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| legacy_json::is_legacy(&v))
}

/// Whether `path` names a template file (not a saved plan or a folder).
pub fn is_template_file(path: &Path) -> bool {
    path.is_file()
        && (path
            .file_name()
            .is_some_and(|n| is_definition_file_name(&n.to_string_lossy()))
            || is_legacy_template(path))
}

/// The folder of a template path as a command takes it (Packer's usage): a
/// folder is itself, a file is the folder it is in.
pub fn template_folder(path: &Path) -> PathBuf {
    if path.is_file() {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    } else {
        path.to_path_buf()
    }
}

/// The definition files of a template path, sorted by name: a folder's
/// `*.pkr.hcl`, `*.img.hcl` and `*.pkr.json`, or a single file itself.
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_file() {
            continue;
        }
        if is_definition_file_name(&name) || is_legacy_template(&entry.path()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Loads and checks the definitions at `path`: a template folder, or one
/// template file (then only that file is read, and no `*.auto.pkrvars.hcl`,
/// as Packer does). Relative paths inside resolve against the current
/// directory.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Project, Diagnostics> {
    let cannot_open = |e: std::io::Error| {
        Diagnostics(vec![Diagnostic::error(format!(
            "cannot open {}: {e}",
            path.display()
        ))
        .hint("pass a template folder or file as the last argument (Packer's usage), or run in its folder; -C DIR changes directory first")])
    };
    let template_path = std::fs::canonicalize(path).map_err(cannot_open)?;
    let single_file = template_path.is_file();
    let template_dir = if single_file {
        template_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| template_path.clone())
    } else {
        template_path.clone()
    };
    // The folder's names (a definition or auto var file added or removed),
    // or the single file.
    if single_file {
        crate::watch::path(&template_path);
    } else {
        crate::watch::list(&template_dir);
    }
    let def_dir = match &options.work_dir {
        Some(dir) => std::fs::canonicalize(dir),
        None => std::env::current_dir().and_then(std::fs::canonicalize),
    }
    .map_err(cannot_open)?;
    let root = crate::paths::relative_to(&def_dir, &template_dir);
    let display_base = if single_file {
        template_folder(path)
    } else {
        path.to_path_buf()
    };
    let mut loader = Loader {
        def_dir: def_dir.clone(),
        template_dir: template_dir.clone(),
        single_file,
        root: root.clone(),
        display_base,
        static_scope: None,
        static_data: None,
        diags: Vec::new(),
    };
    let paths = definition_files(&template_path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(format!(
            "cannot list {}: {e}",
            path.display()
        ))])
    })?;
    if paths.is_empty() {
        return Err(Diagnostics(vec![no_definitions(path, &template_path)]));
    }
    let mut files = Vec::new();
    let mut rel_files = Vec::new();
    for path in &paths {
        let display = loader.display(path);
        rel_files.push(PathBuf::from(path.file_name().unwrap_or_default()));
        match parse::parse_file(path, &display) {
            Ok(file) => files.push(file),
            Err(d) => loader.diags.push(d),
        }
    }
    let mut project = loader.interpret(&files, options);
    if let Some(p) = project.as_mut() {
        p.files = rel_files;
    }
    let errors = loader.diags.iter().any(Diagnostic::is_error);
    match project {
        Some(mut project) if !errors => {
            project.warnings = loader.diags;
            Ok(project)
        }
        _ => Err(Diagnostics(loader.diags)),
    }
}

/// The error for a folder without templates: what it holds instead, and
/// the subfolders that hold templates (`packer/`, one per OS...).
fn no_definitions(shown: &Path, dir: &Path) -> Diagnostic {
    let mut found = Vec::new();
    let mut template_dirs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            let holds = definition_files(&entry.path()).is_ok_and(|f| !f.is_empty());
            if holds {
                template_dirs.push(format!("{name}/"));
            }
        } else if [".hcl", ".json", ".pkrvars.hcl", ".yml", ".yaml"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            found.push(name);
        }
    }
    let what = match (found.is_empty(), template_dirs.is_empty()) {
        (true, true) => "it holds no template".to_owned(),
        (false, true) => format!("found only {}", found.join(", ")),
        (true, false) => format!("templates are in {}", template_dirs.join(", ")),
        (false, false) => format!(
            "found only {}; templates are in {}",
            found.join(", "),
            template_dirs.join(", ")
        ),
    };
    let hint = match template_dirs.first() {
        Some(sub) => format!(
            "pass the template folder, as with Packer: imgform plan {}",
            Path::new(shown).join(sub).display()
        ),
        None => "imgform reads *.pkr.hcl, *.img.hcl, *.pkr.json and Packer 1.x JSON templates (an object with \"builders\"); pass their folder or one of them as the last argument".to_owned(),
    };
    Diagnostic::error(format!(
        "no image definitions in {}: {what}",
        shown.display()
    ))
    .hint(hint)
}

/// A name in HCL (a variable, local, data source, image part), for the
/// patterns that find references in source text: ASCII word boundaries
/// (`(?-u:\b)` before it) and ASCII identifier characters plus any
/// non-ASCII one (which HCL allows in names). The same matches as Unicode
/// `\b`/`\w` on real templates, at a small fraction of the cost of
/// compiling Unicode classes, which every run pays for every pattern.
pub(crate) const NAME: &str = r"[A-Za-z_][A-Za-z0-9_\-\x{80}-\x{10FFFF}]*";

static IMAGE_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?-u:\b)image\.({NAME}(?:\.{NAME})+)\.id(?-u:\b)"
    ))
    .expect("valid regex")
});

/// Static scan for `image.<ADDR>.id` in an attribute's source text. The
/// address may have a dotted build name (`image.cloudimg.deps.null.a.id`):
/// its last two parts are the source's.
pub fn image_refs_in(text: &str) -> Vec<ImageAddr> {
    IMAGE_REF
        .captures_iter(text)
        .filter_map(|c| c[1].parse().ok())
        .collect()
}

fn hint_for<'a>(name: &str, candidates: impl Iterator<Item = &'a str>, fallback: &str) -> String {
    match closest(name, candidates) {
        Some(s) => format!("did you mean `{s}`?"),
        None => fallback.to_owned(),
    }
}

pub(crate) fn literal_string(expr: &hcl::Expression) -> Option<String> {
    match expr {
        hcl::Expression::String(s) => Some(s.clone()),
        hcl::Expression::TemplateExpr(t) => {
            let text = t.to_string();
            let inner = text
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(&text);
            (!inner.contains("${") && !inner.contains("%{")).then(|| inner.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_image_refs() {
        let refs =
            image_refs_in("base = \"${image.golden.null.base.id}/x\" other = image.null.a.id");
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].to_string(), "golden.null.base");
        assert_eq!(refs[1].to_string(), "null.a");
    }
}
