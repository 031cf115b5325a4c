//! Build expansion: one `build` block in, one [`ImageDef`] per source out.
//!
//! A build names its sources (`sources = [...]` and in-build `source`
//! blocks, which may rename a source and override its attributes) and holds
//! the provisioners, modules, tests and post-processors its images share;
//! `only`/`except` pick which of them apply to which source, statically.
//!
//! Invariants: images come out in the build's source order; every problem is
//! pushed to the loader's diagnostics and expansion goes on with the rest.
//! Callers must not expect `refs` to be filled: the loader's `check_images`
//! finds the `image.<ADDR>.id` references once every build is expanded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::loader::Loader;
use super::module::{ModuleLoader, ProvisionerDef};
use super::parse::{RawAttr, RawBlock};
use super::{hint_for, literal_string, ImageDef};
use crate::addr::ImageAddr;
use crate::diag::{closest, Diagnostic, SourceLoc};
use crate::drivers;

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

/// What a build gives every one of its images, before `only`/`except`.
#[derive(Default)]
struct BuildShared {
    /// `name = "..."`: the first part of the images' addresses.
    name: Option<String>,
    /// `keep_previous` and `max_age`, evaluated with each image.
    attrs: Vec<RawAttr>,
    provisioners: Vec<ProvisionerDef>,
    tests: Vec<ProvisionerDef>,
    modules: Vec<String>,
    path_labels: Vec<(PathBuf, String)>,
    /// Each with the sequence it belongs to: a lone `post-processor` block
    /// is a sequence of one, the blocks of one `post-processors` block
    /// share one (Packer's chain: each gets the artifact of the one before).
    post_processors: Vec<(usize, RawBlock)>,
    /// Source settings its modules imply (a DIB `vm` element's disk).
    source_settings: Vec<RawAttr>,
}

/// The sources a build uses, in order: the `sources = [...]` entries, then
/// the in-build `source` blocks.
#[derive(Default)]
struct BuildSources {
    /// (type, name, override block, where)
    entries: Vec<(String, String, Option<RawBlock>, SourceLoc)>,
    /// `sources` was written but is unusable (already reported).
    invalid: bool,
}

impl Loader {
    /// Expands one build into `images`: its attributes, then its blocks,
    /// then one image per source it uses (in that order, so diagnostics
    /// come out in file order within each step).
    pub(super) fn expand_build(
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
        let mut shared = BuildShared::default();
        let mut used = BuildSources::default();
        self.build_attributes(build, &mut shared, &mut used);
        self.build_blocks(build, &mut shared, &mut used);
        if used.entries.is_empty() && !used.invalid {
            self.error(&build.loc, "this build has no sources", "add `sources = [\"source.TYPE.NAME\"]` or an in-build `source \"TYPE.NAME\" { }` block");
        }

        let mut names = Vec::new();
        let mut all_declared = !used.invalid;
        for (t, n, over, loc) in used.entries {
            let Some(source) = self.declared_source(sources, &t, &n, &loc) else {
                all_declared = false;
                continue;
            };
            let (attrs, blocks, name) = self.apply_in_build_source(source, &t, &n, over.as_ref());
            names.push((t.clone(), name.clone()));
            images.push(shared.image(&t, name, attrs, blocks, loc));
        }
        if all_declared {
            self.check_only_except(&shared, &names);
        }
    }

    /// Every name in a provisioner's or post-processor's `only`/`except`
    /// must name one of the build's sources: a misspelt name would
    /// otherwise silently run (or skip) the step everywhere.
    fn check_only_except(&mut self, shared: &BuildShared, sources: &[(String, String)]) {
        let blocks = shared
            .provisioners
            .iter()
            .chain(&shared.tests)
            .map(|p| &p.block)
            .chain(shared.post_processors.iter().map(|(_, b)| b));
        let known: Vec<String> = sources.iter().map(|(t, n)| format!("{t}.{n}")).collect();
        for block in blocks {
            for attr in ["only", "except"].iter().filter_map(|a| block.attr(a)) {
                let entries: Option<Vec<String>> = match &attr.expr {
                    hcl::Expression::Array(items) => items.iter().map(literal_string).collect(),
                    _ => None,
                };
                let Some(entries) = entries else {
                    self.error(
                        &attr.loc,
                        format!("`{}` must be a list of literal source names", attr.name),
                        format!("write `{} = [\"{}\"]`", attr.name, known.join("\", \"")),
                    );
                    continue;
                };
                for entry in entries {
                    let names_it = sources
                        .iter()
                        .any(|(t, n)| source_names(t, n, shared.name.as_deref()).contains(&entry));
                    if names_it {
                        continue;
                    }
                    let hint = match closest(&entry, known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("this build's sources: {}", known.join(", ")),
                    };
                    self.error(
                        &attr.loc,
                        format!(
                            "`{}` names `{entry}`, which is not a source of this build",
                            attr.name
                        ),
                        hint,
                    );
                }
            }
        }
    }

