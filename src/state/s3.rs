//! State kept in an S3 bucket: [`S3Backend`], the remote twin of
//! [`LocalBackend`](super::LocalBackend), for teams and pipelines.
//!
//! Layout under `key_prefix` (default `imgform`), the same as the local
//! backend's `state/` dir:
//!
//! ```text
//! <prefix>/<target-slug>.json       one StateFile per target
//! <prefix>/<target-slug>.json.bak   the version before the last write
//! <prefix>/objects/<2 hex>/<62 hex> content-addressed objects
//! <prefix>/.lock                    JSON LockInfo while a run holds the lock
//! ```
//!
//! Invariants (the local backend's, enforced by the server instead of the
//! filesystem):
//! - The lock is created with `PutObject` + `If-None-Match: *` (as Terraform's
//!   `use_lockfile`): S3 refuses the write with `412 Precondition Failed` when
//!   the object exists, so at most one holder exists. It is removed with
//!   `DeleteObject` + `If-Match: <etag of the lock we read>`, so a lock taken
//!   since we looked is never removed by mistake.
//! - A state object is replaced with `PutObject` + `If-Match: <etag it had
//!   when we read it>` (or `If-None-Match: *` when there was none): a save
//!   racing another writer fails instead of overwriting, whatever the lock.
//!   The `.bak` copy is written after the new state, so a failed save never
//!   touches it.
//! - `serial` grows by one per write, only when contents change; a save whose
//!   lineage or serial does not match what is stored is refused.
//! - Objects are named by the sha256 of their bytes and re-checked on read.
//! - Writes are batched: a write is a request (and a read of the state
//!   before it), so an apply writes the state at most [`S3_WRITE_DELAY`]
//!   after an image is recorded (with every image recorded since) and at
//!   its end, not once per image. A crash (SIGKILL, power loss) loses the
//!   records of the images finished in the last `S3_WRITE_DELAY`; their
//!   artifacts exist and are tagged, so `imgform state recover` adopts them.
//!   Objects (manifests, text inputs) are written at once.
//!
//! The [`StateBackend`] trait is synchronous; the SDK is async. The backend
//! owns a small tokio runtime and runs each request on it: directly when the
//! caller is outside any runtime, and from a scoped helper thread when the
//! caller is itself inside a runtime (imgform's commands run in
//! `Runtime::block_on`), where blocking on another runtime would panic.
//!
//! Credentials come from the standard AWS chain (environment, profile, web
//! identity, ECS/EC2 metadata); nothing secret is stored here.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};

use super::model::StateFile;
use super::store::{
    decode_state, same_contents, to_json_bytes, unreadable_lock_id, Decode, LockInfo, StateBackend,
    StateError,
};
use crate::addr::TargetAddr;
use crate::aws::AwsSettings;

/// The longest an apply holds back the write of a recorded image: what a
/// crash can lose.
pub const S3_WRITE_DELAY: Duration = Duration::from_secs(2);

/// Where the state lives on S3 and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty puts the state at the
    /// bucket's root.
    pub key_prefix: String,
    /// Default: the standard chain (`AWS_REGION`, the profile), else
    /// `us-east-1`.
    pub region: Option<String>,
    /// A custom endpoint (MinIO, moto, …); path-style addressing is used then.
    pub endpoint: Option<String>,
    /// A named profile from the shared AWS config files.
    pub profile: Option<String>,
}

/// The default `key_prefix`.
pub const DEFAULT_KEY_PREFIX: &str = "imgform";

const LOCK_KEY: &str = ".lock";
const OBJECTS_DIR: &str = "objects";
const BACKUP_SUFFIX: &str = ".bak";
/// First and longest pause between attempts to take a held lock; longer than
/// the local backend's, as each attempt is a request.
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(200);
const LOCK_RETRY_MAX: Duration = Duration::from_secs(2);

