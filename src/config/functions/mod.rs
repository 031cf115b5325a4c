//! The HCL function library (Packer/Terraform-compatible).
//!
//! This module owns:
//! - every function callable from templates ([`declare_functions`], [`function_names`]), one
//!   submodule per family: `files`, `encoding`, `time` (time and randomness), `hashing`,
//!   `strings`, `collections` (sets included), `numeric` and `convert` (type conversion);
//!   `env`, `try` and `can` are defined here;
//! - the argument helpers the families share (`args`, with `type_name`);
//! - the per-thread function environment ([`with_env`], [`FunctionEnv`]) and the record of what
//!   functions did ([`FunctionTrace`]).
//!
//! [`evaluate`], a drop-in replacement for `hcl::eval::Evaluate::evaluate` on expressions that
//! evaluates `try(...)` and `can(...)` lazily and never panics on arithmetic, lives in
//! [`config::lazy_eval`](super::lazy_eval) and is re-exported here.
//!
//! Invariants:
//! - No function panics, whatever its arguments; failures are `Err(String)` with a message that
//!   names the offending argument (hcl-rs prefixes it with "error calling function `name`").
//! - File, time and random functions need an environment installed with [`with_env`]; outside
//!   it they fail with a clear error. `env()` succeeds only when [`FunctionEnv::allow_env`] is set.
//! - Every file whose bytes a function reads is recorded in the trace of the innermost
//!   [`with_env`] call, keyed by its normalised path, with the sha256 of the bytes.
//! - Every call of a non-deterministic function (`timestamp`, `uuidv4`, `legacy_isotime`,
//!   `legacy_strftime`) sets [`FunctionTrace::nondeterministic`], whatever the clock.
//! - With [`Clock::Probe`] the same seed gives the same values and different seeds (any two that
//!   differ in `seed ^ (seed >> 32)`'s low 32 bits for `timestamp()`, any two at all for
//!   `uuidv4()`) give different values.
//! - Integers stay integers: functions only produce a float when the result has a fraction.
//! - Objects keep insertion order, except where Terraform defines an order: `keys`, `values`,
//!   `jsonencode`, `yamlencode` and sets (`toset`, `setunion`, ...) are sorted.
//!
//! Known differences from Terraform: string lengths, `substr` and `strrev` count Unicode scalar
//! values, not grapheme clusters; floats are `f64`, not arbitrary precision; `yamlencode` does
//! not fold long lines; `abspath` resolves against the definition dir, not the working dir.
//! `sha1`, `md5`, `bcrypt`, `uuidv5`, `rsadecrypt`, the `cidr*` functions and Packer's
//! secret-store functions are not provided.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

pub(super) mod args;
mod collections;
mod convert;
mod encoding;
mod files;
mod hashing;
mod json_text;
mod numeric;
pub mod secrets;
mod strings;
mod time;

pub use super::lazy_eval::evaluate;
pub(crate) use args::type_name;

use args::{str_value, want_str};
pub mod sensitivity;

use collections::*;
use convert::*;
use encoding::*;
use files::*;
use hashing::*;
use numeric::*;
use secrets::*;
use strings::*;
use time::*;

// ---------------------------------------------------------------------------------------------
// Environment and trace
// ---------------------------------------------------------------------------------------------

/// Per-evaluation environment for functions (FuncDef takes plain `fn` pointers, so it is
/// thread-local).
#[derive(Debug, Clone)]
pub struct FunctionEnv {
    /// Directory relative paths in file functions resolve against (the definition dir, absolute).
    pub base_dir: PathBuf,
    /// `env()` is allowed only while evaluating variable defaults, as in Packer.
    pub allow_env: bool,
    /// How `timestamp()` and `uuidv4()` behave.
    pub clock: Clock,
}

/// The source of time and randomness for `timestamp()`, `uuidv4()` and the legacy time
/// functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Real wall clock / random uuids.
    Real,
    /// Deterministic fake values derived from the seed: two different seeds must give different
    /// timestamp() and uuidv4() results, the same seed the same results. Used to detect
    /// non-deterministic expressions by evaluating twice.
    Probe(u64),
}

