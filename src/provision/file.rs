//! `file`: uploads files and directories to the machine (or downloads with
//! `direction = "download"`), with Packer's trailing-slash rule: a source
//! directory without a trailing slash is put *into* the destination
//! (`dest/<name>`); with one, its contents are. `content` writes a string.
//! imgform adds `mode` (octal string, applied after upload).

use std::path::Path;

use serde_json::Value;

use super::{base_dir, Communicator};
use crate::drivers::{BuildContext, BuildError};
use crate::spec::ProvisionerSpec;

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "file".to_owned(),
        message: message.into(),
    }
}

pub async fn run(
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
        let tmp =
            std::env::temp_dir().join(format!("imgform-content-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, content).map_err(|e| fail(format!("writing content: {e}")))?;
        ctx.events
            .step(format!("file: writing content to {destination}"));
        let result = comm.upload(&tmp, &destination).await;
        let _ = std::fs::remove_file(&tmp);
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
            let meta = std::fs::metadata(&local).map_err(|e| fail(format!("{source}: {e}")))?;
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
