//! `ansible`: runs `ansible-playbook` on the host against the machine being
//! built, as Packer's ansible provisioner does with `use_proxy = false`.
//!
//! imgform writes a temporary inventory (`host_alias`, default `default`,
//! in `groups`), removes it afterwards unless `keep_inventory_file`, and
//! runs `ansible-playbook -i INVENTORY [extra_arguments] PLAYBOOK` in the
//! definition dir with `ansible_env_vars` set. For a `chroot` image it
//! connects with a small connection plugin shipped by imgform
//! (`imgform_chroot`, the equivalent of `community.general.chroot`), and a
//! no-op become plugin (commands already run as root there), so the same
//! playbook provisions a local image and a cloud one. Modules need Python
//! inside the image, as with any Ansible target.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::process::Command;

pub mod reach;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::{base_dir, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, setting, FileRef, Schema};
use crate::spec::{ImageSpec, ProvisionerSpec};

/// `ansible`: runs `ansible-playbook` against the machine. The playbook and
/// what it reaches, the galaxy file, extra arguments and environment are
/// inputs; how Ansible connects is not.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "ansible",
        attrs: &[
            &[
                input("playbook_file").string(),
                input("extra_arguments").list(),
                input("ansible_env_vars").list(),
                input("groups"),
                input("empty_groups"),
                input("host_alias"),
                input("galaxy_file").file(),
                input("galaxy_command"),
                input("galaxy_force_install"),
                input("galaxy_force_with_deps").ignored("galaxy_force_install reinstalls roles and collections"),
                input("roles_path"),
                input("collections_path"),
                input("user"),
                setting("command"),
                setting("use_proxy").ignored("imgform always connects Ansible straight to the machine, as Packer does with use_proxy = false"),
                setting("keep_inventory_file"),
                setting("inventory_file").ignored("imgform writes its own inventory for the machine"),
                setting("inventory_file_template").ignored("imgform writes its own inventory for the machine"),
                setting("inventory_directory").ignored("imgform writes its own inventory for the machine"),
                setting("ansible_ssh_extra_args").ignored("pass SSH options with ansible_env_vars = [\"ANSIBLE_SSH_ARGS=...\"]"),
                setting("sftp_command").ignored("imgform runs no local proxy for Ansible"),
                setting("skip_version_check").ignored("imgform does not check Ansible's version"),
                setting("use_sftp").ignored("Ansible copies files with its own default method"),
                setting("local_port").ignored("imgform runs no local proxy for Ansible"),
                setting("ssh_host_key_file").ignored("imgform runs no local proxy for Ansible"),
                setting("ssh_authorized_key_file").ignored("imgform runs no local proxy for Ansible"),
                setting("ansible_winrm_use_http").ignored("WinRM is not implemented: imgform connects over SSH"),
                setting("ansible_proxy_key_type")
                    .ignored("imgform's SSH proxy for Ansible uses its own ed25519 key"),
            ],
            kind::COMMON,
        ],
        blocks: &[],
    },
    runs_on_host: false,
    test_phase: false,
    check: |p| {
        kind::required(p, "playbook_file", "playbook_file = \"./playbook.yml\"")
            .into_iter()
            .collect()
    },
    files,
    validate,
    provisioner: &Ansible,
};

struct Ansible;

impl Provisioner for Ansible {
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        _stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(run(ctx, p, comm))
    }
}

/// `roles_path` entries (`:`-separated), absolute, resolved against the
/// provisioner's folder as `ansible-playbook` sees them.
fn roles_path(p: &ProvisionerSpec, base: &Path) -> Vec<PathBuf> {
    p.str("roles_path")
        .map(|r| r.split(':').map(|x| base.join(x)).collect())
        .unwrap_or_default()
}

/// The provisioner's folder: the definition dir, or its module's.
fn folder(p: &ProvisionerSpec, def_dir: &Path) -> PathBuf {
    match &p.base_dir {
        Some(d) => def_dir.join(d),
        None => def_dir.to_path_buf(),
    }
}

/// Beside a playbook that sits in the definition dir itself, only these
/// are taken with it, so that state files, outputs and unrelated
/// definitions do not count.
const PLAYBOOK_NEIGHBOURS: &[&str] = &[
    "roles",
    "group_vars",
    "host_vars",
    "library",
    "module_utils",
    "filter_plugins",
    "collections",
    "files",
    "templates",
    "vars",
    "tasks",
    "handlers",
    "ansible.cfg",
    "requirements.yml",
];

