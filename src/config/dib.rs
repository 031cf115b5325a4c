//! diskimage-builder element sets as modules: finding elements as
//! `disk-image-create` does, expanding `element-deps` and
//! `element-provides`, and the provisioners that give the elements DIB's
//! build environment and run their phases in DIB's order.
//!
//! Finding: an element is a folder named after it in one of the search
//! folders — the entries of `ELEMENTS_PATH` (as `disk-image-create` reads
//! it) first, then the module's `source` folders in order; the first folder
//! holding it wins. `source = "diskimage-builder"` names the `elements`
//! folder of the installed diskimage-builder package (found through
//! `DIB_PYTHON_EXEC`, the interpreter of `disk-image-create` on `PATH`, or
//! `python3`).
//!
//! Expanding follows DIB's rules: dependencies of every requested element,
//! transitively; a name some element lists in `element-provides` is
//! virtual and satisfied by that element; two elements providing one name,
//! or a requested element that another provides, are errors. `vm` without
//! a `block-device-*` element gets `block-device-mbr`.
//!
//! Running ([`phase_provisioners`]): every element's folder is merged into
//! `/tmp/in_target.d` in the image (the hooks dir; DIB's `TMP_HOOKS_PATH`,
//! `$TARGET_ROOT/tmp/in_target.d` on the host), so elements find each
//! other's `bin/`, `static/`, `init-scripts/` there as under DIB. Each phase
//! runs like `dib-run-parts`: `environment.d` files sourced in `sort -n`
//! order under `set -eu`, then the phase's executable files whose names
//! match `[0-9A-Za-z_-]+`, in `sort -n` order. Host phases (`root.d`,
//! `extra-data.d`, `post-root.d`, `pre-finalise.d`, `cleanup.d`) run on this
//! machine with `TARGET_ROOT`/`TMP_MOUNT_PATH` set to the image's root (the
//! chroot builder gives them); the others run inside the image. While the
//! elements run the image resolves names with this machine's
//! `/etc/resolv.conf`; its own is put back afterwards, as DIB does.
//!
//! The disk elements (`vm`, `block-device-*`, `bootloader`) do not run:
//! imgform makes the disk itself ([`disk_settings`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::parse::{RawAttr, RawBlock};
use crate::diag::SourceLoc;
use crate::provision::{file, shell, shell_local};

/// The hooks dir inside the image, as under `disk-image-create`.
pub const HOOKS: &str = "/tmp/in_target.d";

/// DIB phases in order; `true` = runs inside the image.
pub const PHASES: &[(&str, bool)] = &[
    ("root.d", false),
    ("extra-data.d", false),
    ("pre-install.d", true),
    ("install.d", true),
    ("post-install.d", true),
    ("post-root.d", false),
    ("pre-finalise.d", false),
    ("finalise.d", true),
    ("cleanup.d", false),
];

/// Folders (and files) that mark a folder as an element.
pub const MARKERS: &[&str] = &[
    "element-deps",
    "element-provides",
    "install.d",
    "pre-install.d",
    "post-install.d",
    "finalise.d",
    "environment.d",
    "root.d",
    "extra-data.d",
    "post-root.d",
    "pre-finalise.d",
    "cleanup.d",
];

/// The diskimage-builder elements that describe the disk (its partitions
/// and bootloader): imgform makes that disk itself, so their scripts do not
/// run; [`disk_settings`] turns them into the builder's settings.
pub const DISK_ELEMENTS: &[&str] = &[
    "vm",
    "block-device-mbr",
    "block-device-gpt",
    "block-device-efi",
    "bootloader",
];

/// What `source = "diskimage-builder"` names.
pub const INSTALLED: &str = "diskimage-builder";

/// One element of an expanded set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// Canonical path.
    pub dir: PathBuf,
}

/// Why an element set cannot be expanded: one message and hint each.
#[derive(Debug)]
pub struct SetError {
    pub message: String,
    pub hint: String,
}

/// The folders elements are looked up in, in order.
#[derive(Debug, Default)]
pub struct SearchPath {
    pub dirs: Vec<PathBuf>,
}

