//! Content addresses: what is hashed, what is not, and why.
//!
//! An image's **manifest** is a canonical JSON document of everything that
//! decides the bytes of the image; its **content address** is
//! `sha256:` + hex SHA-256 of the manifest's canonical bytes. Two runs (on
//! any machine, from any directory) with the same inputs give the same
//! address; any change to an input gives a different one.
//!
//! What goes in (manifest version 1):
//! - `address` and `builder`: the image's name and builder type.
//! - `inputs`: the builder attributes whose role is *input* (see
//!   `drivers::schema`), e.g. the base image, disk size, user data.
//! - `provisioners`: in order, each with its type, its input config and
//!   `files`: every file it reads, by path → `sha256:<hex>`. A directory
//!   (a `file` provisioner's source dir, an Ansible playbook's dir) is listed
//!   file by file (`dir/rel` → `sha256:<hex>`, `+x` for executables) plus a
//!   `dir/` entry holding the Merkle root over (relative name, exec bit,
//!   hash), honouring `.imgformignore`.
//! - `files`: files read by functions (`file()`, `templatefile()`, ...).
//! - `parents`: each parent image's content address, so a whole chain is
//!   addressed in one pass before anything is built.
//! - `base`: the id a base image filter (`source_ami_filter`,
//!   `source_image_filter`) resolved to at plan time, when there is one.
//! - `variables`: variables that reach the inputs (sensitive ones as a keyed
//!   digest), so a plan can say which variable changed.
//!
//! What stays out, on purpose: build settings (instance type, names, tags,
//! credentials, timeouts, `only`/`except`, retries, parallelism), absolute
//! paths of the definition dir (paths are relative to it), file mtimes and
//! owners, clock values (non-deterministic functions are refused in inputs
//! at evaluation), and secrets (replaced by a keyed digest).
//!
//! Canonical JSON: object keys sorted by bytes, no whitespace, numbers as
//! serde_json prints them, strings with JSON's minimal escaping.

pub mod ansible;
pub mod hasher;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::addr::ImageAddr;
use crate::config::eval::redact;
use crate::diag::Diagnostic;
use crate::spec::{Attrs, ImageSpec};
pub use hasher::{FileHasher, HashedFile};

pub const MANIFEST_VERSION: u32 = 1;

/// A small text input kept so a later plan can diff it.
#[derive(Debug, Clone)]
pub struct TextInput {
    pub sha256: String,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub json: Value,
    pub bytes: Vec<u8>,
    pub content_address: String,
    /// Text files among the inputs: path → bytes (for the object store).
    pub text_inputs: BTreeMap<String, TextInput>,
}

