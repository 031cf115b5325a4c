//! Modules: reusable provisioning steps, used from a build as
//! `module "devuser" { source = "../modules/devuser"  username = "ops" }`.
//!
//! A module is a folder with `module.hcl` — its `variable`s, its
//! `provisioner`s and `depends_on = ["other"]` (sibling module folders whose
//! provisioners run first) — and the files those provisioners use. Its
//! provisioners run where the `module` block stands, in a scope where
//! `var.*` are the module's variables and `path.module` is its folder;
//! relative paths in them resolve against the module folder. The whole
//! folder is an input of every image that uses it.
//!
//! A diskimage-builder element folder (`element-deps`, `install.d/NN-name`,
//! `environment.d/…`, ...) is accepted as a module too, and so is an
//! element set: `source` = folders of elements (or "diskimage-builder",
//! the installed package's) with `elements = [...]`, `distro`, `release`
//! and `environment`. [`super::dib`] finds and expands the elements and
//! makes the provisioners that run them as `disk-image-create` does.
//!
//! Invariants: a module folder is expanded at most once per build (`seen`),
//! dependencies before their users; a dependency cycle is an error. Callers
//! must share one `seen` across a build's module blocks, and must check the
//! returned provisioners against their kinds' schemas: nothing here does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dib;
use super::parse::{self, RawAttr, RawBlock};
use super::VariableDef;
use crate::diag::{Diagnostic, SourceLoc};

/// What a build's `module` block gives its images.
#[derive(Debug, Default)]
pub struct Expanded {
    pub provisioners: Vec<ProvisionerDef>,
    /// Module folders used (relative to the definition dir): inputs.
    pub dirs: Vec<String>,
    /// Source settings the module implies (a DIB `vm` element's disk
    /// layout), for builders whose schema has them and sources that do not
    /// set them.
    pub source_settings: Vec<RawAttr>,
}

/// The scope a module's provisioners are evaluated in.
#[derive(Debug, Clone)]
pub struct ModuleScope {
    /// The module block's label (or the dependency's folder name).
    pub name: String,
    /// The module folder relative to the definition dir (forward slashes).
    pub dir: String,
    pub variables: BTreeMap<String, VariableDef>,
    /// `name = expr` from the module block, evaluated in the image's scope.
    pub args: Vec<RawAttr>,
    pub loc: SourceLoc,
}

/// One provisioner of an image: from the build itself or from a module.
#[derive(Debug, Clone)]
pub struct ProvisionerDef {
    pub block: RawBlock,
    pub module: Option<Arc<ModuleScope>>,
}

impl ProvisionerDef {
    pub fn plain(block: RawBlock) -> ProvisionerDef {
        ProvisionerDef {
            block,
            module: None,
        }
    }

    /// Source texts that may reference image-level names (`var.*`,
    /// `image.*`): the block's own for build provisioners, the module's
    /// arguments for module provisioners.
    pub fn outer_texts(&self) -> Vec<(&str, &SourceLoc)> {
        match &self.module {
            None => self.block.texts(),
            Some(m) => m.args.iter().map(|a| (a.text.as_str(), &a.loc)).collect(),
        }
    }
}

pub struct ModuleLoader<'a> {
    pub def_dir: &'a Path,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Module folders already expanded in this build (canonical paths).
    pub seen: BTreeSet<PathBuf>,
    /// Folders outside the definition dir that hold elements, with the
    /// name they go by in manifests (`<diskimage-builder>`,
    /// `<ELEMENTS_PATH>`): where pip or a checkout put them must not
    /// change a content address.
    pub labels: Vec<(PathBuf, String)>,
}

fn rel(def_dir: &Path, dir: &Path) -> String {
    crate::paths::relative_to(def_dir, dir)
}

/// The manifest name of the installed diskimage-builder package's elements.
pub const INSTALLED_LABEL: &str = "<diskimage-builder>";
/// The manifest name of the folders listed in `ELEMENTS_PATH`.
pub const ELEMENTS_PATH_LABEL: &str = "<ELEMENTS_PATH>";

