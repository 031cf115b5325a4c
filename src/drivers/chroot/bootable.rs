//! Bootable chroot images (`partition_table = "gpt"` or `"mbr"`), as
//! diskimage-builder's `vm` + `block-device-*` + `bootloader` elements make
//! them, but without loop devices or mounts:
//!
//! 1. The tree gets what booting needs, from the image's own packages: the
//!    newest kernel and initramfs in `/boot` (`linux-image-*`), GRUB's
//!    modules (`grub-pc-bin`, and `grub-efi-amd64-bin` with `efi`), an
//!    `/etc/fstab` and a `/boot/grub/grub.cfg` written by imgform (root by
//!    UUID, the console on `ttyS0` too, `kernel_args`).
//! 2. GRUB's core images are made in the chroot with the image's
//!    `grub-mkimage`, with an embedded configuration that finds the root
//!    filesystem by UUID.
//! 3. The disk is written in place: the partition table (`sfdisk`), the
//!    root ext4 at its offset, the EFI system partition (`mkfs.vfat
//!    --offset`, mtools), GRUB's BIOS boot code ([`disk::install_grub_bios`]).
//!
//! Every identifier is derived from the content address, and every time
//! from `SOURCE_DATE_EPOCH`: the same inputs give the same disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::pack::{run, Ext4};
use super::{derived_uuid, fail, parse_size};
use crate::build::{BuildContext, BuildError};
use crate::drivers::disk::{self, BootEntry, DiskIds, DiskPlan, Holds, PartitionTable};
use crate::drivers::vm::Accel;
use crate::provision::chroot::ChrootCommunicator;
use crate::provision::Communicator;
use crate::spec::ImageSpec;

/// How a chroot image is made bootable, from its source's settings.
#[derive(Debug, Clone)]
pub(super) struct Bootable {
    pub table: PartitionTable,
    pub efi: bool,
    /// `bootloader = "grub"` (the default); `"none"` leaves the disk without
    /// one (for a platform that boots the kernel directly).
    pub grub: bool,
    pub kernel_args: Vec<String>,
    pub disk_size: Option<u64>,
    pub grub_timeout: u32,
    /// Boot it before recording it (`boot_check`, default true).
    pub check: Option<BootCheck>,
}

/// How the boot check runs.
#[derive(Debug, Clone)]
pub(super) struct BootCheck {
    /// From power-on to SSH (or a login prompt).
    pub timeout: Duration,
    /// `accelerator`; `None`: KVM when it works, else TCG.
    pub accel: Option<Accel>,
    pub memory_mib: u32,
    pub cpus: u32,
}

/// The Packer/DIB-style settings of a bootable chroot image.
pub(super) const SETTINGS: &[&str] = &[
    "partition_table",
    "bootloader",
    "efi",
    "kernel_args",
    "disk_size",
    "grub_timeout",
    "boot_check",
    "boot_timeout",
    "accelerator",
    "memory",
    "cpus",
];

/// A bootable-disk setting with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SettingError {
    /// The attribute at fault (where the diagnostic points).
    pub attr: &'static str,
    pub message: String,
}

fn bad(attr: &'static str, message: impl Into<String>) -> SettingError {
    SettingError {
        attr,
        message: message.into(),
    }
}

/// A whole number (or a string of one) that fits a `u32`.
fn whole(spec: &ImageSpec, name: &'static str, default: u32) -> Result<u32, SettingError> {
    match spec.attr(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(name, format!("{name} must be a whole number, not {v}"))),
    }
}