/// `sha256:<hex>` of bytes.
pub fn content_address_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds the manifest of `spec`. `parents` maps each parent to its content
/// address (parents are fingerprinted first).
pub fn fingerprint(
    spec: &ImageSpec,
    parents: &BTreeMap<ImageAddr, String>,
    hasher: &FileHasher,
) -> Result<Manifest, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut text_inputs = BTreeMap::new();
    let def_dir = spec.def_dir.as_path();

    let mut inputs = spec.inputs.clone();
    for attr in builder_file_inputs(&spec.builder) {
        if let Some(Value::String(path)) = spec.inputs.get(*attr) {
            if crate::spec::ImageRef::find(path).is_empty() {
                let loc = spec
                    .attr_locs
                    .get(*attr)
                    .cloned()
                    .unwrap_or_else(|| spec.loc.clone());
                let mut files = BTreeMap::new();
                match hash_path(hasher, def_dir, path, &mut files, &mut text_inputs) {
                    Ok(()) => {
                        inputs.insert(
                            format!("{attr}@files"),
                            Value::Object(files.into_iter().collect()),
                        );
                    }
                    Err(e) => diags.push(missing_file(&e, attr, path).at(Some(loc))),
                }
            }
        }
    }

    let mut entries = |list: &[crate::spec::ProvisionerSpec]| -> Vec<Value> {
        list.iter()
            .map(|p| provisioner_entry(p, hasher, def_dir, &mut text_inputs, &mut diags))
            .collect()
    };
    let provisioners = entries(&spec.provisioners);
    let tests = entries(&spec.tests);

    // Module folders, whole: templates and files a module's scripts read
    // are inputs too.
    let mut modules = serde_json::Map::new();
    for dir in &spec.modules {
        let mut files = BTreeMap::new();
        match hash_path(hasher, def_dir, dir, &mut files, &mut text_inputs) {
            Ok(()) => {
                modules.insert(
                    relativize_path(dir, def_dir),
                    Value::Object(files.into_iter().collect()),
                );
            }
            Err(e) => diags.push(
                Diagnostic::error(format!("cannot read module folder {dir}: {e}"))
                    .at(Some(spec.loc.clone())),
            ),
        }
    }

    let mut function_files = serde_json::Map::new();
    for (path, hex) in &spec.files_read {
        function_files.insert(
            relativize_path(path, def_dir),
            Value::String(format!("sha256:{hex}")),
        );
        if let Some(f) = hasher.cached(&def_dir.join(path)) {
            if let Some(bytes) = f.text {
                text_inputs.insert(
                    relativize_path(path, def_dir),
                    TextInput {
                        sha256: hex.clone(),
                        bytes,
                    },
                );
            }
        }
    }

    let parents_json: serde_json::Map<String, Value> = spec
        .parents
        .iter()
        .map(|p| {
            (
                p.to_string(),
                Value::String(parents.get(p).cloned().unwrap_or_default()),
            )
        })
        .collect();

    if !diags.is_empty() {
        return Err(diags);
    }

    let mut manifest = json!({
        "imgform_manifest": MANIFEST_VERSION,
        "address": spec.addr.to_string(),
        "builder": spec.builder,
        "inputs": relativize(&Value::Object(inputs.into_iter().collect()), def_dir),
        "provisioners": provisioners,
        "parents": parents_json,
        "files": function_files,
        "modules": modules,
        "variables": Value::Object(spec.variables.clone().into_iter().collect()),
    });
    if !tests.is_empty() {
        // Only when present, so images without tests keep their addresses.
        manifest["tests"] = Value::Array(tests);
    }
    if let Some(base) = &spec.base {
        // The resolved base image id (a filter's answer at plan time): a
        // newer upstream image changes the address.
        manifest["base"] = Value::String(base.id.clone());
    }
    redact_secrets(&mut manifest, &spec.sensitive_values);
    let bytes = canonical_json(&manifest);
    let content_address = content_address_of(&bytes);
    Ok(Manifest {
        json: manifest,
        bytes,
        content_address,
        text_inputs,
    })
}

/// One provisioner in the manifest: type, input config (paths relative) and
/// the hashes of every file it reads.
fn provisioner_entry(
    p: &crate::spec::ProvisionerSpec,
    hasher: &FileHasher,
    def_dir: &Path,
    text_inputs: &mut BTreeMap<String, TextInput>,
    diags: &mut Vec<Diagnostic>,
) -> Value {
    let mut files: BTreeMap<String, Value> = BTreeMap::new();
    for (attr, path) in provisioner_file_refs(&p.kind, &p.config) {
        // Module provisioners read files relative to their module.
        let path = match &p.base_dir {
            Some(base) if !Path::new(&path).is_absolute() => format!("{base}/{path}"),
            _ => path,
        };
        let result = if p.kind == "ansible" && attr == "playbook_file" {
            let roles_path = p.config.get("roles_path").and_then(Value::as_str);
            hash_playbook(hasher, def_dir, &path, roles_path, &mut files, text_inputs)
        } else {
            hash_path(hasher, def_dir, &path, &mut files, text_inputs)
        };
        if let Err(e) = result {
            let loc = p.attr_locs.get(&attr).unwrap_or(&p.loc).clone();
            diags.push(missing_file(&e, &attr, &path).at(Some(loc)));
        }
    }
    let mut entry = json!({ "type": p.kind, "config": relativize(&Value::Object(p.config.clone().into_iter().collect()), def_dir) });
    if !files.is_empty() {
        entry["files"] = Value::Object(files.into_iter().collect());
    }
    entry
}

