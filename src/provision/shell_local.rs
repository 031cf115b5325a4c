//! `shell-local`: runs commands on the machine running imgform, in the
//! definition dir, as Packer's shell-local does: `inline` lines (or a single
//! `command`) are written to a temporary script starting with
//! `inline_shebang`; `script`/`scripts` run where they are, by absolute path
//! (so `$(dirname "$0")` finds their siblings, as under Packer), unless they
//! are not executable: Packer would fail on those ("Permission denied"),
//! imgform runs an executable copy from a private temporary dir instead. Each
//! runs through `execute_command` (default
//! `["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]`).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::shell::{check_what_runs, SHELL_COMMON};
use super::{format_env_vars, provisioner_env, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::paths::PrivateTempDir;
use crate::schema::{input, setting, AttrSpec, Schema};
use crate::spec::ProvisionerSpec;

/// What `shell-local` takes beyond the shell attributes, as a provisioner
/// and as a post-processor.
pub const LOCAL: &[AttrSpec] = &[
    input("command"),
    setting("only_on"),
    setting("use_linux_pathing").ignored("imgform runs on Linux only"),
    setting("tempfile_extension").ignored("inline commands go to a script without an extension"),
];

/// `shell-local`: runs on the machine running imgform, in the definition dir.
/// The `shell-local` post-processor (`postprocess`) runs the same way.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "shell-local",
        attrs: &[SHELL_COMMON, LOCAL, kind::COMMON],
        blocks: &[],
    },
    runs_on_host: true,
    test_phase: false,
    check: check_what_runs,
    files: |p, _| kind::schema_files(&KIND.schema, p),
    validate: kind::no_validate,
    provisioner: &ShellLocal,
};

struct ShellLocal;

impl Provisioner for ShellLocal {
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        _stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move { run(ctx, p, &comm.host_env()).await })
    }
}

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "shell-local".to_owned(),
        message: message.into(),
    }
}

pub(crate) async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    host_env: &[(String, String)],
) -> Result<(), BuildError> {
    // Packer's `only_on`: the operating systems (Go's names) it runs on.
    if let Some(Value::Array(systems)) = p.settings.get("only_on") {
        let here = std::env::consts::OS;
        if !systems.is_empty() && !systems.iter().any(|s| s.as_str() == Some(here)) {
            ctx.events.step(format!(
                "shell-local: skipped: only_on does not list {here}"
            ));
            return Ok(());
        }
    }
    let mut env = host_env.to_vec();
    env.extend(provisioner_env(ctx, p)?);
    // Created only when a script must be written (inline commands, or a
    // copy of a script that is not executable); removed when dropped.
    let mut tmp: Option<PrivateTempDir> = None;
    let scripts = scripts_to_run(ctx, p, &mut tmp)?;
    let valid_codes: Vec<i64> = match p.config.get("valid_exit_codes") {
        Some(Value::Array(codes)) => codes.iter().filter_map(Value::as_i64).collect(),
        _ => vec![0],
    };
    let template = execute_command(p);
    let default_command = !p.config.contains_key("execute_command");
    let vars = format_env_vars(&env);
    for script in &scripts {
        let script_str = script.to_string_lossy();
        // The default `/bin/sh -c "VARS SCRIPT"` sets VARS (which `env`
        // holds too) and execs SCRIPT: run a script with a `#!` line that
        // way without the shell in between (half the processes). Should
        // it not start (its interpreter missing), the shell runs it and
        // says why, as under Packer.
        if default_command && has_shebang(script) {
            let argv = [script_str.clone().into_owned()];
            if let Ok(done) = try_run_script(ctx, &argv, &env, &valid_codes).await {
                done?;
                continue;
            }
        }
        let argv: Vec<String> = template
            .iter()
            .map(|part| substitute(part, &vars, &script_str))
            .collect();
        run_script(ctx, &argv, &env, &valid_codes).await?;
    }
    Ok(())
}

