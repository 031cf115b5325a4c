//! `component`: runs EC2 Image Builder component documents (AWSTOE) on the
//! machine, through its communicator.
//!
//! ```hcl
//! provisioner "component" {
//!   document   = "components/hello.yml"      # or a list, run in order
//!   parameters = { greeting = "hi" }
//! }
//! ```
//!
//! The document schema (`name`, `description`, `schemaVersion`,
//! `parameters`, `constants`, `phases` → `steps` with `action`, `inputs`,
//! `onFailure`, `maxAttempts`, `timeoutSeconds`, `loop`) and the actions
//! `ExecuteBash`, `ExecuteBinary`, `CreateFile`, `CreateFolder`, `CopyFile`,
//! `MoveFile`, `DeleteFile`, `DeleteFolder`, `SetFilePermissions`,
//! `SetFileOwner`, `Reboot` (skipped with a note: chroots have nothing to
//! reboot, and imgform does not reboot instances mid-build yet),
//! `WebDownload` (http/https, fetched on the machine), `S3Download` and
//! `S3Upload` (by imgform with the AWS SDK, moved through the communicator)
//! and `UpdateOS` (apt/dnf/yum/zypper detected) are supported. Phases
//! `build` and `validate` run during the build. References are substituted
//! as AWSTOE does: parameters, constants, loop variables (`{{ loop.value }}`,
//! `{{ <loop name>.index }}`), and chaining (`{{ phase.step.inputs[N].key }}`,
//! `{{ phase.step.outputs.stdout }}`); a step's `if` decides whether it runs
//! (`condition`). `onFailure: Continue` runs the rest
//! of the phase and then fails the document; `Ignore` goes on.
//!
//! Checking happens before anything runs ([`check_document`]): anything
//! unknown or unimplemented, and any reference AWSTOE would leave as
//! written, is a diagnostic naming the document's file and the step's line.
//!
//! This module is the kind and the runner (documents → phases → steps, with
//! retries, loops and `onFailure`); `document` reads and checks documents,
//! `actions` writes the shell scripts of the actions, and `s3` carries out
//! the S3 actions.

mod actions;
mod condition;
mod document;
mod positions;
#[cfg(feature = "aws")]
mod s3;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use serde_yaml::Value as Yaml;

use super::kind::{self, Provisioner, ProvisionerKind};
use super::{base_dir, provisioner_env, Communicator, Stage};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{input, Schema};
use crate::spec::{ImageSpec, ProvisionerSpec};
pub use document::{check_document, documents, ACTIONS, BUILD_PHASES, PHASES};
use document::{subst_yaml, yaml_str, Iteration, Step};
#[cfg(feature = "aws")]
use s3::s3_action;

/// `component`: EC2 Image Builder component documents. The documents'
/// bytes and the parameters are inputs.
pub static KIND: ProvisionerKind = ProvisionerKind {
    schema: Schema {
        kind: "component",
        attrs: &[
            &[input("document").file(), input("parameters")],
            kind::COMMON,
        ],
        blocks: &[],
    },
    runs_on_host: false,
    // A document's `test` phase runs with the image's tests.
    test_phase: true,
    check: |p| {
        kind::required(
            p,
            "document",
            "document = \"components/hello.yml\" (an EC2 Image Builder component document), or a list of them",
        )
        .into_iter()
        .collect()
    },
    files: |p, _| kind::schema_files(&KIND.schema, p),
    validate,
    provisioner: &Component,
};

struct Component;

impl Provisioner for Component {
    fn run<'a>(
        &'a self,
        ctx: &'a BuildContext<'a>,
        p: &'a ProvisionerSpec,
        comm: &'a dyn Communicator,
        stage: Stage,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        let phases: &[&str] = match stage {
            Stage::Build => BUILD_PHASES,
            Stage::Test => &["test"],
        };
        Box::pin(run(ctx, p, comm, phases))
    }
}

