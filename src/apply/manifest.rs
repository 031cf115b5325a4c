//! Packer's `manifest` post-processor: after an image is recorded, one
//! entry for it is appended to a JSON file (`output`, default
//! `packer-manifest.json`, relative to the current directory as in Packer):
//! `{"builds": [{name, builder_type, build_time, files, artifact_id,
//! packer_run_uuid, custom_data}], "last_run_uuid"}`. Tools written for
//! Packer's manifest read it unchanged. The file is replaced atomically.
//!
//! `shell-local`, `checksum` and `compress` run before the image is
//! recorded (`postprocess`); any other post-processor is not run: each is
//! a warning at plan time ([`unsupported_warnings`]).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::diag::Diagnostic;
use crate::spec::{ImageSpec, ProvisionerSpec};
use crate::state::Artifact;

/// A warning for each post-processor of `spec` that imgform does not run.
pub fn unsupported_warnings(spec: &ImageSpec) -> Vec<Diagnostic> {
    spec.post_processors
        .iter()
        .filter(|p| p.kind != "manifest" && crate::postprocess::kind_of(&p.kind).is_none())
        .map(|p| {
            Diagnostic::warning(format!(
                "{}: post-processor \"{}\" is not run by imgform",
                spec.addr, p.kind
            ))
            .at(Some(p.loc.clone()))
            .hint("imgform runs the manifest, shell-local, checksum and compress post-processors; run other steps on the recorded artifact afterwards (imgform state list --json gives its id)")
        })
        .collect()
}

/// Appends `artifact`'s entry to the file of each `manifest` post-processor
/// of `spec`; returns the files written.
pub fn write_all(
    spec: &ImageSpec,
    artifact: &Artifact,
    run_id: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for p in spec.post_processors.iter().filter(|p| p.kind == "manifest") {
        let path = PathBuf::from(
            p.config
                .get("output")
                .and_then(Value::as_str)
                .unwrap_or("packer-manifest.json"),
        );
        append(&path, entry(spec, p, artifact, run_id)).map_err(|e| {
            format!(
                "post-processor \"manifest\": writing {}: {e}",
                path.display()
            )
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The manifest entry of one built image, as Packer writes it.
fn entry(spec: &ImageSpec, p: &ProvisionerSpec, artifact: &Artifact, run_id: &str) -> Value {
    let flag = |name: &str| p.config.get(name).and_then(Value::as_bool).unwrap_or(false);
    // Packer's artifact id for an AMI is `region:ami-…`.
    let artifact_id = match artifact.attributes.get("region").and_then(Value::as_str) {
        Some(region) if spec.builder.starts_with("amazon") => format!("{region}:{}", artifact.id),
        _ => artifact.id.clone(),
    };
    let files: Vec<Value> = crate::postprocess::local_file(spec, artifact)
        .map(|path| {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let name = if flag("strip_path") {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                path.display().to_string()
            };
            json!({"name": name, "size": size})
        })
        .into_iter()
        .collect();
    let build_time = if flag("strip_time") {
        0
    } else {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let custom: serde_json::Map<String, Value> = match p.config.get("custom_data") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
                )
            })
            .collect(),
        _ => serde_json::Map::new(),
    };
    let mut entry = json!({
        "name": spec.addr.source_name,
        "builder_type": spec.builder,
        "files": files,
        "artifact_id": artifact_id,
        "packer_run_uuid": run_id,
        "custom_data": if custom.is_empty() { Value::Null } else { Value::Object(custom) },
    });
    if build_time != 0 {
        entry["build_time"] = json!(build_time);
    }
    entry
}

/// Reads the manifest at `path` (if any), appends `entry`, and replaces the
/// file atomically, holding `<path>.lock` as Packer does.
fn append(path: &Path, entry: Value) -> std::io::Result<()> {
    let lock = PathBuf::from(format!("{}.lock", path.display()));
    let mut held = None;
    for attempt in 0..3u32 {
        std::thread::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)));
        if let Ok(f) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            held = Some(f);
            break;
        }
    }
    let result = (|| {
        let mut manifest = match std::fs::read(path) {
            Ok(bytes) if !bytes.is_empty() => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Ok(_) => json!({}),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
            Err(e) => return Err(e),
        };
        if !manifest["builds"].is_array() {
            manifest["builds"] = json!([]);
        }
        let run = entry["packer_run_uuid"].clone();
        manifest["builds"]
            .as_array_mut()
            .expect("an array")
            .push(entry);
        manifest["last_run_uuid"] = run;
        let text = serde_json::to_string_pretty(&manifest).expect("JSON");
        crate::paths::write_atomically(path, text.as_bytes())
    })();
    if held.is_some() {
        let _ = std::fs::remove_file(&lock);
    }
    result
}