impl SearchPath {
    /// The folder of element `name`: the first search folder holding it.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_dir())
            .and_then(|p| std::fs::canonicalize(p).ok())
    }

    /// Every element name in the search folders, for hints.
    pub fn names(&self) -> BTreeSet<String> {
        self.dirs
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// `ELEMENTS_PATH` of this process's environment, as folders (relative
/// entries against the current directory, as `disk-image-create` reads
/// them); `Err` names an entry that is no folder.
pub fn elements_path_env() -> Result<Vec<PathBuf>, String> {
    std::env::var("ELEMENTS_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|s| !s.is_empty())
        .map(|entry| match std::fs::canonicalize(entry) {
            Ok(dir) if dir.is_dir() => Ok(dir),
            _ => Err(entry.to_owned()),
        })
        .collect()
}

/// The `elements` folder of the installed diskimage-builder package.
pub fn installed_elements() -> Result<PathBuf, String> {
    let mut pythons: Vec<String> = Vec::new();
    if let Ok(p) = std::env::var("DIB_PYTHON_EXEC") {
        if !p.is_empty() {
            pythons.push(p);
        }
    }
    if let Some(p) = disk_image_create_python() {
        pythons.push(p);
    }
    pythons.push("python3".to_owned());
    let mut tried = Vec::new();
    for python in pythons {
        let out = std::process::Command::new(&python)
            .args([
                "-c",
                "import diskimage_builder.paths as p; print(p.get_path('elements'))",
            ])
            .stderr(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
                if dir.is_dir() {
                    return Ok(dir);
                }
            }
            _ => {}
        }
        tried.push(python);
    }
    Err(tried.join(", "))
}

/// The interpreter named by the `#!` line of `disk-image-create` on `PATH`.
fn disk_image_create_python() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let script = std::env::split_paths(&path)
        .map(|d| d.join("disk-image-create"))
        .find(|p| p.is_file())?;
    let text = std::fs::read(&script).ok()?;
    let first = text.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(first);
    let interpreter = line.strip_prefix("#!")?.split_whitespace().next()?;
    Some(interpreter.to_owned())
}

