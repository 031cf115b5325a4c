//! One `qemu` build, step by step: get and check the base, make the disk,
//! gather the media, start the HTTP server and the VM, type the boot
//! command, provision (and test) over SSH, shut down, compact, move the disk
//! into place. Everything temporary lives in one scratch dir that goes away
//! with the build, whatever ends it; the VM is stopped with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::boot_command::{self, KeyStep, Vars};
use super::media::{self, fail, run};
use super::{artifact_path, describe, Settings};
use crate::build::{BuildContext, BuildError};
use crate::drivers::vm::{self, http, Accel, Disk, Firmware, Vm, VmConfig, VmError};
use crate::provision::ssh::{HostKeyPolicy, Launched, SshCommunicator, SshConfig};
use crate::provision::{Communicator, NoCommunicator};
use crate::state::Artifact;

/// The build's scratch dir: removed on drop unless kept (`--on-error=abort`).
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) async fn build(ctx: &BuildContext<'_>) -> Result<Artifact, BuildError> {
    let spec = ctx.spec;
    let settings = Settings::from_spec(spec).map_err(|e| fail(e.message).with_hint(e.hint))?;
    if let Some(parent) = settings
        .sources
        .iter()
        .find(|s| super::settings::is_image_ref(s))
    {
        return Err(fail(format!(
            "iso_url refers to an image that has not been built: {parent}"
        )));
    }
    let scratch_parent = std::env::temp_dir();
    let mut scratch = Scratch {
        path: crate::paths::private_temp_dir(
            &scratch_parent,
            &format!("imgform-qemu-{}", spec.addr.slug()),
        )
        .map_err(|e| {
            fail(format!(
                "creating a scratch dir in {}: {e}",
                scratch_parent.display()
            ))
        })?,
        keep: false,
    };

    let mut cancel = ctx.cancel.clone();
    let mut vm = None;
    let result = tokio::select! {
        r = steps(ctx, &settings, &scratch.path, &mut vm) => r,
        _ = cancel.cancelled() => Err(BuildError::Cancelled),
    };
    // Whatever ended the steps, QEMU is gone (killed and reaped) before the
    // scratch dir goes and before imgform may exit.
    if let Some(vm) = vm.as_mut() {
        if vm.running() {
            vm.kill().await;
        }
    }
    drop(vm);
    match result {
        Ok(disk) => {
            let id = artifact_path(&settings, ctx.content_address);
            move_into_place(ctx, &settings, &disk, &id).await?;
            describe(spec, &settings, &id)
        }
        Err(BuildError::Cancelled) => Err(BuildError::Cancelled),
        Err(e) if ctx.keep_on_error && scratch.path.join(&settings.vm_name).is_file() => {
            scratch.keep = true;
            let disk = scratch.path.join(&settings.vm_name);
            ctx.events.step(format!(
                "--on-error=abort: kept the VM's disk at {} (delete {} when done); look at it with: qemu-system-x86_64 -m 1024 -drive file={},if=virtio -serial stdio -display none",
                disk.display(),
                scratch.path.display(),
                disk.display()
            ));
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Everything up to a shut-down VM; the disk it leaves, in `scratch`.
async fn steps(
    ctx: &BuildContext<'_>,
    s: &Settings,
    scratch: &Path,
    slot: &mut Option<Vm>,
) -> Result<PathBuf, BuildError> {
    let spec = ctx.spec;
    let base = media::fetch_base(spec, &s.sources, &s.checksum, &ctx.events).await?;
    let disk = make_disk(ctx, s, &base, scratch).await?;
    let mut config = VmConfig::new(scratch, accelerator(s).await);
    config.qemu = s.qemu_binary.clone();
    config.machine = s.machine_type.clone();
    config.cpus = s.cpus;
    config.memory_mib = s.memory_mib;
    config.net_device = s.net_device.clone();
    config.extra_args = s.qemuargs.clone();
    config.arg_vars = vec![
        ("OutputDir", scratch.display().to_string()),
        ("Name", s.vm_name.clone()),
    ];
    config.host_ports = s.host_ports.clone();
    config.forward_ssh = s.communicator == "ssh";
    config.guest_ssh_port = s.guest_ssh_port;
    config.disks.push(Disk {
        path: disk.clone(),
        format: s.format.clone(),
        interface: s.disk_interface.clone(),
        cdrom: false,
    });
    if !s.disk_image {
        // An installer: from its CD once, then the disk it installed.
        config.boot_cdrom_once = true;
        config.disks.push(Disk {
            path: base.clone(),
            format: "raw".to_owned(),
            interface: "ide".to_owned(),
            cdrom: true,
        });
    }
    attach_media(spec, s, scratch, &mut config).await?;
    config.firmware = firmware(s, scratch)?;
    let http = match s.serves_http() {
        false => None,
        true => Some(start_http(spec, s).await?),
    };
    if let Some(server) = &http {
        config
            .arg_vars
            .push(("HTTPIP", http::GUEST_HOST_IP.to_owned()));
        config.arg_vars.push(("HTTPPort", server.port.to_string()));
    }

    ctx.events.step(format!(
        "booting {} under {} ({} CPU, {} MiB{})",
        if s.disk_image {
            "the disk"
        } else {
            "the installer"
        },
        config.accel.as_str(),
        s.cpus,
        s.memory_mib,
        http.as_ref()
            .map(|h| format!(", HTTP on 127.0.0.1:{}", h.port))
            .unwrap_or_default()
    ));
    let started = Instant::now();
    let vm = slot.insert(Vm::start(&config).await.map_err(|e| {
        fail(e.to_string())
            .with_hint("install QEMU (Debian: apt-get install qemu-system-x86), or set qemu_binary")
    })?);
    let result = in_vm(ctx, s, vm, http.as_ref().map(|h| h.port)).await;
    if result.is_err() {
        // Stop it now, so the disk is no longer written to (a kept disk is
        // then consistent enough to look at).
        vm.kill().await;
        let tail = vm.console_tail(12);
        return result.map(|_| disk).map_err(|e| with_console(e, &tail));
    }
    drop(http);
    ctx.events.step(format!(
        "the VM shut down after {}s",
        started.elapsed().as_secs()
    ));
    Ok(disk)
}

/// The accelerator: the source's, else KVM if a kernel here boots under it
/// (a check cached per host boot), else TCG.
async fn accelerator(s: &Settings) -> Accel {
    if let Some(a) = s.accel {
        return a;
    }
    vm::accel::detect(&s.qemu_binary, host_kernel().as_deref()).await
}

/// A Linux kernel of this machine, for the KVM check.
fn host_kernel() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The disk the VM writes to, in `scratch`: a copy (or overlay) of a base
/// disk, resized to `disk_size`, or an empty disk for an installer.
async fn make_disk(
    ctx: &BuildContext<'_>,
    s: &Settings,
    base: &Path,
    scratch: &Path,
) -> Result<PathBuf, BuildError> {
    // Named as Packer names it, so that qemuargs' `-drive
    // file={{ .OutputDir }}/{{ .Name }}` is this disk.
    let disk = scratch.join(&s.vm_name);
    if !s.disk_image {
        let size = s.disk_size.unwrap_or(40960 << 20);
        run(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", &s.format])
                .arg(&disk)
                .arg(size.to_string()),
            "qemu-img create",
        )
        .await?;
        return Ok(disk);
    }
    let base_format = media::disk_format(base);
    if s.use_backing_file {
        let absolute =
            std::fs::canonicalize(base).map_err(|e| fail(format!("{}: {e}", base.display())))?;
        ctx.events.step(format!(
            "making a qcow2 overlay on {}",
            crate::paths::relative_to(&ctx.spec.def_dir, &absolute)
        ));
        run(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", base_format, "-b"])
                .arg(&absolute)
                .arg(&disk),
            "qemu-img create (the overlay)",
        )
        .await?;
    } else {
        ctx.events.step(format!(
            "copying the base disk ({base_format} → {})",
            s.format
        ));
        run(
            Command::new("qemu-img")
                .args(["convert", "-f", base_format, "-O", &s.format])
                .arg(base)
                .arg(&disk),
            "qemu-img convert (the base disk)",
        )
        .await?;
    }
    if let (Some(size), false) = (s.disk_size, s.skip_resize_disk) {
        let current = virtual_size(&disk).await?;
        if size > current {
            run(
                Command::new("qemu-img")
                    .args(["resize", "-q", "-f", &s.format])
                    .arg(&disk)
                    .arg(size.to_string()),
                "qemu-img resize",
            )
            .await?;
        } else if size < current {
            return Err(fail(format!(
                "disk_size ({} MiB) is smaller than the base disk ({} MiB)",
                size >> 20,
                current >> 20
            ))
            .with_hint("a disk only grows: raise disk_size or leave it out"));
        }
    }
    Ok(disk)
}

async fn virtual_size(disk: &Path) -> Result<u64, BuildError> {
    let out = run(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(disk),
        "qemu-img info",
    )
    .await?;
    let info: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| fail(format!("qemu-img info: {e}")))?;
    info["virtual-size"]
        .as_u64()
        .ok_or_else(|| fail("qemu-img info gave no virtual size"))
}

/// The CD and the floppy, when the source has them.
async fn attach_media(
    spec: &crate::spec::ImageSpec,
    s: &Settings,
    scratch: &Path,
    config: &mut VmConfig,
) -> Result<(), BuildError> {
    if !s.cd_files.is_empty() || !s.cd_content.is_empty() {
        let dir = scratch.join("cd");
        media::gather(&spec.def_dir, &s.cd_files, &s.cd_content, &dir)?;
        let iso = scratch.join("cd.iso");
        vm::seed::make_iso(&dir, &s.cd_label, &iso)
            .await
            .map_err(|e| {
                fail(e).with_hint(
                    "cd_files and cd_content need xorriso (Debian: apt-get install xorriso)",
                )
            })?;
        config.disks.push(Disk {
            path: iso,
            format: "raw".to_owned(),
            interface: "ide".to_owned(),
            cdrom: true,
        });
    }
    if !s.floppy_files.is_empty() || !s.floppy_content.is_empty() {
        let dir = scratch.join("floppy");
        media::gather(&spec.def_dir, &s.floppy_files, &s.floppy_content, &dir)?;
        let image = scratch.join("floppy.img");
        media::make_floppy(&dir, &s.floppy_label, &image).await?;
        config.extra_args.insert(
            0,
            vec![
                "-drive".into(),
                format!("file={},if=floppy,format=raw", image.display()),
            ],
        );
    }
    Ok(())
}

/// BIOS, or UEFI with `firmware` / `efi_firmware_code` (or OVMF) and a
/// private copy of the variables.
fn firmware(s: &Settings, scratch: &Path) -> Result<Firmware, BuildError> {
    if !s.efi {
        return Ok(Firmware::Bios);
    }
    let (default_code, default_vars) = vm::ovmf().unzip();
    let code = s
        .firmware
        .as_ref()
        .map(PathBuf::from)
        .or(default_code)
        .ok_or_else(|| {
            fail("efi_boot needs OVMF, and it is not installed")
                .with_hint("install it (Debian: apt-get install ovmf) or set firmware = \"/path/to/OVMF_CODE.fd\"")
        })?;
    let vars = s
        .efi_vars
        .as_ref()
        .map(PathBuf::from)
        .or(default_vars)
        .ok_or_else(|| {
            fail("efi_boot needs an OVMF variables file").with_hint("set efi_firmware_vars")
        })?;
    let private = scratch.join("efivars.fd");
    std::fs::copy(&vars, &private).map_err(|e| fail(format!("copying {}: {e}", vars.display())))?;
    Ok(Firmware::Uefi {
        code,
        vars: private,
    })
}

async fn start_http(
    spec: &crate::spec::ImageSpec,
    s: &Settings,
) -> Result<http::HttpServer, BuildError> {
    let served = http::Served {
        directory: s.http_directory.as_ref().map(|d| spec.def_dir.join(d)),
        content: s
            .http_content
            .iter()
            .map(|(k, v)| {
                (
                    format!("/{}", k.trim_start_matches('/')),
                    v.clone().into_bytes(),
                )
            })
            .collect(),
    };
    http::HttpServer::start(served, s.http_ports.clone())
        .await
        .map_err(|e| {
            fail(format!("starting the HTTP server: {e}"))
                .with_hint("widen http_port_min..http_port_max")
        })
}

/// In the running VM: type, provision, test, shut down.
async fn in_vm(
    ctx: &BuildContext<'_>,
    s: &Settings,
    vm: &mut Vm,
    http_port: Option<u16>,
) -> Result<(), BuildError> {
    if !s.boot_command.is_empty() {
        wait_or_cancel(ctx, s.boot_wait).await?;
        type_boot_command(ctx, s, vm, http_port).await?;
    }
    if s.communicator == "none" {
        crate::provision::run_all(ctx, &NoCommunicator).await?;
        ctx.events
            .step("waiting for the VM to shut down by itself (communicator = \"none\")");
        return wait_shutdown(vm, s).await;
    }
    let port = vm
        .ssh_port
        .ok_or_else(|| fail("no SSH port was forwarded"))?;
    let mut config = SshConfig::from_spec(
        ctx.spec,
        Some(Launched {
            host: "127.0.0.1",
            temporary_key: None,
        }),
    )?;
    config.target.host = "127.0.0.1".to_owned();
    config.target.port = port;
    // The VM this build just booted: its first key is pinned.
    config.target.host_key = HostKeyPolicy::TrustOnFirstUse(Arc::new(Mutex::new(None)));
    let limit = config.timeout;
    ctx.events.step(format!(
        "waiting for SSH (host port {port} → guest {})",
        s.guest_ssh_port
    ));
    vm.wait_ssh(limit, &ctx.cancel).await.map_err(|e| match e {
        VmError::Cancelled => BuildError::Cancelled,
        other => fail(format!("the VM did not answer SSH: {other}"))
            .with_hint("check that the guest starts sshd and lets ssh_username in (cloud-init seed in cd_content, or the installer's answers)"),
    })?;
    let ssh = SshCommunicator::connect(config, &ctx.events)
        .await
        .map_err(|e| crate::provision::comm_error("ssh", "connecting to the VM", e))?;
    let provisioned = async {
        crate::provision::run_all(ctx, &ssh).await?;
        if crate::provision::has_tests(ctx.spec) {
            ctx.events
                .step("test phase: running the tests on the provisioned VM");
            crate::provision::run_tests(ctx, &ssh).await?;
        }
        Ok::<(), BuildError>(())
    }
    .await;
    if let Err(e) = provisioned {
        ssh.close().await;
        return Err(e);
    }
    match &s.shutdown_command {
        Some(command) => {
            ctx.events.step(format!("shutting down: {command}"));
            // The connection drops as the guest goes down: its status means nothing.
            let _ = ssh.exec(command, &[], &ctx.events).await;
            ssh.close().await;
            wait_shutdown(vm, s).await
        }
        None => {
            ssh.close().await;
            ctx.events
                .step("shutting down (ACPI power button; no shutdown_command)");
            if vm.power_off(s.shutdown_timeout).await {
                Ok(())
            } else {
                Err(shutdown_timeout(s))
            }
        }
    }
}

async fn wait_shutdown(vm: &mut Vm, s: &Settings) -> Result<(), BuildError> {
    if vm.wait_exit(s.shutdown_timeout).await {
        Ok(())
    } else {
        Err(shutdown_timeout(s))
    }
}

fn shutdown_timeout(s: &Settings) -> BuildError {
    fail(format!(
        "the VM did not shut down within shutdown_timeout ({}s)",
        s.shutdown_timeout.as_secs()
    ))
    .with_hint("check shutdown_command (e.g. \"sudo shutdown -P now\"), or raise shutdown_timeout")
}

async fn wait_or_cancel(ctx: &BuildContext<'_>, wait: Duration) -> Result<(), BuildError> {
    let mut cancel = ctx.cancel.clone();
    tokio::select! {
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = cancel.cancelled() => Err(BuildError::Cancelled),
    }
}

/// Types `boot_command` through QMP.
async fn type_boot_command(
    ctx: &BuildContext<'_>,
    s: &Settings,
    vm: &Vm,
    http_port: Option<u16>,
) -> Result<(), BuildError> {
    let vars = Vars {
        http_ip: http::GUEST_HOST_IP.to_owned(),
        http_port: http_port.map(|p| p.to_string()).unwrap_or_default(),
        name: s.vm_name.clone(),
    };
    let mut steps = Vec::new();
    for line in &s.boot_command {
        let text = boot_command::expand(line, &vars)
            .map_err(|e| fail(e.to_string()).with_hint(e.hint()))?;
        steps.extend(
            boot_command::parse(&text).map_err(|e| fail(e.to_string()).with_hint(e.hint()))?,
        );
    }
    ctx.events
        .step(format!("typing the boot command ({} steps)", steps.len()));
    let mut qmp = vm
        .qmp()
        .await
        .map_err(|e| fail(format!("connecting to QEMU's QMP socket: {e}")))?;
    let qmp_err = |e: std::io::Error| fail(format!("sending keys: {e}"));
    for step in steps {
        match step {
            KeyStep::Tap(keys) => qmp.send_keys(&keys).await.map_err(qmp_err)?,
            KeyStep::Down(key) => qmp.key_event(key, true).await.map_err(qmp_err)?,
            KeyStep::Up(key) => qmp.key_event(key, false).await.map_err(qmp_err)?,
            KeyStep::Wait(d) => wait_or_cancel(ctx, d).await?,
        }
        // send-key holds keys 100 ms; the next press comes that much later.
        tokio::time::sleep(s.boot_key_interval + Duration::from_millis(100)).await;
        if ctx.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
    }
    Ok(())
}

/// A failure with the console's last lines, so a VM that never came up
/// says why.
fn with_console(e: BuildError, tail: &[String]) -> BuildError {
    match e {
        BuildError::Failed { message, hint } if !tail.is_empty() => {
            let lines: Vec<String> = tail.iter().map(|l| format!("    | {l}")).collect();
            BuildError::Failed {
                message: format!(
                    "{message}\n  last lines of its serial console:\n{}",
                    lines.join("\n")
                ),
                hint,
            }
        }
        other => other,
    }
}

/// Compacts (qcow2, unless skipped) and moves the disk to `id`; with a
/// backing file, its path is made relative to the disk so the pair can move
/// together. The disk appears under its name only when complete.
async fn move_into_place(
    ctx: &BuildContext<'_>,
    s: &Settings,
    disk: &Path,
    id: &str,
) -> Result<(), BuildError> {
    let target = ctx.spec.def_dir.join(id);
    let dir = target.parent().expect("an artifact path has a dir");
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    // Disks a killed run left half-written go first.
    crate::paths::sweep_stale_temp_files_once(dir);
    let staged = crate::paths::temp_path_for(&target);
    let result = stage(ctx, s, disk, dir, &staged).await.and_then(|()| {
        // Durable before it has its name, and the name durable after.
        let durable = |p: &Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        durable(&staged)
            .and_then(|()| std::fs::rename(&staged, &target))
            .and_then(|()| durable(dir))
            .map_err(|e| fail(format!("writing {}: {e}", target.display())))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// Writes the final disk to `staged`, in the artifact's dir.
async fn stage(
    ctx: &BuildContext<'_>,
    s: &Settings,
    disk: &Path,
    dir: &Path,
    staged: &Path,
) -> Result<(), BuildError> {
    if s.format == "qcow2" && !s.skip_compaction {
        ctx.events.step(format!(
            "compacting the disk{}",
            if s.disk_compression {
                " (compressed)"
            } else {
                ""
            }
        ));
        let mut cmd = Command::new("qemu-img");
        cmd.args(["convert", "-f", "qcow2", "-O", "qcow2", "-o", "compat=1.1"]);
        if s.disk_compression {
            cmd.arg("-c");
        }
        run(cmd.arg(disk).arg(staged), "qemu-img convert (compaction)").await?;
    } else {
        std::fs::rename(disk, staged)
            .or_else(|_| std::fs::copy(disk, staged).map(|_| ()))
            .map_err(|e| fail(format!("writing {}: {e}", staged.display())))?;
    }
    if let Some(backing) = media::backing_file(staged) {
        let relative = crate::paths::relative_to(dir, Path::new(&backing));
        run(
            Command::new("qemu-img")
                .args(["rebase", "-u", "-f", "qcow2", "-F"])
                .arg(media::disk_format(Path::new(&backing)))
                .arg("-b")
                .arg(&relative)
                .arg(staged),
            "qemu-img rebase (relative backing file)",
        )
        .await?;
    }
    Ok(())
}