impl Bootable {
    /// `None` for a bare filesystem image (no `partition_table`, or `"none"`).
    pub fn from_spec(spec: &ImageSpec) -> Result<Option<Bootable>, SettingError> {
        let table = match spec.attr_str("partition_table") {
            None | Some("none") => {
                if let Some(set) = SETTINGS[1..]
                    .iter()
                    .find(|s| spec.attr(s).is_some_and(|v| !v.is_null()))
                {
                    return Err(bad(
                        set,
                        format!("`{set}` needs a bootable disk: set partition_table = \"gpt\" (or \"mbr\")"),
                    ));
                }
                return Ok(None);
            }
            Some(t) => PartitionTable::parse(t).ok_or_else(|| {
                bad(
                    "partition_table",
                    format!("partition_table = \"{t}\" is not one of gpt, mbr, none"),
                )
            })?,
        };
        let efi = spec.attr_bool("efi").unwrap_or(false);
        if efi && table == PartitionTable::Mbr {
            return Err(bad("efi", "efi = true needs partition_table = \"gpt\""));
        }
        let grub = match spec.attr_str("bootloader").unwrap_or("grub") {
            "grub" => true,
            "none" => false,
            other => {
                return Err(bad(
                    "bootloader",
                    format!("bootloader = \"{other}\" is not one of grub, none"),
                ))
            }
        };
        let disk_size = match spec.attr("disk_size") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_size(s).ok_or_else(|| {
                bad(
                    "disk_size",
                    format!("disk_size `{s}` is not a size like \"4G\""),
                )
            })?),
            // A bare number is MiB, as Packer's disk_size.
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| {
                        bad(
                            "disk_size",
                            format!("disk_size {v} is not a size like \"4G\""),
                        )
                    })?
                    .saturating_mul(1 << 20),
            ),
        };
        let check = if spec.attr_bool("boot_check").unwrap_or(true) {
            let timeout = match spec.attr_str("boot_timeout") {
                None => Duration::from_secs(600),
                Some(t) => crate::spec::parse_duration(t).ok_or_else(|| {
                    bad(
                        "boot_timeout",
                        format!("boot_timeout `{t}` is not a duration like \"10m\""),
                    )
                })?,
            };
            let accel = match spec.attr_str("accelerator") {
                None => None,
                Some(a) => Some(Accel::parse(a).ok_or_else(|| {
                    bad(
                        "accelerator",
                        format!("accelerator = \"{a}\" is not one of kvm, tcg, none"),
                    )
                })?),
            };
            Some(BootCheck {
                timeout,
                accel,
                memory_mib: whole(spec, "memory", 1024)?,
                cpus: whole(spec, "cpus", 2)?,
            })
        } else {
            None
        };
        Ok(Some(Bootable {
            table,
            efi,
            grub,
            kernel_args: spec.attr_strings("kernel_args"),
            disk_size,
            grub_timeout: whole(spec, "grub_timeout", 1)?,
            check,
        }))
    }
}

/// What the disk needs from the tree, taken before it is packed.
pub(super) struct BootFiles {
    /// GRUB's `boot.img` and the BIOS core image.
    pub bios: Option<(Vec<u8>, Vec<u8>)>,
    /// GRUB's EFI image (`BOOTX64.EFI`).
    pub efi: Option<Vec<u8>>,
    /// The kernel in the tree (the accelerator check boots it).
    pub kernel: PathBuf,
    /// The tree has cloud-init (the boot check logs in through it).
    pub cloud_init: bool,
}

/// The identifiers of one image's disk, from its content address.
pub(super) struct Ids {
    pub fs_uuid: String,
    pub hash_seed: String,
    pub esp_serial: String,
    pub disk: DiskIds,
}

impl Ids {
    pub fn new(content_address: &str) -> Ids {
        let id = |salt: &str| derived_uuid(content_address, salt);
        Ids {
            fs_uuid: id("fs-uuid"),
            hash_seed: id("hash-seed"),
            esp_serial: id("esp-serial")[..8].to_owned(),
            disk: DiskIds {
                disk_guid: id("disk-guid"),
                mbr_signature: id("mbr-signature")[..8].to_owned(),
                esp: id("esp-partition"),
                bios_boot: id("bios-boot-partition"),
                root: id("root-partition"),
            },
        }
    }