/// What functions did during one `with_env` call.
#[derive(Debug, Default, Clone)]
pub struct FunctionTrace {
    /// Files read by file(), templatefile(), filebase64(), filesha256() etc.: path as the user
    /// wrote it, normalised relative to base_dir when inside it (forward slashes, no "./"), else
    /// as given → lowercase hex sha256 of the bytes.
    pub files_read: BTreeMap<String, String>,
    /// timestamp() or uuidv4() (or any other non-deterministic function) was called.
    pub nondeterministic: bool,
}

struct Frame {
    env: FunctionEnv,
    trace: FunctionTrace,
    /// Number of `uuidv4()` calls so far, so that probe uuids differ call by call.
    uuid_calls: u64,
}

thread_local! {
    static STACK: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `env` installed for the current thread, returns its result and the trace.
///
/// Calls nest: the inner call's environment replaces the outer one until it returns, and
/// what functions do meanwhile goes into the inner call's trace only. The outer environment is
/// restored even if `f` panics.
pub fn with_env<R>(env: FunctionEnv, f: impl FnOnce() -> R) -> (R, FunctionTrace) {
    struct Guard {
        depth: usize,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            // Runs on normal return (after the frame was popped: no-op) and on unwinding.
            let _ = STACK.try_with(|stack| {
                if let Ok(mut stack) = stack.try_borrow_mut() {
                    stack.truncate(self.depth);
                }
            });
        }
    }

    let depth = STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        stack.push(Frame {
            env,
            trace: FunctionTrace::default(),
            uuid_calls: 0,
        });
        stack.len() - 1
    });
    let guard = Guard { depth };
    let result = f();
    let trace = STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        stack.truncate(depth + 1);
        stack.pop().map(|frame| frame.trace).unwrap_or_default()
    });
    drop(guard);
    (result, trace)
}

/// Runs `f` on the innermost frame, or fails with a message naming `func` when there is none.
fn with_frame<T>(func: &str, f: impl FnOnce(&mut Frame) -> T) -> Result<T, String> {
    let no_env = || {
        format!(
            "{func}() needs a function environment, but was called outside \
             config::functions::with_env (this is a bug in imgform)"
        )
    };
    STACK
        .try_with(|stack| {
            let mut stack = stack.try_borrow_mut().map_err(|_| no_env())?;
            match stack.last_mut() {
                Some(frame) => Ok(f(frame)),
                None => Err(no_env()),
            }
        })
        .unwrap_or_else(|_| Err(no_env()))
}

fn mark_nondeterministic(func: &str) -> Result<Clock, String> {
    with_frame(func, |frame| {
        frame.trace.nondeterministic = true;
        frame.env.clock
    })
}

// ---------------------------------------------------------------------------------------------
// Function table
// ---------------------------------------------------------------------------------------------

type FnResult = Result<Value, String>;

/// `f`, and when sensitivity is being tracked ([`track_sensitive`]) and an
/// argument holds a sensitive value, its result is sensitive too: that is
/// how `base64encode(var.secret)` or `upper(local.token)` stay secret.
macro_rules! tracked {
    ($f:path) => {{
        fn tracked(args: FuncArgs) -> FnResult {
            let sensitive_args = sensitivity::touches(&args);
            let result = $f(args);
            if sensitive_args {
                if let Ok(value) = &result {
                    sensitivity::mark_value(value);
                }
            }
            result
        }
        tracked as hcl::eval::Func
    }};
}

