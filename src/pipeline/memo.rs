//! The plan cache, `.imgform/cache/plan` in the template folder: the last
//! plan, and what it was made from, so that a plan whose inputs did not
//! change costs a `stat` of each input instead of loading, evaluating and
//! fingerprinting every image again (what `make` or `ninja` do before
//! saying there is nothing to do).
//!
//! A cached plan is reused only when all of these are as they were:
//! - the `imgform` executable (device, inode, size, mtime and ctime) and
//!   the request: template path and current directory (both canonical),
//!   `-var`, `-var-file`, `--replace`, `--target`, `--refresh`;
//! - the whole environment (so `env()`, `PKR_VAR_*`, `HOME` are covered)
//!   but for what a shell changes between identical runs (`PWD`, `OLDPWD`,
//!   `_`: a plan that reads one is not cached);
//! - the `stat` (device, inode, size, mode, mtime and ctime in nanoseconds)
//!   of every file and folder the plan read: definition and variable
//!   files, every input the fingerprints hashed (each folder of an input
//!   tree too, so an added file is seen), module folders (as written and
//!   resolved) and module files, files read by `file()`, `templatefile()`
//!   and the like, paths `fileexists()` looked for (a missing one must
//!   stay missing);
//! - the names in the template folder (but `state` and `.imgform`, which
//!   imgform makes and removes itself), listed before the files are read;
//! - the state: the local state files and journals, listed again and
//!   `stat`ed under the lock.
//!
//! Git's racy-entry rule applies as in the file-hash cache: the cache is
//! trusted only when every `stat` it holds is older, by
//! [`RACY_WINDOW_NS`], than the cache file itself.
//!
//! A plan is cached only when nothing it read escapes a `stat`: no data
//! source, DIB element, secret, base image looked up, `fileset()`,
//! saved plan (`--out`), warning, diff text, remote state; every builder,
//! provisioner and post-processor of a kind whose plan-time checks read
//! only the evaluated image and the hashed inputs ([`BUILDERS`],
//! [`PROVISIONERS`], [`POST_PROCESSORS`]); and, with refresh on, only
//! recorded images whose refresh asks nothing outside ([`REFRESH_FREE`]).
//! Anything else plans in full, as `--no-cache` does. Like the file-hash
//! cache it is never part of the state, a corrupt file is ignored and
//! replaced, and concurrent runs replace it atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Prepared;
use crate::addr::TargetAddr;
use crate::fingerprint::cache::RACY_WINDOW_NS;
use crate::plan::Plan;
use crate::state::{StateBackend, StateFile};
use crate::watch::{FileStat, Watched};

/// The cache file, relative to the template folder.
pub const CACHE_FILE: &str = ".imgform/cache/plan";
/// The first line of the file. The second is `key <hex>`, the third the
/// JSON of what was read ([`Reads`]), the fourth the JSON of the plan: a
/// run whose key differs reads two lines, one whose inputs changed does not
/// parse the plan.
const HEADER: &str = "imgform plan cache 1";

/// Builder kinds whose plan-time checks and resolution read nothing but
/// the evaluated image, the state and the hashed inputs.
pub const BUILDERS: &[&str] = &["null", "amazon-ebs", "openstack"];
/// Provisioner kinds (also test blocks) of which the same holds.
pub const PROVISIONERS: &[&str] = &["shell-local", "shell", "file"];
/// Post-processor kinds of which the same holds.
pub const POST_PROCESSORS: &[&str] = &["checksum", "compress", "shell-local"];
/// Builders whose refresh asks nothing outside (a `null` artifact exists
/// by definition).
pub const REFRESH_FREE: &[&str] = &["null"];

/// What a request is, for the key: everything that shapes a plan apart
/// from the files it reads and the environment.
#[derive(Debug)]
pub struct Request<'a> {
    pub template: &'a Path,
    pub vars: &'a [String],
    pub var_files: &'a [PathBuf],
    pub replace: &'a [String],
    pub selected: &'a [String],
    pub refresh: bool,
}

/// What a cached plan was made from.
#[derive(Debug, Serialize, Deserialize)]
struct Reads {
    /// Every path read, with its `stat` (`None`: it did not exist).
    watched: Vec<(PathBuf, Option<FileStat>)>,
    /// The state's files ([`StateBackend::watch_files`]) and their `stat`.
    state: Vec<(PathBuf, FileStat)>,
    /// Folders whose names were read, with [`crate::watch::listing`].
    listings: Vec<(PathBuf, Option<String>)>,
}

