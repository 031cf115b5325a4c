//! What the cloud builders (`amazon-ebs`, `openstack`) share: reading
//! attribute values, polling a cloud with backoff, the record of temporary
//! resources, and the SSH phase on a machine the build launched.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::build::{BuildContext, BuildError};
pub use crate::drivers::kind::loc_of;
use crate::provision::ssh::{Launched, SshCommunicator, SshConfig};
use crate::provision::{self, Communicator, NoCommunicator, Stage};
use crate::spec::ImageSpec;
use crate::state::Artifact;

pub fn failed(message: impl Into<String>) -> BuildError {
    BuildError::failed(message)
}

pub use crate::spec::scalar;

/// `communicator`, `ssh` unless set.
pub fn communicator(spec: &ImageSpec) -> &str {
    spec.attr_str("communicator").unwrap_or("ssh")
}

/// The first 8 characters of the run id, for resource names (tags and
/// properties carry the whole id).
pub fn short_run(run_id: &str) -> &str {
    &run_id[..run_id.len().min(8)]
}

/// Polls `check` with backoff (`first` doubling to 5 s) until it returns
/// `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(
    first: Duration,
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, BuildError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BuildError>>,
{
    let start = Instant::now();
    let mut delay = first;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(failed(format!(
                "timed out after {}s waiting for {what}",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A build's temporary resources, shared between the build and its cleanup
/// (the build future may be dropped on Ctrl-C; the record survives it).
pub type Shared<T> = Arc<Mutex<T>>;

/// Changes the record of temporaries.
pub fn note<X, T>(temps: &Shared<X>, f: impl FnOnce(&mut X) -> T) -> T {
    f(&mut temps.lock().expect("temporaries lock"))
}

/// The communicator checks both cloud builders make: `ssh` needs a user
/// (and a key pair name needs its private key); `none` runs only host-side
/// provisioners; nothing else is supported. `machine` names what the build
/// launches ("instance", "server"), `user_example` hints a login user.
pub fn validate_communicator(
    spec: &ImageSpec,
    machine: &str,
    user_example: &str,
) -> Vec<crate::diag::Diagnostic> {
    use crate::diag::Diagnostic;
    let mut diags = Vec::new();
    match communicator(spec) {
        "ssh" => {
            if spec.attr_str("ssh_username").is_none() {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: {} with communicator \"ssh\" needs ssh_username",
                        spec.addr, spec.builder
                    ))
                    .at(loc_of(spec, "ssh_username"))
                    .hint(format!(
                        "the login user of the source image, e.g. {user_example}"
                    )),
                );
            }
            if spec.attr_str("ssh_keypair_name").is_some()
                && spec.attr_str("ssh_private_key_file").is_none()
            {
                diags.push(
                    Diagnostic::error(format!(
                        "{}: ssh_keypair_name needs ssh_private_key_file",
                        spec.addr
                    ))
                    .at(loc_of(spec, "ssh_keypair_name"))
                    .hint("the private key of that key pair, to log in with"),
                );
            }
        }
        "none" => {
            for p in spec.provisioners.iter().chain(&spec.tests) {
                if !provision::runs_on_host(&p.kind) {
                    diags.push(
                        Diagnostic::error(format!(
                            "provisioner \"{}\" needs a connection to the {machine}, but this source has communicator = \"none\"",
                            p.kind
                        ))
                        .at(Some(p.loc.clone()))
                        .hint("remove communicator = \"none\" (SSH is the default)"),
                    );
                }
            }
        }
        other => diags.push(
            Diagnostic::error(format!(
                "{}: communicator \"{other}\" is not supported by imgform's {} builder",
                spec.addr, spec.builder
            ))
            .at(loc_of(spec, "communicator"))
            .hint("use communicator = \"ssh\" (the default) or \"none\""),
        ),
    }
    diags
}

/// A build's record of temporary resources.
pub trait Temporaries: Default + Send {
    /// Each resource, for the `--on-error=abort` message.
    fn describe(&self) -> Vec<String>;
}

/// Runs a build (stopped by Ctrl-C), then hands its temporaries to
/// `cleanup` — unless the build failed and `--on-error=abort` asks to keep
/// them (they are listed then). Cleanup's errors are said: as a warning
/// after a good build, added to the error of a failed one.
pub async fn run_then_clean_up<X, C, CF>(
    ctx: &BuildContext<'_>,
    temps: &Shared<X>,
    run: impl std::future::Future<Output = Result<Artifact, BuildError>>,
    cleanup: C,
) -> Result<Artifact, BuildError>
where
    X: Temporaries,
    C: FnOnce(X, bool) -> CF,
    CF: std::future::Future<Output = Vec<String>>,
{
    let mut cancel = ctx.cancel.clone();
    let result = tokio::select! {
        r = run => r,
        _ = cancel.cancelled() => Err(BuildError::Cancelled),
    };
    let temps = std::mem::take(&mut *temps.lock().expect("temporaries lock"));
    let kept = temps.describe();
    if result.is_err() && ctx.keep_on_error && !kept.is_empty() {
        ctx.events.step(format!(
            "--on-error=abort: kept {} (delete them yourself when done)",
            kept.join(", ")
        ));
        return result;
    }
    let errors = cleanup(temps, result.is_err()).await;
    match result {
        Ok(artifact) if !errors.is_empty() => {
            // The image is good; say loudly what could not be removed.
            ctx.events.step(format!(
                "warning: could not delete every temporary resource: {}",
                errors.join("; ")
            ));
            Ok(artifact)
        }
        Err(e) if !errors.is_empty() => Err(failed(format!(
            "{e}; cleanup also failed: {}",
            errors.join("; ")
        ))),
        other => other,
    }
}

/// Runs the provisioners of `stage` on a machine the build launched, at
/// `host` (`ssh_host` overrides it): over SSH, trusting the new machine's
/// host key on first use, or with no connection for `communicator = "none"`.
pub async fn provision_launched(
    ctx: &BuildContext<'_>,
    what: &str,
    host: Option<String>,
    temporary_key: Option<Arc<russh::keys::PrivateKey>>,
    stage: Stage,
) -> Result<(), BuildError> {
    if communicator(ctx.spec) == "none" {
        return run_stage(ctx, &NoCommunicator, stage).await;
    }
    let host = host.unwrap_or_default();
    if host.is_empty() && ctx.spec.attr_str("ssh_host").is_none() {
        return Err(failed(format!("{what} has no address to connect to")));
    }
    if let Some(pause) = ctx
        .spec
        .attr_str("pause_before_connecting")
        .and_then(crate::spec::parse_duration)
    {
        tokio::time::sleep(pause).await;
    }
    let config = SshConfig::from_spec(
        ctx.spec,
        Some(Launched {
            host: &host,
            temporary_key,
        }),
    )?;
    let ssh = SshCommunicator::connect(config, &ctx.events)
        .await
        .map_err(|e| failed(format!("SSH: {e}")))?;
    let result = run_stage(ctx, &ssh, stage).await;
    ssh.close().await;
    result
}

async fn run_stage(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    stage: Stage,
) -> Result<(), BuildError> {
    match stage {
        Stage::Build => provision::run_all(ctx, comm).await,
        Stage::Test => provision::run_tests(ctx, comm).await,
    }
}
