//! The `qemu` source's attributes, read once into typed [`Settings`]: the
//! plan-time checks and the build both use this reading, so what plans is
//! what builds. Defaults are Packer's, except where noted in the README.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::boot_command;
use super::checksum::{self, Expected};
use crate::drivers::vm::Accel;
use crate::spec::{parse_duration, scalar, ImageSpec};

/// A setting that cannot be used: which attribute, why, and what to write.
#[derive(Debug, Clone)]
pub struct SettingError {
    pub attr: &'static str,
    pub message: String,
    pub hint: String,
}

fn bad(attr: &'static str, message: impl Into<String>, hint: impl Into<String>) -> SettingError {
    SettingError {
        attr,
        message: message.into(),
        hint: hint.into(),
    }
}

/// The formats the output disk can have.
pub const FORMATS: &[&str] = &["qcow2", "raw"];

/// The `qemu` source, read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iso_urls`, else `[iso_url]`: tried in order.
    pub sources: Vec<String>,
    pub checksum: Expected,
    /// The source is a disk to boot and keep, not an installer ISO.
    pub disk_image: bool,
    pub use_backing_file: bool,
    /// Bytes; `None`: keep a disk image's size.
    pub disk_size: Option<u64>,
    pub skip_resize_disk: bool,
    pub format: String,
    pub disk_compression: bool,
    pub skip_compaction: bool,
    /// `None`: KVM if it works here, else TCG.
    pub accel: Option<Accel>,
    pub machine_type: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub net_device: String,
    pub disk_interface: String,
    pub qemuargs: Vec<Vec<String>>,
    pub qemu_binary: String,
    /// UEFI: `firmware`/`efi_firmware_code` or `efi_boot` (OVMF).
    pub efi: bool,
    pub firmware: Option<String>,
    pub efi_vars: Option<String>,
    pub cd_files: Vec<String>,
    pub cd_content: BTreeMap<String, String>,
    pub cd_label: String,
    pub floppy_files: Vec<String>,
    pub floppy_content: BTreeMap<String, String>,
    pub floppy_label: String,
    pub http_directory: Option<String>,
    pub http_content: BTreeMap<String, String>,
    pub http_ports: std::ops::RangeInclusive<u16>,
    pub boot_wait: Duration,
    /// The lines of `boot_command`, typed one after the other.
    pub boot_command: Vec<String>,
    pub boot_key_interval: Duration,
    pub host_ports: std::ops::RangeInclusive<u16>,
    /// The guest's SSH port (`ssh_port`, 22).
    pub guest_ssh_port: u16,
    /// `ssh` (the default) or `none`.
    pub communicator: String,
    pub shutdown_command: Option<String>,
    pub shutdown_timeout: Duration,
    pub output_directory: String,
    pub vm_name: String,
}

fn text(spec: &ImageSpec, name: &str) -> Option<String> {
    spec.attr(name)
        .filter(|v| !v.is_null())
        .map(scalar)
        .filter(|s| !s.is_empty())
}

fn flag(spec: &ImageSpec, name: &'static str) -> Result<bool, SettingError> {
    match spec.attr(name) {
        None | Some(Value::Null) => Ok(false),
        Some(_) => spec.attr_bool(name).ok_or_else(|| {
            bad(
                name,
                format!("{name} must be true or false"),
                format!("write {name} = true"),
            )
        }),
    }
}

fn number(spec: &ImageSpec, name: &'static str, default: u64) -> Result<u64, SettingError> {
    match spec.attr(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| {
                bad(
                    name,
                    format!("{name} must be a whole number, not {v}"),
                    format!("write {name} = {default}"),
                )
            }),
    }
}

fn port(spec: &ImageSpec, name: &'static str, default: u16) -> Result<u16, SettingError> {
    let n = number(spec, name, u64::from(default))?;
    u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| {
        bad(
            name,
            format!("{name} = {n} is not a port"),
            "a port is 1 to 65535",
        )
    })
}

fn duration(
    spec: &ImageSpec,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingError> {
    match text(spec, name) {
        None => Ok(default),
        Some(t) => parse_duration(&t).ok_or_else(|| {
            bad(
                name,
                format!("{name} = \"{t}\" is not a duration"),
                format!("write {name} = \"10s\" (or \"5m\", \"1h30m\")"),
            )
        }),
    }
}

/// `disk_size`: Packer's number of MiB, or a size with a unit.
fn size(spec: &ImageSpec, name: &'static str) -> Result<Option<u64>, SettingError> {
    let Some(v) = spec.attr(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let t = scalar(v);
    let bytes = match t.trim().parse::<u64>() {
        Ok(mib) => Some(mib << 20),
        Err(_) => crate::drivers::chroot::parse_size(&t),
    };
    bytes.filter(|b| *b > 0).map(Some).ok_or_else(|| {
        bad(
            name,
            format!("{name} = {v} is not a size"),
            format!("write {name} = \"20G\" or a number of MiB, as Packer: {name} = 20480"),
        )
    })
}

/// A map of file name → text (`cd_content`, `http_content`).
fn contents(
    spec: &ImageSpec,
    name: &'static str,
) -> Result<BTreeMap<String, String>, SettingError> {
    match spec.attr(name) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect()),
        Some(_) => Err(bad(
            name,
            format!("{name} must be a map of file names to contents"),
            format!(
                "write {name} = {{ \"meta-data\" = \"...\", \"user-data\" = file(\"user-data\") }}"
            ),
        )),
    }
}

