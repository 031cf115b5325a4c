//! The `chroot` builder: real disk images without a VM, the
//! diskimage-builder way.
//!
//! 1. Unpack `base` (a rootfs tarball — `.tar`, `.tar.gz`, `.tar.xz`,
//!    `.tar.zst` — a directory, or another chroot image's artifact) into a
//!    private work dir.
//! 2. Mount /proc, /sys and /dev into it and run the provisioners through
//!    the chroot communicator (`shell-local` runs on the host).
//! 3. Unmount (always: on success, failure, Ctrl-C), normalise every file
//!    time to `SOURCE_DATE_EPOCH` and pack: `mke2fs -t ext4 -d` into a raw
//!    file (no loop devices, no mounting), then `qemu-img convert -O qcow2`
//!    for qcow2, or a sorted, owner-numeric tar for `format = "tar"`.
//!
//! Reproducible: the filesystem UUID, `hash_seed`, `E2FSPROGS_FAKE_TIME` and
//! the default `SOURCE_DATE_EPOCH` all derive from the content address, so
//! the same content address gives byte-identical image files.
//!
//! The artifact is the image file, `output_dir/<build>-<type>-<name>-<hex12>.<ext>`
//! (its id is that path, relative to the definition dir), with its sha256 in
//! the state. Next to a disk image the builder keeps `<same>.rootfs.tar`, the
//! packed tree, so that an image built from this one (`base =
//! image.<ADDR>.id`) starts from exactly these files.

mod boot_check;
mod bootable;
mod pack;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::kind::{local_target, Builder, BuilderKind, Recorded, COMMUNICATOR, IMGFORM};
use super::local::verify_image;
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::provision::chroot::{ChrootCommunicator, Mounts};
use crate::provision::{self};
use crate::schema::{input, setting, Schema};
use crate::spec::{ImageRef, ImageSpec};
use crate::state::Artifact;
use bootable::{BootFiles, Bootable, Ids};
use pack::{filesystem_size, normalise_times, pack_tar, run, sha256_file, unpack, Ext4};

/// `chroot`: imgform's local builder. The base root filesystem, the disk
/// format, size and filesystem label, and how the disk boots (partition
/// table, bootloader, EFI, kernel arguments, disk size) decide the bytes of
/// the image; where it is written (`output_dir`) and how the boot check runs
/// (`boot_check`, `boot_timeout`, `accelerator`, `memory`, `cpus`) do not.
pub static KIND: BuilderKind = BuilderKind {
    schema: Schema {
        kind: "chroot",
        attrs: &[
            &[
                input("base").files(),
                input("format"),
                input("size"),
                input("label"),
                input("source_date_epoch"),
                setting("output_dir"),
                setting("work_dir"),
                // A bootable disk (see bootable.rs).
                input("partition_table"),
                input("bootloader"),
                input("efi"),
                input("kernel_args").list(),
                input("disk_size"),
                input("grub_timeout"),
                setting("boot_check"),
                setting("boot_timeout"),
                setting("accelerator"),
                setting("memory"),
                setting("cpus"),
            ],
            COMMUNICATOR,
            IMGFORM,
        ],
        blocks: &[],
    },
    target: local_target,
    validate,
    builder: Some(&ChrootBuilder),
    feature: None,
};

pub struct ChrootBuilder;

const FORMATS: &[&str] = &["qcow2", "raw", "tar"];

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::failed(message)
}

/// `512M`, `2G`, `1.5GiB`, `300000000` → bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        _ => return None,
    };
    Some((n * scale) as u64)
}

fn hex_of(content_address: &str) -> &str {
    content_address
        .strip_prefix("sha256:")
        .unwrap_or(content_address)
}

/// A UUID (8-4-4-4-12) made from 16 bytes of the content address, salted.
fn derived_uuid(content_address: &str, salt: &str) -> String {
    let d = Sha256::digest(format!("{salt}\0{content_address}").as_bytes());
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The default SOURCE_DATE_EPOCH: a fixed date (2020-01-01) plus up to a
/// year derived from the content address.
fn derived_epoch(content_address: &str) -> u64 {
    let d = Sha256::digest(format!("epoch\0{content_address}").as_bytes());
    1_577_836_800 + u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 31_536_000)
}

fn format_of(spec: &ImageSpec) -> &str {
    spec.attr_str("format").unwrap_or("qcow2")
}

