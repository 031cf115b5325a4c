//! `file`: uploads files and directories to the machine (or downloads with
//! `direction = "download"`), with Packer's trailing-slash rule: a source
//! directory without a trailing slash is put *into* the destination
//! (`dest/<name>`); with one, its contents are. `content` writes a string.
//! imgform adds `mode` (octal string, applied after upload).

use std::path::Path;

use serde_json::Value;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::{base_dir, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, setting, FileRef, Schema};
use crate::spec::ProvisionerSpec;

/// `file`: uploads (or downloads) files and directories.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "file",
        attrs: &[
            &[
                input("source").copied(),
                input("sources").list().copied(),
                input("content"),
                input("destination").string(),
                input("direction"),
                input("mode"),
                input("owner"),
                setting("generated").ignored("the source must exist when imgform plans: its bytes are part of the content address"),
            ],
            kind::COMMON,
        ],
        blocks: &[],
    },
    runs_on_host: false,
    test_phase: false,
    check,
    files,
    validate: kind::no_validate,
    provisioner: &File,
};

fn check(p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    diags.extend(kind::required(
        p,
        "destination",
        "destination = \"/tmp/app.conf\"",
    ));
    if !["source", "sources", "content"]
        .iter()
        .any(|k| p.config.contains_key(*k))
    {
        diags.push(
            Diagnostic::error("provisioner \"file\" needs `source`, `sources` or `content`")
                .at(Some(p.loc.clone()))
                .hint("source = \"files/app.conf\""),
        );
    }
    diags
}

/// What an upload reads: `source`/`sources`, unless the file is downloaded
/// (then the source is on the machine) or written from `content` (then only
/// `sources` can name local files).
fn files(p: &ProvisionerSpec, _def_dir: &std::path::Path) -> Vec<FileRef> {
    if p.str("direction") == Some("download") {
        return Vec::new();
    }
    let from_content = p.config.contains_key("content");
    kind::schema_files(&KIND.schema, p)
        .into_iter()
        .filter(|f| !(from_content && f.attr == "source"))
        .collect()
}

struct File;

impl Provisioner for File {
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        _stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(run(ctx, p, comm))
    }
}

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "file".to_owned(),
        message: message.into(),
    }
}

async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
) -> Result<(), BuildError> {
    let dir = base_dir(ctx, p);
    let destination = p
        .str("destination")
        .ok_or_else(|| fail("no destination"))?
        .to_owned();
    let mode = p.config.get("mode").and_then(|m| match m {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    if p.str("direction") == Some("download") {
        let source = p.str("source").ok_or_else(|| fail("no source"))?;
        let local = dir.join(&destination);
        ctx.events
            .step(format!("file: downloading {source} to {destination}"));
        return comm
            .download(source, &local)
            .await
            .map_err(|e| super::comm_error("file", "", e));
    }
    let mut uploaded: Vec<String> = Vec::new();
    if let Some(content) = p.str("content") {
        // A private dir: content may hold the value of a secret.
        let dir = crate::paths::PrivateTempDir::new("imgform-content")
            .map_err(|e| fail(format!("creating a temporary dir: {e}")))?;
        let tmp = dir.path().join("content");
        std::fs::write(&tmp, content).map_err(|e| fail(format!("writing content: {e}")))?;
        ctx.events
            .step(format!("file: writing content to {destination}"));
        let result = comm.upload(&tmp, &destination).await;
        drop(dir);
        result.map_err(|e| super::comm_error("file", "", e))?;
        uploaded.push(destination.clone());
    } else {
        let mut sources: Vec<String> = p
            .str("source")
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default();
        sources.extend(p.strings("sources"));
        let many = sources.len() > 1;
        for source in sources {
            let local = dir.join(&source);
            // A link leading out of the definition dir is copied as a link,
            // as it was hashed: the bytes it points at are not the project's.
            let link = crate::paths::link_leading_out(&local, &ctx.spec.def_dir);
            let meta = match link {
                Some(_) => std::fs::symlink_metadata(&local),
                None => std::fs::metadata(&local),
            }
            .map_err(|e| fail(format!("{source}: {e}")))?;
            let name = Path::new(source.trim_end_matches('/'))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let remote = if meta.is_dir() {
                if source.ends_with('/') {
                    destination.clone()
                } else {
                    format!("{}/{name}", destination.trim_end_matches('/'))
                }
            } else if destination.ends_with('/') || many {
                format!("{}/{name}", destination.trim_end_matches('/'))
            } else {
                destination.clone()
            };
            if let Some(target) = link {
                ctx.events.step(format!(
                    "file: linking {remote} to {target} (as {source} is a link)"
                ));
                upload_link(ctx, comm, &target, &remote).await?;
                continue;
            }
            ctx.events
                .step(format!("file: uploading {source} to {remote}"));
            comm.upload(&local, &remote)
                .await
                .map_err(|e| super::comm_error("file", &format!("{source}: "), e))?;
            uploaded.push(remote);
        }
    }
    if let Some(mode) = mode {
        if !mode.chars().all(|c| c.is_digit(8)) {
            return Err(fail(format!("mode `{mode}` is not octal, e.g. \"0644\"")));
        }
        for remote in &uploaded {
            let code = comm
                .exec(&format!("chmod {mode} '{remote}'"), &[], &ctx.events)
                .await
                .map_err(|e| super::comm_error("file", "", e))?;
            if code != 0 {
                return Err(fail(format!("chmod {mode} {remote} failed")));
            }
        }
    }
    Ok(())
}

/// Makes `remote` a symlink to `target` on the machine (replacing a file or
/// link there), its folder created if missing. `mode` does not apply to it:
/// chmod would follow the link.
async fn upload_link(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    target: &str,
    remote: &str,
) -> Result<(), BuildError> {
    let quote = super::ssh::shell_quote;
    let parent = Path::new(remote)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_owned());
    let command = format!(
        "mkdir -p {} && ln -sfn {} {}",
        quote(&parent),
        quote(target),
        quote(remote)
    );
    let code = comm
        .exec(&command, &[], &ctx.events)
        .await
        .map_err(|e| super::comm_error("file", "", e))?;
    if code != 0 {
        return Err(fail(format!(
            "creating the link {remote} -> {target} failed"
        )));
    }
    Ok(())
}