/// The documents parse and use only supported actions and phases (a
/// missing document is reported by the fingerprint, with its place).
fn validate(spec: &ImageSpec, p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let dir = match &p.base_dir {
        Some(d) => spec.def_dir.join(d),
        None => spec.def_dir.clone(),
    };
    let mut diags = Vec::new();
    for document in documents(&p.config) {
        if let Ok(text) = std::fs::read_to_string(dir.join(&document)) {
            if let Err(d) = check_document(&text, Path::new(&document)) {
                diags.extend(d);
            }
        }
    }
    diags
}

fn fail(message: impl Into<String>) -> BuildError {
    BuildError::Provisioner {
        kind: "component".to_owned(),
        message: message.into(),
    }
}

async fn run(
    ctx: &BuildContext<'_>,
    p: &ProvisionerSpec,
    comm: &dyn Communicator,
    phases: &[&str],
) -> Result<(), BuildError> {
    let dir = base_dir(ctx, p);
    let env = provisioner_env(ctx, p)?;
    let given = given_parameters(p);
    for document in documents(&p.config) {
        let doc = document::load(&dir, &document)?;
        let mut run = DocumentRun {
            ctx,
            comm,
            env: &env,
            name: doc
                .get("name")
                .map(yaml_str)
                .unwrap_or_else(|| document.clone()),
            vars: document::variables(&doc, &given)?,
            inputs: step_inputs(&doc),
            outputs: BTreeMap::new(),
            continued: Vec::new(),
        };
        run.phases(&doc, phases).await?;
    }
    Ok(())
}

/// The provisioner's `parameters`, as strings.
fn given_parameters(p: &ProvisionerSpec) -> BTreeMap<String, String> {
    match p.config.get("parameters") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// One document running on the machine: where, with which parameters, and
/// the outputs of its steps so far (`{{ phase.step.outputs.stdout }}`).
struct DocumentRun<'a> {
    ctx: &'a BuildContext<'a>,
    comm: &'a dyn Communicator,
    env: &'a [(String, String)],
    /// The document's `name`, else its file.
    name: String,
    /// Parameters and constants.
    vars: BTreeMap<String, String>,
    /// Every step's inputs as written, by `phase.step`, for chaining.
    inputs: BTreeMap<String, Yaml>,
    outputs: BTreeMap<String, String>,
    /// Steps that failed with `onFailure: Continue`: the rest of their
    /// phase runs, then the document fails, as under AWSTOE.
    continued: Vec<String>,
}

/// Every step's `inputs`, by `phase.step`.
fn step_inputs(doc: &Yaml) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    for phase in doc
        .get("phases")
        .and_then(Yaml::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let phase_name = phase.get("name").map(yaml_str).unwrap_or_default();
        for step in phase
            .get("steps")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(inputs) = step.get("inputs") {
                let name = step.get("name").map(yaml_str).unwrap_or_default();
                out.insert(format!("{phase_name}.{name}"), inputs.clone());
            }
        }
    }
    out
}