    /// `XXXX-XXXX`, as blkid shows a FAT serial (and fstab names it).
    fn esp_volume_id(&self) -> String {
        let s = self.esp_serial.to_ascii_uppercase();
        format!("{}-{}", &s[..4], &s[4..])
    }
}

/// GRUB modules built into the core images: enough to find the root by
/// UUID on GPT or MBR, read ext4 and run `grub.cfg`; the rest load from
/// `/boot/grub/<platform>/` as needed.
const CORE_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "linux",
    "echo",
    "test",
    "serial",
    "terminal",
];

/// Step 1 and 2: the kernel, fstab, grub.cfg and modules in the tree, and
/// GRUB's core images made with the tree's own `grub-mkimage`.
pub(super) async fn prepare_tree(
    ctx: &BuildContext<'_>,
    root: &Path,
    boot: &Bootable,
    ids: &Ids,
) -> Result<BootFiles, BuildError> {
    let (kernel, initrd) = newest_kernel(root)?;
    ctx.events.step(format!(
        "making it bootable: {} on {}",
        kernel.display(),
        match (boot.table, boot.efi) {
            (PartitionTable::Gpt, true) => "GPT, BIOS and UEFI",
            (PartitionTable::Gpt, false) => "GPT, BIOS",
            (PartitionTable::Mbr, _) => "MBR, BIOS",
        }
    ));
    let esp_id = boot.efi.then(|| ids.esp_volume_id());
    write_in_tree(
        root,
        "etc/fstab",
        &disk::fstab(&ids.fs_uuid, esp_id.as_deref()),
    )?;
    let entry = BootEntry {
        kernel: format!("/{}", kernel.display()),
        initrd: initrd.map(|i| format!("/{}", i.display())),
        root_uuid: ids.fs_uuid.clone(),
        kernel_args: boot.kernel_args.clone(),
        timeout: boot.grub_timeout,
        title: ctx.spec.addr.to_string(),
    };
    let mut files = BootFiles {
        bios: None,
        efi: None,
        kernel: root.join(&kernel),
        cloud_init: root.join("usr/bin/cloud-init").exists(),
    };
    if boot.grub {
        write_in_tree(root, "boot/grub/grub.cfg", &disk::grub_cfg(&entry))?;
        let boot_img = grub_platform(root, "i386-pc")?;
        files.bios = Some((
            std::fs::read(boot_img.join("boot.img"))
                .map_err(|e| fail(format!("reading GRUB's boot.img: {e}")))?,
            grub_mkimage(ctx, root, "i386-pc", &ids.fs_uuid).await?,
        ));
        if boot.efi {
            grub_platform(root, "x86_64-efi")?;
            files.efi = Some(grub_mkimage(ctx, root, "x86_64-efi", &ids.fs_uuid).await?);
        }
    }
    Ok(files)
}

fn write_in_tree(root: &Path, rel: &str, text: &str) -> Result<(), BuildError> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            fail(format!(
                "creating /{}: {e}",
                rel.rsplit_once('/').map_or("", |r| r.0)
            ))
        })?;
    }
    // A symlink planted by the image must not redirect the write.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, text).map_err(|e| fail(format!("writing /{rel}: {e}")))
}

/// The newest `boot/vmlinuz-*` (by version) and its initramfs, relative to
/// the tree.
fn newest_kernel(root: &Path) -> Result<(PathBuf, Option<PathBuf>), BuildError> {
    let mut versions: Vec<String> = std::fs::read_dir(root.join("boot"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_prefix("vmlinuz-")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| version_cmp(a, b));
    let Some(version) = versions.pop() else {
        return Err(BuildError::failed(
            "a bootable image needs a kernel, and /boot has no vmlinuz-*",
        )
        .with_hint("install one in the image (Debian: apt-get install linux-image-amd64), or start from scripts/make-debian-rootfs.sh --cloud"));
    };
    let initrd = PathBuf::from(format!("boot/initrd.img-{version}"));
    Ok((
        PathBuf::from(format!("boot/vmlinuz-{version}")),
        root.join(&initrd).exists().then_some(initrd),
    ))
}

/// Compares version strings by their numbers, as `sort -V` does.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_owned())
            })
            .collect()
    };
    parts(a).cmp(&parts(b))
}

