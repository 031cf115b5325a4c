//! The loader: parsed definition files in, a [`Project`] out.
//!
//! It owns the top-level blocks (`packer`, `variable`/`variables`,
//! `locals`/`local`, `source`, `build`, `data`, `backend`), the checks of
//! source and provisioner bodies against their kind's schema, and the checks
//! of the expanded images (duplicate addresses, `image.<ADDR>.id`
//! references). Builds are expanded in [`super::build`], variables resolved
//! in [`super::variables`]; both are further `impl Loader` blocks.
//!
//! Invariants: every problem is pushed to `diags` and loading goes on, so
//! one run reports them all; the order they are pushed in is the order users
//! see them (tests snapshot it). Callers must not take `diags` as errors
//! only — notes and warnings land there too — and must not hand out a
//! [`Project`] when any of them is an error (see [`super::load`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::data::{self, DataDef};
use super::module::ProvisionerDef;
use super::parse::{RawAttr, RawBlock, RawFile};
use super::types::TypeExpr;
use super::variables::variable_def;
use super::{
    backend, functions, hint_for, image_refs_in, scope, BackendConfig, ImageDef, LoadOptions,
    LocalDef, Project, VariableDef,
};
use hcl::eval::Context;

use super::dynamic;
use crate::addr::ImageAddr;
use crate::diag::{closest, Diagnostic, SourceLoc};
use crate::schema::Schema;
use crate::{drivers, provision};

/// Reads definition files into a [`Project`], collecting diagnostics.
pub(super) struct Loader {
    /// The current directory: relative paths resolve against it.
    pub(super) def_dir: PathBuf,
    /// The templates' folder.
    pub(super) template_dir: PathBuf,
    /// One template file was named (no `*.auto.pkrvars.hcl` then).
    pub(super) single_file: bool,
    /// `path.root`.
    pub(super) root: String,
    /// The template folder as the user wrote it: file names are shown under it.
    pub(super) display_base: PathBuf,
    /// `var.*`, `local.*`, `path.*` and the functions before any image
    /// exists, when something needs them at load time (`dynamic` blocks, a
    /// build's `name` or `sources` written as an expression).
    pub(super) static_scope: Option<Context<'static>>,
    /// What `data.*` holds in [`Loader::static_scope`] (placeholders on a
    /// first load).
    pub(super) static_data: Option<data::DataValues>,
    pub(super) diags: Vec<Diagnostic>,
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

impl Loader {
    pub(super) fn display(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.template_dir) {
            Ok(rel) if self.display_base != Path::new(".") => self.display_base.join(rel),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => path.to_path_buf(),
        }
    }

