//! The HCL function library (Packer/Terraform-compatible).
//!
//! This module owns:
//! - every function callable from templates ([`declare_functions`]): files, encoding, time,
//!   random, hashing, strings, collections, type conversion, `env`, `try` and `can`;
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
use std::fmt::Write as _;
use std::path::PathBuf;

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

pub(super) mod args;
mod encoding;
mod files;
mod hashing;
mod time;

pub use super::lazy_eval::evaluate;
pub(crate) use args::type_name;

use args::*;
use encoding::*;
use files::*;
use hashing::*;
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

/// (name, positional parameter count, variadic, implementation). All parameters are `Any`:
/// each function converts and checks its arguments itself, so that e.g. numbers are accepted
/// where strings are expected, as in Terraform.
const FUNCTIONS: &[(&str, usize, bool, hcl::eval::Func)] = &[
    // files
    ("abspath", 1, false, fn_abspath),
    ("basename", 1, false, fn_basename),
    ("dirname", 1, false, fn_dirname),
    ("file", 1, false, fn_file),
    ("filebase64", 1, false, fn_filebase64),
    ("filebase64sha256", 1, false, fn_filebase64sha256),
    ("filebase64sha512", 1, false, fn_filebase64sha512),
    ("fileexists", 1, false, fn_fileexists),
    ("fileset", 2, false, fn_fileset),
    ("filesha256", 1, false, fn_filesha256),
    ("filesha512", 1, false, fn_filesha512),
    ("pathexpand", 1, false, fn_pathexpand),
    ("templatefile", 2, false, fn_templatefile),
    // encoding
    ("base64decode", 1, false, fn_base64decode),
    ("base64encode", 1, false, fn_base64encode),
    ("csvdecode", 1, false, fn_csvdecode),
    ("jsondecode", 1, false, fn_jsondecode),
    ("jsonencode", 1, false, fn_jsonencode),
    ("urlencode", 1, false, fn_urlencode),
    ("yamldecode", 1, false, fn_yamldecode),
    ("yamlencode", 1, false, fn_yamlencode),
    // time
    ("formatdate", 2, false, fn_formatdate),
    ("legacy_isotime", 0, true, fn_legacy_isotime),
    ("legacy_strftime", 1, false, fn_legacy_strftime),
    ("timeadd", 2, false, fn_timeadd),
    ("timecmp", 2, false, fn_timecmp),
    ("timestamp", 0, false, fn_timestamp),
    // random
    ("uuidv4", 0, false, fn_uuidv4),
    // hashing
    ("base64sha256", 1, false, fn_base64sha256),
    ("base64sha512", 1, false, fn_base64sha512),
    ("sha256", 1, false, fn_sha256),
    ("sha512", 1, false, fn_sha512),
    // strings
    ("chomp", 1, false, fn_chomp),
    ("endswith", 2, false, fn_endswith),
    ("format", 1, true, fn_format),
    ("formatlist", 1, true, fn_formatlist),
    ("indent", 2, false, fn_indent),
    ("join", 1, true, fn_join),
    ("lower", 1, false, fn_lower),
    ("regex", 2, false, fn_regex),
    ("regex_replace", 3, false, fn_regex_replace),
    ("regexall", 2, false, fn_regexall),
    ("replace", 3, false, fn_replace),
    ("split", 2, false, fn_split),
    ("startswith", 2, false, fn_startswith),
    ("strcontains", 2, false, fn_strcontains),
    ("strrev", 1, false, fn_strrev),
    ("substr", 3, false, fn_substr),
    ("title", 1, false, fn_title),
    ("trim", 2, false, fn_trim),
    ("trimprefix", 2, false, fn_trimprefix),
    ("trimspace", 1, false, fn_trimspace),
    ("trimsuffix", 2, false, fn_trimsuffix),
    ("upper", 1, false, fn_upper),
    // collections
    ("alltrue", 1, false, fn_alltrue),
    ("anytrue", 1, false, fn_anytrue),
    ("chunklist", 2, false, fn_chunklist),
    ("coalesce", 0, true, fn_coalesce),
    ("coalescelist", 0, true, fn_coalescelist),
    ("compact", 1, false, fn_compact),
    ("concat", 0, true, fn_concat),
    ("contains", 2, false, fn_contains),
    ("distinct", 1, false, fn_distinct),
    ("element", 2, false, fn_element),
    ("flatten", 1, false, fn_flatten),
    ("index", 2, false, fn_index),
    ("keys", 1, false, fn_keys),
    ("length", 1, false, fn_length),
    ("lookup", 2, true, fn_lookup),
    ("merge", 0, true, fn_merge),
    ("one", 1, false, fn_one),
    ("range", 1, true, fn_range),
    ("reverse", 1, false, fn_reverse),
    ("setintersection", 1, true, fn_setintersection),
    ("setproduct", 0, true, fn_setproduct),
    ("setsubtract", 2, false, fn_setsubtract),
    ("setunion", 1, true, fn_setunion),
    ("slice", 3, false, fn_slice),
    ("sort", 1, false, fn_sort),
    ("sum", 1, false, fn_sum),
    ("values", 1, false, fn_values),
    ("zipmap", 2, false, fn_zipmap),
    // numbers
    ("abs", 1, false, fn_abs),
    ("ceil", 1, false, fn_ceil),
    ("floor", 1, false, fn_floor),
    ("log", 2, false, fn_log),
    ("max", 0, true, fn_max),
    ("min", 0, true, fn_min),
    ("parseint", 2, false, fn_parseint),
    ("pow", 2, false, fn_pow),
    ("signum", 1, false, fn_signum),
    // type conversion
    ("tobool", 1, false, fn_tobool),
    ("tolist", 1, false, fn_tolist),
    ("tomap", 1, false, fn_tomap),
    ("tonumber", 1, false, fn_tonumber),
    ("toset", 1, false, fn_toset),
    ("tostring", 1, false, fn_tostring),
    // environment
    ("env", 1, false, fn_env),
    // handled lazily by `evaluate`; these definitions only serve eager evaluation
    ("can", 1, false, fn_can_eager),
    ("try", 0, true, fn_try_eager),
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
// Strings
// ---------------------------------------------------------------------------------------------

fn fn_upper(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.to_uppercase()))
}

fn fn_lower(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.to_lowercase()))
}

fn fn_title(args: FuncArgs) -> FnResult {
    // Go's strings.Title: upper-case the first letter of each word.
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphanumeric() {
            return false;
        }
        c.is_whitespace()
    }
    let s = want_str(&args[0], "str")?;
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(str_value(out))
}

