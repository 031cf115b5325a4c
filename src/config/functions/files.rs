//! File and path functions: `file`, `filebase64`, `filesha256`, `filesha512`,
//! `filebase64sha256`, `filebase64sha512`, `fileexists`, `fileset`, `templatefile`, `abspath`,
//! `basename`, `dirname` and `pathexpand`, and the traced reads behind them.
//!
//! Relative paths resolve against the environment's `base_dir`. Every read of a file's bytes
//! goes through `read_traced`, which records the file in the innermost `with_env` trace under
//! its `trace_key`. `templatefile` renders with the lazy evaluator's template walker and limits
//! how deeply templates nest.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use hcl::eval::{Context, FuncArgs};
use hcl::template::Strip;
use hcl::{Identifier, Map, Template, Value};
use sha2::{Digest, Sha256, Sha512};

use super::args::{sha256_hex, str_value, type_name, want_str};
use super::{declare_functions, with_frame, FnResult};
use crate::config::lazy_eval::eval_template;

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Go's `path.Clean` on forward-slash paths.
fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => match parts.last() {
                Some(last) if *last != ".." => {
                    parts.pop();
                }
                _ => {
                    if !rooted {
                        parts.push("..");
                    }
                }
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

fn path_to_slash(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

fn base_dir(func: &str) -> Result<PathBuf, String> {
    with_frame(func, |frame| frame.env.base_dir.clone())
}

/// Joins `raw` to the base dir unless it is absolute.
fn resolve(base: &Path, raw: &str) -> PathBuf {
    let path = Path::new(raw);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The trace key for `raw`: relative to `base` (forward slashes, cleaned) when inside it,
/// else `raw` as given.
fn trace_key(base: &Path, raw: &str) -> String {
    let base = clean_path(&path_to_slash(base));
    let full = if raw.starts_with('/') {
        clean_path(raw)
    } else {
        clean_path(&format!("{base}/{raw}"))
    };
    if full == base {
        return ".".to_string();
    }
    let prefix = if base == "/" {
        "/".to_string()
    } else {
        format!("{base}/")
    };
    match full.strip_prefix(&prefix) {
        Some(rel) if !rel.is_empty() => rel.to_string(),
        _ => raw.to_string(),
    }
}

/// Reads a file for function `func` and records it in the trace.
fn read_traced(func: &str, raw: &str) -> Result<Vec<u8>, String> {
    let base = base_dir(func)?;
    let full = resolve(&base, raw);
    let relative = !Path::new(raw).is_absolute();
    crate::watch::path(&full);
    if full.is_dir() {
        return Err(format!("{func}: {raw:?} is a directory, not a file"));
    }
    let bytes = std::fs::read(&full).map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            if relative {
                format!("{func}: no such file {raw:?} (relative to the current directory)")
            } else {
                format!("{func}: no such file {raw:?}")
            }
        } else {
            format!("{func}: cannot read {raw:?}: {err}")
        }
    })?;
    let key = trace_key(&base, raw);
    let hash = sha256_hex(&bytes);
    with_frame(func, |frame| {
        frame.trace.files_read.insert(key, hash);
    })?;
    Ok(bytes)
}

fn read_traced_string(func: &str, raw: &str) -> Result<String, String> {
    let bytes = read_traced(func, raw)?;
    String::from_utf8(bytes).map_err(|_| {
        format!("{func}: the contents of {raw:?} are not valid UTF-8; use filebase64 instead")
    })
}

pub(super) fn fn_file(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    read_traced_string("file", &path).map(Value::String)
}

pub(super) fn fn_filebase64(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let bytes = read_traced("filebase64", &path)?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

pub(super) fn fn_filesha256(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let bytes = read_traced("filesha256", &path)?;
    Ok(str_value(sha256_hex(&bytes)))
}

pub(super) fn fn_filesha512(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let bytes = read_traced("filesha512", &path)?;
    Ok(str_value(hex::encode(Sha512::digest(&bytes))))
}

pub(super) fn fn_filebase64sha256(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let bytes = read_traced("filebase64sha256", &path)?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes)),
    ))
}

pub(super) fn fn_filebase64sha512(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let bytes = read_traced("filebase64sha512", &path)?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes)),
    ))
}

pub(super) fn fn_fileexists(args: FuncArgs) -> FnResult {
    let raw = want_str(&args[0], "path")?;
    let full = resolve(&base_dir("fileexists")?, &raw);
    crate::watch::path(&full);
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_file() => Ok(Value::Bool(true)),
        Ok(_) => Err(format!(
            "fileexists: {raw:?} exists but is not a regular file"
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Value::Bool(false)),
        Err(err) => Err(format!("fileexists: cannot inspect {raw:?}: {err}")),
    }
}