    /// Reads the build's attributes: its name, `sources` and the settings
    /// its images share.
    fn build_attributes(
        &mut self,
        build: &RawBlock,
        shared: &mut BuildShared,
        used: &mut BuildSources,
    ) {
        for attr in &build.attrs {
            match attr.name.as_str() {
                "name" => match self.load_time_string(attr) {
                    // `<data.TYPE.NAME.OUTPUT>` until data sources are
                    // looked up (`validate` shows it so).
                    Some(n) if is_build_name(&n) || self.unknown_at_load(&attr.text) => {
                        shared.name = Some(n)
                    }
                    Some(n) => self.error(
                        &attr.loc,
                        format!("`{n}` is not a usable build name"),
                        "a build name is made of letters, digits, _ and -, in parts joined by dots (`golden`, `cloudimg.deps`)",
                    ),
                    None => {}
                },
                "description" => {
                    self.load_time_string(attr);
                }
                // Known once data sources are looked up: none until then.
                "sources" if self.unknown_at_load(&attr.text) => used.invalid = true,
                "sources" => match self.sources_of(attr) {
                    Ok(list) => used.entries.extend(
                        list.into_iter()
                            .map(|(t, n)| (t, n, None, attr.loc.clone())),
                    ),
                    Err(e) => {
                        used.invalid = true;
                        self.error(&attr.loc, e, "write `sources = [\"source.null.example\"]`, or an expression of variables and locals giving such a list")
                    }
                },
                "keep_previous" | "max_age" => shared.attrs.push(attr.clone()),
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
    }

    /// A build attribute that is a string known at load time: a literal, or
    /// an expression of variables and locals (Packer evaluates a build's
    /// name and description so). `None` after reporting why not.
    fn load_time_string(&mut self, attr: &RawAttr) -> Option<String> {
        if let Some(text) = literal_string(&attr.expr) {
            return Some(text);
        }
        let why = match self.evaluate_at_load_time(attr) {
            Ok(hcl::Value::String(s)) => return Some(s),
            Ok(hcl::Value::Number(n)) => return Some(n.to_string()),
            Ok(other) => format!("it is {}", crate::config::functions::type_name(&other)),
            Err(e) => e,
        };
        self.error(
            &attr.loc,
            format!("the build's `{}` must be a string: {why}", attr.name),
            "it may use variables, locals and functions (not source.* or build.*, which depend on it)",
        );
        None
    }

    /// `sources`: a literal list (`["source.null.a", source.null.b]`) or an
    /// expression of variables and locals giving a list of such strings.
    fn sources_of(&mut self, attr: &RawAttr) -> Result<Vec<(String, String)>, String> {
        let literal = source_list(&attr.expr);
        if literal.is_ok()
            || matches!(&attr.expr, hcl::Expression::Array(items) if items.iter().all(|i| matches!(i, hcl::Expression::Traversal(_) | hcl::Expression::String(_))))
        {
            return literal;
        }
        let items = match self.evaluate_at_load_time(attr)? {
            hcl::Value::Array(items) => items,
            other => {
                return Err(format!(
                    "`sources` must be a list, not {}",
                    crate::config::functions::type_name(&other)
                ))
            }
        };
        items
            .iter()
            .map(|item| {
                let text = item.as_str().unwrap_or_default();
                split_source_ref(text.trim()).ok_or_else(|| {
                    format!("`{item}` is not a source reference like \"source.null.example\"")
                })
            })
            .collect()
    }

    /// A legacy JSON builder's `name` holding Packer's template engine,
    /// rendered with the variables as Packer 1.x rendered build names. A
    /// name must be the same on every run: the clock functions are refused.
    fn render_name(&mut self, text: &str) -> Result<String, String> {
        let ctx = self
            .static_scope
            .clone()
            .unwrap_or_else(|| super::scope::base_context(&self.root));
        let env = self.function_env();
        let (result, trace) =
            crate::config::functions::with_env(env, || super::packer_template::render(text, &ctx));
        if trace.nondeterministic {
            return Err(
                "it changes on every run (timestamp, uuid), and an image's address must not"
                    .to_owned(),
            );
        }
        result.map_err(|e| format!("{}: {}", e.action, e.message))
    }

    fn evaluate_at_load_time(&mut self, attr: &RawAttr) -> Result<hcl::Value, String> {
        let ctx = self
            .static_scope
            .clone()
            .unwrap_or_else(|| super::scope::base_context(&self.root));
        let env = self.function_env();
        let (result, _) = crate::config::functions::with_env(env, || {
            crate::config::functions::evaluate(&attr.expr, &ctx)
        });
        result.map_err(|e| super::scope::describe_error(&e, &attr.text))
    }

    /// Collects the build's blocks: in-build sources, provisioners, modules,
    /// tests and post-processors.
    fn build_blocks(
        &mut self,
        build: &RawBlock,
        shared: &mut BuildShared,
        used: &mut BuildSources,
    ) {
        let mut module_loader_seen = BTreeSet::new();
        for inner in &build.blocks {
            match inner.kind.as_str() {
                "source" => {
                    let Some((t, n)) = inner.labels.first().and_then(|l| split_source_ref(l))
                    else {
                        self.error(&inner.loc, "an in-build source block needs one label: `TYPE.NAME` of a top-level source", "write `source \"null.example\" { name = \"renamed\" }`");
                        continue;
                    };
                    used.entries
                        .push((t, n, Some(inner.clone()), inner.loc.clone()));
                }
                "provisioner" => {
                    if self.check_provisioner(inner) {
                        shared
                            .provisioners
                            .push(ProvisionerDef::plain(inner.clone()));
                    }
                }
                "module" => self.module_block(inner, &mut module_loader_seen, shared),
                "post-processor" => {
                    let chain = shared.chains();
                    shared.post_processors.push((chain, inner.clone()));
                }
                "post-processors" => {
                    let chain = shared.chains();
                    shared
                        .post_processors
                        .extend(inner.blocks.iter().map(|b| (chain, b.clone())));
                }
                "error-cleanup-provisioner" => {}
                "hcp_packer_registry" => self.diags.push(
                    Diagnostic::note(
                        "hcp_packer_registry is ignored: imgform records images in its own state",
                    )
                    .at(Some(inner.loc.clone())),
                ),
                "test" => self.test_block(inner, shared),
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
    }

    /// A `module` block: its provisioners (dependencies first) and folders.
    /// `module_loader_seen` is shared by the build's module blocks, so a
    /// module is applied once per build.
    fn module_block(
        &mut self,
        inner: &RawBlock,
        module_loader_seen: &mut BTreeSet<PathBuf>,
        shared: &mut BuildShared,
    ) {
        let mut loader = ModuleLoader {
            def_dir: &self.def_dir,
            diags: &mut self.diags,
            seen: std::mem::take(module_loader_seen),
            labels: Vec::new(),
        };
        let expanded = loader.expand(inner);
        *module_loader_seen = loader.seen;
        for label in loader.labels {
            if !shared.path_labels.contains(&label) {
                shared.path_labels.push(label);
            }
        }
        for p in expanded.provisioners {
            if self.check_provisioner(&p.block) {
                shared.provisioners.push(p);
            }
        }
        shared.modules.extend(expanded.dirs);
        shared.source_settings.extend(expanded.source_settings);
    }

    /// A `test` block: provisioners run against the finished image.
    fn test_block(&mut self, inner: &RawBlock, shared: &mut BuildShared) {
        for attr in &inner.attrs {
            self.error(
                &attr.loc,
                format!("unknown attribute `{}` in a test block", attr.name),
                "a test block holds provisioner blocks that run against the finished image",
            );
        }
        for p in &inner.blocks {
            if p.kind != "provisioner" {
                self.error(
                    &p.loc,
                    format!("unexpected block `{}` in a test block", p.kind),
                    "a test block holds provisioner blocks",
                );
            } else if self.check_provisioner(p) {
                shared.tests.push(ProvisionerDef::plain(p.clone()));
            }
        }
    }

    /// The top-level `source "t" "n"` block, or an error at `loc`.
    fn declared_source<'s>(
        &mut self,
        sources: &'s BTreeMap<(String, String), RawBlock>,
        t: &str,
        n: &str,
        loc: &SourceLoc,
    ) -> Option<&'s RawBlock> {
        let Some(source) = sources.get(&(t.to_owned(), n.to_owned())) else {
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
                loc,
                format!("build refers to undeclared source `{wanted}`"),
                hint,
            );
            return None;
        };
        Some(source)
    }

    /// The source's attributes and blocks with the in-build `source` block's
    /// on top (a block replaces all blocks of its kind), and the image's
    /// source name (`name = ...` renames it).
    fn apply_in_build_source(
        &mut self,
        source: &RawBlock,
        t: &str,
        n: &str,
        over: Option<&RawBlock>,
    ) -> (Vec<RawAttr>, Vec<RawBlock>, String) {
        let mut attrs = source.attrs.clone();
        let mut blocks = source.blocks.clone();
        let mut name = n.to_owned();
        if let Some(over) = over {
            let schema = drivers::kind_of(t).map(|k| &k.schema);
            for attr in &over.attrs {
                if attr.name == "name" {
                    match literal_string(&attr.expr) {
                        Some(v) if is_name(&v) => name = v,
                        Some(v) if v.contains("{{") => match self.render_name(&v) {
                            Ok(v) if is_name(&v) => name = v,
                            Ok(v) => self.error(
                                &attr.loc,
                                format!("the builder name `{v}` (rendered from `{}`) is not a usable name", attr.text),
                                "a name is made of letters, digits, _ and -",
                            ),
                            Err(e) => self.error(
                                &attr.loc,
                                format!("cannot render the builder name: {e}"),
                                "a legacy builder's name may use {{user `x`}} and Packer's other functions, rendered with the variables",
                            ),
                        },
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
        (attrs, blocks, name)
    }
}

impl BuildShared {
    /// The number of post-processor sequences so far: the next one's index.
    fn chains(&self) -> usize {
        self.post_processors
            .last()
            .map_or(0, |(chain, _)| chain + 1)
    }

    /// The image of source `t`.`name`: the build's provisioners, tests and
    /// post-processors that apply to it, with the merged source.
    fn image(
        &self,
        t: &str,
        name: String,
        mut attrs: Vec<RawAttr>,
        blocks: Vec<RawBlock>,
        loc: SourceLoc,
    ) -> ImageDef {
        // What the modules imply, where the builder takes it and the source
        // does not say otherwise.
        let schema = crate::drivers::kind_of(t).map(|k| &k.schema);
        for setting in &self.source_settings {
            let known = schema.is_some_and(|s| s.attr(&setting.name).is_some());
            if known && !attrs.iter().any(|a| a.name == setting.name) {
                attrs.push(setting.clone());
            }
        }
        let build_name = &self.name;
        let addr = ImageAddr::new(build_name.as_deref(), t, &name);
        let applies = |p: &RawBlock| provisioner_applies(p, t, &name, build_name.as_deref());
        ImageDef {
            addr,
            build_name: build_name.clone(),
            builder: t.to_owned(),
            source_name: name.clone(),
            attrs,
            blocks,
            provisioners: self
                .provisioners
                .iter()
                .filter(|p| applies(&p.block))
                .cloned()
                .collect(),
            tests: self
                .tests
                .iter()
                .filter(|p| applies(&p.block))
                .cloned()
                .collect(),
            modules: self.modules.clone(),
            path_labels: self.path_labels.clone(),
            post_processors: self
                .post_processors
                .iter()
                .filter(|(_, p)| applies(p))
                .cloned()
                .collect(),
            build_attrs: self.attrs.clone(),
            refs: BTreeMap::new(),
            // Where the image is declared: the build's `sources` entry
            // or its in-build source block.
            loc,
        }
    }
}

/// A build name: names joined by dots (`golden`, `cloudimg.deps`). A source
/// type and name never hold a dot, so in an address the last two parts are
/// always the source's and the rest is the build's.
fn is_build_name(s: &str) -> bool {
    s.split('.').all(is_name)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn split_source_ref(s: &str) -> Option<(String, String)> {
    let s = s.strip_prefix("source.").unwrap_or(s);
    let (t, n) = s.split_once('.')?;
    (is_name(t) && is_name(n)).then(|| (t.to_owned(), n.to_owned()))
}

/// `sources = ["source.null.a", source.null.b]`.
pub(super) fn source_list(expr: &hcl::Expression) -> Result<Vec<(String, String)>, String> {
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

/// The names `only`/`except` may use for a build's source.
fn source_names(source_type: &str, source_name: &str, build: Option<&str>) -> Vec<String> {
    let mut names = vec![
        format!("{source_type}.{source_name}"),
        format!("source.{source_type}.{source_name}"),
        source_name.to_owned(),
    ];
    if let Some(b) = build {
        names.push(format!("{b}.{source_type}.{source_name}"));
    }
    names
}

/// Packer's `only`/`except`: lists of source names (`TYPE.NAME`, with the
/// in-build name), matched here statically.
fn provisioner_applies(
    block: &RawBlock,
    source_type: &str,
    source_name: &str,
    build: Option<&str>,
) -> bool {
    let names = source_names(source_type, source_name, build);
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
