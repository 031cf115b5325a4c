//! The `ssh` communicator (russh): commands, uploads and downloads on a
//! machine reached over SSH, directly or through a bastion host.
//!
//! Host keys are always checked. A host the user configured (`ssh_host` on a
//! `null` source, every bastion) must be known: `ssh_host_key_fingerprint`,
//! `ssh_known_hosts_file`, or the user's `~/.ssh/known_hosts`. Only a
//! machine the builder itself just launched may be trusted on first use,
//! and then only for this build: the key seen first is pinned and every later
//! connection of the same build must present it.
//!
//! Files move over SFTP (`russh-sftp`); commands run in a session channel
//! with their output streamed line by line into the image's events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use tokio::io::AsyncWriteExt;

use super::{CommError, Communicator};
use crate::build::events::{EventSink, Stream};
use crate::build::{BoxFuture, BuildError};
use crate::spec::ImageSpec;

/// How a host's key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// `SHA256:…` fingerprints (`ssh_host_key_fingerprint`, one or a list).
    Fingerprints(Vec<String>),
    /// A known_hosts file (`ssh_known_hosts_file`, or `~/.ssh/known_hosts`).
    KnownHosts(PathBuf),
    /// A machine this build launched: the first key seen is pinned for the
    /// rest of the build.
    TrustOnFirstUse(Arc<Mutex<Option<PublicKey>>>),
}

#[derive(Clone)]
pub enum SshAuth {
    Key(Arc<PrivateKey>),
    Password(String),
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::Key(k) => write!(f, "Key({})", k.algorithm()),
            SshAuth::Password(_) => f.write_str("Password(..)"),
        }
    }
}

/// One hop: where to connect, as whom, and how to trust it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Tried in order until one succeeds.
    pub auth: Vec<SshAuth>,
    pub host_key: HostKeyPolicy,
    /// Launched by this build (may still be booting: auth failures are retried).
    pub launched: bool,
}

#[derive(Debug, Clone)]
pub struct SshConfig {
    pub target: Endpoint,
    pub bastion: Option<Endpoint>,
    /// How long to keep trying to connect (`ssh_timeout`, default 5m).
    pub timeout: Duration,
    /// The private key file the connection uses, for tools that connect on
    /// their own (Ansible).
    pub key_file: Option<PathBuf>,
    /// The bastion's private key file, likewise.
    pub bastion_key_file: Option<PathBuf>,
}

/// What the builder knows about the machine it launched.
pub struct Launched<'a> {
    /// The address the builder found (public or private IP), used unless
    /// `ssh_host` overrides it.
    pub host: &'a str,
    /// A temporary key the builder registered for this machine.
    pub temporary_key: Option<Arc<PrivateKey>>,
}

fn setting<'a>(spec: &'a ImageSpec, name: &str) -> Option<&'a serde_json::Value> {
    spec.attr(name).filter(|v| !v.is_null())
}

fn setting_str<'a>(spec: &'a ImageSpec, name: &str) -> Option<&'a str> {
    setting(spec, name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// Why a source's `ssh` communicator settings cannot be used: one variant
/// per failure. The message is the `Display`; what to do about it is
/// [`SshConfigError::hint`], data that [`BuildError`] renders (see the
/// `From` below), so no hint is written into a message here.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("communicator \"ssh\" needs ssh_host on this source")]
    NoHost,
    #[error("communicator \"ssh\" needs ssh_username")]
    NoUsername,
    #[error("{setting} must be a port number, not {value}")]
    NotAPort {
        setting: &'static str,
        value: serde_json::Value,
    },
    #[error("cannot read the private key {}: {source}", path.display())]
    UnreadableKey {
        path: PathBuf,
        source: russh::keys::Error,
    },
    /// `what` names the setting and the host (`ssh_host 10.0.0.5`).
    #[error(
        "{what} is a host imgform did not launch, so its host key must be known before connecting"
    )]
    UnknownHostKey { what: String },
    #[error("communicator \"ssh\" has no way to authenticate")]
    NoAuth,
    #[error("ssh_bastion_host needs ssh_bastion_private_key_file or ssh_bastion_password")]
    NoBastionAuth,
    #[error("ssh_timeout = \"{0}\" is not a duration (e.g. \"5m\", \"30s\")")]
    NotADuration(String),
}

