//! Content addresses: what is hashed, what is not, and why.
//!
//! An image's **manifest** is a canonical JSON document of everything that
//! decides the bytes of the image; its **content address** is
//! `sha256:` + hex SHA-256 of the manifest's canonical bytes. Two runs (on
//! any machine, from any directory) with the same inputs give the same
//! address; any change to an input gives a different one.
//!
//! What goes in (manifest version 1, the typed [`Manifest`]):
//! - `address` and `builder`: the image's name and builder type.
//! - `inputs`: the builder attributes whose role is *input* (each kind's
//!   schema says, see `drivers::KINDS`), e.g. the base image, disk size,
//!   user data; for those the schema marks as naming files, the files'
//!   hashes beside them as `<attr>@files`.
//! - `provisioners`: in order, each with its type, its input config and
//!   `files`: every file it reads (its kind says which, see
//!   `provision::KINDS`), by path → `sha256:<hex>`. A directory (a `file`
//!   provisioner's source dir, an Ansible playbook's reach) is listed file by
//!   file (`dir/rel` → `sha256:<hex>`, `+x` for executables) plus a `dir/`
//!   entry holding the Merkle root over (relative name, exec bit, hash),
//!   honouring `.imgformignore`. A symlink in such a directory that points
//!   outside the definition dir (or nowhere) is listed as
//!   `dir/rel` → `symlink:<target>`: the upload copies it as a link, and
//!   the bytes it points at never enter the manifest or the object store.
//!   A path copied into the image as it is (a `file` provisioner's
//!   `source`) that is itself such a link is listed the same way, `path` →
//!   `symlink:<target>`. A path that must name one file (a script, a
//!   playbook) and names a folder is an error at its place.
//! - `files`: files read by functions (`file()`, `templatefile()`, ...).
//! - `parents`: each parent image's content address, so a whole chain is
//!   addressed in one pass before anything is built.
//! - `base`: the id a base image filter (`source_ami_filter`,
//!   `source_image_filter`) resolved to at plan time, when there is one.
//! - `variables`: variables that reach the inputs (sensitive ones as a keyed
//!   digest), so a plan can say which variable changed.
//! - `data`: what each data source the inputs use (directly or through
//!   locals) answered at plan time, as its kind summarizes it (an AMI id, a
//!   commit hash, a body's SHA-256; secrets as a keyed digest). Its values
//!   are in the inputs already; this says which data source moved.
//! - `post_processors`: those imgform runs (`shell-local`, `checksum`,
//!   `compress`: they make what the build leaves behind), in order, each
//!   with its input config, the files it reads and its sequence (`chain`).
//!   `manifest` and the kinds imgform does not run stay out. Absent when
//!   there are none.
//!
//! What stays out, on purpose: build settings (instance type, names, tags,
//! credentials, timeouts, `only`/`except`, retries, parallelism), absolute
//! paths of the definition dir (paths are relative to it), file mtimes and
//! owners, clock values (non-deterministic functions are refused in inputs
//! at evaluation), and secrets (replaced by a keyed digest).
//!
//! Canonical JSON ([`canonical`]): object keys sorted by bytes, no
//! whitespace, numbers as serde_json prints them, strings with JSON's
//! minimal escaping.
//!
//! [`Manifest::compare`] turns two manifests into typed [`RebuildReason`]s,
//! field by field; plans and drift reports both use it.

pub mod cache;
pub mod canonical;
pub mod hasher;
pub mod manifest;
pub mod reason;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::addr::{ContentAddress, ImageAddr};
use crate::diag::Diagnostic;
use crate::paths::relativize_path;
use crate::schema::{FileRef, Reads};
use crate::spec::{ImageRef, ImageSpec, ProvisionerSpec};
pub use cache::HashCache;
pub use canonical::canonical_json;
pub use hasher::{FileHasher, HashedFile};
pub use manifest::{FileSet, Inputs, Manifest, ProvisionerEntry, MANIFEST_VERSION};
pub use reason::RebuildReason;

/// A small text input, stored in the object store so a later plan can diff
/// it. Its bytes are not kept in memory during a plan (10,000 images hold
/// hundreds of MB of scripts): they are read again when needed, for the
/// images that change, and checked against the hash.
#[derive(Debug, Clone)]
pub struct TextInput {
    pub sha256: String,
    source: TextSource,
}

#[derive(Debug, Clone)]
enum TextSource {
    File(PathBuf),
    Bytes(std::sync::Arc<Vec<u8>>),
}

