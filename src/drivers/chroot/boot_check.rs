//! The boot check of a bootable chroot image: before anything is recorded,
//! the new disk boots in QEMU (KVM when it works, else TCG) on a
//! copy-on-write overlay (the image itself is never written), with a
//! cloud-init NoCloud seed that lets imgform in with a temporary key. It
//! waits for SSH (or, without cloud-init in the image, a login prompt on the
//! serial console), runs the `test` blocks' provisioners over SSH as the
//! user `imgform` (passwordless sudo), and powers the VM off. A boot that
//! does not get there fails the build with the console's last lines.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::bootable::{BootCheck, BootFiles};
use super::fail;
use super::pack::run;
use crate::build::{BuildContext, BuildError};
use crate::drivers::vm::{self, Disk, Firmware, Vm, VmConfig, VmError};
use crate::provision::ssh::{Endpoint, HostKeyPolicy, SshAuth, SshCommunicator, SshConfig};
use crate::provision::Communicator;

/// The user the boot check logs in as (made by cloud-init from the seed).
const USER: &str = "imgform";

/// How long the guest gets to power off.
const POWER_OFF: Duration = Duration::from_secs(60);

/// Boots `disk` (`format`) and checks it; `work` is private scratch space.
pub(super) async fn boot_check(
    ctx: &BuildContext<'_>,
    check: &BootCheck,
    files: &BootFiles,
    disk: &Path,
    format: &str,
    efi: bool,
    work: &Path,
) -> Result<(), BuildError> {
    let dir = work.join("boot-check");
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let overlay = dir.join("overlay.qcow2");
    run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
            .arg(disk)
            .arg(&overlay),
        "qemu-img create (the boot check's overlay)",
    )
    .await?;
    let accel = match check.accel {
        Some(a) => a,
        None => vm::accel::detect("qemu-system-x86_64", Some(&files.kernel)).await,
    };
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .map_err(|e| fail(format!("making a temporary key: {e}")))?;
    let mut config = VmConfig::new(&dir, accel);
    config.cpus = check.cpus;
    config.memory_mib = check.memory_mib;
    config.disks.push(Disk {
        path: overlay,
        format: "qcow2".to_owned(),
        interface: "virtio".to_owned(),
        cdrom: false,
    });
    if files.cloud_init {
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| fail(format!("encoding the temporary key: {e}")))?;
        let seed = vm::seed::nocloud_seed(
            &dir,
            &vm::seed::meta_data(&format!("imgform-{}", ctx.run_id), "imgform-boot-check"),
            &vm::seed::login_user_data(USER, &public),
        )
        .await
        .map_err(fail)?;
        config.disks.push(Disk {
            path: seed,
            format: "raw".to_owned(),
            interface: "ide".to_owned(),
            cdrom: true,
        });
        config.forward_ssh = true;
    }
    if efi {
        let (code, vars) = vm::ovmf().ok_or_else(|| {
            BuildError::failed("the UEFI boot check needs OVMF, and it is not installed")
                .with_hint("install it (Debian: apt-get install ovmf), or set boot_check = false")
        })?;
        let private_vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(&vars, &private_vars)
            .map_err(|e| fail(format!("copying {}: {e}", vars.display())))?;
        config.firmware = Firmware::Uefi {
            code,
            vars: private_vars,
        };
    }

    let started = Instant::now();
    ctx.events.step(format!(
        "boot check: booting the image ({}{}) under {}",
        if efi { "UEFI" } else { "BIOS" },
        if files.cloud_init {
            ", cloud-init seed"
        } else {
            ""
        },
        accel.as_str()
    ));
    let mut vm = Vm::start(&config).await.map_err(|e| {
        BuildError::failed(e.to_string()).with_hint(
            "install QEMU (Debian: apt-get install qemu-system-x86), or set boot_check = false",
        )
    })?;
    let result = booted_and_tested(ctx, check, files, &mut vm, &key).await;
    let tail = vm.console_tail(15);
    let powered_off = match &result {
        // Logged in: power off from inside, which needs nothing but sudo.
        Ok(Some(_)) => vm.wait_exit(POWER_OFF).await,
        // Else the ACPI power button.
        _ => vm.power_off(POWER_OFF).await,
    };
    let result = result.map(|_| ());
    match result {
        Ok(()) => {
            ctx.events.step(format!(
                "boot check: passed in {}s{}",
                started.elapsed().as_secs(),
                if powered_off { "" } else { " (did not power off; stopped)" }
            ));
            Ok(())
        }
        Err(BuildError::Cancelled) => Err(BuildError::Cancelled),
        Err(e) => Err(BuildError::failed(format!("{e}\n{}", console_lines(&tail)))
        .with_hint(
            "boot it by hand to look: qemu-system-x86_64 -m 1024 -drive file=IMAGE,if=virtio -serial stdio -display none (or set boot_check = false)",
        )),
    }
}