impl SshConfigError {
    /// What to do about this failure, when there is more to say than the
    /// message.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SshConfigError::UnknownHostKey { .. } => Some(
                "set ssh_host_key_fingerprint = \"SHA256:...\" (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on that host) or ssh_known_hosts_file = \"path\"",
            ),
            SshConfigError::NoAuth => Some("set ssh_private_key_file or ssh_password"),
            SshConfigError::NoHost
            | SshConfigError::NoUsername
            | SshConfigError::NotAPort { .. }
            | SshConfigError::UnreadableKey { .. }
            | SshConfigError::NoBastionAuth
            | SshConfigError::NotADuration(_) => None,
        }
    }
}

/// A failed build step: the message, with the hint as the build error's own.
impl From<SshConfigError> for BuildError {
    fn from(e: SshConfigError) -> BuildError {
        let failed = BuildError::failed(e.to_string());
        match e.hint() {
            Some(hint) => failed.with_hint(hint),
            None => failed,
        }
    }
}

fn setting_port(spec: &ImageSpec, name: &'static str, default: u16) -> Result<u16, SshConfigError> {
    match setting(spec, name) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| SshConfigError::NotAPort {
                setting: name,
                value: v.clone(),
            }),
    }
}

/// Reads an OpenSSH (or PEM) private key file.
pub fn load_key(path: &Path) -> Result<PrivateKey, SshConfigError> {
    russh::keys::load_secret_key(path, None).map_err(|source| SshConfigError::UnreadableKey {
        path: path.to_owned(),
        source,
    })
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| PathBuf::from(path)),
        None => PathBuf::from(path),
    }
}

fn resolve_path(spec: &ImageSpec, path: &str) -> PathBuf {
    let p = expand_home(path);
    if p.is_absolute() {
        p
    } else {
        spec.def_dir.join(p)
    }
}

/// The host key policy for a configured host: pinned fingerprint, a
/// known_hosts file, or the user's known_hosts when it exists.
fn configured_policy(spec: &ImageSpec, what: &str) -> Result<HostKeyPolicy, SshConfigError> {
    let pinned = spec.attr_strings("ssh_host_key_fingerprint");
    if !pinned.is_empty() {
        return Ok(HostKeyPolicy::Fingerprints(pinned));
    }
    if let Some(file) = setting_str(spec, "ssh_known_hosts_file") {
        return Ok(HostKeyPolicy::KnownHosts(resolve_path(spec, file)));
    }
    let user_file = expand_home("~/.ssh/known_hosts");
    if user_file.is_file() {
        return Ok(HostKeyPolicy::KnownHosts(user_file));
    }
    Err(SshConfigError::UnknownHostKey {
        what: what.to_owned(),
    })
}

impl SshConfig {
    /// The communicator settings of `spec`. `launched` is `Some` for a
    /// machine the builder started (trust on first use is allowed for it);
    /// `None` for a configured host (`null` builder).
    pub fn from_spec(
        spec: &ImageSpec,
        launched: Option<Launched<'_>>,
    ) -> Result<SshConfig, SshConfigError> {
        let fresh = launched.is_some();
        let host = match (setting_str(spec, "ssh_host"), &launched) {
            (Some(h), _) => h.to_owned(),
            (None, Some(l)) => l.host.to_owned(),
            (None, None) => return Err(SshConfigError::NoHost),
        };
        let port = setting_port(spec, "ssh_port", 22)?;
        let user = setting_str(spec, "ssh_username")
            .ok_or(SshConfigError::NoUsername)?
            .to_owned();
        let (auth, key_file) = target_auth(spec, launched.as_ref())?;
        let explicit = !spec.attr_strings("ssh_host_key_fingerprint").is_empty()
            || setting_str(spec, "ssh_known_hosts_file").is_some();
        let host_key = if fresh && !explicit {
            HostKeyPolicy::TrustOnFirstUse(Arc::new(Mutex::new(None)))
        } else {
            configured_policy(spec, &format!("ssh_host {host}"))?
        };
        let (bastion, bastion_key_file) = bastion(spec, &user)?;
        Ok(SshConfig {
            target: Endpoint {
                host,
                port,
                user,
                auth,
                host_key,
                launched: fresh,
            },
            bastion,
            timeout: connect_timeout(spec)?,
            key_file,
            bastion_key_file,
        })
    }
}

