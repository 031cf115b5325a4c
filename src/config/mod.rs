//! Loading and evaluating image definitions (Packer's HCL2 dialect).
//!
//! [`load`] reads every `*.pkr.hcl`, `*.img.hcl` and `*.pkr.json` in the
//! definition dir, checks every block and attribute against the known
//! schemas, resolves variables (defaults < `PKR_VAR_x` < `IMGFORM_VAR_x` <
//! `*.auto.pkrvars.hcl` < `--var-file` < `--var`) and locals, and expands
//! builds into one [`ImageDef`] per (build, source) pair. Image expressions
//! are evaluated later, one image at a time, by [`Project::evaluate_image`],
//! because a child's values depend on its parents' content addresses.
//!
//! Invariants: all problems are collected (not just the first) and returned
//! as [`Diagnostics`], each with a place and a hint; nothing here touches
//! state or the network; nothing past [`crate::spec::ImageSpec`] sees HCL.

pub mod backend;
pub mod eval;
pub mod functions;
pub mod lazy_eval;
pub mod module;
pub mod parse;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

pub use backend::{load_backend, BackendConfig, BackendKind};

use crate::addr::ImageAddr;
use crate::diag::{closest, Diagnostic, Diagnostics, SourceLoc};
use crate::schema::Schema;
use crate::{drivers, provision};
use module::{ModuleLoader, ProvisionerDef};
use parse::{RawAttr, RawBlock, RawFile};
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
}

impl LoadOptions {
    pub fn from_env(vars: Vec<String>, var_files: Vec<PathBuf>) -> LoadOptions {
        LoadOptions {
            vars,
            var_files,
            env: std::env::vars().collect(),
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
    pub post_processors: Vec<RawBlock>,
    pub build_attrs: Vec<RawAttr>,
    /// Parent images referenced by `image.<ADDR>.id`, with where.
    pub refs: BTreeMap<ImageAddr, SourceLoc>,
    pub loc: SourceLoc,
}

/// The loaded definitions: variables resolved, locals and images ready to
/// evaluate.
#[derive(Debug)]
pub struct Project {
    pub def_dir: PathBuf,
    pub variables: BTreeMap<String, VariableDef>,
    pub var_values: BTreeMap<String, hcl::Value>,
    pub locals: Vec<LocalDef>,
    pub images: Vec<ImageDef>,
    /// Notes and warnings found while loading (never errors).
    pub warnings: Vec<Diagnostic>,
    /// Every file the definitions came from, relative to the definition dir.
    pub files: Vec<PathBuf>,
    /// The `backend` block, if any (where the state is kept).
    pub backend: Option<BackendConfig>,
    pub(crate) locals_cache: eval::LocalsCache,
}

impl Project {
    /// Values of sensitive variables and locals, to scrub from any output.
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, def) in &self.variables {
            if def.sensitive {
                if let Some(v) = self.var_values.get(name) {
                    collect_strings(v, &mut out);
                }
            }
        }
        out.sort();
        out.dedup();
        out
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

/// The definition files of a dir, sorted by name.
pub fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_def =
            name.ends_with(".pkr.hcl") || name.ends_with(".img.hcl") || name.ends_with(".pkr.json");
        if is_def && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Loads and checks the definitions in `dir`.
pub fn load(dir: &Path, options: &LoadOptions) -> Result<Project, Diagnostics> {
    let def_dir = std::fs::canonicalize(dir).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(format!(
            "cannot open definition dir {}: {e}",
            dir.display()
        ))
        .hint(
            "pass the folder holding your *.pkr.hcl files with --chdir DIR or as the last argument",
        )])
    })?;
    let mut loader = Loader {
        def_dir: def_dir.clone(),
        display_base: dir.to_path_buf(),
        diags: Vec::new(),
    };
    let paths = definition_files(&def_dir).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(format!(
            "cannot list {}: {e}",
            dir.display()
        ))])
    })?;
    if paths.is_empty() {
        return Err(Diagnostics(vec![Diagnostic::error(format!(
            "no image definitions in {}",
            dir.display()
        ))
        .hint("imgform reads *.pkr.hcl, *.img.hcl and *.pkr.json files; run it in the folder that holds them or pass --chdir DIR")]));
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

struct Loader {
    def_dir: PathBuf,
    display_base: PathBuf,
    diags: Vec<Diagnostic>,
}

/// The blocks a definition file may hold at its top level.
const TOP_LEVEL_BLOCKS: &[&str] = &[
    "packer",
    "variable",
    "variables",
    "locals",
    "local",
    "source",
    "build",
    "data",
    "backend",
];
const BUILD_ATTRS: &[&str] = &["name", "description", "sources", "keep_previous", "max_age"];
const BUILD_BLOCKS: &[&str] = &[
    "source",
    "provisioner",
    "post-processor",
    "post-processors",
    "error-cleanup-provisioner",
    "hcp_packer_registry",
    "module",
    "test",
];
const VARIABLE_ATTRS: &[&str] = &["type", "default", "description", "sensitive", "nullable"];

static IMAGE_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\bimage\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?\.id\b")
        .expect("valid regex")
});