/// What the playbook reaches (see [`reach`]), plus `galaxy_file`. When its
/// reach is not known statically, its whole directory.
fn files(p: &ProvisionerSpec, def_dir: &Path) -> Vec<FileRef> {
    let mut out: Vec<FileRef> = kind::schema_files(&KIND.schema, p)
        .into_iter()
        .filter(|f| f.attr != "playbook_file")
        .collect();
    let Some(playbook) = p.str("playbook_file").map(|s| kind::in_base_dir(p, s)) else {
        return out;
    };
    let at = |path: String| FileRef {
        attr: "playbook_file".to_owned(),
        path,
        reads: crate::schema::Reads::FileOrFolder,
    };
    let full = def_dir.join(&playbook);
    if !full.is_file() {
        // Hashing it says that it is missing or a folder, with its place.
        out.push(FileRef {
            reads: crate::schema::Reads::File,
            ..at(playbook)
        });
        return out;
    }
    let roles = roles_path(p, &folder(p, def_dir));
    let reached = reach::playbook_reach(def_dir, &full, &roles);
    if reached.dynamic.is_none() {
        out.extend(
            reached
                .files
                .iter()
                .filter(|f| f.is_file())
                .chain(&reached.dirs)
                .map(|f| at(crate::paths::relative_to(def_dir, f))),
        );
        return out;
    }
    // Reach unknown statically: the whole playbook directory.
    let dir = full
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| def_dir.to_path_buf());
    let same = std::fs::canonicalize(&dir).ok() == std::fs::canonicalize(def_dir).ok();
    out.push(at(playbook.clone()));
    if !same {
        let dir_rel = Path::new(&playbook)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ".".to_owned());
        out.push(at(dir_rel));
        return out;
    }
    out.extend(
        PLAYBOOK_NEIGHBOURS
            .iter()
            .filter(|known| dir.join(known).exists())
            .map(|known| at((*known).to_owned())),
    );
    out
}

/// A note when the playbook's reach is not known statically (its whole
/// directory is then an input).
fn validate(spec: &ImageSpec, p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let Some(playbook) = p.str("playbook_file") else {
        return Vec::new();
    };
    let dir = folder(p, &spec.def_dir);
    let reached = reach::playbook_reach(&spec.def_dir, &dir.join(playbook), &roles_path(p, &dir));
    match reached.dynamic {
        Some(why) => vec![Diagnostic::note(format!(
            "{}: the playbook's reach is not known statically, so its whole directory is an input",
            spec.addr
        ))
        .at(Some(p.loc.clone()))
        .detail(why)],
        None => Vec::new(),
    }
}

const CONNECTION_PLUGIN: &str = r#"# imgform's chroot connection plugin: runs tasks inside a root directory
# with chroot(8), like community.general.chroot.
from __future__ import annotations

import subprocess

from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
name: imgform_chroot
short_description: run tasks inside a chroot directory (written by imgform)
description:
  - Runs commands with chroot(8) in the directory given as the host address.
author: imgform
options: {}
"""


class Connection(ConnectionBase):
    transport = "imgform_chroot"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chroot = self._play_context.remote_addr

    def _connect(self):
        self._connected = True
        return self

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        p = subprocess.Popen(
            ["chroot", self.chroot, "/bin/sh", "-c", cmd],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            p = subprocess.run(
                ["chroot", self.chroot, "/bin/sh", "-c", 'cat > "$1"', "sh", out_path],
                stdin=source, capture_output=True,
            )
        if p.returncode != 0:
            raise AnsibleError("imgform_chroot: writing %s failed: %s" % (out_path, p.stderr.decode(errors="replace")))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        p = subprocess.run(["chroot", self.chroot, "cat", in_path], capture_output=True)
        if p.returncode != 0:
            raise AnsibleError("imgform_chroot: reading %s failed: %s" % (in_path, p.stderr.decode(errors="replace")))
        with open(out_path, "wb") as target:
            target.write(p.stdout)

    def close(self):
        self._connected = False
"#;

const BECOME_PLUGIN: &str = r#"# imgform: inside a chroot every command already runs as root.
from __future__ import annotations

from ansible.plugins.become import BecomeBase

DOCUMENTATION = """
name: imgform_root
short_description: no-op become for imgform's chroot connection
description:
  - Commands in an imgform chroot already run as root; become changes nothing.
