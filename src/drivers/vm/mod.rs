//! Running a VM with `qemu-system-x86_64`: what the `chroot` builder's boot
//! check and the `qemu` builder share.
//!
//! A [`Vm`] owns its QEMU process (killed and reaped when the `Vm` is
//! dropped: on failure, on Ctrl-C, whatever ends the build), its serial console (a log
//! file, the record of what the guest said), a QMP socket (power button,
//! keys) and, when asked, a host port forwarded to the guest's SSH port.
//! Networking is QEMU's user mode: no root, no bridge, nothing left behind.

pub mod accel;
pub mod http;
pub mod image;
pub mod qmp;
pub mod seed;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::build::events::CancelToken;
pub use accel::Accel;

/// A disk attached to the VM.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: String,
    /// QEMU's `if=`: `virtio`, `ide`, `scsi`...
    pub interface: String,
    pub cdrom: bool,
}

/// What the VM boots with.
#[derive(Debug, Clone)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF: the code (read-only) and a private copy of the variables.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// The OVMF files Debian's `ovmf` package installs.
pub fn ovmf() -> Option<(PathBuf, PathBuf)> {
    [
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_CODE.fd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .map(|code| {
        let vars = PathBuf::from(code.to_string_lossy().replace("OVMF_CODE", "OVMF_VARS"));
        (code, vars)
    })
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub qemu: String,
    pub accel: Accel,
    pub machine: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<Disk>,
    pub firmware: Firmware,
    /// Forward a free host port on 127.0.0.1 to the guest's port 22.
    pub forward_ssh: bool,
    /// Where that port is chosen (Packer's `host_port_min`/`host_port_max`).
    pub host_ports: std::ops::RangeInclusive<u16>,
    /// The guest's SSH port the host port leads to.
    pub guest_ssh_port: u16,
    /// The guest NIC model (`virtio-net-pci`, `e1000`...).
    pub net_device: String,
    /// Boot from the CD once (an installer), then from the disk.
    pub boot_cdrom_once: bool,
    /// Extra arguments, each a list of words (Packer's `qemuargs`). An
    /// option given here replaces imgform's own of the same name (`-m`,
    /// `-smp`, `-machine`...; `-netdev` or `-device` replace the network,
    /// `-drive` the disks). `{{ .SSHHostPort }}` in a word is the forwarded
    /// SSH port, `{{ .X }}` the value of `X` in `arg_vars`.
    pub extra_args: Vec<Vec<String>>,
    /// Packer's template variables for `extra_args` (`OutputDir`, `Name`,
    /// `HTTPIP`, `HTTPPort`).
    pub arg_vars: Vec<(&'static str, String)>,
    /// Where the console log and the QMP socket go (private to the build).
    pub work_dir: PathBuf,
}

impl VmConfig {
    pub fn new(work_dir: &Path, accel: Accel) -> VmConfig {
        VmConfig {
            qemu: "qemu-system-x86_64".to_owned(),
            accel,
            machine: None,
            cpus: 2,
            memory_mib: 1024,
            disks: Vec::new(),
            firmware: Firmware::Bios,
            forward_ssh: false,
            host_ports: 2222..=4444,
            guest_ssh_port: 22,
            net_device: "virtio-net-pci".to_owned(),
            boot_cdrom_once: false,
            extra_args: Vec::new(),
            arg_vars: Vec::new(),
            work_dir: work_dir.to_path_buf(),
        }
    }
}

/// Why waiting for a VM ended without what was waited for.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {qemu}: {message}")]
    Start { qemu: String, message: String },
    #[error("the VM stopped ({status}) before {waited_for}")]
    Exited { status: String, waited_for: String },
    #[error("timed out after {}s waiting for {waited_for}", limit.as_secs())]
    Timeout { waited_for: String, limit: Duration },
    #[error("cancelled")]
    Cancelled,
}

/// A running VM.
pub struct Vm {
    child: Child,
    pub accel: Accel,
    /// The serial console's log.
    pub console: PathBuf,
    qmp_socket: PathBuf,
    /// The host port forwarded to the guest's SSH port.
    pub ssh_port: Option<u16>,
}

/// How often waits look at the VM.
const POLL: Duration = Duration::from_millis(250);

/// A VM dropped while QEMU runs (a cancelled build) is killed and reaped
/// here, so that no QEMU outlives its build or imgform, even by a moment.
impl Drop for Vm {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Vm {
    /// Starts QEMU. A forwarded port taken by someone else between choosing
    /// it and QEMU binding it is retried with another.
    pub async fn start(config: &VmConfig) -> Result<Vm, VmError> {
        let mut last = String::new();
        for _ in 0..3 {
            let ssh_port = config
                .forward_ssh
                .then(|| free_port_in(config.host_ports.clone()))
                .flatten();
            let console = config.work_dir.join("console.log");
            let qmp_socket = config.work_dir.join("qmp.sock");
            let _ = std::fs::remove_file(&qmp_socket);
            let mut cmd = command(config, &console, &qmp_socket, ssh_port);
            let child = {
                let _no_writable_scripts = crate::provision::spawn_guard();
                cmd.spawn()
            }
            .map_err(|e| VmError::Start {
                qemu: config.qemu.clone(),
                message: e.to_string(),
            })?;
            let mut vm = Vm {
                child,
                accel: config.accel,
                console,
                qmp_socket,
                ssh_port,
            };
            // QEMU either creates its QMP socket or exits with why.
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if vm.qmp_socket.exists() {
                    return Ok(vm);
                }
                if let Ok(Some(status)) = vm.child.try_wait() {
                    last = format!("{status}: {}", vm.stderr_text().await);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if vm.qmp_socket.exists() {
                return Ok(vm);
            }
            if !last.contains("hostfwd") && !last.contains("Could not set up host forwarding") {
                break;
            }
        }
        Err(VmError::Start {
            qemu: config.qemu.clone(),
            message: last,
        })
    }

    async fn stderr_text(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut text = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text).await;
        }
        text.trim().to_owned()
    }

    /// The last `n` lines the guest wrote on its serial console, without
    /// terminal control sequences.
    pub fn console_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read(&self.console).unwrap_or_default();
        let text = strip_ansi(&String::from_utf8_lossy(&text));
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// Whether QEMU has ended, and how.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Waits until `check` holds, polling; fails if QEMU ends first, the
    /// limit passes or `cancel` fires.
    async fn wait_until(
        &mut self,
        waited_for: &str,
        limit: Duration,
        cancel: &CancelToken,
        mut check: impl FnMut(&Vm) -> bool,
    ) -> Result<(), VmError> {
        let started = Instant::now();
        loop {
            if check(self) {
                return Ok(());
            }
            if cancel.is_cancelled() {
                return Err(VmError::Cancelled);
            }
            if let Some(status) = self.exited() {
                return Err(VmError::Exited {
                    status,
                    waited_for: waited_for.to_owned(),
                });
            }
            if started.elapsed() > limit {
                return Err(VmError::Timeout {
                    waited_for: waited_for.to_owned(),
                    limit,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for `text` on the serial console.
    pub async fn wait_console(
        &mut self,
        text: &str,
        limit: Duration,
        cancel: &CancelToken,
    ) -> Result<(), VmError> {
        let path = self.console.clone();
        self.wait_until(&format!("\"{text}\" on the console"), limit, cancel, |_| {
            std::fs::read(&path)
                .map(|bytes| String::from_utf8_lossy(&bytes).contains(text))
                .unwrap_or(false)
        })
        .await
    }

    /// Waits until the guest's SSH server answers on the forwarded port
    /// (its banner, not just QEMU accepting the connection).
    pub async fn wait_ssh(&mut self, limit: Duration, cancel: &CancelToken) -> Result<(), VmError> {
        let port = self.ssh_port.ok_or_else(|| VmError::Exited {
            status: "no SSH port forwarded".to_owned(),
            waited_for: "SSH".to_owned(),
        })?;
        let started = Instant::now();
        while !ssh_banner(port).await {
            if cancel.is_cancelled() {
                return Err(VmError::Cancelled);
            }
            if let Some(status) = self.exited() {
                return Err(VmError::Exited {
                    status,
                    waited_for: "SSH".to_owned(),
                });
            }
            if started.elapsed() > limit {
                return Err(VmError::Timeout {
                    waited_for: "SSH".to_owned(),
                    limit,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    /// Presses the power button and waits for the guest to power off; kills
    /// QEMU when it does not within `limit`. True when it powered off.
    pub async fn power_off(&mut self, limit: Duration) -> bool {
        if let Ok(mut qmp) = qmp::Qmp::connect(&self.qmp_socket).await {
            let _ = qmp
                .execute("system_powerdown", serde_json::Value::Null)
                .await;
        }
        self.wait_exit(limit).await
    }

    /// Waits for QEMU to end by itself (a guest shutdown); kills it after
    /// `limit`. True when it ended by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                self.kill().await;
                false
            }
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether QEMU is still running.
    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// The QEMU process id (for messages about a kept VM).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A QMP connection, for keys and the power button.
    pub async fn qmp(&self) -> std::io::Result<qmp::Qmp> {
        qmp::Qmp::connect(&self.qmp_socket).await
    }
}

fn command(config: &VmConfig, console: &Path, qmp_socket: &Path, ssh_port: Option<u16>) -> Command {
    let mut cmd = Command::new(&config.qemu);
    for args in qemu_args(config, console, qmp_socket, ssh_port) {
        cmd.args(args);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// QEMU's arguments, grouped by option: imgform's own, less those that
/// `extra_args` replaces, then `extra_args`.
fn qemu_args(
    config: &VmConfig,
    console: &Path,
    qmp_socket: &Path,
    ssh_port: Option<u16>,
) -> Vec<Vec<String>> {
    let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let mut own: Vec<Vec<String>> = vec![
        words(&["-accel", config.accel.as_str()]),
        words(&["-display", "none"]),
        words(&["-nodefaults"]),
        words(&["-no-user-config"]),
        vec!["-smp".into(), config.cpus.to_string()],
        vec!["-m".into(), config.memory_mib.to_string()],
        vec!["-serial".into(), format!("file:{}", console.display())],
        vec![
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp_socket.display()),
        ],
        words(&["-monitor", "none"]),
    ];
    if let Some(machine) = &config.machine {
        own.push(vec!["-machine".into(), machine.clone()]);
    }
    if config.boot_cdrom_once {
        own.push(words(&["-boot", "once=d"]));
    }
    if let Firmware::Uefi { code, vars } = &config.firmware {
        own.push(vec![
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ),
        ]);
        own.push(vec![
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
    }
    for disk in &config.disks {
        let mut spec = format!(
            "file={},format={},if={}",
            disk.path.display(),
            disk.format,
            disk.interface
        );
        if disk.cdrom {
            spec.push_str(",media=cdrom,readonly=on");
        }
        own.push(vec!["-drive".into(), spec]);
    }
    let mut netdev = "user,id=net0".to_owned();
    if let Some(port) = ssh_port {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{port}-:{}",
            config.guest_ssh_port
        ));
    }
    own.push(vec!["-netdev".into(), netdev]);
    own.push(vec![
        "-device".into(),
        format!("{},netdev=net0", config.net_device),
    ]);

    let mut replaced: std::collections::BTreeSet<&str> = config
        .extra_args
        .iter()
        .filter_map(|a| a.first().map(String::as_str))
        .collect();
    // The network is one thing: replacing either half replaces both.
    if replaced.contains("-netdev") || replaced.contains("-device") {
        replaced.extend(["-netdev", "-device"]);
    }
    // A pflash `-drive` is the firmware, not a disk: keep it unless the
    // firmware is replaced too (`-bios`, or pflash drives of their own).
    let keeps = |args: &Vec<String>| {
        let Some(flag) = args.first().map(String::as_str) else {
            return false;
        };
        if flag == "-drive" && args.get(1).is_some_and(|v| v.starts_with("if=pflash")) {
            return !replaced.contains("-bios")
                && !config
                    .extra_args
                    .iter()
                    .any(|a| a.iter().any(|w| w.contains("if=pflash")));
        }
        !replaced.contains(flag)
    };
    let mut out: Vec<Vec<String>> = own.into_iter().filter(keeps).collect();
    let port = ssh_port.map(|p| p.to_string()).unwrap_or_default();
    let vars: Vec<(&str, &str)> = std::iter::once(("SSHHostPort", port.as_str()))
        .chain(config.arg_vars.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
    out.extend(config.extra_args.iter().map(|args| {
        args.iter()
            .map(|w| {
                vars.iter().fold(w.clone(), |w, (name, value)| {
                    w.replace(&format!("{{{{ .{name} }}}}"), value)
                        .replace(&format!("{{{{.{name}}}}}"), value)
                })
            })
            .collect()
    }));
    out
}

/// A port on 127.0.0.1 free right now, from `range` (tried from a random
/// place in it, so parallel builds rarely pick the same one).
pub fn free_port_in(range: std::ops::RangeInclusive<u16>) -> Option<u16> {
    let (lo, hi) = (*range.start(), *range.end());
    if lo > hi {
        return None;
    }
    let span = u32::from(hi - lo) + 1;
    let first = rand::random_range(0..span);
    (0..span)
        .map(|i| lo + ((first + i) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// Whether an SSH server answers on `port`: QEMU's user networking
/// accepts connections before the guest listens, so only the banner counts.
async fn ssh_banner(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
        return false;
    };
    let mut buf = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"SSH-"
    )
}

/// Text without terminal escape sequences (GRUB and systemd colour their
/// console output).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            if c != '\r' {
                out.push(c);
            }
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, up to the final byte.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        let mut config = VmConfig::new(Path::new("/w"), Accel::Tcg);
        config.disks.push(Disk {
            path: "/w/disk.qcow2".into(),
            format: "qcow2".into(),
            interface: "virtio".into(),
            cdrom: false,
        });
        config
    }

    fn flags(args: &[Vec<String>]) -> Vec<String> {
        args.iter().map(|a| a.join(" ")).collect()
    }

    #[test]
    fn qemuargs_replace_the_options_of_the_same_name() {
        let mut config = config();
        config.arg_vars = vec![("OutputDir", "/w".into()), ("Name", "app.qcow2".into())];
        config.extra_args = vec![
            vec!["-m".into(), "2048M".into()],
            vec![
                "-drive".into(),
                "file={{ .OutputDir }}/{{.Name}},if=virtio,cache=unsafe".into(),
            ],
            vec![
                "-netdev".into(),
                "user,id=u,hostfwd=tcp::{{ .SSHHostPort }}-:22".into(),
            ],
        ];
        let args = flags(&qemu_args(
            &config,
            Path::new("/w/console.log"),
            Path::new("/w/qmp.sock"),
            Some(2500),
        ));
        assert!(!args.contains(&"-m 1024".to_owned()), "{args:?}");
        assert!(args.contains(&"-m 2048M".to_owned()));
        assert!(args.contains(&"-netdev user,id=u,hostfwd=tcp::2500-:22".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("-device")), "{args:?}");
        // -drive replaces the disks: Packer's {{ .OutputDir }}/{{ .Name }} is the disk.
        assert!(!args.contains(&"-drive file=/w/disk.qcow2,format=qcow2,if=virtio".to_owned()));
        assert!(args.contains(&"-drive file=/w/app.qcow2,if=virtio,cache=unsafe".to_owned()));
        assert!(args.contains(&"-smp 2".to_owned()));
    }

    #[test]
    fn ports_come_from_the_range() {
        let port = free_port_in(41000..=41010).expect("a free port");
        assert!((41000..=41010).contains(&port));
        let (lo, hi) = (5, 4);
        assert_eq!(free_port_in(lo..=hi), None);
    }

    #[test]
    fn console_text_loses_its_colours() {
        assert_eq!(
            strip_ansi("[\x1b[0;32m  OK  \x1b[0m] Reached\r\n"),
            "[  OK  ] Reached\n"
        );
    }
}
