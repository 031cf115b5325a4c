//! Post-processors imgform runs after an image is built: `shell-local`,
//! `artifice`, `checksum` and `compress`, with Packer's semantics (each kind's module
//! says what it does). `manifest` runs after the image is recorded
//! (`apply::manifest`); every other kind is a plan-time warning and is not
//! run.
//!
//! Order and artifacts, as Packer: post-processors run in the order written;
//! a `post-processors { }` block is one sequence (a chain), each step
//! getting the artifact of the step before, starting from the builder's;
//! a lone `post-processor` block is a sequence of its own. A step's
//! `keep_input_artifact = false` (compress's default) deletes the artifact
//! it was given when that artifact is another step's (a file an earlier
//! step wrote, or that `artifice` named); the builder's artifact is always
//! kept, since it is what the state records (setting it to false on a
//! first step is a warning).
//!
//! Invariants: they run inside the image's build, after the builder
//! returned its artifact and before the image is recorded, so a failing
//! post-processor fails the image (the build's artifact is then deleted
//! like any failed build's, unless `--on-error=abort`). Every file they
//! write is written atomically (a temporary file in the same folder,
//! renamed), and when one fails every file the image's post-processors
//! wrote in this run is removed (or put back as it was), along with the
//! folders they created. Their input attributes are part of the content
//! address (`fingerprint`), so adding or changing one rebuilds the image.

mod artifice;
mod checksum;
mod compress;
mod outputs;
mod shell_local;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::{Diagnostic, SourceLoc};
use crate::schema::{setting, AttrSpec, Schema};
use crate::spec::{ImageSpec, ProvisionerSpec};
use crate::state::Artifact;
pub use outputs::Outputs;

/// One post-processor kind imgform runs, as [`KINDS`] lists it.
pub struct PostProcessorKind {
    /// Name and attributes (role, type, files read).
    pub schema: Schema,
    /// Packer's `keep_input_artifact` default for the kind, and whether the
    /// kind forces it (Packer's `forceOverride`: a `false` is ignored).
    pub keeps_input: bool,
    pub forces_keep: bool,
    /// Checks of an evaluated config the schema cannot express.
    pub check: fn(&ProvisionerSpec) -> Vec<Diagnostic>,
    pub run: for<'a> fn(Step<'a>) -> BoxFuture<'a, Result<Files, BuildError>>,
}

/// The post-processors imgform runs (`manifest` is `apply::manifest`'s).
pub static KINDS: &[&PostProcessorKind] = &[
    &shell_local::KIND,
    &artifice::KIND,
    &checksum::KIND,
    &compress::KIND,
];

pub fn kind_of(name: &str) -> Option<&'static PostProcessorKind> {
    KINDS.iter().copied().find(|k| k.schema.kind == name)
}

/// Every post-processor accepts these (Packer's HCL2 `post-processor`
/// block); they decide where and whether it runs, not what it makes.
pub const COMMON: &[AttrSpec] = &[
    setting("name"),
    setting("only"),
    setting("except"),
    setting("keep_input_artifact"),
];

/// What one step runs with.
pub struct Step<'a> {
    pub ctx: &'a BuildContext<'a>,
    pub p: &'a ProvisionerSpec,
    /// The artifact it is given (the builder's, or the step before's).
    pub input: &'a Files,
    /// The builder's artifact id.
    pub artifact_id: &'a str,
    pub outputs: &'a mut Outputs,
}

/// An artifact as post-processors see it: its local files (none for a
/// cloud image).
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub files: Vec<PathBuf>,
    /// Made by a post-processor (may be deleted), not the builder's.
    pub produced: bool,
}

/// The post-processors of `spec` imgform runs (kinds in [`KINDS`]): part of
/// its identity; the others stay out of its content address.
pub fn identity(spec: &ImageSpec) -> impl Iterator<Item = &ProvisionerSpec> {
    spec.post_processors
        .iter()
        .filter(|p| kind_of(&p.kind).is_some())
}

