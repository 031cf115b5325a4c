//! Component documents as YAML: the actions and phases imgform supports,
//! reading and checking a document ([`check_document`]: every error names
//! the document's file and line), its parameters, its steps as the runner
//! sees them ([`Step`]), and `{{ name }}` substitution.
//!
//! Nothing here touches the machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use super::fail;
use crate::build::BuildError;
use crate::diag::{Diagnostic, SourceLoc};

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

/// Reads and checks the document `document` (relative to `dir`) before it
/// runs; its diagnostics become one error.
pub(super) fn load(dir: &Path, document: &str) -> Result<Yaml, BuildError> {
    let text = std::fs::read_to_string(dir.join(document))
        .map_err(|e| fail(format!("reading {document}: {e}")))?;
    check_document(&text, Path::new(document)).map_err(|d| {
        fail(
            d.iter()
                .map(|d| d.summary.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// A document's parameters: its declared defaults, then the provisioner's
/// values (`given`).
pub(super) fn parameters(doc: &Yaml, given: &BTreeMap<String, String>) -> BTreeMap<String, String> {
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
    params
}

/// One pass of a step: the loop's name and, inside a loop, this pass's
/// index and value.
pub(super) type Iteration = (String, Option<(String, String)>);

/// A step of a phase, as it runs.
pub(super) struct Step<'d> {
    pub name: String,
    pub action: String,
    /// `onFailure`: `Abort` (the default), `Continue` or `Ignore`.
    pub on_failure: String,
    /// `maxAttempts`, at least 1.
    pub attempts: u64,
    /// `timeoutSeconds`, default two hours.
    pub timeout: Duration,
    /// `inputs`, before substitution.
    pub inputs: Option<&'d Yaml>,
    /// One pass without a `loop`, else one per loop value.
    pub iterations: Vec<Iteration>,
}

impl<'d> Step<'d> {
    pub(super) fn parse(step: &'d Yaml) -> Result<Step<'d>, BuildError> {
        let name = step.get("name").map(yaml_str).unwrap_or_default();
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
        let iterations = iterations(step, &name)?;
        Ok(Step {
            name,
            action,
            on_failure,
            attempts,
            timeout,
            inputs: step.get("inputs"),
            iterations,
        })
    }
}

/// The passes of a step: one without a `loop`, else one per value of its
/// `forEach` list or `for {start, end, updateBy}` range.
fn iterations(step: &Yaml, step_name: &str) -> Result<Vec<Iteration>, BuildError> {
    let Some(l) = step.get("loop") else {
        return Ok(vec![(String::new(), None)]);
    };
    let name = l
        .get("name")
        .map(yaml_str)
        .unwrap_or_else(|| "loop".to_owned());
    let values: Vec<String> = if let Some(items) = l.get("forEach").and_then(Yaml::as_sequence) {
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
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (name.clone(), Some((i.to_string(), v))))
        .collect())
}

/// `{{ name }}` substitution with a lookup.
pub(super) fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    static VAR: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*([\w.\-]+)\s*\}\}").expect("regex"));
    VAR.replace_all(text, |c: &regex::Captures| {
        lookup(&c[1]).unwrap_or_else(|| c[0].to_owned())
    })
    .into_owned()
}

/// A YAML scalar as text (other values as YAML).
pub(super) fn yaml_str(v: &Yaml) -> String {
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
pub(super) fn subst_yaml(v: &Yaml, lookup: &dyn Fn(&str) -> Option<String>) -> Yaml {
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
}
