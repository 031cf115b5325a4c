//! `data "KIND" "NAME" { ... }` blocks: loading them (labels, kind, body
//! against the kind's schema, duplicates, references to undeclared ones),
//! evaluating their attributes, and the `data.*` object every expression
//! sees.
//!
//! Looking them up is not done here (nothing in `config` touches the
//! network): the pipeline's resolve stage evaluates each block with
//! [`Project::evaluate_data_config`], asks its kind, and hands the results
//! back with [`Project::set_data`]. Until then — and for good in `validate`
//! and `graph` — `data.KIND.NAME.ATTR` holds a placeholder of the output's
//! shape (`data::placeholder`).
//!
//! Invariants: a data block may refer to variables, locals and other data
//! blocks, a local to data blocks, in any order without cycles; the resolve
//! stage resolves what it can, sets it, and tries the rest again. Secret
//! outputs join the project's sensitivity seeds (values and references),
//! so everything derived from them is scrubbed and redacted like a
//! sensitive variable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::loader::Loader;
use super::parse::{RawBlock, RawFile};
use super::scope::{base_context, var_object, LOCAL_REF};
use super::{scope, ImageDef, Project};
use crate::data::{self, Outputs};
use crate::diag::{closest, Diagnostic, SourceLoc};
use crate::schema::Role;
use crate::spec::Attrs;

/// `data.KIND.NAME` in an expression's source text.
pub(super) static DATA_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?-u:\b)data\.({n})\.({n})", n = super::NAME)).expect("valid regex")
});

/// One `data` block.
#[derive(Debug, Clone)]
pub struct DataDef {
    pub kind: String,
    pub name: String,
    pub block: RawBlock,
}

impl DataDef {
    /// `data.KIND.NAME`.
    pub fn address(&self) -> String {
        format!("data.{}.{}", self.kind, self.name)
    }

    pub fn loc(&self) -> &SourceLoc {
        &self.block.loc
    }
}

/// The values `data.*` holds, and which of them are secret.
#[derive(Debug, Clone, Default)]
pub struct DataValues {
    /// KIND → NAME → outputs.
    object: hcl::Map<String, hcl::Value>,
    /// Secret output values (strings), to scrub and redact.
    pub(crate) sensitive_values: Vec<String>,
    /// `KIND.NAME.OUTPUT` of the secret outputs: an expression naming one
    /// is sensitive as a whole.
    pub(crate) sensitive_refs: BTreeSet<String>,
    /// Whether `data.*` holds placeholders (nothing looked up yet, or
    /// `validate`): then a value computed from one is unknown, and an
    /// expression over it that fails (`jsondecode` of a placeholder body) is
    /// not an error but unknown too, as Packer treats unknown values.
    pub(crate) placeholders: bool,
    /// Locals whose expression uses a data source, directly or through
    /// other locals.
    pub(crate) dependent_locals: BTreeSet<String>,
    /// The answers set by [`Project::set_data`], by address.
    answers: BTreeMap<String, (Outputs, BTreeSet<String>)>,
}

impl DataValues {
    pub(super) fn object(&self) -> hcl::Value {
        hcl::Value::Object(self.object.clone())
    }

    /// Whether an expression (its source text) may be unknown: placeholders
    /// are in use and it names a data source or a local that uses one.
    pub(super) fn may_be_unknown(&self, text: &str) -> bool {
        self.placeholders
            && (DATA_REF.is_match(text)
                || LOCAL_REF
                    .captures_iter(text)
                    .any(|c| self.dependent_locals.contains(&c[1])))
    }

    /// The value of an unknown expression: a string naming what it waits
    /// for; a list written out element by element keeps its elements that
    /// are known.
    pub(super) fn unknown(
        &self,
        expr: &hcl::Expression,
        ctx: &hcl::eval::Context,
    ) -> serde_json::Value {
        match expr {
            hcl::Expression::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|item| {
                        super::functions::evaluate(item, ctx)
                            .ok()
                            .and_then(|v| serde_json::to_value(v).ok())
                            .unwrap_or_else(|| self.unknown(item, ctx))
                    })
                    .collect(),
            ),
            _ => {
                serde_json::Value::String("<known after the data sources are looked up>".to_owned())
            }
        }
    }

    fn insert(&mut self, def: &DataDef, outputs: &Outputs) {
        let value: hcl::Value = hcl::to_value(outputs).unwrap_or(hcl::Value::Null);
        let hcl::Value::Object(by_name) = self
            .object
            .entry(def.kind.clone())
            .or_insert_with(|| hcl::Value::Object(hcl::Map::new()))
        else {
            unreachable!("data kinds hold objects");
        };
        by_name.insert(def.name.clone(), value);
    }
}