/// Where the image file goes: relative to the definition dir.
fn artifact_path(spec: &ImageSpec, content_address: &str) -> String {
    let out = spec
        .attr_str("output_dir")
        .unwrap_or("output")
        .trim_end_matches('/');
    let ext = match format_of(spec) {
        "raw" => "raw",
        "tar" => "tar",
        _ => "qcow2",
    };
    format!(
        "{out}/{}-{}.{ext}",
        spec.addr.slug(),
        &hex_of(content_address)[..12]
    )
}

/// A work dir removed on drop (after mounts are gone).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !crate::provision::chroot::still_mounted(&self.0) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl WorkDir {
    /// A private work dir under `work_dir` (default: the system's temporary
    /// dir), and the empty `root/` in it that the base is unpacked into.
    fn create(spec: &ImageSpec) -> Result<(WorkDir, PathBuf), BuildError> {
        let work_parent = spec
            .attr_str("work_dir")
            .map(|w| spec.def_dir.join(w))
            .unwrap_or_else(std::env::temp_dir);
        let work = WorkDir(
            crate::paths::private_temp_dir(
                &work_parent,
                &format!("imgform-chroot-{}", spec.addr.slug()),
            )
            .map_err(|e| {
                fail(format!(
                    "creating a work dir in {}: {e}",
                    work_parent.display()
                ))
            })?,
        );
        let root = work.0.join("root");
        std::fs::create_dir_all(&root)
            .map_err(|e| fail(format!("creating {}: {e}", root.display())))?;
        Ok((work, root))
    }

    /// Where an output is written before it is renamed into place.
    fn out(&self, suffix: &str) -> PathBuf {
        self.0.join(format!("out.{suffix}"))
    }
}

/// Where the image goes: its id (relative to the definition dir) and its
/// full path.
struct Output {
    rel_path: String,
    path: PathBuf,
}

impl Output {
    /// The image's place, with its directory created.
    fn prepare(spec: &ImageSpec, content_address: &str) -> Result<Output, BuildError> {
        let rel_path = artifact_path(spec, content_address);
        let path = spec.def_dir.join(&rel_path);
        let dir = path
            .parent()
            .expect("artifact path has a dir")
            .to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        Ok(Output { rel_path, path })
    }
}

/// The build, step by step: unpack the base, provision it, pack it (and
/// test what was packed), then describe the image file.
async fn build(ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
    let spec = ctx.spec;
    let base_str = spec.attr_str("base").ok_or_else(|| fail("no base"))?;
    if !ImageRef::find(base_str).is_empty() {
        return Err(fail(format!(
            "base refers to an image that has not been built: {base_str}"
        )));
    }
    let output = Output::prepare(spec, ctx.content_address)?;
    let (work, root) = WorkDir::create(spec)?;

    ctx.events.step(format!("unpacking {base_str}"));
    unpack(&spec.def_dir.join(base_str), &root).await?;
    if ctx.cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    provision_in_chroot(ctx, &root).await?;
    if ctx.cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    let ids = Ids::new(ctx.content_address);
    let boot = Bootable::from_spec(spec).map_err(|e| fail(e.message))?;
    let boot_files = match &boot {
        Some(b) => Some(bootable::prepare_tree(ctx, &root, b, &ids).await?),
        None => None,
    };

    let epoch = source_date_epoch(ctx)?;
    ctx.events.step(format!(
        "packing {} (SOURCE_DATE_EPOCH={epoch})",
        format_of(spec)
    ));
    normalise_times(&root, epoch).await?;
    let mut attributes = serde_json::Map::new();
    match format_of(spec) {
        "tar" => pack_tar_image(ctx, &work, &root, epoch, &output).await?,
        format => {
            let disk = Disk {
                format,
                ids: &ids,
                boot: boot.as_ref().zip(boot_files.as_ref()),
            };
            pack_disk_image(ctx, &work, &root, epoch, &output, &disk).await?;
            attributes.insert(
                "rootfs".into(),
                json!(format!("{}.rootfs.tar", output.rel_path)),
            );
        }
    }
    let sha = sha256_file(&output.path)
        .map_err(|e| fail(format!("hashing {}: {e}", output.path.display())))?;
    let size = std::fs::metadata(&output.path)
        .map(|m| m.len())
        .unwrap_or(0);
    attributes.insert("path".into(), json!(output.rel_path));
    attributes.insert("sha256".into(), json!(sha));
    attributes.insert("format".into(), json!(format_of(spec)));
    attributes.insert("bytes".into(), json!(size));
    Ok(Artifact {
        id: output.rel_path,
        attributes: attributes.into_iter().collect(),
    })
}