pub struct S3Backend {
    settings: S3Settings,
    client: Client,
    /// Always `Some` until drop (taken there to shut it down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    /// The release of the lock this process holds, run if it is
    /// interrupted (SIGINT, SIGTERM); registered as the lock is taken.
    on_interrupt: std::sync::Mutex<Option<crate::interrupt::Registration>>,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One stored object as read: its bytes and ETag.
struct Fetched {
    bytes: Vec<u8>,
    etag: Option<String>,
}

/// How a conditional write ended.
enum Written {
    Done,
    /// `412 Precondition Failed` (or `409 ConditionalRequestConflict`): the
    /// object is not as the condition said.
    ConditionFailed,
}

impl S3Backend {
    /// Resolves credentials and region and builds the client. Does not touch
    /// the bucket: a wrong bucket or endpoint shows up on first use.
    pub fn new(settings: S3Settings) -> Result<S3Backend, StateError> {
        if settings.bucket.trim().is_empty() {
            return Err(StateError::BackendConfig {
                message: "the s3 backend needs a bucket: set `bucket` in the backend \"s3\" block or pass --backend-config bucket=NAME".to_owned(),
            });
        }
        let mut settings = settings;
        settings.key_prefix = settings.key_prefix.trim_matches('/').to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("imgform-s3")
            .enable_all()
            .build()
            .map_err(|e| StateError::BackendConfig {
                message: format!("cannot start the runtime for the s3 backend: {e}"),
            })?;
        let client = run_on(&runtime, client_for(&settings));
        Ok(S3Backend {
            settings,
            client,
            runtime: Some(runtime),
            on_interrupt: std::sync::Mutex::default(),
        })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// Runs one SDK future to completion from sync code.
    fn run<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        run_on(
            self.runtime.as_ref().expect("runtime lives until drop"),
            future,
        )
    }

