//! The `qemu` builder: Packer's, so that Packer qemu templates load
//! unchanged. It boots a base disk (`disk_image = true`) or an installer ISO
//! with `qemu-system-x86_64` (KVM when it works here, else TCG), types the
//! `boot_command`, serves `http_directory`/`http_content`, attaches
//! `cd_files`/`cd_content` and `floppy_files` media, provisions over SSH
//! through a host port forwarded to the guest's 22, runs the
//! `shutdown_command`, waits for QEMU to exit and keeps the disk.
//!
//! What is an input: the base image's bytes (its checksum, or the file's
//! own hash when it is local, or the parent's content address when it is
//! `image.<ADDR>.id` of a local image), the disk settings, the virtual
//! hardware the guest sees (machine, interfaces, firmware, `qemuargs`), the
//! media and HTTP contents, what is typed and the provisioners. Not inputs:
//! cpus, memory, accelerator, ports, timeouts, names and where the disk goes.
//!
//! The artifact is the disk, `output_directory/<vm_name stem>-<hex12>.<ext>`
//! (the id is that path, relative to the definition dir; a `vm_name`
//! without a disk extension gets the format's), so `drift` and
//! `state recover` find it by its content address. It is moved into place
//! only after QEMU has exited cleanly; on failure or Ctrl-C the VM is
//! stopped and its scratch dir removed (`--on-error=abort` keeps the scratch
//! dir, disk included, and says how to look at it).

mod boot_command;
mod build;
mod checksum;
mod media;
mod settings;

use serde_json::json;

use super::kind::{loc_of, local_target, Builder, BuilderKind, Recorded, COMMUNICATOR, IMGFORM};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, secret, setting, Schema};
use crate::spec::ImageSpec;
use crate::state::Artifact;
pub use settings::Settings;