impl TextInput {
    /// The file at `path`, whose bytes hashed to `sha256`.
    pub fn file(sha256: String, path: PathBuf) -> TextInput {
        TextInput {
            sha256,
            source: TextSource::File(path),
        }
    }

    /// Bytes at hand (e.g. from a saved plan).
    pub fn bytes(bytes: Vec<u8>) -> TextInput {
        TextInput {
            sha256: hasher::sha256_hex(&bytes),
            source: TextSource::Bytes(std::sync::Arc::new(bytes)),
        }
    }

    /// The bytes; `None` when the file cannot be read or no longer has
    /// the bytes it was hashed from (changed during the run).
    pub fn read(&self) -> Option<std::sync::Arc<Vec<u8>>> {
        match &self.source {
            TextSource::Bytes(bytes) => Some(bytes.clone()),
            TextSource::File(path) => {
                let bytes = std::fs::read(path).ok()?;
                (hasher::sha256_hex(&bytes) == self.sha256).then(|| std::sync::Arc::new(bytes))
            }
        }
    }
}

/// One image's manifest and its content address.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub manifest: Manifest,
    pub content_address: ContentAddress,
    /// Text files among the inputs: path → bytes (for the object store).
    pub text_inputs: BTreeMap<String, TextInput>,
}

impl Fingerprint {
    /// The manifest's canonical bytes (what `content_address` hashes; stored
    /// in the object store), made again when an image is built or saved:
    /// keeping them for every image of a plan costs more memory than
    /// making them twice for the few that change.
    pub fn bytes(&self) -> Vec<u8> {
        self.manifest.canonical_bytes()
    }

    /// Whether the manifest still hashes to the address.
    pub fn verify(&self) -> bool {
        ContentAddress::of(&self.bytes()) == self.content_address
    }
}

/// What fingerprinting one image collects besides the manifest.
struct Collected<'a> {
    hasher: &'a FileHasher,
    def_dir: &'a Path,
    places: Places<'a>,
    text_inputs: BTreeMap<String, TextInput>,
    diags: Vec<Diagnostic>,
}

/// Builds the manifest of `spec`. `parents` maps each parent to its content
/// address (parents are fingerprinted first).
pub fn fingerprint(
    spec: &ImageSpec,
    parents: &BTreeMap<ImageAddr, ContentAddress>,
    hasher: &FileHasher,
) -> Result<Fingerprint, Vec<Diagnostic>> {
    let def_dir = spec.def_dir.as_path();
    let places = Places {
        def_dir,
        labels: &spec.path_labels,
    };
    let mut c = Collected {
        hasher,
        def_dir,
        places,
        text_inputs: BTreeMap::new(),
        diags: Vec::new(),
    };
    let secrets = &spec.sensitive_values;

    let mut inputs = Inputs {
        values: places.values(&spec.inputs, secrets),
        files: BTreeMap::new(),
    };
    if let Some(kind) = crate::drivers::kind_of(&spec.builder) {
        for file in kind.files(spec) {
            // A parent's artifact is addressed by the parent's content
            // address, not by its bytes.
            if !ImageRef::find(&file.path).is_empty() {
                continue;
            }
            let loc = spec.attr_locs.get(&file.attr).unwrap_or(&spec.loc).clone();
            let mut files = FileSet::new();
            c.hash_ref(&file, &mut files, &loc);
            inputs.files.entry(file.attr).or_default().extend(files);
        }
    }

    let provisioners = spec
        .provisioners
        .iter()
        .map(|p| c.provisioner(p, secrets))
        .collect();
    let tests = spec
        .tests
        .iter()
        .map(|p| c.provisioner(p, secrets))
        .collect();
    let post_processors = crate::postprocess::identity(spec)
        .map(|p| c.post_processor(p, secrets))
        .collect();

    // Module folders, whole: templates and files a module's scripts read
    // are inputs too.
    let mut modules = BTreeMap::new();
    for dir in &spec.modules {
        let mut files = FileSet::new();
        match c.hash_path(dir, &mut files, true) {
            Ok(()) => {
                modules.insert(places.path(dir), files);
            }
            Err(e) => c.diags.push(
                Diagnostic::error(format!("cannot read module folder {dir}: {e}"))
                    .at(Some(spec.loc.clone())),
            ),
        }
    }

    let mut function_files = FileSet::new();
    for (path, hex) in &spec.files_read {
        let shown = places.path(path);
        function_files.insert(shown.clone(), format!("sha256:{hex}"));
        let full = def_dir.join(path);
        if hasher.cached(&full).is_some_and(|f| f.is_text) {
            c.text_inputs
                .insert(shown, TextInput::file(hex.clone(), full));
        }
    }

    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    let mut base = spec.base.as_ref().map(|b| Value::String(b.id.clone()));
    if let Some(b) = base.as_mut() {
        crate::sensitive::redact_in(b, secrets);
    }
    let manifest = Manifest {
        imgform_manifest: MANIFEST_VERSION,
        address: spec.addr.clone(),
        builder: spec.builder.clone(),
        inputs,
        provisioners,
        parents: spec
            .parents
            .iter()
            .map(|p| (p.clone(), parents.get(p).cloned().unwrap_or_default()))
            .collect(),
        files: function_files,
        modules,
        variables: spec
            .variables
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                crate::sensitive::redact_in(&mut v, secrets);
                (k.clone(), v)
            })
            .collect(),
        tests,
        // The resolved base image id (a filter's answer at plan time): a
        // newer upstream image changes the address.
        base: base.and_then(|b| b.as_str().map(str::to_owned)),
        // Data sources' answers, likewise (already without secrets; redacted
        // again in case a secret reached a public output).
        data: spec
            .data
            .iter()
            .map(|(address, record)| {
                let mut summary = record.summary.clone();
                crate::sensitive::redact_in(&mut summary, secrets);
                (address.clone(), summary)
            })
            .collect(),
        post_processors,
    };
    let content_address = ContentAddress::of(&manifest.canonical_bytes());
    Ok(Fingerprint {
        content_address,
        manifest,
        text_inputs: c.text_inputs,
    })
}