impl DocumentRun<'_> {
    /// Runs the steps of the document's phases that are in `phases`, in
    /// document order.
    async fn phases(&mut self, doc: &Yaml, phases: &[&str]) -> Result<(), BuildError> {
        for phase in doc
            .get("phases")
            .and_then(Yaml::as_sequence)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let phase_name = phase.get("name").map(yaml_str).unwrap_or_default();
            if !phases.contains(&phase_name.as_str()) {
                continue;
            }
            self.ctx
                .events
                .step(format!("component {}: phase {phase_name}", self.name));
            for step in phase
                .get("steps")
                .and_then(Yaml::as_sequence)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if self.ctx.cancel.is_cancelled() {
                    return Err(BuildError::Cancelled);
                }
                let parsed = Step::parse(step, &|key| self.resolve(key, &[], &None))?;
                self.step(&phase_name, &parsed).await?;
            }
            if !self.continued.is_empty() {
                return Err(fail(format!(
                    "{}: phase {phase_name} failed (onFailure: Continue ran its other steps): {}",
                    self.name,
                    self.continued.join("; ")
                )));
            }
        }
        Ok(())
    }

    /// Runs a step once per loop pass (stopping at the first failed pass),
    /// records its output, and on failure stops the build unless its
    /// `onFailure` says to go on.
    async fn step(&mut self, phase_name: &str, step: &Step<'_>) -> Result<(), BuildError> {
        let doc_name = &self.name;
        let step_name = &step.name;
        let mut step_stdout = String::new();
        let mut step_failed: Option<String> = None;
        match self.condition(step).await? {
            condition::Then::Execute => {}
            condition::Then::Skip => {
                self.ctx.events.step(format!(
                    "component {doc_name}: {phase_name}/{step_name} skipped (its `if`)"
                ));
                return Ok(());
            }
            condition::Then::Abort => step_failed = Some("its `if` says Abort".to_owned()),
        }
        let passes: &[Iteration] = if step_failed.is_some() {
            &[]
        } else {
            &step.iterations
        };
        for iteration in passes {
            let lookup = |key: &str| self.resolve(key, &step.loop_names, iteration);
            let inputs = step
                .inputs
                .map(|i| subst_yaml(i, &lookup))
                .unwrap_or(Yaml::Null);
            let result = self.attempts(phase_name, step, &inputs).await?;
            step_stdout.push_str(&result.stdout);
            if !result.ok {
                step_failed = Some(result.message);
                break;
            }
        }
        self.outputs.insert(
            format!("{phase_name}.{step_name}.outputs.stdout"),
            step_stdout.trim_end().to_owned(),
        );
        if let Some(message) = step_failed {
            let (on_failure, action) = (&step.on_failure, &step.action);
            match on_failure.as_str() {
                "Ignore" => self.ctx.events.step(format!("component {doc_name}: step {step_name} failed ({message}); onFailure: Ignore, going on")),
                "Continue" => {
                    self.ctx.events.step(format!("component {doc_name}: step {step_name} failed ({message}); onFailure: Continue, running the phase's other steps"));
                    self.continued.push(format!("{phase_name}/{step_name} ({action}) failed: {message}"));
                }
                _ => return Err(fail(format!("{doc_name}: step {phase_name}/{step_name} ({action}) failed: {message}"))),
            }
        }
        Ok(())
    }

    /// What a step's `if` decides: its references resolved, string and
    /// number comparisons decided here, the rest tested on the machine.
    async fn condition(&self, step: &Step<'_>) -> Result<condition::Then, BuildError> {
        let Some(cond) = step.condition else {
            return Ok(condition::Then::Execute);
        };
        let resolved = subst_yaml(cond, &|k| self.resolve(k, &[], &None));
        let (on_true, on_false) = condition::branches(&resolved);
        let test = condition::to_shell(&resolved);
        let code = self
            .comm
            .exec(&test, self.env, &self.ctx.events)
            .await
            .map_err(|e| super::comm_error("component", "", e))?;
        Ok(if code == 0 { on_true } else { on_false })
    }

    /// The value of a reference: a loop variable of the running step, a
    /// parameter or constant, an earlier step's output, or another step's
    /// input (itself resolved).
    fn resolve(&self, key: &str, loop_names: &[String], iteration: &Iteration) -> Option<String> {
        self.resolve_within(key, loop_names, iteration, 0)
    }

    /// [`Self::resolve`], `depth` chained inputs deep (an input that
    /// refers to another step's input is resolved too, up to a limit that
    /// stops a cycle).
    fn resolve_within(
        &self,
        key: &str,
        loop_names: &[String],
        iteration: &Iteration,
        depth: usize,
    ) -> Option<String> {
        if let (Some((index, value)), Some((name, member))) = (iteration, key.split_once('.')) {
            if loop_names.iter().any(|n| n == name) {
                match member {
                    "value" => return Some(value.clone()),
                    "index" => return Some(index.clone()),
                    _ => {}
                }
            }
        }
        if let Some(v) = self.vars.get(key).or_else(|| self.outputs.get(key)) {
            return Some(v.clone());
        }
        let chain = document::chain(key).filter(|c| !c.outputs)?;
        let inputs = self
            .inputs
            .get(&format!("{}.{}", chain.phase, chain.step))?;
        let raw = document::input_value(inputs, chain.index, chain.key)?;
        if depth >= 8 {
            return None;
        }
        Some(document::substitute(&raw, &|k| {
            self.resolve_within(k, &[], &None, depth + 1)
        }))
    }

    /// Runs one pass of a step, again until it succeeds or `maxAttempts`
    /// is reached: the last attempt's result.
    async fn attempts(
        &self,
        phase_name: &str,
        step: &Step<'_>,
        inputs: &Yaml,
    ) -> Result<StepResult, BuildError> {
        let (doc_name, step_name, action) = (&self.name, &step.name, &step.action);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.ctx.events.step(format!(
                "component {doc_name}: {phase_name}/{step_name} ({action}){}",
                if attempt > 1 {
                    format!(", attempt {attempt}")
                } else {
                    String::new()
                }
            ));
            let r = run_step(
                self.ctx,
                self.comm,
                &step.action,
                inputs,
                self.env,
                step.timeout,
            )
            .await?;
            if r.ok || attempt >= step.attempts {
                return Ok(r);
            }
        }
    }
}