fn fn_split(args: FuncArgs) -> FnResult {
    let sep = want_str(&args[0], "separator")?;
    let s = want_str(&args[1], "str")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| str_value(c.to_string())).collect()
    } else {
        s.split(sep.as_str()).map(str_value).collect()
    };
    Ok(Value::Array(parts))
}

fn fn_join(args: FuncArgs) -> FnResult {
    let sep = want_str(&args[0], "separator")?;
    if args.len() < 2 {
        return Err("at least one list is required".to_string());
    }
    let mut parts = Vec::new();
    for (i, list) in args.iter().enumerate().skip(1) {
        let what = format!("argument {}", i + 1);
        for (j, item) in want_list(list, &what)?.iter().enumerate() {
            parts.push(want_str(item, &format!("element {j} of {what}"))?);
        }
    }
    Ok(str_value(parts.join(&sep)))
}

/// Compiles `pattern` (RE2 syntax) with a message naming it on failure.
fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern)
        .map_err(|err| format!("invalid regular expression {pattern:?}: {err}"))
}

fn fn_replace(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let search = want_str(&args[1], "substr")?;
    let replacement = want_str(&args[2], "replace")?;
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = compile_regex(&search[1..search.len() - 1])?;
        return Ok(str_value(re.replace_all(&s, replacement.as_str())));
    }
    if search.is_empty() {
        // Go's strings.Replace with an empty needle inserts at every rune boundary.
        let mut out = replacement.clone();
        for c in s.chars() {
            out.push(c);
            out.push_str(&replacement);
        }
        return Ok(str_value(out));
    }
    Ok(str_value(s.replace(&search, &replacement)))
}

fn fn_regex_replace(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let pattern = want_str(&args[1], "substr")?;
    let replacement = want_str(&args[2], "replacement")?;
    let re = compile_regex(&pattern)?;
    Ok(str_value(re.replace_all(&s, replacement.as_str())))
}

/// The shape of `regex`/`regexall` results for `re`.
enum RegexShape {
    Whole,
    List,
    Named(Vec<(usize, String)>),
}

fn regex_shape(re: &regex::Regex) -> Result<RegexShape, String> {
    let groups = re.captures_len() - 1;
    if groups == 0 {
        return Ok(RegexShape::Whole);
    }
    let names: Vec<(usize, String)> = re
        .capture_names()
        .enumerate()
        .skip(1)
        .filter_map(|(i, name)| name.map(|n| (i, n.to_string())))
        .collect();
    if names.is_empty() {
        Ok(RegexShape::List)
    } else if names.len() == groups {
        Ok(RegexShape::Named(names))
    } else {
        Err(
            "invalid regular expression: cannot mix both named and unnamed capture groups"
                .to_string(),
        )
    }
}

fn regex_result(shape: &RegexShape, caps: &regex::Captures) -> Value {
    let group = |i: usize| caps.get(i).map_or(Value::Null, |m| str_value(m.as_str()));
    match shape {
        RegexShape::Whole => group(0),
        RegexShape::List => Value::Array((1..caps.len()).map(group).collect()),
        RegexShape::Named(names) => Value::Object(
            names
                .iter()
                .map(|(i, name)| (name.clone(), group(*i)))
                .collect(),
        ),
    }
}

fn fn_regex(args: FuncArgs) -> FnResult {
    let pattern = want_str(&args[0], "pattern")?;
    let s = want_str(&args[1], "str")?;
    let re = compile_regex(&pattern)?;
    let shape = regex_shape(&re)?;
    let caps = re
        .captures(&s)
        .ok_or_else(|| format!("pattern {pattern:?} did not match any part of the given string"))?;
    Ok(regex_result(&shape, &caps))
}

fn fn_regexall(args: FuncArgs) -> FnResult {
    let pattern = want_str(&args[0], "pattern")?;
    let s = want_str(&args[1], "str")?;
    let re = compile_regex(&pattern)?;
    let shape = regex_shape(&re)?;
    Ok(Value::Array(
        re.captures_iter(&s)
            .map(|caps| regex_result(&shape, &caps))
            .collect(),
    ))
}

fn fn_trimspace(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.trim()))
}

fn fn_trim(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let cutset: Vec<char> = want_str(&args[1], "cutset")?.chars().collect();
    Ok(str_value(s.trim_matches(|c| cutset.contains(&c))))
}

fn fn_trimprefix(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let prefix = want_str(&args[1], "prefix")?;
    Ok(str_value(s.strip_prefix(prefix.as_str()).unwrap_or(&s)))
}

fn fn_trimsuffix(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let suffix = want_str(&args[1], "suffix")?;
    Ok(str_value(s.strip_suffix(suffix.as_str()).unwrap_or(&s)))
}

fn fn_chomp(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(s.trim_end_matches(['\r', '\n'])))
}

fn fn_indent(args: FuncArgs) -> FnResult {
    let spaces = want_int(&args[0], "spaces")?;
    let s = want_str(&args[1], "str")?;
    let spaces = usize::try_from(spaces)
        .ok()
        .filter(|n| *n <= 1024)
        .ok_or_else(|| format!("spaces must be between 0 and 1024, got {spaces}"))?;
    let pad = format!("\n{}", " ".repeat(spaces));
    Ok(str_value(s.replace('\n', &pad)))
}

fn fn_substr(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let offset = want_int(&args[1], "offset")?;
    let length = want_int(&args[2], "length")?;
    let chars: Vec<char> = s.chars().collect();
    let total = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let start = if offset < 0 {
        (total.saturating_add(offset)).max(0)
    } else {
        offset
    };
    if start >= total {
        return Ok(str_value(""));
    }
    let end = if length < 0 {
        total
    } else {
        start.saturating_add(length).min(total)
    };
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    Ok(str_value(
        chars[start..end.max(start)].iter().collect::<String>(),
    ))
}

fn fn_strrev(args: FuncArgs) -> FnResult {
    Ok(str_value(
        want_str(&args[0], "str")?.chars().rev().collect::<String>(),
    ))
}

fn fn_startswith(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let prefix = want_str(&args[1], "prefix")?;
    Ok(Value::Bool(s.starts_with(&prefix)))
}

fn fn_endswith(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let suffix = want_str(&args[1], "suffix")?;
    Ok(Value::Bool(s.ends_with(&suffix)))
}

fn fn_strcontains(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let sub = want_str(&args[1], "substr")?;
    Ok(Value::Bool(s.contains(&sub)))
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default, Clone, Copy)]
struct FmtFlags {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
}

