//! Provisioners and the communicators they run through.
//!
//! Each provisioner kind is one module that describes itself once (a
//! [`ProvisionerKind`]: schema, checks, the files it reads, where it runs)
//! and implements [`kind::Provisioner`]; [`KINDS`] lists them, and everything
//! else asks [`kind_of`] instead of matching on names. To add one: write the
//! module with its `KIND`, add one line to [`KINDS`].
//!
//! [`run_all`] runs an image's provisioners in order, honouring
//! `pause_before`, `timeout` and `max_retries`. A provisioner either runs on
//! the host (`shell-local`) or through a [`Communicator`] the builder opened
//! to its machine (`ssh`, `chroot`). Provisioners never see a plan or the
//! state.

pub mod ansible;
pub mod chroot;
pub mod component;
pub mod file;
pub mod inventory;
pub mod kind;
pub mod shell;
pub mod shell_local;
pub mod ssh;

use std::path::Path;
use std::time::Duration;

use crate::build::events::EventSink;
use crate::build::{hint_line, BoxFuture, BuildContext, BuildError};
use crate::spec::{ImageSpec, ProvisionerSpec};
pub use kind::ProvisionerKind;

/// The registry: every provisioner kind imgform knows.
pub static KINDS: &[&ProvisionerKind] = &[
    &shell::KIND,
    &shell_local::KIND,
    &file::KIND,
    &ansible::KIND,
    &component::KIND,
];

/// The provisioner kind called `name`.
pub fn kind_of(name: &str) -> Option<&'static ProvisionerKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every provisioner kind, for hints.
pub fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name())
}

/// A communicator failure. A variant that knows what to do about its
/// failure says so in [`CommError::hint`], rendered on its own line after
/// the message (the text reaches users inside a provisioner's error).
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("this source has no communicator (communicator = \"none\")")]
    None,
    #[error("{0}")]
    Failed(String),
    /// The server accepted the `sftp` subsystem request, but SFTP did not
    /// start on it.
    #[error("starting SFTP: {0}{hint}", hint = hint_line(self.hint()))]
    SftpStart(String),
    #[error("cancelled")]
    Cancelled,
}

impl CommError {
    /// What to do about this failure, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CommError::SftpStart(_) => Some(
                "the server needs an sftp subsystem (Subsystem sftp internal-sftp in sshd_config)",
            ),
            CommError::None | CommError::Failed(_) | CommError::Cancelled => None,
        }
    }
}

/// A connection to the machine being provisioned.
pub trait Communicator: Send + Sync {
    /// Runs `command` with `env`, streaming output lines into `events`;
    /// returns the exit status.
    fn exec<'a>(
        &'a self,
        command: &'a str,
        env: &'a [(String, String)],
        events: &'a EventSink,
    ) -> BoxFuture<'a, Result<i32, CommError>>;
    /// Copies a local file to the path `remote`, or a local directory's
    /// contents into the directory `remote` (created if missing).
    fn upload<'a>(
        &'a self,
        local: &'a Path,
        remote: &'a str,
    ) -> BoxFuture<'a, Result<(), CommError>>;
    /// Copies the remote file `remote` to `local`.
    fn download<'a>(
        &'a self,
        remote: &'a str,
        local: &'a Path,
    ) -> BoxFuture<'a, Result<(), CommError>>;
    /// Extra environment for host-side provisioners (`shell-local`), e.g.
    /// `TARGET_ROOT` for a chroot.
    fn host_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The SSH connection (settings, and the host keys checked when
    /// connecting), for tools that connect on their own (Ansible with
    /// `use_proxy = false`).
    fn ssh(&self) -> Option<&ssh::SshCommunicator> {
        None
    }
}

/// `communicator = "none"`: nothing to connect to.
pub struct NoCommunicator;

impl Communicator for NoCommunicator {
    fn exec<'a>(
        &'a self,
        _command: &'a str,
        _env: &'a [(String, String)],
        _events: &'a EventSink,
    ) -> BoxFuture<'a, Result<i32, CommError>> {
        Box::pin(async { Err(CommError::None) })
    }

    fn upload<'a>(
        &'a self,
        _local: &'a Path,
        _remote: &'a str,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async { Err(CommError::None) })
    }

    fn download<'a>(
        &'a self,
        _remote: &'a str,
        _local: &'a Path,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async { Err(CommError::None) })
    }
}

/// Whether provisioners of kind `kind` run on the machine running imgform.
pub fn runs_on_host(kind: &str) -> bool {
    kind_of(kind).is_some_and(|k| k.runs_on_host)
}

/// Whether provisioners of kind `kind` have a test phase of their own.
fn has_test_phase(kind: &str) -> bool {
    kind_of(kind).is_some_and(|k| k.test_phase)
}

/// The directory relative paths of a provisioner resolve against: the
/// definition dir, or the module dir for provisioners that came from a module.
pub fn base_dir(ctx: &BuildContext<'_>, p: &ProvisionerSpec) -> std::path::PathBuf {
    match &p.base_dir {
        Some(dir) => ctx.spec.def_dir.join(dir),
        None => ctx.spec.def_dir.clone(),
    }
}

