//! Turning two manifests into typed reasons and unified diffs.

use std::collections::BTreeSet;

use serde_json::Value;
use similar::TextDiff;

use super::model::RebuildReason;

/// The reasons two manifests differ: files as `FileChanged`, variables as
/// `VariableChanged`, parents as `ParentRebuilt`, anything else as
/// `InputChanged` at the deepest differing path.
pub fn manifest_reasons(old: &Value, new: &Value) -> Vec<RebuildReason> {
    let mut out = Vec::new();
    for key in keys(old, new) {
        let (o, n) = (old.get(&key), new.get(&key));
        if o == n {
            continue;
        }
        match key.as_str() {
            "files" => files_changed(o, n, &mut out),
            "modules" => {
                for dir in keys_opt(o, n) {
                    files_changed(
                        o.and_then(|v| v.get(&dir)),
                        n.and_then(|v| v.get(&dir)),
                        &mut out,
                    );
                }
            }
            "variables" => {
                for name in keys_opt(o, n) {
                    if o.and_then(|v| v.get(&name)) != n.and_then(|v| v.get(&name)) {
                        out.push(RebuildReason::VariableChanged { name });
                    }
                }
            }
            "parents" => {
                for name in keys_opt(o, n) {
                    if o.and_then(|v| v.get(&name)) != n.and_then(|v| v.get(&name)) {
                        out.push(RebuildReason::ParentRebuilt { address: name });
                    }
                }
            }
            "inputs" => {
                for name in keys_opt(o, n) {
                    let (a, b) = (o.and_then(|v| v.get(&name)), n.and_then(|v| v.get(&name)));
                    if a == b {
                        continue;
                    }
                    if name.ends_with("@files") {
                        files_changed(a, b, &mut out);
                    } else {
                        leaf_changes(&format!("inputs.{name}"), a, b, &mut out);
                    }
                }
            }
            list @ ("provisioners" | "tests") => {
                let empty = Vec::new();
                let a = o.and_then(Value::as_array).unwrap_or(&empty);
                let b = n.and_then(Value::as_array).unwrap_or(&empty);
                let same_shape = a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| x.get("type") == y.get("type"));
                if !same_shape {
                    let kinds = |items: &Vec<Value>| {
                        Value::Array(
                            items
                                .iter()
                                .filter_map(|p| p.get("type").cloned())
                                .collect(),
                        )
                    };
                    out.push(RebuildReason::InputChanged {
                        path: list.into(),
                        old: Some(kinds(a)),
                        new: Some(kinds(b)),
                    });
                }
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    if x.get("type") != y.get("type") {
                        continue;
                    }
                    files_changed(x.get("files"), y.get("files"), &mut out);
                    let (cx, cy) = (x.get("config"), y.get("config"));
                    if cx != cy {
                        for name in keys_opt(cx, cy) {
                            let (va, vb) =
                                (cx.and_then(|v| v.get(&name)), cy.and_then(|v| v.get(&name)));
                            if va != vb {
                                leaf_changes(
                                    &format!("{list}[{i}].config.{name}"),
                                    va,
                                    vb,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                if !same_shape {
                    // Files of added/removed provisioners.
                    for p in a.iter().skip(b.len()) {
                        files_changed(p.get("files"), None, &mut out);
                    }
                    for p in b.iter().skip(a.len()) {
                        files_changed(None, p.get("files"), &mut out);
                    }
                }
            }
            "base" => out.push(RebuildReason::BaseUpdated {
                old_id: o.and_then(Value::as_str).unwrap_or("(none)").to_owned(),
                new_id: n.and_then(Value::as_str).unwrap_or("(none)").to_owned(),
            }),
            other => leaf_changes(other, o, n, &mut out),
        }
    }
    out
}

fn keys(a: &Value, b: &Value) -> BTreeSet<String> {
    keys_opt(Some(a), Some(b))
}

fn keys_opt(a: Option<&Value>, b: Option<&Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in [a, b].into_iter().flatten() {
        if let Value::Object(map) = v {
            out.extend(map.keys().cloned());
        }
    }
    out
}

fn files_changed(old: Option<&Value>, new: Option<&Value>, out: &mut Vec<RebuildReason>) {
    for path in keys_opt(old, new) {
        let a = old.and_then(|v| v.get(&path)).and_then(Value::as_str);
        let b = new.and_then(|v| v.get(&path)).and_then(Value::as_str);
        // A directory's tree entry changes whenever a file in it does; the
        // files say more.
        if a != b && !path.ends_with('/') {
            out.push(RebuildReason::FileChanged {
                path,
                old: a.map(str::to_owned),
                new: b.map(str::to_owned),
            });
        }
    }
}

/// A value with image references reduced to the parent's address: a change
/// of a parent's content address is reported as `ParentRebuilt`, not as a
/// change of every string that mentions the parent.
fn without_ref_addresses(value: &Value) -> Value {
    match value {
        Value::String(s) => {
            let refs = crate::spec::ImageRef::find(s);
            if refs.is_empty() {
                return value.clone();
            }
            let mut out = String::new();
            let mut last = 0;
            for (addr, _, range) in refs {
                out.push_str(&s[last..range.start]);
                out.push_str(&format!("${{image.{addr}.id}}"));
                last = range.end;
            }
            out.push_str(&s[last..]);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(without_ref_addresses).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_ref_addresses(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn leaf_changes(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<RebuildReason>,
) {
    let (old_plain, new_plain) = (
        old.map(without_ref_addresses),
        new.map(without_ref_addresses),
    );
    if old_plain == new_plain {
        return;
    }
    let (old, new) = (old_plain.as_ref(), new_plain.as_ref());
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for k in keys_opt(old, new) {
                let (x, y) = (a.get(&k), b.get(&k));
                if x != y {
                    leaf_changes(&format!("{path}.{k}"), x, y, out);
                }
            }
        }
        _ => out.push(RebuildReason::InputChanged {
            path: path.to_owned(),
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

/// Pretty JSON with sorted keys (independent of serde_json features).
pub fn pretty_sorted(value: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(value)).unwrap_or_default()
}

/// A unified diff of two manifests, or None if they render the same.
pub fn manifest_diff(old: &Value, new: &Value) -> Option<String> {
    let (a, b) = (pretty_sorted(old) + "\n", pretty_sorted(new) + "\n");
    (a != b).then(|| unified(&a, &b, "manifest (recorded)", "manifest (now)"))
}

/// A unified diff of two text files, or None if not both UTF-8 or equal.
pub fn text_diff(path: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let (a, b) = (
        std::str::from_utf8(old).ok()?,
        std::str::from_utf8(new).ok()?,
    );
    (a != b).then(|| unified(a, b, &format!("a/{path}"), &format!("b/{path}")))
}

fn unified(a: &str, b: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_are_typed() {
        let old = json!({"inputs": {"base": "a"}, "files": {}, "variables": {"v": 1}, "parents": {"null.p": "sha256:1"},
            "provisioners": [{"type": "shell-local", "config": {"inline": ["x"]}, "files": {"s.sh": "sha256:1"}}]});
        let new = json!({"inputs": {"base": "b"}, "files": {}, "variables": {"v": 2}, "parents": {"null.p": "sha256:2"},
            "provisioners": [{"type": "shell-local", "config": {"inline": ["y"]}, "files": {"s.sh": "sha256:2"}}]});
        let r = manifest_reasons(&old, &new);
        assert!(r.contains(&RebuildReason::InputChanged {
            path: "inputs.base".into(),
            old: Some(json!("a")),
            new: Some(json!("b"))
        }));
        assert!(r.contains(&RebuildReason::VariableChanged { name: "v".into() }));
        assert!(r.contains(&RebuildReason::ParentRebuilt {
            address: "null.p".into()
        }));
        assert!(r
            .iter()
            .any(|x| matches!(x, RebuildReason::FileChanged { path, .. } if path == "s.sh")));
        assert!(r.iter().any(|x| matches!(x, RebuildReason::InputChanged { path, .. } if path == "provisioners[0].config.inline")));
    }

    #[test]
    fn text_diffs_are_unified() {
        let d = text_diff("s.sh", b"echo 1\n", b"echo 2\n").unwrap();
        assert!(d.contains("-echo 1") && d.contains("+echo 2"), "{d}");
    }
}