    fn key(&self, rel: &str) -> String {
        if self.settings.key_prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.settings.key_prefix)
        }
    }

    /// `s3://bucket/key`, for messages.
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    fn state_key(&self, target: &str) -> Result<String, StateError> {
        let slug = TargetAddr(target.to_owned()).slug();
        if slug.is_empty() || slug.starts_with('.') {
            return Err(StateError::InvalidTarget {
                target: target.to_owned(),
            });
        }
        Ok(self.key(&format!("{slug}.json")))
    }

    fn object_key(&self, hex: &str) -> String {
        self.key(&format!("{OBJECTS_DIR}/{}/{}", &hex[..2], &hex[2..]))
    }

    fn remote_error<E>(&self, action: &'static str, key: &str, error: SdkError<E>) -> StateError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StateError::Remote {
            action,
            location: self.location(key),
            message: DisplayErrorContext(&error).to_string(),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Fetched>, StateError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(key);
        self.run(async move {
            let output = match request.send().await {
                Ok(output) => output,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None)
                }
                Err(e) => return Err(self.remote_error("read", key, e)),
            };
            let etag = output.e_tag().map(str::to_owned);
            let bytes = output
                .body
                .collect()
                .await
                .map_err(|e| StateError::Remote {
                    action: "read",
                    location: self.location(key),
                    message: e.to_string(),
                })?
                .into_bytes()
                .to_vec();
            Ok(Some(Fetched { bytes, etag }))
        })
    }

    /// `PutObject`, optionally conditional: `if_match` an ETag, or
    /// `if_none_match` `*`.
    fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        if_match: Option<&str>,
        if_none_match: bool,
    ) -> Result<Written, StateError> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes));
        if let Some(etag) = if_match {
            request = request.if_match(etag);
        }
        if if_none_match {
            request = request.if_none_match("*");
        }
        self.run(async move {
            match request.send().await {
                Ok(_) => Ok(Written::Done),
                Err(e) if condition_failed(&e) => Ok(Written::ConditionFailed),
                Err(e) => Err(self.remote_error("write", key, e)),
            }
        })
    }

    /// Reads and decodes a state object. `None` if it does not exist.
    fn read_state(&self, key: &str) -> Result<Option<(Fetched, StateFile)>, StateError> {
        let Some(fetched) = self.get(key)? else {
            return Ok(None);
        };
        let path = PathBuf::from(self.location(key));
        match decode_state(&fetched.bytes) {
            Ok(state) => Ok(Some((fetched, state))),
            Err(Decode::Unsupported(found)) => Err(StateError::UnsupportedVersion { path, found }),
            Err(Decode::Corrupt(message)) => Err(StateError::Corrupt {
                path,
                message: format!(
                    "{message}; the previous version may be kept in {}{BACKUP_SUFFIX}",
                    self.location(key)
                ),
            }),
        }
    }

    /// Keys directly under the prefix (not in `objects/`), sorted.
    fn list_top_level(&self) -> Result<Vec<String>, StateError> {
        let prefix = self.key("");
        let prefix_key = if prefix.is_empty() { "" } else { &prefix };
        self.run(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let output = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.settings.bucket)
                    .prefix(prefix_key)
                    .delimiter("/")
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| self.remote_error("list", prefix_key, e))?;
                keys.extend(
                    output
                        .contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match output.next_continuation_token() {
                    Some(next) if output.is_truncated().unwrap_or(false) => {
                        token = Some(next.to_owned())
                    }
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    /// The lock object and its ETag, if any.
    fn read_lock(&self) -> Result<Option<(LockInfo, Option<String>)>, StateError> {
        let key = self.key(LOCK_KEY);
        let Some(fetched) = self.get(&key)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&fetched.bytes) {
            Ok(info) => Ok(Some((info, fetched.etag))),
            Err(e) => Err(StateError::Corrupt {
                message: format!(
                    "{e}; if no imgform is running on this state, remove it with \
                     `imgform force-unlock {}`",
                    unreadable_lock_id(&fetched.bytes)
                ),
                path: PathBuf::from(self.location(&key)),
            }),
        }
    }

    /// `force-unlock` of a lock object that cannot be read (empty, cut
    /// short, not JSON): named by a digest of its bytes, as in the local
    /// backend, and deleted only if it still has the bytes (ETag) read.
    fn remove_unreadable_lock(&self, id: &str) -> Result<(), StateError> {
        let key = self.key(LOCK_KEY);
        let fetched = self.get(&key)?.ok_or(StateError::NotLocked)?;
        let unreadable = unreadable_lock_id(&fetched.bytes);
        if unreadable != id {
            return Err(StateError::Corrupt {
                message: format!(
                    "it cannot be read, so its lock ID is {unreadable}, not {id}; \
                     if no imgform is running on this state, remove it with \
                     `imgform force-unlock {unreadable}`"
                ),
                path: PathBuf::from(self.location(&key)),
            });
        }
        self.delete_lock(id, fetched.etag)
    }

    /// Removes the lock if `id` names it; shared by `unlock` and `force_unlock`.
    fn remove_lock(&self, id: &str) -> Result<(), StateError> {
        let (holder, etag) = self.read_lock()?.ok_or(StateError::NotLocked)?;
        if holder.id != id {
            return Err(StateError::LockIdMismatch {
                given: id.to_owned(),
                holder: Box::new(holder),
            });
        }
        self.delete_lock(id, etag)
    }

    /// Deletes the lock object `id` named, if it still has `etag` (the
    /// bytes read); one replaced since is named in the error.
    fn delete_lock(&self, id: &str, etag: Option<String>) -> Result<(), StateError> {
        let key = self.key(LOCK_KEY);
        let request = self
            .client
            .delete_object()
            .bucket(&self.settings.bucket)
            .key(&key)
            .set_if_match(etag);
        let deleted = self.run(async {
            match request.send().await {
                Ok(_) => Ok(true),
                Err(e) if condition_failed(&e) => Ok(false),
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    Err(StateError::NotLocked)
                }
                Err(e) => Err(self.remote_error("remove", &key, e)),
            }
        })?;
        if deleted {
            return Ok(());
        }
        // Replaced between our read and the delete: name whoever holds it now.
        match self.read_lock()? {
            Some((holder, _)) => Err(StateError::LockIdMismatch {
                given: id.to_owned(),
                holder: Box::new(holder),
            }),
            None => Err(StateError::NotLocked),
        }
    }
}

impl StateBackend for S3Backend {
    fn targets(&self) -> Result<Vec<String>, StateError> {
        Ok(self.load_all()?.into_iter().map(|s| s.target).collect())
    }