/// Runs every provisioner of `ctx.spec` in order.
pub async fn run_all(
    ctx: &BuildContext<'_>,
    communicator: &dyn Communicator,
) -> Result<(), BuildError> {
    run_list(ctx, communicator, &ctx.spec.provisioners, Stage::Build).await?;
    // What the provisioners left installed is what the image holds.
    let found = inventory::collect(communicator, &ctx.events).await;
    if let Some(inventory) = &found {
        ctx.events.step(format!(
            "package list read: {} packages",
            inventory.packages.len()
        ));
    }
    *ctx.inventory.lock().unwrap_or_else(|e| e.into_inner()) = found;
    Ok(())
}

/// When a provisioner runs: while building, or in the test phase against
/// the finished image (component documents run their `test` phase there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Test,
}

/// Whether the image has a test phase: `test` blocks, or provisioners with
/// a test phase of their own (component documents).
pub fn has_tests(spec: &ImageSpec) -> bool {
    !spec.tests.is_empty() || spec.provisioners.iter().any(|p| has_test_phase(&p.kind))
}

/// The test phase: the test phases of the build's provisioners that have
/// one (component documents), then the `test` blocks' provisioners.
pub async fn run_tests(
    ctx: &BuildContext<'_>,
    communicator: &dyn Communicator,
) -> Result<(), BuildError> {
    let own: Vec<ProvisionerSpec> = ctx
        .spec
        .provisioners
        .iter()
        .filter(|p| has_test_phase(&p.kind))
        .cloned()
        .collect();
    run_list(ctx, communicator, &own, Stage::Test).await?;
    run_list(ctx, communicator, &ctx.spec.tests, Stage::Test).await
}

async fn run_list(
    ctx: &BuildContext<'_>,
    communicator: &dyn Communicator,
    list: &[ProvisionerSpec],
    stage: Stage,
) -> Result<(), BuildError> {
    for (index, p) in list.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        if let Some(pause) = p.pause_before {
            ctx.events.step(format!(
                "pausing {}s before provisioner \"{}\"",
                pause.as_secs_f64(),
                p.kind
            ));
            tokio::time::sleep(pause).await;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            ctx.events.step(format!(
                "{}provisioner {} \"{}\"{}{}",
                if stage == Stage::Test { "test " } else { "" },
                index + 1,
                p.kind,
                p.base_dir
                    .as_deref()
                    .map(|d| format!(" from {d}"))
                    .unwrap_or_default(),
                if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                }
            ));
            let run = run_one(ctx, p, communicator, stage);
            let result = match p.timeout {
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(r) => r,
                    Err(_) => Err(BuildError::Provisioner {
                        kind: p.kind.clone(),
                        message: format!("timed out after {}", humantime(limit)),
                    }),
                },
                None => run.await,
            };
            match result {
                Ok(())
                    if stage == Stage::Build
                        && crate::fault::armed("kill-during-provisioning", &ctx.spec.addr) =>
                {
                    // After the first provisioner, with the next to come.
                    crate::fault::die()
                }
                Ok(()) => break,
                Err(BuildError::Cancelled) => return Err(BuildError::Cancelled),
                Err(e) if attempt <= p.max_retries as usize && !ctx.cancel.is_cancelled() => {
                    ctx.events
                        .step(format!("{e}; retrying ({attempt}/{})", p.max_retries));
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn run_one(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    communicator: &dyn Communicator,
    stage: Stage,
) -> Result<(), BuildError> {
    match kind_of(&p.kind) {
        Some(kind) => kind.provisioner.run(ctx, p, communicator, stage).await,
        None => Err(BuildError::Provisioner {
            kind: p.kind.clone(),
            message: "no such provisioner kind".to_owned(),
        }),
    }
}

fn humantime(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 {
        format!("{}m{}s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!("{secs}s")
    }
}

/// Packer's `{{.Vars}}` form: `K='v' K2='v2'`, single-quoted for sh.
pub fn format_env_vars(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}='{}'", v.replace('\'', "'\"'\"'")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Environment a provisioner sees: Packer's variables, imgform's, then
/// `environment_vars` and `env` from the config.
pub fn provisioner_env(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
) -> Result<Vec<(String, String)>, BuildError> {
    let spec = ctx.spec;
    let mut env = vec![
        (
            "PACKER_BUILD_NAME".to_owned(),
            spec.addr.source_name.clone(),
        ),
        ("PACKER_BUILDER_TYPE".to_owned(), spec.builder.clone()),
        ("IMGFORM_IMAGE".to_owned(), spec.addr.to_string()),
        (
            "IMGFORM_CONTENT_ADDRESS".to_owned(),
            ctx.content_address.to_owned(),
        ),
        ("IMGFORM_RUN_ID".to_owned(), ctx.run_id.to_owned()),
    ];
    for item in p.strings("environment_vars") {
        let Some((k, v)) = item.split_once('=') else {
            return Err(BuildError::Provisioner {
                kind: p.kind.clone(),
                message: format!("environment_vars entry `{item}` is not KEY=VALUE"),
            });
        };
        env.push((k.to_owned(), v.to_owned()));
    }
    if let Some(serde_json::Value::Object(map)) = p.config.get("env") {
        for (k, v) in map {
            env.push((
                k.clone(),
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    Ok(env)
}

/// How a streamed command ended.
pub enum Streamed {
    Exited {
        code: i32,
        /// The last lines of stdout (up to 40).
        stdout_tail: Vec<String>,
        /// The last lines of stderr (up to 5).
        stderr_tail: Vec<String>,
    },
    Cancelled,
}

/// Runs `cmd` in its own process group, streaming stdout/stderr lines into
/// `events`. If `cancel` fires, the whole group gets SIGTERM (SIGKILL after
/// 5 s) and the result is [`Streamed::Cancelled`]. Being in their own group,
/// commands do not see the terminal's Ctrl-C: imgform decides what stops.
pub async fn run_streaming(
    mut cmd: tokio::process::Command,
    events: &EventSink,
    cancel: &crate::build::events::CancelToken,
) -> std::io::Result<Streamed> {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = {
        let _no_writable_scripts = spawn_guard();
        cmd.spawn()?
    };
    let pgid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (out_events, err_events) = (events.clone(), events.clone());
    let out_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut tail: Vec<String> = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            out_events.output(crate::build::events::Stream::Stdout, line.clone());
            tail.push(line);
            if tail.len() > 40 {
                tail.remove(0);
            }
        }
        tail
    });
    let err_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tail: Vec<String> = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            err_events.output(crate::build::events::Stream::Stderr, line.clone());
            tail.push(line);
            if tail.len() > 5 {
                tail.remove(0);
            }
        }
        tail
    });
    let mut cancel = cancel.clone();
    let status = tokio::select! {
        status = child.wait() => Some(status?),
        _ = cancel.cancelled() => None,
    };
    let Some(status) = status else {
        if let Some(pgid) = pgid {
            kill_group("TERM", pgid).await;
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                kill_group("KILL", pgid).await;
                let _ = child.wait().await;
            }
        }
        out_task.abort();
        err_task.abort();
        return Ok(Streamed::Cancelled);
    };
    let stdout_tail = out_task.await.unwrap_or_default();
    let stderr_tail = err_task.await.unwrap_or_default();
    Ok(Streamed::Exited {
        code: status.code().unwrap_or(-1),
        stdout_tail,
        stderr_tail,
    })
}

