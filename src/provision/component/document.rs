//! Component documents as YAML: the actions and phases imgform supports,
//! reading and checking a document ([`check_document`]: every error names
//! the document's file and line), its parameters, its steps as the runner
//! sees them ([`Step`]), and `{{ name }}` substitution.
//!
//! Nothing here touches the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use super::fail;
use super::positions::Positions;
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

/// The 1-based line where `needle` first appears in `text` (for a
/// document whose layout [`Positions`] cannot follow).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map(|i| text[..i].matches('\n').count() + 1)
        .unwrap_or(1)
}

/// The keys a document, a step and a loop may have.
const DOCUMENT_KEYS: &[&str] = &[
    "name",
    "description",
    "schemaVersion",
    "parameters",
    "constants",
    "phases",
];
const STEP_KEYS: &[&str] = &[
    "name",
    "if",
    "action",
    "timeoutSeconds",
    "onFailure",
    "maxAttempts",
    "inputs",
    "loop",
];
const LOOP_KEYS: &[&str] = &["name", "for", "forEach"];
/// The delimiters AWSTOE allows for a `forEach` list string.
const DELIMITERS: &str = ".,;:\n\t -_";

/// `{{ name }}`, as AWSTOE writes references (spaces inside trimmed).
static REFERENCE: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*([^{}]*?)\s*\}\}").expect("regex"));

/// A chaining reference: `phase.step.inputs[N].key`, `phase.step.inputs.key`
/// or `phase.step.outputs.key`.
static CHAIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^([\w-]+)\.([\w-]+)\.(inputs|outputs)(?:\[(\d+)\])?(?:\.([\w-]+))?$")
        .expect("regex")
});

/// A parsed chaining reference.
#[derive(Debug, PartialEq)]
pub(super) struct Chain<'r> {
    pub phase: &'r str,
    pub step: &'r str,
    pub outputs: bool,
    pub index: Option<usize>,
    pub key: Option<&'r str>,
}

pub(super) fn chain(reference: &str) -> Option<Chain<'_>> {
    let c = CHAIN.captures(reference)?;
    Some(Chain {
        phase: c.get(1)?.as_str(),
        step: c.get(2)?.as_str(),
        outputs: &c[3] == "outputs",
        index: c.get(4).and_then(|m| m.as_str().parse().ok()),
        key: c.get(5).map(|m| m.as_str()),
    })
}

/// The value `inputs[index].key` (or `inputs.key`) of a step's inputs.
pub(super) fn input_value(
    inputs: &Yaml,
    index: Option<usize>,
    key: Option<&str>,
) -> Option<String> {
    let item = match (index, inputs) {
        (Some(i), Yaml::Sequence(items)) => items.get(i)?,
        (Some(_), _) => return None,
        (None, Yaml::Sequence(items)) if items.len() == 1 => &items[0],
        (None, other) => other,
    };
    match key {
        Some(k) => item.get(k).map(yaml_str),
        None => Some(yaml_str(item)),
    }
}

/// The document's variables: parameters (with their defaults) and
/// constants, by name; a constant's value is fixed.
#[derive(Debug, Default)]
pub(super) struct Variables {
    pub parameters: BTreeMap<String, Option<String>>,
    pub constants: BTreeMap<String, String>,
}