/// A cached plan whose inputs are unchanged; its state is checked by
/// [`Hit::state_unchanged`] once the lock is held.
#[derive(Debug)]
pub struct Hit {
    template_dir: PathBuf,
    state: Vec<(PathBuf, FileStat)>,
    plan: Plan,
}

impl Hit {
    /// The folder of the templates, where the local state is.
    pub fn template_dir(&self) -> &Path {
        &self.template_dir
    }

    /// The plan, if the state is still what it was when the plan was made.
    pub fn state_unchanged(self, backend: &dyn StateBackend) -> Option<Plan> {
        let files = backend.watch_files().ok()??;
        let same = files.len() == self.state.len()
            && files
                .iter()
                .zip(&self.state)
                .all(|(path, (was, stamp))| path == was && FileStat::at(path) == Some(*stamp));
        same.then_some(self.plan)
    }
}

/// The key of a request: the executable, the request, the environment;
/// and the template folder. `None` when the executable or a path cannot
/// be inspected.
fn key(request: &Request) -> Option<(String, PathBuf)> {
    let exe = FileStat::at(&std::env::current_exe().ok()?)?;
    let template = fs::canonicalize(request.template).ok()?;
    let cwd = fs::canonicalize(std::env::current_dir().ok()?).ok()?;
    let mut h = Sha256::new();
    h.update(format!("{HEADER} {}\n", env!("CARGO_PKG_VERSION")));
    // The template as given is left out: `plan` in a folder and `-C DIR
    // plan` elsewhere are the same request once canonical.
    let Request {
        template: _,
        vars,
        var_files,
        replace,
        selected,
        refresh,
    } = request;
    h.update(format!(
        "{exe:?}\n{template:?}\n{cwd:?}\n{vars:?}\n{var_files:?}\n{replace:?}\n{selected:?}\n{refresh}\n"
    ));
    let mut vars: Vec<_> = std::env::vars_os().collect();
    vars.sort();
    for (name, value) in vars {
        if name
            .to_str()
            .is_some_and(|n| crate::watch::UNKEYED_ENV.contains(&n))
        {
            continue;
        }
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    }
    let folder = crate::config::template_folder(&template);
    Some((hex::encode(h.finalize()), folder))
}

/// The cached plan of `request`, if every input it read is unchanged.
pub fn lookup(request: &Request) -> Option<Hit> {
    let (key, template_dir) = key(request)?;
    let path = template_dir.join(CACHE_FILE);
    let file = fs::File::open(&path).ok()?;
    let written_ns = FileStat::of(&file.metadata().ok()?).newest_ns();
    let mut file = BufReader::with_capacity(256 * 1024, file);
    let mut line = String::new();
    file.read_line(&mut line).ok()?;
    if line.trim_end() != HEADER {
        return None;
    }
    line.clear();
    file.read_line(&mut line).ok()?;
    if line.trim_end().strip_prefix("key ") != Some(key.as_str()) {
        return None;
    }
    line.clear();
    file.read_line(&mut line).ok()?;
    let reads: Reads = serde_json::from_str(&line).ok()?;
    let newest = reads
        .watched
        .iter()
        .filter_map(|(_, s)| s.as_ref())
        .chain(reads.state.iter().map(|(_, s)| s))
        .map(FileStat::newest_ns)
        .max()
        .unwrap_or(i64::MIN);
    if newest.saturating_add(RACY_WINDOW_NS) >= written_ns
        || !all_unchanged(&reads.watched)
        || reads
            .listings
            .iter()
            .any(|(dir, names)| crate::watch::listing(dir) != *names)
    {
        return None;
    }
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).ok()?;
    let plan: Plan = serde_json::from_slice(&rest).ok()?;
    Some(Hit {
        template_dir,
        state: reads.state,
        plan,
    })
}

/// Whether every path still has its recorded `stat` (on every core: a
/// large project has thousands).
fn all_unchanged(watched: &[(PathBuf, Option<FileStat>)]) -> bool {
    let threads = crate::threads(8);
    let chunk = watched.len().div_ceil(threads).max(256);
    std::thread::scope(|scope| {
        let parts: Vec<_> = watched
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().all(|(p, s)| FileStat::at(p) == *s)))
            .collect();
        parts.into_iter().all(|h| h.join().unwrap_or(false))
    })
}