/// GRUB's files for `platform` in the tree, copied to `/boot/grub/` where
/// GRUB loads modules from at boot.
fn grub_platform(root: &Path, platform: &str) -> Result<PathBuf, BuildError> {
    let dir = root.join("usr/lib/grub").join(platform);
    if !dir.is_dir() {
        let package = if platform == "i386-pc" {
            "grub-pc-bin"
        } else {
            "grub-efi-amd64-bin"
        };
        return Err(BuildError::failed(format!(
            "a bootable image needs GRUB's {platform} files, and /usr/lib/grub/{platform} is missing"
        ))
        .with_hint(format!(
            "install them in the image (Debian: apt-get install {package}), or set bootloader = \"none\""
        )));
    }
    let target = root.join("boot/grub").join(platform);
    std::fs::create_dir_all(&target)
        .map_err(|e| fail(format!("creating /boot/grub/{platform}: {e}")))?;
    for entry in
        std::fs::read_dir(&dir).map_err(|e| fail(format!("reading {}: {e}", dir.display())))?
    {
        let entry = entry.map_err(|e| fail(e.to_string()))?;
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".mod") || n.ends_with(".lst") {
            std::fs::copy(entry.path(), target.join(&name))
                .map_err(|e| fail(format!("copying {n}: {e}")))?;
        }
    }
    Ok(dir)
}

/// Runs the tree's `grub-mkimage` for `platform` in the chroot; the image,
/// its scratch files gone from the tree.
async fn grub_mkimage(
    ctx: &BuildContext<'_>,
    root: &Path,
    platform: &str,
    root_uuid: &str,
) -> Result<Vec<u8>, BuildError> {
    let scratch = root.join("tmp/imgform-grub");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| fail(format!("creating /tmp/imgform-grub: {e}")))?;
    std::fs::write(scratch.join("early.cfg"), disk::grub_early_cfg(root_uuid))
        .map_err(|e| fail(format!("writing GRUB's early config: {e}")))?;
    let extra: &[&str] = if platform == "i386-pc" {
        &["biosdisk"]
    } else {
        &["fat", "part_gpt", "efi_gop"]
    };
    let modules: Vec<&str> = CORE_MODULES.iter().chain(extra).copied().collect();
    let command = format!(
        "grub-mkimage -d /usr/lib/grub/{platform} -O {platform} -c /tmp/imgform-grub/early.cfg -p /boot/grub -o /tmp/imgform-grub/core.img {}",
        modules.join(" ")
    );
    let chroot = ChrootCommunicator {
        root: root.to_path_buf(),
        namespace: None,
        cancel: ctx.cancel.clone(),
    };
    let code = chroot
        .exec(&command, &[], &ctx.events)
        .await
        .map_err(|e| fail(format!("grub-mkimage in the image: {e}")))?;
    let image = std::fs::read(scratch.join("core.img"));
    let _ = std::fs::remove_dir_all(&scratch);
    if code != 0 {
        return Err(BuildError::failed(format!(
            "grub-mkimage -O {platform} in the image failed (exit {code})"
        ))
        .with_hint(
            "the image needs grub-common (which has grub-mkimage); Debian's grub-pc-bin brings it",
        ));
    }
    image.map_err(|e| fail(format!("reading GRUB's {platform} image: {e}")))
}