/// Static scan for `image.<ADDR>.id` in an attribute's source text.
pub fn image_refs_in(text: &str) -> Vec<ImageAddr> {
    IMAGE_REF
        .captures_iter(text)
        .map(|c| match c.get(3) {
            Some(name) => ImageAddr::new(Some(&c[1]), &c[2], name.as_str()),
            None => ImageAddr::new(None, &c[1], &c[2]),
        })
        .collect()
}

impl Loader {
    fn display(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.def_dir) {
            Ok(rel) if self.display_base != Path::new(".") => self.display_base.join(rel),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => path.to_path_buf(),
        }
    }

    fn error(&mut self, loc: &SourceLoc, summary: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(summary).at(Some(loc.clone())).hint(hint));
    }

    fn interpret(&mut self, files: &[RawFile], options: &LoadOptions) -> Option<Project> {
        let mut variables: BTreeMap<String, VariableDef> = BTreeMap::new();
        let mut locals: Vec<LocalDef> = Vec::new();
        let mut sources: BTreeMap<(String, String), RawBlock> = BTreeMap::new();
        let mut builds: Vec<RawBlock> = Vec::new();
        let mut backend: Option<BackendConfig> = None;

        for file in files {
            for attr in &file.attrs {
                self.error(
                    &attr.loc,
                    format!("unexpected attribute `{}` at the top level of a definition file", attr.name),
                    "top-level attributes belong in variable files (*.pkrvars.hcl); here use `variable`, `locals`, `source` and `build` blocks",
                );
            }
            for block in &file.blocks {
                match block.kind.as_str() {
                    "packer" => self.packer_block(block),
                    "variable" => self.variable_block(block, &mut variables),
                    "variables" => {
                        // Legacy form: variables { name = default }.
                        for attr in &block.attrs {
                            self.insert_variable(
                                &mut variables,
                                VariableDef {
                                    name: attr.name.clone(),
                                    ty: TypeExpr::Any,
                                    default: Some(attr.clone()),
                                    description: None,
                                    sensitive: false,
                                    validations: Vec::new(),
                                    loc: attr.loc.clone(),
                                },
                            );
                        }
                    }
                    "locals" => {
                        for attr in &block.attrs {
                            self.insert_local(&mut locals, attr.clone(), false);
                        }
                        for inner in &block.blocks {
                            self.error(&inner.loc, format!("unexpected block `{}` in locals", inner.kind), "locals hold only `name = expression` attributes");
                        }
                    }
                    "local" => self.local_block(block, &mut locals),
                    "source" => {
                        if block.labels.len() != 2 {
                            self.error(&block.loc, "a source block needs two labels: type and name", "write `source \"null\" \"example\" { ... }`");
                            continue;
                        }
                        let key = (block.labels[0].clone(), block.labels[1].clone());
                        if let Some(prev) = sources.get(&key) {
                            let prev_loc = prev.loc.clone();
                            self.error(
                                &block.loc,
                                format!("duplicate source `source.{}.{}`", key.0, key.1),
                                format!("it is already defined at {prev_loc}; give one of them another name"),
                            );
                            continue;
                        }
                        self.check_source_schema(block);
                        sources.insert(key, block.clone());
                    }
                    "build" => builds.push(block.clone()),
                    "backend" => match backend::backend_block(block, backend.as_ref()) {
                        Ok(config) => backend = Some(config),
                        Err(diags) => self.diags.extend(diags),
                    },
                    "data" => self.error(
                        &block.loc,
                        format!("data sources are not supported yet (`data \"{}\"`)", block.labels.join("\" \"")),
                        "resolve the value outside imgform and pass it as a variable, or use source_ami_filter / source_image_filter on the source, which imgform resolves at plan time",
                    ),
                    other => {
                        let hint = match closest(other, TOP_LEVEL_BLOCKS.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`? Definition files hold packer, variable, locals, local, source and build blocks"),
                            None => "definition files hold packer, variable, locals, local, source and build blocks".to_owned(),
                        };
                        self.error(&block.loc, format!("unknown block type `{other}`"), hint);
                    }
                }
            }
        }

        let var_values = self.resolve_variables(&variables, options);
        let mut images = Vec::new();
        for build in &builds {
            self.expand_build(build, &sources, &mut images);
        }
        self.check_images(&mut images);

        let mut project = Project {
            def_dir: self.def_dir.clone(),
            variables,
            var_values,
            locals,
            images,
            warnings: Vec::new(),
            files: Vec::new(),
            backend,
            locals_cache: eval::LocalsCache::default(),
        };
        // Locals are evaluated once here so their errors are reported at load
        // time, whether or not any image uses them.
        if let Err(diags) = eval::evaluate_locals(&project, functions::Clock::Real) {
            self.diags.extend(diags);
        } else {
            eval::validate_variables(&project, &mut self.diags);
        }
        project.locals_cache = eval::LocalsCache::default();
        Some(project)
    }

    fn packer_block(&mut self, block: &RawBlock) {
        for attr in &block.attrs {
            if attr.name != "required_version" {
                self.error(
                    &attr.loc,
                    format!("unknown attribute `{}` in the packer block", attr.name),
                    "the packer block takes required_version and required_plugins",
                );
            }
        }
        for inner in &block.blocks {
            if inner.kind == "required_plugins" {
                self.diags.push(
                    Diagnostic::note("required_plugins is ignored: imgform has its builders and provisioners built in")
                        .at(Some(inner.loc.clone())),
                );
            } else {
                self.error(
                    &inner.loc,
                    format!("unknown block `{}` in the packer block", inner.kind),
                    "the packer block takes required_version and required_plugins",
                );
            }
        }
    }

    fn insert_variable(&mut self, variables: &mut BTreeMap<String, VariableDef>, def: VariableDef) {
        if let Some(prev) = variables.get(&def.name) {
            let prev_loc = prev.loc.clone();
            self.error(
                &def.loc,
                format!("duplicate variable `{}`", def.name),
                format!("it is already declared at {prev_loc}"),
            );
            return;
        }
        variables.insert(def.name.clone(), def);
    }

    fn insert_local(&mut self, locals: &mut Vec<LocalDef>, attr: RawAttr, sensitive: bool) {
        if let Some(prev) = locals.iter().find(|l| l.name == attr.name) {
            let prev_loc = prev.attr.loc.clone();
            self.error(
                &attr.loc,
                format!("duplicate local `{}`", attr.name),
                format!("it is already defined at {prev_loc}"),
            );
            return;
        }
        locals.push(LocalDef {
            name: attr.name.clone(),
            attr,
            sensitive,
        });
    }

    fn variable_block(&mut self, block: &RawBlock, variables: &mut BTreeMap<String, VariableDef>) {
        if let Some(def) = variable_def(block, &mut self.diags) {
            // A default is checked against the type once variables are resolved.
            self.insert_variable(variables, def);
        }
    }

    fn local_block(&mut self, block: &RawBlock, locals: &mut Vec<LocalDef>) {
        let [name] = block.labels.as_slice() else {
            self.error(
                &block.loc,
                "a local block needs one label: its name",
                "write `local \"name\" { expression = ... sensitive = true }`",
            );
            return;
        };
        let Some(expr) = block.attr("expression") else {
            self.error(
                &block.loc,
                format!("local `{name}` has no `expression`"),
                "write `local \"name\" { expression = ... }`",
            );
            return;
        };
        let sensitive = matches!(
            block.attr("sensitive").map(|a| &a.expr),
            Some(hcl::Expression::Bool(true))
        );
        let mut attr = expr.clone();
        attr.name = name.clone();
        self.insert_local(locals, attr, sensitive);
    }

    fn check_source_schema(&mut self, block: &RawBlock) {
        let kind = &block.labels[0];
        let Some(builder) = drivers::kind_of(kind) else {
            let known: Vec<&str> = drivers::kind_names().collect();
            let hint = match closest(kind, known.iter().copied()) {
                Some(s) => format!(
                    "did you mean `{s}`? Known source types: {}",
                    known.join(", ")
                ),
                None => format!("known source types: {}", known.join(", ")),
            };
            self.error(&block.loc, format!("unknown source type `{kind}`"), hint);
            return;
        };
        self.check_body_schema(block, &builder.schema, &format!("source \"{kind}\""));
    }

    fn check_body_schema(&mut self, block: &RawBlock, schema: &Schema, what: &str) {
        for attr in &block.attrs {
            if schema.attr(&attr.name).is_none() {
                if schema.block(&attr.name).is_some() {
                    // HCL allows `source_ami_filter = { ... }` too.
                    continue;
                }
                let hint = hint_for(
                    &attr.name,
                    schema.names(),
                    &format!("see the {what} attributes in the README"),
                );
                self.error(
                    &attr.loc,
                    format!("unknown attribute `{}` in {what}", attr.name),
                    hint,
                );
            }
        }
        for inner in &block.blocks {
            if schema.block(&inner.kind).is_none() {
                let hint = hint_for(
                    &inner.kind,
                    schema.names(),
                    &format!("{what} takes no `{}` block", inner.kind),
                );
                self.error(
                    &inner.loc,
                    format!("unknown block `{}` in {what}", inner.kind),
                    hint,
                );
            }
        }
    }

    fn expand_build(
        &mut self,
        build: &RawBlock,
        sources: &BTreeMap<(String, String), RawBlock>,
        images: &mut Vec<ImageDef>,
    ) {
        if !build.labels.is_empty() {
            self.error(
                &build.loc,
                "a build block takes no labels",
                "name a build with `name = \"golden\"` inside the block",
            );
        }
        let mut build_name = None;
        let mut build_attrs = Vec::new();
        let mut source_refs: Vec<(String, String, SourceLoc)> = Vec::new();
        let mut sources_invalid = false;
        for attr in &build.attrs {
            match attr.name.as_str() {
                "name" => match literal_string(&attr.expr) {
                    Some(n) if is_name(&n) => build_name = Some(n),
                    _ => self.error(
                        &attr.loc,
                        "a build name must be a literal name",
                        "write `name = \"golden\"` (letters, digits, _ and -)",
                    ),
                },
                "description" => {}
                "sources" => match source_list(&attr.expr) {
                    Ok(list) => {
                        source_refs.extend(list.into_iter().map(|(t, n)| (t, n, attr.loc.clone())))
                    }
                    Err(e) => {
                        sources_invalid = true;
                        self.error(&attr.loc, e, "write `sources = [\"source.null.example\"]`")
                    }
                },
                "keep_previous" | "max_age" => build_attrs.push(attr.clone()),
                other => {
                    let hint = hint_for(
                        other,
                        BUILD_ATTRS.iter().copied(),
                        "a build takes name, description, sources, keep_previous and max_age",
                    );
                    self.error(
                        &attr.loc,
                        format!("unknown attribute `{other}` in build"),
                        hint,
                    );
                }
            }
        }

        // (type, name, override block)
        let mut entries: Vec<(String, String, Option<RawBlock>, SourceLoc)> = source_refs
            .into_iter()
            .map(|(t, n, loc)| (t, n, None, loc))
            .collect();
        let mut provisioners: Vec<ProvisionerDef> = Vec::new();
        let mut tests: Vec<ProvisionerDef> = Vec::new();
        let mut modules: Vec<String> = Vec::new();
        let mut post_processors = Vec::new();
        let mut module_loader_seen = BTreeSet::new();
        for inner in &build.blocks {
            match inner.kind.as_str() {
                "source" => {
                    let Some((t, n)) = inner.labels.first().and_then(|l| split_source_ref(l))
                    else {
                        self.error(&inner.loc, "an in-build source block needs one label: `TYPE.NAME` of a top-level source", "write `source \"null.example\" { name = \"renamed\" }`");
                        continue;
                    };
                    entries.push((t, n, Some(inner.clone()), inner.loc.clone()));
                }
                "provisioner" => {
                    if self.check_provisioner(inner) {
                        provisioners.push(ProvisionerDef::plain(inner.clone()));
                    }
                }
                "module" => {
                    let mut loader = ModuleLoader {
                        def_dir: &self.def_dir,
                        diags: &mut self.diags,
                        seen: std::mem::take(&mut module_loader_seen),
                    };
                    let (provs, dirs) = loader.expand(inner);
                    module_loader_seen = loader.seen;
                    for p in provs {
                        if self.check_provisioner(&p.block) {
                            provisioners.push(p);
                        }
                    }
                    modules.extend(dirs);
                }
                "post-processor" => post_processors.push(inner.clone()),
                "post-processors" => post_processors.extend(inner.blocks.iter().cloned()),
                "error-cleanup-provisioner" => {}
                "hcp_packer_registry" => self.diags.push(
                    Diagnostic::note(
                        "hcp_packer_registry is ignored: imgform records images in its own state",
                    )
                    .at(Some(inner.loc.clone())),
                ),
                "test" => {
                    for attr in &inner.attrs {
                        self.error(&attr.loc, format!("unknown attribute `{}` in a test block", attr.name), "a test block holds provisioner blocks that run against the finished image");
                    }
                    for p in &inner.blocks {
                        if p.kind != "provisioner" {
                            self.error(
                                &p.loc,
                                format!("unexpected block `{}` in a test block", p.kind),
                                "a test block holds provisioner blocks",
                            );
                        } else if self.check_provisioner(p) {
                            tests.push(ProvisionerDef::plain(p.clone()));
                        }
                    }
                }
                other => {
                    let hint = hint_for(
                        other,
                        BUILD_BLOCKS.iter().copied(),
                        "a build holds source, provisioner and post-processor blocks",
                    );
                    self.error(
                        &inner.loc,
                        format!("unknown block `{other}` in build"),
                        hint,
                    );
                }
            }
        }
        if entries.is_empty() && !sources_invalid {
            self.error(&build.loc, "this build has no sources", "add `sources = [\"source.TYPE.NAME\"]` or an in-build `source \"TYPE.NAME\" { }` block");
        }

        for (t, n, over, loc) in entries {
            let Some(source) = sources.get(&(t.clone(), n.clone())) else {
                let known: Vec<String> = sources
                    .keys()
                    .map(|(t, n)| format!("source.{t}.{n}"))
                    .collect();
                let wanted = format!("source.{t}.{n}");
                let hint = match closest(&wanted, known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => {
                        "declare it with `source \"TYPE\" \"NAME\" { ... }`".to_owned()
                    }
                    None => format!("declared sources: {}", known.join(", ")),
                };
                self.error(
                    &loc,
                    format!("build refers to undeclared source `{wanted}`"),
                    hint,
                );
                continue;
            };
            let mut attrs = source.attrs.clone();
            let mut blocks = source.blocks.clone();
            let mut name = n.clone();
            if let Some(over) = &over {
                let schema = drivers::kind_of(&t).map(|k| &k.schema);
                for attr in &over.attrs {
                    if attr.name == "name" {
                        match literal_string(&attr.expr) {
                            Some(v) if is_name(&v) => name = v,
                            _ => self.error(
                                &attr.loc,
                                "`name` of an in-build source must be a literal name",
                                "write `name = \"second\"`",
                            ),
                        }
                        continue;
                    }
                    if let Some(schema) = schema {
                        if schema.attr(&attr.name).is_none() && schema.block(&attr.name).is_none() {
                            let hint = hint_for(
                                &attr.name,
                                schema.names(),
                                "see the source's attributes in the README",
                            );
                            self.error(
                                &attr.loc,
                                format!("unknown attribute `{}` in source \"{t}\"", attr.name),
                                hint,
                            );
                            continue;
                        }
                    }
                    attrs.retain(|a| a.name != attr.name);
                    attrs.push(attr.clone());
                }
                for inner in &over.blocks {
                    blocks.retain(|b| b.kind != inner.kind);
                }
                blocks.extend(over.blocks.iter().cloned());
            }
            let addr = ImageAddr::new(build_name.as_deref(), &t, &name);
            let applies = |p: &RawBlock| provisioner_applies(p, &t, &name, build_name.as_deref());
            images.push(ImageDef {
                addr,
                build_name: build_name.clone(),
                builder: t.clone(),
                source_name: name.clone(),
                attrs,
                blocks,
                provisioners: provisioners
                    .iter()
                    .filter(|p| applies(&p.block))
                    .cloned()
                    .collect(),
                tests: tests
                    .iter()
                    .filter(|p| applies(&p.block))
                    .cloned()
                    .collect(),
                modules: modules.clone(),
                post_processors: post_processors
                    .iter()
                    .filter(|p| applies(p))
                    .cloned()
                    .collect(),
                build_attrs: build_attrs.clone(),
                refs: BTreeMap::new(),
                // Where the image is declared: the build's `sources` entry
                // or its in-build source block.
                loc: loc.clone(),
            });
        }
    }

    /// Checks a provisioner block against its schema; false if unusable.
    fn check_provisioner(&mut self, block: &RawBlock) -> bool {
        let [kind] = block.labels.as_slice() else {
            self.error(
                &block.loc,
                "a provisioner block needs one label: its type",
                "write `provisioner \"shell\" { inline = [\"...\"] }`",
            );
            return false;
        };
        let Some(provisioner) = provision::kind_of(kind) else {
            let known: Vec<&str> = provision::kind_names().collect();
            let hint = match closest(kind, known.iter().copied()) {
                Some(s) => format!(
                    "did you mean `{s}`? Known provisioner types: {}",
                    known.join(", ")
                ),
                None => format!("known provisioner types: {}", known.join(", ")),
            };
            self.error(
                &block.loc,
                format!("unknown provisioner type `{kind}`"),
                hint,
            );
            return false;
        };
        let before = self.diags.len();
        self.check_body_schema(
            block,
            &provisioner.schema,
            &format!("provisioner \"{kind}\""),
        );
        self.diags[before..].iter().all(|d| !d.is_error())
    }

    fn check_images(&mut self, images: &mut [ImageDef]) {
        let mut seen: BTreeMap<ImageAddr, SourceLoc> = BTreeMap::new();
        for image in images.iter() {
            if let Some(prev) = seen.get(&image.addr) {
                let prev = prev.clone();
                self.error(
                    &image.loc,
                    format!("duplicate image address `{}`", image.addr),
                    format!("`{}` is already produced at {prev}; give the build a `name` or rename the source with `name = ...` in an in-build source block", image.addr),
                );
            } else {
                seen.insert(image.addr.clone(), image.loc.clone());
            }
        }
        let known: BTreeSet<ImageAddr> = seen.keys().cloned().collect();
        for image in images.iter_mut() {
            let texts: Vec<(&str, &SourceLoc)> = image
                .attrs
                .iter()
                .map(|a| (a.text.as_str(), &a.loc))
                .chain(image.blocks.iter().flat_map(RawBlock::texts))
                .chain(
                    image
                        .provisioners
                        .iter()
                        .flat_map(ProvisionerDef::outer_texts),
                )
                .collect();
            let mut refs = BTreeMap::new();
            for (text, loc) in texts {
                for addr in image_refs_in(text) {
                    if !known.contains(&addr) {
                        let hint = match closest(&addr.to_string(), known.iter().map(|a| a.to_string()).collect::<Vec<_>>().iter().map(String::as_str)) {
                            Some(s) => format!("did you mean `image.{s}.id`?"),
                            None => "refer to an image defined here as image.BUILD.TYPE.NAME.id (or image.TYPE.NAME.id for an unnamed build)".to_owned(),
                        };
                        self.diags.push(
                            Diagnostic::error(format!("reference to unknown image `{addr}`"))
                                .at(Some(loc.clone()))
                                .hint(hint),
                        );
                    } else if addr == image.addr {
                        self.diags.push(
                            Diagnostic::error(format!("image `{addr}` refers to itself"))
                                .at(Some(loc.clone()))
                                .hint("an image can only be built from another image"),
                        );
                    } else {
                        refs.entry(addr).or_insert_with(|| loc.clone());
                    }
                }
            }
            image.refs = refs;
        }
        images.sort_by(|a, b| a.addr.cmp(&b.addr));
    }

    /// Resolves every variable's value in precedence order.
    fn resolve_variables(
        &mut self,
        variables: &BTreeMap<String, VariableDef>,
        options: &LoadOptions,
    ) -> BTreeMap<String, hcl::Value> {
        let mut raw: BTreeMap<String, (RawValue, Option<SourceLoc>)> = BTreeMap::new();

        // 1. defaults (may call env()).
        for (name, def) in variables {
            if let Some(default) = &def.default {
                let env = functions::FunctionEnv {
                    base_dir: self.def_dir.clone(),
                    allow_env: true,
                    clock: functions::Clock::Real,
                };
                let ctx = eval::base_context(&self.def_dir);
                let (result, _) =
                    functions::with_env(env, || functions::evaluate(&default.expr, &ctx));
                match result {
                    Ok(v) => {
                        raw.insert(
                            name.clone(),
                            (RawValue::Value(v), Some(default.loc.clone())),
                        );
                    }
                    Err(e) => self.error(
                        &default.loc,
                        format!(
                            "cannot evaluate the default of variable `{name}`: {}",
                            eval::describe_error(&e, &default.text)
                        ),
                        "a default may use functions and env(), but not other variables or locals",
                    ),
                }
            }
        }
        // 2. environment: PKR_VAR_x, then IMGFORM_VAR_x (imgform's own wins).
        for prefix in ["PKR_VAR_", "IMGFORM_VAR_"] {
            for (key, value) in &options.env {
                if let Some(name) = key.strip_prefix(prefix) {
                    if variables.contains_key(name) {
                        raw.insert(name.to_owned(), (RawValue::Text(value.clone()), None));
                    }
                }
            }
        }
        // 3. *.auto.pkrvars.hcl (and .json) in name order, then --var-file.
        let mut var_files: Vec<PathBuf> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.def_dir) {
            let mut autos: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.ends_with(".auto.pkrvars.hcl") || n.ends_with(".auto.pkrvars.json")
                })
                .collect();
            autos.sort();
            var_files.extend(autos);
        }
        var_files.extend(options.var_files.iter().cloned());
        for path in var_files {
            let display = self.display(&path);
            let file = match parse::parse_file(&path, &display) {
                Ok(f) => f,
                Err(d) => {
                    self.diags.push(d);
                    continue;
                }
            };
            for block in &file.blocks {
                self.error(
                    &block.loc,
                    format!("unexpected block `{}` in a variable file", block.kind),
                    "variable files hold only `name = value` attributes",
                );
            }
            for attr in &file.attrs {
                if !variables.contains_key(&attr.name) {
                    let hint = hint_for(
                        &attr.name,
                        variables.keys().map(String::as_str),
                        "declare it with a `variable` block or remove it",
                    );
                    self.diags.push(
                        Diagnostic::warning(format!(
                            "value for undeclared variable `{}`",
                            attr.name
                        ))
                        .at(Some(attr.loc.clone()))
                        .hint(hint),
                    );
                    continue;
                }
                let ctx = eval::base_context(&self.def_dir);
                let env = functions::FunctionEnv {
                    base_dir: self.def_dir.clone(),
                    allow_env: false,
                    clock: functions::Clock::Real,
                };
                let (result, _) =
                    functions::with_env(env, || functions::evaluate(&attr.expr, &ctx));
                match result {
                    Ok(v) => {
                        raw.insert(
                            attr.name.clone(),
                            (RawValue::Value(v), Some(attr.loc.clone())),
                        );
                    }
                    Err(e) => self.error(
                        &attr.loc,
                        format!(
                            "cannot evaluate `{}`: {}",
                            attr.name,
                            eval::describe_error(&e, &attr.text)
                        ),
                        "variable files hold literal values",
                    ),
                }
            }
        }
        // 4. --var NAME=VALUE.
        for item in &options.vars {
            let Some((name, value)) = item.split_once('=') else {
                self.diags.push(
                    Diagnostic::error(format!("--var `{item}` is not NAME=VALUE"))
                        .hint("write --var region=eu-west-1"),
                );
                continue;
            };
            let name = name.trim();
            if !variables.contains_key(name) {
                let hint = hint_for(
                    name,
                    variables.keys().map(String::as_str),
                    "declare it with a `variable` block first",
                );
                self.diags.push(
                    Diagnostic::error(format!("--var sets undeclared variable `{name}`"))
                        .hint(hint),
                );
                continue;
            }
            raw.insert(name.to_owned(), (RawValue::Text(value.to_owned()), None));
        }

        // Convert to the declared types.
        let mut values = BTreeMap::new();
        for (name, def) in variables {
            let Some((value, loc)) = raw.remove(name) else {
                self.error(
                    &def.loc,
                    format!("variable `{name}` has no value"),
                    format!("set it with --var {name}=..., a *.auto.pkrvars.hcl file, PKR_VAR_{name}, or give it a default"),
                );
                continue;
            };
            let value = match value {
                RawValue::Value(v) => v,
                RawValue::Text(text)
                    if types::wants_expression(&def.ty)
                        || def.ty == TypeExpr::Any && looks_like_collection(&text) =>
                {
                    match hcl::edit::parser::parse_expr(&text) {
                        Ok(expr) => {
                            let ctx = eval::base_context(&self.def_dir);
                            match functions::evaluate(&hcl::Expression::from(expr), &ctx) {
                                Ok(v) => v,
                                Err(e) => {
                                    self.diags.push(Diagnostic::error(format!("cannot read the value of `{name}`: {}", eval::describe_error(&e, &text))).hint(format!("`{name}` is {}; write it in HCL syntax, e.g. [\"a\", \"b\"] or {{ k = \"v\" }}", def.ty)));
                                    continue;
                                }
                            }
                        }
                        Err(e) => {
                            self.diags.push(Diagnostic::error(format!("cannot parse the value of `{name}`: {}", e.message())).hint(format!("`{name}` is {}; write it in HCL syntax, e.g. [\"a\", \"b\"] or {{ k = \"v\" }}", def.ty)));
                            continue;
                        }
                    }
                }
                RawValue::Text(text) => hcl::Value::String(text),
            };
            match types::convert(value, &def.ty) {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                Err(e) => {
                    let at = loc.unwrap_or_else(|| def.loc.clone());
                    self.error(
                        &at,
                        format!("invalid value for variable `{name}`: {e}"),
                        format!("`{name}` is declared as {}", def.ty),
                    );
                }
            }
        }
        values
    }
}