pub(super) fn fn_fileset(args: FuncArgs) -> FnResult {
    let raw = want_str(&args[0], "path")?;
    let pattern = want_str(&args[1], "pattern")?;
    let root = resolve(&base_dir("fileset")?, &raw);
    crate::watch::untracked(|| format!("fileset({raw:?}, {pattern:?}) matches a folder tree"));
    let matcher = globset::GlobBuilder::new(&pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| format!("fileset: invalid pattern {pattern:?}: {err}"))?
        .compile_matcher();
    if !root.is_dir() {
        return Ok(Value::Array(Vec::new()));
    }
    // Without `**` a pattern cannot match deeper than its own number of components.
    let max_depth = if pattern.contains("**") {
        usize::MAX
    } else {
        pattern.split('/').count()
    };
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(&root)
        .follow_links(true)
        .min_depth(1)
        .max_depth(max_depth)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&root) else {
            continue;
        };
        let mut parts = Vec::new();
        let mut utf8 = true;
        for comp in rel.components() {
            match comp.as_os_str().to_str() {
                Some(part) => parts.push(part),
                None => utf8 = false,
            }
        }
        if !utf8 {
            continue;
        }
        let rel = parts.join("/");
        if matcher.is_match(&rel) {
            found.push(rel);
        }
    }
    found.sort();
    found.dedup();
    Ok(Value::Array(found.into_iter().map(Value::String).collect()))
}

pub(super) fn fn_abspath(args: FuncArgs) -> FnResult {
    let raw = want_str(&args[0], "path")?;
    let base = path_to_slash(&base_dir("abspath")?);
    let joined = if raw.starts_with('/') {
        raw.replace('\\', "/")
    } else {
        format!("{base}/{}", raw.replace('\\', "/"))
    };
    Ok(str_value(clean_path(&joined)))
}

pub(super) fn fn_basename(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    if path.is_empty() {
        return Ok(str_value("."));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(str_value("/"));
    }
    let base = match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    };
    Ok(str_value(base))
}

pub(super) fn fn_dirname(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    let dir = match path.rfind('/') {
        Some(i) => clean_path(&path[..=i]),
        None => ".".to_string(),
    };
    Ok(str_value(dir))
}

pub(super) fn fn_pathexpand(args: FuncArgs) -> FnResult {
    let path = want_str(&args[0], "path")?;
    if !path.starts_with('~') {
        return Ok(str_value(path));
    }
    let rest = &path[1..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Err(format!(
            "cannot expand {path:?}: only \"~\" and \"~/...\" (the current user's home) \
             are supported"
        ));
    }
    let home = std::env::var("HOME")
        .ok()
        .filter(|home| !home.is_empty())
        .ok_or_else(|| "cannot expand \"~\": HOME is not set".to_string())?;
    Ok(str_value(format!("{}{rest}", home.trim_end_matches('/'))))
}