    fn load_all(&self) -> Result<Vec<StateFile>, StateError> {
        let prefix = self.key("");
        let mut states = Vec::new();
        for key in self.list_top_level()? {
            let name = key.strip_prefix(&prefix).unwrap_or(&key);
            // Hidden names are the lock; `.json.bak` does not end in `.json`.
            let Some(stem) = Some(name)
                .filter(|n| !n.starts_with('.') && !n.contains('/'))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            // Gone since listing.
            let Some((_, state)) = self.read_state(&key)? else {
                continue;
            };
            let expected_stem = TargetAddr(state.target.clone()).slug();
            if expected_stem != stem {
                return Err(StateError::Corrupt {
                    path: PathBuf::from(self.location(&key)),
                    message: format!(
                        "it holds target `{}`, whose state object is {expected_stem}.json; \
                         move it back or remove it",
                        state.target
                    ),
                });
            }
            states.push(state);
        }
        states.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(states)
    }

    fn load(&self, target: &str) -> Result<StateFile, StateError> {
        let key = self.state_key(target)?;
        match self.read_state(&key)? {
            None => Ok(StateFile::new(target)),
            Some((_, state)) if state.target != target => Err(StateError::WrongTarget {
                path: PathBuf::from(self.location(&key)),
                expected: target.to_owned(),
                found: state.target,
            }),
            Some((_, state)) => Ok(state),
        }
    }

    fn save(&self, state: &mut StateFile) -> Result<bool, StateError> {
        let key = self.state_key(&state.target)?;
        let path = PathBuf::from(self.location(&key));
        let stored = self.read_state(&key)?;
        if let Some((_, stored)) = &stored {
            check_stored(&path, stored, state)?;
            if same_contents(stored, state) {
                return Ok(false);
            }
        }

        let mut next = state.clone();
        next.serial = state.serial + 1;
        let bytes = to_json_bytes(&next);
        let written = match &stored {
            Some((fetched, _)) => self.put(&key, bytes, fetched.etag.as_deref(), false)?,
            None => self.put(&key, bytes, None, true)?,
        };
        if let Written::ConditionFailed = written {
            // Someone wrote between our read and our write: say who won.
            return match self.read_state(&key)? {
                Some((_, now)) => {
                    check_stored(&path, &now, state)?;
                    Err(StateError::SerialConflict {
                        path,
                        stored: now.serial,
                        given: state.serial,
                    })
                }
                None => Err(StateError::Remote {
                    action: "write",
                    location: self.location(&key),
                    message: "the object changed while it was being written; try again".to_owned(),
                }),
            };
        }
        if let Some((fetched, _)) = stored {
            let backup = format!("{key}{BACKUP_SUFFIX}");
            self.put(&backup, fetched.bytes, None, false)?;
        }
        // Only now: a failed write leaves the caller's state matching the store.
        state.serial = next.serial;
        Ok(true)
    }

    fn write_delay(&self) -> Duration {
        S3_WRITE_DELAY
    }