/// Runs the image's post-processors on the builder's `artifact`, sequence by
/// sequence. On failure every file they wrote is removed again; on success
/// the files written are returned.
pub async fn run_all(
    ctx: &BuildContext<'_>,
    artifact: &Artifact,
) -> Result<Vec<PathBuf>, BuildError> {
    let mut outputs = Outputs::default();
    match run_sequences(ctx, artifact, &mut outputs).await {
        Ok(()) => Ok(outputs.commit()),
        Err(e) => {
            outputs.roll_back();
            Err(e)
        }
    }
}

async fn run_sequences(
    ctx: &BuildContext<'_>,
    artifact: &Artifact,
    outputs: &mut Outputs,
) -> Result<(), BuildError> {
    let builder_files = Files {
        files: local_file(ctx.spec, artifact).into_iter().collect(),
        produced: false,
    };
    let steps: Vec<(&ProvisionerSpec, &PostProcessorKind)> = ctx
        .spec
        .post_processors
        .iter()
        .filter_map(|p| Some((p, kind_of(&p.kind)?)))
        .collect();
    let mut previous_chain = None;
    let mut prior = builder_files.clone();
    for (p, kind) in steps {
        if previous_chain != Some(p.chain) {
            previous_chain = Some(p.chain);
            prior = builder_files.clone();
        }
        if ctx.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        // Packer's `name` labels the step in its output.
        match str_attr(p, "name") {
            Some(name) => ctx
                .events
                .step(format!("post-processor {name} (type {})", p.kind)),
            None => ctx.events.step(format!("post-processor \"{}\"", p.kind)),
        }
        let step = Step {
            ctx,
            p,
            input: &prior,
            artifact_id: &artifact.id,
            outputs: &mut *outputs,
        };
        let made = (kind.run)(step).await.map_err(|e| match e {
            BuildError::Provisioner { kind, message } => {
                BuildError::failed(format!("post-processor \"{kind}\" failed: {message}"))
            }
            other => other,
        })?;
        if prior.produced && !keeps_input(kind, p) {
            for file in &prior.files {
                outputs.remove(file);
            }
        }
        prior = made;
    }
    Ok(())
}

/// Whether a step keeps the artifact it was given: the kind's default,
/// unless `keep_input_artifact` says otherwise and the kind does not force
/// it.
fn keeps_input(kind: &PostProcessorKind, p: &ProvisionerSpec) -> bool {
    match p.settings.get("keep_input_artifact").and_then(as_bool) {
        Some(false) if kind.forces_keep => true,
        Some(keep) => keep,
        None => kind.keeps_input,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The local file an artifact is, if it is one (a disk image, a tarball).
pub fn local_file(spec: &ImageSpec, artifact: &Artifact) -> Option<PathBuf> {
    let path = spec.def_dir.join(&artifact.id);
    path.is_file().then_some(path)
}

/// Plan-time notes on the image's post-processors: attributes imgform does
/// not act on, a `keep_input_artifact = false` on a first step (imgform
/// keeps the builder's artifact), and each kind's own checks that need the
/// image.
pub fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut previous_chain = None;
    for p in &spec.post_processors {
        let Some(kind) = kind_of(&p.kind) else {
            continue;
        };
        let first = previous_chain != Some(p.chain);
        previous_chain = Some(p.chain);
        for (name, hint) in kind
            .schema
            .ignored_in(|name| p.config.get(name).or_else(|| p.settings.get(name)))
        {
            diags.push(
                Diagnostic::warning(format!(
                    "{}: post-processor \"{}\" `{name}` is not acted on by imgform and is ignored",
                    spec.addr, p.kind
                ))
                .at(Some(loc_of(p, name)))
                .hint(hint),
            );
        }
        if first
            && p.settings.get("keep_input_artifact").and_then(as_bool) == Some(false)
            && !kind.forces_keep
        {
            diags.push(
                Diagnostic::warning(format!(
                    "{}: post-processor \"{}\": keep_input_artifact = false does not delete the built image",
                    spec.addr, p.kind
                ))
                .at(Some(loc_of(p, "keep_input_artifact")))
                .hint("imgform keeps the builder's artifact: it is the image its state records; delete what you do not need after apply, or drop keep_input_artifact"),
            );
        }
    }
    diags
}

/// Where attribute `name` of `p` was written (the block when it was not).
pub fn loc_of(p: &ProvisionerSpec, name: &str) -> SourceLoc {
    p.attr_locs.get(name).unwrap_or(&p.loc).clone()
}

/// A string attribute, from the inputs or the settings.
fn str_attr<'a>(p: &'a ProvisionerSpec, name: &str) -> Option<&'a str> {
    p.config
        .get(name)
        .or_else(|| p.settings.get(name))
        .and_then(Value::as_str)
}