/// Every string in a YAML value, with a path for messages.
fn strings<'y>(v: &'y Yaml, out: &mut Vec<&'y str>) {
    match v {
        Yaml::String(s) => out.push(s),
        Yaml::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        Yaml::Mapping(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// The checker of one document: its text, where things are, what it
/// declares, and the diagnostics so far.
struct Checker<'t> {
    text: &'t str,
    shown: &'t Path,
    positions: Positions,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, line: usize, summary: String, hint: impl Into<String>) {
        self.diags.push(
            Diagnostic::error(summary)
                .at(Some(SourceLoc {
                    file: self.shown.to_path_buf(),
                    line,
                    col: 1,
                }))
                .hint(hint),
        );
    }

    /// The line of a step's `key`, or of `fallback` text when the layout
    /// is unknown.
    fn step_key(&self, p: usize, s: usize, key: &str, fallback: &str) -> usize {
        match self.positions.step(p, s) {
            Some(span) => self.positions.key_line(span, key),
            None => line_of(self.text, fallback),
        }
    }

    fn step_text(&self, p: usize, s: usize, needle: &str) -> usize {
        match self.positions.step(p, s) {
            Some(span) => self.positions.line_with(span, needle),
            None => line_of(self.text, needle),
        }
    }

    /// `parameters` and `constants`: lists of `- name: {type, default|value}`.
    fn variables(&mut self, doc: &Yaml) -> Variables {
        let mut vars = Variables::default();
        for section in ["parameters", "constants"] {
            let Some(entries) = doc.get(section) else {
                continue;
            };
            let Some(entries) = entries.as_sequence() else {
                let line = line_of(self.text, &format!("{section}:"));
                self.at(
                    line,
                    format!("`{section}` must be a list"),
                    format!(
                        "{section}:\n  - Name:\n      type: string\n      {}: ...",
                        if section == "constants" {
                            "value"
                        } else {
                            "default"
                        }
                    ),
                );
                continue;
            };
            for entry in entries {
                let Some(map) = entry.as_mapping() else {
                    continue;
                };
                for (name, decl) in map {
                    let name = yaml_str(name);
                    let line = line_of(self.text, &format!("{name}:"));
                    if name.len() < 3
                        || name.len() > 128
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        self.at(
                            line,
                            format!(
                                "`{name}` is not a valid {} name",
                                &section[..section.len() - 1]
                            ),
                            "names are 3 to 128 letters, digits, - and _",
                        );
                    }
                    if vars.parameters.contains_key(&name) || vars.constants.contains_key(&name) {
                        self.at(
                            line,
                            format!("`{name}` is declared twice"),
                            "parameter and constant names are unique in a document",
                        );
                    }
                    let kind = decl.get("type").map(yaml_str).unwrap_or_default();
                    if kind != "string" {
                        self.at(
                            line,
                            format!(
                                "{} `{name}` has type `{kind}`",
                                &section[..section.len() - 1]
                            ),
                            "AWSTOE supports type: string",
                        );
                    }
                    if section == "constants" {
                        match decl.get("value") {
                            Some(v) => {
                                vars.constants.insert(name, yaml_str(v));
                            }
                            None => self.at(
                                line,
                                format!("constant `{name}` has no `value`"),
                                "constants:\n  - Name:\n      type: string\n      value: ...",
                            ),
                        }
                    } else {
                        vars.parameters
                            .insert(name, decl.get("default").map(yaml_str));
                    }
                }
            }
        }
        vars
    }
}

