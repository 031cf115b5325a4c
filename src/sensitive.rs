//! Sensitive values: how they are kept out of output (scrubbed) and how they
//! enter manifests and saved plans (a keyed digest, so a change of the
//! secret still changes the content address without revealing it).
//!
//! Values shorter than three characters are left alone: replacing every
//! `a` or `1` in a log would destroy it and hide nothing.

use serde_json::Value;

/// The shortest value that is scrubbed or redacted.
const MIN_LEN: usize = 3;

/// How a sensitive value enters a manifest: a short keyed digest.
pub fn redact(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("imgform-sensitive\0{secret}").as_bytes());
    format!("(sensitive:{})", &hex::encode(digest)[..16])
}

/// Replaces every known secret value in `text` with `(sensitive value)`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.len() >= MIN_LEN && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "(sensitive value)");
        }
    }
    out
}

/// Replaces every secret inside every string of `value` by its [`redact`]
/// digest.
pub fn redact_in(value: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            for secret in secrets.iter().filter(|s| s.len() >= MIN_LEN) {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), &redact(secret));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_in(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_in(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrubs_and_redacts() {
        let secrets = vec!["hunter2".to_owned(), "ab".to_owned()];
        assert_eq!(scrub("pw=hunter2 ab", &secrets), "pw=(sensitive value) ab");
        let mut v = json!({"x": ["pw=hunter2"]});
        redact_in(&mut v, &secrets);
        assert_eq!(v["x"][0], format!("pw={}", redact("hunter2")));
    }
}
