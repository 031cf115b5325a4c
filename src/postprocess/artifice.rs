//! `artifice`: makes the files named by `files` (relative to the current
//! directory, as in Packer; typically what a `shell-local` step before it
//! wrote) the artifact the next step of its chain gets, so `compress` and
//! `checksum` can work on them. The files must exist when it runs.

use std::path::PathBuf;

use super::{Files, PostProcessorKind, Step};
use crate::build::BuildError;
use crate::diag::Diagnostic;
use crate::schema::{input, Schema};
use crate::spec::ProvisionerSpec;

pub static KIND: PostProcessorKind = PostProcessorKind {
    schema: Schema {
        kind: "artifice",
        attrs: &[&[input("files").list()], super::COMMON],
        blocks: &[],
    },
    keeps_input: true,
    forces_keep: false,
    check,
    run: |step| Box::pin(run(step)),
};

fn check(p: &ProvisionerSpec) -> Vec<Diagnostic> {
    if p.strings("files").is_empty() {
        return vec![
            Diagnostic::error("post-processor \"artifice\" names no files")
                .at(Some(p.loc.clone()))
                .hint(
                    "write files = [\"output/disk.img\"]: the files the next post-processor gets",
                ),
        ];
    }
    Vec::new()
}

async fn run(step: Step<'_>) -> Result<Files, BuildError> {
    let files: Vec<PathBuf> = step
        .p
        .strings("files")
        .into_iter()
        .map(PathBuf::from)
        .collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(BuildError::Provisioner {
            kind: "artifice".to_owned(),
            message: format!("{} does not exist (or is not a file)", missing.display()),
        });
    }
    Ok(Files {
        files,
        produced: true,
    })
}