/// Packer's template data for post-processor outputs: `{{.BuildName}}`
/// (the source's name, as `PACKER_BUILD_NAME`), `{{.BuilderType}}`, and
/// whatever the kind adds (`{{.ChecksumType}}`). Loading rendered every
/// other action already; a field outside `fields` is an error.
fn render_fields(text: &str, fields: &[(&str, &str)]) -> Result<String, String> {
    let mut unknown = None;
    let out = FIELD.replace_all(text, |c: &regex::Captures<'_>| {
        match fields.iter().find(|(name, _)| *name == &c[1]) {
            Some((_, value)) => (*value).to_owned(),
            None => {
                unknown.get_or_insert_with(|| c[0].to_owned());
                c[0].to_owned()
            }
        }
    });
    match unknown {
        None => Ok(out.into_owned()),
        Some(action) => {
            let names: Vec<String> = fields
                .iter()
                .map(|(n, _)| format!("{{{{.{n}}}}}"))
                .collect();
            Err(format!(
                "{action} is not a field this post-processor has (it has {})",
                names.join(", ")
            ))
        }
    }
}

static FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}").expect("regex")
});

/// `output` checked at plan time with stand-in values for the fields.
fn check_output(p: &ProvisionerSpec, fields: &[&str]) -> Vec<Diagnostic> {
    let Some(output) = str_attr(p, "output") else {
        return Vec::new();
    };
    let stand_ins: Vec<(&str, &str)> = fields.iter().map(|f| (*f, "x")).collect();
    match render_fields(output, &stand_ins) {
        Ok(_) => Vec::new(),
        Err(message) => vec![Diagnostic::error(format!(
            "post-processor \"{}\": `output`: {message}",
            p.kind
        ))
        .at(Some(loc_of(p, "output")))
        .hint("Packer's post-processor outputs may use {{.BuildName}} and {{.BuilderType}} (checksum also {{.ChecksumType}})")],
    }
}

/// The fields every post-processor output has.
fn build_fields(ctx: &BuildContext<'_>) -> [(&'static str, String); 2] {
    [
        ("BuildName", ctx.spec.addr.source_name.clone()),
        ("BuilderType", ctx.spec.builder.clone()),
    ]
}

/// A path as a post-processor writes it: relative to the current
/// directory, as in Packer.
fn output_path(text: &str) -> PathBuf {
    Path::new(text).to_path_buf()
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> BuildError {
    move |source| BuildError::Io { context, source }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schemas_are_consistent_and_names_unique() {
        let mut names = std::collections::BTreeSet::new();
        for kind in super::KINDS {
            crate::schema::assert_consistent(&kind.schema);
            assert!(names.insert(kind.schema.kind), "{} twice", kind.schema.kind);
            assert!(kind.schema.attr("keep_input_artifact").is_some());
        }
    }

    #[test]
    fn fields_render_and_unknown_ones_are_named() {
        let fields = [("BuildName", "web"), ("ChecksumType", "sha256")];
        assert_eq!(
            super::render_fields("out/{{.BuildName}}_{{ .ChecksumType }}.sum", &fields).unwrap(),
            "out/web_sha256.sum"
        );
        let err = super::render_fields("{{.Provider}}.box", &fields).unwrap_err();
        assert!(err.starts_with("{{.Provider}} is not a field"), "{err}");
    }
}
