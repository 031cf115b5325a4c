//! The `shell-local` post-processor: runs on this machine exactly as the
//! `shell-local` provisioner does (`provision::shell_local`: `inline`,
//! `command`, `script(s)`, `execute_command`, `environment_vars`, `env`,
//! `PACKER_BUILD_NAME`, `PACKER_BUILDER_TYPE`, `only_on`), after the
//! image is built. imgform adds `IMGFORM_ARTIFACT_ID` (the builder's
//! artifact id) and `IMGFORM_ARTIFACT_FILES` (the local files of the
//! artifact it is given, space-separated). As in Packer it always keeps
//! its input artifact and passes it on unchanged.

use super::{Files, PostProcessorKind, Step};
use crate::build::BuildError;
use crate::provision::shell::{check_what_runs, SHELL_COMMON};
use crate::schema::Schema;

pub static KIND: PostProcessorKind = PostProcessorKind {
    schema: Schema {
        kind: "shell-local",
        attrs: &[
            SHELL_COMMON,
            crate::provision::shell_local::LOCAL,
            super::COMMON,
        ],
        blocks: &[],
    },
    keeps_input: true,
    forces_keep: true,
    check: check_what_runs,
    run: |step| Box::pin(run(step)),
};

async fn run(step: Step<'_>) -> Result<Files, BuildError> {
    let files: Vec<String> = step
        .input
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let env = vec![
        (
            "IMGFORM_ARTIFACT_ID".to_owned(),
            step.artifact_id.to_owned(),
        ),
        ("IMGFORM_ARTIFACT_FILES".to_owned(), files.join(" ")),
    ];
    crate::provision::shell_local::run(step.ctx, step.p, &env).await?;
    Ok(step.input.clone())
}