/// Runs the provisioners in `root` with /proc, /sys and /dev mounted,
/// unmounting again whatever they do.
async fn provision_in_chroot(ctx: &BuildContext<'_>, root: &Path) -> Result<(), BuildError> {
    let mut mounts = Mounts::mount(root).map_err(fail)?;
    let communicator = ChrootCommunicator {
        root: root.to_path_buf(),
        namespace: mounts.namespace(),
        cancel: ctx.cancel.clone(),
    };
    let result = provision::run_all(ctx, &communicator).await;
    mounts.unmount().map_err(fail)?;
    result
}

/// `source_date_epoch`, else `SOURCE_DATE_EPOCH`, else derived from the
/// content address.
fn source_date_epoch(ctx: &BuildContext<'_>) -> Result<u64, BuildError> {
    Ok(match ctx.spec.attr("source_date_epoch") {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| fail("source_date_epoch must be a number of seconds"))?,
        None => std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| derived_epoch(ctx.content_address)),
    })
}

/// `format = "tar"`: the tree as a tar, tested, then moved into place.
async fn pack_tar_image(
    ctx: &BuildContext<'_>,
    work: &WorkDir,
    root: &Path,
    epoch: u64,
    output: &Output,
) -> Result<(), BuildError> {
    pack_tar(root, &work.out("tar"), epoch).await?;
    let tested = test_phase(ctx, &work.0, &work.out("tar")).await;
    if tested.is_ok() || ctx.keep_failed {
        move_into_place(&work.out("tar"), &output.path)?;
    }
    tested.map_err(|e| test_failure(e, "tests failed", ctx.keep_failed, &output.rel_path))
}

/// What a disk image is made of, besides the tree.
struct Disk<'a> {
    /// `raw` or `qcow2`.
    format: &'a str,
    ids: &'a Ids,
    /// How it boots, and the files that takes; `None`: a bare filesystem.
    boot: Option<(&'a Bootable, &'a BootFiles)>,
}

/// `raw` and `qcow2`: the tree as a tar (the sidecar) and as a disk (a bare
/// ext4 filesystem, or a partitioned bootable disk), converted for qcow2,
/// tested (booted, for a bootable disk), then both moved into place.
async fn pack_disk_image(
    ctx: &BuildContext<'_>,
    work: &WorkDir,
    root: &Path,
    epoch: u64,
    output: &Output,
    disk: &Disk<'_>,
) -> Result<(), BuildError> {
    pack_tar(root, &work.out("rootfs.tar"), epoch).await?;
    let raw = work.out("raw");
    let fs = Ext4 {
        root,
        label: ctx.spec.attr_str("label").unwrap_or("rootfs"),
        uuid: disk.ids.fs_uuid.clone(),
        hash_seed: disk.ids.hash_seed.clone(),
        epoch,
    };
    let size = filesystem_size(ctx.spec, root).await?;
    match disk.boot {
        None => {
            let file = std::fs::File::create(&raw)
                .map_err(|e| fail(format!("creating {}: {e}", raw.display())))?;
            file.set_len(size)
                .map_err(|e| fail(format!("sizing {}: {e}", raw.display())))?;
            drop(file);
            fs.write(&raw, 0, size).await?;
        }
        Some((boot, files)) => {
            let plan = crate::drivers::disk::DiskPlan::new(
                boot.table,
                boot.efi,
                size,
                boot.disk_size,
                disk.ids.disk.clone(),
            )
            .map_err(fail)?;
            bootable::write_disk(&plan, &fs, files, disk.ids, &raw).await?;
        }
    }
    let produced = if disk.format == "qcow2" {
        run(
            Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1"])
                .arg(&raw)
                .arg(work.out("qcow2")),
            "qemu-img convert",
        )
        .await?;
        let _ = std::fs::remove_file(&raw);
        work.out("qcow2")
    } else {
        raw
    };
    // Test before anything is in place: a crash during the tests must not
    // leave an untested image to adopt.
    let tested = match disk.boot {
        Some((boot, files)) if boot.check.is_some() => {
            let check = boot.check.as_ref().expect("checked");
            boot_check::boot_check(ctx, check, files, &produced, disk.format, boot.efi, &work.0)
                .await
                .map_err(|e| (e, "the boot check failed"))
        }
        _ => test_phase(ctx, &work.0, &work.out("rootfs.tar"))
            .await
            .map_err(|e| (e, "tests failed")),
    };
    if tested.is_ok() || ctx.keep_failed {
        let sidecar = PathBuf::from(format!("{}.rootfs.tar", output.path.display()));
        move_into_place(&work.out("rootfs.tar"), &sidecar)?;
        move_into_place(&produced, &output.path)?;
    }
    tested.map_err(|(e, what)| test_failure(e, what, ctx.keep_failed, &output.rel_path))
}

fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let at = |name: &str| {
        spec.attr_locs
            .get(name)
            .cloned()
            .or_else(|| Some(spec.loc.clone()))
    };
    match spec.attr("base") {
        None => diags.push(
            Diagnostic::error("a chroot source needs a `base`")
                .at(Some(spec.loc.clone()))
                .hint("base = \"rootfs.tar.gz\" (a root filesystem tarball or directory), or base = image.<ADDR>.id of another chroot image"),
        ),
        Some(Value::String(_)) => {}
        Some(_) => diags.push(Diagnostic::error("`base` must be a path or image.<ADDR>.id").at(at("base")).hint("base = \"rootfs.tar.gz\"")),
    }
    if let Some(f) = spec.attr("format") {
        if !f.as_str().is_some_and(|f| FORMATS.contains(&f)) {
            diags.push(
                Diagnostic::error(format!("unknown chroot format {f}"))
                    .at(at("format"))
                    .hint("format is one of qcow2 (default), raw, tar"),
            );
        }
    }
    if let Some(Value::String(s)) = spec.attr("size") {
        if parse_size(s).is_none() {
            diags.push(
                Diagnostic::error(format!("size `{s}` is not a size"))
                    .at(at("size"))
                    .hint("write a size like \"512M\" or \"2G\""),
            );
        }
    }
    match bootable::Bootable::from_spec(spec) {
        Err(e) => diags.push(
            Diagnostic::error(e.message)
                .at(at(e.attr))
                .hint("see the chroot builder's bootable disk settings in the README"),
        ),
        Ok(Some(_)) if format_of(spec) == "tar" => diags.push(
            Diagnostic::error("a bootable image is a disk: format = \"tar\" cannot boot")
                .at(at("format"))
                .hint("use format = \"qcow2\" (the default) or \"raw\""),
        ),
        Ok(_) => {}
    }
    let communicator = spec.attr_str("communicator").unwrap_or("chroot");
    if communicator != "chroot" && communicator != "none" {
        diags.push(Diagnostic::error(format!("the chroot builder runs provisioners with the chroot communicator, not \"{communicator}\"")).at(at("communicator")).hint("remove `communicator` or set it to \"chroot\""));
    }
    diags
}

impl Builder for ChrootBuilder {
    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>> {
        Box::pin(async move { build(&ctx).await })
    }

    fn adopt<'a>(
        &'a self,
        spec: &'a ImageSpec,
        content_address: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Artifact>, BuildError>> {
        Box::pin(async move {
            // The file name carries the first 12 hex of the content address.
            if id != artifact_path(spec, content_address) {
                return Ok(None);
            }
            let path = spec.def_dir.join(id);
            if !path.is_file() {
                return Ok(None);
            }
            // A file cut short (a kill while it was written elsewhere) is
            // never adopted as the image.
            if let Err(why) = verify_image(&path, format_of(spec)).await {
                return Err(fail(format!("{id} is damaged ({why}); it is not adopted"))
                    .with_hint("delete it and run `imgform apply` to build the image again"));
            }
            let sha =
                sha256_file(&path).map_err(|e| fail(format!("hashing {}: {e}", path.display())))?;
            let mut attributes = std::collections::BTreeMap::new();
            attributes.insert("path".to_owned(), json!(id));
            attributes.insert("sha256".to_owned(), json!(sha));
            attributes.insert("format".to_owned(), json!(format_of(spec)));
            attributes.insert(
                "bytes".to_owned(),
                json!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)),
            );
            if format_of(spec) != "tar" && spec.def_dir.join(format!("{id}.rootfs.tar")).is_file() {
                attributes.insert("rootfs".to_owned(), json!(format!("{id}.rootfs.tar")));
            }
            Ok(Some(Artifact {
                id: id.to_owned(),
                attributes,
            }))
        })
    }

    fn list_artifacts<'a>(
        &'a self,
        spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<Vec<String>, BuildError>> {
        Box::pin(async move {
            let out = spec
                .attr_str("output_dir")
                .unwrap_or("output")
                .trim_end_matches('/')
                .to_owned();
            let prefix = format!("{}-", spec.addr.slug());
            let mut found = Vec::new();
            let Ok(entries) = std::fs::read_dir(spec.def_dir.join(&out)) else {
                return Ok(found);
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(&prefix) else {
                    continue;
                };
                // <12 hex>.<qcow2|raw|tar>, not the .rootfs.tar sidecar.
                let ours = rest.len() > 13
                    && rest[..12].chars().all(|c| c.is_ascii_hexdigit())
                    && matches!(&rest[12..], ".qcow2" | ".raw" | ".tar");
                if ours {
                    found.push(format!("{out}/{name}"));
                }
            }
            found.sort();
            Ok(found)
        })
    }

    fn exists<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<bool, BuildError>> {
        Box::pin(async move {
            let path = crate::paths::local_artifact(at.def_dir, &artifact.id).map_err(fail)?;
            Ok(path.is_file())
        })
    }

    fn changed<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<Option<crate::state::ArtifactChange>, BuildError>> {
        Box::pin(async move {
            crate::paths::local_artifact_changed_async(at.def_dir, artifact)
                .await
                .map_err(BuildError::failed)
        })
    }

    fn destroy<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            crate::paths::remove_local_artifact(at.def_dir, &artifact.id, &[".rootfs.tar"])
                .map_err(fail)
        })
    }
}