/// The scripts to run, as absolute paths of executable files: the `inline`
/// lines (or `command`) under `inline_shebang`, written to `tmp`; then
/// `script` and `scripts` in place, or an executable copy in `tmp` of one
/// that is not executable.
fn scripts_to_run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    tmp: &mut Option<PrivateTempDir>,
) -> Result<Vec<PathBuf>, BuildError> {
    let mut scripts: Vec<PathBuf> = Vec::new();
    let shebang = p.str("inline_shebang").unwrap_or("/bin/sh -e");
    let inline: Vec<String> = match p.str("command") {
        Some(command) => vec![command.to_owned()],
        None => p.strings("inline"),
    };
    if !inline.is_empty() {
        let path = private_dir(ctx, tmp)?.join("inline.sh");
        let body = format!("#!{shebang}\n{}\n", inline.join("\n"));
        write_executable(&path, body.as_bytes())?;
        scripts.push(path);
    }
    let mut sources = Vec::new();
    if let Some(script) = p.str("script") {
        sources.push(script.to_owned());
    }
    sources.extend(p.strings("scripts"));
    for (i, source) in sources.iter().enumerate() {
        let from = std::path::absolute(super::base_dir(ctx, p).join(source))
            .map_err(|e| fail(format!("cannot find script {source}: {e}")))?;
        let meta = std::fs::metadata(&from)
            .map_err(|e| fail(format!("cannot read script {source}: {e}")))?;
        if !meta.is_file() {
            return Err(fail(format!("script {source} is not a file")));
        }
        if executable(&from) {
            scripts.push(from);
            continue;
        }
        let bytes =
            std::fs::read(&from).map_err(|e| fail(format!("cannot read script {source}: {e}")))?;
        let name = Path::new(source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        let path = private_dir(ctx, tmp)?.join(format!("{i}-{name}"));
        write_executable(&path, &bytes)?;
        scripts.push(path);
    }
    Ok(scripts)
}

/// Whether `path` starts with `#!` (the kernel runs it with its
/// interpreter).
fn has_shebang(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"#!"
}

/// Whether this process may execute `path` (`access(X_OK)`, which also
/// honours ACLs and `noexec` mounts).
fn executable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// `execute_command` as an argv template (a string runs under `/bin/sh -c`).
fn execute_command(p: &ProvisionerSpec) -> Vec<String> {
    match p.config.get("execute_command") {
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        Some(Value::String(s)) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        _ => vec![
            "/bin/sh".into(),
            "-c".into(),
            "{{.Vars}} {{.Script}}".into(),
        ],
    }
}

/// Runs one script's `argv` in the definition dir, streaming its output; an
/// exit code outside `valid_codes` fails with the tail of its stderr.
async fn run_script(
    ctx: &BuildContext<'_>,
    argv: &[String],
    env: &[(String, String)],
    valid_codes: &[i64],
) -> Result<(), BuildError> {
    try_run_script(ctx, argv, env, valid_codes)
        .await
        .map_err(|e| {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            fail(format!("cannot start {program}: {e}"))
        })?
}

/// [`run_script`], with a program that could not be started told apart
/// (the outer error) from one that ran and failed.
async fn try_run_script(
    ctx: &BuildContext<'_>,
    argv: &[String],
    env: &[(String, String)],
    valid_codes: &[i64],
) -> std::io::Result<Result<(), BuildError>> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(Err(fail("execute_command is empty")));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&ctx.spec.def_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (code, last_stderr) = match super::run_streaming(command, &ctx.events, &ctx.cancel).await? {
        super::Streamed::Exited {
            code, stderr_tail, ..
        } => (i64::from(code), stderr_tail),
        super::Streamed::Cancelled => return Ok(Err(BuildError::Cancelled)),
    };
    if !valid_codes.contains(&code) {
        let what = if code < 0 {
            "was killed by a signal".to_owned()
        } else {
            format!("exited with status {code}")
        };
        let tail = if last_stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", ctx.spec.scrub(&last_stderr.join(" | ")))
        };
        return Ok(Err(fail(format!("script {what}{tail}"))));
    }
    Ok(Ok(()))
}

fn substitute(part: &str, vars: &str, script: &str) -> String {
    static VARS: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*\.Vars\s*\}\}").expect("regex"));
    static SCRIPT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{\{\s*\.(Script|Command|Path)\s*\}\}").expect("regex")
    });
    let part = VARS.replace_all(part, regex::NoExpand(vars));
    SCRIPT
        .replace_all(&part, regex::NoExpand(script))
        .into_owned()
}

fn write_executable(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    super::write_executable(path, bytes).map_err(|e| BuildError::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })
}

/// The private temporary dir for scripts, made on first use and removed
/// when dropped (also on failure).
fn private_dir<'t>(
    ctx: &BuildContext<'_>,
    tmp: &'t mut Option<PrivateTempDir>,
) -> Result<&'t Path, BuildError> {
    if tmp.is_none() {
        *tmp = Some(tempdir_for(ctx)?);
    }
    Ok(tmp.as_ref().expect("just made").path())
}

/// A private temporary dir for the scripts, removed when dropped (also on
/// failure).
fn tempdir_for(ctx: &BuildContext<'_>) -> Result<PrivateTempDir, BuildError> {
    PrivateTempDir::new(&format!("imgform-{}", ctx.spec.addr.slug())).map_err(|e| BuildError::Io {
        context: format!(
            "creating a temporary dir in {}",
            std::env::temp_dir().display()
        ),
        source: e,
    })
}