/// Go's `%e` exponent style: at least two digits, always signed.
fn go_exp(formatted: &str, upper: bool) -> String {
    match formatted.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            let e = if upper { 'E' } else { 'e' };
            format!("{mantissa}{e}{sign}{:02}", exp.unsigned_abs())
        }
        None => formatted.to_string(),
    }
}

fn go_float(verb: char, f: f64, prec: Option<usize>) -> String {
    match verb {
        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), f),
        'e' | 'E' => go_exp(&format!("{:.*e}", prec.unwrap_or(6), f), verb == 'E'),
        _ => {
            // %g: shortest representation, exponent form for large/small exponents.
            let upper = verb == 'G';
            let (digits_form, limit) = match prec {
                None => (format!("{f:e}"), 6),
                Some(p) => {
                    let p = p.max(1);
                    (format!("{:.*e}", p - 1, f), p)
                }
            };
            let exp: i64 = digits_form
                .split_once('e')
                .and_then(|(_, e)| e.parse().ok())
                .unwrap_or(0);
            let limit = i64::try_from(limit).unwrap_or(21);
            if exp < -4 || exp >= limit {
                let (mantissa, _) = digits_form.split_once('e').unwrap_or((&digits_form, ""));
                let mantissa = if mantissa.contains('.') {
                    mantissa.trim_end_matches('0').trim_end_matches('.')
                } else {
                    mantissa
                };
                go_exp(&format!("{mantissa}e{exp}"), upper)
            } else {
                match prec {
                    None => format!("{f}"),
                    Some(p) => {
                        let decimals = usize::try_from(
                            (i64::try_from(p.max(1)).unwrap_or(1) - 1 - exp).max(0),
                        )
                        .unwrap_or(0);
                        let s = format!("{f:.decimals$}");
                        if s.contains('.') {
                            s.trim_end_matches('0').trim_end_matches('.').to_string()
                        } else {
                            s
                        }
                    }
                }
            }
        }
    }
}

fn format_integer(verb: char, i: i128, flags: FmtFlags) -> String {
    let digits = match verb {
        'b' => format!("{:b}", i.unsigned_abs()),
        'o' => format!("{:o}", i.unsigned_abs()),
        'x' => format!("{:x}", i.unsigned_abs()),
        'X' => format!("{:X}", i.unsigned_abs()),
        _ => i.unsigned_abs().to_string(),
    };
    let prefix = match (verb, flags.sharp) {
        ('b', true) => "0b",
        ('o', true) => "0",
        ('x', true) => "0x",
        ('X', true) => "0X",
        _ => "",
    };
    let sign = if i < 0 {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    format!("{sign}{prefix}{digits}")
}

/// Formats one argument for one verb.
fn format_one(
    verb: char,
    flags: FmtFlags,
    prec: Option<usize>,
    arg: &Value,
) -> Result<String, String> {
    if arg.is_null() {
        return Err(format!(
            "unsupported value for \"%{verb}\": null value cannot be formatted"
        ));
    }
    let unsupported = || {
        format!(
            "unsupported value for \"%{verb}\": a {} cannot be formatted this way",
            type_name(arg)
        )
    };
    Ok(match verb {
        'v' => {
            if flags.sharp {
                json_encode(arg)
            } else {
                match arg {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => number_to_string(n),
                    Value::Bool(b) => b.to_string(),
                    other => json_encode(other),
                }
            }
        }
        's' | 'q' => {
            let s = match arg {
                Value::Array(_) | Value::Object(_) => return Err(unsupported()),
                other => want_str(other, "argument")?,
            };
            let s = match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            };
            if verb == 'q' {
                go_quote(&s)
            } else {
                s
            }
        }
        't' => want_bool(arg, "argument")
            .map_err(|_| unsupported())?
            .to_string(),
        'd' | 'b' | 'o' | 'x' | 'X' => {
            let n = match arg {
                Value::Number(n) => *n,
                Value::String(s) => parse_number(s).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            };
            let i = num_i128(&n).ok_or_else(|| {
                format!("unsupported value for \"%{verb}\": {n} has a fractional part")
            })?;
            format_integer(verb, i, flags)
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let n = match arg {
                Value::Number(n) => *n,
                Value::String(s) => parse_number(s).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            };
            let f = num_f64(&n);
            let body = go_float(verb, f, prec);
            if f >= 0.0 && flags.plus {
                format!("+{body}")
            } else if f >= 0.0 && flags.space {
                format!(" {body}")
            } else {
                body
            }
        }
        other => return Err(format!("unsupported format verb %{other}")),
    })
}

fn pad_formatted(s: String, width: Option<usize>, flags: FmtFlags, numeric: bool) -> String {
    let Some(width) = width else { return s };
    let len = s.chars().count();
    if len >= width {
        return s;
    }
    let fill = width - len;
    if flags.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if flags.zero && numeric {
        let sign_len = usize::from(s.starts_with(['-', '+', ' ']));
        format!("{}{}{}", &s[..sign_len], "0".repeat(fill), &s[sign_len..])
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

/// Terraform's `format`: Go's fmt verbs `%v %#v %s %q %d %b %o %x %X %e %E %f %F %g %G %t %%`
/// with flags `- + # space 0`, width, precision and explicit argument indexes `%[n]d`.
fn go_format(spec: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut next_arg = 0usize;
    let mut reordered = false;
    let mut i = 0;
    let read_number = |i: &mut usize| -> Option<usize> {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            None
        } else {
            chars[start..*i]
                .iter()
                .collect::<String>()
                .parse()
                .ok()
                .map(|n: usize| n.min(1 << 16))
        }
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let mut flags = FmtFlags::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => flags.minus = true,
                '+' => flags.plus = true,
                '#' => flags.sharp = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut read_index = |i: &mut usize, next_arg: &mut usize| -> Result<(), String> {
            if chars.get(*i) == Some(&'[') {
                *i += 1;
                let n = read_number(i).ok_or("invalid argument index in format string")?;
                if chars.get(*i) != Some(&']') || n == 0 {
                    return Err("invalid argument index in format string".to_string());
                }
                *i += 1;
                *next_arg = n - 1;
                reordered = true;
            }
            Ok(())
        };
        read_index(&mut i, &mut next_arg)?;
        let width = read_number(&mut i);
        let mut prec = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            prec = Some(read_number(&mut i).unwrap_or(0));
        }
        read_index(&mut i, &mut next_arg)?;
        let verb = *chars
            .get(i)
            .ok_or("format string ends with an incomplete verb")?;
        i += 1;
        let arg = args.get(next_arg).ok_or_else(|| {
            format!(
                "not enough arguments for \"%{verb}\": need argument {} but have {}",
                next_arg + 1,
                args.len()
            )
        })?;
        next_arg += 1;
        let numeric = matches!(
            verb,
            'd' | 'b' | 'o' | 'x' | 'X' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G'
        );
        let formatted = format_one(verb, flags, prec, arg)
            .map_err(|err| format!("{err} (argument {next_arg})"))?;
        out.push_str(&pad_formatted(formatted, width, flags, numeric));
    }
    if !reordered && next_arg < args.len() {
        return Err(format!(
            "too many arguments; only {next_arg} used by format string"
        ));
    }
    Ok(out)
}

