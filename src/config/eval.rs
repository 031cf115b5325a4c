//! Evaluation of one image at a time, into an [`ImageSpec`].
//!
//! An image is evaluated in the project's scope (`scope`: the base
//! context, `var.*`, `local.*`) plus its own names (`source.*`, `build.*`,
//! `image.<ADDR>.id` of its parents). Every expression is evaluated with
//! the project's function library inside [`functions::with_env`], so the
//! files functions read are recorded as inputs. Non-determinism is found by
//! evaluating a second and third time with two different fake clocks (only
//! when `timestamp()`/`uuidv4()` was called at all): values that differ are
//! allowed in build settings (they are taken from the real evaluation) and
//! are an error in inputs, which must not change from run to run or the
//! content address would never be stable.
//!
//! Invariants: the errors of one evaluation pass are all collected, each at
//! its place; attributes split by the builder's schema into inputs,
//! settings and secrets. Callers must evaluate parents first and pass a
//! token for every parent in `ImageDef::refs`: a child's values depend on
//! its parents' content addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use hcl::eval::Context;
use regex::Regex;
use serde_json::Value as Json;

use super::functions::{self, Clock, FunctionEnv};
use super::packer_template;
use super::parse::{RawAttr, RawBlock};
use super::scope::{hint_for_error, var_object, LOCAL_REF};
use super::{ImageDef, Project};
use crate::addr::ImageAddr;
use crate::diag::{Diagnostic, SourceLoc};
use crate::schema::{BlockSpec, Repeat, Role};
use crate::spec::{self, Attrs, ImageSpec, ProvisionerSpec};
use crate::{drivers, provision};

// Part of the crate's API under `config::eval`; they live in `scope`.
pub use super::scope::{
    base_context, describe_error, evaluate_locals, validate_variables, EvaluatedLocals, LocalsCache,
};

static VAR_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?-u:\b)var\.({})", super::NAME)).expect("valid regex"));

/// One evaluation of an image under one clock, before role checks.
struct Evaluated {
    inputs: Attrs,
    settings: Attrs,
    secrets: Attrs,
    provisioners: Vec<ProvisionerSpec>,
    tests: Vec<ProvisionerSpec>,
    post_processors: Vec<ProvisionerSpec>,
    build_attrs: Attrs,
    files_read: BTreeMap<String, String>,
    nondeterministic: bool,
}

impl Project {
    /// Evaluates one image. `parent_tokens` maps each parent (from
    /// `ImageDef::refs`) to the value `image.<ADDR>.id` takes.
    pub fn evaluate_image(
        &self,
        def: &ImageDef,
        parent_tokens: &BTreeMap<ImageAddr, String>,
    ) -> Result<ImageSpec, Vec<Diagnostic>> {
        let locals = evaluate_locals(self, Clock::Real)?;
        let seeds = self.sensitive_seeds();
        let (real, derived) = functions::sensitivity::track_sensitive(&seeds, || {
            self.evaluate_once(def, parent_tokens, Clock::Real, &locals)
        });
        let real = real?;
        let apply_time_settings = self.apply_time_settings(def, parent_tokens, &locals, &real)?;
        let keep_previous = keep_previous(def, &real)?;
        let max_age = max_age(def, &real)?;
        let mut sensitive = seeds.values;
        sensitive.extend(derived);
        sensitive.sort();
        sensitive.dedup();
        let variables = self.image_variables(def);
        let target = drivers::kind_of(&def.builder)
            .map(|k| (k.target)(&real.settings))
            .unwrap_or_else(crate::addr::TargetAddr::local);
        Ok(ImageSpec {
            addr: def.addr.clone(),
            builder: def.builder.clone(),
            target,
            inputs: real.inputs,
            settings: real.settings,
            secrets: real.secrets,
            provisioners: real.provisioners,
            tests: real.tests,
            modules: def.modules.clone(),
            path_labels: def.path_labels.clone(),
            post_processors: real.post_processors,
            parents: def.refs.keys().cloned().collect(),
            variables,
            files_read: real.files_read,
            apply_time_settings,
            base: None,
            data: BTreeMap::new(),
            keep_previous,
            max_age,
            def_dir: self.def_dir.clone(),
            loc: def.loc.clone(),
            attr_locs: spec_attr_locs(def),
            sensitive_values: sensitive,
        })
    }

