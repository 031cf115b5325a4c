//! The project-wide scope: what every expression sees before any image.
//!
//! It owns the base context (the function library, `path.*`,
//! `packer.version`), the `var.*` object, the evaluation of locals (with
//! `data.*` in scope, in any
//! order, once per clock, cached in the [`Project`]), variable `validation`
//! blocks, the scope of a module's provisioners (`var.*` = the module's
//! variables, `path.module`), and the wording of evaluation errors about
//! names ([`describe_error`], and its hints).
//!
//! Invariants: locals are evaluated with no image in scope (no `source.*`,
//! `build.*`, `image.*`), and `env()` is refused everywhere but in variable
//! defaults. A local is non-deterministic when it calls `timestamp()` or
//! `uuidv4()` or refers to one that does; [`super::eval`] uses that to decide
//! when to probe an image with fake clocks. The cache is keyed by clock
//! only: callers must not change a [`Project`]'s variables or locals after
//! evaluating its locals without resetting `locals_cache`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{LazyLock, Mutex};

use hcl::eval::Context;
use regex::Regex;

use super::functions::{self, Clock, FunctionEnv, FunctionTrace};
use super::module::ModuleScope;
use super::{LocalDef, Project};
use crate::diag::closest;
use crate::diag::Diagnostic;

/// Locals evaluated per clock, computed once per clock.
#[derive(Debug, Default)]
pub struct LocalsCache(Mutex<BTreeMap<u64, EvaluatedLocals>>);

#[derive(Debug, Clone)]
pub struct EvaluatedLocals {
    pub values: hcl::Map<String, hcl::Value>,
    /// Locals whose value depends on timestamp()/uuidv4().
    pub nondeterministic: BTreeSet<String>,
}

fn clock_key(clock: &Clock) -> u64 {
    match clock {
        Clock::Real => u64::MAX,
        Clock::Probe(seed) => *seed,
    }
}

/// `local.NAME` in an expression's source text.
pub(super) static LOCAL_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?-u:\b)local\.({})", super::NAME)).expect("valid regex")
});

/// A context with the functions, `path.*` and `packer.version`, but no
/// variables: what variable defaults and variable files see. `root` is
/// `path.root`: the template folder relative to the current directory.
pub fn base_context(root: &str) -> Context<'static> {
    // Declaring ~110 functions costs more than cloning them: build once.
    static BASE: LazyLock<Context<'static>> = LazyLock::new(|| {
        let mut ctx = Context::new();
        functions::declare_functions(&mut ctx);
        ctx.declare_var("path", path_object(".", None));
        let mut packer = hcl::Map::new();
        packer.insert(
            "version".to_owned(),
            hcl::Value::String(env!("CARGO_PKG_VERSION").to_owned()),
        );
        ctx.declare_var("packer", hcl::Value::Object(packer));
        ctx
    });
    let mut ctx = BASE.clone();
    if root != "." {
        ctx.declare_var("path", path_object(root, None));
    }
    ctx
}