impl ModuleLoader<'_> {
    /// Names `dir` `label` in manifests, unless it is inside the definition
    /// dir (a relative path is stable there already).
    fn label(&mut self, dir: &Path, label: &str) {
        if !dir.starts_with(self.def_dir) && !self.labels.iter().any(|(d, _)| d == dir) {
            self.labels.push((dir.to_path_buf(), label.to_owned()));
        }
    }

    fn error(&mut self, loc: &SourceLoc, summary: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(summary).at(Some(loc.clone())).hint(hint));
    }

    /// Expands a `module` block of a build into provisioners (dependencies
    /// first), the module folders used, and the source settings it implies.
    pub fn expand(&mut self, block: &RawBlock) -> Expanded {
        let Some(name) = block
            .labels
            .first()
            .cloned()
            .filter(|_| block.labels.len() == 1)
        else {
            self.error(
                &block.loc,
                "a module block needs one label: its name",
                "write `module \"devuser\" { source = \"../modules/devuser\" }`",
            );
            return Expanded::default();
        };
        let source_attr = block.attr("source");
        // `source` is one folder, a list of element folders (an
        // ELEMENTS_PATH), or "diskimage-builder".
        let sources: Option<Vec<String>> = match source_attr.map(|a| &a.expr) {
            Some(hcl::Expression::Array(items)) => {
                items.iter().map(super::literal_string).collect()
            }
            Some(e) => super::literal_string(e).map(|s| vec![s]),
            None => None,
        };
        let has_elements = block.attr("elements").is_some();
        let Some(sources) = sources.filter(|s| has_elements || !s.is_empty()) else {
            self.error(
                &block.loc,
                format!("module `{name}` needs a literal `source`"),
                "write source = \"../modules/devuser\" (a folder, relative to the definition dir)",
            );
            return Expanded::default();
        };
        let source_loc = source_attr
            .map(|a| a.loc.clone())
            .unwrap_or_else(|| block.loc.clone());
        let args: Vec<RawAttr> = block
            .attrs
            .iter()
            .filter(|a| a.name != "source")
            .cloned()
            .collect();
        for inner in &block.blocks {
            self.error(
                &inner.loc,
                format!("unexpected block `{}` in module `{name}`", inner.kind),
                "a module block holds `source` and the module's variables as attributes",
            );
        }
        let mut out = Vec::new();
        let mut dirs = Vec::new();
        if let Some(elements) = args.iter().find(|a| a.name == "elements") {
            // Element search paths and installed element sets are looked
            // up in ways a `stat` of what was read cannot vouch for.
            crate::watch::untracked(|| format!("module `{name}`: diskimage-builder elements"));
            let Some(search) = self.search_path(&name, &sources, &source_loc) else {
                return Expanded::default();
            };
            let names: Option<Vec<String>> = match &elements.expr {
                hcl::Expression::Array(items) => items.iter().map(super::literal_string).collect(),
                _ => None,
            };
            let Some(names) = names else {
                self.error(
                    &elements.loc,
                    format!("`elements` of module `{name}` must be a list of element names"),
                    "write elements = [\"vm\", \"block-device-gpt\", \"cloud-init-datasources\"]",
                );
                return Expanded::default();
            };
            let settings = self.load_element_set(
                &name,
                &search,
                &names,
                &args,
                &elements.loc,
                &mut out,
                &mut dirs,
            );
            return Expanded {
                provisioners: out,
                dirs,
                source_settings: settings,
            };
        }
        let [source] = sources.as_slice() else {
            self.error(
                &source_loc,
                format!("module `{name}` lists several folders but no `elements`"),
                "a list of folders is where diskimage-builder elements are looked up: add elements = [\"...\"]",
            );
            return Expanded::default();
        };
        let dir = self.def_dir.join(source);
        // As written (a link retargeted is a change), not only resolved.
        crate::watch::path(&dir);
        let Ok(dir) = std::fs::canonicalize(&dir) else {
            let hint = if source == dib::INSTALLED {
                "\"diskimage-builder\" names the installed package's elements: add elements = [\"...\"]"
            } else {
                "source is a folder relative to the definition dir, e.g. \"../modules/devuser\""
            };
            self.error(
                &source_loc,
                format!("module `{name}`: folder {source} does not exist"),
                hint,
            );
            return Expanded::default();
        };
        self.load(
            &name,
            &dir,
            args,
            &block.loc,
            &mut Vec::new(),
            &mut out,
            &mut dirs,
        );
        Expanded {
            provisioners: out,
            dirs,
            source_settings: Vec::new(),
        }
    }

    /// The folders an element set's elements are looked up in:
    /// `ELEMENTS_PATH`, then the `source` folders ("diskimage-builder": the
    /// installed package's elements).
    fn search_path(
        &mut self,
        name: &str,
        sources: &[String],
        loc: &SourceLoc,
    ) -> Option<dib::SearchPath> {
        let mut search = dib::SearchPath {
            dirs: self.elements_path(name, loc)?,
        };
        for source in sources {
            if source == dib::INSTALLED {
                match dib::installed_elements() {
                    Ok(dir) => {
                        self.label(&dir, INSTALLED_LABEL);
                        search.dirs.push(dir);
                    }
                    Err(tried) => {
                        self.error(
                            loc,
                            format!("module `{name}`: diskimage-builder is not installed (tried {tried})"),
                            "pip install diskimage-builder, or set DIB_PYTHON_EXEC to the Python that has it",
                        );
                        return None;
                    }
                }
                continue;
            }
            match std::fs::canonicalize(self.def_dir.join(source)) {
                Ok(dir) if dir.is_dir() => {
                    if Path::new(source).is_relative() {
                        let shown = rel(self.def_dir, &dir);
                        self.label(&dir, &shown);
                    }
                    search.dirs.push(dir);
                }
                _ => {
                    self.error(
                        loc,
                        format!("module `{name}`: folder {source} does not exist"),
                        "source is a folder of diskimage-builder elements (relative to the definition dir), a list of them, or \"diskimage-builder\" for the installed package's",
                    );
                    return None;
                }
            }
        }
        Some(search)
    }

    /// `ELEMENTS_PATH`'s folders; an entry that is no folder is an error.
    fn elements_path(&mut self, name: &str, loc: &SourceLoc) -> Option<Vec<PathBuf>> {
        match dib::elements_path_env() {
            Ok(dirs) => {
                for dir in &dirs {
                    self.label(dir, ELEMENTS_PATH_LABEL);
                }
                Some(dirs)
            }
            Err(entry) => {
                self.error(
                    loc,
                    format!("module `{name}`: ELEMENTS_PATH entry {entry} is not a folder"),
                    "ELEMENTS_PATH lists folders of diskimage-builder elements, separated by :",
                );
                None
            }
        }
    }

    /// The module block's settings of an element set: `distro`, `release`
    /// and `environment` (anything else is an error).
    fn element_settings(&mut self, name: &str, args: &[RawAttr]) -> dib::EnvSettings {
        let mut settings = dib::EnvSettings::default();
        for a in args {
            match a.name.as_str() {
                "elements" => {}
                "distro" => settings.distro = Some(a.clone()),
                "release" => settings.release = Some(a.clone()),
                "environment" => match &a.expr {
                    hcl::Expression::Object(map) => {
                        for (key, value) in map {
                            let key = match key {
                                hcl::ObjectKey::Identifier(id) => id.to_string(),
                                hcl::ObjectKey::Expression(e) => {
                                    super::literal_string(e).unwrap_or_default()
                                }
                                _ => String::new(),
                            };
                            if key.is_empty()
                                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            {
                                self.error(&a.loc, format!("module `{name}`: `{key}` is not an environment variable name"), "names are letters, digits and _, e.g. DIB_DEV_USER_USERNAME");
                                continue;
                            }
                            settings.environment.push((key, value.clone()));
                        }
                    }
                    _ => self.error(
                        &a.loc,
                        format!("`environment` of module `{name}` must be an object"),
                        "write environment = { DIB_DEV_USER_USERNAME = \"ops\" }",
                    ),
                },
                other => self.error(
                    &a.loc,
                    format!("module `{name}` is a set of diskimage-builder elements and has no setting `{other}`"),
                    "an element set takes source, elements, distro, release and environment = { DIB_... = \"...\" }",
                ),
            }
        }
        settings
    }

    /// `module "NAME" { source = ELEMENTS_DIR, elements = ["vm", ...] }`:
    /// elements picked from folders of diskimage-builder elements (as
    /// `disk-image-create` is given names and an `ELEMENTS_PATH`), with
    /// their dependencies, run with DIB's build environment. Returns the
    /// source settings its disk elements stand for.
    #[allow(clippy::too_many_arguments)]
    fn load_element_set(
        &mut self,
        name: &str,
        search: &dib::SearchPath,
        requested: &[String],
        args: &[RawAttr],
        loc: &SourceLoc,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) -> Vec<RawAttr> {
        let settings = self.element_settings(name, args);
        let elements = match dib::expand(requested, search) {
            Ok(e) => e,
            Err(errors) => {
                for e in errors {
                    self.error(loc, format!("module `{name}`: {}", e.message), e.hint);
                }
                return Vec::new();
            }
        };
        for (phase, file, first, second) in dib::duplicate_hooks(&elements) {
            self.error(
                loc,
                format!("module `{name}`: elements {first} and {second} both have {phase}/{file}"),
                "diskimage-builder refuses to merge two hooks of one name: rename one",
            );
        }
        for e in &elements {
            self.seen.insert(e.dir.clone());
            let shown = dib::shown(self.def_dir, &e.dir);
            if !dirs.contains(&shown) {
                dirs.push(shown);
            }
        }
        let names: Vec<String> = elements.iter().map(|e| e.name.clone()).collect();
        out.extend(
            dib::phase_provisioners(loc, self.def_dir, &elements, search, &settings)
                .into_iter()
                .map(ProvisionerDef::plain),
        );
        dib::disk_settings(&names, loc)
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        name: &str,
        dir: &Path,
        args: Vec<RawAttr>,
        loc: &SourceLoc,
        stack: &mut Vec<PathBuf>,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) {
        if stack.contains(&dir.to_path_buf()) {
            let chain: Vec<String> = stack
                .iter()
                .chain(std::iter::once(&dir.to_path_buf()))
                .map(|d| {
                    d.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            self.error(
                loc,
                format!("module dependency cycle: {}", chain.join(" → ")),
                "remove one of the depends_on entries",
            );
            return;
        }
        if !self.seen.insert(dir.to_path_buf()) {
            if !args.is_empty() {
                self.diags.push(Diagnostic::warning(format!("module `{name}` is already applied in this build (as a dependency or earlier); this use is skipped")).at(Some(loc.clone())).hint("use each module once per build; put it before the modules that depend on it to set its variables"));
            }
            return;
        }
        let rel_dir = rel(self.def_dir, dir);
        dirs.push(rel_dir.clone());
        stack.push(dir.to_path_buf());
        let module_file = dir.join("module.hcl");
        // For the plan cache: the folder's listing (a module file or an
        // element marker added) and the module file; its files are inputs,
        // watched as they are hashed.
        crate::watch::paths([dir, &module_file]);
        if module_file.is_file() {
            self.load_hcl(
                name,
                dir,
                &rel_dir,
                &module_file,
                args,
                loc,
                stack,
                out,
                dirs,
            );
        } else if dib::MARKERS.iter().any(|m| dir.join(m).exists()) {
            crate::watch::untracked(|| format!("module `{name}`: a diskimage-builder element"));
            let element = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            // The element named by `source` first, then ELEMENTS_PATH for
            // its dependencies.
            let Some(from_env) = self.elements_path(name, loc) else {
                stack.pop();
                return;
            };
            if let Some(parent) = dir.parent() {
                let shown = rel(self.def_dir, parent);
                self.label(parent, &shown);
            }
            let search = dib::SearchPath {
                dirs: dir
                    .parent()
                    .map(Path::to_path_buf)
                    .into_iter()
                    .chain(from_env)
                    .collect(),
            };
            dirs.pop();
            let settings = self.load_element_set(
                name,
                &search,
                std::slice::from_ref(&element),
                &args,
                loc,
                out,
                dirs,
            );
            if !settings.is_empty() {
                self.diags.push(Diagnostic::warning(format!("module `{name}` is the diskimage-builder element `{element}`, which makes a bootable disk: use it in an element set so the builder gets its disk layout")).at(Some(loc.clone())).hint("module \"image\" { source = \"diskimage-builder\"  elements = [\"vm\", \"block-device-gpt\"] }"));
            }
        } else {
            self.error(loc, format!("module `{name}`: {rel_dir} has no module.hcl and is not a diskimage-builder element"), "a module folder holds module.hcl (variables, provisioners, depends_on); an element holds install.d/, element-deps, ...");
        }
        stack.pop();
    }

    #[allow(clippy::too_many_arguments)]
    fn load_hcl(
        &mut self,
        name: &str,
        dir: &Path,
        rel_dir: &str,
        file: &Path,
        args: Vec<RawAttr>,
        loc: &SourceLoc,
        stack: &mut Vec<PathBuf>,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) {
        let display = PathBuf::from(format!("{rel_dir}/module.hcl"));
        let parsed = match parse::parse_file(file, &display) {
            Ok(p) => p,
            Err(d) => {
                self.diags.push(d);
                return;
            }
        };
        let depends_on = self.module_attrs(&parsed.attrs);
        let (variables, provisioners) = self.module_blocks(&parsed.blocks);
        self.check_module_args(name, &variables, &args, loc);
        let parent = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.to_path_buf());
        for (dep, dep_loc) in depends_on {
            // As written (a link retargeted is a change), not only resolved.
            crate::watch::path(&parent.join(&dep));
            match std::fs::canonicalize(parent.join(&dep)) {
                Ok(dep_dir) => self.load(&dep, &dep_dir, Vec::new(), &dep_loc, stack, out, dirs),
                Err(_) => self.error(
                    &dep_loc,
                    format!("module `{name}` depends on `{dep}`, which is not a sibling folder"),
                    "depends_on names module folders next to this one",
                ),
            }
        }
        let scope = Arc::new(ModuleScope {
            name: name.to_owned(),
            dir: rel_dir.to_owned(),
            variables,
            args,
            loc: loc.clone(),
        });
        out.extend(provisioners.into_iter().map(|block| ProvisionerDef {
            block,
            module: Some(Arc::clone(&scope)),
        }));
    }

    /// The attributes of `module.hcl`: its `depends_on` entries, with where.
    fn module_attrs(&mut self, attrs: &[RawAttr]) -> Vec<(String, SourceLoc)> {
        let mut depends_on = Vec::new();
        for attr in attrs {
            match attr.name.as_str() {
                "depends_on" => match &attr.expr {
                    hcl::Expression::Array(items) => depends_on.extend(
                        items
                            .iter()
                            .filter_map(super::literal_string)
                            .map(|n| (n, attr.loc.clone())),
                    ),
                    _ => self.error(
                        &attr.loc,
                        "`depends_on` must be a list of module names",
                        "depends_on = [\"devuser\"]",
                    ),
                },
                "description" => {}
                other => self.error(
                    &attr.loc,
                    format!("unknown attribute `{other}` in a module"),
                    "module.hcl holds description, depends_on, variable and provisioner blocks",
                ),
            }
        }
        depends_on
    }

    /// The blocks of `module.hcl`: its variables and provisioners.
    fn module_blocks(
        &mut self,
        blocks: &[RawBlock],
    ) -> (BTreeMap<String, VariableDef>, Vec<RawBlock>) {
        let mut variables = BTreeMap::new();
        let mut provisioners = Vec::new();
        for block in blocks {
            match block.kind.as_str() {
                "variable" => {
                    if let Some(def) = super::variables::variable_def(block, self.diags) {
                        variables.insert(def.name.clone(), def);
                    }
                }
                "provisioner" => provisioners.push(block.clone()),
                other => self.error(
                    &block.loc,
                    format!("unknown block `{other}` in a module"),
                    "module.hcl holds variable and provisioner blocks",
                ),
            }
        }
        (variables, provisioners)
    }

    /// Every argument of the module block names a variable, and every
    /// variable without a default has an argument.
    fn check_module_args(
        &mut self,
        name: &str,
        variables: &BTreeMap<String, VariableDef>,
        args: &[RawAttr],
        loc: &SourceLoc,
    ) {
        for arg in args {
            if !variables.contains_key(&arg.name) {
                let hint =
                    match crate::diag::closest(&arg.name, variables.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "module `{name}` declares: {}",
                            variables.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                self.error(
                    &arg.loc,
                    format!("module `{name}` has no variable `{}`", arg.name),
                    hint,
                );
            }
        }
        for def in variables.values() {
            if def.default.is_none() && !args.iter().any(|a| a.name == def.name) {
                self.error(
                    loc,
                    format!("module `{name}` needs a value for `{}`", def.name),
                    format!("add `{} = ...` to the module block", def.name),
                );
            }
        }
    }
}
