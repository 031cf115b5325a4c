//! AWSTOE's `if` on a step: logical operators (`and`, `or`, `not`, at most
//! four deep) over comparison operators, with `then`/`else` choosing
//! `Execute`, `Skip` or `Abort` (by default a true condition executes the
//! step and a false one skips it).
//!
//! Comparisons of strings and numbers are decided here, after references
//! are substituted; `binaryExists`, `fileExists` and `folderExists` ask the
//! machine. [`to_shell`] turns a whole condition into one shell test that
//! the runner runs on the machine (exit 0 = true). String comparisons
//! ignore case, as AWSTOE's do; a value that is no number makes a number
//! comparison false. An operator imgform does not evaluate is a plan-time
//! error ([`check`]).

use serde_yaml::Value as Yaml;

use super::actions::sh_quote;
use super::document::yaml_str;

const LOGICAL: &[&str] = &["and", "or", "not"];
/// Operators that take one value.
const UNARY: &[&str] = &[
    "stringIsEmpty",
    "stringIsWhitespace",
    "binaryExists",
    "fileExists",
    "folderExists",
];
/// Operators that compare their value with `value`.
const BINARY: &[&str] = &[
    "stringEquals",
    "stringLessThan",
    "stringLessThanEquals",
    "stringGreaterThan",
    "stringGreaterThanEquals",
    "patternMatches",
    "numberEquals",
    "numberLessThan",
    "numberLessThanEquals",
    "numberGreaterThan",
    "numberGreaterThanEquals",
];
const STEP_ACTIONS: &[&str] = &["Execute", "Skip", "Abort"];

/// What a step does after its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    Execute,
    Skip,
    Abort,
}

fn then_of(s: &str) -> Then {
    match s {
        "Skip" => Then::Skip,
        "Abort" => Then::Abort,
        _ => Then::Execute,
    }
}

/// The step actions for a true and a false condition.
pub(super) fn branches(cond: &Yaml) -> (Then, Then) {
    let get = |k: &str| cond.get(k).map(yaml_str);
    (
        get("then").map(|s| then_of(&s)).unwrap_or(Then::Execute),
        get("else").map(|s| then_of(&s)).unwrap_or(Then::Skip),
    )
}