thread_local! {
    static TEMPLATE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How deeply `templatefile` calls may nest (a template calling `templatefile` on itself would
/// otherwise recurse until the stack overflows).
const MAX_TEMPLATE_DEPTH: usize = 16;

pub(super) fn fn_templatefile(args: FuncArgs) -> FnResult {
    let raw = want_str(&args[0], "path")?;
    let vars = match &args[1] {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "templatefile: vars must be an object, got a {}",
                type_name(other)
            ))
        }
    };
    let source = read_traced_string("templatefile", &raw)?;
    let template = Template::from_str(&source)
        .map_err(|err| format!("templatefile: cannot parse {raw:?}: {err}"))?;

    let mut ctx = Context::new();
    declare_functions(&mut ctx);
    for (name, value) in vars {
        let ident = Identifier::new(name.as_str()).map_err(|_| {
            format!(
                "templatefile: invalid template variable name {name:?}: names must be identifiers"
            )
        })?;
        ctx.declare_var(ident, value);
    }

    let depth = TEMPLATE_DEPTH.with(Cell::get);
    if depth >= MAX_TEMPLATE_DEPTH {
        return Err(format!(
            "templatefile: templates nest more than {MAX_TEMPLATE_DEPTH} levels deep \
             (does {raw:?} include itself?)"
        ));
    }
    struct DepthGuard;
    impl Drop for DepthGuard {
        fn drop(&mut self) {
            let _ = TEMPLATE_DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    TEMPLATE_DEPTH.with(|d| d.set(depth + 1));
    let _guard = DepthGuard;

    let mut out = String::new();
    eval_template(&mut out, &template, &ctx, Strip::None, Strip::None)
        .map_err(|err| format!("templatefile: in {raw:?}: {err}"))?;
    Ok(Value::String(out))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::functions::test_util::*;

    // ----- files ------------------------------------------------------------------------------

    #[test]
    fn file_reads_are_traced_with_normalised_paths() {
        let dir = fixture();
        let defs = dir.path().join("defs");
        let abs_inside = path_to_slash(&defs.join("scripts/y.sh"));
        let abs_outside = path_to_slash(&dir.path().join("shared/common.sh"));
        let src = format!(
            r#"[file("scripts/x.sh"), file("./scripts/x.sh"), file({abs_inside:?}), file("../shared/common.sh"), file({abs_outside:?}), filesha256("scripts/sub/../sub/z.sh"), filebase64("bin.dat")]"#
        );
        let (result, trace) = eval_with(defs_env(&dir), &src);
        let values = result.unwrap();
        let values = values.as_array().unwrap();
        assert_eq!(values[0], Value::from("echo x\n"));
        assert_eq!(values[3], Value::from("common"));
        assert_eq!(values[5], Value::from(sha256_hex(b"echo z\n")));
        assert_eq!(values[6], Value::from("/wCA"));
        let expected: BTreeMap<String, String> = [
            ("scripts/x.sh".to_string(), sha256_hex(b"echo x\n")),
            ("scripts/y.sh".to_string(), sha256_hex(b"echo y\n")),
            ("../shared/common.sh".to_string(), sha256_hex(b"common")),
            (abs_outside.clone(), sha256_hex(b"common")),
            ("scripts/sub/z.sh".to_string(), sha256_hex(b"echo z\n")),
            ("bin.dat".to_string(), sha256_hex(&[0xff, 0x00, 0x80])),
        ]
        .into_iter()
        .collect();
        assert_eq!(trace.files_read, expected);
        assert!(!trace.nondeterministic);
    }

    #[test]
    fn file_errors_are_clear() {
        let dir = fixture();
        let (result, trace) = eval_with(defs_env(&dir), r#"file("scripts/nope.sh")"#);
        let msg = result.unwrap_err();
        assert!(
            msg.contains(
                r#"file: no such file "scripts/nope.sh" (relative to the current directory)"#
            ),
            "{msg}"
        );
        assert!(trace.files_read.is_empty());
        let msg = eval_with(defs_env(&dir), r#"file("scripts")"#)
            .0
            .unwrap_err();
        assert!(msg.contains("is a directory"), "{msg}");
        let msg = eval_with(defs_env(&dir), r#"file("bin.dat")"#)
            .0
            .unwrap_err();
        assert!(msg.contains("not valid UTF-8"), "{msg}");
        let msg = eval_with(defs_env(&dir), r#"file("/nonexistent-imgform/x")"#)
            .0
            .unwrap_err();
        assert!(
            msg.contains(r#"no such file "/nonexistent-imgform/x""#),
            "{msg}"
        );
        assert!(!msg.contains("relative"), "{msg}");
        // try() catches it, and nothing is traced for the failed read.
        let (result, trace) = eval_with(defs_env(&dir), r#"try(file("nope"), "d")"#);
        assert_eq!(result.unwrap(), Value::from("d"));
        assert!(trace.files_read.is_empty());
    }

    #[test]
    fn fileexists_and_fileset() {
        let dir = fixture();
        let ev_in = |src: &str| eval_with(defs_env(&dir), src).0;
        assert_eq!(
            ev_in(r#"fileexists("scripts/x.sh")"#).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            ev_in(r#"fileexists("scripts/nope")"#).unwrap(),
            Value::Bool(false)
        );
        assert!(ev_in(r#"fileexists("scripts")"#)
            .unwrap_err()
            .contains("not a regular file"));
        let fs = |path: &str, pattern: &str| {
            json_encode(&ev_in(&format!("fileset({path:?}, {pattern:?})")).unwrap())
        };
        assert_eq!(fs("scripts", "*.sh"), r#"["x.sh","y.sh"]"#);
        assert_eq!(fs("scripts", "**/*.sh"), r#"["sub/z.sh","x.sh","y.sh"]"#);
        assert_eq!(
            fs(".", "scripts/?.sh"),
            r#"["scripts/x.sh","scripts/y.sh"]"#
        );
        assert_eq!(fs("scripts", "{x,notes}.*"), r#"["notes.txt","x.sh"]"#);
        assert_eq!(fs("scripts", "[a-x].sh"), r#"["x.sh"]"#);
        assert_eq!(fs("scripts", "*"), r#"["notes.txt","x.sh","y.sh"]"#);
        assert_eq!(fs("scripts", "sub"), "[]");
        assert_eq!(fs("missing-dir", "*"), "[]");
        assert!(ev_in(r#"fileset(".", "[")"#)
            .unwrap_err()
            .contains("invalid pattern"));
    }

    #[test]
    fn templatefile_renders_directives_and_traces() {
        let dir = fixture();
        let (result, trace) = eval_with(
            defs_env(&dir),
            r#"templatefile("user-data.tpl", {users = ["ann", "bob"], domain = "ex.org", admin = "root"})"#,
        );
        assert_eq!(
            result.unwrap(),
            Value::from("#cloud-config\n- ann@ex.org\n- bob@ex.org\nadmin: ROOT\nfallback\n")
        );
        assert_eq!(
            trace.files_read.get("user-data.tpl"),
            Some(&sha256_hex(
                &std::fs::read(dir.path().join("defs/user-data.tpl")).unwrap()
            ))
        );
        let ev_in = |src: &str| eval_with(defs_env(&dir), src).0;
        assert_eq!(
            ev_in(r#"templatefile("outer.tpl", {v = 1})"#).unwrap(),
            Value::from("<1>")
        );
        let msg = ev_in(r#"templatefile("loop.tpl", {})"#).unwrap_err();
        assert!(msg.contains("nest more than"), "{msg}");
        let msg = ev_in(r#"templatefile("user-data.tpl", {users = []})"#).unwrap_err();
        assert!(msg.contains("domain") || msg.contains("admin"), "{msg}");
        let msg = ev_in(r#"templatefile("inner.tpl", {"not an ident" = 1})"#).unwrap_err();
        assert!(msg.contains("invalid template variable name"), "{msg}");
        let msg = ev_in(r#"templatefile("inner.tpl", [1])"#).unwrap_err();
        assert!(msg.contains("vars must be an object"), "{msg}");
        assert_eq!(TEMPLATE_DEPTH.with(Cell::get), 0);
    }

    #[test]
    fn path_functions() {
        let dir = fixture();
        let defs = path_to_slash(&dir.path().join("defs"));
        let ev_in = |src: &str| eval_with(defs_env(&dir), src).0.unwrap();
        assert_eq!(
            ev_in(r#"abspath("scripts/../x.sh")"#),
            Value::from(format!("{defs}/x.sh"))
        );
        assert_eq!(ev_in(r#"abspath("/a/./b/")"#), Value::from("/a/b"));
        assert_eq!(j(r#"basename("foo/bar/baz.txt")"#), r#""baz.txt""#);
        assert_eq!(j(r#"basename("foo/bar/")"#), r#""bar""#);
        assert_eq!(j(r#"basename("/")"#), r#""/""#);
        assert_eq!(j(r#"basename("")"#), r#"".""#);
        assert_eq!(j(r#"dirname("foo/bar/baz.txt")"#), r#""foo/bar""#);
        assert_eq!(j(r#"dirname("baz.txt")"#), r#"".""#);
        assert_eq!(j(r#"dirname("/baz.txt")"#), r#""/""#);
        assert_eq!(j(r#"dirname("a//b/../c/d")"#), r#""a/c""#);
        assert_eq!(j(r#"pathexpand("/etc/x")"#), r#""/etc/x""#);
        if let Ok(home) = std::env::var("HOME") {
            if !home.is_empty() {
                assert_eq!(
                    ev(r#"pathexpand("~/.ssh/id_rsa")"#),
                    Value::from(format!("{}/.ssh/id_rsa", home.trim_end_matches('/')))
                );
            }
        }
        assert!(err(r#"pathexpand("~bob/x")"#).contains("only"));
    }

    #[test]
    fn trace_keys() {
        let base = Path::new("/work/defs");
        assert_eq!(trace_key(base, "a.sh"), "a.sh");
        assert_eq!(trace_key(base, "./a/./b.sh"), "a/b.sh");
        assert_eq!(trace_key(base, "/work/defs/a.sh"), "a.sh");
        assert_eq!(trace_key(base, "../x/a.sh"), "../x/a.sh");
        assert_eq!(trace_key(base, "/etc/hosts"), "/etc/hosts");
        assert_eq!(trace_key(Path::new("/"), "/etc/hosts"), "etc/hosts");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/../b"), "/b");
    }
}