/// (name, positional parameter count, variadic, implementation). All parameters are `Any`:
/// each function converts and checks its arguments itself, so that e.g. numbers are accepted
/// where strings are expected, as in Terraform.
const FUNCTIONS: &[(&str, usize, bool, hcl::eval::Func)] = &[
    // files
    ("abspath", 1, false, tracked!(fn_abspath)),
    ("basename", 1, false, tracked!(fn_basename)),
    ("dirname", 1, false, tracked!(fn_dirname)),
    ("file", 1, false, tracked!(fn_file)),
    ("filebase64", 1, false, tracked!(fn_filebase64)),
    ("filebase64sha256", 1, false, tracked!(fn_filebase64sha256)),
    ("filebase64sha512", 1, false, tracked!(fn_filebase64sha512)),
    ("fileexists", 1, false, tracked!(fn_fileexists)),
    ("fileset", 2, false, tracked!(fn_fileset)),
    ("filesha256", 1, false, tracked!(fn_filesha256)),
    ("filesha512", 1, false, tracked!(fn_filesha512)),
    ("pathexpand", 1, false, tracked!(fn_pathexpand)),
    ("templatefile", 2, false, tracked!(fn_templatefile)),
    // encoding
    ("base64decode", 1, false, tracked!(fn_base64decode)),
    ("base64encode", 1, false, tracked!(fn_base64encode)),
    ("csvdecode", 1, false, tracked!(fn_csvdecode)),
    ("jsondecode", 1, false, tracked!(fn_jsondecode)),
    ("jsonencode", 1, false, tracked!(fn_jsonencode)),
    ("urlencode", 1, false, tracked!(fn_urlencode)),
    ("yamldecode", 1, false, tracked!(fn_yamldecode)),
    ("yamlencode", 1, false, tracked!(fn_yamlencode)),
    // time
    ("formatdate", 2, false, tracked!(fn_formatdate)),
    ("legacy_isotime", 0, true, tracked!(fn_legacy_isotime)),
    ("legacy_strftime", 1, false, tracked!(fn_legacy_strftime)),
    ("timeadd", 2, false, tracked!(fn_timeadd)),
    ("timecmp", 2, false, tracked!(fn_timecmp)),
    ("timestamp", 0, false, tracked!(fn_timestamp)),
    // random
    ("uuidv4", 0, false, tracked!(fn_uuidv4)),
    // hashing
    ("base64sha256", 1, false, tracked!(fn_base64sha256)),
    ("base64sha512", 1, false, tracked!(fn_base64sha512)),
    ("sha256", 1, false, tracked!(fn_sha256)),
    ("sha512", 1, false, tracked!(fn_sha512)),
    // strings
    ("chomp", 1, false, tracked!(fn_chomp)),
    ("endswith", 2, false, tracked!(fn_endswith)),
    ("format", 1, true, tracked!(fn_format)),
    ("formatlist", 1, true, tracked!(fn_formatlist)),
    ("indent", 2, false, tracked!(fn_indent)),
    ("join", 1, true, tracked!(fn_join)),
    ("lower", 1, false, tracked!(fn_lower)),
    ("regex", 2, false, tracked!(fn_regex)),
    ("regex_replace", 3, false, tracked!(fn_regex_replace)),
    ("regexall", 2, false, tracked!(fn_regexall)),
    ("replace", 3, false, tracked!(fn_replace)),
    ("split", 2, false, tracked!(fn_split)),
    ("startswith", 2, false, tracked!(fn_startswith)),
    ("strcontains", 2, false, tracked!(fn_strcontains)),
    ("strrev", 1, false, tracked!(fn_strrev)),
    ("substr", 3, false, tracked!(fn_substr)),
    ("title", 1, false, tracked!(fn_title)),
    ("trim", 2, false, tracked!(fn_trim)),
    ("trimprefix", 2, false, tracked!(fn_trimprefix)),
    ("trimspace", 1, false, tracked!(fn_trimspace)),
    ("trimsuffix", 2, false, tracked!(fn_trimsuffix)),
    ("upper", 1, false, tracked!(fn_upper)),
    // collections
    ("alltrue", 1, false, tracked!(fn_alltrue)),
    ("anytrue", 1, false, tracked!(fn_anytrue)),
    ("chunklist", 2, false, tracked!(fn_chunklist)),
    ("coalesce", 0, true, tracked!(fn_coalesce)),
    ("coalescelist", 0, true, tracked!(fn_coalescelist)),
    ("compact", 1, false, tracked!(fn_compact)),
    ("concat", 0, true, tracked!(fn_concat)),
    ("contains", 2, false, tracked!(fn_contains)),
    ("distinct", 1, false, tracked!(fn_distinct)),
    ("element", 2, false, tracked!(fn_element)),
    ("flatten", 1, false, tracked!(fn_flatten)),
    ("index", 2, false, tracked!(fn_index)),
    ("keys", 1, false, tracked!(fn_keys)),
    ("length", 1, false, tracked!(fn_length)),
    ("lookup", 2, true, tracked!(fn_lookup)),
    ("merge", 0, true, tracked!(fn_merge)),
    ("one", 1, false, tracked!(fn_one)),
    ("range", 1, true, tracked!(fn_range)),
    ("reverse", 1, false, tracked!(fn_reverse)),
    ("setintersection", 1, true, tracked!(fn_setintersection)),
    ("setproduct", 0, true, tracked!(fn_setproduct)),
    ("setsubtract", 2, false, tracked!(fn_setsubtract)),
    ("setunion", 1, true, tracked!(fn_setunion)),
    ("slice", 3, false, tracked!(fn_slice)),
    ("sort", 1, false, tracked!(fn_sort)),
    ("sum", 1, false, tracked!(fn_sum)),
    ("values", 1, false, tracked!(fn_values)),
    ("zipmap", 2, false, tracked!(fn_zipmap)),
    // numbers
    ("abs", 1, false, tracked!(fn_abs)),
    ("ceil", 1, false, tracked!(fn_ceil)),
    ("floor", 1, false, tracked!(fn_floor)),
    ("log", 2, false, tracked!(fn_log)),
    ("max", 0, true, tracked!(fn_max)),
    ("min", 0, true, tracked!(fn_min)),
    ("parseint", 2, false, tracked!(fn_parseint)),
    ("pow", 2, false, tracked!(fn_pow)),
    ("signum", 1, false, tracked!(fn_signum)),
    // type conversion
    ("tobool", 1, false, tracked!(fn_tobool)),
    ("tolist", 1, false, tracked!(fn_tolist)),
    ("tomap", 1, false, tracked!(fn_tomap)),
    ("tonumber", 1, false, tracked!(fn_tonumber)),
    ("toset", 1, false, tracked!(fn_toset)),
    ("tostring", 1, false, tracked!(fn_tostring)),
    // environment
    ("env", 1, false, tracked!(fn_env)),
    // secret services (variable defaults only)
    (
        "aws_secretsmanager",
        1,
        true,
        tracked!(fn_aws_secretsmanager),
    ),
    (
        "aws_secretsmanager_raw",
        1,
        false,
        tracked!(fn_aws_secretsmanager_raw),
    ),
    ("consul_key", 1, false, tracked!(fn_consul_key)),
    ("vault", 2, false, tracked!(fn_vault)),
    // handled lazily by `evaluate`; these definitions only serve eager evaluation
    ("can", 1, false, tracked!(fn_can_eager)),
    ("try", 0, true, tracked!(fn_try_eager)),
];

