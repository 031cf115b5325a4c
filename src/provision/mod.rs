//! Provisioners and the communicators they run through.
//!
//! [`run_all`] runs an image's provisioners in order, honouring
//! `pause_before`, `timeout` and `max_retries`. A provisioner either runs on
//! the host (`shell-local`) or through a [`Communicator`] the builder opened
//! to its machine. Provisioners never see a plan or the state.

pub mod ansible;
pub mod chroot;
pub mod component;
pub mod file;
pub mod shell;
pub mod shell_local;
pub mod ssh;

use std::path::Path;
use std::time::Duration;

use crate::apply::events::EventSink;
use crate::drivers::{BoxFuture, BuildContext, BuildError};
use crate::spec::ProvisionerSpec;

#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("this source has no communicator (communicator = \"none\")")]
    None,
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
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

/// Provisioner types that run on the machine running imgform.
pub fn runs_on_host(kind: &str) -> bool {
    kind == "shell-local"
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
    run_list(ctx, communicator, &ctx.spec.provisioners, Stage::Build).await
}

/// When a provisioner runs: while building, or in the test phase against
/// the finished image (component documents run their `test` phase there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Build,
    Test,
}

/// Whether the image has a test phase: `test` blocks, or component
/// documents (whose `test` phase runs there).
pub fn has_tests(spec: &crate::spec::ImageSpec) -> bool {
    !spec.tests.is_empty() || spec.provisioners.iter().any(|p| p.kind == "component")
}

/// The test phase: the build's component documents' `test` phases, then
/// the `test` blocks' provisioners.
pub async fn run_tests(
    ctx: &BuildContext<'_>,
    communicator: &dyn Communicator,
) -> Result<(), BuildError> {
    let components: Vec<ProvisionerSpec> = ctx
        .spec
        .provisioners
        .iter()
        .filter(|p| p.kind == "component")
        .cloned()
        .collect();
    run_list(ctx, communicator, &components, Stage::Test).await?;
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
    match p.kind.as_str() {
        "shell-local" => shell_local::run(ctx, p, &communicator.host_env()).await,
        "shell" => shell::run(ctx, p, communicator).await,
        "file" => file::run(ctx, p, communicator).await,
        "ansible" => ansible::run(ctx, p, communicator).await,
        "component" => {
            let phases: &[&str] = match stage {
                Stage::Build => component::BUILD_PHASES,
                Stage::Test => &["test"],
            };
            component::run(ctx, p, communicator, phases).await
        }
        other => Err(BuildError::Provisioner {
            kind: other.to_owned(),
            message: "not supported by this builder yet".to_owned(),
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
    cancel: &crate::apply::events::CancelToken,
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
            out_events.output(crate::apply::events::Stream::Stdout, line.clone());
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
            err_events.output(crate::apply::events::Stream::Stderr, line.clone());
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

/// Writes an executable file (mode 0755) without racing concurrent spawns.
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
        .mode(0o755)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
}

/// Checks that need the evaluated spec and the files it names, for every
/// builder: component documents parse and use only supported actions.
pub fn validate(spec: &crate::spec::ImageSpec) -> Vec<crate::diag::Diagnostic> {
    let mut diags = Vec::new();
    for p in spec
        .provisioners
        .iter()
        .chain(&spec.tests)
        .filter(|p| p.kind == "ansible")
    {
        let dir = match &p.base_dir {
            Some(d) => spec.def_dir.join(d),
            None => spec.def_dir.clone(),
        };
        let Some(playbook) = p.str("playbook_file") else {
            continue;
        };
        let roles: Vec<std::path::PathBuf> = p
            .str("roles_path")
            .map(|r| r.split(':').map(|x| dir.join(x)).collect())
            .unwrap_or_default();
        let reach =
            crate::fingerprint::ansible::playbook_reach(&spec.def_dir, &dir.join(playbook), &roles);
        if let Some(why) = reach.dynamic {
            diags.push(
                crate::diag::Diagnostic::note(format!("{}: the playbook's reach is not known statically, so its whole directory is an input", spec.addr))
                    .at(Some(p.loc.clone()))
                    .detail(why),
            );
        }
    }
    for p in spec.provisioners.iter().filter(|p| p.kind == "component") {
        let dir = match &p.base_dir {
            Some(d) => spec.def_dir.join(d),
            None => spec.def_dir.clone(),
        };
        for document in component::documents(&p.config) {
            // A missing file is reported by the fingerprint, with its place.
            if let Ok(text) = std::fs::read_to_string(dir.join(&document)) {
                if let Err(d) = component::check_document(&text, Path::new(&document)) {
                    diags.extend(d);
                }
            }
        }
    }
    diags
}
