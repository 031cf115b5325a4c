//! `data "sshkey"` (the ivoronin/sshkey plugin): an SSH key pair generated
//! once and kept, so the images that carry its public key keep their
//! content address from run to run. Attributes: `name` (default `packer`,
//! one key per name), `type` (`rsa`, the default, or `ed25519`). Outputs:
//! `public_key`, `private_key_path`, `fingerprint` (imgform's: the public
//! key's SHA-256 one) and `private_key` (secret).
//!
//! The private key lives in `.imgform/data/sshkey/<name>` (mode 0600) in
//! the definition dir — as Packer keeps it in its cache dir — never in the
//! state; deleting it makes a new pair on the next run. The public key's
//! SHA-256 fingerprint is what enters content addresses.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use russh::keys::{Algorithm, HashAlg, PrivateKey};
use serde_json::Value;

use super::{config_str, out, DataKind, OutTy, Outputs, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "sshkey",
        attrs: &[&[input("name").string(), input("type").string()]],
        blocks: &[],
    },
    outputs: &[
        out("public_key", OutTy::String),
        out("private_key_path", OutTy::String),
        out("private_key", OutTy::String),
        out("fingerprint", OutTy::String),
    ],
    resolve,
    summary: |outputs| super::output(outputs, "fingerprint"),
};

fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async move {
        let name = config_str(request.config, "name").unwrap_or("packer");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || name.starts_with('.')
        {
            return Err(format!(
                "name `{name}` must be letters, digits, `-`, `_` and `.` (it names a file)"
            ));
        }
        let algorithm = match config_str(request.config, "type").unwrap_or("rsa") {
            "rsa" => Algorithm::Rsa { hash: None },
            "ed25519" => Algorithm::Ed25519,
            other => return Err(format!("type `{other}` is not `rsa` or `ed25519`")),
        };
        let path = request.keep_dir.join("sshkey").join(name);
        let key = match load(&path)? {
            Some(key) if same_kind(key.algorithm(), &algorithm) => key,
            _ => generate(&path, algorithm)?,
        };
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| format!("encoding the public key: {e}"))?;
        let private = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| format!("encoding the private key: {e}"))?;
        let mut outputs = Outputs::new();
        outputs.insert("public_key".into(), Value::String(public));
        outputs.insert(
            "private_key_path".into(),
            Value::String(path.to_string_lossy().into_owned()),
        );
        outputs.insert("private_key".into(), Value::String(private.to_string()));
        outputs.insert(
            "fingerprint".into(),
            Value::String(key.public_key().fingerprint(HashAlg::Sha256).to_string()),
        );
        Ok(Resolved {
            outputs,
            sensitive: ["private_key".to_owned()].into(),
        })
    })
}

fn same_kind(a: Algorithm, b: &Algorithm) -> bool {
    matches!(
        (a, b),
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) | (Algorithm::Ed25519, Algorithm::Ed25519)
    )
}

fn load(path: &Path) -> Result<Option<PrivateKey>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes())
            .map(Some)
            .map_err(|e| {
                format!(
                    "reading the kept key {}: {e}; delete it to make a new one",
                    path.display()
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// A new key pair, written whole (0600) before it is used.
fn generate(path: &Path, algorithm: Algorithm) -> Result<PrivateKey, String> {
    let key = PrivateKey::random(&mut rand::rng(), algorithm)
        .map_err(|e| format!("generating a key pair: {e}"))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| format!("encoding the private key: {e}"))?;
    let dir = path.parent().expect("a key file has a folder");
    let io = |e: std::io::Error| format!("writing {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(key)
}