/// How to log in to the target, in order: `ssh_private_key_file` (else the
/// builder's temporary key), then `ssh_password`; and the key's file.
fn target_auth(
    spec: &ImageSpec,
    launched: Option<&Launched<'_>>,
) -> Result<(Vec<SshAuth>, Option<PathBuf>), SshConfigError> {
    let mut auth = Vec::new();
    let mut key_file = None;
    if let Some(file) = setting_str(spec, "ssh_private_key_file") {
        let path = resolve_path(spec, file);
        auth.push(SshAuth::Key(Arc::new(load_key(&path)?)));
        key_file = Some(path);
    } else if let Some(key) = launched.and_then(|l| l.temporary_key.clone()) {
        auth.push(SshAuth::Key(key));
    }
    if let Some(password) = setting_str(spec, "ssh_password") {
        auth.push(SshAuth::Password(password.to_owned()));
    }
    if auth.is_empty() {
        return Err(SshConfigError::NoAuth);
    }
    Ok((auth, key_file))
}

/// The bastion hop (`ssh_bastion_host`), if any, and its private key file.
fn bastion(
    spec: &ImageSpec,
    user: &str,
) -> Result<(Option<Endpoint>, Option<PathBuf>), SshConfigError> {
    let Some(bhost) = setting_str(spec, "ssh_bastion_host") else {
        return Ok((None, None));
    };
    let mut bastion_key_file = None;
    let mut bauth = Vec::new();
    if let Some(file) = setting_str(spec, "ssh_bastion_private_key_file") {
        let path = resolve_path(spec, file);
        bauth.push(SshAuth::Key(Arc::new(load_key(&path)?)));
        bastion_key_file = Some(path);
    }
    if let Some(password) = setting_str(spec, "ssh_bastion_password") {
        bauth.push(SshAuth::Password(password.to_owned()));
    }
    if bauth.is_empty() {
        return Err(SshConfigError::NoBastionAuth);
    }
    let endpoint = Endpoint {
        host: bhost.to_owned(),
        port: setting_port(spec, "ssh_bastion_port", 22)?,
        user: setting_str(spec, "ssh_bastion_username")
            .unwrap_or(user)
            .to_owned(),
        auth: bauth,
        host_key: configured_policy(spec, &format!("ssh_bastion_host {bhost}"))?,
        launched: false,
    };
    Ok((Some(endpoint), bastion_key_file))
}

/// `ssh_timeout` (or `ssh_wait_timeout`), 5 minutes unless set.
fn connect_timeout(spec: &ImageSpec) -> Result<Duration, SshConfigError> {
    match setting_str(spec, "ssh_timeout").or_else(|| setting_str(spec, "ssh_wait_timeout")) {
        Some(t) => {
            crate::spec::parse_duration(t).ok_or_else(|| SshConfigError::NotADuration(t.to_owned()))
        }
        None => Ok(Duration::from_secs(300)),
    }
}

/// Why a host key was refused, kept by the handler for the error message.
type Refusal = Arc<Mutex<Option<String>>>;

struct Client {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    refusal: Refusal,
    /// The key that passed the check.
    accepted: Arc<Mutex<Option<PublicKey>>>,
}

