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

use super::loader::Loader;
use super::module::{ModuleLoader, ProvisionerDef};
use super::parse::RawBlock;
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

impl Loader {
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
