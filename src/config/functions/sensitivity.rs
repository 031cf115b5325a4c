//! Sensitivity that follows values through expressions, as Terraform marks
//! them: while an image is evaluated under [`track_sensitive`], a function
//! whose arguments hold a sensitive value returns a sensitive value, and an
//! attribute (or list element) whose expression refers to a sensitive
//! variable or local is sensitive as a whole. What this finds joins the
//! image's sensitive values, which every output scrubs and every manifest,
//! plan file and state object redacts (`crate::sensitive`).
//!
//! Values are strings here (numbers as their text), as elsewhere in
//! `crate::sensitive`; strings shorter than three characters are never
//! treated as secrets (replacing every `a` in a log hides nothing).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::LazyLock;

use hcl::eval::FuncArgs;
use hcl::Value;
use regex::Regex;

const MIN_LEN: usize = 3;

static REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?-u:\b)(var|local|data)\.({n}(?:\.{n}\.{n})?)",
        n = crate::config::NAME
    ))
    .expect("valid regex")
});

struct Tracking {
    /// Sensitive values known so far: the seeds, then what was derived.
    values: Vec<String>,
    derived: Vec<String>,
    /// Names whose reference makes an expression sensitive.
    variables: BTreeSet<String>,
    locals: BTreeSet<String>,
    data: BTreeSet<String>,
}

thread_local! {
    static TRACKING: RefCell<Option<Tracking>> = const { RefCell::new(None) };
}

/// What makes an expression sensitive: these values, and references to
/// these variables, locals and data source outputs (`KIND.NAME.OUTPUT`).
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    pub values: Vec<String>,
    pub variables: BTreeSet<String>,
    pub locals: BTreeSet<String>,
    pub data: BTreeSet<String>,
}

impl Seeds {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.variables.is_empty()
            && self.locals.is_empty()
            && self.data.is_empty()
    }

    /// Whether `text` (an expression's source) refers to a sensitive
    /// variable, local or data source output.
    pub fn refers_to_sensitive(&self, text: &str) -> bool {
        refers(text, &self.variables, &self.locals, &self.data)
    }
}

fn refers(
    text: &str,
    variables: &BTreeSet<String>,
    locals: &BTreeSet<String>,
    data: &BTreeSet<String>,
) -> bool {
    REF.captures_iter(text).any(|c| {
        // `var.x.y` names `x`; `data.KIND.NAME.OUTPUT` all three.
        let first = c[2].split('.').next().unwrap_or_default();
        match &c[1] {
            "var" => variables.contains(first),
            "local" => locals.contains(first),
            _ => data.contains(&c[2]),
        }
    })
}

/// Runs `f` tracking sensitivity from `seeds`; returns its result and the
/// sensitive values derived meanwhile. Without seeds nothing is tracked.
pub fn track_sensitive<R>(seeds: &Seeds, f: impl FnOnce() -> R) -> (R, Vec<String>) {
    if seeds.is_empty() {
        return (f(), Vec::new());
    }
    struct Reset(Option<Tracking>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let outer = self.0.take();
            let _ = TRACKING.try_with(|t| *t.borrow_mut() = outer);
        }
    }
    let outer = TRACKING.with(|t| {
        t.borrow_mut().replace(Tracking {
            values: seeds
                .values
                .iter()
                .filter(|v| v.len() >= MIN_LEN)
                .cloned()
                .collect(),
            derived: Vec::new(),
            variables: seeds.variables.clone(),
            locals: seeds.locals.clone(),
            data: seeds.data.clone(),
        })
    });
    let reset = Reset(outer);
    let result = f();
    let derived = TRACKING
        .with(|t| {
            t.borrow_mut()
                .as_mut()
                .map(|t| std::mem::take(&mut t.derived))
        })
        .unwrap_or_default();
    drop(reset);
    (result, derived)
}

/// Whether any argument holds a sensitive value (anywhere inside it).
pub(super) fn touches(args: &FuncArgs) -> bool {
    TRACKING.with(|t| {
        let t = t.borrow();
        let Some(t) = t.as_ref() else {
            return false;
        };
        args.iter().any(|a| holds(a, &t.values))
    })
}

fn holds(value: &Value, secrets: &[String]) -> bool {
    match value {
        Value::String(s) => secrets.iter().any(|x| s.contains(x.as_str())),
        Value::Number(n) => {
            let n = n.to_string();
            secrets.iter().any(|x| n.contains(x.as_str()))
        }
        Value::Array(items) => items.iter().any(|v| holds(v, secrets)),
        Value::Object(map) => map.values().any(|v| holds(v, secrets)),
        _ => false,
    }
}

