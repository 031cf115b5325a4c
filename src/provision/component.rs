//! `component`: runs EC2 Image Builder component documents (AWSTOE) on the
//! machine, through its communicator.
//!
//! ```hcl
//! provisioner "component" {
//!   document   = "components/hello.yml"      # or a list, run in order
//!   parameters = { greeting = "hi" }
//! }
//! ```
//!
//! The document schema (`name`, `description`, `schemaVersion`,
//! `parameters`, `phases` → `steps` with `action`, `inputs`, `onFailure`,
//! `maxAttempts`, `timeoutSeconds`, `loop`) and the actions `ExecuteBash`,
//! `ExecuteBinary`, `CreateFile`, `CreateFolder`, `CopyFile`, `MoveFile`,
//! `DeleteFile`, `DeleteFolder`, `SetFilePermissions`, `SetFileOwner`,
//! `Reboot` (skipped with a note: chroots have nothing to reboot, and
//! imgform does not reboot instances mid-build yet),
//! `WebDownload` (http/https, fetched on the machine), `S3Download` and
//! `S3Upload` (by imgform with the AWS SDK, moved through the communicator)
//! and `UpdateOS` (apt/dnf/yum/zypper detected) are supported. Phases `build` and
//! `validate` run during the build. `{{ param }}` and
//! `{{ phase.step.outputs.stdout }}` are substituted as AWS documents them,
//! as are loop variables (`{{ loop.value }}`, `{{ loop.index }}`).
//!
//! Checking happens before anything runs ([`check_document`]): an unknown
//! action or phase is a diagnostic naming the document's file and line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::{base_dir, provisioner_env, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::{Diagnostic, SourceLoc};
use crate::schema::{input, Schema};
use crate::spec::{ImageSpec, ProvisionerSpec};

/// `component`: EC2 Image Builder component documents. The documents'
/// bytes and the parameters are inputs.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "component",
        attrs: &[
            &[input("document").files(), input("parameters")],
            kind::COMMON,
        ],
        blocks: &[],
    },
    runs_on_host: false,
    // A document's `test` phase runs with the image's tests.
    test_phase: true,
    check: |p| {
        kind::required(
            p,
            "document",
            "document = \"components/hello.yml\" (an EC2 Image Builder component document), or a list of them",
        )
        .into_iter()
        .collect()
    },
    files: |p, _| kind::schema_files(&KIND.schema, p),
    validate,
    provisioner: &Component,
};

struct Component;

impl Provisioner for Component {
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        let phases: &[&str] = match stage {
            Stage::Build => BUILD_PHASES,
            Stage::Test => &["test"],
        };
        Box::pin(run(ctx, p, comm, phases))
    }
}

/// The documents parse and use only supported actions and phases (a
/// missing document is reported by the fingerprint, with its place).
fn validate(spec: &ImageSpec, p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let dir = match &p.base_dir {
        Some(d) => spec.def_dir.join(d),
        None => spec.def_dir.clone(),
    };
    let mut diags = Vec::new();
    for document in documents(&p.config) {
        if let Ok(text) = std::fs::read_to_string(dir.join(&document)) {
            if let Err(d) = check_document(&text, Path::new(&document)) {
                diags.extend(d);
            }
        }
    }
    diags
}

pub const ACTIONS: &[&str] = &[
    "ExecuteBash",
    "ExecuteBinary",
    "CreateFile",
    "CreateFolder",
    "CopyFile",
    "MoveFile",
    "DeleteFile",
    "DeleteFolder",
    "SetFilePermissions",
    "SetFileOwner",
    "Reboot",
    "WebDownload",
    "S3Download",
    "S3Upload",
    "UpdateOS",
];

/// Phases run while building; `test` belongs to the test phase.
pub const BUILD_PHASES: &[&str] = &["build", "validate"];
pub const PHASES: &[&str] = &["build", "validate", "test"];

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "component".to_owned(),
        message: message.into(),
    }
}