/// How paths appear in a manifest: relative to the definition dir, or, for
/// a folder outside it that the spec labels (the installed
/// diskimage-builder elements), as `LABEL/rest`: never an absolute path
/// that depends on where the checkout or a package is.
#[derive(Clone, Copy)]
struct Places<'a> {
    def_dir: &'a Path,
    labels: &'a [(PathBuf, String)],
}

impl Places<'_> {
    /// A path (relative to the definition dir, or absolute) as shown.
    fn path(&self, path: &str) -> String {
        if !self.labels.is_empty() {
            let full = crate::paths::normalize_lexically(&resolve(self.def_dir, path));
            for (dir, label) in self.labels {
                if let Ok(rest) = full.strip_prefix(dir) {
                    return relativize_path(&format!("{label}/{}", rest.display()), self.def_dir)
                        .trim_end_matches('/')
                        .to_owned();
                }
            }
        }
        relativize_path(path, self.def_dir)
    }

    /// Values as they enter a manifest: absolute paths made relative (or
    /// labelled) inside every string, secrets replaced by their digest.
    fn values(
        &self,
        values: &BTreeMap<String, Value>,
        secrets: &[String],
    ) -> BTreeMap<String, Value> {
        values
            .iter()
            .map(|(k, v)| {
                let mut v = self.value(v);
                crate::sensitive::redact_in(&mut v, secrets);
                (k.clone(), v)
            })
            .collect()
    }

    fn value(&self, value: &Value) -> Value {
        let mut v = relativize(value, self.def_dir);
        for (dir, label) in self.labels {
            relabel(&mut v, &dir.to_string_lossy(), label);
        }
        v
    }
}

/// Replaces `prefix` by `label` inside every string of `value`.
fn relabel(value: &mut Value, prefix: &str, label: &str) {
    match value {
        Value::String(s) if s.contains(prefix) => *s = s.replace(prefix, label),
        Value::Array(items) => items.iter_mut().for_each(|v| relabel(v, prefix, label)),
        Value::Object(map) => map.values_mut().for_each(|v| relabel(v, prefix, label)),
        _ => {}
    }
}