/// `qemu`: Packer's attributes, split into inputs and build settings (see
/// the module comment for why).
pub static KIND: BuilderKind = BuilderKind {
    schema: Schema {
        kind: "qemu",
        attrs: &[
            &[
                // The base and the disk.
                input("iso_url").files(),
                input("iso_urls").files().list(),
                input("iso_checksum"),
                input("disk_image"),
                input("use_backing_file"),
                input("disk_size"),
                input("skip_resize_disk"),
                input("format"),
                input("disk_compression"),
                input("skip_compaction"),
                input("disk_additional_size")
                    .ignored("attach more disks with qemuargs = [[\"-drive\", \"...\"]]"),
                // The virtual hardware the guest (and so a provisioner) sees.
                input("machine_type"),
                input("net_device"),
                input("disk_interface"),
                input("cdrom_interface").ignored("CDs are attached on IDE"),
                input("qemuargs"),
                input("firmware"),
                input("efi_boot"),
                input("efi_firmware_code"),
                input("efi_firmware_vars"),
                input("efi_drop_efivars")
                    .ignored("the EFI variables file is always given to the VM"),
                input("vtpm").ignored("add a TPM with qemuargs"),
                // What the guest is given and told.
                input("cd_files").files().list(),
                input("cd_content"),
                input("cd_label"),
                input("floppy_files").files().list(),
                input("floppy_dirs").files().list(),
                input("floppy_content"),
                input("floppy_label"),
                input("http_directory").files(),
                input("http_content"),
                input("boot_command").list(),
                input("shutdown_command"),
                // How and where it runs.
                setting("iso_target_path")
                    .ignored("downloads are cached under ~/.cache/imgform/downloads"),
                setting("iso_target_extension")
                    .ignored("downloads are cached under imgform's own names"),
                setting("iso_skip_cache").ignored("downloads are always cached by checksum"),
                setting("accelerator"),
                setting("cpus"),
                setting("sockets").ignored("write qemuargs = [[\"-smp\", \"...\"]]"),
                setting("cores").ignored("write qemuargs = [[\"-smp\", \"...\"]]"),
                setting("threads").ignored("write qemuargs = [[\"-smp\", \"...\"]]"),
                setting("cpu_model").ignored("write qemuargs = [[\"-cpu\", \"host\"]]"),
                setting("memory"),
                setting("qemu_binary"),
                setting("qemu_img_args").ignored("imgform runs qemu-img with its own arguments"),
                setting("disk_cache")
                    .ignored("write qemuargs = [[\"-drive\", \"...\"]] for other drive options"),
                setting("disk_discard")
                    .ignored("write qemuargs = [[\"-drive\", \"...\"]] for other drive options"),
                setting("disk_detect_zeroes")
                    .ignored("write qemuargs = [[\"-drive\", \"...\"]] for other drive options"),
                setting("headless").ignored("imgform always runs QEMU without a display"),
                setting("display")
                    .ignored("imgform runs QEMU without a display (the serial console is logged)"),
                setting("use_default_display").ignored("imgform runs QEMU without a display"),
                setting("vnc_bind_address").ignored("boot_command keys go through QMP, not VNC"),
                setting("vnc_port_min").ignored("boot_command keys go through QMP, not VNC"),
                setting("vnc_port_max").ignored("boot_command keys go through QMP, not VNC"),
                setting("vnc_use_password").ignored("boot_command keys go through QMP, not VNC"),
                setting("net_bridge")
                    .ignored("imgform uses QEMU's user network (no root, nothing left behind)"),
                setting("http_port_min"),
                setting("http_port_max"),
                setting("http_bind_address").ignored(
                    "the HTTP server listens on 127.0.0.1, which the guest reaches as 10.0.2.2",
                ),
                setting("boot_wait"),
                setting("boot_key_interval"),
                setting("boot_keygroup_interval")
                    .ignored("boot_command keys are typed with boot_key_interval between them"),
                setting("host_port_min"),
                setting("host_port_max"),
                setting("ssh_host_port_min"),
                setting("ssh_host_port_max"),
                setting("shutdown_timeout"),
                setting("output_directory"),
                setting("vm_name"),
                setting("boot_steps").ignored(
                    "write boot_command (boot_steps' per-step descriptions are not implemented)",
                ),
                setting("disable_vnc")
                    .ignored("boot_command keys go through QMP; imgform never opens VNC"),
                setting("http_interface").ignored("the HTTP server listens on http_bind_address"),
                setting("http_network_protocol").ignored("the HTTP server listens on IPv4"),
                setting("qmp_enable")
                    .ignored("imgform always talks to QEMU over its own QMP socket"),
                setting("qmp_socket_path")
                    .ignored("imgform always talks to QEMU over its own QMP socket"),
                setting("run_once")
                    .ignored("imgform boots the machine once, as Packer does by default"),
                setting("skip_nat_mapping")
                    .ignored("imgform always forwards a host port to the guest's SSH port"),
                setting("tpm_device_type").ignored("add a TPM with qemuargs"),
                setting("use_pflash")
                    .ignored("OVMF firmware is given with efi_firmware_code and efi_firmware_vars"),
                setting("use_tpm1").ignored("add a TPM with qemuargs"),
                setting("vga").ignored("write qemuargs = [[\"-vga\", \"...\"]]"),
                secret("vnc_password").ignored("boot_command keys go through QMP, not VNC"),
            ],
            COMMUNICATOR,
            IMGFORM,
        ],
        blocks: &[],
    },
    target: local_target,
    validate,
    builder: Some(&QemuBuilder),
    feature: None,
};

pub struct QemuBuilder;

fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    match Settings::from_spec(spec) {
        Err(e) => diags.push(
            Diagnostic::error(format!("{}: {}", spec.addr, e.message))
                .at(loc_of(spec, e.attr))
                .hint(e.hint),
        ),
        Ok(s) => {
            if s.disk_image
                && s.sources.len() > 1
                && s.sources.iter().any(|u| settings::is_image_ref(u))
            {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: a base given as image.<ADDR>.id is the only base",
                        spec.addr
                    ))
                    .at(loc_of(spec, "iso_urls"))
                    .hint("write iso_url = image.<ADDR>.id"),
                );
            }
            if s.sources.iter().any(|u| settings::is_image_ref(u)) && !s.disk_image {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: iso_url names a local image, which is a disk: set disk_image = true",
                        spec.addr
                    ))
                    .at(loc_of(spec, "iso_url"))
                    .hint("disk_image = true boots the parent's disk (a copy of it, or an overlay with use_backing_file = true)"),
                );
            }
        }
    }
    diags
}

fn hex_of(content_address: &str) -> &str {
    content_address
        .strip_prefix("sha256:")
        .unwrap_or(content_address)
}

/// Extensions a `vm_name` may keep; any other name gets the format's.
const DISK_EXTENSIONS: &[&str] = &["qcow2", "raw", "img"];