/// The test phase: a fresh unpack of the new image's tree, mounted, with
/// the test provisioners run in it.
async fn test_phase(ctx: &BuildContext<'_>, work: &Path, tree: &Path) -> Result<(), BuildError> {
    if !crate::provision::has_tests(ctx.spec) {
        return Ok(());
    }
    ctx.events
        .step("test phase: running the tests on a fresh unpack of the new image");
    let root = work.join("test-root");
    std::fs::create_dir_all(&root)
        .map_err(|e| fail(format!("creating {}: {e}", root.display())))?;
    unpack(tree, &root).await?;
    let mut mounts = Mounts::mount(&root).map_err(fail)?;
    let communicator = ChrootCommunicator {
        root: root.clone(),
        namespace: mounts.namespace(),
        cancel: ctx.cancel.clone(),
    };
    let result = crate::provision::run_tests(ctx, &communicator).await;
    mounts.unmount().map_err(fail)?;
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// `what` (the tests, the boot check) failed: the image is not recorded.
fn test_failure(e: BuildError, what: &str, kept: bool, path: &str) -> BuildError {
    match e {
        BuildError::Cancelled => BuildError::Cancelled,
        other => fail(format!(
            "{what}, the image is not recorded ({}): {other}",
            if kept {
                format!("kept at {path} because of --keep-failed")
            } else {
                "the new image was deleted".to_owned()
            }
        )),
    }
}

/// Puts a finished file at `to`, whole or not at all: a rename when both
/// are on one filesystem, else a copy under a temporary name in `to`'s
/// folder, fsynced, then renamed (a kill during the copy leaves no file
/// under the artifact's name for `state recover` to find).
fn move_into_place(from: &Path, to: &Path) -> Result<(), BuildError> {
    let err = |e: std::io::Error| fail(format!("writing {}: {e}", to.display()));
    if crate::fault::armed_anywhere("kill-during-artifact-write") {
        die_halfway_through_a_copy(from, to);
    }
    let dir = to.parent().expect("an artifact path has a folder");
    // Copies a killed run left half-written go first.
    crate::paths::sweep_stale_temp_files_once(dir);
    if std::fs::rename(from, to).is_ok() {
        return sync_dir(to).map_err(err);
    }
    let part = crate::paths::temp_path_for(to);
    let copied = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)?;
        std::io::copy(&mut std::fs::File::open(from)?, &mut out)?;
        out.sync_all()?;
        std::fs::rename(&part, to)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&part);
        return Err(err(e));
    }
    let _ = std::fs::remove_file(from);
    sync_dir(to).map_err(err)
}

/// The fault `kill-during-artifact-write`: dies as a kill in the middle of
/// a copy across filesystems would, half the bytes in the temporary file.
fn die_halfway_through_a_copy(from: &Path, to: &Path) -> ! {
    use std::io::Write;
    if let (Ok(bytes), Ok(mut file)) = (
        std::fs::read(from),
        std::fs::File::create(crate::paths::temp_path_for(to)),
    ) {
        let _ = file.write_all(&bytes[..bytes.len() / 2]);
        let _ = file.sync_all();
    }
    crate::fault::die()
}

/// Makes a rename into `path`'s folder durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("12x"), None);
    }

    #[test]
    fn derived_values_are_stable_and_distinct() {
        let a = derived_uuid("sha256:ab", "fs-uuid");
        assert_eq!(a, derived_uuid("sha256:ab", "fs-uuid"));
        assert_ne!(a, derived_uuid("sha256:ab", "hash-seed"));
        assert_eq!(a.len(), 36);
        assert!(derived_epoch("sha256:ab") >= 1_577_836_800);
    }
}