/// Reads a `variable "NAME" { ... }` block (also used by modules).
pub(crate) fn variable_def(block: &RawBlock, diags: &mut Vec<Diagnostic>) -> Option<VariableDef> {
    let mut error = |loc: &SourceLoc, summary: String, hint: &str| {
        diags.push(Diagnostic::error(summary).at(Some(loc.clone())).hint(hint));
    };
    let [name] = block.labels.as_slice() else {
        error(
            &block.loc,
            "a variable block needs exactly one label: its name".to_owned(),
            "write `variable \"region\" { default = \"eu-west-1\" }`",
        );
        return None;
    };
    let mut def = VariableDef {
        name: name.clone(),
        ty: TypeExpr::Any,
        default: None,
        description: None,
        sensitive: false,
        validations: Vec::new(),
        loc: block.loc.clone(),
    };
    for attr in &block.attrs {
        match attr.name.as_str() {
            "type" => match types::parse_type(&attr.expr) {
                Ok(ty) => def.ty = ty,
                Err(e) => error(&attr.loc, format!("invalid type for variable `{name}`: {e}"), "types are string, number, bool, list(T), set(T), map(T), object({...}), tuple([...]) or any"),
            },
            "default" => def.default = Some(attr.clone()),
            "description" => def.description = literal_string(&attr.expr),
            "sensitive" => match attr.expr {
                hcl::Expression::Bool(b) => def.sensitive = b,
                _ => error(&attr.loc, "`sensitive` must be true or false".to_owned(), "write `sensitive = true`"),
            },
            "nullable" => {}
            other => {
                let hint = hint_for(other, VARIABLE_ATTRS.iter().copied(), "a variable takes type, default, description, sensitive and validation blocks");
                error(&attr.loc, format!("unknown attribute `{other}` in variable `{name}`"), &hint);
            }
        }
    }
    for inner in &block.blocks {
        if inner.kind == "validation" {
            if inner.attr("condition").is_none() || inner.attr("error_message").is_none() {
                error(
                    &inner.loc,
                    "a validation block needs `condition` and `error_message`".to_owned(),
                    "write `validation { condition = length(var.x) > 0  error_message = \"...\" }`",
                );
            } else {
                def.validations.push(inner.clone());
            }
        } else {
            error(
                &inner.loc,
                format!("unknown block `{}` in variable `{name}`", inner.kind),
                "a variable holds only validation blocks",
            );
        }
    }
    Some(def)
}