/// Builder attributes that name a local file whose bytes are an input.
fn builder_file_inputs(builder: &str) -> &'static [&'static str] {
    match builder {
        "amazon-ebs" | "openstack" => &["user_data_file"],
        "chroot" => &["base"],
        _ => &[],
    }
}

/// (attribute, path) of every local file a provisioner reads.
fn provisioner_file_refs(kind: &str, config: &Attrs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut one = |attr: &str| {
        if let Some(Value::String(s)) = config.get(attr) {
            out.push((attr.to_owned(), s.clone()));
        }
    };
    match kind {
        "shell" | "shell-local" => one("script"),
        "file"
            if config.get("direction").and_then(Value::as_str) != Some("download")
                && !config.contains_key("content") =>
        {
            one("source")
        }
        "ansible" => {
            one("playbook_file");
            one("galaxy_file");
        }
        "component" => one("document"),
        _ => {}
    }
    let mut many = |attr: &str| {
        if let Some(Value::Array(items)) = config.get(attr) {
            for item in items.iter().filter_map(Value::as_str) {
                out.push((attr.to_owned(), item.to_owned()));
            }
        }
    };
    match kind {
        "shell" | "shell-local" => many("scripts"),
        "component" => many("document"),
        "file" if config.get("direction").and_then(Value::as_str) != Some("download") => {
            many("sources")
        }
        _ => {}
    }
    out
}

fn missing_file(err: &std::io::Error, attr: &str, path: &str) -> Diagnostic {
    Diagnostic::error(format!(
        "`{attr}` refers to {path}, which cannot be read: {err}"
    ))
    .hint("paths are relative to the definition dir; check the name and that the file exists")
}

/// Hashes a file or directory into `files` (path → `sha256:<hex>`).
fn hash_path(
    hasher: &FileHasher,
    def_dir: &Path,
    path: &str,
    files: &mut BTreeMap<String, Value>,
    text: &mut BTreeMap<String, TextInput>,
) -> std::io::Result<()> {
    let full = resolve(def_dir, path);
    let shown = relativize_path(path, def_dir);
    // Files are the common case: hash directly (one open, one fstat).
    let single = match hasher.hash_file(&full) {
        Ok(f) => Some(f),
        Err(e) if full.is_dir() => {
            let _ = e;
            None
        }
        Err(e) => return Err(e),
    };
    if single.is_none() {
        let tree = hasher::hash_tree(hasher, &full, None)?;
        let prefix = shown.trim_end_matches('/').to_owned();
        files.insert(
            format!("{prefix}/"),
            Value::String(format!("tree:{}", tree.root)),
        );
        for (rel, f) in tree.entries {
            let key = format!("{prefix}/{rel}");
            files.insert(key.clone(), Value::String(f.describe()));
            if let Some(bytes) = f.text.clone() {
                text.insert(
                    key,
                    TextInput {
                        sha256: f.sha256.clone(),
                        bytes,
                    },
                );
            }
        }
    } else if let Some(f) = single {
        files.insert(shown.clone(), Value::String(format!("sha256:{}", f.sha256)));
        if let Some(bytes) = f.text.clone() {
            text.insert(
                shown,
                TextInput {
                    sha256: f.sha256.clone(),
                    bytes,
                },
            );
        }
    }
    Ok(())
}

