//! `shell`: runs inline commands or scripts on the machine through its
//! communicator, as Packer's shell provisioner does: each script is uploaded
//! to `remote_folder/remote_file` (default `/tmp/script_<n>.sh`) and run with
//! `execute_command` (default `chmod +x {{ .Path }}; {{ .Vars }} {{ .Path }}`),
//! then removed unless `skip_clean`.

use serde_json::Value;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::{base_dir, format_env_vars, provisioner_env, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, setting, AttrSpec, Schema};
use crate::spec::ProvisionerSpec;

/// `shell`: runs inline commands or scripts on the machine. Everything that
/// decides what runs is an input; where the script is staged is not.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "shell",
        attrs: &[
            SHELL_COMMON,
            &[
                setting("remote_folder"),
                setting("remote_file"),
                setting("remote_path"),
                setting("skip_clean"),
                setting("expect_disconnect").ignored(
                    "a script that drops the connection fails the build; reboot in the last provisioner, or let the builder's shutdown do it",
                ),
                setting("start_retry_timeout")
                    .ignored("a script that cannot start fails at once; use max_retries to retry the provisioner"),
                setting("pause_after"),
            ],
            kind::COMMON,
        ],
        blocks: &[],
    },
    runs_on_host: false,
    test_phase: false,
    check: |p| {
        let mut diags = check_what_runs(p);
        diags.extend(kind::duration(p, "pause_after"));
        diags
    },
    files: |p, _| kind::schema_files(&KIND.schema, p),
    validate: kind::no_validate,
    provisioner: &Shell,
};

/// What `shell` and `shell-local` share: what to run and with which
/// environment.
pub const SHELL_COMMON: &[AttrSpec] = &[
    input("inline").list(),
    input("script").string().file(),
    input("scripts").list().file(),
    input("environment_vars").list(),
    input("env"),
    input("execute_command"),
    input("inline_shebang"),
    input("valid_exit_codes").list(),
    input("binary").ignored("imgform runs every script with execute_command"),
    setting("env_var_format")
        .ignored("environment_vars are exported in front of the command as NAME='value'"),
    setting("use_env_var_file")
        .ignored("environment_vars are exported in front of the command as NAME='value'"),
];

/// Exactly one way to say what runs: `inline`, `script`, `scripts` (or
/// `command`, for `shell-local`).
pub fn check_what_runs(p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let ways: Vec<&str> = ["inline", "script", "scripts", "command"]
        .into_iter()
        .filter(|k| p.config.contains_key(*k))
        .collect();
    let kind = &p.kind;
    let loc = Some(p.loc.clone());
    match ways.len() {
        0 => {
            vec![Diagnostic::error(format!("provisioner \"{kind}\" has nothing to run"))
            .at(loc)
            .hint("set one of inline = [\"...\"], script = \"path\" or scripts = [\"a\", \"b\"]")]
        }
        1 => Vec::new(),
        _ => vec![Diagnostic::error(format!(
            "provisioner \"{kind}\" sets {} together",
            ways.join(" and ")
        ))
        .at(loc)
        .hint("use only one of inline, script, scripts (and command for shell-local)")],
    }
}

struct Shell;

impl Provisioner for Shell {
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

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "shell".to_owned(),
        message: message.into(),
    }
}

pub const DEFAULT_EXECUTE_COMMAND: &str = "chmod +x {{ .Path }}; {{ .Vars }} {{ .Path }}";

/// Substitutes Packer's template variables in an execute_command.
pub fn render_execute_command(template: &str, vars: &str, path: &str) -> String {
    static VARS: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*\.Vars\s*\}\}").expect("regex"));
    static PATH: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\{\{\s*\.Path\s*\}\}").expect("regex"));
    let s = VARS.replace_all(template, regex::NoExpand(vars));
    PATH.replace_all(&s, regex::NoExpand(path)).into_owned()
}

async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
) -> Result<(), BuildError> {
    let env = provisioner_env(ctx, p)?;
    let dir = base_dir(ctx, p);
    let tmp = crate::paths::PrivateTempDir::new("imgform-shell").map_err(|e| BuildError::Io {
        context: "creating a temporary dir for the scripts".to_owned(),
        source: e,
    })?;
    let mut scripts: Vec<(std::path::PathBuf, String)> = Vec::new();
    let inline = p.strings("inline");
    if !inline.is_empty() {
        let shebang = p.str("inline_shebang").unwrap_or("/bin/sh -e");
        let path = tmp.path().join("inline.sh");
        // Private (0700): the commands hold the values of secrets.
        super::write_executable(
            &path,
            format!("#!{shebang}\n{}\n", inline.join("\n")).as_bytes(),
        )
        .map_err(|e| fail(format!("writing inline script: {e}")))?;
        scripts.push((path, "inline".to_owned()));
    }
    let mut sources: Vec<String> = p
        .str("script")
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default();
    sources.extend(p.strings("scripts"));
    for s in sources {
        scripts.push((dir.join(&s), s));
    }

    let folder = p
        .settings
        .get("remote_folder")
        .and_then(Value::as_str)
        .unwrap_or("/tmp")
        .trim_end_matches('/')
        .to_owned();
    let template = p
        .str("execute_command")
        .unwrap_or(DEFAULT_EXECUTE_COMMAND)
        .to_owned();
    let valid: Vec<i64> = match p.config.get("valid_exit_codes") {
        Some(Value::Array(v)) => v.iter().filter_map(Value::as_i64).collect(),
        _ => vec![0],
    };
    let skip_clean = p
        .settings
        .get("skip_clean")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let vars = format_env_vars(&env);

    for (index, (local, shown)) in scripts.iter().enumerate() {
        let remote = match (
            p.settings.get("remote_path").and_then(Value::as_str),
            p.settings.get("remote_file").and_then(Value::as_str),
        ) {
            (Some(path), _) if scripts.len() == 1 => path.to_owned(),
            (_, Some(file)) if scripts.len() == 1 => format!("{folder}/{file}"),
            _ => format!("{folder}/script_{}_{index}.sh", std::process::id()),
        };
        ctx.events.step(format!("shell: running {shown}"));
        comm.upload(local, &remote).await.map_err(|e| {
            super::comm_error("shell", &format!("uploading {shown} to {remote}: "), e)
        })?;
        // As Packer: the script is made executable whatever its local mode,
        // so an execute_command without `chmod +x` (the sudo forms) works.
        let chmod = comm
            .exec(&format!("chmod 0755 '{remote}'"), &[], &ctx.events)
            .await
            .map_err(|e| super::comm_error("shell", "", e))?;
        if chmod != 0 {
            return Err(fail(format!(
                "chmod 0755 {remote} exited with status {chmod}"
            )));
        }
        let command = render_execute_command(&template, &vars, &remote);
        let code = comm
            .exec(&command, &env, &ctx.events)
            .await
            .map_err(|e| super::comm_error("shell", "", e))?;
        if !skip_clean {
            let _ = comm
                .exec(&format!("rm -f '{remote}'"), &[], &ctx.events)
                .await;
        }
        if !valid.contains(&i64::from(code)) {
            return Err(fail(format!("{shown} exited with status {code}")));
        }
    }
    drop(tmp);
    if let Some(pause) = p
        .settings
        .get("pause_after")
        .and_then(Value::as_str)
        .and_then(crate::spec::parse_duration)
    {
        ctx.events.step(format!(
            "shell: pausing {}s after the scripts (pause_after)",
            pause.as_secs_f64()
        ));
        let mut cancel = ctx.cancel.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(BuildError::Cancelled),
        }
    }
    Ok(())
}