/// Step 3: the disk in `raw`, laid out by `plan`, with `fs` as its root.
pub(super) async fn write_disk(
    plan: &DiskPlan,
    fs: &Ext4<'_>,
    files: &BootFiles,
    ids: &Ids,
    raw: &Path,
) -> Result<(), BuildError> {
    let file =
        std::fs::File::create(raw).map_err(|e| fail(format!("creating {}: {e}", raw.display())))?;
    file.set_len(plan.total_bytes())
        .map_err(|e| fail(format!("sizing {}: {e}", raw.display())))?;
    drop(file);
    partition(raw, plan).await?;
    let root = plan.root();
    fs.write(raw, root.offset(), root.bytes()).await?;
    if let (Some(esp), Some(efi)) = (plan.partition(Holds::Esp), &files.efi) {
        write_esp(raw, esp, efi, &ids.esp_serial, fs.epoch).await?;
    }
    if let Some((boot_img, core_img)) = &files.bios {
        disk::install_grub_bios(raw, boot_img, core_img, plan.embed_region())
            .map_err(|e| fail(format!("installing GRUB's BIOS boot code: {e}")))?;
    }
    Ok(())
}

/// Writes the partition table with `sfdisk` (into the file itself).
async fn partition(raw: &Path, plan: &DiskPlan) -> Result<(), BuildError> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
        ])
        .arg(raw)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            BuildError::failed(format!("sfdisk: cannot start: {e}"))
                .with_hint("install sfdisk (Debian: apt-get install fdisk)")
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(plan.sfdisk_script().as_bytes())
        .await
        .map_err(|e| fail(format!("sfdisk: {e}")))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(format!("sfdisk: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "sfdisk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The EFI system partition: FAT, written at its offset (`mkfs.vfat
/// --offset`, mtools' `image@@offset`), with GRUB as the removable-media
/// loader `EFI/BOOT/BOOTX64.EFI`.
async fn write_esp(
    raw: &Path,
    esp: &disk::Partition,
    efi: &[u8],
    serial: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    let loader = raw.with_extension("BOOTX64.EFI");
    std::fs::write(&loader, efi).map_err(|e| fail(format!("writing {}: {e}", loader.display())))?;
    let image = format!("{}@@{}", raw.display(), esp.offset());
    let epoch = epoch.to_string();
    let tool = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.env("SOURCE_DATE_EPOCH", &epoch);
        cmd
    };
    let result = async {
        run(
            tool("mkfs.vfat")
                .args(["--invariant", "-F", "16"])
                .arg(format!("--offset={}", esp.start))
                .args(["-n", "EFI"])
                .arg(raw)
                .arg((esp.bytes() / 1024).to_string()),
            "mkfs.vfat",
        )
        .await?;
        // --invariant fixes the serial too; give the ESP its own.
        run(
            tool("mlabel").args(["-i", &image, "-N", serial, "::EFI"]),
            "mlabel",
        )
        .await?;
        run(
            tool("mmd").args(["-i", &image, "::/EFI", "::/EFI/BOOT"]),
            "mmd",
        )
        .await?;
        // Without -m, mtools dates the file SOURCE_DATE_EPOCH, not the
        // scratch file's time.
        run(
            tool("mcopy")
                .args(["-i", &image])
                .arg(&loader)
                .arg("::/EFI/BOOT/BOOTX64.EFI"),
            "mcopy",
        )
        .await
    }
    .await;
    let _ = std::fs::remove_file(&loader);
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_sort_by_version() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-28-amd64", "5.10.0-30-amd64"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-28-amd64"]);
    }

    #[test]
    fn ids_are_derived_and_distinct() {
        let a = Ids::new("sha256:aa");
        let b = Ids::new("sha256:bb");
        assert_ne!(a.fs_uuid, b.fs_uuid);
        assert_ne!(a.disk.root, a.disk.esp);
        assert_eq!(a.esp_volume_id().len(), 9);
        assert_eq!(Ids::new("sha256:aa").disk.disk_guid, a.disk.disk_guid);
    }
}
