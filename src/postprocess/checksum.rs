//! `checksum`: for each of `checksum_types` (default `md5`; also `sha1`,
//! `sha224`, `sha256`, `sha384`, `sha512`) and each file of the artifact it
//! is given, appends `<hex digest>\t<file name>\n` to `output` (default
//! `packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum`,
//! relative to the current directory), as Packer does. An artifact without
//! local files (a cloud image, the null builder's) gets no line. Its
//! artifact is the given files plus the checksum files; it keeps its input.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use sha2::Digest as _;

use super::{Files, PostProcessorKind, Step};
use crate::build::BuildError;
use crate::diag::Diagnostic;
use crate::schema::{input, Schema};
use crate::spec::ProvisionerSpec;

pub static KIND: PostProcessorKind = PostProcessorKind {
    schema: Schema {
        kind: "checksum",
        attrs: &[
            &[input("checksum_types").list(), input("output").string()],
            super::COMMON,
        ],
        blocks: &[],
    },
    keeps_input: true,
    forces_keep: true,
    check,
    run: |step| Box::pin(run(step)),
};

const TYPES: &[&str] = &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];
const DEFAULT_OUTPUT: &str = "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum";

fn types(p: &ProvisionerSpec) -> Vec<String> {
    match p.config.get("checksum_types") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => vec!["md5".to_owned()],
    }
}

fn check(p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let mut diags: Vec<Diagnostic> = types(p)
        .into_iter()
        .filter(|t| !TYPES.contains(&t.as_str()))
        .map(|t| {
            Diagnostic::error(format!(
                "post-processor \"checksum\": unknown checksum type \"{t}\""
            ))
            .at(Some(super::loc_of(p, "checksum_types")))
            .hint(format!("use one of {}", TYPES.join(", ")))
        })
        .collect();
    diags.extend(super::check_output(
        p,
        &["BuildName", "BuilderType", "ChecksumType"],
    ));
    diags
}

async fn run(step: Step<'_>) -> Result<Files, BuildError> {
    let template = super::str_attr(step.p, "output").unwrap_or(DEFAULT_OUTPUT);
    let mut made = step.input.clone();
    made.produced = true;
    for checksum_type in types(step.p) {
        let build = super::build_fields(step.ctx);
        let mut fields: Vec<(&str, &str)> = build.iter().map(|(n, v)| (*n, v.as_str())).collect();
        fields.push(("ChecksumType", checksum_type.as_str()));
        for file in &step.input.files {
            let path = super::output_path(&super::render_fields(template, &fields).map_err(fail)?);
            let digest = {
                let (input, t) = (file.clone(), checksum_type.clone());
                tokio::task::spawn_blocking(move || digest_of(&input, &t))
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .map_err(super::io_error(format!("reading {}", file.display())))?
            };
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            append(step.outputs, &path, format!("{digest}\t{name}\n"))
                .map_err(super::io_error(format!("writing {}", path.display())))?;
            if !made.files.contains(&path) {
                made.files.push(path.clone());
            }
            step.ctx.events.step(format!(
                "checksum: {checksum_type} of {name} in {}",
                path.display()
            ));
        }
    }
    Ok(made)
}

fn fail(message: String) -> BuildError {
    BuildError::Provisioner {
        kind: "checksum".to_owned(),
        message,
    }
}

/// Appends `line` to `path`, replacing the file atomically.
fn append(outputs: &mut super::Outputs, path: &Path, line: String) -> std::io::Result<()> {
    let mut bytes = super::Outputs::read(path)?.unwrap_or_default();
    bytes.extend_from_slice(line.as_bytes());
    let mut pending = outputs.create(path)?;
    if let Err(e) = pending.file.write_all(&bytes) {
        super::Outputs::abandon(pending);
        return Err(e);
    }
    outputs.finish(pending).map(|_| ())
}

/// The hex digest of `path`'s bytes.
fn digest_of(path: &Path, checksum_type: &str) -> std::io::Result<String> {
    fn feed(path: &Path, mut update: impl FnMut(&[u8])) -> std::io::Result<()> {
        let mut file = std::fs::File::open(path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            update(&buf[..n]);
        }
    }
    Ok(match checksum_type {
        "md5" => {
            let mut h = md5::Md5::default();
            feed(path, |b| md5::Digest::update(&mut h, b))?;
            hex::encode(md5::Digest::finalize(h))
        }
        "sha1" => {
            let mut h = sha1::Sha1::default();
            feed(path, |b| sha1::Digest::update(&mut h, b))?;
            hex::encode(sha1::Digest::finalize(h))
        }
        "sha224" => {
            let mut h = sha2::Sha224::new();
            feed(path, |b| h.update(b))?;
            hex::encode(h.finalize())
        }
        "sha384" => {
            let mut h = sha2::Sha384::new();
            feed(path, |b| h.update(b))?;
            hex::encode(h.finalize())
        }
        "sha512" => {
            let mut h = sha2::Sha512::new();
            feed(path, |b| h.update(b))?;
            hex::encode(h.finalize())
        }
        _ => {
            let mut h = sha2::Sha256::new();
            feed(path, |b| h.update(b))?;
            hex::encode(h.finalize())
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_match_known_values() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        let d = |t| super::digest_of(&path, t).unwrap();
        assert_eq!(d("md5"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d("sha1"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            d("sha256"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d("sha224").len(), 56);
        assert_eq!(d("sha384").len(), 96);
        assert_eq!(d("sha512").len(), 128);
    }
}