    /// The probe-clock check. When the image called timestamp()/uuidv4()
    /// (itself or through a local), it is evaluated again with two fake
    /// clocks: an input that differs is an error; the settings that differ
    /// are returned, to be decided at apply time.
    fn apply_time_settings(
        &self,
        def: &ImageDef,
        parent_tokens: &BTreeMap<ImageAddr, String>,
        locals: &EvaluatedLocals,
        real: &Evaluated,
    ) -> Result<BTreeSet<String>, Vec<Diagnostic>> {
        let uses_nd_local = !locals.nondeterministic.is_empty()
            && image_texts(def).any(|(t, _)| {
                LOCAL_REF
                    .captures_iter(t)
                    .any(|c| locals.nondeterministic.contains(&c[1]))
            });
        let mut apply_time_settings = BTreeSet::new();
        if real.nondeterministic || uses_nd_local {
            let locals_a = evaluate_locals(self, Clock::Probe(1))?;
            let locals_b = evaluate_locals(self, Clock::Probe(2))?;
            let a = self.evaluate_once(def, parent_tokens, Clock::Probe(1), &locals_a)?;
            let b = self.evaluate_once(def, parent_tokens, Clock::Probe(2), &locals_b)?;
            let diags = nondeterministic_inputs(def, &a, &b);
            if !diags.is_empty() {
                return Err(diags);
            }
            for (name, value) in a.settings.iter().chain(&a.secrets) {
                if b.settings.get(name).or_else(|| b.secrets.get(name)) != Some(value) {
                    apply_time_settings.insert(name.clone());
                }
            }
        }
        Ok(apply_time_settings)
    }

    /// Variables that reach the image's inputs, directly or through locals.
    fn image_variables(&self, def: &ImageDef) -> BTreeMap<String, Json> {
        let mut variables = BTreeMap::new();
        for name in self.input_variables(def) {
            if let Some(value) = self.var_values.get(&name) {
                let mut json = serde_json::to_value(value).unwrap_or(Json::Null);
                if self.variables.get(&name).is_some_and(|v| v.sensitive) {
                    json = Json::String(crate::sensitive::redact(&json.to_string()));
                }
                variables.insert(name, json);
            }
        }
        variables
    }

    /// Names of variables referenced by the image's inputs (attributes with
    /// role Input and all provisioner config), following locals.
    fn input_variables(&self, def: &ImageDef) -> BTreeSet<String> {
        let texts = self.input_texts(def);
        let mut vars = BTreeSet::new();
        let mut seen_locals = BTreeSet::new();
        let mut queue: Vec<&str> = texts;
        while let Some(text) = queue.pop() {
            for c in VAR_REF.captures_iter(text) {
                vars.insert(c[1].to_owned());
            }
            for c in LOCAL_REF.captures_iter(text) {
                let name = c[1].to_owned();
                if seen_locals.insert(name.clone()) {
                    if let Some(local) = self.locals.iter().find(|l| l.name == name) {
                        queue.push(&local.attr.text);
                    }
                }
            }
        }
        vars
    }