fn fn_format(args: FuncArgs) -> FnResult {
    let spec = want_str(&args[0], "format")?;
    go_format(&spec, &args[1..]).map(Value::String)
}

fn fn_formatlist(args: FuncArgs) -> FnResult {
    let spec = want_str(&args[0], "format")?;
    let rest = &args[1..];
    let mut len: Option<(usize, usize)> = None;
    for (i, arg) in rest.iter().enumerate() {
        if let Value::Array(items) = arg {
            match len {
                None => len = Some((items.len(), i)),
                Some((n, j)) if n != items.len() => {
                    return Err(format!(
                        "argument {} has length {}, which is inconsistent with argument {} \
                         of length {n}",
                        i + 2,
                        items.len(),
                        j + 2
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let count = len.map_or(1, |(n, _)| n);
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let row: Vec<Value> = rest
            .iter()
            .map(|arg| match arg {
                Value::Array(items) => items[k].clone(),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(
            go_format(&spec, &row).map_err(|err| format!("error on iteration {k}: {err}"))?,
        ));
    }
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------------------------------------
// Collections
// ---------------------------------------------------------------------------------------------

fn fn_length(args: FuncArgs) -> FnResult {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::Null => return Err("argument must not be null".to_string()),
        other => {
            return Err(format!(
                "argument must be a string, a list or an object, got a {}",
                type_name(other)
            ))
        }
    };
    Ok(Value::Number(Number::from(n)))
}

fn fn_concat(args: FuncArgs) -> FnResult {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        out.extend(
            want_list(arg, &format!("argument {}", i + 1))?
                .iter()
                .cloned(),
        );
    }
    Ok(Value::Array(out))
}

fn fn_merge(args: FuncArgs) -> FnResult {
    let mut out = Map::new();
    for (i, arg) in args.iter().enumerate() {
        if arg.is_null() {
            continue;
        }
        for (key, value) in want_obj(arg, &format!("argument {}", i + 1))? {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}

fn fn_lookup(args: FuncArgs) -> FnResult {
    max_args(&args, 3)?;
    let map = want_obj(&args[0], "inputMap")?;
    let key = want_str(&args[1], "key")?;
    match map.get(&key) {
        Some(value) => Ok(value.clone()),
        None => match args.get(2) {
            Some(default) => Ok(default.clone()),
            None => Err(format!("lookup failed to find key {key:?}")),
        },
    }
}

fn fn_coalesce(args: FuncArgs) -> FnResult {
    args.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_string())
}

fn fn_coalescelist(args: FuncArgs) -> FnResult {
    for (i, arg) in args.iter().enumerate() {
        if arg.is_null() {
            continue;
        }
        if !want_list(arg, &format!("argument {}", i + 1))?.is_empty() {
            return Ok(arg.clone());
        }
    }
    Err("no non-null, non-empty list arguments".to_string())
}

fn fn_contains(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Bool(list.contains(&args[1])))
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn fn_keys(args: FuncArgs) -> FnResult {
    let map = want_obj(&args[0], "inputMap")?;
    Ok(Value::Array(
        sorted_entries(map)
            .into_iter()
            .map(|(k, _)| str_value(k.clone()))
            .collect(),
    ))
}

fn fn_values(args: FuncArgs) -> FnResult {
    let map = want_obj(&args[0], "mapping")?;
    Ok(Value::Array(
        sorted_entries(map)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

fn fn_element(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let index = want_int(&args[1], "index")?;
    if list.is_empty() {
        return Err("cannot use element function with an empty list".to_string());
    }
    let index = usize::try_from(index)
        .map_err(|_| "cannot use element function with a negative index".to_string())?;
    Ok(list[index % list.len()].clone())
}

fn fn_index(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    list.iter()
        .position(|v| *v == args[1])
        .map(|i| Value::Number(Number::from(i)))
        .ok_or_else(|| format!("item {} not found", describe(&args[1])))
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>) {
    for item in items {
        match item {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}

fn fn_flatten(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let mut out = Vec::new();
    flatten_into(list, &mut out);
    Ok(Value::Array(out))
}

fn distinct_values(items: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn fn_distinct(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Array(distinct_values(list.iter().cloned())))
}

fn fn_reverse(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Array(list.iter().rev().cloned().collect()))
}

fn fn_sort(args: FuncArgs) -> FnResult {
    // Terraform's sort works on a list of strings; numbers and bools convert.
    let list = want_list(&args[0], "list")?;
    let mut strings = list
        .iter()
        .enumerate()
        .map(|(i, v)| want_str(v, &format!("element {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    strings.sort();
    Ok(Value::Array(
        strings.into_iter().map(Value::String).collect(),
    ))
}

fn fn_slice(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let start = want_int(&args[1], "start_index")?;
    let end = want_int(&args[2], "end_index")?;
    let start =
        usize::try_from(start).map_err(|_| "start_index must not be less than zero".to_string())?;
    let end =
        usize::try_from(end).map_err(|_| "end_index must not be less than zero".to_string())?;
    if end > list.len() {
        return Err(format!(
            "end_index must not be greater than the length of the list ({})",
            list.len()
        ));
    }
    if start > end {
        return Err("start_index must not be greater than end_index".to_string());
    }
    Ok(Value::Array(list[start..end].to_vec()))
}

fn fn_range(args: FuncArgs) -> FnResult {
    max_args(&args, 3)?;
    let nums = args
        .iter()
        .enumerate()
        .map(|(i, v)| want_num(v, &format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, limit, step) = match nums.as_slice() {
        [limit] => (Number::from(0), *limit, None),
        [start, limit] => (*start, *limit, None),
        [start, limit, step] => (*start, *limit, Some(*step)),
        _ => return Err("expected one to three arguments".to_string()),
    };
    let (s, l) = (num_f64(&start), num_f64(&limit));
    let st = match step {
        Some(step) => num_f64(&step),
        None if l < s => -1.0,
        None => 1.0,
    };
    if st == 0.0 {
        return Err("step must not be zero".to_string());
    }
    let all_int = [Some(start), Some(limit), step]
        .iter()
        .flatten()
        .all(|n| !n.is_f64());
    let mut out = Vec::new();
    let mut k: i32 = 0;
    loop {
        let v = s + f64::from(k) * st;
        if (st > 0.0 && v >= l) || (st < 0.0 && v <= l) {
            break;
        }
        if out.len() >= 1024 {
            return Err(
                "more than 1024 values were generated; either decrease the difference \
                        between start and end or use a smaller step"
                    .to_string(),
            );
        }
        let n = if all_int {
            #[allow(clippy::cast_possible_truncation)]
            let i = v.round() as i128;
            i128_num(i)
        } else {
            f64_num(v)?
        };
        out.push(Value::Number(n));
        k += 1;
    }
    Ok(Value::Array(out))
}

fn fn_zipmap(args: FuncArgs) -> FnResult {
    let keys = want_list(&args[0], "keys")?;
    let values = want_list(&args[1], "values")?;
    if keys.len() != values.len() {
        return Err(format!(
            "number of keys ({}) does not match number of values ({})",
            keys.len(),
            values.len()
        ));
    }
    let mut out = Map::new();
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        out.insert(want_str(key, &format!("key {i}"))?, value.clone());
    }
    Ok(Value::Object(out))
}

fn fn_compact(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        if item.is_null() {
            continue;
        }
        let s = want_str(item, &format!("element {i}"))?;
        if !s.is_empty() {
            out.push(Value::String(s));
        }
    }
    Ok(Value::Array(out))
}

fn fn_one(args: FuncArgs) -> FnResult {
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    let list = want_list(&args[0], "list")?;
    match list.as_slice() {
        [] => Ok(Value::Null),
        [only] => Ok(only.clone()),
        _ => Err(format!(
            "must be a list, set, or tuple value with either zero or one elements, got {}",
            list.len()
        )),
    }
}

/// Adds numbers exactly while they are integers.
fn add_numbers(a: Number, b: Number) -> Result<Number, String> {
    match (num_i128(&a), num_i128(&b)) {
        (Some(x), Some(y)) => x
            .checked_add(y)
            .map(i128_num)
            .ok_or_else(|| "integer overflow".to_string()),
        _ => f64_num(num_f64(&a) + num_f64(&b)),
    }
}

fn fn_sum(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    if list.is_empty() {
        return Err("cannot find the sum of an empty list".to_string());
    }
    let mut total = Number::from(0);
    for (i, item) in list.iter().enumerate() {
        total = add_numbers(total, want_num(item, &format!("element {i}"))?)?;
    }
    Ok(Value::Number(total))
}

fn fn_alltrue(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    for (i, item) in list.iter().enumerate() {
        if item.is_null() || !want_bool(item, &format!("element {i}"))? {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

fn fn_anytrue(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    for (i, item) in list.iter().enumerate() {
        if !item.is_null() && want_bool(item, &format!("element {i}"))? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn fn_chunklist(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let size = want_int(&args[1], "size")?;
    let size =
        usize::try_from(size).map_err(|_| "the size argument must be positive".to_string())?;
    if list.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(list.clone())]));
    }
    Ok(Value::Array(
        list.chunks(size)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

/// A set as Terraform orders it: duplicates removed; strings, numbers or bools sorted; mixed
/// primitives converted to strings first; collections keep first-occurrence order.
fn normalize_set(items: Vec<Value>) -> Vec<Value> {
    let mut items = distinct_values(items);
    let all = |pred: fn(&Value) -> bool| items.iter().all(pred);
    if all(Value::is_string) {
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else if all(Value::is_number) {
        items.sort_by(|a, b| {
            let (x, y) = (
                a.as_number().map_or(0.0, num_f64),
                b.as_number().map_or(0.0, num_f64),
            );
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        });
    } else if all(Value::is_boolean) {
        items.sort_by_key(|v| v.as_bool());
    } else if all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))) {
        let strings: Vec<Value> = items
            .iter()
            .filter_map(|v| want_str(v, "element").ok())
            .map(Value::String)
            .collect();
        return normalize_set(strings);
    }
    items
}

fn set_args(args: &FuncArgs) -> Result<Vec<Vec<Value>>, String> {
    args.iter()
        .enumerate()
        .map(|(i, v)| {
            want_list(v, &format!("argument {}", i + 1)).map(|l| distinct_values(l.iter().cloned()))
        })
        .collect()
}

fn fn_toset(args: FuncArgs) -> FnResult {
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    let list = want_list(&args[0], "argument")?;
    Ok(Value::Array(normalize_set(list.clone())))
}

fn fn_setunion(args: FuncArgs) -> FnResult {
    let sets = set_args(&args)?;
    Ok(Value::Array(normalize_set(
        sets.into_iter().flatten().collect(),
    )))
}

fn fn_setintersection(args: FuncArgs) -> FnResult {
    let mut sets = set_args(&args)?.into_iter();
    let mut acc = sets.next().unwrap_or_default();
    for set in sets {
        acc.retain(|v| set.contains(v));
    }
    Ok(Value::Array(normalize_set(acc)))
}

fn fn_setsubtract(args: FuncArgs) -> FnResult {
    let sets = set_args(&args)?;
    let (a, b) = (&sets[0], &sets[1]);
    Ok(Value::Array(normalize_set(
        a.iter().filter(|v| !b.contains(v)).cloned().collect(),
    )))
}

fn fn_setproduct(args: FuncArgs) -> FnResult {
    if args.len() < 2 {
        return Err("at least two arguments are required".to_string());
    }
    let sets = set_args(&args)?;
    let total: usize = sets.iter().map(Vec::len).product();
    if total > 100_000 {
        return Err(format!(
            "the product has {total} elements, more than 100000"
        ));
    }
    let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
    for set in &sets {
        let mut next = Vec::with_capacity(acc.len() * set.len());
        for prefix in &acc {
            for item in set {
                let mut row = prefix.clone();
                row.push(item.clone());
                next.push(row);
            }
        }
        acc = next;
    }
    Ok(Value::Array(acc.into_iter().map(Value::Array).collect()))
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

fn fn_abs(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(match num_i128(&n) {
        Some(i) => i128_num(i.abs()),
        None => f64_num(num_f64(&n).abs())?,
    }))
}

fn fn_ceil(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(if n.is_f64() {
        f64_num(num_f64(&n).ceil())?
    } else {
        n
    }))
}

fn fn_floor(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(if n.is_f64() {
        f64_num(num_f64(&n).floor())?
    } else {
        n
    }))
}

fn fn_log(args: FuncArgs) -> FnResult {
    let n = num_f64(&want_num(&args[0], "num")?);
    let base = num_f64(&want_num(&args[1], "base")?);
    f64_num(n.ln() / base.ln()).map(Value::Number)
}

fn fn_pow(args: FuncArgs) -> FnResult {
    let base = want_num(&args[0], "num")?;
    let exp = want_num(&args[1], "power")?;
    if let (Some(b), Some(e)) = (num_i128(&base), num_i128(&exp)) {
        if let Ok(e) = u32::try_from(e) {
            if let Some(r) = b.checked_pow(e) {
                return Ok(Value::Number(i128_num(r)));
            }
        }
    }
    f64_num(num_f64(&base).powf(num_f64(&exp))).map(Value::Number)
}

fn fn_signum(args: FuncArgs) -> FnResult {
    let n = num_f64(&want_num(&args[0], "num")?);
    let s: i64 = if n > 0.0 {
        1
    } else if n < 0.0 {
        -1
    } else {
        0
    };
    Ok(Value::Number(Number::from(s)))
}

fn fn_parseint(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "number")?;
    let base = want_int(&args[1], "base")?;
    let base = u32::try_from(base)
        .ok()
        .filter(|b| (2..=36).contains(b))
        .ok_or_else(|| format!("base must be a whole number between 2 and 36, got {base}"))?;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let magnitude = u128::from_str_radix(digits, base)
        .ok()
        .filter(|_| !digits.starts_with(['+', '-']))
        .ok_or_else(|| format!("cannot parse {s:?} as a base {base} integer"))?;
    let value = i128::try_from(magnitude)
        .ok()
        .map(|m| if neg { -m } else { m })
        .filter(|v| i64::try_from(*v).is_ok() || u64::try_from(*v).is_ok())
        .ok_or_else(|| format!("{s:?} is out of range"))?;
    Ok(Value::Number(i128_num(value)))
}

fn extreme(args: &FuncArgs, want_max: bool) -> FnResult {
    let mut best: Option<Number> = None;
    for (i, arg) in args.iter().enumerate() {
        let n = want_num(arg, &format!("argument {}", i + 1))?;
        best = Some(match best {
            None => n,
            Some(b) => {
                let better = if want_max { n > b } else { n < b };
                if better {
                    n
                } else {
                    b
                }
            }
        });
    }
    best.map(Value::Number)
        .ok_or_else(|| "must provide at least one number".to_string())
}

fn fn_max(args: FuncArgs) -> FnResult {
    extreme(&args, true)
}

fn fn_min(args: FuncArgs) -> FnResult {
    extreme(&args, false)
}

// ---------------------------------------------------------------------------------------------
// Type conversion
// ---------------------------------------------------------------------------------------------

fn fn_tostring(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "cannot convert a {} to a string",
            type_name(&args[0])
        )),
        other => want_str(other, "argument").map(Value::String),
    }
}

fn fn_tonumber(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::String(s) => parse_number(s)
            .map(Value::Number)
            .ok_or_else(|| format!("cannot convert {s:?} to a number")),
        other => Err(format!("cannot convert a {} to a number", type_name(other))),
    }
}

fn fn_tobool(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        other => Err(format!("cannot convert {} to a bool", describe(other))),
    }
}

fn fn_tolist(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => Ok(Value::Array(items.clone())),
        other => Err(format!("cannot convert a {} to a list", type_name(other))),
    }
}

fn fn_tomap(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Object(map) => Ok(Value::Object(map.clone())),
        other => Err(format!("cannot convert a {} to a map", type_name(other))),
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

/// Test helpers shared by the tests here and those of `config::lazy_eval`: a context with
/// the functions and a few variables, evaluation with a probe clock, and a directory of
/// fixture files.
#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    use hcl::eval::Context;
    use hcl::{Expression, Value};

    pub(crate) use super::encoding::json_encode;
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

    // ----- strings ----------------------------------------------------------------------------

    #[test]
    fn string_functions() {
        assert_eq!(j(r#"upper("abc")"#), r#""ABC""#);
        assert_eq!(j(r#"lower("ABC")"#), r#""abc""#);
        assert_eq!(
            j(r#"title("hello world-foo_bar")"#),
            r#""Hello World-Foo_bar""#
        );
        assert_eq!(j(r#"split(",", "a,b,,c")"#), r#"["a","b","","c"]"#);
        assert_eq!(j(r#"split(",", "")"#), r#"[""]"#);
        assert_eq!(j(r#"join(", ", ["a", "b"], ["c"])"#), r#""a, b, c""#);
        assert_eq!(j(r#"join("-", [1, true])"#), r#""1-true""#);
        assert!(err(r#"join("-", [null])"#).contains("null"));
        assert_eq!(j(r#"trimspace("  a b \n")"#), r#""a b""#);
        assert_eq!(j(r#"trim("?!hello?!", "!?")"#), r#""hello""#);
        assert_eq!(j(r#"trimprefix("helloworld", "hello")"#), r#""world""#);
        assert_eq!(j(r#"trimsuffix("helloworld", "world")"#), r#""hello""#);
        assert_eq!(j(r#"chomp("hello\n\r\n")"#), r#""hello""#);
        assert_eq!(j(r#"indent(2, "a\nb\n")"#), r#""a\n  b\n  ""#);
        assert_eq!(j(r#"strrev("héllo")"#), r#""olléh""#);
        assert_eq!(j(r#"startswith("hello", "he")"#), "true");
        assert_eq!(j(r#"endswith("hello", "he")"#), "false");
        assert_eq!(j(r#"strcontains("hello", "ll")"#), "true");
    }

    #[test]
    fn substr_semantics() {
        assert_eq!(j(r#"substr("hello world", 1, 4)"#), r#""ello""#);
        assert_eq!(j(r#"substr("🤔🤷", 0, 1)"#), r#""🤔""#);
        assert_eq!(j(r#"substr("hello world", -5, -1)"#), r#""world""#);
        assert_eq!(j(r#"substr("hello", 0, 100)"#), r#""hello""#);
        assert_eq!(j(r#"substr("hello", 10, 2)"#), r#""""#);
        assert_eq!(j(r#"substr("hello", -10, 2)"#), r#""he""#);
    }

    #[test]
    fn replace_and_regexes() {
        assert_eq!(j(r#"replace("1 + 2 + 3", "+", "-")"#), r#""1 - 2 - 3""#);
        assert_eq!(
            j(r#"replace("hello world", "/w.*d/", "everybody")"#),
            r#""hello everybody""#
        );
        assert_eq!(
            j(r#"replace("ab-cd", "/(\\w+)-(\\w+)/", "$2-$1")"#),
            r#""cd-ab""#
        );
        assert_eq!(
            j(r#"regex_replace("2024-01-02", "(\\d+)-(\\d+)-(\\d+)", "$3/$2/$1")"#),
            r#""02/01/2024""#
        );
        assert_eq!(
            j(r#"regex("[a-z]+", "53453453.345345aaabbbccc23454")"#),
            r#""aaabbbccc""#
        );
        assert_eq!(
            j(r#"regex("(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)", "2019-02-01")"#),
            r#"["2019","02","01"]"#
        );
        assert_eq!(
            j(r#"regex("^(?P<scheme>[a-z]+)://(?P<host>[^/]+)", "https://example.com/x")"#),
            r#"{"host":"example.com","scheme":"https"}"#
        );
        assert_eq!(j(r#"regex("(a)|(b)", "b")"#), r#"[null,"b"]"#);
        assert!(err(r#"regex("z", "abc")"#).contains("did not match"));
        assert!(err(r#"regex("(?P<x>a)(b)", "ab")"#).contains("cannot mix"));
        assert!(err(r#"regex("(", "ab")"#).contains("invalid regular expression"));
        assert_eq!(
            j(r#"regexall("[a-z]+", "1234abcd5678efgh9")"#),
            r#"["abcd","efgh"]"#
        );
        assert_eq!(j(r#"length(regexall("[a-z]+", "1234"))"#), "0");
    }

    #[test]
    fn format_verbs() {
        assert_eq!(j(r#"format("Hello, %s!", "Ander")"#), r#""Hello, Ander!""#);
        assert_eq!(
            j(r#"format("There are %d lights", 4)"#),
            r#""There are 4 lights""#
        );
        assert_eq!(
            j(r#"format("%v|%v|%v|%v", "s", 1.5, true, [1, "a"])"#),
            r#""s|1.5|true|[1,\"a\"]""#
        );
        assert_eq!(j(r#"format("%#v", "s")"#), r#""\"s\"""#);
        assert_eq!(j(r#"format("%q", "a\"b")"#), r#""\"a\\\"b\"""#);
        assert_eq!(
            j(r#"format("%.2f|%5.1f|%-5d|%05d|%+d", 3.14159, 2.25, 42, -42, 7)"#),
            r#""3.14|  2.2|42   |-0042|+7""#
        );
        assert_eq!(j(r#"format("%t %%", true)"#), r#""true %""#);
        assert_eq!(
            j(r#"format("%x %X %o %b", 255, 255, 8, 5)"#),
            r#""ff FF 10 101""#
        );
        assert_eq!(j(r#"format("%e", 123456.789)"#), r#""1.234568e+05""#);
        assert_eq!(j(r#"format("%g %g", 0.5, 100000)"#), r#""0.5 100000""#);
        assert_eq!(
            j(r#"format("%g|%.3g|%G", 1234567, 3.14159, 1e-10)"#),
            r#""1.234567e+06|3.14|1E-10""#
        );
        assert_eq!(j(r#"format("%[2]s %[1]s", "a", "b")"#), r#""b a""#);
        assert_eq!(j(r#"format("%.3s", "abcdef")"#), r#""abc""#);
        assert_eq!(
            j(r#"format("%6s|%-6s|", "ab", "cd")"#),
            r#""    ab|cd    |""#
        );
        assert!(err(r#"format("%d", 1.5)"#).contains("fractional"));
        assert!(err(r#"format("%s %s", "a")"#).contains("not enough arguments"));
        assert!(err(r#"format("%s", "a", "b")"#).contains("too many arguments"));
        assert!(err(r#"format("%s", null)"#).contains("null"));
        assert!(err(r#"format("%y", 1)"#).contains("unsupported format verb"));
        assert!(err(r#"format("%", 1)"#).contains("incomplete verb"));
    }

    #[test]
    fn formatlist_iterates_lists() {
        assert_eq!(
            j(r#"formatlist("Hello, %s!", ["Valentina", "Ander"])"#),
            r#"["Hello, Valentina!","Hello, Ander!"]"#
        );
        assert_eq!(
            j(r#"formatlist("%s, %s!", "Salutations", ["Valentina", "Ander"])"#),
            r#"["Salutations, Valentina!","Salutations, Ander!"]"#
        );
        assert_eq!(j(r#"formatlist("%s", "x")"#), r#"["x"]"#);
        assert_eq!(j(r#"formatlist("%s", [])"#), "[]");
        assert!(err(r#"formatlist("%s%s", ["a"], ["b", "c"])"#).contains("inconsistent"));
    }

    #[test]
    fn length_counts() {
        assert_eq!(ev(r#"length("héllo")"#), Value::from(5));
        assert_eq!(ev("length([1, 2])"), Value::from(2));
        assert_eq!(ev("length(var.tags)"), Value::from(2));
        assert!(!ev("length([])").as_number().unwrap().is_f64());
        assert!(err("length(null)").contains("null"));
        assert!(err("length(1)").contains("got a number"));
    }

    // ----- collections ------------------------------------------------------------------------

    #[test]
    fn list_functions() {
        assert_eq!(j("concat([1], [2, 3], [])"), "[1,2,3]");
        assert_eq!(j(r#"contains(["a", "b"], "b")"#), "true");
        assert_eq!(j(r#"contains(["a", "b"], "z")"#), "false");
        assert_eq!(j(r#"element(["a", "b", "c"], 4)"#), r#""b""#);
        assert!(err("element([], 0)").contains("empty list"));
        assert!(err("element([1], -1)").contains("negative"));
        assert_eq!(j(r#"index(["a", "b"], "b")"#), "1");
        assert!(err(r#"index(["a"], "z")"#).contains("not found"));
        assert_eq!(
            j(r#"flatten([["a", "b"], [], ["c", ["d"]]])"#),
            r#"["a","b","c","d"]"#
        );
        assert_eq!(
            j(r#"distinct(["a", "b", "a", "c", "b"])"#),
            r#"["a","b","c"]"#
        );
        assert_eq!(j("reverse([1, 2, 3])"), "[3,2,1]");
        assert_eq!(j(r#"sort(["e", "d", "a", "x"])"#), r#"["a","d","e","x"]"#);
        assert_eq!(j("sort([3, 11, 2])"), r#"["11","2","3"]"#);
        assert_eq!(j(r#"slice(["a", "b", "c", "d"], 1, 3)"#), r#"["b","c"]"#);
        assert!(err("slice([1], 0, 2)").contains("greater than the length"));
        assert!(err("slice([1, 2], 2, 1)").contains("greater than end_index"));
        assert_eq!(j(r#"compact(["a", "", null, "b"])"#), r#"["a","b"]"#);
        assert_eq!(j("one([])"), "null");
        assert_eq!(j(r#"one(["x"])"#), r#""x""#);
        assert!(err("one([1, 2])").contains("zero or one"));
        assert_eq!(j("chunklist([1, 2, 3, 4, 5], 2)"), "[[1,2],[3,4],[5]]");
        assert_eq!(j("coalescelist([], [1], [2])"), "[1]");
        assert!(err("coalescelist([], [])").contains("no non-null"));
    }

    #[test]
    fn range_semantics() {
        assert_eq!(j("range(3)"), "[0,1,2]");
        assert_eq!(j("range(1, 4)"), "[1,2,3]");
        assert_eq!(j("range(1, 8, 2)"), "[1,3,5,7]");
        assert_eq!(j("range(4, 1)"), "[4,3,2]");
        assert_eq!(j("range(1, 4, -1)"), "[]");
        assert_eq!(j("range(0, 1, 0.25)"), "[0,0.25,0.5,0.75]");
        assert!(err("range(0, 1, 0)").contains("step must not be zero"));
        assert!(err("range(2000)").contains("1024"));
        assert!(!ev("range(2)").as_array().unwrap()[1]
            .as_number()
            .unwrap()
            .is_f64());
    }

    #[test]
    fn map_functions() {
        assert_eq!(
            j(r#"merge({a = "b", c = "d"}, {e = "f", c = "z"}, null)"#),
            r#"{"a":"b","c":"z","e":"f"}"#
        );
        assert!(err(r#"merge({a = 1}, [1])"#).contains("must be a map"));
        assert_eq!(
            j(r#"lookup({a = "ay", b = "bee"}, "a", "what?")"#),
            r#""ay""#
        );
        assert_eq!(j(r#"lookup({a = "ay"}, "c", "what?")"#), r#""what?""#);
        assert!(err(r#"lookup({a = "ay"}, "c")"#).contains("failed to find key \"c\""));
        assert_eq!(j(r#"keys({b = 1, a = 2, c = 3})"#), r#"["a","b","c"]"#);
        assert_eq!(j(r#"values({b = 1, a = 2, c = 3})"#), "[2,1,3]");
        assert_eq!(j(r#"zipmap(["a", "b"], [1, 2])"#), r#"{"a":1,"b":2}"#);
        assert!(err(r#"zipmap(["a"], [1, 2])"#).contains("does not match"));
        assert_eq!(j(r#"coalesce("", null, "b", "c")"#), r#""b""#);
        assert_eq!(j("coalesce(null, 1, 2)"), "1");
        assert!(err(r#"coalesce("", null)"#).contains("no non-null"));
    }

    #[test]
    fn number_functions_keep_integers() {
        assert_eq!(ev("sum([1, 2, 3])"), Value::from(6));
        assert_eq!(j("sum([1, 2.5])"), "3.5");
        assert!(err("sum([])").contains("empty"));
        assert_eq!(ev("max(12, 54, 3)"), Value::from(54));
        assert_eq!(ev("min(12, 54, 3)"), Value::from(3));
        assert_eq!(j("max(1.5, 1)"), "1.5");
        assert!(err("max()").contains("at least one"));
        assert_eq!(ev("abs(-12)"), Value::from(12));
        assert_eq!(j("abs(-12.5)"), "12.5");
        assert_eq!(ev("ceil(4.1)"), Value::from(5));
        assert_eq!(ev("floor(4.9)"), Value::from(4));
        assert_eq!(ev("floor(-4.1)"), Value::from(-5));
        assert_eq!(ev("ceil(5)"), Value::from(5));
        assert_eq!(ev("pow(3, 2)"), Value::from(9));
        assert_eq!(j("pow(4, 0.5)"), "2");
        assert_eq!(ev("signum(-13)"), Value::from(-1));
        assert_eq!(ev("log(16, 2)"), Value::from(4));
        assert_eq!(ev(r#"parseint("FF", 16)"#), Value::from(255));
        assert_eq!(ev(r#"parseint("-101", 2)"#), Value::from(-5));
        assert!(err(r#"parseint("12", 1)"#).contains("between 2 and 36"));
        assert!(err(r#"parseint("zz", 10)"#).contains("cannot parse"));
        assert_eq!(ev(r#"alltrue([true, "true"])"#), Value::Bool(true));
        assert_eq!(ev("alltrue([])"), Value::Bool(true));
        assert_eq!(ev("alltrue([true, null])"), Value::Bool(false));
        assert_eq!(ev("anytrue([false, null, true])"), Value::Bool(true));
        assert_eq!(ev("anytrue([])"), Value::Bool(false));
    }

    #[test]
    fn type_conversions() {
        assert_eq!(j("tostring(1)"), r#""1""#);
        assert_eq!(j("tostring(true)"), r#""true""#);
        assert_eq!(j("tostring(null)"), "null");
        assert!(err("tostring([])").contains("cannot convert"));
        assert_eq!(ev(r#"tonumber("42")"#), Value::from(42));
        assert_eq!(j(r#"tonumber("1.5")"#), "1.5");
        assert!(err(r#"tonumber("x")"#).contains("cannot convert"));
        assert!(err(r#"tonumber("inf")"#).contains("cannot convert"));
        assert_eq!(j(r#"tobool("true")"#), "true");
        assert!(err(r#"tobool("yes")"#).contains("cannot convert"));
        assert_eq!(j("tolist([1, 2])"), "[1,2]");
        assert_eq!(j(r#"toset(["c", "a", "b", "a"])"#), r#"["a","b","c"]"#);
        assert_eq!(j(r#"toset(["a", 1])"#), r#"["1","a"]"#);
        assert_eq!(j("tomap({a = 1})"), r#"{"a":1}"#);
        assert_eq!(
            j(r#"setunion(["a", "b"], ["b", "c"], ["d"])"#),
            r#"["a","b","c","d"]"#
        );
        assert_eq!(j(r#"setintersection(["a", "b"], ["b", "c"])"#), r#"["b"]"#);
        assert_eq!(j(r#"setsubtract(["a", "b", "c"], ["a", "c"])"#), r#"["b"]"#);
        assert_eq!(
            j(r#"setproduct(["a", "b"], [1, 2])"#),
            r#"[["a",1],["a",2],["b",1],["b",2]]"#
        );
    }

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

    // ----- env --------------------------------------------------------------------------------

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