/// Parses and checks a document; errors carry the document's file and the
/// line of the step they are about.
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
    let Some(phases) = doc.get("phases").and_then(Yaml::as_sequence) else {
        return Err(vec![Diagnostic::error("component document has no `phases` list").at(loc(1)).hint("phases:\n  - name: build\n    steps:\n      - name: Hello\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo hello\"]")]);
    };
    let mut c = Checker {
        text,
        shown,
        positions: Positions::scan(text),
        diags: Vec::new(),
    };
    if let Some(map) = doc.as_mapping() {
        for key in map.keys().map(yaml_str) {
            if !DOCUMENT_KEYS.contains(&key.as_str()) {
                let line = line_of(text, &format!("{key}:"));
                c.at(
                    line,
                    format!("unknown document field `{key}`"),
                    format!("a component document has {}", DOCUMENT_KEYS.join(", ")),
                );
            }
        }
    }
    let vars = c.variables(&doc);
    // Steps in document order, for chaining: (phase, step) → inputs.
    let mut earlier: Vec<(String, String, Option<&Yaml>, String)> = Vec::new();
    let all_steps: Vec<(String, String, Option<&Yaml>)> = phases
        .iter()
        .flat_map(|phase| {
            let phase_name = phase.get("name").map(yaml_str).unwrap_or_default();
            phase
                .get("steps")
                .and_then(Yaml::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(move |step| {
                    (
                        phase_name.clone(),
                        step.get("name").map(yaml_str).unwrap_or_default(),
                        step.get("inputs"),
                    )
                })
        })
        .collect();
    let mut phase_names = BTreeSet::new();
    for (p, phase) in phases.iter().enumerate() {
        let name = phase.get("name").map(yaml_str).unwrap_or_default();
        let phase_line = c
            .positions
            .phases
            .get(p)
            .map(|(l, _)| *l)
            .unwrap_or_else(|| line_of(text, &format!("name: {name}")));
        if !PHASES.contains(&name.as_str()) {
            c.at(
                phase_line,
                format!("unknown phase `{name}`"),
                "phases are build, validate and test",
            );
        }
        if !phase_names.insert(name.clone()) {
            c.at(
                phase_line,
                format!("phase `{name}` appears twice"),
                "each phase name is unique in a document",
            );
        }
        let mut step_names = BTreeSet::new();
        for (s, step) in phase
            .get("steps")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let step_name = step.get("name").map(yaml_str).unwrap_or_default();
            let action = step.get("action").map(yaml_str).unwrap_or_default();
            let step_line = c.step_key(p, s, "name", &format!("action: {action}"));
            if step_name.is_empty() {
                c.at(
                    step_line,
                    "a step has no `name`".to_owned(),
                    "every step needs a name, unique in its phase",
                );
            } else if !step_names.insert(step_name.clone()) {
                c.at(
                    step_line,
                    format!("step `{step_name}` appears twice in phase `{name}`"),
                    "step names are unique in a phase",
                );
            }
            if let Some(map) = step.as_mapping() {
                for key in map.keys().map(yaml_str) {
                    if key == "if" {
                        let line = c.step_key(p, s, "if", "if:");
                        for problem in super::condition::check(&step["if"], 0, true) {
                            c.at(line, format!("step `{step_name}`: {problem}"), "if: { binaryExists: apt-get } — or and/or/not over comparisons, with then/else: Execute, Skip or Abort");
                        }
                    } else if !STEP_KEYS.contains(&key.as_str()) {
                        let line = c.step_key(p, s, &key, &format!("{key}:"));
                        c.at(
                            line,
                            format!("unknown field `{key}` in step `{step_name}`"),
                            format!("a step has {}", STEP_KEYS.join(", ")),
                        );
                    }
                }
            }
            if !ACTIONS.contains(&action.as_str()) {
                let hint = match crate::diag::closest(&action, ACTIONS.iter().copied()) {
                    Some(h) => format!(
                        "did you mean `{h}`? imgform supports {}",
                        ACTIONS.join(", ")
                    ),
                    None => format!("imgform supports {}", ACTIONS.join(", ")),
                };
                let line = c.step_key(p, s, "action", &format!("action: {action}"));
                c.at(
                    line,
                    format!("unsupported action `{action}` in step `{step_name}`"),
                    hint,
                );
            }
            if let Some(on) = step.get("onFailure").map(yaml_str) {
                if !matches!(on.as_str(), "Abort" | "Continue" | "Ignore") {
                    let line = c.step_key(p, s, "onFailure", &format!("onFailure: {on}"));
                    c.at(
                        line,
                        format!("onFailure `{on}` in step `{step_name}`"),
                        "onFailure is Abort, Continue or Ignore",
                    );
                }
            }
            if let Some(t) = step.get("timeoutSeconds") {
                if !matches!(t.as_i64(), Some(n) if n > 0 || n == -1) {
                    let line = c.step_key(p, s, "timeoutSeconds", "timeoutSeconds:");
                    c.at(
                        line,
                        format!("timeoutSeconds `{}` in step `{step_name}`", yaml_str(t)),
                        "a positive number of seconds, or -1 for no timeout",
                    );
                }
            }
            if let Some(m) = step.get("maxAttempts") {
                if !matches!(m.as_i64(), Some(n) if n > 0) {
                    let line = c.step_key(p, s, "maxAttempts", "maxAttempts:");
                    c.at(
                        line,
                        format!("maxAttempts `{}` in step `{step_name}`", yaml_str(m)),
                        "a positive number of attempts",
                    );
                }
            }
            let loop_names = check_loop(&mut c, p, s, step, &step_name);
            // Every reference resolves to something AWSTOE substitutes.
            let mut texts = Vec::new();
            if let Some(i) = step.get("inputs") {
                strings(i, &mut texts);
            }
            if let Some(l) = step.get("loop") {
                if let Some(f) = l.get("forEach") {
                    strings(f, &mut texts);
                }
            }
            if let Some(cond) = step.get("if") {
                strings(cond, &mut texts);
            }
            for t in texts {
                for cap in REFERENCE.captures_iter(t) {
                    let reference = &cap[1];
                    if let Some(problem) =
                        unresolved(reference, &vars, &loop_names, &earlier, &all_steps)
                    {
                        let line = c.step_text(p, s, &cap[0]);
                        c.at(
                            line,
                            format!("step `{step_name}`: `{}` {}", &cap[0], problem.0),
                            problem.1,
                        );
                    }
                }
            }
            earlier.push((name.clone(), step_name, step.get("inputs"), action));
        }
    }
    if c.diags.is_empty() {
        Ok(doc)
    } else {
        Err(c.diags)
    }
}