    /// The source text of the image's inputs: attributes and blocks with
    /// role Input, provisioners' input attributes, module arguments.
    pub(super) fn input_texts<'d>(&self, def: &'d ImageDef) -> Vec<&'d str> {
        let schema = drivers::kind_of(&def.builder).map(|k| &k.schema);
        let role_of = |name: &str| schema.and_then(|s| s.role(name));
        let mut texts: Vec<&str> = def
            .attrs
            .iter()
            .filter(|a| role_of(&a.name) == Some(Role::Input))
            .map(|a| a.text.as_str())
            .collect();
        for block in def
            .blocks
            .iter()
            .filter(|b| role_of(&b.kind) == Some(Role::Input))
        {
            texts.extend(block.texts().into_iter().map(|(t, _)| t));
        }
        for pdef in def.provisioners.iter().chain(&def.tests) {
            if let Some(module) = &pdef.module {
                // Module arguments are evaluated in the image's scope.
                texts.extend(module.args.iter().map(|a| a.text.as_str()));
                continue;
            }
            let block = &pdef.block;
            let pschema = block
                .labels
                .first()
                .and_then(|k| provision::kind_of(k))
                .map(|k| &k.schema);
            for attr in &block.attrs {
                let role = pschema.and_then(|s| s.attr(&attr.name)).map(|a| a.role);
                if role == Some(Role::Input) {
                    texts.push(&attr.text);
                }
            }
        }
        texts
    }

    fn context_for(
        &self,
        def: &ImageDef,
        parent_tokens: &BTreeMap<ImageAddr, String>,
        locals: &EvaluatedLocals,
    ) -> Context<'static> {
        // One context per thread, reused: every image-specific name is
        // declared again below (declaring replaces), and cloning the ~110
        // function definitions for every image is what this saves.
        let mut ctx = CONTEXT_SPARE
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| base_context(&self.root));
        ctx.declare_var("var", var_object(self));
        ctx.declare_var("local", hcl::Value::Object(locals.values.clone()));
        ctx.declare_var("data", self.data_values.object());
        let mut source = hcl::Map::new();
        source.insert(
            "name".to_owned(),
            hcl::Value::String(def.source_name.clone()),
        );
        source.insert("type".to_owned(), hcl::Value::String(def.builder.clone()));
        ctx.declare_var("source", hcl::Value::Object(source));
        let mut build = hcl::Map::new();
        build.insert(
            "name".to_owned(),
            hcl::Value::String(def.build_name.clone().unwrap_or_default()),
        );
        ctx.declare_var("build", hcl::Value::Object(build));
        // image.<build>.<type>.<name>.id, or image.<type>.<name>.id
        let mut images = hcl::Map::new();
        for (addr, token) in parent_tokens {
            let mut leaf = hcl::Map::new();
            leaf.insert("id".to_owned(), hcl::Value::String(token.clone()));
            let mut path: Vec<String> = Vec::new();
            if let Some(b) = &addr.build {
                // A dotted build name is a path too: image.cloudimg.deps.null.a.id
                path.extend(b.split('.').map(str::to_owned));
            }
            path.push(addr.source_type.clone());
            path.push(addr.source_name.clone());
            insert_path(&mut images, &path, hcl::Value::Object(leaf));
        }
        ctx.declare_var("image", hcl::Value::Object(images));
        ctx
    }

    fn evaluate_once(
        &self,
        def: &ImageDef,
        parent_tokens: &BTreeMap<ImageAddr, String>,
        clock: Clock,
        locals: &EvaluatedLocals,
    ) -> Result<Evaluated, Vec<Diagnostic>> {
        let ctx = self.context_for(def, parent_tokens, locals);
        let env = FunctionEnv {
            base_dir: self.def_dir.clone(),
            allow_env: false,
            clock,
        };
        let (result, trace) = functions::with_env(env, || self.evaluate_parts(def, &ctx));
        give_back(ctx);
        let mut evaluated = result?;
        evaluated.files_read = trace.files_read;
        evaluated.nondeterministic = trace.nondeterministic;
        Ok(evaluated)
    }

    fn evaluate_parts(&self, def: &ImageDef, ctx: &Context) -> Result<Evaluated, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let schema = drivers::kind_of(&def.builder).map(|k| &k.schema);
        let mut out = Evaluated {
            inputs: Attrs::new(),
            settings: Attrs::new(),
            secrets: Attrs::new(),
            provisioners: Vec::new(),
            tests: Vec::new(),
            post_processors: Vec::new(),
            build_attrs: Attrs::new(),
            files_read: BTreeMap::new(),
            nondeterministic: false,
        };
        for attr in &def.attrs {
            let Some(value) = self.eval_packer_attr(attr, ctx, &mut diags) else {
                continue;
            };
            let role = schema
                .and_then(|s| s.role(&attr.name))
                .unwrap_or(Role::Setting);
            role_map(&mut out, role).insert(attr.name.clone(), value);
        }
        let mut block_values: BTreeMap<String, (Option<&BlockSpec>, Vec<Json>)> = BTreeMap::new();
        for block in &def.blocks {
            let spec = schema.and_then(|s| s.block(&block.kind));
            let value = self.eval_block(block, spec, ctx, &mut diags);
            block_values
                .entry(block.kind.clone())
                .or_insert((spec, Vec::new()))
                .1
                .push(value);
        }
        for (name, (spec, values)) in block_values {
            let role = spec.map_or(Role::Setting, |b| b.role);
            let repeat = spec.map_or(Repeat::Many, |b| b.repeat);
            role_map(&mut out, role).insert(name, block_value(repeat, values));
        }
        for attr in &def.build_attrs {
            if let Some(v) = self.eval_attr(attr, ctx, &mut diags) {
                out.build_attrs.insert(attr.name.clone(), v);
            }
        }
        for (is_test, pdef) in def
            .provisioners
            .iter()
            .map(|p| (false, p))
            .chain(def.tests.iter().map(|p| (true, p)))
        {
            let evaluated = match &pdef.module {
                None => self.eval_provisioner(def, &pdef.block, ctx, &mut diags),
                Some(module) => match self.module_context(module, ctx, &mut diags) {
                    Some(mctx) => self
                        .eval_provisioner(def, &pdef.block, &mctx, &mut diags)
                        .map(|mut p| {
                            p.base_dir = Some(module.dir.clone());
                            p
                        }),
                    None => None,
                },
            };
            if let Some(p) = evaluated {
                if is_test {
                    out.tests.push(p);
                } else {
                    out.provisioners.push(p);
                }
            }
        }
        for (chain, block) in &def.post_processors {
            if let Some(p) = self.eval_post_processor(*chain, block, ctx, &mut diags) {
                out.post_processors.push(p);
            }
        }
        if diags.is_empty() {
            // Kept for the whole run, for every image: no spare capacity.
            out.provisioners.shrink_to_fit();
            out.tests.shrink_to_fit();
            out.post_processors.shrink_to_fit();
            Ok(out)
        } else {
            Err(diags)
        }
    }

    pub(super) fn eval_attr(
        &self,
        attr: &RawAttr,
        ctx: &Context,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Json> {
        match functions::evaluate(&attr.expr, ctx) {
            Ok(v) => match serde_json::to_value(&v) {
                Ok(j) if holds_nul(&j) => {
                    // A NUL ends a string for every C tool the value meets
                    // (shells, paths, the kernel), so it would be cut short
                    // silently.
                    diags.push(
                        Diagnostic::error(format!("`{}` holds a NUL character", attr.name))
                            .at(Some(attr.loc.clone()))
                            .hint(
                                "strings cannot contain \\u0000 (or a NUL byte); remove it, \
                                 or keep binary data in a file and refer to it by path",
                            ),
                    );
                    None
                }
                Ok(j) => {
                    functions::sensitivity::note_evaluated(&attr.expr, &j);
                    Some(j)
                }
                Err(e) => {
                    diags.push(
                        Diagnostic::error(format!(
                            "cannot represent the value of `{}`: {e}",
                            attr.name
                        ))
                        .at(Some(attr.loc.clone())),
                    );
                    None
                }
            },
            // Over a data source not looked up yet (validate): unknown.
            Err(_) if self.data_values.may_be_unknown(&attr.text) => {
                Some(self.data_values.unknown(&attr.expr, ctx))
            }
            Err(e) => {
                diags.push(
                    Diagnostic::error(format!(
                        "cannot evaluate `{}`: {}",
                        attr.name,
                        describe_error(&e, &attr.text)
                    ))
                    .at(Some(attr.loc.clone()))
                    .hint(hint_for_error(&e, &attr.text, self)),
                );
                None
            }
        }
    }

    /// [`Self::eval_attr`], then Packer's template engine on every string
    /// of the value (`{{timestamp}}`, `{{build_name}}`...; fields such as
    /// `{{ .SourceAMI }}` are left for the builder). `user_data` is passed
    /// as written: cloud-init renders its own Jinja there.
    fn eval_packer_attr(
        &self,
        attr: &RawAttr,
        ctx: &Context,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Json> {
        let mut value = self.eval_attr(attr, ctx, diags)?;
        if attr.name == "user_data" {
            return Some(value);
        }
        match render_strings(&mut value, ctx) {
            Ok(()) => Some(value),
            Err(e) => {
                diags.push(
                    Diagnostic::error(format!(
                        "cannot render `{}` in `{}`: {}",
                        e.action, attr.name, e.message
                    ))
                    .at(Some(attr.loc.clone()))
                    .hint(e.hint.unwrap_or_else(|| "Packer's template engine is rendered in builder and provisioner settings; write a literal {{ as {{ \"{{\" }}, or use an HCL expression (${timestamp()}, ${source.name})".to_owned())),
                );
                None
            }
        }
    }

    /// A block's value: an object of its attributes and nested blocks
    /// (`spec`, when the schema describes the block, says which nested
    /// blocks appear once).
    pub(super) fn eval_block(
        &self,
        block: &RawBlock,
        spec: Option<&BlockSpec>,
        ctx: &Context,
        diags: &mut Vec<Diagnostic>,
    ) -> Json {
        let mut map = serde_json::Map::new();
        for attr in &block.attrs {
            if let Some(v) = self.eval_packer_attr(attr, ctx, diags) {
                map.insert(attr.name.clone(), v);
            }
        }
        let mut nested: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        for inner in &block.blocks {
            let inner_spec = spec.and_then(|s| s.nested.iter().find(|b| b.name == inner.kind));
            let v = self.eval_block(inner, inner_spec, ctx, diags);
            nested.entry(inner.kind.clone()).or_default().push(v);
        }
        for (name, values) in nested {
            let repeat = spec.map_or(Repeat::Many, |s| s.nested_repeat(&name));
            map.insert(name, block_value(repeat, values));
        }
        Json::Object(map)
    }

    fn eval_provisioner(
        &self,
        def: &ImageDef,
        block: &RawBlock,
        ctx: &Context,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<ProvisionerSpec> {
        let kind = block.labels.first()?.clone();
        let provisioner = provision::kind_of(&kind)?;
        let schema = &provisioner.schema;
        let before = diags.len();
        let mut config = Attrs::new();
        let mut settings = Attrs::new();
        let mut max_retries = 0;
        let mut timeout = None;
        let mut pause_before = None;
        // Packer renders its template engine in its own provisioners'
        // settings; a component document's `{{ name }}` is AWSTOE's.
        let packer_kind = kind != "component";
        for attr in &block.attrs {
            let value = if packer_kind {
                self.eval_packer_attr(attr, ctx, diags)
            } else {
                self.eval_attr(attr, ctx, diags)
            };
            let Some(value) = value else {
                continue;
            };
            match attr.name.as_str() {
                "max_retries" => match value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(n) => max_retries = n as u32,
                    None => diags.push(
                        Diagnostic::error("`max_retries` must be a whole number")
                            .at(Some(attr.loc.clone()))
                            .hint(
                                "max_retries = 3 retries a failing provisioner up to three times",
                            ),
                    ),
                },
                "timeout" | "pause_before" => match value.as_str().and_then(spec::parse_duration) {
                    Some(d) if attr.name == "timeout" => timeout = Some(d),
                    Some(d) => pause_before = Some(d),
                    None => diags.push(
                        Diagnostic::error(format!("`{}` must be a duration", attr.name))
                            .at(Some(attr.loc.clone()))
                            .hint("write a duration like \"30s\", \"5m\" or \"1h30m\""),
                    ),
                },
                "only" | "except" => {
                    settings.insert(attr.name.clone(), value);
                }
                "override" => apply_override(def, &value, &mut config),
                name => match schema.attr(name).map(|a| a.role) {
                    Some(Role::Input) => {
                        config.entry(name.to_owned()).or_insert(value);
                    }
                    _ => {
                        settings.insert(name.to_owned(), value);
                    }
                },
            }
        }
        if diags.len() > before {
            return None;
        }
        let spec = ProvisionerSpec {
            attr_locs: block
                .attrs
                .iter()
                .map(|a| (a.name.clone(), a.loc.clone()))
                .collect(),
            base_dir: None,
            chain: None,
            kind,
            config,
            settings,
            max_retries,
            timeout,
            pause_before,
            loc: block.loc.clone(),
        };
        diags.extend((provisioner.check)(&spec));
        diags.extend(check_types(schema, &spec));
        if diags.len() > before {
            return None;
        }
        Some(spec)
    }

    /// One post-processor block. A kind imgform runs (`postprocess::KINDS`)
    /// splits its attributes by role and refuses one it does not know; any
    /// other kind (`manifest`, or one imgform only warns about) keeps every
    /// attribute in `config`, as written.
    fn eval_post_processor(
        &self,
        chain: usize,
        block: &RawBlock,
        ctx: &Context,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<ProvisionerSpec> {
        let kind = block.labels.first().cloned().unwrap_or_default();
        let schema = crate::postprocess::kind_of(&kind).map(|k| &k.schema);
        let before = diags.len();
        let mut config = Attrs::new();
        let mut settings = Attrs::new();
        for attr in &block.attrs {
            let Some(value) = self.eval_packer_attr(attr, ctx, diags) else {
                continue;
            };
            let Some(schema) = schema else {
                config.insert(attr.name.clone(), value);
                continue;
            };
            match schema.role(&attr.name) {
                Some(Role::Input) => {
                    config.insert(attr.name.clone(), value);
                }
                Some(_) => {
                    settings.insert(attr.name.clone(), value);
                }
                None => diags.push(
                    Diagnostic::error(format!(
                        "unknown attribute `{}` in post-processor \"{kind}\"",
                        attr.name
                    ))
                    .at(Some(attr.loc.clone()))
                    .hint(super::hint_for(
                        &attr.name,
                        schema.names(),
                        &format!(
                            "post-processor \"{kind}\" takes {}",
                            schema.names().collect::<Vec<_>>().join(", ")
                        ),
                    )),
                ),
            }
        }
        if diags.len() > before {
            return None;
        }
        let spec = ProvisionerSpec {
            kind,
            config,
            settings,
            max_retries: 0,
            timeout: None,
            pause_before: None,
            loc: block.loc.clone(),
            attr_locs: block
                .attrs
                .iter()
                .map(|a| (a.name.clone(), a.loc.clone()))
                .collect(),
            base_dir: None,
            chain: Some(chain),
        };
        if let Some(k) = crate::postprocess::kind_of(&spec.kind) {
            diags.extend((k.check)(&spec));
            diags.extend(check_types(&k.schema, &spec));
        }
        (diags.len() == before).then_some(spec)
    }
}

/// Inputs that differ between the two probe evaluations, each an error at
/// its place.
/// Whether a string anywhere in `value` (or an object key) holds a NUL.
fn holds_nul(value: &Json) -> bool {
    match value {
        Json::String(s) => s.contains('\0'),
        Json::Array(items) => items.iter().any(holds_nul),
        Json::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Json::Null | Json::Bool(_) | Json::Number(_) => false,
    }
}

fn nondeterministic_inputs(def: &ImageDef, a: &Evaluated, b: &Evaluated) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (name, value) in &a.inputs {
        if b.inputs.get(name) != Some(value) {
            let loc = def
                .attrs
                .iter()
                .find(|x| &x.name == name)
                .map(|x| x.loc.clone())
                .unwrap_or_else(|| def.loc.clone());
            diags.push(nd_error(&format!("`{name}`"), loc));
        }
    }
    for (i, (pa, pb)) in a.provisioners.iter().zip(&b.provisioners).enumerate() {
        if pa.config != pb.config {
            let key = pa
                .config
                .iter()
                .find(|(k, v)| pb.config.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            let loc = def
                .provisioners
                .get(i)
                .and_then(|p| p.block.attr(&key))
                .map(|x| x.loc.clone())
                .unwrap_or_else(|| pa.loc.clone());
            diags.push(nd_error(
                &format!("`{key}` of provisioner \"{}\"", pa.kind),
                loc,
            ));
        }
    }
    // The post-processors that are part of the identity, likewise.
    let run = |p: &&ProvisionerSpec| crate::postprocess::kind_of(&p.kind).is_some();
    for (pa, pb) in a
        .post_processors
        .iter()
        .filter(run)
        .zip(b.post_processors.iter().filter(run))
    {
        if let Some((key, _)) = pa.config.iter().find(|(k, v)| pb.config.get(*k) != Some(v)) {
            diags.push(nd_error(
                &format!("`{key}` of post-processor \"{}\"", pa.kind),
                crate::postprocess::loc_of(pa, key),
            ));
        }
    }
    diags
}

/// `keep_previous` (build attribute or setting): how many artifacts to keep;
/// 1 by default.
fn keep_previous(def: &ImageDef, real: &Evaluated) -> Result<u32, Vec<Diagnostic>> {
    let keep_previous = match real
        .build_attrs
        .get("keep_previous")
        .or_else(|| real.settings.get("keep_previous"))
    {
        None => 1,
        Some(v) => match v.as_u64() {
            Some(n) => n as u32,
            None => {
                return Err(vec![Diagnostic::error(
                    "`keep_previous` must be a whole number",
                )
                .at(Some(attr_loc(def, "keep_previous")))
                .hint(
                    "keep_previous = 2 keeps the newest two artifacts of this image",
                )])
            }
        },
    };
    Ok(keep_previous)
}

/// `max_age` (build attribute or setting): a duration, or none.
fn max_age(def: &ImageDef, real: &Evaluated) -> Result<Option<String>, Vec<Diagnostic>> {
    let max_age = match real
        .build_attrs
        .get("max_age")
        .or_else(|| real.settings.get("max_age"))
    {
        None => None,
        Some(Json::String(s)) if spec::parse_duration(s).is_some() => Some(s.clone()),
        Some(_) => {
            return Err(vec![Diagnostic::error(
                "`max_age` must be a duration like \"30d\" or \"12h\"",
            )
            .at(Some(attr_loc(def, "max_age")))
            .hint("units: s, m, h, d, w")])
        }
    };
    Ok(max_age)
}

/// Where each attribute and nested block of the image is written.
fn spec_attr_locs(def: &ImageDef) -> BTreeMap<String, SourceLoc> {
    // Attributes and nested blocks (`source_ami_filter`, ...), first one wins.
    let mut attr_locs: BTreeMap<String, SourceLoc> = BTreeMap::new();
    for (name, loc) in def
        .attrs
        .iter()
        .map(|a| (&a.name, &a.loc))
        .chain(def.blocks.iter().map(|b| (&b.kind, &b.loc)))
    {
        attr_locs.entry(name.clone()).or_insert_with(|| loc.clone());
    }
    attr_locs
}

/// A provisioner's `override`: per-source overrides, keys are source names
/// (`TYPE.NAME`, `NAME` or `TYPE`); the entries for this image's source are
/// set on its config.
fn apply_override(def: &ImageDef, value: &Json, config: &mut Attrs) {
    if let Json::Object(map) = value {
        let names = [
            format!("{}.{}", def.builder, def.source_name),
            def.source_name.clone(),
            def.builder.clone(),
        ];
        for (key, over) in map {
            if names.contains(key) {
                if let Json::Object(over) = over {
                    for (k, v) in over {
                        config.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

/// Every config value whose attribute has a type in the schema has that
/// shape (a list where a list is expected, ...).
fn check_types(schema: &crate::schema::Schema, p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for attr in schema.all_attrs() {
        let Some(value) = p.config.get(attr.name) else {
            continue;
        };
        if !attr.ty.accepts(value) {
            let at = p.attr_locs.get(attr.name).unwrap_or(&p.loc).clone();
            diags.push(
                Diagnostic::error(format!("`{}` must be {}", attr.name, attr.ty.describe()))
                    .at(Some(at))
                    .hint(attr.ty.example(attr.name)),
            );
        }
    }
    diags
}

/// Returns a per-image context for reuse by the next image on this thread.
fn give_back(ctx: Context<'static>) {
    CONTEXT_SPARE.with(|s| *s.borrow_mut() = Some(ctx));
}

thread_local! {
    /// A spare evaluation context per thread (see `context_for`).
    static CONTEXT_SPARE: std::cell::RefCell<Option<Context<'static>>> = const { std::cell::RefCell::new(None) };
}

fn role_map(out: &mut Evaluated, role: Role) -> &mut Attrs {
    match role {
        Role::Input => &mut out.inputs,
        Role::Setting => &mut out.settings,
        Role::Secret => &mut out.secrets,
    }
}

/// The value of a block written `values.len()` times: an object when it
/// appears once by its schema, else a list (in order).
fn block_value(repeat: Repeat, mut values: Vec<Json>) -> Json {
    if repeat == Repeat::Once && values.len() == 1 {
        values.remove(0)
    } else {
        Json::Array(values)
    }
}

fn insert_path(map: &mut hcl::Map<String, hcl::Value>, path: &[String], leaf: hcl::Value) {
    let [first, rest @ ..] = path else { return };
    if rest.is_empty() {
        map.insert(first.clone(), leaf);
        return;
    }
    let entry = map
        .entry(first.clone())
        .or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
    if let hcl::Value::Object(inner) = entry {
        insert_path(inner, rest, leaf);
    }
}

fn image_texts(def: &ImageDef) -> impl Iterator<Item = (&str, &SourceLoc)> {
    def.attrs
        .iter()
        .map(|a| (a.text.as_str(), &a.loc))
        .chain(
            def.provisioners
                .iter()
                .chain(&def.tests)
                .flat_map(|p| p.outer_texts()),
        )
        .chain(
            def.blocks
                .iter()
                .flat_map(|b| b.attrs.iter().map(|a| (a.text.as_str(), &a.loc))),
        )
        .chain(
            def.post_processors
                .iter()
                .flat_map(|(_, b)| b.attrs.iter().map(|a| (a.text.as_str(), &a.loc))),
        )
}

fn attr_loc(def: &ImageDef, name: &str) -> SourceLoc {
    def.attrs
        .iter()
        .chain(&def.build_attrs)
        .find(|a| a.name == name)
        .map(|a| a.loc.clone())
        .unwrap_or_else(|| def.loc.clone())
}

fn nd_error(what: &str, loc: SourceLoc) -> Diagnostic {
    Diagnostic::error(format!("{what} changes on every run (it uses timestamp() or uuidv4())"))
        .at(Some(loc))
        .detail("this value is an input of the image: it decides the image's bytes, so it must be the same on every run or the image would never be up to date")
        .hint("use timestamp()/uuidv4() only in build settings such as ami_name, image_name or tags; for a version stamp, pass a variable (--var build_date=...)")
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;

/// Renders Packer's template actions in every string of `value`.
fn render_strings(value: &mut Json, ctx: &Context) -> Result<(), packer_template::TemplateError> {
    match value {
        Json::String(s) if s.contains("{{") => {
            *s = packer_template::render(s, ctx)?;
        }
        Json::Array(items) => {
            for item in items {
                render_strings(item, ctx)?;
            }
        }
        Json::Object(map) => {
            for item in map.values_mut() {
                render_strings(item, ctx)?;
            }
        }
        _ => {}
    }
    Ok(())
}