impl Collected<'_> {
    /// One provisioner in the manifest: type, input config (paths relative)
    /// and the hashes of every file its kind says it reads.
    fn provisioner(&mut self, p: &ProvisionerSpec, secrets: &[String]) -> ProvisionerEntry {
        let mut files = FileSet::new();
        if let Some(kind) = crate::provision::kind_of(&p.kind) {
            for file in (kind.files)(p, self.def_dir) {
                let loc = p.attr_locs.get(&file.attr).unwrap_or(&p.loc).clone();
                self.hash_ref(&file, &mut files, &loc);
            }
        }
        ProvisionerEntry {
            kind: p.kind.clone(),
            config: self.places.values(&p.config, secrets),
            files,
            chain: None,
        }
    }

    /// One post-processor imgform runs: like a provisioner, with its
    /// sequence.
    fn post_processor(&mut self, p: &ProvisionerSpec, secrets: &[String]) -> ProvisionerEntry {
        let mut files = FileSet::new();
        if let Some(kind) = crate::postprocess::kind_of(&p.kind) {
            for file in crate::provision::kind::schema_files(&kind.schema, p) {
                let loc = p.attr_locs.get(&file.attr).unwrap_or(&p.loc).clone();
                self.hash_ref(&file, &mut files, &loc);
            }
        }
        ProvisionerEntry {
            kind: p.kind.clone(),
            config: self.places.values(&p.config, secrets),
            files,
            chain: p.chain,
        }
    }

    /// Hashes one file reference, or says at `loc` why it cannot.
    fn hash_ref(&mut self, file: &FileRef, files: &mut FileSet, loc: &crate::diag::SourceLoc) {
        if file.reads == Reads::Copied {
            // Copied as a link: where it points is the input, never the
            // bytes it points at (see the module doc).
            let full = resolve(self.def_dir, &file.path);
            if let Some(target) = crate::paths::link_leading_out(&full, self.def_dir) {
                let shown = self.places.path(&file.path);
                files.insert(shown, format!("symlink:{target}"));
                return;
            }
        }
        let folders = file.reads != Reads::File;
        match self.hash_path(&file.path, files, folders) {
            Ok(()) => {}
            Err(e) if !folders && e.kind() == std::io::ErrorKind::IsADirectory => {
                self.diags.push(
                    Diagnostic::error(format!(
                        "`{}` must be a file, not a folder: {} is a folder",
                        file.attr, file.path
                    ))
                    .at(Some(loc.clone()))
                    .hint(format!(
                        "`{}` takes the path of a file; name one inside {}/",
                        file.attr,
                        file.path.trim_end_matches('/')
                    )),
                );
            }
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(format!(
                        "`{}` refers to {}, which cannot be read: {e}",
                        file.attr, file.path
                    ))
                    .at(Some(loc.clone()))
                    .hint("paths are relative to the definition dir; check the name and that the file exists"),
                );
            }
        }
    }

    /// Hashes a file, or a directory when `folders`, into `files` (path →
    /// `sha256:<hex>`); a directory otherwise is an `IsADirectory` error.
    fn hash_path(&mut self, path: &str, files: &mut FileSet, folders: bool) -> std::io::Result<()> {
        let (hasher, def_dir, text) = (self.hasher, self.def_dir, &mut self.text_inputs);
        let full = resolve(def_dir, path);
        let shown = self.places.path(path);
        // Files are the common case: hash directly (one `stat` on a cache
        // hit, else one open and one fstat).
        let single = match hasher.hash_file(&full) {
            Ok(f) => Some(f),
            Err(e) if folders && e.kind() == std::io::ErrorKind::IsADirectory => None,
            Err(e) => return Err(e),
        };
        if single.is_none() {
            // Links may lead anywhere in the definition dir; a tree outside
            // it (a shared module) keeps its links within itself.
            let boundary = if std::fs::canonicalize(&full).is_ok_and(|f| f.starts_with(def_dir)) {
                def_dir
            } else {
                full.as_path()
            };
            let tree = hasher::hash_tree(hasher, &full, boundary)?;
            let prefix = shown.trim_end_matches('/').to_owned();
            files.insert(format!("{prefix}/"), format!("tree:{}", tree.root));
            for (rel, target) in &tree.links {
                files.insert(format!("{prefix}/{rel}"), format!("symlink:{target}"));
            }
            for (rel, f) in &tree.entries {
                let key = format!("{prefix}/{rel}");
                files.insert(key.clone(), f.describe());
                if f.is_text {
                    text.insert(key, TextInput::file(f.sha256.clone(), full.join(rel)));
                }
            }
        } else if let Some(f) = single {
            files.insert(shown.clone(), format!("sha256:{}", f.sha256));
            if f.is_text {
                text.insert(shown, TextInput::file(f.sha256.clone(), full));
            }
        }
        Ok(())
    }
}

fn resolve(def_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        def_dir.join(p)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absolute_paths_become_relative() {
        let dir = Path::new("/home/u/defs");
        assert_eq!(
            relativize(&json!({"x": "/home/u/defs/a"}), dir),
            json!({"x": "a"})
        );
    }
}
