//! The `null` builder, as Packer's: it produces nothing but runs its
//! provisioners. With `communicator = "none"` (the default) only host-side
//! provisioners (`shell-local`) can run; with `communicator = "ssh"` they run
//! on the configured `ssh_host`, whose host key must be known (see
//! `provision::ssh`). Its artifact id is derived from the content
//! address (`null:<first 12 hex>`), so the same inputs give the same id, and
//! it always "exists".

use crate::diag::Diagnostic;
use crate::provision::ssh::{SshCommunicator, SshConfig};
use crate::provision::{self, NoCommunicator};
use crate::spec::ImageSpec;
use crate::state::Artifact;

use super::kind::{local_target, Builder, BuilderKind, Recorded, COMMUNICATOR, IMGFORM};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::schema::Schema;

/// `null`: builds nothing; runs its provisioners. Only communicator settings.
pub static KIND: BuilderKind = BuilderKind {
    schema: Schema {
        kind: "null",
        attrs: &[COMMUNICATOR, IMGFORM],
        blocks: &[],
    },
    target: local_target,
    validate,
    builder: Some(&NullBuilder),
    feature: None,
};

pub struct NullBuilder;

pub fn artifact_id(content_address: &str) -> String {
    let hex = content_address
        .strip_prefix("sha256:")
        .unwrap_or(content_address);
    format!("null:{}", &hex[..hex.len().min(12)])
}

fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let communicator = spec.attr_str("communicator").unwrap_or("none");
    let at = |name: &str| {
        spec.attr_locs
            .get(name)
            .cloned()
            .or_else(|| Some(spec.loc.clone()))
    };
    if communicator == "ssh" {
        for needed in ["ssh_host", "ssh_username"] {
            if spec.attr_str(needed).is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: a null source with communicator = \"ssh\" needs {needed}",
                        spec.addr
                    ))
                    .at(at("communicator"))
                    .hint("the null builder connects to an existing machine: set ssh_host, ssh_username and ssh_private_key_file or ssh_password"),
                );
            }
        }
        return diags;
    }
    if communicator != "none" {
        diags.push(
            Diagnostic::error(format!(
                "the null builder's communicator \"{communicator}\" is not supported"
            ))
            .at(at("communicator"))
            .hint("use communicator = \"ssh\" (with ssh_host) or \"none\" with shell-local provisioners"),
        );
        return diags;
    }
    for p in &spec.provisioners {
        if !provision::runs_on_host(&p.kind) {
            diags.push(
                Diagnostic::error(format!("provisioner \"{}\" needs a machine to connect to, but this null source has communicator = \"none\"", p.kind))
                    .at(Some(p.loc.clone()))
                    .hint("use shell-local to run commands on this machine, or build with a builder that has an instance (chroot, amazon-ebs, openstack)"),
            );
        }
    }
    diags
}

impl Builder for NullBuilder {
    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>> {
        Box::pin(async move {
            if ctx.spec.attr_str("communicator") == Some("ssh") {
                let config = SshConfig::from_spec(ctx.spec, None)?;
                let ssh = SshCommunicator::connect(config, &ctx.events)
                    .await
                    .map_err(|e| BuildError::failed(format!("SSH: {e}")))?;
                let mut cancel = ctx.cancel.clone();
                let result = tokio::select! {
                    r = provision::run_all(&ctx, &ssh) => r,
                    _ = cancel.cancelled() => Err(BuildError::Cancelled),
                };
                ssh.close().await;
                result?;
            } else {
                provision::run_all(&ctx, &NoCommunicator).await?;
            }
            Ok(Artifact {
                id: artifact_id(ctx.content_address),
                attributes: Default::default(),
            })
        })
    }

    fn exists<'a>(
        &'a self,
        _at: Recorded<'a>,
        _artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<bool, BuildError>> {
        Box::pin(async { Ok(true) })
    }

    fn destroy<'a>(
        &'a self,
        _at: Recorded<'a>,
        _artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async { Ok(()) })
    }
}
