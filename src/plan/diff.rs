//! Unified diffs for humans: of two manifests and of changed text inputs.
//! (Which fields changed, as typed reasons, is `Manifest::compare`.)

use serde_json::Value;
use similar::TextDiff;

use crate::fingerprint::Manifest;

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
pub fn manifest_diff(old: &Manifest, new: &Manifest) -> Option<String> {
    let (a, b) = (
        pretty_sorted(&old.to_value()) + "\n",
        pretty_sorted(&new.to_value()) + "\n",
    );
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

    #[test]
    fn text_diffs_are_unified() {
        let d = text_diff("s.sh", b"echo 1\n", b"echo 2\n").unwrap();
        assert!(d.contains("-echo 1") && d.contains("+echo 2"), "{d}");
    }
}