fn read_list(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The elements `requested` need, dependencies first, as DIB expands them
/// (see the module doc).
pub fn expand(requested: &[String], search: &SearchPath) -> Result<Vec<Element>, Vec<SetError>> {
    let mut requested: Vec<String> = requested.to_vec();
    let vm = requested.iter().any(|n| n == "vm");
    if vm && !requested.iter().any(|n| n.starts_with("block-device-")) {
        requested.push("block-device-mbr".to_owned());
    }
    let mut errors = Vec::new();
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut provided_by: BTreeMap<String, String> = BTreeMap::new();
    // Breadth-first, as DIB: a name becomes virtual as soon as some element
    // reached so far provides it.
    let mut queue: std::collections::VecDeque<(String, Option<String>)> =
        requested.iter().map(|n| (n.clone(), None)).collect();
    let mut missing: Vec<(String, Option<String>)> = Vec::new();
    while let Some((name, needed_by)) = queue.pop_front() {
        if found.contains_key(&name) {
            continue;
        }
        let Some(dir) = search.find(&name) else {
            missing.push((name, needed_by));
            continue;
        };
        for provide in read_list(&dir.join("element-provides")) {
            if let Some(other) = provided_by.get(&provide) {
                errors.push(SetError {
                    message: format!("elements {other} and {name} both provide `{provide}`"),
                    hint: "use only one of them".to_owned(),
                });
            }
            provided_by.insert(provide, name.clone());
        }
        for dep in read_list(&dir.join("element-deps")) {
            queue.push_back((dep, Some(name.clone())));
        }
        found.insert(name, dir);
    }
    for (name, needed_by) in missing {
        if provided_by.contains_key(&name) {
            continue;
        }
        let hint = match crate::diag::closest(&name, search.names().iter().map(String::as_str)) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "elements are folders of {} (ELEMENTS_PATH, then the module's source), or a name another element lists in element-provides",
                search
                    .dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        errors.push(SetError {
            message: match needed_by {
                Some(by) => format!(
                    "element {by} depends on `{name}`, which is no element here and which no element of the set provides"
                ),
                None => format!("no element `{name}`"),
            },
            hint,
        });
    }
    for name in &requested {
        if let Some(by) = provided_by.get(name) {
            errors.push(SetError {
                message: format!("element `{name}` is already provided by {by}"),
                hint: format!("leave `{name}` out of elements"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Dependencies first, then by request order.
    let mut ordered: Vec<Element> = Vec::new();
    let mut visiting = BTreeSet::new();
    for name in &requested {
        order(name, &found, &mut visiting, &mut ordered);
    }
    Ok(ordered)
}

fn order(
    name: &str,
    found: &BTreeMap<String, PathBuf>,
    visiting: &mut BTreeSet<String>,
    out: &mut Vec<Element>,
) {
    let Some(dir) = found.get(name) else { return };
    if out.iter().any(|e| e.name == name) || !visiting.insert(name.to_owned()) {
        return;
    }
    for dep in read_list(&dir.join("element-deps")) {
        order(&dep, found, visiting, out);
    }
    out.push(Element {
        name: name.to_owned(),
        dir: dir.clone(),
    });
}

/// Two elements with a hook of one name in one phase: DIB refuses to merge
/// them. Returns (phase, file, first element, second element).
pub fn duplicate_hooks(elements: &[Element]) -> Vec<(String, String, String, String)> {
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut out = Vec::new();
    for e in elements {
        let Ok(dirs) = std::fs::read_dir(&e.dir) else {
            continue;
        };
        let mut subs: Vec<PathBuf> = dirs
            .flatten()
            .map(|d| d.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        for sub in subs {
            let sub_name = sub
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if sub_name == "tests" || sub_name == "__pycache__" {
                continue;
            }
            let mut files: Vec<String> = std::fs::read_dir(&sub)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|f| f.path().is_file())
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            for f in files {
                match seen.get(&(sub_name.clone(), f.clone())) {
                    Some(first) => out.push((sub_name.clone(), f, first.clone(), e.name.clone())),
                    None => {
                        seen.insert((sub_name.clone(), f), e.name.clone());
                    }
                }
            }
        }
    }
    out
}

/// The settings of an element set's module block that become the build
/// environment (each an HCL expression, evaluated in the image's scope).
#[derive(Debug, Default)]
pub struct EnvSettings {
    /// `distro` → `DISTRO_NAME`.
    pub distro: Option<RawAttr>,
    /// `release` → `DIB_RELEASE`.
    pub release: Option<RawAttr>,
    /// `environment = { NAME = value }`: anything else (`DIB_*`, `ARCH`…).
    pub environment: Vec<(String, hcl::Expression)>,
}

fn lit(s: &str) -> hcl::Expression {
    hcl::Expression::String(s.to_owned())
}

/// An attribute of a generated provisioner, placed at the module block.
pub fn attr(loc: &SourceLoc, name: &str, expr: hcl::Expression) -> RawAttr {
    RawAttr {
        name: name.to_owned(),
        text: hcl::format::to_string(&expr).unwrap_or_default(),
        expr,
        loc: loc.clone(),
    }
}

/// A generated `provisioner "KIND"` block, placed at the module block.
pub fn block(loc: &SourceLoc, kind: &str, attrs: Vec<RawAttr>) -> RawBlock {
    RawBlock {
        kind: "provisioner".to_owned(),
        labels: vec![kind.to_owned()],
        attrs,
        blocks: Vec::new(),
        loc: loc.clone(),
    }
}

/// `"NAME=${expr}"`: an environment entry whose value is evaluated later.
fn env_entry(name: &str, value: &hcl::Expression) -> hcl::Expression {
    match value {
        hcl::Expression::String(s) => lit(&format!("{name}={s}")),
        other => {
            let text = hcl::format::to_string(other).unwrap_or_default();
            hcl::Expression::TemplateExpr(Box::new(hcl::expr::TemplateExpr::QuotedString(format!(
                "{name}=${{{text}}}"
            ))))
        }
    }
}

/// The init system a distribution's DIB element would set.
fn default_init_system(distro: Option<&str>) -> &'static str {
    match distro {
        Some("gentoo") => "openrc",
        _ => "systemd",
    }
}

/// The environment every phase gets: DIB's defaults, then the module's
/// settings (later entries win).
fn environment(elements: &[Element], settings: &EnvSettings) -> hcl::Expression {
    let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    let distro_literal = settings
        .distro
        .as_ref()
        .and_then(|a| super::literal_string(&a.expr));
    let defaults: Vec<(String, String)> = [
        ("IMAGE_ELEMENT", names.join(" ")),
        ("IMAGE_NAME", "image".to_owned()),
        ("ARCH", "amd64".to_owned()),
        ("DIB_DEBUG_TRACE", "0".to_owned()),
        ("DIB_DEFAULT_INSTALLTYPE", "source".to_owned()),
        (
            "DIB_INIT_SYSTEM",
            default_init_system(distro_literal.as_deref()).to_owned(),
        ),
        ("DIB_PYTHON", "python3".to_owned()),
        ("DIB_PYTHON_VERSION", "3".to_owned()),
        ("DIB_CHECKSUM", "0".to_owned()),
        ("DIB_OFFLINE", String::new()),
        ("DIB_NO_TMPFS", "1".to_owned()),
        // A bind mount of a host cache into the image would outlive a
        // failed build; elements that want it can set it to 1.
        ("DIB_APT_LOCAL_CACHE", "0".to_owned()),
        ("DIB_MANIFEST_IMAGE_DIR", "/etc/dib-manifests".to_owned()),
        ("LC_ALL", "C".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut entries: Vec<hcl::Expression> = defaults
        .iter()
        .map(|(k, v)| lit(&format!("{k}={v}")))
        .collect();
    if let Some(d) = &settings.distro {
        entries.push(env_entry("DISTRO_NAME", &d.expr));
    }
    if let Some(r) = &settings.release {
        entries.push(env_entry("DIB_RELEASE", &r.expr));
    }
    for (name, value) in &settings.environment {
        entries.push(env_entry(name, value));
    }
    hcl::Expression::Array(entries)
}

/// Runs one phase folder of the hooks dir like `dib-run-parts` (see the
/// module doc). `{HOOKS}` and `{PHASE}` are filled in; under bash when the
/// machine has it, as DIB's environment files may need.
const RUN_PHASE: &str = r#"if [ -z "${BASH_VERSION:-}" ] && command -v bash >/dev/null 2>&1; then exec bash "$0" "$@"; fi
set -eu
hooks="{HOOKS}"
phase="{PHASE}"
[ -d "$hooks/$phase" ] || exit 0
if [ -d "$hooks/environment.d" ]; then
  for f in $(ls -1 "$hooks/environment.d" | grep -E '^[0-9A-Za-z_.-]+$' | LC_ALL=C sort -n); do
    [ -f "$hooks/environment.d/$f" ] || continue
    echo "dib: sourcing environment.d/$f" >&2
    . "$hooks/environment.d/$f"
  done
fi
for f in $(ls -1 "$hooks/$phase" | grep -E '^[0-9A-Za-z_-]+$' | LC_ALL=C sort -n); do
  if [ -f "$hooks/$phase/$f" ] && [ -x "$hooks/$phase/$f" ]; then
    echo "dib: running $phase/$f" >&2
    "$hooks/$phase/$f"
  fi
done"#;

/// What a host phase adds to the environment before [`RUN_PHASE`]: the
/// image's root and hooks dir, the elements' folders (`IMAGE_ELEMENT_YAML`,
/// `get_image_element_array`, `ELEMENTS_PATH`, as absolute paths), the
/// Python that runs DIB's own tools, and `sudo` when this machine has none
/// but runs as root.
const HOST_ENV: &str = r#"test -n "${TARGET_ROOT:-}" || { echo 'TARGET_ROOT is not set: diskimage-builder host phases need the chroot builder' >&2; exit 1; }
export TMP_MOUNT_PATH="$TARGET_ROOT"
export TMP_HOOKS_PATH="$TARGET_ROOT{HOOKS}"
export DIB_IMAGE_CACHE="${DIB_IMAGE_CACHE:-${HOME:-/root}/.cache/image-create}"
export DIB_ARGS="${DIB_ARGS-$IMAGE_ELEMENT}"
export DIB_ENV="${DIB_ENV-$(declare -p $(compgen -v | grep '^DIB_'))}"
export DIB_MANIFEST_SAVE_DIR="${DIB_MANIFEST_SAVE_DIR:-$(dirname "$TARGET_ROOT")/dib-manifests/}"
mkdir -p "$DIB_IMAGE_CACHE"
array=""
IMAGE_ELEMENT_YAML=""
for pair in $IMGFORM_DIB_ELEMENT_DIRS; do
  dir=$(cd "${pair#*=}" && pwd -P)
  array="$array[${pair%%=*}]=$dir "
  IMAGE_ELEMENT_YAML="$IMAGE_ELEMENT_YAML${pair%%=*}: $dir
"
done
export IMAGE_ELEMENT_YAML
eval "get_image_element_array() { echo \"$array\"; }"
export -f get_image_element_array
ELEMENTS_PATH=""
python=""
for d in $(echo "$IMGFORM_DIB_SEARCH" | tr ':' ' '); do
  [ -d "$d" ] || continue
  d=$(cd "$d" && pwd -P)
  ELEMENTS_PATH="${ELEMENTS_PATH:+$ELEMENTS_PATH:}$d"
  prefix=${d%/lib/python*/site-packages/diskimage_builder/elements}
  if [ -z "$python" ] && [ "$prefix" != "$d" ] && [ -x "$prefix/bin/python3" ]; then python="$prefix/bin/python3"; fi
done
export ELEMENTS_PATH
export DIB_PYTHON_EXEC="${DIB_PYTHON_EXEC:-${python:-python3}}"
if ! command -v sudo >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  sudo() { while [ "${1#-}" != "$1" ]; do shift; done; "$@"; }
  export -f sudo
fi
"#;

/// The shown path of an element folder: relative to the definition dir when
/// inside it (so addresses do not depend on the checkout's place), else
/// absolute.
pub fn shown(def_dir: &Path, dir: &Path) -> String {
    match dir.strip_prefix(def_dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().replace('\\', "/"),
        Ok(_) => ".".to_owned(),
        Err(_) => dir.to_string_lossy().into_owned(),
    }
}

/// The provisioners that run `elements` (the disk elements left out) with
/// DIB's build environment: prepare the hooks dir, each phase in order,
/// then put the image's resolver back and remove the hooks dir. None when
/// no element has anything to run.
pub fn phase_provisioners(
    loc: &SourceLoc,
    def_dir: &Path,
    elements: &[Element],
    search: &SearchPath,
    settings: &EnvSettings,
) -> Vec<RawBlock> {
    let elements: Vec<Element> = elements
        .iter()
        .filter(|e| !DISK_ELEMENTS.contains(&e.name.as_str()))
        .cloned()
        .collect();
    if elements.is_empty() {
        return Vec::new();
    }
    let env = environment(&elements, settings);
    let mut out = Vec::new();
    // The hooks dir, and this machine's resolver while elements run.
    out.push(block(
        loc,
        shell::KIND.name(),
        vec![attr(
            loc,
            "inline",
            hcl::Expression::Array(vec![lit(&format!(
                "rm -rf {HOOKS} && mkdir -p {HOOKS}\nif [ -e /etc/resolv.conf ] || [ -L /etc/resolv.conf ]; then mv /etc/resolv.conf /etc/resolv.conf.ORIG; fi"
            ))]),
        )],
    ));
    out.push(block(
        loc,
        shell_local::KIND.name(),
        vec![attr(
            loc,
            "inline",
            hcl::Expression::Array(vec![lit(
                "test -n \"${TARGET_ROOT:-}\" || exit 0\nif [ ! -e \"$TARGET_ROOT/etc/resolv.conf\" ] && [ ! -L \"$TARGET_ROOT/etc/resolv.conf\" ] && [ -r /etc/resolv.conf ]; then cat /etc/resolv.conf > \"$TARGET_ROOT/etc/resolv.conf\"; touch \"$TARGET_ROOT/tmp/in_target.d/.imgform-resolv-added\"; fi",
            )]),
        )],
    ));
    for e in &elements {
        out.push(block(
            loc,
            file::KIND.name(),
            vec![
                attr(loc, "source", lit(&format!("{}/", shown(def_dir, &e.dir)))),
                attr(loc, "destination", lit(&format!("{HOOKS}/"))),
            ],
        ));
    }
    let element_dirs = elements
        .iter()
        .map(|e| format!("{}={}", e.name, shown(def_dir, &e.dir)))
        .collect::<Vec<_>>()
        .join(" ");
    let search_dirs = search
        .dirs
        .iter()
        .map(|d| shown(def_dir, d))
        .collect::<Vec<_>>()
        .join(":");
    let mut host_env = match &env {
        hcl::Expression::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    host_env.push(lit(&format!("IMGFORM_DIB_ELEMENT_DIRS={element_dirs}")));
    host_env.push(lit(&format!("IMGFORM_DIB_SEARCH={search_dirs}")));
    let mut inside_env = match &env {
        hcl::Expression::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    inside_env.push(lit(&format!("TMP_HOOKS_PATH={HOOKS}")));
    inside_env.push(lit("HOME=/root"));
    inside_env.push(lit(
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ));
    for (phase, inside) in PHASES {
        if !elements.iter().any(|e| e.dir.join(phase).is_dir()) {
            continue;
        }
        let script = if *inside {
            RUN_PHASE
                .replace("{HOOKS}", HOOKS)
                .replace("{PHASE}", phase)
        } else {
            format!(
                "{}{}",
                HOST_ENV.replace("{HOOKS}", HOOKS),
                RUN_PHASE
                    .replace("{HOOKS}", &format!("$TARGET_ROOT{HOOKS}"))
                    .replace("{PHASE}", phase)
            )
        };
        let kind = if *inside {
            shell::KIND.name()
        } else {
            shell_local::KIND.name()
        };
        let mut attrs = vec![
            attr(loc, "inline", hcl::Expression::Array(vec![lit(&script)])),
            attr(
                loc,
                "environment_vars",
                hcl::Expression::Array(if *inside {
                    inside_env.clone()
                } else {
                    host_env.clone()
                }),
            ),
        ];
        if !*inside {
            attrs.push(attr(loc, "inline_shebang", lit("/usr/bin/env bash")));
        }
        out.push(block(loc, kind, attrs));
    }
    // Anything an element mounted below the root (imgform's own /proc,
    // /sys and /dev aside) is unmounted before the image is packed.
    out.push(block(
        loc,
        shell_local::KIND.name(),
        vec![attr(
            loc,
            "inline",
            hcl::Expression::Array(vec![lit(
                "test -n \"${TARGET_ROOT:-}\" || exit 0\nawk -v r=\"$TARGET_ROOT/\" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do\n  case \"$m\" in \"$TARGET_ROOT\"/proc|\"$TARGET_ROOT\"/proc/*|\"$TARGET_ROOT\"/sys|\"$TARGET_ROOT\"/sys/*|\"$TARGET_ROOT\"/dev|\"$TARGET_ROOT\"/dev/*) ;; *) umount \"$m\" || umount -l \"$m\";; esac\ndone",
            )]),
        )],
    ));
    out.push(block(
        loc,
        shell::KIND.name(),
        vec![attr(
            loc,
            "inline",
            hcl::Expression::Array(vec![lit(&format!(
                "if [ -L /etc/resolv.conf ]; then rm -f /etc/resolv.conf.ORIG\nelif [ -e /etc/resolv.conf.ORIG ] || [ -L /etc/resolv.conf.ORIG ]; then rm -f /etc/resolv.conf; mv /etc/resolv.conf.ORIG /etc/resolv.conf\nelif [ -e {HOOKS}/.imgform-resolv-added ]; then rm -f /etc/resolv.conf; fi\nrm -rf {HOOKS}"
            ))]),
        )],
    ));
    out
}

/// The source settings DIB's disk elements stand for: `vm` makes a
/// partitioned bootable disk — MBR by default, GPT with `block-device-gpt`,
/// GPT with an EFI system partition with `block-device-efi` — with GRUB
/// (`bootloader`) and its default kernel command line, menu timeout 5 s.
pub fn disk_settings(names: &[String], loc: &SourceLoc) -> Vec<RawAttr> {
    let has = |n: &str| names.iter().any(|x| x == n);
    if !has("vm") {
        return Vec::new();
    }
    let table = if has("block-device-gpt") || has("block-device-efi") {
        "gpt"
    } else {
        "mbr"
    };
    let mut attrs = vec![
        attr(loc, "partition_table", lit(table)),
        attr(
            loc,
            "bootloader",
            lit(if has("bootloader") { "grub" } else { "none" }),
        ),
        attr(
            loc,
            "kernel_args",
            hcl::Expression::Array(
                ["nofb", "nomodeset", "gfxpayload=text", "no_timer_check"]
                    .iter()
                    .map(|a| lit(a))
                    .collect(),
            ),
        ),
        attr(loc, "grub_timeout", hcl::Expression::Number(5.into())),
    ];
    if has("block-device-efi") {
        attrs.push(attr(loc, "efi", hcl::Expression::Bool(true)));
    }
    attrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(root: &Path, name: &str, deps: &str, provides: &str) {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("install.d")).unwrap();
        if !deps.is_empty() {
            std::fs::write(dir.join("element-deps"), deps).unwrap();
        }
        if !provides.is_empty() {
            std::fs::write(dir.join("element-provides"), provides).unwrap();
        }
    }

    fn names(v: &[Element]) -> Vec<&str> {
        v.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn provides_satisfy_virtual_dependencies_and_earlier_folders_win() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        element(&a, "app", "base\nblock-device\n", "");
        element(&b, "app", "missing-in-b\n", "");
        element(&b, "base", "", "");
        element(&b, "block-device-gpt", "", "block-device\n");
        let search = SearchPath {
            dirs: vec![a.clone(), b.clone()],
        };
        let set = expand(&["block-device-gpt".into(), "app".into()], &search).unwrap();
        assert_eq!(names(&set), ["block-device-gpt", "base", "app"]);
        assert!(set[2].dir.starts_with(std::fs::canonicalize(&a).unwrap()));

        let err = expand(&["app".into()], &search).unwrap_err();
        assert!(err[0].message.contains("`block-device`"), "{err:?}");

        element(&b, "block-device-mbr", "", "block-device\n");
        let err = expand(
            &[
                "block-device-gpt".into(),
                "block-device-mbr".into(),
                "app".into(),
            ],
            &search,
        )
        .unwrap_err();
        assert!(
            err[0].message.contains("both provide `block-device`"),
            "{err:?}"
        );
        let err = expand(&["block-device-gpt".into(), "block-device".into()], &search);
        assert!(err.is_err());
    }

    #[test]
    fn duplicate_hooks_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        element(tmp.path(), "one", "", "");
        element(tmp.path(), "two", "", "");
        std::fs::write(tmp.path().join("one/install.d/50-x"), "").unwrap();
        std::fs::write(tmp.path().join("two/install.d/50-x"), "").unwrap();
        let search = SearchPath {
            dirs: vec![tmp.path().to_path_buf()],
        };
        let set = expand(&["one".into(), "two".into()], &search).unwrap();
        assert_eq!(
            duplicate_hooks(&set),
            [(
                "install.d".to_owned(),
                "50-x".to_owned(),
                "one".to_owned(),
                "two".to_owned()
            )]
        );
    }
}