/// A warning for each attribute or block the data block sets that imgform
/// loads but does not act on (as for builders). A literal that says nothing
/// (`null`, `false`, `""`, `[]`, `{}`) is not a setting; any other
/// expression is.
fn ignored_warnings(block: &RawBlock, kind: &data::DataKind, name: &str) -> Vec<Diagnostic> {
    use hcl::Expression as E;
    let set = |e: &E| match e {
        E::Null | E::Bool(false) => false,
        E::String(s) => !s.is_empty(),
        E::Array(a) => !a.is_empty(),
        E::Object(o) => !o.is_empty(),
        _ => true,
    };
    let mut out = Vec::new();
    for attr in kind.schema.all_attrs().filter(|a| a.ignored.is_some()) {
        if let Some(raw) = block.attr(attr.name).filter(|a| set(&a.expr)) {
            out.push((attr.name, attr.ignored, raw.loc.clone()));
        }
    }
    for spec in kind.schema.blocks.iter().filter(|b| b.ignored.is_some()) {
        if let Some(raw) = block.blocks.iter().find(|b| b.kind == spec.name) {
            out.push((spec.name, spec.ignored, raw.loc.clone()));
        }
    }
    out.into_iter()
        .map(|(attr, hint, loc)| {
            Diagnostic::warning(format!(
                "data.{}.{name}: `{attr}` is not acted on by imgform and is ignored",
                kind.name()
            ))
            .at(Some(loc))
            .hint(hint.unwrap_or_default())
        })
        .collect()
}

impl Loader {
    /// A `data` block: two labels, a known kind, a body its schema takes,
    /// a name not used twice for the kind.
    pub(super) fn data_block(&mut self, block: &RawBlock, data: &mut Vec<DataDef>) {
        let [kind, name] = block.labels.as_slice() else {
            self.error(
                &block.loc,
                "a data block needs two labels: type and name",
                "write `data \"amazon-ami\" \"ubuntu\" { ... }`",
            );
            return;
        };
        let Some(known) = data::kind_of(kind) else {
            let names: Vec<&str> = data::kind_names().collect();
            let hint = match closest(kind, names.iter().copied()) {
                Some(s) => format!(
                    "did you mean `{s}`? Known data source types: {}",
                    names.join(", ")
                ),
                None => format!("known data source types: {}", names.join(", ")),
            };
            self.error(
                &block.loc,
                format!("unknown data source type `{kind}`"),
                hint,
            );
            return;
        };
        if let Some(prev) = data.iter().find(|d| &d.kind == kind && &d.name == name) {
            let prev = prev.loc().clone();
            self.error(
                &block.loc,
                format!("duplicate data source `data.{kind}.{name}`"),
                format!("it is already defined at {prev}; give one of them another name"),
            );
            return;
        }
        let before = self.diags.len();
        self.check_body_schema(block, &known.schema, &format!("data \"{kind}\""));
        if self.diags[before..].iter().any(Diagnostic::is_error) {
            return;
        }
        self.diags.extend(ignored_warnings(block, known, name));
        data.push(DataDef {
            kind: kind.clone(),
            name: name.clone(),
            block: block.clone(),
        });
    }

    /// Every `data.KIND.NAME` written anywhere names a declared data block.
    pub(super) fn check_data_refs(&mut self, files: &[RawFile], data: &[DataDef]) {
        let declared: BTreeSet<String> = data.iter().map(DataDef::address).collect();
        let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
        for file in files {
            for block in file.blocks.iter().filter(|b| b.kind != "variable") {
                for (text, loc) in block.texts() {
                    for c in DATA_REF.captures_iter(text) {
                        let address = format!("data.{}.{}", &c[1], &c[2]);
                        // Source text holds string literals too (`/srv/data.old.tar`):
                        // only what names a data source kind, or nearly, is one.
                        let kind_like = data::kind_of(&c[1]).is_some()
                            || closest(&c[1], data::kind_names()).is_some();
                        if !kind_like
                            || declared.contains(&address)
                            || !reported.insert((address.clone(), loc.to_string()))
                        {
                            continue;
                        }
                        let hint = match closest(&address, declared.iter().map(String::as_str)) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => {
                                format!("declare it: data \"{}\" \"{}\" {{ ... }}", &c[1], &c[2])
                            }
                        };
                        self.error(
                            loc,
                            format!("reference to undeclared data source `{address}`"),
                            hint,
                        );
                    }
                }
            }
        }
    }
}

/// Placeholders for every data block: what `data.*` holds until the
/// resolve stage sets the real values (and for good in `validate`).
pub(super) fn placeholders(data: &[DataDef], locals: &[super::LocalDef]) -> DataValues {
    let mut values = DataValues {
        placeholders: !data.is_empty(),
        dependent_locals: dependent_locals(locals),
        ..DataValues::default()
    };
    for def in data {
        if let Some(kind) = data::kind_of(&def.kind) {
            values.insert(def, &data::placeholder(kind, &def.address()));
        }
    }
    values
}

/// The locals whose expression uses a data source, directly or through
/// other locals.
fn dependent_locals(locals: &[super::LocalDef]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = locals
        .iter()
        .filter(|l| DATA_REF.is_match(&l.attr.text))
        .map(|l| l.name.clone())
        .collect();
    loop {
        let more: Vec<String> = locals
            .iter()
            .filter(|l| {
                !out.contains(&l.name)
                    && LOCAL_REF
                        .captures_iter(&l.attr.text)
                        .any(|c| out.contains(&c[1]))
            })
            .map(|l| l.name.clone())
            .collect();
        if more.is_empty() {
            return out;
        }
        out.extend(more);
    }
}