fn fingerprint_matches(key: &PublicKey, wanted: &str) -> bool {
    let sha = key.fingerprint(HashAlg::Sha256).to_string();
    let wanted = wanted.trim();
    sha == wanted || sha.strip_prefix("SHA256:") == Some(wanted)
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key: PublicKey = match presented {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::from(cert.public_key().clone())
            }
        };
        let key = &key;
        let seen = key.fingerprint(HashAlg::Sha256).to_string();
        let verdict: Result<(), String> = match &self.policy {
            HostKeyPolicy::Fingerprints(list) => {
                if list.iter().any(|f| fingerprint_matches(key, f)) {
                    Ok(())
                } else {
                    Err(format!(
                        "host key of {}:{} is {seen}, not the configured ssh_host_key_fingerprint {}",
                        self.host,
                        self.port,
                        list.join(", ")
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "{}:{} is not in {} (its host key is {seen})",
                        self.host,
                        self.port,
                        path.display()
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                        "HOST KEY MISMATCH for {}:{}: {} line {line} has another key (this host presents {seen})",
                        self.host,
                        self.port,
                        path.display()
                    )),
                    Err(e) => Err(format!("reading {}: {e}", path.display())),
                }
            }
            HostKeyPolicy::TrustOnFirstUse(pinned) => {
                let mut pinned = pinned.lock().expect("host key lock");
                match pinned.as_ref() {
                    None => {
                        *pinned = Some(key.clone());
                        Ok(())
                    }
                    Some(first) if first.key_data() == key.key_data() => Ok(()),
                    Some(first) => Err(format!(
                        "HOST KEY CHANGED for {}:{} during this build: first {}, now {seen}",
                        self.host,
                        self.port,
                        first.fingerprint(HashAlg::Sha256)
                    )),
                }
            }
        };
        match verdict {
            Ok(()) => {
                *self.accepted.lock().expect("accepted lock") = Some(key.clone());
                Ok(true)
            }
            Err(why) => {
                *self.refusal.lock().expect("refusal lock") = Some(why);
                Ok(false)
            }
        }
    }
}

/// A connection failure: retrying may help (refused, reset, auth not yet
/// set up by cloud-init) or not (host key refused).
enum ConnectError {
    Retry(String),
    Fatal(String),
}

fn russh_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 8,
        ..Default::default()
    })
}

async fn handshake<S>(
    endpoint: &Endpoint,
    stream: S,
) -> Result<(client::Handle<Client>, PublicKey), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut handle, accepted) = open_session(endpoint, stream).await?;
    authenticate(&mut handle, endpoint).await?;
    let key = accepted
        .lock()
        .expect("accepted lock")
        .take()
        .expect("a host key was checked during the handshake");
    Ok((handle, key))
}

/// Opens an SSH session on `stream`, checking the host key against the
/// endpoint's policy; returns it with where the key that passed is kept.
async fn open_session<S>(
    endpoint: &Endpoint,
    stream: S,
) -> Result<(client::Handle<Client>, Arc<Mutex<Option<PublicKey>>>), ConnectError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let refusal: Refusal = Arc::new(Mutex::new(None));
    let accepted = Arc::new(Mutex::new(None));
    let handler = Client {
        host: endpoint.host.clone(),
        port: endpoint.port,
        policy: endpoint.host_key.clone(),
        refusal: refusal.clone(),
        accepted: accepted.clone(),
    };
    match client::connect_stream(russh_config(), stream, handler).await {
        Ok(handle) => Ok((handle, accepted)),
        Err(e) => {
            if let Some(why) = refusal.lock().expect("refusal lock").take() {
                return Err(ConnectError::Fatal(why));
            }
            Err(ConnectError::Retry(format!(
                "SSH handshake with {}:{}: {e}",
                endpoint.host, endpoint.port
            )))
        }
    }
}

/// Logs in with each of the endpoint's methods in turn until one succeeds.
async fn authenticate(
    handle: &mut client::Handle<Client>,
    endpoint: &Endpoint,
) -> Result<(), ConnectError> {
    let mut tried = Vec::new();
    for auth in &endpoint.auth {
        let result = match auth {
            SshAuth::Key(key) => {
                tried.push("public key");
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten();
                handle
                    .authenticate_publickey(
                        endpoint.user.clone(),
                        PrivateKeyWithHashAlg::new(key.clone(), hash),
                    )
                    .await
            }
            SshAuth::Password(password) => {
                tried.push("password");
                handle
                    .authenticate_password(endpoint.user.clone(), password.clone())
                    .await
            }
        };
        match result {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(ConnectError::Retry(format!(
                    "SSH authentication with {}:{}: {e}",
                    endpoint.host, endpoint.port
                )))
            }
        }
    }
    let refused = format!(
        "{}@{}:{} refused the {} authentication",
        endpoint.user,
        endpoint.host,
        endpoint.port,
        tried.join(" and ")
    );
    // A machine that is still booting may not have its key installed yet
    // (cloud-init); a configured machine will not change its mind.
    if endpoint.launched {
        Err(ConnectError::Retry(refused))
    } else {
        Err(ConnectError::Fatal(refused))
    }
}