author: imgform
options: {}
"""


class BecomeModule(BecomeBase):
    name = "imgform_root"

    def build_become_command(self, cmd, shell):
        return cmd
"#;

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "ansible".to_owned(),
        message: message.into(),
    }
}

fn strings(p: &ProvisionerSpec, name: &str) -> Vec<String> {
    p.strings(name)
}

/// A private dir removed on drop (unless kept): the inventory, imgform's
/// plugins, and for SSH the known_hosts file and a temporary key.
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

impl Scratch {
    /// Creates the dir with imgform's connection and become plugins in it;
    /// it is kept afterwards with `keep_inventory_file`.
    fn create(p: &ProvisionerSpec) -> Result<Scratch, BuildError> {
        let keep = p
            .settings
            .get("keep_inventory_file")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Private (0700): the inventory and extra vars may hold secrets.
        let path = crate::paths::private_temp_dir(&std::env::temp_dir(), "imgform-ansible")
            .map_err(|e| fail(format!("creating a temporary dir: {e}")))?;
        let scratch = Scratch { path, keep };
        std::fs::create_dir_all(scratch.path.join("connection"))
            .map_err(|e| fail(format!("creating {}: {e}", scratch.path.display())))?;
        std::fs::create_dir_all(scratch.path.join("become"))
            .map_err(|e| fail(format!("creating {}: {e}", scratch.path.display())))?;
        scratch.write("connection/imgform_chroot.py", CONNECTION_PLUGIN)?;
        scratch.write("become/imgform_root.py", BECOME_PLUGIN)?;
        Ok(scratch)
    }

    fn write(&self, rel: &str, text: &str) -> Result<(), BuildError> {
        std::fs::write(self.path.join(rel), text).map_err(|e| fail(format!("writing {rel}: {e}")))
    }
}

async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
) -> Result<(), BuildError> {
    let dir = base_dir(ctx, p);
    let playbook = p
        .str("playbook_file")
        .ok_or_else(|| fail("no playbook_file"))?;
    let program = ansible_program(p)?;
    let root = chroot_root(comm)?;
    let scratch = Scratch::create(p)?;
    let alias = p.str("host_alias").unwrap_or("default").to_owned();
    let secret_env = write_inventory(ctx, p, comm, &scratch, root.as_deref(), &alias)?;
    let cmd = playbook_command(
        p,
        &dir,
        &program,
        playbook,
        &scratch.path,
        root.is_some(),
        &secret_env,
    );
    if let Some(galaxy) = p.str("galaxy_file") {
        install_galaxy(ctx, p, &dir, galaxy).await?;
    }
    ctx.events
        .step(format!("ansible: {program} {playbook} against {alias}"));
    run_playbook(ctx, cmd, &program).await
}

/// `command` (default `ansible-playbook`), which must be installed.
fn ansible_program(p: &ProvisionerSpec) -> Result<String, BuildError> {
    let program = p
        .settings
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("ansible-playbook")
        .to_owned();
    if which(&program).is_none() {
        return Err(fail(format!(
            "`{program}` was not found on this machine: install Ansible (e.g. `python3 -m pip install ansible-core`) or set `command` to its path"
        )));
    }
    Ok(program)
}

/// Where the machine is: a chroot's root (`Some`), or an SSH endpoint
/// (`None`; the communicator has it). Anything else Ansible cannot reach.
fn chroot_root(comm: &dyn Communicator) -> Result<Option<String>, BuildError> {
    let root = comm
        .host_env()
        .into_iter()
        .find(|(k, _)| k == "TARGET_ROOT")
        .map(|(_, v)| v);
    if root.is_none() && comm.ssh().is_none() {
        return Err(fail(
            "this source has no machine Ansible can reach (communicator = \"none\")",
        ));
    }
    Ok(root)
}

/// Writes `inventory.ini`: the machine as `alias`, in `groups`, and the
/// `empty_groups`. Returns the secrets the inventory reads from the
/// environment.
fn write_inventory(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
    scratch: &Scratch,
    root: Option<&str>,
    alias: &str,
) -> Result<Vec<(String, String)>, BuildError> {
    let mut secret_env: Vec<(String, String)> = Vec::new();
    let host_line = match (root, comm.ssh()) {
        (Some(root), _) => format!(
            "{alias} ansible_connection=imgform_chroot ansible_host={root} ansible_python_interpreter=/usr/bin/python3 ansible_become_method=imgform_root"
        ),
        (None, Some(ssh)) => ssh_host_line(p, ssh, &scratch.path, alias, &mut secret_env)?,
        (None, None) => unreachable!("chroot_root checked it"),
    };
    let mut inventory = format!("{host_line}\n");
    for group in strings(p, "groups") {
        inventory.push_str(&format!("\n[{group}]\n{alias}\n"));
    }
    for group in strings(p, "empty_groups") {
        inventory.push_str(&format!("\n[{group}]\n"));
    }
    scratch.write("inventory.ini", &inventory)?;
    if scratch.keep {
        ctx.events.step(format!(
            "ansible: inventory kept at {}",
            scratch.path.join("inventory.ini").display()
        ));
    }
    Ok(secret_env)
}

/// `PROGRAM -i INVENTORY [extra_arguments] PLAYBOOK` in `dir`, with
/// imgform's plugins, the roles and collections paths, the inventory's
/// secrets and `ansible_env_vars` in its environment.
fn playbook_command(
    p: &ProvisionerSpec,
    dir: &Path,
    program: &str,
    playbook: &str,
    scratch: &Path,
    chroot: bool,
    secret_env: &[(String, String)],
) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .arg("-i")
        .arg(scratch.join("inventory.ini"));
    for arg in strings(p, "extra_arguments") {
        cmd.arg(arg);
    }
    cmd.arg(playbook);
    cmd.env("ANSIBLE_CONNECTION_PLUGINS", scratch.join("connection"))
        .env("ANSIBLE_BECOME_PLUGINS", scratch.join("become"))
        .env(
            "ANSIBLE_HOST_KEY_CHECKING",
            if chroot { "False" } else { "True" },
        )
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .env("PYTHONUNBUFFERED", "1");
    if let Some(roles) = p.config.get("roles_path").and_then(Value::as_str) {
        cmd.env("ANSIBLE_ROLES_PATH", dir.join(roles));
    }
    if let Some(collections) = p.config.get("collections_path").and_then(Value::as_str) {
        cmd.env("ANSIBLE_COLLECTIONS_PATH", dir.join(collections));
    }
    for (k, v) in secret_env {
        cmd.env(k, v);
    }
    for item in strings(p, "ansible_env_vars") {
        if let Some((k, v)) = item.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd
}

/// Runs the playbook, streaming its output; a failure names the failed
/// task when Ansible printed one.
async fn run_playbook(
    ctx: &BuildContext<'_>,
    cmd: Command,
    program: &str,
) -> Result<(), BuildError> {
    let (code, stdout_tail, stderr_tail) = match super::run_streaming(cmd, &ctx.events, &ctx.cancel)
        .await
        .map_err(|e| fail(format!("cannot start {program}: {e}")))?
    {
        super::Streamed::Exited {
            code,
            stdout_tail,
            stderr_tail,
        } => (code, stdout_tail, stderr_tail),
        super::Streamed::Cancelled => return Err(BuildError::Cancelled),
    };
    if code != 0 {
        // Ansible prints a failed task on stdout as `fatal: [host]: FAILED! => {...}`.
        let message = stdout_tail
            .iter()
            .rev()
            .find(|l| l.contains("FAILED!") || l.starts_with("fatal:"))
            .or_else(|| stderr_tail.last())
            .cloned()
            .unwrap_or_default();
        return Err(fail(format!(
            "ansible-playbook exited with status {code}: {}",
            ctx.spec.scrub(&message)
        )));
    }
    Ok(())
}

/// The inventory line for a machine reached over SSH (Packer's
/// `use_proxy = false`): Ansible connects straight to the communicator's
/// host, port and user with its key, and checks the host key imgform
/// checked (a known_hosts file in the scratch dir). A password never
/// touches the disk: the inventory reads it from the environment.
fn ssh_host_line(
    p: &ProvisionerSpec,
    ssh: &super::ssh::SshCommunicator,
    scratch: &Path,
    alias: &str,
    secret_env: &mut Vec<(String, String)>,
) -> Result<String, BuildError> {
    use super::ssh::SshAuth;
    let cfg = &ssh.config;
    let target = &cfg.target;
    let known_hosts = write_known_hosts(ssh, scratch)?;
    let user = p
        .config
        .get("user")
        .or_else(|| p.settings.get("user"))
        .and_then(Value::as_str)
        .unwrap_or(&target.user);
    let mut line = format!(
        "{alias} ansible_connection=ssh ansible_host={} ansible_port={} ansible_user={user}",
        target.host, target.port
    );
    if let Some(path) = private_key_file(ssh, scratch)? {
        line.push_str(&format!(" ansible_ssh_private_key_file={}", path.display()));
    }
    if let Some(password) = target.auth.iter().find_map(|a| match a {
        SshAuth::Password(p) => Some(p),
        SshAuth::Key(_) => None,
    }) {
        secret_env.push(("IMGFORM_ANSIBLE_SSH_PASSWORD".to_owned(), password.clone()));
        line.push_str(" ansible_password=\"{{ lookup('env', 'IMGFORM_ANSIBLE_SSH_PASSWORD') }}\"");
    }
    let args = ssh_common_args(ssh, &known_hosts);
    line.push_str(&format!(" ansible_ssh_common_args='{args}'"));
    Ok(line)
}

/// A known_hosts file in `scratch` with the host keys imgform checked when
/// connecting (the target's, and the bastion's).
fn write_known_hosts(
    ssh: &super::ssh::SshCommunicator,
    scratch: &Path,
) -> Result<PathBuf, BuildError> {
    let cfg = &ssh.config;
    let target = &cfg.target;
    let pattern = |host: &str, port: u16| {
        if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        }
    };
    let line_for = |host: &str, port: u16, key: &russh::keys::PublicKey| {
        key.to_openssh()
            .map(|k| format!("{} {k}\n", pattern(host, port)))
            .map_err(|e| fail(format!("encoding a host key: {e}")))
    };
    let mut known = line_for(&target.host, target.port, &ssh.host_key)?;
    if let (Some(b), Some(key)) = (&cfg.bastion, &ssh.bastion_host_key) {
        known.push_str(&line_for(&b.host, b.port, key)?);
    }
    let known_hosts = scratch.join("known_hosts");
    std::fs::write(&known_hosts, known).map_err(|e| fail(format!("writing known_hosts: {e}")))?;
    Ok(known_hosts)
}

/// The private key file Ansible logs in with: the configured one, or a
/// private copy of the temporary key in `scratch`.
fn private_key_file(
    ssh: &super::ssh::SshCommunicator,
    scratch: &Path,
) -> Result<Option<PathBuf>, BuildError> {
    use super::ssh::SshAuth;
    use russh::keys::ssh_key::LineEnding;
    let cfg = &ssh.config;
    let key = cfg.target.auth.iter().find_map(|a| match a {
        SshAuth::Key(k) => Some(k),
        SshAuth::Password(_) => None,
    });
    match (&cfg.key_file, key) {
        (Some(path), _) => Ok(Some(path.clone())),
        (None, Some(key)) => {
            // A temporary key pair lives in memory: hand Ansible a private copy.
            let path = scratch.join("id_imgform");
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| fail(format!("encoding the temporary key: {e}")))?;
            write_private(&path, text.as_bytes())?;
            Ok(Some(path))
        }
        (None, None) => Ok(None),
    }
}

/// `ansible_ssh_common_args`: check host keys against `known_hosts` only,
/// and jump through the bastion when there is one.
fn ssh_common_args(ssh: &super::ssh::SshCommunicator, known_hosts: &Path) -> String {
    let cfg = &ssh.config;
    let mut args = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        known_hosts.display()
    );
    if let Some(b) = &cfg.bastion {
        let identity = cfg
            .bastion_key_file
            .as_ref()
            .map(|k| format!(" -i {}", k.display()))
            .unwrap_or_default();
        args.push_str(&format!(
            " -o ProxyCommand=\"ssh -W %h:%p -p {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes{identity} {}@{}\"",
            b.port,
            known_hosts.display(),
            b.user,
            b.host
        ));
    }
    args
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
    file.write_all(bytes)
        .map_err(|e| fail(format!("writing {}: {e}", path.display())))
}

async fn install_galaxy(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    dir: &Path,
    galaxy: &str,
) -> Result<(), BuildError> {
    let command = p
        .config
        .get("galaxy_command")
        .and_then(Value::as_str)
        .unwrap_or("ansible-galaxy")
        .to_owned();
    let mut cmd = Command::new(&command);
    cmd.current_dir(dir).args(["install", "-r", galaxy]);
    if let Some(roles) = p.config.get("roles_path").and_then(Value::as_str) {
        cmd.arg("-p").arg(dir.join(roles));
    }
    if p.config
        .get("galaxy_force_install")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        cmd.arg("--force");
    }
    ctx.events
        .step(format!("ansible: {command} install -r {galaxy}"));
    match super::run_streaming(cmd, &ctx.events, &ctx.cancel)
        .await
        .map_err(|e| fail(format!("cannot start {command}: {e}")))?
    {
        super::Streamed::Exited { code: 0, .. } => Ok(()),
        super::Streamed::Exited { code, .. } => Err(fail(format!(
            "{command} install -r {galaxy} exited with status {code}"
        ))),
        super::Streamed::Cancelled => Err(BuildError::Cancelled),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