/// The problems of a condition (empty when imgform can evaluate it).
pub(super) fn check(cond: &Yaml, depth: usize, top: bool) -> Vec<String> {
    let Some(map) = cond.as_mapping() else {
        return vec!["a condition is a mapping such as `binaryExists: apt-get`".to_owned()];
    };
    let mut problems = Vec::new();
    let keys: Vec<String> = map.keys().map(yaml_str).collect();
    for k in ["then", "else"] {
        if let Some(v) = cond.get(k).map(yaml_str) {
            if !top {
                problems.push(format!(
                    "`{k}` belongs to the top of `if`, not inside an operator"
                ));
            } else if !STEP_ACTIONS.contains(&v.as_str()) {
                problems.push(format!("`{k}: {v}` is not Execute, Skip or Abort"));
            }
        }
    }
    let operators: Vec<&String> = keys
        .iter()
        .filter(|k| !matches!(k.as_str(), "then" | "else" | "value"))
        .collect();
    let [op] = operators.as_slice() else {
        problems.push(format!(
            "a condition has exactly one operator (found {})",
            if operators.is_empty() {
                "none".to_owned()
            } else {
                operators
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        return problems;
    };
    let arg = &cond[op.as_str()];
    if LOGICAL.contains(&op.as_str()) {
        if depth >= 4 {
            problems.push("logical operators nest at most 4 deep".to_owned());
            return problems;
        }
        match (op.as_str(), arg) {
            ("not", Yaml::Mapping(_)) => problems.extend(check(arg, depth + 1, false)),
            ("and" | "or", Yaml::Sequence(items)) if !items.is_empty() => {
                for i in items {
                    problems.extend(check(i, depth + 1, false));
                }
            }
            _ => problems.push(format!(
                "`{op}` takes {}",
                if op.as_str() == "not" {
                    "one condition"
                } else {
                    "a list of conditions"
                }
            )),
        }
    } else if UNARY.contains(&op.as_str()) {
        if cond.get("value").is_some() {
            problems.push(format!("`{op}` takes no `value`"));
        }
    } else if BINARY.contains(&op.as_str()) {
        if cond.get("value").is_none() {
            problems.push(format!("`{op}` compares with a `value`"));
        }
        if op.as_str() == "patternMatches" && regex::Regex::new(&yaml_str(arg)).is_err() {
            problems.push(format!("`{}` is not a regular expression", yaml_str(arg)));
        }
    } else {
        problems.push(format!(
            "`{op}` is an operator imgform does not evaluate (it does {}, {}, and, or, not)",
            UNARY.join(", "),
            BINARY.join(", ")
        ));
    }
    problems
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// A checked condition as one shell test (references already substituted).
pub(super) fn to_shell(cond: &Yaml) -> String {
    let Some(op) = cond.as_mapping().and_then(|m| {
        m.keys()
            .map(yaml_str)
            .find(|k| !matches!(k.as_str(), "then" | "else" | "value"))
    }) else {
        return "false".to_owned();
    };
    let arg = &cond[op.as_str()];
    let a = yaml_str(arg);
    let value = cond.get("value").map(yaml_str).unwrap_or_default();
    let truth = |b: bool| if b { "true" } else { "false" }.to_owned();
    let (la, lv) = (a.to_lowercase(), value.to_lowercase());
    let numbers = || number(&a).zip(number(&value));
    match op.as_str() {
        "and" | "or" => {
            let joiner = if op == "and" { " && " } else { " || " };
            let parts: Vec<String> = arg
                .as_sequence()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| format!("( {} )", to_shell(i)))
                        .collect()
                })
                .unwrap_or_default();
            parts.join(joiner)
        }
        "not" => format!("! ( {} )", to_shell(arg)),
        "binaryExists" => format!("command -v {} >/dev/null 2>&1", sh_quote(&a)),
        "fileExists" => format!("[ -f {} ]", sh_quote(&a)),
        "folderExists" => format!("[ -d {} ]", sh_quote(&a)),
        "stringIsEmpty" => truth(a.is_empty()),
        "stringIsWhitespace" => truth(!a.is_empty() && a.chars().all(char::is_whitespace)),
        // "the operator's string is less than `value`": argument OP value.
        "stringEquals" => truth(la == lv),
        "stringLessThan" => truth(la < lv),
        "stringLessThanEquals" => truth(la <= lv),
        "stringGreaterThan" => truth(la > lv),
        "stringGreaterThanEquals" => truth(la >= lv),
        "patternMatches" => truth(regex::Regex::new(&a).is_ok_and(|r| r.is_match(&value))),
        "numberEquals" => truth(numbers().is_some_and(|(a, v)| a == v)),
        "numberLessThan" => truth(numbers().is_some_and(|(a, v)| a < v)),
        "numberLessThanEquals" => truth(numbers().is_some_and(|(a, v)| a <= v)),
        "numberGreaterThan" => truth(numbers().is_some_and(|(a, v)| a > v)),
        "numberGreaterThanEquals" => truth(numbers().is_some_and(|(a, v)| a >= v)),
        _ => "false".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Yaml {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn conditions_become_shell_tests() {
        let c = y("and:\n  - binaryExists: apt-get\n  - not:\n      fileExists: /etc/x\n");
        assert!(check(&c, 0, true).is_empty());
        assert_eq!(
            to_shell(&c),
            "( command -v 'apt-get' >/dev/null 2>&1 ) && ( ! ( [ -f '/etc/x' ] ) )"
        );
        assert_eq!(
            to_shell(&y("stringEquals: Debian\nvalue: debian\n")),
            "true"
        );
        assert_eq!(to_shell(&y("numberLessThan: 2\nvalue: '10'\n")), "true");
        assert_eq!(to_shell(&y("numberLessThan: 2\nvalue: a10\n")), "false");
        assert_eq!(
            branches(&y("binaryExists: x\nthen: Abort\n")),
            (Then::Abort, Then::Skip)
        );
        assert!(!check(&y("osIs: linux\n"), 0, true).is_empty());
        assert!(!check(&y("stringEquals: a\n"), 0, true).is_empty());
        assert!(!check(&y("binaryExists: x\nthen: Run\n"), 0, true).is_empty());
        let deep =
            y("not:\n  not:\n    not:\n      not:\n        not:\n          binaryExists: x\n");
        assert!(!check(&deep, 0, true).is_empty());
    }
}