    pub(super) fn error(
        &mut self,
        loc: &SourceLoc,
        summary: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(summary).at(Some(loc.clone())).hint(hint));
    }

    /// Reads every file's top-level blocks, then resolves variables,
    /// expands builds, checks the images and evaluates locals once (for
    /// their errors).
    pub(super) fn interpret(
        &mut self,
        files: &[RawFile],
        options: &LoadOptions,
    ) -> Option<Project> {
        let mut variables: BTreeMap<String, VariableDef> = BTreeMap::new();
        let mut locals: Vec<LocalDef> = Vec::new();
        let mut sources: BTreeMap<(String, String), RawBlock> = BTreeMap::new();
        let mut builds: Vec<RawBlock> = Vec::new();
        let mut backend: Option<BackendConfig> = None;
        let mut data: Vec<DataDef> = Vec::new();

        let expanded;
        let mut static_uses_data = false;
        let files = if dynamic::any_dynamic(files) || builds_need_scope(files) {
            let (ctx, data_values) = self.static_scope(files, options);
            // What depends on a data source is unknown until it is looked
            // up: a dynamic block over one expands to nothing until then.
            let unknown = |text: &str| data_values.placeholders && data_values.may_be_unknown(text);
            static_uses_data = static_texts(files)
                .into_iter()
                .any(|t| data_values.may_be_unknown(t));
            let data_values = data_values.clone();
            let files = if dynamic::any_dynamic(files) {
                let mut diags = Vec::new();
                let (out, _) = functions::with_env(self.function_env(), || {
                    files
                        .iter()
                        .map(|f| dynamic::expand_file(f, &ctx, &unknown, &mut diags))
                        .collect::<Vec<_>>()
                });
                self.diags.extend(diags);
                expanded = out;
                &expanded[..]
            } else {
                files
            };
            self.static_scope = Some(ctx);
            self.static_data = Some(data_values);
            files
        } else {
            files
        };

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
                    "variables" => self.legacy_variables_block(block, &mut variables),
                    "locals" => self.locals_block(block, &mut locals),
                    "local" => self.local_block(block, &mut locals),
                    "source" => self.source_block(block, &mut sources),
                    "build" => builds.push(block.clone()),
                    "backend" => match backend::backend_block(block, backend.as_ref()) {
                        Ok(config) => backend = Some(config),
                        Err(diags) => self.diags.extend(diags),
                    },
                    "data" => self.data_block(block, &mut data),
                    other => {
                        let hint = match closest(other, TOP_LEVEL_BLOCKS.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`? Definition files hold packer, variable, locals, local, source, data and build blocks"),
                            None => "definition files hold packer, variable, locals, local, source, data and build blocks".to_owned(),
                        };
                        self.error(&block.loc, format!("unknown block type `{other}`"), hint);
                    }
                }
            }
        }

        self.check_data_refs(files, &data);
        let var_values = self.resolve_variables(&variables, options);
        let mut images = Vec::new();
        for build in &builds {
            self.expand_build(build, &sources, &mut images);
        }
        // Templates that declare things but no build were given in place of
        // the folder with the builds (a variables folder, one file of
        // several): say so rather than plan nothing. Templates emptied on
        // purpose (to destroy what was built) declare nothing.
        let declares_something = !variables.is_empty() || !locals.is_empty() || !sources.is_empty();
        if builds.is_empty() && declares_something && !self.diags.iter().any(Diagnostic::is_error) {
            let mut found = vec![format!("{} variable(s)", variables.len())];
            found.push(format!("{} local(s)", locals.len()));
            found.push(format!("{} source(s)", sources.len()));
            self.diags.push(
                Diagnostic::error(format!(
                    "no image is defined: the templates hold {} and no build block",
                    found.join(", ")
                ))
                .hint("an image is a build's source: add `build { sources = [\"source.TYPE.NAME\"] }`; with variables in one folder and builds in another, pass the folder of the builds"),
            );
        }
        self.check_images(&mut images);
        images.shrink_to_fit();

        let data_values = data::placeholders(&data, &locals);
        let mut project = Project {
            def_dir: self.def_dir.clone(),
            template_dir: self.template_dir.clone(),
            root: self.root.clone(),
            variables,
            var_values,
            locals,
            images,
            warnings: Vec::new(),
            files: Vec::new(),
            backend,
            locals_cache: scope::LocalsCache::default(),
            data_values,
            data,
            static_uses_data,
        };
        // Locals are evaluated once here so their errors are reported at load
        // time, whether or not any image uses them.
        if let Err(diags) = scope::evaluate_locals(&project, functions::Clock::Real) {
            self.diags.extend(diags);
        } else {
            scope::validate_variables(&project, &mut self.diags);
        }
        project.locals_cache = scope::LocalsCache::default();
        Some(project)
    }

    /// Whether an expression evaluated while loading (its source text)
    /// waits for a data source that is not looked up yet.
    pub(super) fn unknown_at_load(&self, text: &str) -> bool {
        self.static_data
            .as_ref()
            .is_some_and(|d| d.placeholders && d.may_be_unknown(text))
    }

    /// What functions see at load time: paths under the current directory,
    /// no `env()`, the real clock.
    pub(super) fn function_env(&self) -> functions::FunctionEnv {
        functions::FunctionEnv {
            base_dir: self.def_dir.clone(),
            allow_env: false,
            clock: functions::Clock::Real,
        }
    }

    /// The scope of load-time expressions: the variables' values and the
    /// locals (those that can be evaluated with no image), with the
    /// functions and `path.*`. Problems found on the way are dropped: the
    /// main pass reports each where it is.
    fn static_scope(
        &mut self,
        files: &[RawFile],
        options: &LoadOptions,
    ) -> (Context<'static>, data::DataValues) {
        let reported = std::mem::take(&mut self.diags);
        let mut variables: BTreeMap<String, VariableDef> = BTreeMap::new();
        let mut locals: Vec<LocalDef> = Vec::new();
        let mut data_defs: Vec<DataDef> = Vec::new();
        for block in files.iter().flat_map(|f| &f.blocks) {
            match block.kind.as_str() {
                "variable" => self.variable_block(block, &mut variables),
                "variables" => self.legacy_variables_block(block, &mut variables),
                "locals" => self.locals_block(block, &mut locals),
                "local" => self.local_block(block, &mut locals),
                "data" => self.data_block(block, &mut data_defs),
                _ => {}
            }
        }
        let var_values = self.resolve_variables(&variables, options);
        // Data sources are looked up after loading: on the first load
        // `data.*` holds placeholders (what depends on one is unknown); the
        // pipeline loads again with the answers when this scope used any.
        let mut data_values = data::placeholders(&data_defs, &locals);
        data_values.placeholders = true;
        let mut scratch = Project {
            def_dir: self.def_dir.clone(),
            template_dir: self.template_dir.clone(),
            root: self.root.clone(),
            variables,
            var_values,
            locals,
            images: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
            backend: None,
            locals_cache: scope::LocalsCache::default(),
            data: data_defs,
            data_values,
            static_uses_data: false,
        };
        if let Some(answers) = &options.data {
            scratch.set_data(answers);
        }
        let local_values = scope::evaluate_locals(&scratch, functions::Clock::Real)
            .map(|l| l.values)
            .unwrap_or_default();
        self.diags = reported;
        let mut ctx = scope::base_context(&self.root);
        ctx.declare_var("var", scope::var_object(&scratch));
        ctx.declare_var("local", hcl::Value::Object(local_values));
        ctx.declare_var("data", scratch.data_values.object());
        (ctx, scratch.data_values)
    }

    /// Legacy form: variables { name = default }.
    fn legacy_variables_block(
        &mut self,
        block: &RawBlock,
        variables: &mut BTreeMap<String, VariableDef>,
    ) {
        for attr in &block.attrs {
            self.insert_variable(
                variables,
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

    fn locals_block(&mut self, block: &RawBlock, locals: &mut Vec<LocalDef>) {
        for attr in &block.attrs {
            self.insert_local(locals, attr.clone(), false);
        }
        for inner in &block.blocks {
            self.error(
                &inner.loc,
                format!("unexpected block `{}` in locals", inner.kind),
                "locals hold only `name = expression` attributes",
            );
        }
    }

    fn source_block(
        &mut self,
        block: &RawBlock,
        sources: &mut BTreeMap<(String, String), RawBlock>,
    ) {
        if block.labels.len() != 2 {
            self.error(
                &block.loc,
                "a source block needs two labels: type and name",
                "write `source \"null\" \"example\" { ... }`",
            );
            return;
        }
        let key = (block.labels[0].clone(), block.labels[1].clone());
        if let Some(prev) = sources.get(&key) {
            let prev_loc = prev.loc.clone();
            self.error(
                &block.loc,
                format!("duplicate source `source.{}.{}`", key.0, key.1),
                format!("it is already defined at {prev_loc}; give one of them another name"),
            );
            return;
        }
        self.check_source_schema(block);
        sources.insert(key, block.clone());
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

    pub(super) fn check_body_schema(&mut self, block: &RawBlock, schema: &Schema, what: &str) {
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

    /// Checks a provisioner block against its schema; false if unusable.
    pub(super) fn check_provisioner(&mut self, block: &RawBlock) -> bool {
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
}

/// Whether a build's `name`, `description` or `sources` is an expression
/// that needs variables or locals (a literal needs nothing).
/// The source texts of what is evaluated while loading: each dynamic
/// block's `for_each` and `labels`, each build's `name`, `description` and
/// `sources`.
fn static_texts(files: &[RawFile]) -> Vec<&str> {
    fn walk<'a>(blocks: &'a [RawBlock], out: &mut Vec<&'a str>) {
        for b in blocks {
            let names: &[&str] = match b.kind.as_str() {
                "dynamic" => &["for_each", "labels"],
                "build" => &["name", "description", "sources"],
                _ => &[],
            };
            out.extend(
                b.attrs
                    .iter()
                    .filter(|a| names.contains(&a.name.as_str()))
                    .map(|a| a.text.as_str()),
            );
            walk(&b.blocks, out);
        }
    }
    let mut out = Vec::new();
    for f in files {
        walk(&f.blocks, &mut out);
    }
    out
}

fn builds_need_scope(files: &[RawFile]) -> bool {
    let builds = || {
        files
            .iter()
            .flat_map(|f| &f.blocks)
            .filter(|b| b.kind == "build")
    };
    let expressions = builds()
        .flat_map(|b| &b.attrs)
        .any(|a| match a.name.as_str() {
            "name" | "description" => super::literal_string(&a.expr).is_none(),
            "sources" => super::build::source_list(&a.expr).is_err(),
            _ => false,
        });
    // A legacy JSON builder's templated `name` (`{{user `build_name`}}`).
    let templated_names = builds()
        .flat_map(|b| &b.blocks)
        .filter(|b| b.kind == "source")
        .filter_map(|b| b.attr("name"))
        .any(|a| super::literal_string(&a.expr).is_some_and(|n| n.contains("{{")));
    expressions || templated_names
}