/// The console's last lines for a failure message, or why there are none.
fn console_lines(tail: &[String]) -> String {
    if tail.is_empty() {
        return "  its serial console stayed empty: nothing got far enough to write to it (no bootloader, nothing the firmware could boot, or a bootloader without a serial console)".to_owned();
    }
    let lines: Vec<String> = tail.iter().map(|l| format!("    | {l}")).collect();
    format!("  last lines of its console:\n{}", lines.join("\n"))
}

/// Waits for the image to be up, logs in over SSH (when it has cloud-init),
/// runs its tests, and asks it to power off. `Some` when it was logged in
/// (and so is powering off).
async fn booted_and_tested(
    ctx: &BuildContext<'_>,
    check: &BootCheck,
    files: &BootFiles,
    vm: &mut Vm,
    key: &russh::keys::PrivateKey,
) -> Result<Option<()>, BuildError> {
    let up = if files.cloud_init {
        vm.wait_ssh(check.timeout, &ctx.cancel).await
    } else {
        vm.wait_console("login:", check.timeout, &ctx.cancel).await
    };
    up.map_err(|e| match e {
        VmError::Cancelled => BuildError::Cancelled,
        other => fail(format!("the image did not boot: {other}")),
    })?;
    ctx.events.step(if files.cloud_init {
        "boot check: SSH is up"
    } else {
        "boot check: the login prompt is up"
    });
    let has_tests = crate::provision::has_tests(ctx.spec);
    let Some(port) = vm.ssh_port.filter(|_| files.cloud_init) else {
        if !has_tests {
            return Ok(None);
        }
        return Err(BuildError::failed(
            "the image's tests run over SSH on the booted image, and it has no cloud-init to let imgform in",
        )
        .with_hint("install cloud-init in the image, or set boot_check = false to run the tests in the chroot"));
    };
    let config = SshConfig {
        target: Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
            user: USER.to_owned(),
            auth: vec![SshAuth::Key(Arc::new(key.clone()))],
            // The VM this build just booted: its first key is pinned.
            host_key: HostKeyPolicy::TrustOnFirstUse(Arc::new(Mutex::new(None))),
            launched: true,
        },
        bastion: None,
        timeout: Duration::from_secs(180),
        key_file: None,
        bastion_key_file: None,
    };
    let ssh = SshCommunicator::connect(config, &ctx.events)
        .await
        .map_err(|e| fail(format!("SSH to the booted image: {e}")))?;
    let result = if has_tests {
        ctx.events.step("boot check: running the tests over SSH");
        crate::provision::run_tests(ctx, &ssh).await
    } else {
        Ok(())
    };
    // The connection drops as the guest goes down: its status means nothing.
    let _ = ssh
        .exec(
            "sudo -n systemctl poweroff || sudo -n poweroff",
            &[],
            &ctx.events,
        )
        .await;
    ssh.close().await;
    result.map(Some)
}