/// Makes every string in `value` sensitive.
pub(super) fn mark_value(value: &Value) {
    let mut strings = Vec::new();
    collect(value, &mut strings);
    add(strings, false);
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn collect_json(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_json(v, out)),
        _ => {}
    }
}

/// Adds `strings` to the sensitive values. With `covered_ok`, a string that
/// already holds a known sensitive value is left out: redacting that value
/// inside it hides as much, and keeps the rest of the string (and content
/// addresses computed before values were tracked) as they were.
fn add(strings: Vec<String>, covered_ok: bool) {
    TRACKING.with(|t| {
        if let Some(t) = t.borrow_mut().as_mut() {
            for s in strings {
                let covered = covered_ok && t.values.iter().any(|v| s.contains(v.as_str()));
                if s.len() >= MIN_LEN && !covered && !t.values.contains(&s) {
                    t.values.push(s.clone());
                    t.derived.push(s);
                }
            }
        }
    });
}

/// An attribute was evaluated to `value`: when its expression refers to a
/// sensitive variable or local, the value is sensitive. A list (or object)
/// written out element by element is judged element by element, so that
/// `inline = ["set -e", "echo ${var.token}"]` hides the second line only.
pub fn note_evaluated(expr: &hcl::Expression, value: &serde_json::Value) {
    let active = TRACKING.with(|t| t.borrow().is_some());
    if !active {
        return;
    }
    match (expr, value) {
        (hcl::Expression::Array(items), serde_json::Value::Array(values))
            if items.len() == values.len() =>
        {
            for (item, v) in items.iter().zip(values) {
                note_evaluated(item, v);
            }
        }
        (hcl::Expression::Object(items), serde_json::Value::Object(values))
            if items.len() == values.len() =>
        {
            for ((_, item), v) in items.iter().zip(values.values()) {
                note_evaluated(item, v);
            }
        }
        _ => {
            let text = hcl::format::to_string(expr).unwrap_or_default();
            let sensitive = TRACKING.with(|t| {
                t.borrow()
                    .as_ref()
                    .is_some_and(|t| refers(&text, &t.variables, &t.locals, &t.data))
            });
            if sensitive {
                let mut strings = Vec::new();
                collect_json(value, &mut strings);
                add(strings, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds() -> Seeds {
        Seeds {
            values: vec!["hunter2".into()],
            variables: ["token".to_owned()].into(),
            locals: ["secret_url".to_owned()].into(),
            data: ["amazon-secretsmanager.db.value".to_owned()].into(),
        }
    }

    #[test]
    fn references_are_found_by_name_and_kind() {
        let s = seeds();
        assert!(s.refers_to_sensitive("\"x ${var.token}\""));
        assert!(s.refers_to_sensitive("upper(local.secret_url)"));
        assert!(!s.refers_to_sensitive("var.tokens"));
        assert!(!s.refers_to_sensitive("local.token"));
        assert!(s.refers_to_sensitive("\"${data.amazon-secretsmanager.db.value}\""));
        assert!(!s.refers_to_sensitive("data.amazon-secretsmanager.db.version_id"));
        assert!(s.refers_to_sensitive("var.token.x"));
    }

    #[test]
    fn marked_strings_become_sensitive_once() {
        let ((), derived) = track_sensitive(&seeds(), || {
            mark_value(&Value::String("aGVsbG8=".into()));
            mark_value(&Value::Array(vec![
                Value::String("aGVsbG8=".into()),
                Value::String("ok".into()),
            ]));
        });
        assert_eq!(derived, ["aGVsbG8="]);
        // Outside tracking, nothing is recorded.
        mark_value(&Value::String("outside".into()));
        let ((), none) = track_sensitive(&Seeds::default(), || {
            mark_value(&Value::String("again".into()))
        });
        assert!(none.is_empty());
    }

    #[test]
    fn list_elements_are_judged_one_by_one() {
        let expr: hcl::Expression =
            hcl::from_str::<hcl::Body>("x = [\"set -e\", \"echo ${var.token}\"]")
                .unwrap()
                .attributes()
                .next()
                .unwrap()
                .expr
                .clone();
        // "echo s3cr3t" came from var.token by an expression imgform cannot
        // see into (as if through a conditional): the whole element is
        // sensitive; "echo hunter2" holds a known secret, redacted inside it.
        let value = serde_json::json!(["set -e", "echo s3cr3t"]);
        let ((), derived) = track_sensitive(&seeds(), || note_evaluated(&expr, &value));
        assert_eq!(derived, ["echo s3cr3t"]);
        let value = serde_json::json!(["set -e", "echo hunter2"]);
        let ((), derived) = track_sensitive(&seeds(), || note_evaluated(&expr, &value));
        assert!(derived.is_empty(), "{derived:?}");
    }
}