/// The documents a provisioner names (a string or a list).
pub fn documents(config: &crate::spec::Attrs) -> Vec<String> {
    match config.get("document") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The 1-based line where `needle` first appears in `text` (for diagnostics
/// about YAML values, whose parser keeps no positions).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|i| text[..i].matches('\n').count() + 1)
        .unwrap_or(1)
}

/// Parses and checks a document; errors carry the document's file and line.
pub fn check_document(text: &str, shown: &Path) -> Result<Yaml, Vec<Diagnostic>> {
    let loc = |line: usize| {
        Some(SourceLoc {
            file: shown.to_path_buf(),
            line,
            col: 1,
        })
    };
    let doc: Yaml = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        vec![
            Diagnostic::error(format!("component document is not valid YAML: {e}"))
                .at(loc(line))
                .hint("see the EC2 Image Builder component document reference"),
        ]
    })?;
    let mut diags = Vec::new();
    let Some(phases) = doc.get("phases").and_then(Yaml::as_sequence) else {
        return Err(vec![Diagnostic::error("component document has no `phases` list").at(loc(1)).hint("phases:\n  - name: build\n    steps:\n      - name: Hello\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo hello\"]")]);
    };
    for phase in phases {
        let name = phase.get("name").and_then(Yaml::as_str).unwrap_or_default();
        if !PHASES.contains(&name) {
            diags.push(
                Diagnostic::error(format!("unknown phase `{name}`"))
                    .at(loc(line_of(text, &format!("name: {name}"))))
                    .hint("phases are build, validate and test"),
            );
        }
        for step in phase
            .get("steps")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let step_name = step.get("name").and_then(Yaml::as_str).unwrap_or_default();
            let action = step
                .get("action")
                .and_then(Yaml::as_str)
                .unwrap_or_default();
            if step_name.is_empty() {
                diags.push(
                    Diagnostic::error("a step has no `name`")
                        .at(loc(line_of(text, &format!("action: {action}"))))
                        .hint("every step needs a unique name"),
                );
            }
            if !ACTIONS.contains(&action) {
                let hint = match crate::diag::closest(action, ACTIONS.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? imgform supports {}",
                        ACTIONS.join(", ")
                    ),
                    None => format!("imgform supports {}", ACTIONS.join(", ")),
                };
                diags.push(
                    Diagnostic::error(format!(
                        "unsupported action `{action}` in step `{step_name}`"
                    ))
                    .at(loc(line_of(text, &format!("action: {action}"))))
                    .hint(hint),
                );
            }
            if let Some(on) = step.get("onFailure").and_then(Yaml::as_str) {
                if !matches!(on, "Abort" | "Continue" | "Ignore") {
                    diags.push(
                        Diagnostic::error(format!("onFailure `{on}` in step `{step_name}`"))
                            .at(loc(line_of(text, &format!("onFailure: {on}"))))
                            .hint("onFailure is Abort, Continue or Ignore"),
                    );
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(doc)
    } else {
        Err(diags)
    }
}

/// `{{ name }}` substitution with a lookup.
fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    static VAR: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*([\w.\-]+)\s*\}\}").expect("regex"));
    VAR.replace_all(text, |c: &regex::Captures| {
        lookup(&c[1]).unwrap_or_else(|| c[0].to_owned())
    })
    .into_owned()
}