/// Checks a step's `loop`; returns the names its body may use (`loop` and
/// its own name), none without a loop.
fn check_loop(
    c: &mut Checker<'_>,
    p: usize,
    s: usize,
    step: &Yaml,
    step_name: &str,
) -> Vec<String> {
    let Some(l) = step.get("loop") else {
        return Vec::new();
    };
    let line = c.step_key(p, s, "loop", "loop:");
    let mut names = vec!["loop".to_owned()];
    if let Some(map) = l.as_mapping() {
        for key in map.keys().map(yaml_str) {
            if !LOOP_KEYS.contains(&key.as_str()) {
                c.at(
                    line,
                    format!("unknown field `{key}` in the loop of step `{step_name}`"),
                    "a loop has name and one of for or forEach",
                );
            }
        }
    }
    if let Some(n) = l.get("name").map(yaml_str) {
        names.push(n);
    }
    match (l.get("for"), l.get("forEach")) {
        (Some(f), None) => {
            let ints: Vec<Option<i64>> = ["start", "end", "updateBy"]
                .iter()
                .map(|k| f.get(*k).and_then(Yaml::as_i64))
                .collect();
            match ints.as_slice() {
                [Some(start), Some(end), Some(by)] => {
                    if *by == 0 || (end - start).signum() * by.signum() < 0 {
                        c.at(line, format!("the loop of step `{step_name}` never ends (start {start}, end {end}, updateBy {by})"), "updateBy is non-zero and moves start towards end");
                    }
                }
                _ => c.at(line, format!("the `for` loop of step `{step_name}` needs integer start, end and updateBy"), "for:\n  start: 1\n  end: 5\n  updateBy: 1"),
            }
        }
        (None, Some(Yaml::Sequence(_))) => {}
        (None, Some(Yaml::Mapping(m))) => {
            let list = m.get("list");
            if !matches!(list, Some(Yaml::String(_))) {
                c.at(line, format!("the forEach of step `{step_name}` needs `list`, a string"), "forEach:\n  list: a,b,c\n  delimiter: ','");
            }
            if let Some(d) = m.get("delimiter").map(yaml_str) {
                if d.chars().count() != 1 || !DELIMITERS.contains(d.as_str()) {
                    c.at(line, format!("the forEach delimiter `{}` of step `{step_name}`", d.escape_default()), "one character of . , ; : - _ space, tab or newline");
                }
            }
        }
        _ => c.at(line, format!("the loop of step `{step_name}` needs one of `for` or `forEach`"), "forEach: [a, b] or forEach: {list: \"a,b\", delimiter: \",\"} or for: {start, end, updateBy}"),
    }
    names
}

