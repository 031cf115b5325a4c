//! Variables: reading `variable` blocks and resolving their values.
//!
//! Precedence, lowest first: the default (which may call `env()`), then
//! `PKR_VAR_x`, then `IMGFORM_VAR_x`, then `*.auto.pkrvars.hcl`/`.json` in
//! name order, then each `--var-file` in order, then each `--var` in order.
//! Values from the environment and `--var` are text, parsed as HCL only when
//! the declared type wants an expression (or is `any` and the text looks
//! like a list or object); every value is then converted to the declared
//! type.
//!
//! Invariants: a variable file holds literals only (no `var.*`, no `env()`);
//! a value for an undeclared variable is a warning in a file and an error on
//! the command line. Callers must not evaluate anything that sees `var.*`
//! before this ran: its result is the only source of `var.*` values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::loader::Loader;
use super::parse::{self, RawBlock};
use super::types::{self, TypeExpr};
use super::{functions, hint_for, literal_string, scope, LoadOptions, VariableDef};
use crate::diag::{Diagnostic, SourceLoc};

const VARIABLE_ATTRS: &[&str] = &["type", "default", "description", "sensitive", "nullable"];

/// Each variable's value before conversion to its type, and where it was
/// set (`None` for the environment and `--var`).
type RawValues = BTreeMap<String, (RawValue, Option<SourceLoc>)>;

impl Loader {
    /// Resolves every variable's value in precedence order: each step
    /// overrides the ones before it, then values are converted.
    pub(super) fn resolve_variables(
        &mut self,
        variables: &BTreeMap<String, VariableDef>,
        options: &LoadOptions,
    ) -> BTreeMap<String, hcl::Value> {
        let mut raw: RawValues = BTreeMap::new();
        self.default_values(variables, &mut raw);
        environment_values(variables, options, &mut raw);
        for path in self.var_files(options) {
            self.var_file_values(&path, variables, &mut raw);
        }
        self.flag_values(variables, options, &mut raw);
        self.convert_to_declared_types(variables, raw)
    }

    /// 1. defaults (may call env()).
    fn default_values(&mut self, variables: &BTreeMap<String, VariableDef>, raw: &mut RawValues) {
        for (name, def) in variables {
            if let Some(default) = &def.default {
                let env = functions::FunctionEnv {
                    base_dir: self.def_dir.clone(),
                    allow_env: true,
                    clock: functions::Clock::Real,
                };
                let ctx = scope::base_context(&self.root);
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
                            scope::describe_error(&e, &default.text)
                        ),
                        "a default may use functions and env(), but not other variables or locals",
                    ),
                }
            }
        }
    }

    /// 3. *.auto.pkrvars.hcl (and .json) in name order, then --var-file.
    fn var_files(&self, options: &LoadOptions) -> Vec<PathBuf> {
        let mut var_files: Vec<PathBuf> = Vec::new();
        // Packer reads a folder's auto var files, none beside a single file.
        let autos_dir = (!self.single_file).then_some(&self.template_dir);
        if let Some(Ok(entries)) = autos_dir.map(std::fs::read_dir) {
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
        var_files
    }

    /// The values of one variable file: literal `name = value` attributes.
    fn var_file_values(
        &mut self,
        path: &Path,
        variables: &BTreeMap<String, VariableDef>,
        raw: &mut RawValues,
    ) {
        let display = self.display(path);
        let file = match parse::parse_file(path, &display) {
            Ok(f) => f,
            Err(d) => {
                self.diags.push(d);
                return;
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
                    Diagnostic::warning(format!("value for undeclared variable `{}`", attr.name))
                        .at(Some(attr.loc.clone()))
                        .hint(hint),
                );
                continue;
            }
            let ctx = scope::base_context(&self.root);
            let env = functions::FunctionEnv {
                base_dir: self.def_dir.clone(),
                allow_env: false,
                clock: functions::Clock::Real,
            };
            let (result, _) = functions::with_env(env, || functions::evaluate(&attr.expr, &ctx));
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
                        scope::describe_error(&e, &attr.text)
                    ),
                    "variable files hold literal values",
                ),
            }
        }
    }

    /// 4. --var NAME=VALUE.
    fn flag_values(
        &mut self,
        variables: &BTreeMap<String, VariableDef>,
        options: &LoadOptions,
        raw: &mut RawValues,
    ) {
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
    }

    /// Convert to the declared types.
    fn convert_to_declared_types(
        &mut self,
        variables: &BTreeMap<String, VariableDef>,
        mut raw: RawValues,
    ) -> BTreeMap<String, hcl::Value> {
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
            let Some(value) = self.read_raw_value(name, def, value) else {
                continue;
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

    /// A raw value as HCL: text is parsed as an expression when the type
    /// wants one (or is `any` and the text looks like a collection), else
    /// kept as a string. `None` once the problem is reported.
    fn read_raw_value(
        &mut self,
        name: &str,
        def: &VariableDef,
        value: RawValue,
    ) -> Option<hcl::Value> {
        let value = match value {
            RawValue::Value(v) => v,
            RawValue::Text(text)
                if types::wants_expression(&def.ty)
                    || def.ty == TypeExpr::Any && looks_like_collection(&text) =>
            {
                match hcl::edit::parser::parse_expr(&text) {
                    Ok(expr) => {
                        let ctx = scope::base_context(&self.root);
                        match functions::evaluate(&hcl::Expression::from(expr), &ctx) {
                            Ok(v) => v,
                            Err(e) => {
                                self.diags.push(Diagnostic::error(format!("cannot read the value of `{name}`: {}", scope::describe_error(&e, &text))).hint(format!("`{name}` is {}; write it in HCL syntax, e.g. [\"a\", \"b\"] or {{ k = \"v\" }}", def.ty)));
                                return None;
                            }
                        }
                    }
                    Err(e) => {
                        self.diags.push(Diagnostic::error(format!("cannot parse the value of `{name}`: {}", e.message())).hint(format!("`{name}` is {}; write it in HCL syntax, e.g. [\"a\", \"b\"] or {{ k = \"v\" }}", def.ty)));
                        return None;
                    }
                }
            }
            RawValue::Text(text) => hcl::Value::String(text),
        };
        Some(value)
    }
}

/// 2. environment: PKR_VAR_x, then IMGFORM_VAR_x (imgform's own wins).
fn environment_values(
    variables: &BTreeMap<String, VariableDef>,
    options: &LoadOptions,
    raw: &mut RawValues,
) {
    for prefix in ["PKR_VAR_", "IMGFORM_VAR_"] {
        for (key, value) in &options.env {
            if let Some(name) = key.strip_prefix(prefix) {
                if variables.contains_key(name) {
                    raw.insert(name.to_owned(), (RawValue::Text(value.clone()), None));
                }
            }
        }
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
            "default" => {
                // A default read from a secret service is a secret.
                if functions::secrets::SECRET_FUNCTIONS
                    .iter()
                    .any(|f| attr.text.contains(&format!("{f}(")))
                {
                    def.sensitive = true;
                }
                def.default = Some(attr.clone());
            }
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