/// `vm_name` split around where the address goes, always with a disk
/// extension (local artifacts are named `<image>-<12 hex>.<format>`):
/// `app.qcow2` → (`app`, `.qcow2`); `packer-app` → (`packer-app`, `.raw`)
/// for `format = "raw"`.
fn name_parts<'a>(vm_name: &'a str, format: &str) -> (&'a str, String) {
    match vm_name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && DISK_EXTENSIONS.contains(&ext) => {
            (stem, format!(".{ext}"))
        }
        _ => (vm_name, format!(".{format}")),
    }
}

/// The artifact's id: `output_directory/<stem>-<hex12><ext>`, relative to
/// the definition dir.
pub(crate) fn artifact_path(settings: &Settings, content_address: &str) -> String {
    let (stem, ext) = name_parts(&settings.vm_name, &settings.format);
    format!(
        "{}/{stem}-{}{ext}",
        settings.output_directory,
        &hex_of(content_address)[..12]
    )
}

/// What the state records about a disk at `id`.
fn describe(spec: &ImageSpec, settings: &Settings, id: &str) -> Result<Artifact, BuildError> {
    let path = spec.def_dir.join(id);
    let sha = checksum::digest_file(&path, checksum::Algo::Sha256)
        .map_err(|e| BuildError::failed(format!("hashing {}: {e}", path.display())))?;
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("path".to_owned(), json!(id));
    attributes.insert("sha256".to_owned(), json!(sha));
    attributes.insert("format".to_owned(), json!(settings.format));
    attributes.insert(
        "bytes".to_owned(),
        json!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)),
    );
    if let Some(backing) = media::backing_file(&path) {
        attributes.insert("backing_file".to_owned(), json!(backing));
    }
    Ok(Artifact {
        id: id.to_owned(),
        attributes,
    })
}

impl Builder for QemuBuilder {
    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>> {
        Box::pin(async move { build::build(&ctx).await })
    }

    fn adopt<'a>(
        &'a self,
        spec: &'a ImageSpec,
        content_address: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Artifact>, BuildError>> {
        Box::pin(async move {
            let Ok(settings) = Settings::from_spec(spec) else {
                return Ok(None);
            };
            // The file name carries the first 12 hex of the content address.
            if id != artifact_path(&settings, content_address) || !spec.def_dir.join(id).is_file() {
                return Ok(None);
            }
            // A disk cut short (a kill while it was written elsewhere) is
            // never adopted as the image.
            let path = spec.def_dir.join(id);
            if let Err(why) = super::local::verify_image(&path, &settings.format).await {
                return Err(BuildError::failed(format!(
                    "{id} is damaged ({why}); it is not adopted"
                ))
                .with_hint("delete it and run `imgform apply` to build the image again"));
            }
            describe(spec, &settings, id).map(Some)
        })
    }

    fn list_artifacts<'a>(
        &'a self,
        spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<Vec<String>, BuildError>> {
        Box::pin(async move {
            let Ok(settings) = Settings::from_spec(spec) else {
                return Ok(Vec::new());
            };
            let (stem, ext) = name_parts(&settings.vm_name, &settings.format);
            let prefix = format!("{stem}-");
            let mut found = Vec::new();
            let dir = spec.def_dir.join(&settings.output_directory);
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Ok(found);
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(&prefix) else {
                    continue;
                };
                let ours = rest.len() == 12 + ext.len()
                    && rest[..12].chars().all(|c| c.is_ascii_hexdigit())
                    && rest[12..] == ext;
                if ours {
                    found.push(format!("{}/{name}", settings.output_directory));
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
            let path = crate::paths::local_artifact(at.def_dir, &artifact.id)
                .map_err(BuildError::failed)?;
            // An overlay without its base is no image.
            let base_there = match media::backing_file(&path) {
                None => true,
                Some(backing) => path
                    .parent()
                    .map(|dir| dir.join(&backing))
                    .is_some_and(|b| b.is_file()),
            };
            Ok(path.is_file() && base_there)
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
            crate::paths::remove_local_artifact(at.def_dir, &artifact.id, &[])
                .map_err(BuildError::failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_goes_before_the_extension() {
        assert_eq!(name_parts("app.qcow2", "qcow2"), ("app", ".qcow2".into()));
        assert_eq!(
            name_parts("packer-app", "raw"),
            ("packer-app", ".raw".into())
        );
        assert_eq!(name_parts("a.b.img", "raw"), ("a.b", ".img".into()));
        assert_eq!(name_parts("app.v2", "qcow2"), ("app.v2", ".qcow2".into()));
    }
}