/// An Ansible playbook pulls in its whole directory (roles, vars, files).
/// When the playbook sits in the definition dir itself, only the playbook and
/// Ansible's well-known folders next to it are taken, so that state files,
/// outputs and unrelated definitions do not count.
fn hash_playbook(
    hasher: &FileHasher,
    def_dir: &Path,
    path: &str,
    roles_path: Option<&str>,
    files: &mut BTreeMap<String, Value>,
    text: &mut BTreeMap<String, TextInput>,
) -> std::io::Result<()> {
    let full = resolve(def_dir, path);
    std::fs::metadata(&full)?;
    let roles: Vec<PathBuf> = roles_path
        .map(|r| r.split(':').map(|p| resolve(def_dir, p)).collect())
        .unwrap_or_default();
    let reach = ansible::playbook_reach(def_dir, &full, &roles);
    if reach.dynamic.is_none() {
        // Exactly what the playbook reaches.
        for f in reach.files.iter().filter(|f| f.is_file()) {
            hash_path(hasher, def_dir, &relative_to(def_dir, f), files, text)?;
        }
        for d in &reach.dirs {
            hash_path(hasher, def_dir, &relative_to(def_dir, d), files, text)?;
        }
        return Ok(());
    }
    // Reach unknown statically: the whole playbook directory.
    let dir = full
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| def_dir.to_path_buf());
    let same = std::fs::canonicalize(&dir).ok() == std::fs::canonicalize(def_dir).ok();
    if !same {
        hash_path(hasher, def_dir, path, files, text)?;
        let dir_rel = Path::new(path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir_rel = if dir_rel.is_empty() {
            ".".to_owned()
        } else {
            dir_rel
        };
        return hash_path(hasher, def_dir, &dir_rel, files, text);
    }
    hash_path(hasher, def_dir, path, files, text)?;
    for known in [
        "roles",
        "group_vars",
        "host_vars",
        "library",
        "module_utils",
        "filter_plugins",
        "collections",
        "files",
        "templates",
        "vars",
        "tasks",
        "handlers",
        "ansible.cfg",
        "requirements.yml",
    ] {
        if dir.join(known).exists() {
            hash_path(hasher, def_dir, known, files, text)?;
        }
    }
    Ok(())
}

fn resolve(def_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        def_dir.join(p)
    }
}

/// `path` (absolute) relative to `dir`, with `..` where needed, forward
/// slashes; `.` for the dir itself.
pub fn relative_to(dir: &Path, path: &Path) -> String {
    let a: Vec<_> = dir.components().collect();
    let b: Vec<_> = path.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_owned(), a.len() - common).collect();
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// A path as it appears in a manifest: relative to the definition dir when
/// inside it, without `./`.
pub fn relativize_path(path: &str, def_dir: &Path) -> String {
    let p = Path::new(path);
    let rel = if p.is_absolute() {
        p.strip_prefix(def_dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    } else {
        p.to_path_buf()
    };
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out.join("/")
    }
}

/// Replaces the absolute definition dir inside any string with `.`, so a
/// moved checkout keeps its addresses.
fn relativize(value: &Value, def_dir: &Path) -> Value {
    let prefix = def_dir.to_string_lossy();
    match value {
        Value::String(s) if s.contains(prefix.as_ref()) => Value::String(
            s.replace(&format!("{prefix}/"), "")
                .replace(prefix.as_ref(), "."),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| relativize(v, def_dir)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), relativize(v, def_dir)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn redact_secrets(value: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            for secret in secrets {
                if secret.len() >= 3 && s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), &redact(secret));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_secrets(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_secrets(v, secrets)),
        _ => {}
    }
}

/// Canonical bytes: sorted keys, no whitespace. Independent of serde_json's
/// map ordering features.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).expect("string serializes"));
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).expect("scalar serializes")),
    }
}

/// Checks that stored manifest bytes still hash to their address (debug
/// builds check every manifest they store).
pub fn verify(manifest: &Manifest) -> bool {
    content_address_of(&manifest.bytes) == manifest.content_address
        && canonical_json(&manifest.json) == manifest.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let v = json!({"b": 1, "a": {"d": [1, "x"], "c": null}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":{"c":null,"d":[1,"x"]},"b":1}"#
        );
    }

    #[test]
    fn paths_are_relative() {
        let dir = Path::new("/home/u/defs");
        assert_eq!(relativize_path("./scripts/a.sh", dir), "scripts/a.sh");
        assert_eq!(
            relativize_path("/home/u/defs/scripts/a.sh", dir),
            "scripts/a.sh"
        );
        assert_eq!(
            relativize(&json!({"x": "/home/u/defs/a"}), dir),
            json!({"x": "a"})
        );
    }
}
