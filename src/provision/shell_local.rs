//! `shell-local`: runs commands on the machine running imgform, in the
//! definition dir, as Packer's shell-local does: `inline` lines (or a single
//! `command`) are written to a temporary script starting with
//! `inline_shebang`; `script`/`scripts` are copied to temporary executable
//! files; each runs through `execute_command` (default
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
    let tmp = tempdir_for(ctx)?;
    let scripts = write_scripts(ctx, p, &tmp)?;
    let valid_codes: Vec<i64> = match p.config.get("valid_exit_codes") {
        Some(Value::Array(codes)) => codes.iter().filter_map(Value::as_i64).collect(),
        _ => vec![0],
    };
    let template = execute_command(p);
    let vars = format_env_vars(&env);
    for script in &scripts {
        let script_str = script.to_string_lossy();
        let argv: Vec<String> = template
            .iter()
            .map(|part| substitute(part, &vars, &script_str))
            .collect();
        run_script(ctx, &argv, &env, &valid_codes).await?;
    }
    Ok(())
}

/// The scripts to run, as executable files in `tmp`: the `inline` lines (or
/// `command`) under `inline_shebang`, then copies of `script` and `scripts`.
fn write_scripts(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    tmp: &PrivateTempDir,
) -> Result<Vec<PathBuf>, BuildError> {
    let mut scripts: Vec<PathBuf> = Vec::new();
    let shebang = p.str("inline_shebang").unwrap_or("/bin/sh -e");
    let inline: Vec<String> = match p.str("command") {
        Some(command) => vec![command.to_owned()],
        None => p.strings("inline"),
    };
    if !inline.is_empty() {
        let path = tmp.path().join("inline.sh");
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
        let from = super::base_dir(ctx, p).join(source);
        let bytes =
            std::fs::read(&from).map_err(|e| fail(format!("cannot read script {source}: {e}")))?;
        let name = Path::new(source)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        let path = tmp.path().join(format!("{i}-{name}"));
        write_executable(&path, &bytes)?;
        scripts.push(path);
    }
    Ok(scripts)
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
    let Some((program, args)) = argv.split_first() else {
        return Err(fail("execute_command is empty"));
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
    let (code, last_stderr) = match super::run_streaming(command, &ctx.events, &ctx.cancel)
        .await
        .map_err(|e| fail(format!("cannot start {program}: {e}")))?
    {
        super::Streamed::Exited {
            code, stderr_tail, ..
        } => (i64::from(code), stderr_tail),
        super::Streamed::Cancelled => return Err(BuildError::Cancelled),
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
        return Err(fail(format!("script {what}{tail}")));
    }
    Ok(())
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