/// `path.root` (the template folder, relative), `path.cwd` (the current
/// directory, absolute, as in Packer) and, in a module, `path.module`.
fn path_object(root: &str, module: Option<&str>) -> hcl::Value {
    let mut path = hcl::Map::new();
    path.insert("root".to_owned(), hcl::Value::String(root.to_owned()));
    if let Some(module) = module {
        path.insert("module".to_owned(), hcl::Value::String(module.to_owned()));
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    path.insert(
        "cwd".to_owned(),
        hcl::Value::String(cwd.to_string_lossy().into_owned()),
    );
    hcl::Value::Object(path)
}

pub(super) fn var_object(project: &Project) -> hcl::Value {
    hcl::Value::Object(
        project
            .var_values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// A human description of an evaluation error, naming undefined variables
/// and locals plainly.
pub fn describe_error(err: &hcl::eval::Error, text: &str) -> String {
    use hcl::eval::ErrorKind;
    match err.kind() {
        ErrorKind::NoSuchKey(key) => {
            if text.contains(&format!("var.{key}")) {
                format!("undefined variable `var.{key}`")
            } else if text.contains(&format!("local.{key}")) {
                format!("undefined local `local.{key}`")
            } else {
                format!("no attribute `{key}` in the value")
            }
        }
        ErrorKind::UndefinedVar(name) => match name.as_str() {
            "data" => "no data sources are declared".to_owned(),
            "var" => "no variables are declared".to_owned(),
            "local" => "no locals are defined".to_owned(),
            other => format!(
                "unknown name `{other}` (expected var.*, local.*, path.*, source.*, build.*, image.*)"
            ),
        },
        _ => err.kind().to_string(),
    }
}

pub(super) fn hint_for_error(err: &hcl::eval::Error, text: &str, project: &Project) -> String {
    use hcl::eval::ErrorKind;
    match err.kind() {
        ErrorKind::NoSuchKey(key) if text.contains(&format!("var.{key}")) => {
            match closest(key, project.variables.keys().map(String::as_str)) {
                Some(s) => format!("did you mean `var.{s}`? Otherwise declare it: variable \"{key}\" {{ type = string }}"),
                None => format!("declare it: variable \"{key}\" {{ type = string }}"),
            }
        }
        ErrorKind::NoSuchKey(key) if text.contains(&format!("local.{key}")) => {
            match closest(key, project.locals.iter().map(|l| l.name.as_str())) {
                Some(s) => format!("did you mean `local.{s}`?"),
                None => format!("define it in a locals block: locals {{ {key} = ... }}"),
            }
        }
        ErrorKind::UndefinedFunc(_) => "see the README for the functions imgform supports".to_owned(),
        ErrorKind::FuncCall(name, _) if name.name.as_str().starts_with("file") || name.name.as_str() == "templatefile" => {
            "relative paths are relative to the current directory, as in Packer; use path.root for the template's folder (\"${path.root}/files/x\")".to_owned()
        }
        ErrorKind::FuncCall(name, _) if name.name.as_str() == "env" => {
            "env() is only allowed in variable defaults; declare a variable with default = env(\"NAME\") and use var.NAME".to_owned()
        }
        _ => "check the expression's types and names".to_owned(),
    }
}

/// Evaluates all locals with `clock`; locals may refer to each other in any
/// order. Errors name every local that cannot be evaluated.
pub fn evaluate_locals(
    project: &Project,
    clock: Clock,
) -> Result<EvaluatedLocals, Vec<Diagnostic>> {
    let key = clock_key(&clock);
    if let Some(hit) = project
        .locals_cache
        .0
        .lock()
        .expect("locals cache")
        .get(&key)
    {
        return Ok(hit.clone());
    }
    let vars = var_object(project);
    let (mut values, direct_nd, mut pending) = evaluate_in_any_order(project, &clock, &vars);
    if project.data_values.placeholders {
        // A local over a data source not looked up yet is unknown, not
        // wrong; no other local depends on it unless it does too.
        for local in &pending {
            if project.data_values.dependent_locals.contains(&local.name) {
                values.insert(
                    local.name.clone(),
                    hcl::Value::String(format!("<local.{}>", local.name)),
                );
            }
        }
        pending.retain(|l| !project.data_values.dependent_locals.contains(&l.name));
    }
    if !pending.is_empty() {
        return Err(unevaluable_locals(
            project, &clock, &vars, &values, &pending,
        ));
    }
    let evaluated = EvaluatedLocals {
        values,
        nondeterministic: spread_nondeterminism(project, direct_nd),
    };
    project
        .locals_cache
        .0
        .lock()
        .expect("locals cache")
        .insert(key, evaluated.clone());
    Ok(evaluated)
}

/// The locals that can be evaluated now (with the data set so far), with
/// the real clock; the others are left out. Not cached: the resolve stage
/// asks while data values are still coming in.
pub(super) fn evaluate_locals_partially(project: &Project) -> hcl::Map<String, hcl::Value> {
    let vars = var_object(project);
    evaluate_in_any_order(project, &Clock::Real, &vars).0
}

/// One local evaluated with the locals known so far.
fn evaluate_local(
    project: &Project,
    local: &LocalDef,
    clock: &Clock,
    vars: &hcl::Value,
    values: &hcl::Map<String, hcl::Value>,
) -> (Result<hcl::Value, hcl::eval::Error>, FunctionTrace) {
    let mut ctx = base_context(&project.root);
    ctx.declare_var("var", vars.clone());
    ctx.declare_var("local", hcl::Value::Object(values.clone()));
    ctx.declare_var("data", project.data_values.object());
    let env = FunctionEnv {
        base_dir: project.def_dir.clone(),
        allow_env: false,
        clock: *clock,
    };
    functions::with_env(env, || functions::evaluate(&local.attr.expr, &ctx))
}

/// Evaluates locals in passes until a pass makes no progress. Returns the
/// values, the locals that called timestamp()/uuidv4() themselves, and the
/// locals left over.
fn evaluate_in_any_order<'p>(
    project: &'p Project,
    clock: &Clock,
    vars: &hcl::Value,
) -> (
    hcl::Map<String, hcl::Value>,
    BTreeSet<String>,
    Vec<&'p LocalDef>,
) {
    let mut values: hcl::Map<String, hcl::Value> = hcl::Map::new();
    let mut direct_nd: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<&LocalDef> = project.locals.iter().collect();
    loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for local in pending {
            let (result, trace) = evaluate_local(project, local, clock, vars, &values);
            match result {
                Ok(v) => {
                    if trace.nondeterministic {
                        direct_nd.insert(local.name.clone());
                    }
                    values.insert(local.name.clone(), v);
                    progressed = true;
                }
                Err(_) => still.push(local),
            }
        }
        pending = still;
        if pending.is_empty() || !progressed {
            break;
        }
    }
    (values, direct_nd, pending)
}

/// One error per local left over: its own evaluation error, or the pending
/// locals it depends on.
fn unevaluable_locals(
    project: &Project,
    clock: &Clock,
    vars: &hcl::Value,
    values: &hcl::Map<String, hcl::Value>,
    pending: &[&LocalDef],
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let pending_names: BTreeSet<&str> = pending.iter().map(|l| l.name.as_str()).collect();
    for local in pending {
        let (result, _) = evaluate_local(project, local, clock, vars, values);
        let refs: Vec<String> = LOCAL_REF
            .captures_iter(&local.attr.text)
            .map(|c| c[1].to_owned())
            .filter(|n| pending_names.contains(n.as_str()))
            .collect();
        let diag = match result {
            Err(e)
                if refs.is_empty() || !matches!(e.kind(), hcl::eval::ErrorKind::NoSuchKey(_)) =>
            {
                Diagnostic::error(format!(
                    "cannot evaluate local `{}`: {}",
                    local.name,
                    describe_error(&e, &local.attr.text)
                ))
                .hint(hint_for_error(&e, &local.attr.text, project))
            }
            _ => Diagnostic::error(format!(
                "local `{}` depends on {} which cannot be evaluated",
                local.name,
                refs.iter()
                    .map(|r| format!("`local.{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .hint("locals must not refer to each other in a cycle"),
        };
        diags.push(diag.at(Some(local.attr.loc.clone())));
    }
    diags
}

/// A local is non-deterministic if it calls timestamp()/uuidv4() or
/// refers to a local that does.
fn spread_nondeterminism(project: &Project, direct_nd: BTreeSet<String>) -> BTreeSet<String> {
    let mut nondeterministic = direct_nd;
    loop {
        let before = nondeterministic.len();
        for local in &project.locals {
            if LOCAL_REF
                .captures_iter(&local.attr.text)
                .any(|c| nondeterministic.contains(&c[1]))
            {
                nondeterministic.insert(local.name.clone());
            }
        }
        if nondeterministic.len() == before {
            break;
        }
    }
    nondeterministic
}

/// Runs every variable's `validation` blocks.
pub fn validate_variables(project: &Project, diags: &mut Vec<Diagnostic>) {
    let vars = var_object(project);
    for def in project.variables.values() {
        for validation in &def.validations {
            let (Some(condition), Some(message)) = (
                validation.attr("condition"),
                validation.attr("error_message"),
            ) else {
                continue;
            };
            let mut ctx = base_context(&project.root);
            ctx.declare_var("var", vars.clone());
            let env = FunctionEnv {
                base_dir: project.def_dir.clone(),
                allow_env: false,
                clock: Clock::Real,
            };
            let (result, _) =
                functions::with_env(env, || functions::evaluate(&condition.expr, &ctx));
            match result {
                Ok(hcl::Value::Bool(true)) => {}
                Ok(hcl::Value::Bool(false)) => {
                    let msg = functions::evaluate(&message.expr, &ctx)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "validation failed".to_owned());
                    diags.push(
                        Diagnostic::error(format!(
                            "invalid value for variable `{}`: {msg}",
                            def.name
                        ))
                        .at(Some(condition.loc.clone()))
                        .hint(format!(
                            "this is the validation rule of variable `{}`",
                            def.name
                        )),
                    );
                }
                Ok(other) => diags.push(
                    Diagnostic::error(format!(
                        "validation condition of `{}` is not a bool: {other:?}",
                        def.name
                    ))
                    .at(Some(condition.loc.clone()))
                    .hint("a condition must evaluate to true or false"),
                ),
                Err(e) => diags.push(
                    Diagnostic::error(format!(
                        "cannot evaluate the validation of `{}`: {}",
                        def.name,
                        describe_error(&e, &condition.text)
                    ))
                    .at(Some(condition.loc.clone()))
                    .hint(hint_for_error(&e, &condition.text, project)),
                ),
            }
        }
    }
}

impl Project {
    /// The scope of a module's provisioners: the image's context with
    /// `var.*` replaced by the module's variables and `path.module` set.
    pub(super) fn module_context<'c>(
        &self,
        module: &ModuleScope,
        image_ctx: &Context<'c>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Context<'c>> {
        let mut vars = hcl::Map::new();
        let mut ok = true;
        for (name, def) in &module.variables {
            let (value, loc) = match module.args.iter().find(|a| &a.name == name) {
                Some(arg) => (functions::evaluate(&arg.expr, image_ctx), arg.loc.clone()),
                None => match &def.default {
                    Some(d) => (
                        functions::evaluate(&d.expr, &base_context(&self.root)),
                        d.loc.clone(),
                    ),
                    None => continue, // reported at load time
                },
            };
            match value
                .map_err(|e| describe_error(&e, ""))
                .and_then(|v| super::types::convert(v, &def.ty))
            {
                Ok(v) => {
                    vars.insert(name.clone(), v);
                }
                Err(e) => {
                    ok = false;
                    diags.push(
                        Diagnostic::error(format!(
                            "module `{}`: invalid value for `{name}`: {e}",
                            module.name
                        ))
                        .at(Some(loc))
                        .hint(format!(
                            "`{name}` is declared as {} in {}/module.hcl",
                            def.ty, module.dir
                        )),
                    );
                }
            }
        }
        if !ok {
            return None;
        }
        let mut ctx = image_ctx.clone();
        ctx.declare_var("var", hcl::Value::Object(vars));
        ctx.declare_var("path", path_object(&self.root, Some(&module.dir)));
        Some(ctx)
    }
}
