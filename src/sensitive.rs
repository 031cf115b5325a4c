//! Sensitive values: how they are kept out of output (scrubbed) and how they
//! enter manifests and saved plans (a keyed digest, so a change of the
//! secret still changes the content address without revealing it).
//!
//! Values shorter than three characters are left alone: replacing every
//! `a` or `1` in a log would destroy it and hide nothing.

use serde_json::Value;

/// The shortest value that is scrubbed or redacted.
const MIN_LEN: usize = 3;

/// The key of [`redact`]'s digests, set once per process by
/// [`use_project_key`]. Without one (unit tests, a project with no secrets),
/// a fixed key is used.
static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// The environment variable that holds the digest key (CI).
pub const KEY_ENV: &str = "IMGFORM_SENSITIVE_KEY";

/// Where a project keeps its digest key when `IMGFORM_SENSITIVE_KEY` is not
/// set: beside the definitions, never in the state.
pub const KEY_FILE: &str = ".imgform/sensitive.key";

/// Sets the digest key of this process: `IMGFORM_SENSITIVE_KEY`, else the
/// project's key file (made with 32 random bytes, mode 0600, on first use).
/// Someone holding the state cannot check a guessed secret against its
/// digest without the key.
pub fn use_project_key(def_dir: &std::path::Path) -> std::io::Result<()> {
    if KEY.get().is_some() {
        return Ok(());
    }
    let key = match std::env::var(KEY_ENV) {
        Ok(k) if !k.is_empty() => k.into_bytes(),
        _ => project_key(&def_dir.join(KEY_FILE))?,
    };
    let _ = KEY.set(key);
    Ok(())
}

fn project_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().expect("the key file has a folder");
    std::fs::create_dir_all(dir)?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let text = hex::encode(bytes);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(tmp, "{text}")?;
    tmp.as_file().sync_all()?;
    // Two runs racing: the first key written wins, both use it.
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(text.into_bytes()),
        Err(_) => Ok(std::fs::read_to_string(path)?.trim().as_bytes().to_vec()),
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// How a sensitive value enters a manifest: a short keyed digest (HMAC
/// under the project's key), so that a changed secret changes the content
/// address, and the digest does not let anyone test a guess without the key.
pub fn redact(secret: &str) -> String {
    let digest = match KEY.get() {
        Some(key) => hmac_sha256(key, secret.as_bytes()).to_vec(),
        None => {
            use sha2::{Digest, Sha256};
            Sha256::digest(format!("imgform-sensitive\0{secret}").as_bytes()).to_vec()
        }
    };
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
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn scrubs_and_redacts() {
        let secrets = vec!["hunter2".to_owned(), "ab".to_owned()];
        assert_eq!(scrub("pw=hunter2 ab", &secrets), "pw=(sensitive value) ab");
        let mut v = json!({"x": ["pw=hunter2"]});
        redact_in(&mut v, &secrets);
        assert_eq!(v["x"][0], format!("pw={}", redact("hunter2")));
    }
}
