//! Turning a built (or adopted) artifact into the state's record: objects
//! first (a state never names an object that is not stored), then the
//! record, with retention of older artifacts.

use std::collections::BTreeMap;
use std::path::Path;

use super::{ApplyError, BuildJob};
use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
use crate::sbom::{self, Inventory, PackageChanges};
use crate::state::{Artifact, ImageRecord, ParentRef, StateBackend, StateFile};

/// Artifact id and content address of every image known so far.
pub(super) type ArtifactsByImage = BTreeMap<ImageAddr, (String, ContentAddress)>;

/// Recorded artifact id and content address of every image, by address.
pub(super) fn recorded_artifacts(states: &BTreeMap<TargetAddr, StateFile>) -> ArtifactsByImage {
    states
        .values()
        .flat_map(|s| &s.images)
        .map(|(a, r)| {
            (
                a.clone(),
                (r.artifact.id.clone(), r.content_address.clone()),
            )
        })
        .collect()
}

/// Records an artifact that exists but that the state lacks (`state
/// recover`, `state import`): stores its manifest and text inputs and puts
/// the record in place. The caller saves the state.
pub fn adopt(
    job: &BuildJob,
    artifact: &Artifact,
    states: &mut BTreeMap<TargetAddr, StateFile>,
    backend: &dyn StateBackend,
) -> Result<(), ApplyError> {
    let artifacts = recorded_artifacts(states);
    let mut record = record_for(job, artifact, &artifacts, states, backend)?;
    let state = states
        .get_mut(&job.spec.target)
        .expect("state created by record_for");
    if let Some(old) = state.images.remove(&job.spec.addr) {
        record.previous = std::iter::once(old.artifact)
            .chain(old.previous)
            .filter(|a| a.id != artifact.id)
            .collect();
    }
    state.images.insert(job.spec.addr.clone(), record);
    Ok(())
}

/// Stores the job's manifest and text inputs, makes sure its target has a
/// state, and returns the record of `artifact`.
pub(super) fn record_for(
    job: &BuildJob,
    artifact: &Artifact,
    artifacts: &ArtifactsByImage,
    states: &mut BTreeMap<TargetAddr, StateFile>,
    backend: &dyn StateBackend,
) -> Result<ImageRecord, ApplyError> {
    if cfg!(debug_assertions) {
        assert_eq!(
            ContentAddress::of(&job.manifest_bytes),
            job.content_address,
            "manifest bytes do not hash to their content address"
        );
    }
    backend.put_diff_object(&job.manifest_bytes)?;
    let mut text_inputs = BTreeMap::new();
    for (path, text) in &job.text_inputs {
        // Only for diffs: a file changed since it was hashed is left out
        // (a later plan says it cannot show that diff), not stored under
        // a hash it no longer has.
        if let Some(bytes) = text.read() {
            let hex = backend.put_diff_object(&bytes)?;
            text_inputs.insert(path.clone(), hex);
        }
    }
    states
        .entry(job.spec.target.clone())
        .or_insert_with(|| StateFile::new(&job.spec.target.0));
    Ok(ImageRecord {
        content_address: job.content_address.clone(),
        builder: job.spec.builder.clone(),
        artifact: artifact.clone(),
        parents: job
            .spec
            .parents
            .iter()
            .filter_map(|p| {
                artifacts.get(p).map(|(id, ca)| {
                    (
                        p.clone(),
                        ParentRef {
                            content_address: ca.clone(),
                            artifact_id: id.clone(),
                        },
                    )
                })
            })
            .collect(),
        base: job.spec.base.clone(),
        data: job.spec.data.clone(),
        text_inputs,
        built_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sbom: None,
        previous_sbom: None,
        tainted: false,
        previous: Vec::new(),
    })
}

/// Puts `record` in place; returns the artifacts to delete under
/// `keep_previous` (the newest `keep_previous` earlier artifacts are kept).
pub(super) fn replace_record(
    states: &mut BTreeMap<TargetAddr, StateFile>,
    target: &TargetAddr,
    addr: &ImageAddr,
    mut record: ImageRecord,
    keep_previous: u32,
) -> Vec<Artifact> {
    let state = states.get_mut(target).expect("state created");
    let mut previous = Vec::new();
    if let Some(old) = state.images.remove(addr) {
        if old.artifact.id != record.artifact.id {
            previous.push(old.artifact);
        }
        previous.extend(
            old.previous
                .into_iter()
                .filter(|a| a.id != record.artifact.id),
        );
    }
    let keep = (keep_previous as usize).min(previous.len());
    let drop = previous.split_off(keep);
    record.previous = previous;
    state.images.insert(addr.clone(), record);
    drop
}

/// Stores the SBOM of a build: in the object store (the record names it)
/// and, for a local artifact, beside it as `<artifact>.cdx.json`. Returns
/// the package changes against the record it replaces, when that one had an
/// SBOM too.
pub(super) fn record_sbom(
    job: &BuildJob,
    record: &mut ImageRecord,
    old: Option<&ImageRecord>,
    inventory: &Inventory,
    backend: &dyn StateBackend,
    def_dir: &Path,
) -> Result<Option<PackageChanges>, ApplyError> {
    let address = job.spec.addr.to_string();
    let subject = sbom::Subject {
        address: &address,
        content_address: job.content_address.as_str(),
        built_at: &record.built_at,
    };
    let bytes = sbom::to_cyclonedx(&subject, inventory);
    record.sbom = Some(backend.put_object(&bytes)?);
    record.previous_sbom = old.and_then(|o| o.sbom.clone());
    if let Some(path) = record
        .artifact
        .attributes
        .get("path")
        .and_then(|p| p.as_str())
    {
        // A local artifact's path is relative to the definition dir.
        let beside = def_dir.join(format!("{path}{}", crate::paths::SBOM_SUFFIX));
        write_replacing(&beside, &bytes).map_err(|source| {
            ApplyError::State(crate::state::StateError::Io {
                action: "write",
                path: beside.clone(),
                source,
            })
        })?;
    }
    let previous = old
        .and_then(|o| o.sbom.as_deref())
        .and_then(|hex| backend.get_object(hex).ok().flatten())
        .and_then(|bytes| sbom::from_cyclonedx(&bytes).ok());
    Ok(previous.map(|previous| sbom::changes(&previous, inventory)))
}

/// Writes `bytes` to `path` under a temporary name in the same folder, then
/// renames it into place.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