    fn put_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let key = self.object_key(&hex);
        if let Some(existing) = self.get(&key)? {
            // Already stored (and intact): objects are immutable, so done.
            if hex::encode(Sha256::digest(&existing.bytes)) == hex {
                return Ok(hex);
            }
        }
        self.put(&key, bytes.to_vec(), None, false)?;
        Ok(hex)
    }

    fn get_object(&self, hex: &str) -> Result<Option<Vec<u8>>, StateError> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(StateError::InvalidObjectId { id: hex.to_owned() });
        }
        let key = self.object_key(hex);
        let Some(fetched) = self.get(&key)? else {
            return Ok(None);
        };
        let actual = hex::encode(Sha256::digest(&fetched.bytes));
        if actual != hex {
            return Err(StateError::Corrupt {
                path: PathBuf::from(self.location(&key)),
                message: format!(
                    "its contents hash to {actual}, not to the name it is stored under; \
                     delete it and it will be stored again by the next apply"
                ),
            });
        }
        Ok(Some(fetched.bytes))
    }

    fn lock(&self, info: &LockInfo, timeout: Duration) -> Result<(), StateError> {
        let key = self.key(LOCK_KEY);
        let deadline = Instant::now() + timeout;
        let mut pause = LOCK_RETRY_FIRST;
        loop {
            let attempt = crate::interrupt::taking();
            if let Written::Done = self.put(&key, to_json_bytes(info), None, true)? {
                let release = crate::interrupt::on_interrupt(self.unlock_on_interrupt(&info.id));
                *self.on_interrupt.lock().expect("lock registration") = Some(release);
                drop(attempt);
                // Interrupted meanwhile: released already; never go on.
                crate::interrupt::park_if_stopping();
                return Ok(());
            }
            drop(attempt);
            let holder = match self.read_lock()? {
                Some((holder, _)) => holder,
                // Released between our attempt and the read: try again now.
                None => continue,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(StateError::Locked {
                    holder: Box::new(holder),
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(LOCK_RETRY_MAX);
        }
    }

    fn unlock(&self, id: &str) -> Result<(), StateError> {
        self.on_interrupt.lock().expect("lock registration").take();
        self.remove_lock(id)
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        // The same check as `unlock`, as in the local backend and Terraform;
        // a lock that cannot be read is named by a digest of its bytes.
        match self.read_lock() {
            Err(StateError::Corrupt { .. }) => self.remove_unreadable_lock(id),
            _ => self.remove_lock(id),
        }
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.read_lock()?.map(|(info, _)| info))
    }

    fn unlock_on_interrupt(&self, id: &str) -> Box<dyn FnOnce() + Send> {
        let (client, bucket, key) = (
            self.client.clone(),
            self.settings.bucket.clone(),
            self.key(LOCK_KEY),
        );
        let runtime = self
            .runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
            .clone();
        let id = id.to_owned();
        Box::new(move || {
            // This backend's runtime has a worker thread of its own, so a
            // plain thread can block on it whatever the main thread does
            // (and the caller may be inside a runtime, where it cannot).
            let release = move || {
                runtime.block_on(async move {
                    let Ok(lock) = client.get_object().bucket(&bucket).key(&key).send().await
                    else {
                        return;
                    };
                    let etag = lock.e_tag().map(str::to_owned);
                    let Ok(body) = lock.body.collect().await else {
                        return;
                    };
                    let ours = serde_json::from_slice::<LockInfo>(&body.into_bytes())
                        .is_ok_and(|holder| holder.id == id);
                    if ours {
                        let _ = client
                            .delete_object()
                            .bucket(&bucket)
                            .key(&key)
                            .set_if_match(etag)
                            .send()
                            .await;
                    }
                })
            };
            let _ = std::thread::spawn(release).join();
        })
    }
}

/// The refusals `save` shares with the local backend.
fn check_stored(
    path: &std::path::Path,
    stored: &StateFile,
    state: &StateFile,
) -> Result<(), StateError> {
    if stored.target != state.target {
        return Err(StateError::WrongTarget {
            path: path.to_owned(),
            expected: state.target.clone(),
            found: stored.target.clone(),
        });
    }
    if stored.lineage != state.lineage {
        return Err(StateError::LineageMismatch {
            path: path.to_owned(),
            stored: stored.lineage.clone(),
            given: state.lineage.clone(),
        });
    }
    if stored.serial != state.serial {
        return Err(StateError::SerialConflict {
            path: path.to_owned(),
            stored: stored.serial,
            given: state.serial,
        });
    }
    Ok(())
}

/// `412 Precondition Failed`, or S3's `409 ConditionalRequestConflict` (a
/// concurrent conditional write to the same key won).
fn condition_failed<E>(error: &SdkError<E>) -> bool {
    error
        .raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 409 | 412))
}

/// Runs `future` on `runtime` from sync code, wherever that code runs.
fn run_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    // Inside a runtime `block_on` would panic; a plain thread may block.
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The client for `settings`: the standard chain with their region and
/// profile on top, path-style at a custom endpoint (see [`crate::aws`]).
async fn client_for(settings: &S3Settings) -> Client {
    let aws = AwsSettings {
        region: settings.region.clone(),
        profile: settings.profile.clone(),
        credentials: None,
        max_retries: None,
    };
    crate::aws::s3_client(&aws, settings.endpoint.as_deref()).await
}