/// The target's connection and host key, and the bastion's connection.
type Connected = (
    client::Handle<Client>,
    PublicKey,
    Option<(client::Handle<Client>, PublicKey)>,
);

async fn connect_once(config: &SshConfig) -> Result<Connected, ConnectError> {
    let tcp = |host: String, port: u16| async move {
        let stream = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| ConnectError::Retry(format!("connecting to {host}:{port}: timed out")))?
        .map_err(|e| ConnectError::Retry(format!("connecting to {host}:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok::<_, ConnectError>(stream)
    };
    match &config.bastion {
        None => {
            let stream = tcp(config.target.host.clone(), config.target.port).await?;
            let (handle, key) = handshake(&config.target, stream).await?;
            Ok((handle, key, None))
        }
        Some(bastion) => {
            let stream = tcp(bastion.host.clone(), bastion.port).await?;
            let (jump, jump_key) = handshake(bastion, stream).await?;
            let channel = jump
                .channel_open_direct_tcpip(
                    config.target.host.clone(),
                    u32::from(config.target.port),
                    "127.0.0.1",
                    0,
                )
                .await
                .map_err(|e| {
                    ConnectError::Retry(format!(
                        "bastion {}: forwarding to {}:{}: {e}",
                        bastion.host, config.target.host, config.target.port
                    ))
                })?;
            let (handle, key) = handshake(&config.target, channel.into_stream()).await?;
            Ok((handle, key, Some((jump, jump_key))))
        }
    }
}

/// An open SSH connection to the machine being provisioned.
pub struct SshCommunicator {
    handle: client::Handle<Client>,
    /// Kept open while the target is reached through it.
    _bastion: Option<client::Handle<Client>>,
    sftp: tokio::sync::Mutex<Option<SftpSession>>,
    pub config: SshConfig,
    /// The target's host key, as checked when connecting.
    pub host_key: PublicKey,
    /// The bastion's, likewise.
    pub bastion_host_key: Option<PublicKey>,
}

impl SshCommunicator {
    /// Connects, retrying with backoff until `config.timeout` (the machine
    /// may still be booting). A refused host key fails at once.
    pub async fn connect(
        config: SshConfig,
        events: &EventSink,
    ) -> Result<SshCommunicator, CommError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(250);
        let mut attempts = 0u32;
        events.step(format!(
            "waiting for SSH on {}@{}:{}{}",
            config.target.user,
            config.target.host,
            config.target.port,
            config
                .bastion
                .as_ref()
                .map(|b| format!(" via bastion {}:{}", b.host, b.port))
                .unwrap_or_default()
        ));
        loop {
            attempts += 1;
            match connect_once(&config).await {
                Ok((handle, host_key, bastion)) => {
                    events.step(format!(
                        "connected over SSH after {:.1}s ({attempts} attempt{})",
                        start.elapsed().as_secs_f64(),
                        if attempts == 1 { "" } else { "s" }
                    ));
                    return Ok(SshCommunicator {
                        handle,
                        bastion_host_key: bastion.as_ref().map(|(_, k)| k.clone()),
                        _bastion: bastion.map(|(h, _)| h),
                        sftp: tokio::sync::Mutex::new(None),
                        config,
                        host_key,
                    });
                }
                Err(ConnectError::Fatal(why)) => return Err(CommError::Failed(why)),
                Err(ConnectError::Retry(why)) => {
                    if start.elapsed() + delay > config.timeout {
                        return Err(CommError::Failed(format!(
                            "timed out after {}s waiting for SSH ({attempts} attempts); last error: {why}",
                            config.timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn sftp(&self) -> Result<tokio::sync::MutexGuard<'_, Option<SftpSession>>, CommError> {
        let mut guard = self.sftp.lock().await;
        if guard.is_none() {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| CommError::Failed(format!("opening an SFTP channel: {e}")))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| CommError::Failed(format!("starting the sftp subsystem: {e}")))?;
            let session = SftpSession::new(channel.into_stream())
                .await
                .map_err(|e| CommError::SftpStart(e.to_string()))?;
            *guard = Some(session);
        }
        Ok(guard)
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        if let Some(sftp) = self.sftp.lock().await.take() {
            let _ = sftp.close().await;
        }
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Splits streamed bytes into lines for the events.
struct LineSplitter {
    buf: Vec<u8>,
    stream: Stream,
}

impl LineSplitter {
    fn push(&mut self, data: &[u8], events: &EventSink) {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            events.output(self.stream, text.trim_end_matches('\r'));
        }
    }

    fn finish(&mut self, events: &EventSink) {
        if !self.buf.is_empty() {
            events.output(self.stream, String::from_utf8_lossy(&self.buf));
            self.buf.clear();
        }
    }
}

async fn write_remote_file(
    sftp: &SftpSession,
    local: &Path,
    remote: &str,
) -> Result<(), CommError> {
    // Streamed: a large file never sits in memory whole.
    let mut source = tokio::fs::File::open(local)
        .await
        .map_err(|e| CommError::Failed(format!("reading {}: {e}", local.display())))?;
    let mut file = sftp
        .create(remote.to_owned())
        .await
        .map_err(|e| CommError::Failed(format!("creating {remote}: {e}")))?;
    tokio::io::copy(&mut source, &mut file)
        .await
        .map_err(|e| CommError::Failed(format!("writing {remote}: {e}")))?;
    file.shutdown()
        .await
        .map_err(|e| CommError::Failed(format!("writing {remote}: {e}")))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(local)
            .map_err(|e| CommError::Failed(format!("reading {}: {e}", local.display())))?
            .permissions(),
    ) & 0o7777;
    let attrs = russh_sftp::protocol::FileAttributes {
        permissions: Some(mode),
        ..Default::default()
    };
    sftp.set_metadata(remote.to_owned(), attrs)
        .await
        .map_err(|e| CommError::Failed(format!("setting the mode of {remote}: {e}")))?;
    Ok(())
}

async fn ensure_dir(sftp: &SftpSession, remote: &str) -> Result<(), CommError> {
    if sftp.try_exists(remote.to_owned()).await.unwrap_or(false) {
        return Ok(());
    }
    // Create each missing ancestor, shallowest first.
    let mut path = String::new();
    for part in remote.split('/').filter(|p| !p.is_empty()) {
        if remote.starts_with('/') || !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        if !sftp.try_exists(path.clone()).await.unwrap_or(false) {
            sftp.create_dir(path.clone())
                .await
                .map_err(|e| CommError::Failed(format!("creating directory {path}: {e}")))?;
        }
    }
    Ok(())
}

impl Communicator for SshCommunicator {
    fn exec<'a>(
        &'a self,
        command: &'a str,
        env: &'a [(String, String)],
        events: &'a EventSink,
    ) -> BoxFuture<'a, Result<i32, CommError>> {
        Box::pin(async move {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| CommError::Failed(format!("opening an SSH session: {e}")))?;
            // Environment goes into the command itself: most sshd configs
            // refuse `env` requests (AcceptEnv), as Packer found too.
            let mut full = String::new();
            for (k, v) in env {
                full.push_str(&format!("export {k}={}; ", shell_quote(v)));
            }
            full.push_str(command);
            channel
                .exec(true, full)
                .await
                .map_err(|e| CommError::Failed(format!("running a command over SSH: {e}")))?;
            let mut out = LineSplitter {
                buf: Vec::new(),
                stream: Stream::Stdout,
            };
            let mut err = LineSplitter {
                buf: Vec::new(),
                stream: Stream::Stderr,
            };
            let mut status: Option<i32> = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.push(&data, events),
                    ChannelMsg::ExtendedData { data, ext: 1 } => err.push(&data, events),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(i32::try_from(exit_status).unwrap_or(255))
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        events.output(
                            Stream::Stderr,
                            format!("remote command killed by signal {signal_name:?}"),
                        );
                        status = Some(128 + 15);
                    }
                    _ => {}
                }
            }
            out.finish(events);
            err.finish(events);
            status.ok_or_else(|| {
                CommError::Failed(
                    "the SSH connection closed before the command reported an exit status"
                        .to_owned(),
                )
            })
        })
    }

    fn upload<'a>(
        &'a self,
        local: &'a Path,
        remote: &'a str,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async move {
            let guard = self.sftp().await?;
            let sftp = guard.as_ref().expect("sftp session");
            if local.is_dir() {
                ensure_dir(sftp, remote).await?;
                let base = remote.trim_end_matches('/');
                for entry in walkdir::WalkDir::new(local)
                    .min_depth(1)
                    .sort_by_file_name()
                {
                    let entry = entry.map_err(|e| {
                        CommError::Failed(format!("reading {}: {e}", local.display()))
                    })?;
                    let rel = entry
                        .path()
                        .strip_prefix(local)
                        .expect("walkdir stays below its root")
                        .to_string_lossy()
                        .into_owned();
                    let target = format!("{base}/{rel}");
                    if entry.file_type().is_dir() {
                        ensure_dir(sftp, &target).await?;
                    } else if entry.file_type().is_symlink() {
                        let to = std::fs::read_link(entry.path()).map_err(|e| {
                            CommError::Failed(format!("reading {}: {e}", entry.path().display()))
                        })?;
                        let _ = sftp.remove_file(target.clone()).await;
                        sftp.symlink(target.clone(), to.to_string_lossy().into_owned())
                            .await
                            .map_err(|e| {
                                CommError::Failed(format!("creating symlink {target}: {e}"))
                            })?;
                    } else {
                        write_remote_file(sftp, entry.path(), &target).await?;
                    }
                }
                Ok(())
            } else {
                if let Some((parent, _)) = remote.rsplit_once('/') {
                    if !parent.is_empty() {
                        ensure_dir(sftp, parent).await?;
                    }
                }
                write_remote_file(sftp, local, remote).await
            }
        })
    }

    fn download<'a>(
        &'a self,
        remote: &'a str,
        local: &'a Path,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async move {
            let guard = self.sftp().await?;
            let sftp = guard.as_ref().expect("sftp session");
            let bytes = sftp
                .read(remote.to_owned())
                .await
                .map_err(|e| CommError::Failed(format!("reading {remote}: {e}")))?;
            if let Some(parent) = local.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    CommError::Failed(format!("creating {}: {e}", parent.display()))
                })?;
            }
            std::fs::write(local, bytes)
                .map_err(|e| CommError::Failed(format!("writing {}: {e}", local.display())))
        })
    }

    fn host_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "IMGFORM_SSH_HOST".to_owned(),
                self.config.target.host.clone(),
            ),
            (
                "IMGFORM_SSH_PORT".to_owned(),
                self.config.target.port.to_string(),
            ),
            (
                "IMGFORM_SSH_USER".to_owned(),
                self.config.target.user.clone(),
            ),
        ]
    }

    fn ssh(&self) -> Option<&SshCommunicator> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hints are data now; users still read the text they read when the
    /// hints were written into the messages.
    #[test]
    fn config_errors_read_as_before_with_their_hints_on_their_own_line() {
        let shown = |e: SshConfigError| BuildError::from(e).to_string();
        assert_eq!(
            shown(SshConfigError::UnknownHostKey {
                what: "ssh_host 10.0.0.5".to_owned()
            }),
            "ssh_host 10.0.0.5 is a host imgform did not launch, so its host key must be known before connecting\n  hint: set ssh_host_key_fingerprint = \"SHA256:...\" (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on that host) or ssh_known_hosts_file = \"path\""
        );
        assert_eq!(
            shown(SshConfigError::NoAuth),
            "communicator \"ssh\" has no way to authenticate\n  hint: set ssh_private_key_file or ssh_password"
        );
        assert_eq!(
            shown(SshConfigError::NoBastionAuth),
            "ssh_bastion_host needs ssh_bastion_private_key_file or ssh_bastion_password"
        );
        assert_eq!(
            shown(SshConfigError::NotAPort {
                setting: "ssh_port",
                value: serde_json::json!("ssh"),
            }),
            "ssh_port must be a port number, not \"ssh\""
        );
        assert_eq!(
            shown(SshConfigError::NotADuration("soon".to_owned())),
            "ssh_timeout = \"soon\" is not a duration (e.g. \"5m\", \"30s\")"
        );
    }

    #[test]
    fn an_sftp_start_failure_reads_as_before_with_its_hint() {
        assert_eq!(
            CommError::SftpStart("channel closed".to_owned()).to_string(),
            "starting SFTP: channel closed\n  hint: the server needs an sftp subsystem (Subsystem sftp internal-sftp in sshd_config)"
        );
    }
}