/// Why `plan` of `prepared` cannot be cached, if it cannot.
fn uncacheable(
    prepared: &Prepared,
    backend: &dyn StateBackend,
    states: &BTreeMap<TargetAddr, StateFile>,
    plan: &Plan,
    watched: &Watched,
) -> Option<String> {
    let project = &prepared.project;
    if let Some(why) = &watched.untracked {
        return Some(why.clone());
    }
    if !prepared.warnings.is_empty() {
        return Some("the definitions have warnings".into());
    }
    if !project.data.is_empty() || project.has_secrets() || project.backend.is_some() {
        return Some("data sources, secrets or a backend block".into());
    }
    for image in prepared.images.values() {
        let spec = &image.spec;
        let kinds_ok = BUILDERS.contains(&spec.builder.as_str())
            && spec
                .provisioners
                .iter()
                .chain(&spec.tests)
                .all(|p| PROVISIONERS.contains(&p.kind.as_str()))
            && spec
                .post_processors
                .iter()
                .all(|p| POST_PROCESSORS.contains(&p.kind.as_str()));
        if !kinds_ok || !spec.sensitive_values.is_empty() {
            return Some(format!("{}: its kinds", spec.addr));
        }
    }
    if plan.refresh
        && states
            .values()
            .flat_map(|s| s.images.values())
            .any(|r| !REFRESH_FREE.contains(&r.builder.as_str()))
    {
        return Some("refresh asks the targets".into());
    }
    // A journal a crashed run left is folded in by the next apply: that
    // apply must run in full.
    if states
        .values()
        .any(|s| backend.has_leftovers(s).unwrap_or(true))
    {
        return Some("the state has records to fold in".into());
    }
    if plan.changes.iter().any(|c| !c.diff.is_empty()) {
        return Some("the plan shows diffs".into());
    }
    None
}

/// Caches `plan` for `request` if nothing it read escapes a `stat`; call
/// it under the state lock, after the plan. `watched` is what the run
/// recorded ([`crate::watch`]). Failing to write is not an error (it is a
/// cache).
pub fn save(
    request: &Request,
    prepared: &Prepared,
    backend: &dyn StateBackend,
    states: &BTreeMap<TargetAddr, StateFile>,
    plan: &Plan,
    watched: Watched,
) {
    if uncacheable(prepared, backend, states, plan, &watched).is_some() {
        return;
    }
    let Some((key, template_dir)) = key(request) else {
        return;
    };
    if template_dir != prepared.project.template_dir {
        return;
    }
    let Ok(Some(files)) = backend.watch_files() else {
        return;
    };
    let Some(state) = files
        .into_iter()
        .map(|p| FileStat::at(&p).map(|s| (p, s)))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    // Paths are kept absolute, with the `stat` taken as they were read
    // (a change since is a change), else now.
    let listings = watched
        .listings
        .iter()
        .filter_map(|(dir, names)| Some((std::path::absolute(dir).ok()?, names.clone())))
        .collect();
    let watched: Vec<(PathBuf, Option<FileStat>)> = watched
        .paths()
        .into_iter()
        .filter_map(|(p, stamp)| {
            let p = if p.is_absolute() {
                p
            } else {
                std::path::absolute(p).ok()?
            };
            let stamp = stamp.or_else(|| FileStat::at(&p));
            Some((p, stamp))
        })
        .collect();
    let reads = Reads {
        watched,
        state,
        listings,
    };
    let _ = write(&template_dir.join(CACHE_FILE), &key, &reads, plan);
}

/// Writes the cache file (atomically: a temp file renamed over it).
fn write(path: &Path, key: &str, reads: &Reads, plan: &Plan) -> std::io::Result<()> {
    crate::fingerprint::cache::write_replacing_with(path, |out| {
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
        writeln!(out, "{HEADER}\nkey {key}")?;
        serde_json::to_writer(&mut out, reads)?;
        writeln!(out)?;
        serde_json::to_writer(&mut out, plan)?;
        writeln!(out)?;
        out.flush()
    })
}