/// Why a reference does not resolve, with a hint; None when it does.
fn unresolved(
    reference: &str,
    vars: &Variables,
    loop_names: &[String],
    earlier: &[(String, String, Option<&Yaml>, String)],
    all_steps: &[(String, String, Option<&Yaml>)],
) -> Option<(String, String)> {
    if vars.parameters.contains_key(reference) || vars.constants.contains_key(reference) {
        return None;
    }
    if let Some((name, member)) = reference.split_once('.') {
        if matches!(member, "index" | "value") && !reference[name.len() + 1..].contains('.') {
            if loop_names.iter().any(|n| n == name) {
                return None;
            }
            if name == "loop" {
                return Some((
                    "is used outside a loop, where AWSTOE leaves it as written".to_owned(),
                    "give the step a loop, or use a parameter or constant".to_owned(),
                ));
            }
        }
    }
    if let Some(ch) = chain(reference) {
        if ch.outputs {
            let Some((_, _, _, action)) = earlier
                .iter()
                .find(|(p, s, _, _)| p == ch.phase && s == ch.step)
            else {
                let later = all_steps
                    .iter()
                    .any(|(p, s, _)| p == ch.phase && s == ch.step);
                return Some((
                    if later {
                        "refers to the outputs of a step that has not run yet".to_owned()
                    } else {
                        format!(
                            "refers to step {}.{}, which the document does not have",
                            ch.phase, ch.step
                        )
                    },
                    "outputs chain from earlier steps: {{ phase.step.outputs.stdout }}".to_owned(),
                ));
            };
            if ch.index.is_some()
                || ch.key != Some("stdout")
                || !matches!(action.as_str(), "ExecuteBash" | "ExecuteBinary")
            {
                return Some((
                    "is an output imgform does not record".to_owned(),
                    "imgform records outputs.stdout of ExecuteBash and ExecuteBinary steps"
                        .to_owned(),
                ));
            }
            return None;
        }
        let Some((_, _, inputs)) = all_steps
            .iter()
            .find(|(p, s, _)| p == ch.phase && s == ch.step)
        else {
            return Some((
                format!(
                    "refers to step {}.{}, which the document does not have",
                    ch.phase, ch.step
                ),
                "chaining names phase.step.inputs[N].key".to_owned(),
            ));
        };
        return match inputs.and_then(|i| input_value(i, ch.index, ch.key)) {
            Some(_) => None,
            None => Some(("names an input that step does not have".to_owned(), "inputs chain as {{ phase.step.inputs[N].key }} (0-based) or {{ phase.step.inputs.key }}".to_owned())),
        };
    }
    let names: Vec<&str> = vars
        .parameters
        .keys()
        .chain(vars.constants.keys())
        .map(String::as_str)
        .collect();
    let hint = match crate::diag::closest(reference, names.iter().copied()) {
        Some(n) => format!("did you mean `{{{{ {n} }}}}`?"),
        None => "references are parameters, constants, loop variables ({{ loop.value }}) and chained inputs/outputs ({{ build.Step.outputs.stdout }})".to_owned(),
    };
    Some((
        "is nothing this document declares: AWSTOE would leave it as written".to_owned(),
        hint,
    ))
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

/// A document's variables as they run: declared parameter defaults, the
/// provisioner's values (`given`; names the document does not declare are
/// ignored, as AWSTOE does), and the constants (never overridden). A
/// parameter with no default and no value is an error.
pub(super) fn variables(
    doc: &Yaml,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, BuildError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut missing = Vec::new();
    for (section, value_key) in [("parameters", "default"), ("constants", "value")] {
        for entry in doc
            .get(section)
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Yaml::Mapping(map) = entry {
                for (name, decl) in map {
                    let name = yaml_str(name);
                    let value = if section == "parameters" {
                        given.get(&name).cloned()
                    } else {
                        None
                    }
                    .or_else(|| decl.get(value_key).map(yaml_str));
                    match value {
                        Some(v) => {
                            out.insert(name, v);
                        }
                        None => missing.push(name),
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(fail(format!(
            "parameter {} has no default and no value: set it in the provisioner's parameters",
            missing.join(", ")
        )))
    }
}

/// One pass of a step: inside a loop, this pass's index and value.
pub(super) type Iteration = Option<(String, String)>;

/// A step of a phase, as it runs.
pub(super) struct Step<'d> {
    pub name: String,
    pub action: String,
    /// `onFailure`: `Abort` (the default), `Continue` or `Ignore`.
    pub on_failure: String,
    /// `maxAttempts`, at least 1.
    pub attempts: u64,
    /// `timeoutSeconds`, default two hours; -1 is none.
    pub timeout: Duration,
    /// `inputs`, before substitution.
    pub inputs: Option<&'d Yaml>,
    /// `if`, before substitution.
    pub condition: Option<&'d Yaml>,
    /// The names the loop's variables go by (`loop`, and its own name).
    pub loop_names: Vec<String>,
    /// One pass without a `loop`, else one per loop value.
    pub iterations: Vec<Iteration>,
}

impl<'d> Step<'d> {
    /// A step with its loop expanded; `lookup` resolves references in a
    /// `forEach` (parameters, constants, chained values).
    pub(super) fn parse(
        step: &'d Yaml,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Step<'d>, BuildError> {
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
        let timeout = match step.get("timeoutSeconds").and_then(Yaml::as_i64) {
            Some(-1) => Duration::from_secs(u64::from(u32::MAX)),
            Some(n) if n > 0 => Duration::from_secs(n as u64),
            _ => Duration::from_secs(7200),
        };
        let mut loop_names = Vec::new();
        if let Some(l) = step.get("loop") {
            loop_names.push("loop".to_owned());
            if let Some(n) = l.get("name").map(yaml_str) {
                loop_names.push(n);
            }
        }
        let iterations = iterations(step, &name, lookup)?;
        Ok(Step {
            name,
            action,
            on_failure,
            attempts,
            timeout,
            inputs: step.get("inputs"),
            condition: step.get("if"),
            loop_names,
            iterations,
        })
    }
}

/// The passes of a step: one without a `loop`, else one per value of its
/// `forEach` list (or delimited `{list, delimiter}` string) or
/// `for {start, end, updateBy}` range.
fn iterations(
    step: &Yaml,
    step_name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Iteration>, BuildError> {
    let Some(l) = step.get("loop") else {
        return Ok(vec![None]);
    };
    let values: Vec<String> = match (l.get("forEach"), l.get("for")) {
        (Some(Yaml::Sequence(items)), _) => items
            .iter()
            .map(|i| substitute(&yaml_str(i), lookup))
            .collect(),
        (Some(Yaml::Mapping(m)), _) => {
            let list = m.get("list").map(yaml_str).unwrap_or_default();
            let list = substitute(&list, lookup);
            let delimiter = m
                .get("delimiter")
                .map(yaml_str)
                .and_then(|d| d.chars().next())
                .unwrap_or(',');
            list.split(delimiter).map(str::to_owned).collect()
        }
        (_, Some(f)) => {
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
        }
        _ => Vec::new(),
    };
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| Some((i.to_string(), v)))
        .collect())
}

/// `{{ name }}` substitution with a lookup.
pub(super) fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    REFERENCE
        .replace_all(text, |c: &regex::Captures| {
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
