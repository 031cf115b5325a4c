//! What a provisioner kind is: its description ([`ProvisionerKind`]) and its
//! implementation (the [`Provisioner`] trait).
//!
//! Loading asks the description which attributes exist, their role and
//! shape, and what must hold of an evaluated config ([`ProvisionerKind::check`]);
//! fingerprinting asks which local files it reads ([`ProvisionerKind::files`]);
//! builders ask where it runs and whether it has a test phase of its own.
//! Nothing outside the kind's own module matches on its name.

use std::path::Path;

use super::{Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, setting, AttrSpec, FileRef, Schema};
use crate::spec::{ImageSpec, ProvisionerSpec};

/// One provisioner kind, as the registry ([`super::KINDS`]) lists it.
pub struct ProvisionerKind {
    /// Name and attributes (role, type, files read).
    pub schema: Schema,
    /// Runs on the machine running imgform, not through the communicator.
    pub runs_on_host: bool,
    /// Has a test phase of its own, run with the image's tests (component
    /// documents' `test` phase).
    pub test_phase: bool,
    /// Checks of an evaluated config that the schema cannot express: what
    /// is required, what excludes what.
    pub check: fn(&ProvisionerSpec) -> Vec<Diagnostic>,
    /// The local files and folders it reads (their bytes are inputs), paths
    /// relative to the definition dir `def_dir` (or absolute).
    pub files: fn(&ProvisionerSpec, &Path) -> Vec<FileRef>,
    /// Plan-time notes and checks about its use in an evaluated image (files
    /// it will read, documents it will run).
    pub validate: fn(&ImageSpec, &ProvisionerSpec) -> Vec<Diagnostic>,
    pub provisioner: &'static dyn Provisioner,
}

impl ProvisionerKind {
    pub fn name(&self) -> &'static str {
        self.schema.kind
    }
}

/// A provisioner's implementation.
pub trait Provisioner: Send + Sync {
    /// Runs `p` on the machine behind `comm` (or on this machine for a kind
    /// that `runs_on_host`), in `stage`.
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>>;
}

/// Every provisioner accepts these; they decide when and how often it runs,
/// not what it does, so they are settings.
pub const COMMON: &[AttrSpec] = &[
    setting("only"),
    setting("except"),
    setting("max_retries"),
    setting("timeout"),
    setting("pause_before"),
    input("override"),
];

/// The files a config names through the attributes its schema marks
/// `reads_files`, relative to the provisioner's folder (a module's
/// provisioners read files relative to their module).
pub fn schema_files(schema: &Schema, p: &ProvisionerSpec) -> Vec<FileRef> {
    crate::schema::files_named_by(schema, &p.config)
        .into_iter()
        .map(|f| FileRef {
            path: in_base_dir(p, &f.path),
            ..f
        })
        .collect()
}

/// `path` as seen from the definition dir: a relative path in a module's
/// provisioner is relative to the module.
pub fn in_base_dir(p: &ProvisionerSpec, path: &str) -> String {
    match &p.base_dir {
        Some(base) if !Path::new(path).is_absolute() => format!("{base}/{path}"),
        _ => path.to_owned(),
    }
}

/// No checks beyond the schema.
pub fn no_check(_p: &ProvisionerSpec) -> Vec<Diagnostic> {
    Vec::new()
}

/// Nothing to say at plan time.
pub fn no_validate(_spec: &ImageSpec, _p: &ProvisionerSpec) -> Vec<Diagnostic> {
    Vec::new()
}

/// "provisioner \"KIND\" needs a `NAME`" at the provisioner's block.
pub fn required(p: &ProvisionerSpec, name: &str, example: &str) -> Option<Diagnostic> {
    (!p.config.contains_key(name)).then(|| {
        Diagnostic::error(format!("provisioner \"{}\" needs a `{name}`", p.kind))
            .at(Some(p.loc.clone()))
            .hint(example.to_owned())
    })
}

/// A located error unless attribute `name` of `p`, when set, is a duration
/// (`"30s"`, `"5m"`, `"1h30m"`).
pub fn duration(p: &ProvisionerSpec, name: &str) -> Option<Diagnostic> {
    let value = p.config.get(name).or_else(|| p.settings.get(name))?;
    if value
        .as_str()
        .and_then(crate::spec::parse_duration)
        .is_some()
    {
        return None;
    }
    Some(
        Diagnostic::error(format!("`{name}` must be a duration"))
            .at(Some(
                p.attr_locs
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| p.loc.clone()),
            ))
            .hint("write a duration like \"30s\", \"5m\" or \"1h30m\""),
    )
}