async fn kill_group(signal: &str, pgid: u32) {
    let _ = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status()
        .await;
}

/// A communicator error as a provisioner failure (or a cancellation).
pub fn comm_error(kind: &str, context: &str, e: CommError) -> BuildError {
    match e {
        CommError::Cancelled => BuildError::Cancelled,
        other => BuildError::Provisioner {
            kind: kind.to_owned(),
            message: format!("{context}{other}"),
        },
    }
}

/// Guards against ETXTBSY ("Text file busy"). A child forked while another
/// thread has a script open for writing inherits that descriptor until it
/// execs, and executing the script then fails. Writers of executable files
/// hold the write side while their descriptor is open; spawns hold the read
/// side across `spawn()`.
static EXEC_FILES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Hold while spawning a process.
pub fn spawn_guard() -> std::sync::RwLockReadGuard<'static, ()> {
    EXEC_FILES
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes an executable file (mode 0700) without racing concurrent spawns.
pub fn write_executable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _exclusive = EXEC_FILES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)?;
    // Not fsynced: these files are thrown away after the run, and a crash
    // loses nothing by losing them.
    file.write_all(bytes)?;
    drop(file);
    // Executable by its owner only: inline scripts hold the values of
    // secrets.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
}

/// Plan-time checks of every provisioner of `spec` (and of its tests), as
/// each kind's `validate` says.
pub fn validate(spec: &ImageSpec) -> Vec<crate::diag::Diagnostic> {
    spec.provisioners
        .iter()
        .chain(&spec.tests)
        .filter_map(|p| kind_of(&p.kind).map(|k| (k, p)))
        .flat_map(|(k, p)| {
            let ignored = k
                .schema
                .ignored_in(|name| p.config.get(name).or_else(|| p.settings.get(name)))
                .into_iter();
            ignored
                .map(|(name, hint)| {
                    crate::diag::Diagnostic::warning(format!(
                        "{}: provisioner \"{}\" `{name}` is not acted on by imgform and is ignored",
                        spec.addr, p.kind
                    ))
                    .at(Some(
                        p.attr_locs
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| p.loc.clone()),
                    ))
                    .hint(hint)
                })
                .chain((k.validate)(spec, p))
                .collect::<Vec<_>>()
        })
        .collect()
}