/// The names of all functions [`declare_functions`] declares, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FUNCTIONS.iter().map(|(name, ..)| *name).collect();
    names.sort_unstable();
    names
}

/// Declares every function of the library in `ctx`.
pub fn declare_functions(ctx: &mut Context) {
    for &(name, params, variadic, func) in FUNCTIONS {
        let mut builder = FuncDef::builder().params((0..params).map(|_| ParamType::Any));
        if variadic {
            builder = builder.variadic_param(ParamType::Any);
        }
        ctx.declare_func(name, builder.build(func));
    }
}

// ---------------------------------------------------------------------------------------------
// Environment, try, can
// ---------------------------------------------------------------------------------------------

fn fn_env(args: FuncArgs) -> FnResult {
    let name = want_str(&args[0], "name")?;
    let allowed = with_frame("env", |frame| frame.env.allow_env).unwrap_or(false);
    if !allowed {
        return Err("env() can only be used in variable defaults, as in Packer".to_string());
    }
    if name.is_empty() || name.contains(['=', '\0']) {
        return Ok(str_value(""));
    }
    crate::watch::env(&name);
    Ok(str_value(
        std::env::var_os(&name)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ))
}

/// `try` reached through eager evaluation (not via [`evaluate`]): every argument evaluated, so
/// the first one is the result.
fn fn_try_eager(args: FuncArgs) -> FnResult {
    args.first()
        .cloned()
        .ok_or_else(|| "at least one argument is required".to_string())
}