/// Carries out one attempt of a step's action: the S3 actions and `Reboot`
/// here, every other action as a script on the machine.
async fn run_step(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    action: &str,
    inputs: &Yaml,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<StepResult, BuildError> {
    let script = match action {
        "S3Download" | "S3Upload" => {
            return match s3_action(ctx, comm, action, inputs).await {
                Ok(()) => Ok(StepResult {
                    ok: true,
                    stdout: String::new(),
                    message: String::new(),
                }),
                Err(BuildError::Cancelled) => Err(BuildError::Cancelled),
                Err(e) => Ok(StepResult {
                    ok: false,
                    stdout: String::new(),
                    message: e.to_string(),
                }),
            };
        }
        "Reboot" => {
            let why = if comm.ssh().is_some() {
                "imgform does not reboot build instances in the middle of a build yet"
            } else {
                "this builder has no machine to reboot (a chroot or a build without an instance)"
            };
            ctx.events.step(format!("component: Reboot skipped: {why}"));
            return Ok(StepResult {
                ok: true,
                stdout: String::new(),
                message: String::new(),
            });
        }
        other => match actions::step_script(other, inputs) {
            Ok(s) => s,
            Err(message) => {
                return Ok(StepResult {
                    ok: false,
                    stdout: String::new(),
                    message,
                })
            }
        },
    };
    let (code, stdout) = exec_capture(ctx, comm, &script, env, timeout).await?;
    Ok(StepResult {
        ok: code == 0,
        message: match code {
            0 => String::new(),
            -2 => format!("timed out after {}s", timeout.as_secs()),
            c => format!("exit status {c}"),
        },
        stdout,
    })
}

/// How one attempt of a step went.
struct StepResult {
    ok: bool,
    stdout: String,
    message: String,
}

/// Runs a command on the machine and captures its stdout (and streams it).
async fn exec_capture(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    script: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(i32, String), BuildError> {
    let out_file = format!(
        "/tmp/imgform-component-{}.out",
        uuid::Uuid::new_v4().simple()
    );
    let wrapped = format!("( {script}\n) > {out_file}; rc=$?; cat {out_file}; exit $rc");
    let run = comm.exec(&wrapped, env, &ctx.events);
    let code = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r.map_err(|e| super::comm_error("component", "", e))?,
        Err(_) => return Ok((-2, String::new())),
    };
    // A private dir: a step's output may show the value of a secret.
    let stdout = match crate::paths::PrivateTempDir::new("imgform-component") {
        Ok(dir) => {
            let local = dir.path().join("stdout");
            match comm.download(&out_file, &local).await {
                Ok(()) => std::fs::read_to_string(&local).unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
        Err(_) => String::new(),
    };
    let _ = comm
        .exec(&format!("rm -f {out_file}"), &[], &ctx.events)
        .await;
    Ok((code, stdout))
}

#[cfg(not(feature = "aws"))]
async fn s3_action(
    _ctx: &BuildContext<'_>,
    _comm: &dyn Communicator,
    action: &str,
    _inputs: &Yaml,
) -> Result<(), BuildError> {
    Err(fail(format!(
        "{action} needs imgform built with the `aws` feature"
    )))
}