enum RawValue {
    Value(hcl::Value),
    Text(String),
}

fn looks_like_collection(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('[') || t.starts_with('{')
}

fn hint_for<'a>(name: &str, candidates: impl Iterator<Item = &'a str>, fallback: &str) -> String {
    match closest(name, candidates) {
        Some(s) => format!("did you mean `{s}`?"),
        None => fallback.to_owned(),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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

fn split_source_ref(s: &str) -> Option<(String, String)> {
    let s = s.strip_prefix("source.").unwrap_or(s);
    let (t, n) = s.split_once('.')?;
    (is_name(t) && is_name(n)).then(|| (t.to_owned(), n.to_owned()))
}

/// `sources = ["source.null.a", source.null.b]`.
fn source_list(expr: &hcl::Expression) -> Result<Vec<(String, String)>, String> {
    let hcl::Expression::Array(items) = expr else {
        return Err("`sources` must be a list".into());
    };
    let mut out = Vec::new();
    for item in items {
        let text = match item {
            hcl::Expression::Traversal(_) => hcl::format::to_string(item).unwrap_or_default(),
            other => literal_string(other).ok_or_else(|| {
                "each entry of `sources` must be a literal \"source.TYPE.NAME\"".to_owned()
            })?,
        };
        let pair = split_source_ref(text.trim()).ok_or_else(|| {
            format!("`{text}` is not a source reference like \"source.null.example\"")
        })?;
        out.push(pair);
    }
    Ok(out)
}

/// Packer's `only`/`except`: lists of source names (`TYPE.NAME`, with the
/// in-build name), matched here statically.
fn provisioner_applies(
    block: &RawBlock,
    source_type: &str,
    source_name: &str,
    build: Option<&str>,
) -> bool {
    let names = [
        format!("{source_type}.{source_name}"),
        format!("source.{source_type}.{source_name}"),
        build
            .map(|b| format!("{b}.{source_type}.{source_name}"))
            .unwrap_or_default(),
        source_name.to_owned(),
    ];
    let listed = |attr: &str| -> Option<Vec<String>> {
        let attr = block.attr(attr)?;
        match &attr.expr {
            hcl::Expression::Array(items) => {
                Some(items.iter().filter_map(literal_string).collect())
            }
            _ => None,
        }
    };
    if let Some(only) = listed("only") {
        if !only.iter().any(|o| names.contains(o)) {
            return false;
        }
    }
    if let Some(except) = listed("except") {
        if except.iter().any(|o| names.contains(o)) {
            return false;
        }
    }
    true
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