/// `can` reached through eager evaluation: its argument evaluated, so it can.
fn fn_can_eager(_args: FuncArgs) -> FnResult {
    Ok(Value::Bool(true))
}

/// Test helpers shared by the tests of every family and of `config::lazy_eval`: a context with
/// the functions and a few variables, evaluation with a probe clock, and a directory of
/// fixture files.
#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    use hcl::eval::Context;
    use hcl::{Expression, Value};

    pub(crate) use super::json_text::json_encode;
    use super::{declare_functions, evaluate, with_env, Clock, FunctionEnv, FunctionTrace};

    pub(crate) fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    pub(crate) fn test_ctx() -> Context<'static> {
        let mut ctx = Context::new();
        declare_functions(&mut ctx);
        ctx.declare_var(
            "var",
            obj([
                ("name", Value::from("web")),
                ("count", Value::from(3)),
                ("list", Value::from_iter(["a", "b", "c"])),
                (
                    "tags",
                    obj([("env", Value::from("prod")), ("team", Value::from("ops"))]),
                ),
                ("nothing", Value::Null),
            ]),
        );
        ctx.declare_var("local", obj([("present", Value::from("here"))]));
        ctx
    }

    pub(crate) fn probe_env(dir: &Path, seed: u64) -> FunctionEnv {
        FunctionEnv {
            base_dir: dir.to_path_buf(),
            allow_env: false,
            clock: Clock::Probe(seed),
        }
    }

    pub(crate) fn eval_with(env: FunctionEnv, src: &str) -> (Result<Value, String>, FunctionTrace) {
        let expr: Expression = src
            .parse()
            .unwrap_or_else(|err| panic!("cannot parse {src}: {err}"));
        let ctx = test_ctx();
        with_env(env, || evaluate(&expr, &ctx).map_err(|err| err.to_string()))
    }

    pub(crate) fn try_eval(src: &str) -> Result<Value, String> {
        eval_with(probe_env(Path::new("/nonexistent-imgform-dir"), 1), src).0
    }

    #[track_caller]
    pub(crate) fn ev(src: &str) -> Value {
        try_eval(src).unwrap_or_else(|err| panic!("{src}: {err}"))
    }

    /// The result as (Terraform-style) JSON, for compact assertions.
    #[track_caller]
    pub(crate) fn j(src: &str) -> String {
        json_encode(&ev(src))
    }

    #[track_caller]
    pub(crate) fn err(src: &str) -> String {
        match try_eval(src) {
            Ok(value) => panic!("{src}: expected an error, got {value:?}"),
            Err(err) => err,
        }
    }

    pub(crate) fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("defs/scripts/sub")).unwrap();
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(root.join("defs/scripts/x.sh"), "echo x\n").unwrap();
        std::fs::write(root.join("defs/scripts/y.sh"), "echo y\n").unwrap();
        std::fs::write(root.join("defs/scripts/sub/z.sh"), "echo z\n").unwrap();
        std::fs::write(root.join("defs/scripts/notes.txt"), "n").unwrap();
        std::fs::write(root.join("defs/bin.dat"), [0xff, 0x00, 0x80]).unwrap();
        std::fs::write(root.join("shared/common.sh"), "common").unwrap();
        std::fs::write(
            root.join("defs/user-data.tpl"),
            "#cloud-config\n%{ for u in users ~}\n- ${u}@${domain}\n%{ endfor ~}\n\
             %{ if admin != \"\" }admin: ${upper(admin)}%{ endif }\n\
             ${try(missing_var, \"fallback\")}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("defs/loop.tpl"),
            "${templatefile(\"loop.tpl\", {})}",
        )
        .unwrap();
        std::fs::write(
            root.join("defs/outer.tpl"),
            "<${templatefile(\"inner.tpl\", {v = v})}>",
        )
        .unwrap();
        std::fs::write(root.join("defs/inner.tpl"), "${v}").unwrap();
        dir
    }

    pub(crate) fn defs_env(dir: &tempfile::TempDir) -> FunctionEnv {
        probe_env(&dir.path().join("defs"), 7)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hcl::eval::Evaluate;
    use hcl::expr::{FuncCall, FuncName};
    use hcl::Expression;

    use super::*;
    use crate::config::functions::test_util::*;

    // ----- env --------------------------------------------------------------------------------

    #[test]
    fn functions_outside_with_env_fail_cleanly() {
        let ctx = test_ctx();
        for src in [
            "timestamp()",
            "uuidv4()",
            r#"file("x")"#,
            r#"fileset(".", "*")"#,
            r#"abspath("x")"#,
        ] {
            let expr: Expression = src.parse().unwrap();
            let msg = evaluate(&expr, &ctx).unwrap_err().to_string();
            assert!(
                msg.contains("outside config::functions::with_env"),
                "{src}: {msg}"
            );
        }
        let expr: Expression = r#"env("HOME")"#.parse().unwrap();
        assert!(evaluate(&expr, &ctx)
            .unwrap_err()
            .to_string()
            .contains("variable defaults"));
        // Pure functions work anywhere.
        let expr: Expression = r#"formatdate("YYYY", "2020-01-01T00:00:00Z")"#.parse().unwrap();
        assert_eq!(evaluate(&expr, &ctx).unwrap(), Value::from("2020"));
    }

    #[test]
    fn env_only_when_allowed() {
        let dir = Path::new("/");
        let msg = eval_with(probe_env(dir, 1), r#"env("PATH")"#)
            .0
            .unwrap_err();
        assert!(
            msg.contains("env() can only be used in variable defaults, as in Packer"),
            "{msg}"
        );
        let allowed = FunctionEnv {
            allow_env: true,
            ..probe_env(dir, 1)
        };
        let path = std::env::var("PATH").unwrap_or_default();
        assert_eq!(
            eval_with(allowed.clone(), r#"env("PATH")"#).0.unwrap(),
            Value::from(path)
        );
        assert_eq!(
            eval_with(allowed.clone(), r#"env("IMGFORM_SURELY_UNSET_VARIABLE")"#)
                .0
                .unwrap(),
            Value::from("")
        );
        assert_eq!(
            eval_with(allowed, r#"env("A=B")"#).0.unwrap(),
            Value::from("")
        );
    }

    #[test]
    fn nested_with_env_restores_outer() {
        let outer = probe_env(Path::new("/outer"), 1);
        let inner = FunctionEnv {
            allow_env: true,
            ..probe_env(Path::new("/inner"), 2)
        };
        let ((inner_result, inner_trace), outer_trace) = with_env(outer, || {
            let inner = with_env(inner, || {
                (
                    fn_abspath(FuncArgs::clone(&args_of(vec![Value::from("x")]))),
                    fn_env(args_of(vec![Value::from("HOME")])).is_ok(),
                )
            });
            let after = fn_abspath(args_of(vec![Value::from("x")]));
            let _ = fn_timestamp(args_of(vec![]));
            assert_eq!(after.unwrap(), Value::from("/outer/x"));
            assert!(fn_env(args_of(vec![Value::from("HOME")])).is_err());
            inner
        });
        assert_eq!(inner_result.0.unwrap(), Value::from("/inner/x"));
        assert!(inner_result.1);
        assert!(!inner_trace.nondeterministic);
        assert!(outer_trace.nondeterministic);
        // Nothing left installed.
        assert!(fn_abspath(args_of(vec![Value::from("x")])).is_err());
    }

    #[test]
    fn with_env_survives_panics() {
        let result = std::panic::catch_unwind(|| {
            with_env(probe_env(Path::new("/p"), 1), || panic!("boom"));
        });
        assert!(result.is_err());
        assert!(fn_abspath(args_of(vec![Value::from("x")])).is_err());
    }

    /// Calls a function the way hcl-rs does, through a FuncDef.
    fn args_of(values: Vec<Value>) -> FuncArgs {
        // FuncArgs has no public constructor: capture the one hcl-rs builds.
        thread_local! {
            static CAPTURED: RefCell<Option<FuncArgs>> = const { RefCell::new(None) };
        }
        fn capture(args: FuncArgs) -> Result<Value, String> {
            CAPTURED.with(|c| *c.borrow_mut() = Some(args));
            Ok(Value::Null)
        }
        let mut ctx = Context::new();
        ctx.declare_func(
            "capture",
            FuncDef::builder()
                .variadic_param(ParamType::Any)
                .build(capture),
        );
        let call = FuncCall {
            name: FuncName::new("capture"),
            args: values.into_iter().map(Expression::from).collect(),
            expand_final: false,
        };
        Expression::FuncCall(Box::new(call)).evaluate(&ctx).unwrap();
        CAPTURED.with(|c| c.borrow_mut().take().unwrap())
    }

    // ----- robustness -------------------------------------------------------------------------

    #[test]
    fn declared_names_are_unique_and_complete() {
        let names = function_names();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup);
        for required in [
            "file",
            "fileexists",
            "fileset",
            "templatefile",
            "filebase64",
            "filesha256",
            "filesha512",
            "abspath",
            "basename",
            "dirname",
            "pathexpand",
            "jsonencode",
            "jsondecode",
            "yamlencode",
            "yamldecode",
            "base64encode",
            "base64decode",
            "urlencode",
            "csvdecode",
            "timestamp",
            "formatdate",
            "timeadd",
            "legacy_isotime",
            "uuidv4",
            "sha256",
            "sha512",
            "split",
            "join",
            "upper",
            "lower",
            "title",
            "replace",
            "regex_replace",
            "regex",
            "regexall",
            "trimspace",
            "trim",
            "trimprefix",
            "trimsuffix",
            "chomp",
            "indent",
            "substr",
            "format",
            "formatlist",
            "strrev",
            "startswith",
            "endswith",
            "length",
            "concat",
            "merge",
            "lookup",
            "coalesce",
            "coalescelist",
            "contains",
            "keys",
            "values",
            "element",
            "index",
            "flatten",
            "distinct",
            "reverse",
            "sort",
            "slice",
            "range",
            "zipmap",
            "compact",
            "one",
            "sum",
            "alltrue",
            "anytrue",
            "min",
            "max",
            "abs",
            "ceil",
            "floor",
            "tostring",
            "tonumber",
            "tobool",
            "tolist",
            "toset",
            "tomap",
            "setunion",
            "env",
            "try",
            "can",
        ] {
            assert!(names.contains(&required), "{required} is missing");
        }
    }

    #[test]
    fn no_function_panics_on_odd_arguments() {
        let dir = fixture();
        let samples = [
            Value::Null,
            Value::Bool(true),
            Value::from(0),
            Value::from(-1),
            Value::from(i64::MIN),
            Value::from(u64::MAX),
            Value::from(1e300),
            Value::from(-0.5),
            Value::from(""),
            Value::from("%"),
            Value::from("%[0]d%[99]s%.999999999f"),
            Value::from("'"),
            Value::from("~"),
            Value::from("../"),
            Value::from("scripts"),
            Value::from("*{"),
            Value::from("é🤔\u{0}"),
            Value::from_iter([Value::Null, Value::from("a")]),
            Value::Array(vec![]),
            obj([("a", Value::from(1))]),
        ];
        with_env(
            FunctionEnv {
                allow_env: true,
                ..defs_env(&dir)
            },
            || {
                for &(name, params, variadic, func) in FUNCTIONS {
                    let max = if variadic { params + 2 } else { params };
                    for count in params..=max {
                        let mut indices = vec![0usize; count];
                        // Every combination for up to two arguments, a diagonal sample beyond.
                        let combos = if count <= 2 {
                            samples.len().pow(u32::try_from(count).unwrap())
                        } else {
                            samples.len()
                        };
                        for combo in 0..combos {
                            let mut rest = combo;
                            for (i, slot) in indices.iter_mut().enumerate() {
                                *slot = if count <= 2 {
                                    let v = rest % samples.len();
                                    rest /= samples.len();
                                    v
                                } else {
                                    (combo + i) % samples.len()
                                };
                            }
                            let args: Vec<Value> =
                                indices.iter().map(|&i| samples[i].clone()).collect();
                            let shown = format!("{name}({args:?})");
                            let outcome = std::panic::catch_unwind(|| func(args_of(args.clone())));
                            assert!(outcome.is_ok(), "{shown} panicked");
                        }
                    }
                }
            },
        );
    }
}