fn yaml_str(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// Deep substitution in a YAML value.
fn subst_yaml(v: &Yaml, lookup: &dyn Fn(&str) -> Option<String>) -> Yaml {
    match v {
        Yaml::String(s) => Yaml::String(substitute(s, lookup)),
        Yaml::Sequence(items) => {
            Yaml::Sequence(items.iter().map(|i| subst_yaml(i, lookup)).collect())
        }
        Yaml::Mapping(map) => Yaml::Mapping(
            map.iter()
                .map(|(k, v)| (k.clone(), subst_yaml(v, lookup)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// The shell script that carries out a (non-ExecuteBash) action on the machine.
fn action_script(action: &str, inputs: &Yaml) -> Result<String, String> {
    let items: Vec<&Yaml> = match inputs {
        Yaml::Sequence(items) => items.iter().collect(),
        Yaml::Null => Vec::new(),
        other => vec![other],
    };
    let field = |item: &Yaml, key: &str| item.get(key).map(yaml_str);
    let need = |item: &Yaml, key: &str| {
        field(item, key).ok_or_else(|| format!("{action} input needs `{key}`"))
    };
    let mut script = String::from("set -e\n");
    let chmod_chown = |item: &Yaml, path: &str, script: &mut String| {
        if let Some(p) = field(item, "permissions") {
            script.push_str(&format!("chmod {} {}\n", sh_quote(&p), sh_quote(path)));
        }
        if let Some(o) = field(item, "owner") {
            let g = field(item, "group")
                .map(|g| format!(":{g}"))
                .unwrap_or_default();
            script.push_str(&format!(
                "chown {} {}\n",
                sh_quote(&format!("{o}{g}")),
                sh_quote(path)
            ));
        }
    };
    match action {
        "CreateFile" => {
            for item in items {
                let path = need(item, "path")?;
                let content = field(item, "content").unwrap_or_default();
                let overwrite = item
                    .get("overwrite")
                    .and_then(Yaml::as_bool)
                    .unwrap_or(true);
                if !overwrite {
                    script.push_str(&format!("if [ -e {p} ]; then echo 'CreateFile: {p} exists and overwrite is false' >&2; exit 1; fi\n", p = sh_quote(&path)));
                }
                script.push_str(&format!(
                    "mkdir -p \"$(dirname {p})\"\nprintf '%s' {c} > {p}\n",
                    p = sh_quote(&path),
                    c = sh_quote(&content)
                ));
                chmod_chown(item, &path, &mut script);
            }
        }
        "CreateFolder" => {
            for item in items {
                let path = need(item, "path")?;
                script.push_str(&format!("mkdir -p {}\n", sh_quote(&path)));
                chmod_chown(item, &path, &mut script);
            }
        }
        "CopyFile" | "MoveFile" => {
            for item in items {
                let (src, dst) = (need(item, "source")?, need(item, "destination")?);
                let overwrite = item
                    .get("overwrite")
                    .and_then(Yaml::as_bool)
                    .unwrap_or(true);
                if !overwrite {
                    script.push_str(&format!("if [ -e {d} ]; then echo '{action}: {d} exists and overwrite is false' >&2; exit 1; fi\n", d = sh_quote(&dst)));
                }
                let verb = if action == "CopyFile" {
                    "cp -p"
                } else {
                    "mv -f"
                };
                script.push_str(&format!(
                    "mkdir -p \"$(dirname {d})\"\n{verb} {s} {d}\n",
                    s = sh_quote(&src),
                    d = sh_quote(&dst)
                ));
                chmod_chown(item, &dst, &mut script);
            }
        }
        "DeleteFile" => {
            for item in items {
                script.push_str(&format!("rm -f {}\n", sh_quote(&need(item, "path")?)));
            }
        }
        "DeleteFolder" => {
            for item in items {
                let force = item.get("force").and_then(Yaml::as_bool).unwrap_or(false);
                let flag = if force { "-rf" } else { "-d" };
                script.push_str(&format!("rm {flag} {}\n", sh_quote(&need(item, "path")?)));
            }
        }
        "SetFilePermissions" => {
            for item in items {
                let (path, perm) = (need(item, "path")?, need(item, "permissions")?);
                script.push_str(&format!("chmod {} {}\n", sh_quote(&perm), sh_quote(&path)));
            }
        }
        "SetFileOwner" => {
            for item in items {
                let path = need(item, "path")?;
                let owner = need(item, "owner")?;
                let g = field(item, "group")
                    .map(|g| format!(":{g}"))
                    .unwrap_or_default();
                let recursive = if item
                    .get("recursive")
                    .and_then(Yaml::as_bool)
                    .unwrap_or(false)
                {
                    "-R "
                } else {
                    ""
                };
                script.push_str(&format!(
                    "chown {recursive}{} {}\n",
                    sh_quote(&format!("{owner}{g}")),
                    sh_quote(&path)
                ));
            }
        }
        "WebDownload" => {
            for item in items {
                let (src, dst) = (need(item, "source")?, need(item, "destination")?);
                if !(src.starts_with("http://") || src.starts_with("https://")) {
                    return Err(format!("WebDownload source `{src}` is not http(s)"));
                }
                script.push_str(&format!(
                    "mkdir -p \"$(dirname {d})\"\nif command -v curl >/dev/null 2>&1; then curl -fsSL -o {d} {s}; else wget -q -O {d} {s}; fi\n",
                    s = sh_quote(&src),
                    d = sh_quote(&dst)
                ));
                if let Some(sum) = field(item, "checksum") {
                    let algo = field(item, "algorithm")
                        .unwrap_or_else(|| "SHA256".to_owned())
                        .to_ascii_lowercase()
                        .replace('-', "");
                    script.push_str(&format!(
                        "echo {sum}'  '{d} | {algo}sum -c - >/dev/null || {{ echo 'WebDownload: checksum mismatch for {d}' >&2; exit 1; }}\n",
                        sum = sh_quote(&sum),
                        d = sh_quote(&dst)
                    ));
                }
            }
        }
        "UpdateOS" => {
            script.push_str(
                "if command -v apt-get >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade;\n\
                 elif command -v dnf >/dev/null 2>&1; then dnf -y -q upgrade;\n\
                 elif command -v yum >/dev/null 2>&1; then yum -y -q update;\n\
                 elif command -v zypper >/dev/null 2>&1; then zypper --non-interactive update;\n\
                 else echo 'UpdateOS: no apt-get, dnf, yum or zypper in this image' >&2; exit 1; fi\n",
            );
        }
        other => return Err(format!("{other} is not handled here")),
    }
    Ok(script)
}

struct StepResult {
    ok: bool,
    stdout: String,
    message: String,
}

/// Runs a command on the machine and captures its stdout (and streams it).
async fn exec_capture(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    script: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(i32, String), BuildError> {
    let out_file = format!(
        "/tmp/imgform-component-{}.out",
        uuid::Uuid::new_v4().simple()
    );
    let wrapped = format!("( {script}\n) > {out_file}; rc=$?; cat {out_file}; exit $rc");
    let run = comm.exec(&wrapped, env, &ctx.events);
    let code = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r.map_err(|e| super::comm_error("component", "", e))?,
        Err(_) => return Ok((-2, String::new())),
    };
    let local = std::env::temp_dir().join(format!(
        "imgform-component-{}.out",
        uuid::Uuid::new_v4().simple()
    ));
    let stdout = match comm.download(&out_file, &local).await {
        Ok(()) => std::fs::read_to_string(&local).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let _ = std::fs::remove_file(&local);
    let _ = comm
        .exec(&format!("rm -f {out_file}"), &[], &ctx.events)
        .await;
    Ok((code, stdout))
}

async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
    phases: &[&str],
) -> Result<(), BuildError> {
    let dir = base_dir(ctx, p);
    let env = provisioner_env(ctx, p)?;
    let given: BTreeMap<String, String> = match p.config.get("parameters") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    for document in documents(&p.config) {
        let text = std::fs::read_to_string(dir.join(&document))
            .map_err(|e| fail(format!("reading {document}: {e}")))?;
        let doc = check_document(&text, Path::new(&document)).map_err(|d| {
            fail(
                d.iter()
                    .map(|d| d.summary.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let doc_name = doc
            .get("name")
            .map(yaml_str)
            .unwrap_or_else(|| document.clone());
        // Parameters: declared defaults, then the provisioner's values.
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for entry in doc
            .get("parameters")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Yaml::Mapping(map) = entry {
                for (name, decl) in map {
                    let name = yaml_str(name);
                    if let Some(default) = decl.get("default") {
                        params.insert(name.clone(), yaml_str(default));
                    }
                }
            }
        }
        params.extend(given.clone());
        let mut outputs: BTreeMap<String, String> = BTreeMap::new();
        let all_phases = doc
            .get("phases")
            .and_then(Yaml::as_sequence)
            .cloned()
            .unwrap_or_default();
        for phase in &all_phases {
            let phase_name = phase.get("name").map(yaml_str).unwrap_or_default();
            if !phases.contains(&phase_name.as_str()) {
                continue;
            }
            ctx.events
                .step(format!("component {doc_name}: phase {phase_name}"));
            for step in phase
                .get("steps")
                .and_then(Yaml::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if ctx.cancel.is_cancelled() {
                    return Err(BuildError::Cancelled);
                }
                let step_name = step.get("name").map(yaml_str).unwrap_or_default();
                let action = step.get("action").map(yaml_str).unwrap_or_default();
                let on_failure = step
                    .get("onFailure")
                    .map(yaml_str)
                    .unwrap_or_else(|| "Abort".to_owned());
                let attempts = step
                    .get("maxAttempts")
                    .and_then(Yaml::as_u64)
                    .unwrap_or(1)
                    .max(1);
                let timeout = Duration::from_secs(
                    step.get("timeoutSeconds")
                        .and_then(Yaml::as_u64)
                        .unwrap_or(7200),
                );
                // Loop: forEach list or for {start, end, updateBy}.
                let iterations: Vec<(String, Option<(String, String)>)> = match step.get("loop") {
                    None => vec![(String::new(), None)],
                    Some(l) => {
                        let name = l
                            .get("name")
                            .map(yaml_str)
                            .unwrap_or_else(|| "loop".to_owned());
                        let values: Vec<String> = if let Some(items) =
                            l.get("forEach").and_then(Yaml::as_sequence)
                        {
                            items.iter().map(yaml_str).collect()
                        } else if let Some(f) = l.get("for") {
                            let start = f.get("start").and_then(Yaml::as_i64).unwrap_or(0);
                            let end = f.get("end").and_then(Yaml::as_i64).unwrap_or(0);
                            let by = f.get("updateBy").and_then(Yaml::as_i64).unwrap_or(1);
                            if by == 0 {
                                return Err(fail(format!("step {step_name}: loop updateBy is 0")));
                            }
                            let mut v = Vec::new();
                            let mut i = start;
                            while (by > 0 && i <= end) || (by < 0 && i >= end) {
                                v.push(i.to_string());
                                i += by;
                                if v.len() > 10_000 {
                                    break;
                                }
                            }
                            v
                        } else {
                            Vec::new()
                        };
                        values
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (name.clone(), Some((i.to_string(), v))))
                            .collect()
                    }
                };
                let mut step_stdout = String::new();
                let mut step_failed: Option<String> = None;
                for (loop_name, iteration) in &iterations {
                    let lookup = |key: &str| -> Option<String> {
                        if let Some((index, value)) = iteration {
                            if key == format!("{loop_name}.value") {
                                return Some(value.clone());
                            }
                            if key == format!("{loop_name}.index") {
                                return Some(index.clone());
                            }
                        }
                        params
                            .get(key)
                            .cloned()
                            .or_else(|| outputs.get(key).cloned())
                    };
                    let inputs = step
                        .get("inputs")
                        .map(|i| subst_yaml(i, &lookup))
                        .unwrap_or(Yaml::Null);
                    let mut attempt = 0;
                    let result = loop {
                        attempt += 1;
                        ctx.events.step(format!(
                            "component {doc_name}: {phase_name}/{step_name} ({action}){}",
                            if attempt > 1 {
                                format!(", attempt {attempt}")
                            } else {
                                String::new()
                            }
                        ));
                        let r = run_step(ctx, comm, &action, &inputs, &env, timeout).await?;
                        if r.ok || attempt >= attempts {
                            break r;
                        }
                    };
                    step_stdout.push_str(&result.stdout);
                    if !result.ok {
                        step_failed = Some(result.message);
                        break;
                    }
                }
                outputs.insert(
                    format!("{phase_name}.{step_name}.outputs.stdout"),
                    step_stdout.trim_end().to_owned(),
                );
                if let Some(message) = step_failed {
                    match on_failure.as_str() {
                        "Continue" | "Ignore" => ctx.events.step(format!("component {doc_name}: step {step_name} failed ({message}); onFailure: {on_failure}, going on")),
                        _ => return Err(fail(format!("{doc_name}: step {phase_name}/{step_name} ({action}) failed: {message}"))),
                    }
                }
            }
        }
    }
    Ok(())
}

async fn run_step(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    action: &str,
    inputs: &Yaml,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<StepResult, BuildError> {
    let script = match action {
        "ExecuteBash" => {
            if let Some(commands) = inputs.get("commands").and_then(Yaml::as_sequence) {
                commands.iter().map(yaml_str).collect::<Vec<_>>().join("\n")
            } else if let Some(file) = inputs.get("file").map(yaml_str) {
                format!("sh {}", sh_quote(&file))
            } else {
                return Ok(StepResult {
                    ok: false,
                    stdout: String::new(),
                    message: "ExecuteBash needs inputs.commands or inputs.file".to_owned(),
                });
            }
        }
        "ExecuteBinary" => {
            let path = inputs.get("path").map(yaml_str).unwrap_or_default();
            let args: Vec<String> = inputs
                .get("arguments")
                .and_then(Yaml::as_sequence)
                .map(|a| a.iter().map(|v| sh_quote(&yaml_str(v))).collect())
                .unwrap_or_default();
            format!("{} {}", sh_quote(&path), args.join(" "))
        }
        "S3Download" | "S3Upload" => {
            return match s3_action(ctx, comm, action, inputs).await {
                Ok(()) => Ok(StepResult {
                    ok: true,
                    stdout: String::new(),
                    message: String::new(),
                }),
                Err(BuildError::Cancelled) => Err(BuildError::Cancelled),
                Err(e) => Ok(StepResult {
                    ok: false,
                    stdout: String::new(),
                    message: e.to_string(),
                }),
            };
        }
        "Reboot" => {
            let why = if comm.ssh().is_some() {
                "imgform does not reboot build instances in the middle of a build yet"
            } else {
                "this builder has no machine to reboot (a chroot or a build without an instance)"
            };
            ctx.events.step(format!("component: Reboot skipped: {why}"));
            return Ok(StepResult {
                ok: true,
                stdout: String::new(),
                message: String::new(),
            });
        }
        other => match action_script(other, inputs) {
            Ok(s) => s,
            Err(message) => {
                return Ok(StepResult {
                    ok: false,
                    stdout: String::new(),
                    message,
                })
            }
        },
    };
    let (code, stdout) = exec_capture(ctx, comm, &script, env, timeout).await?;
    Ok(StepResult {
        ok: code == 0,
        message: match code {
            0 => String::new(),
            -2 => format!("timed out after {}s", timeout.as_secs()),
            c => format!("exit status {c}"),
        },
        stdout,
    })
}

/// `s3://bucket/key` → (bucket, key).
#[cfg(feature = "aws")]
fn split_s3_url(url: &str) -> Result<(String, String), BuildError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| fail(format!("`{url}` is not an s3://bucket/key URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(fail(format!("`{url}` has no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// S3Download and S3Upload, carried out by imgform with the AWS SDK
/// (standard credential chain; `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`
/// select another endpoint, path-style) and moved to or from the machine
/// through its communicator.
#[cfg(feature = "aws")]
async fn s3_action(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    action: &str,
    inputs: &Yaml,
) -> Result<(), BuildError> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    let client =
        crate::aws::s3_client(&crate::aws::AwsSettings::default(), endpoint.as_deref()).await;
    let items: Vec<&Yaml> = match inputs {
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let tmp = std::env::temp_dir().join(format!("imgform-s3-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tmp).map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    let result = async {
        for item in items {
            let source = item
                .get("source")
                .map(yaml_str)
                .ok_or_else(|| fail(format!("{action} input needs `source`")))?;
            let destination = item
                .get("destination")
                .map(yaml_str)
                .ok_or_else(|| fail(format!("{action} input needs `destination`")))?;
            if action == "S3Download" {
                let (bucket, key) = split_s3_url(&source)?;
                // `prefix/*`: every object below the prefix, into the destination dir.
                let objects: Vec<(String, String)> = if let Some(prefix) = key.strip_suffix('*') {
                    let listed = client
                        .list_objects_v2()
                        .bucket(&bucket)
                        .prefix(prefix)
                        .send()
                        .await
                        .map_err(|e| {
                            fail(format!(
                                "listing {source}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(&e)
                            ))
                        })?;
                    listed
                        .contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .filter(|k| !k.ends_with('/'))
                        .map(|k| {
                            (
                                k.to_owned(),
                                format!(
                                    "{}/{}",
                                    destination.trim_end_matches('/'),
                                    &k[prefix.len()..]
                                ),
                            )
                        })
                        .collect()
                } else if destination.ends_with('/') {
                    let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
                    vec![(key.clone(), format!("{destination}{name}"))]
                } else {
                    vec![(key.clone(), destination.clone())]
                };
                for (key, dest) in objects {
                    ctx.events
                        .step(format!("S3Download s3://{bucket}/{key} → {dest}"));
                    let object = client
                        .get_object()
                        .bucket(&bucket)
                        .key(&key)
                        .send()
                        .await
                        .map_err(|e| {
                            fail(format!(
                                "downloading s3://{bucket}/{key}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(&e)
                            ))
                        })?;
                    let bytes = object
                        .body
                        .collect()
                        .await
                        .map_err(|e| fail(format!("reading s3://{bucket}/{key}: {e}")))?
                        .into_bytes();
                    let local = tmp.join("object");
                    std::fs::write(&local, &bytes)
                        .map_err(|e| fail(format!("writing {}: {e}", local.display())))?;
                    comm.upload(&local, &dest).await.map_err(|e| {
                        super::comm_error("component", &format!("copying to {dest}: "), e)
                    })?;
                }
            } else {
                let (bucket, key) = split_s3_url(&destination)?;
                let files: Vec<String> = match source.strip_suffix("/*") {
                    Some(dir) => {
                        let (code, listing) = exec_capture(
                            ctx,
                            comm,
                            &format!("find {} -type f", sh_quote(dir)),
                            &[],
                            Duration::from_secs(300),
                        )
                        .await?;
                        if code != 0 {
                            return Err(fail(format!("listing {dir} on the machine failed")));
                        }
                        listing.lines().map(str::to_owned).collect()
                    }
                    None => vec![source.clone()],
                };
                let base = source
                    .strip_suffix("/*")
                    .map(|d| format!("{}/", d.trim_end_matches('/')));
                for file in files {
                    let object_key = match &base {
                        Some(b) => format!(
                            "{}{}",
                            if key.is_empty() || key.ends_with('/') {
                                key.clone()
                            } else {
                                format!("{key}/")
                            },
                            file.strip_prefix(b.as_str()).unwrap_or(&file)
                        ),
                        None if key.is_empty() || key.ends_with('/') => {
                            format!("{key}{}", file.rsplit('/').next().unwrap_or(&file))
                        }
                        None => key.clone(),
                    };
                    ctx.events
                        .step(format!("S3Upload {file} → s3://{bucket}/{object_key}"));
                    let local = tmp.join("upload");
                    comm.download(&file, &local).await.map_err(|e| {
                        super::comm_error("component", &format!("reading {file}: "), e)
                    })?;
                    let body = aws_sdk_s3::primitives::ByteStream::from_path(&local)
                        .await
                        .map_err(|e| fail(format!("reading {}: {e}", local.display())))?;
                    client
                        .put_object()
                        .bucket(&bucket)
                        .key(&object_key)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| {
                            fail(format!(
                                "uploading s3://{bucket}/{object_key}: {}",
                                aws_sdk_s3::error::DisplayErrorContext(&e)
                            ))
                        })?;
                }
            }
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[cfg(not(feature = "aws"))]
async fn s3_action(
    _ctx: &BuildContext<'_>,
    _comm: &dyn Communicator,
    action: &str,
    _inputs: &Yaml,
) -> Result<(), BuildError> {
    Err(fail(format!(
        "{action} needs imgform built with the `aws` feature"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_actions_are_located() {
        let doc = "name: x\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: one\n        action: ExecuteBash\n        inputs:\n          commands: [\"true\"]\n      - name: two\n        action: ExecuteBsh\n";
        let err = check_document(doc, Path::new("c.yml")).unwrap_err();
        assert_eq!(err[0].location.as_ref().unwrap().line, 11);
        assert!(err[0].hint.as_deref().unwrap().contains("ExecuteBash"));
    }

    #[test]
    fn substitution() {
        let lookup = |k: &str| (k == "greeting").then(|| "hi".to_owned());
        assert_eq!(
            substitute("say {{ greeting }} {{other}}", &lookup),
            "say hi {{other}}"
        );
    }

    #[test]
    fn scripts_quote_paths() {
        let inputs: Yaml =
            serde_yaml::from_str("- path: /tmp/a b\n  content: it's\n  permissions: '0600'\n")
                .unwrap();
        let s = action_script("CreateFile", &inputs).unwrap();
        assert!(
            s.contains("'/tmp/a b'") && s.contains("chmod '0600'"),
            "{s}"
        );
    }
}