impl Project {
    /// What the resolve stage found: each data block's outputs and the
    /// names of its secret ones, by address.
    pub fn data_answers(&self) -> &BTreeMap<String, (Outputs, BTreeSet<String>)> {
        &self.data_values.answers
    }

    /// Sets what `data.*` holds: the outputs of these data blocks (by
    /// address), with the names of their secret outputs. Blocks left out
    /// are absent (an expression naming one fails). Locals are evaluated
    /// again on next use.
    pub fn set_data(&mut self, results: &BTreeMap<String, (Outputs, BTreeSet<String>)>) {
        let mut values = DataValues {
            dependent_locals: std::mem::take(&mut self.data_values.dependent_locals),
            ..DataValues::default()
        };
        for def in &self.data {
            let Some((outputs, sensitive)) = results.get(&def.address()) else {
                continue;
            };
            values.insert(def, outputs);
            values
                .answers
                .insert(def.address(), (outputs.clone(), sensitive.clone()));
            for name in sensitive {
                values
                    .sensitive_refs
                    .insert(format!("{}.{}.{name}", def.kind, def.name));
                if let Some(serde_json::Value::String(text)) = outputs.get(name) {
                    // A secret of several lines (a private key) is shown a
                    // line at a time: each line is secret too.
                    values.sensitive_values.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                            .map(str::to_owned),
                    );
                }
                if let Some(v) = outputs.get(name) {
                    super::collect_strings(
                        &hcl::to_value(v).unwrap_or(hcl::Value::Null),
                        &mut values.sensitive_values,
                    );
                }
            }
        }
        values.sensitive_values.sort();
        values.sensitive_values.dedup();
        self.data_values = values;
        self.locals_cache = scope::LocalsCache::default();
    }

    /// The attributes of data block `def`, evaluated with the variables, the
    /// locals that can be evaluated now and the data set so far, split by
    /// role: (inputs, everything).
    pub fn evaluate_data_config(&self, def: &DataDef) -> Result<(Attrs, Attrs), Vec<Diagnostic>> {
        let mut ctx = base_context(&self.root);
        ctx.declare_var("var", var_object(self));
        ctx.declare_var(
            "local",
            hcl::Value::Object(scope::evaluate_locals_partially(self)),
        );
        ctx.declare_var("data", self.data_values.object());
        let schema = data::kind_of(&def.kind).map(|k| &k.schema);
        let env = super::functions::FunctionEnv {
            base_dir: self.def_dir.clone(),
            allow_env: false,
            clock: super::functions::Clock::Real,
        };
        let mut diags = Vec::new();
        let (all, _) = super::functions::with_env(env, || {
            let mut all = Attrs::new();
            for attr in &def.block.attrs {
                if let Some(v) = self.eval_attr(attr, &ctx, &mut diags) {
                    all.insert(attr.name.clone(), v);
                }
            }
            for block in &def.block.blocks {
                let v = self.eval_block(
                    block,
                    schema.and_then(|s| s.block(&block.kind)),
                    &ctx,
                    &mut diags,
                );
                all.insert(block.kind.clone(), v);
            }
            all
        });
        if !diags.is_empty() {
            return Err(diags);
        }
        let inputs = all
            .iter()
            .filter(|(name, _)| schema.and_then(|s| s.role(name)) == Some(Role::Input))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok((inputs, all))
    }

    /// The data blocks whose values reach the image's inputs, directly or
    /// through locals: their results are part of its content address.
    pub fn image_data(&self, def: &ImageDef) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut seen_locals = BTreeSet::new();
        let mut queue: Vec<&str> = self.input_texts(def);
        while let Some(text) = queue.pop() {
            for c in DATA_REF.captures_iter(text) {
                out.insert(format!("data.{}.{}", &c[1], &c[2]));
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
        out
    }

    /// Why a data block cannot be evaluated, once nothing more resolves:
    /// its own errors, or the data blocks it waits for.
    pub fn unresolvable_data(
        &self,
        def: &DataDef,
        errors: Vec<Diagnostic>,
        pending: &[String],
    ) -> Vec<Diagnostic> {
        let waits: Vec<String> = def
            .block
            .texts()
            .into_iter()
            .flat_map(|(t, _)| {
                DATA_REF
                    .captures_iter(t)
                    .map(|c| format!("data.{}.{}", &c[1], &c[2]))
                    .collect::<Vec<_>>()
            })
            .filter(|a| pending.contains(a) && a != &def.address())
            .collect();
        if waits.is_empty() {
            return errors;
        }
        vec![Diagnostic::error(format!(
            "{} depends on {} which cannot be evaluated",
            def.address(),
            waits
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .at(Some(def.loc().clone()))
        .hint("data sources must not refer to each other in a cycle")]
    }
}