/// `qemuargs`: a list of lists of words.
fn qemuargs(spec: &ImageSpec) -> Result<Vec<Vec<String>>, SettingError> {
    let hint = "write qemuargs = [[\"-m\", \"2048M\"], [\"-cpu\", \"host\"]]";
    match spec.attr("qemuargs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Array(words) if !words.is_empty() => Ok(words.iter().map(scalar).collect()),
                _ => Err(bad(
                    "qemuargs",
                    format!("each entry of qemuargs must be a non-empty list of words, not {item}"),
                    hint,
                )),
            })
            .collect(),
        Some(_) => Err(bad("qemuargs", "qemuargs must be a list of lists", hint)),
    }
}

fn one_of(
    spec: &ImageSpec,
    name: &'static str,
    allowed: &[&str],
    default: &str,
) -> Result<String, SettingError> {
    let value = text(spec, name).unwrap_or_else(|| default.to_owned());
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(bad(
            name,
            format!("{name} = \"{value}\" is not one of {}", allowed.join(", ")),
            format!("write {name} = \"{default}\""),
        ))
    }
}

impl Settings {
    pub fn from_spec(spec: &ImageSpec) -> Result<Settings, SettingError> {
        let mut sources = spec.attr_strings("iso_urls");
        if sources.is_empty() {
            sources = text(spec, "iso_url").into_iter().collect();
        }
        if sources.is_empty() {
            return Err(bad(
                "iso_url",
                "a qemu source needs iso_url (or iso_urls)",
                "iso_url = \"debian-12-genericcloud-amd64.qcow2\" with disk_image = true, an installer ISO, or image.<ADDR>.id of a local bootable image",
            ));
        }
        let checksum_attr = if spec.attr("iso_checksum").is_some() {
            text(spec, "iso_checksum")
        } else {
            None
        };
        let checksum = match checksum_attr {
            None => Expected::None,
            Some(t) => {
                checksum::parse(&t).map_err(|e| bad("iso_checksum", e.to_string(), e.hint()))?
            }
        };
        let remote = sources
            .iter()
            .any(|s| crate::paths::local_path_of(s).is_none() && !is_image_ref(s));
        if remote && spec.attr("iso_checksum").is_none() {
            return Err(bad(
                if spec.attr("iso_urls").is_some() { "iso_urls" } else { "iso_url" },
                "a remote iso_url needs iso_checksum: its checksum stands for its bytes in the image's content address",
                "iso_checksum = \"sha256:<hex>\" or \"file:<url of SHA256SUMS>\" (\"none\" trusts the URL alone)",
            ));
        }
        let disk_image = flag(spec, "disk_image")?;
        let format = one_of(spec, "format", FORMATS, "qcow2")?;
        let use_backing_file = flag(spec, "use_backing_file")?;
        if use_backing_file && !(disk_image && format == "qcow2") {
            return Err(bad(
                "use_backing_file",
                "use_backing_file needs disk_image = true and format = \"qcow2\"",
                "the new disk is a qcow2 overlay on the base disk; remove use_backing_file or set disk_image = true",
            ));
        }
        let mut disk_size = size(spec, "disk_size")?;
        if disk_size.is_none() && !disk_image {
            // Packer's default for an installer's empty disk.
            disk_size = Some(40960 << 20);
        }
        let accel = match text(spec, "accelerator").as_deref() {
            None | Some("auto") => None,
            Some(a) => Some(Accel::parse(a).ok_or_else(|| {
                bad(
                    "accelerator",
                    format!("accelerator = \"{a}\" is not one of kvm, tcg, none, auto"),
                    "leave it out (KVM when it works here, else TCG) or write accelerator = \"tcg\"",
                )
            })?),
        };
        let cpus = number(spec, "cpus", 1)?;
        let memory = number(spec, "memory", 512)?;
        let efi_code = text(spec, "efi_firmware_code").or_else(|| text(spec, "firmware"));
        let efi = flag(spec, "efi_boot")? || efi_code.is_some();
        let boot_command = spec.attr_strings("boot_command");
        boot_command::check(&boot_command)
            .map_err(|e| bad("boot_command", e.to_string(), e.hint()))?;
        let http_min = port(spec, "http_port_min", 8000)?;
        let http_max = port(spec, "http_port_max", 9000)?;
        let host_min = match spec.attr("host_port_min") {
            Some(_) => port(spec, "host_port_min", 2222)?,
            None => port(spec, "ssh_host_port_min", 2222)?,
        };
        let host_max = match spec.attr("host_port_max") {
            Some(_) => port(spec, "host_port_max", 4444)?,
            None => port(spec, "ssh_host_port_max", 4444)?,
        };
        if host_min > host_max {
            return Err(bad(
                "host_port_min",
                format!("host_port_min {host_min} is above host_port_max {host_max}"),
                "the SSH port forwarded to the guest is picked between the two",
            ));
        }
        if http_min > http_max {
            return Err(bad(
                "http_port_min",
                format!("http_port_min {http_min} is above http_port_max {http_max}"),
                "the HTTP server's port is picked between the two",
            ));
        }
        let communicator = one_of(spec, "communicator", &["ssh", "none"], "ssh")?;
        if communicator == "ssh" && text(spec, "ssh_username").is_none() {
            return Err(bad(
                "ssh_username",
                "the qemu builder provisions over SSH and needs ssh_username",
                "ssh_username = \"debian\" with ssh_password or ssh_private_key_file, or communicator = \"none\"",
            ));
        }
        if communicator == "ssh"
            && text(spec, "ssh_password").is_none()
            && text(spec, "ssh_private_key_file").is_none()
        {
            return Err(bad(
                "ssh_username",
                "the qemu builder needs ssh_password or ssh_private_key_file to log in",
                "give the guest a password or key (e.g. a cloud-init seed in cd_content) and set ssh_password or ssh_private_key_file",
            ));
        }
        // Not Packer's `packer-<name>`: the slug keeps images of two builds
        // apart in one output directory, the extension says the format.
        let vm_name =
            text(spec, "vm_name").unwrap_or_else(|| format!("{}.{format}", spec.addr.slug()));
        if vm_name.contains('/') || vm_name.starts_with('.') {
            return Err(bad(
                "vm_name",
                format!("vm_name = \"{vm_name}\" must be a plain file name"),
                "write vm_name = \"app.qcow2\"; the folder is output_directory",
            ));
        }
        Ok(Settings {
            sources,
            checksum,
            disk_image,
            use_backing_file,
            disk_size,
            skip_resize_disk: flag(spec, "skip_resize_disk")?,
            disk_compression: flag(spec, "disk_compression")?,
            skip_compaction: flag(spec, "skip_compaction")? || use_backing_file,
            format,
            accel,
            machine_type: text(spec, "machine_type"),
            cpus: u32::try_from(cpus.max(1)).unwrap_or(1),
            memory_mib: u32::try_from(memory.max(64)).unwrap_or(512),
            net_device: text(spec, "net_device").unwrap_or_else(|| "virtio-net".to_owned()),
            disk_interface: text(spec, "disk_interface").unwrap_or_else(|| "virtio".to_owned()),
            qemuargs: qemuargs(spec)?,
            qemu_binary: text(spec, "qemu_binary")
                .unwrap_or_else(|| "qemu-system-x86_64".to_owned()),
            efi,
            firmware: efi_code,
            efi_vars: text(spec, "efi_firmware_vars"),
            cd_files: spec.attr_strings("cd_files"),
            cd_content: contents(spec, "cd_content")?,
            cd_label: text(spec, "cd_label").unwrap_or_else(|| "cidata".to_owned()),
            floppy_files: spec
                .attr_strings("floppy_files")
                .into_iter()
                .chain(spec.attr_strings("floppy_dirs"))
                .collect(),
            floppy_content: contents(spec, "floppy_content")?,
            floppy_label: text(spec, "floppy_label").unwrap_or_else(|| "packer".to_owned()),
            http_directory: text(spec, "http_directory"),
            http_content: contents(spec, "http_content")?,
            http_ports: http_min..=http_max,
            boot_wait: duration(spec, "boot_wait", Duration::from_secs(10))?,
            boot_command,
            boot_key_interval: duration(spec, "boot_key_interval", Duration::from_millis(100))?,
            host_ports: host_min..=host_max,
            guest_ssh_port: port(spec, "ssh_port", 22)?,
            communicator,
            shutdown_command: text(spec, "shutdown_command"),
            shutdown_timeout: duration(spec, "shutdown_timeout", Duration::from_secs(300))?,
            output_directory: text(spec, "output_directory")
                .unwrap_or_else(|| "output".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            vm_name,
        })
    }

    /// The HTTP server is needed.
    pub fn serves_http(&self) -> bool {
        self.http_directory.is_some() || !self.http_content.is_empty()
    }
}

/// Whether `text` is a parent image's id not yet built (`image.<ADDR>.id`).
pub fn is_image_ref(text: &str) -> bool {
    !crate::spec::ImageRef::find(text).is_empty()
}
