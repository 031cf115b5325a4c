//! Modules: reusable provisioning steps, used from a build as
//! `module "devuser" { source = "../modules/devuser"  username = "ops" }`.
//!
//! A module is a folder with `module.hcl` — its `variable`s, its
//! `provisioner`s and `depends_on = ["other"]` (sibling module folders whose
//! provisioners run first) — and the files those provisioners use. Its
//! provisioners run where the `module` block stands, in a scope where
//! `var.*` are the module's variables and `path.module` is its folder;
//! relative paths in them resolve against the module folder. The whole
//! folder is an input of every image that uses it.
//!
//! A diskimage-builder element folder (`element-deps`, `install.d/NN-name`,
//! `environment.d/…`, ...) is accepted as a module too: its `element-deps`
//! are followed and its phase scripts run in DIB's order — per phase, the
//! scripts of all elements sorted by name, with every `environment.d` file
//! sourced first. In-image phases (`pre-install.d`, `install.d`,
//! `post-install.d`, `finalise.d`) run inside the image; host phases
//! (`root.d`, `extra-data.d`, `cleanup.d`) run on the host with
//! `TARGET_ROOT` set to the image's root.
//!
//! Invariants: a module folder is expanded at most once per build (`seen`),
//! dependencies before their users; a dependency cycle is an error. Callers
//! must share one `seen` across a build's module blocks, and must check the
//! returned provisioners against their kinds' schemas: nothing here does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::parse::{self, RawAttr, RawBlock};
use super::VariableDef;
use crate::diag::{Diagnostic, SourceLoc};
use crate::provision::{file, shell, shell_local};

/// What a build's `module` block gives its images.
#[derive(Debug, Default)]
pub struct Expanded {
    pub provisioners: Vec<ProvisionerDef>,
    /// Module folders used (relative to the definition dir): inputs.
    pub dirs: Vec<String>,
    /// Source settings the module implies (a DIB `vm` element's disk
    /// layout), for builders whose schema has them and sources that do not
    /// set them.
    pub source_settings: Vec<RawAttr>,
}

/// The scope a module's provisioners are evaluated in.
#[derive(Debug, Clone)]
pub struct ModuleScope {
    /// The module block's label (or the dependency's folder name).
    pub name: String,
    /// The module folder relative to the definition dir (forward slashes).
    pub dir: String,
    pub variables: BTreeMap<String, VariableDef>,
    /// `name = expr` from the module block, evaluated in the image's scope.
    pub args: Vec<RawAttr>,
    pub loc: SourceLoc,
}

/// One provisioner of an image: from the build itself or from a module.
#[derive(Debug, Clone)]
pub struct ProvisionerDef {
    pub block: RawBlock,
    pub module: Option<Arc<ModuleScope>>,
}

impl ProvisionerDef {
    pub fn plain(block: RawBlock) -> ProvisionerDef {
        ProvisionerDef {
            block,
            module: None,
        }
    }

    /// Source texts that may reference image-level names (`var.*`,
    /// `image.*`): the block's own for build provisioners, the module's
    /// arguments for module provisioners.
    pub fn outer_texts(&self) -> Vec<(&str, &SourceLoc)> {
        match &self.module {
            None => self.block.texts(),
            Some(m) => m.args.iter().map(|a| (a.text.as_str(), &a.loc)).collect(),
        }
    }
}

const DIB_MARKERS: &[&str] = &[
    "element-deps",
    "install.d",
    "pre-install.d",
    "post-install.d",
    "finalise.d",
    "environment.d",
    "root.d",
    "extra-data.d",
    "cleanup.d",
];

/// DIB phases in order; `true` = runs inside the image.
const DIB_PHASES: &[(&str, bool)] = &[
    ("root.d", false),
    ("extra-data.d", false),
    ("pre-install.d", true),
    ("install.d", true),
    ("post-install.d", true),
    ("finalise.d", true),
    ("cleanup.d", false),
];

pub struct ModuleLoader<'a> {
    pub def_dir: &'a Path,
    pub diags: &'a mut Vec<Diagnostic>,
    /// Module folders already expanded in this build (canonical paths).
    pub seen: BTreeSet<PathBuf>,
}

fn rel(def_dir: &Path, dir: &Path) -> String {
    crate::paths::relative_to(def_dir, dir)
}

impl ModuleLoader<'_> {
    fn error(&mut self, loc: &SourceLoc, summary: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(summary).at(Some(loc.clone())).hint(hint));
    }

    /// Expands a `module` block of a build into provisioners (dependencies
    /// first), the module folders used, and the source settings it implies.
    pub fn expand(&mut self, block: &RawBlock) -> Expanded {
        let Some(name) = block
            .labels
            .first()
            .cloned()
            .filter(|_| block.labels.len() == 1)
        else {
            self.error(
                &block.loc,
                "a module block needs one label: its name",
                "write `module \"devuser\" { source = \"../modules/devuser\" }`",
            );
            return Expanded::default();
        };
        let Some(source) = block
            .attr("source")
            .and_then(|a| super::literal_string(&a.expr))
        else {
            self.error(
                &block.loc,
                format!("module `{name}` needs a literal `source`"),
                "write source = \"../modules/devuser\" (a folder, relative to the definition dir)",
            );
            return Expanded::default();
        };
        let source_loc = block
            .attr("source")
            .map(|a| a.loc.clone())
            .unwrap_or_else(|| block.loc.clone());
        let dir = self.def_dir.join(&source);
        let Ok(dir) = std::fs::canonicalize(&dir) else {
            self.error(
                &source_loc,
                format!("module `{name}`: folder {source} does not exist"),
                "source is a folder relative to the definition dir, e.g. \"../modules/devuser\"",
            );
            return Expanded::default();
        };
        let args: Vec<RawAttr> = block
            .attrs
            .iter()
            .filter(|a| a.name != "source")
            .cloned()
            .collect();
        for inner in &block.blocks {
            self.error(
                &inner.loc,
                format!("unexpected block `{}` in module `{name}`", inner.kind),
                "a module block holds `source` and the module's variables as attributes",
            );
        }
        let mut out = Vec::new();
        let mut dirs = Vec::new();
        if let Some(elements) = args.iter().find(|a| a.name == "elements") {
            let settings = self.load_element_set(&name, &dir, elements, &args, &mut out, &mut dirs);
            return Expanded {
                provisioners: out,
                dirs,
                source_settings: settings,
            };
        }
        self.load(
            &name,
            &dir,
            args,
            &block.loc,
            &mut Vec::new(),
            &mut out,
            &mut dirs,
        );
        Expanded {
            provisioners: out,
            dirs,
            source_settings: Vec::new(),
        }
    }

    /// `module "NAME" { source = ELEMENTS_DIR, elements = ["vm", ...] }`:
    /// elements picked from a folder of diskimage-builder elements (its
    /// `elements/`, as `disk-image-create` is given names and an
    /// `ELEMENTS_PATH`), with their dependencies.
    fn load_element_set(
        &mut self,
        name: &str,
        dir: &Path,
        elements: &RawAttr,
        args: &[RawAttr],
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) -> Vec<RawAttr> {
        if let Some(other) = args.iter().find(|a| a.name != "elements") {
            self.error(&other.loc, format!("module `{name}` is a set of diskimage-builder elements and takes only `source` and `elements`"), "set DIB_* variables with environment_vars in a shell provisioner");
        }
        let names: Option<Vec<String>> = match &elements.expr {
            hcl::Expression::Array(items) => items.iter().map(super::literal_string).collect(),
            _ => None,
        };
        let Some(names) = names else {
            self.error(
                &elements.loc,
                format!("`elements` of module `{name}` must be a list of element names"),
                "write elements = [\"vm\", \"block-device-gpt\", \"cloud-init-datasources\"]",
            );
            return Vec::new();
        };
        let mut roots = Vec::new();
        for element in &names {
            let path = dir.join(element);
            match std::fs::canonicalize(&path) {
                Ok(p) if p.is_dir() => roots.push(p),
                _ => {
                    let known: Vec<String> = sorted_dirs(dir);
                    let hint = match crate::diag::closest(element, known.iter().map(String::as_str))
                    {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("elements are folders of {}", rel(self.def_dir, dir)),
                    };
                    self.error(
                        &elements.loc,
                        format!(
                            "module `{name}`: no element `{element}` in {}",
                            rel(self.def_dir, dir)
                        ),
                        hint,
                    );
                }
            }
        }
        self.load_dib(&roots, &elements.loc, out, dirs)
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        name: &str,
        dir: &Path,
        args: Vec<RawAttr>,
        loc: &SourceLoc,
        stack: &mut Vec<PathBuf>,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) {
        if stack.contains(&dir.to_path_buf()) {
            let chain: Vec<String> = stack
                .iter()
                .chain(std::iter::once(&dir.to_path_buf()))
                .map(|d| {
                    d.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            self.error(
                loc,
                format!("module dependency cycle: {}", chain.join(" → ")),
                "remove one of the depends_on entries",
            );
            return;
        }
        if !self.seen.insert(dir.to_path_buf()) {
            if !args.is_empty() {
                self.diags.push(Diagnostic::warning(format!("module `{name}` is already applied in this build (as a dependency or earlier); this use is skipped")).at(Some(loc.clone())).hint("use each module once per build; put it before the modules that depend on it to set its variables"));
            }
            return;
        }
        let rel_dir = rel(self.def_dir, dir);
        dirs.push(rel_dir.clone());
        stack.push(dir.to_path_buf());
        let module_file = dir.join("module.hcl");
        if module_file.is_file() {
            self.load_hcl(
                name,
                dir,
                &rel_dir,
                &module_file,
                args,
                loc,
                stack,
                out,
                dirs,
            );
        } else if DIB_MARKERS.iter().any(|m| dir.join(m).exists()) {
            if !args.is_empty() {
                self.error(&args[0].loc, format!("module `{name}` is a diskimage-builder element and takes no variables"), "set DIB_* variables with environment_vars in a shell provisioner, or turn the element into a module with module.hcl");
            }
            let settings = self.load_dib(&[dir.to_path_buf()], loc, out, dirs);
            if !settings.is_empty() {
                self.diags.push(Diagnostic::warning(format!("module `{name}` is the diskimage-builder element `{}`, which makes a bootable disk: use it in an element set so the builder gets its disk layout", dir.file_name().unwrap_or_default().to_string_lossy())).at(Some(loc.clone())).hint("module \"image\" { source = \"<diskimage-builder>/elements\"  elements = [\"vm\", \"block-device-gpt\"] }"));
            }
        } else {
            self.error(loc, format!("module `{name}`: {rel_dir} has no module.hcl and is not a diskimage-builder element"), "a module folder holds module.hcl (variables, provisioners, depends_on); an element holds install.d/, element-deps, ...");
        }
        stack.pop();
    }

    #[allow(clippy::too_many_arguments)]
    fn load_hcl(
        &mut self,
        name: &str,
        dir: &Path,
        rel_dir: &str,
        file: &Path,
        args: Vec<RawAttr>,
        loc: &SourceLoc,
        stack: &mut Vec<PathBuf>,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) {
        let display = PathBuf::from(format!("{rel_dir}/module.hcl"));
        let parsed = match parse::parse_file(file, &display) {
            Ok(p) => p,
            Err(d) => {
                self.diags.push(d);
                return;
            }
        };
        let depends_on = self.module_attrs(&parsed.attrs);
        let (variables, provisioners) = self.module_blocks(&parsed.blocks);
        self.check_module_args(name, &variables, &args, loc);
        let parent = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.to_path_buf());
        for (dep, dep_loc) in depends_on {
            match std::fs::canonicalize(parent.join(&dep)) {
                Ok(dep_dir) => self.load(&dep, &dep_dir, Vec::new(), &dep_loc, stack, out, dirs),
                Err(_) => self.error(
                    &dep_loc,
                    format!("module `{name}` depends on `{dep}`, which is not a sibling folder"),
                    "depends_on names module folders next to this one",
                ),
            }
        }
        let scope = Arc::new(ModuleScope {
            name: name.to_owned(),
            dir: rel_dir.to_owned(),
            variables,
            args,
            loc: loc.clone(),
        });
        out.extend(provisioners.into_iter().map(|block| ProvisionerDef {
            block,
            module: Some(Arc::clone(&scope)),
        }));
    }

    /// The attributes of `module.hcl`: its `depends_on` entries, with where.
    fn module_attrs(&mut self, attrs: &[RawAttr]) -> Vec<(String, SourceLoc)> {
        let mut depends_on = Vec::new();
        for attr in attrs {
            match attr.name.as_str() {
                "depends_on" => match &attr.expr {
                    hcl::Expression::Array(items) => depends_on.extend(
                        items
                            .iter()
                            .filter_map(super::literal_string)
                            .map(|n| (n, attr.loc.clone())),
                    ),
                    _ => self.error(
                        &attr.loc,
                        "`depends_on` must be a list of module names",
                        "depends_on = [\"devuser\"]",
                    ),
                },
                "description" => {}
                other => self.error(
                    &attr.loc,
                    format!("unknown attribute `{other}` in a module"),
                    "module.hcl holds description, depends_on, variable and provisioner blocks",
                ),
            }
        }
        depends_on
    }

    /// The blocks of `module.hcl`: its variables and provisioners.
    fn module_blocks(
        &mut self,
        blocks: &[RawBlock],
    ) -> (BTreeMap<String, VariableDef>, Vec<RawBlock>) {
        let mut variables = BTreeMap::new();
        let mut provisioners = Vec::new();
        for block in blocks {
            match block.kind.as_str() {
                "variable" => {
                    if let Some(def) = super::variables::variable_def(block, self.diags) {
                        variables.insert(def.name.clone(), def);
                    }
                }
                "provisioner" => provisioners.push(block.clone()),
                other => self.error(
                    &block.loc,
                    format!("unknown block `{other}` in a module"),
                    "module.hcl holds variable and provisioner blocks",
                ),
            }
        }
        (variables, provisioners)
    }

    /// Every argument of the module block names a variable, and every
    /// variable without a default has an argument.
    fn check_module_args(
        &mut self,
        name: &str,
        variables: &BTreeMap<String, VariableDef>,
        args: &[RawAttr],
        loc: &SourceLoc,
    ) {
        for arg in args {
            if !variables.contains_key(&arg.name) {
                let hint =
                    match crate::diag::closest(&arg.name, variables.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "module `{name}` declares: {}",
                            variables.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                self.error(
                    &arg.loc,
                    format!("module `{name}` has no variable `{}`", arg.name),
                    hint,
                );
            }
        }
        for def in variables.values() {
            if def.default.is_none() && !args.iter().any(|a| a.name == def.name) {
                self.error(
                    loc,
                    format!("module `{name}` needs a value for `{}`", def.name),
                    format!("add `{} = ...` to the module block", def.name),
                );
            }
        }
    }

    /// The provisioners of DIB elements `roots` and their dependencies (the
    /// disk elements imgform implements itself left out), and the source
    /// settings those disk elements stand for.
    fn load_dib(
        &mut self,
        roots: &[PathBuf],
        loc: &SourceLoc,
        out: &mut Vec<ProvisionerDef>,
        dirs: &mut Vec<String>,
    ) -> Vec<RawAttr> {
        let all = self.dib_elements(roots, loc, dirs);
        let settings = disk_settings(&element_names(&all), loc);
        let elements: Vec<PathBuf> = all
            .into_iter()
            .filter(|e| !DISK_ELEMENTS.contains(&element_name(e).as_str()))
            .collect();

        // environment.d of every element, sourced before each script.
        let env_files = self.element_files(&elements, "environment.d");
        let env_dir = "/tmp/imgform-dib/environment.d";
        let names = element_names(&elements);
        let dib_env = [
            format!("IMGFORM_DIB_ELEMENTS={}", names.join(" ")),
            "ARCH=amd64".to_owned(),
            "DIB_IMAGE_CACHE=/tmp/imgform-dib/cache".to_owned(),
        ];
        let env_expr = hcl::Expression::Array(dib_env.iter().map(|s| lit(s)).collect());
        if !env_files.is_empty() {
            out.push(ProvisionerDef::plain(dib_block(
                loc,
                shell::KIND.name(),
                vec![dib_attr(
                    loc,
                    "inline",
                    hcl::Expression::Array(vec![lit(&format!("mkdir -p {env_dir}"))]),
                )],
            )));
            for (name, path) in &env_files {
                out.push(ProvisionerDef::plain(dib_block(
                    loc,
                    file::KIND.name(),
                    vec![
                        dib_attr(loc, "source", lit(path)),
                        dib_attr(loc, "destination", lit(&format!("{env_dir}/{name}"))),
                    ],
                )));
            }
        }
        let inside_exec = format!("chmod +x {{{{ .Path }}}}; {{{{ .Vars }}}} sh -c 'for f in {env_dir}/*; do [ -f \"$f\" ] && . \"$f\"; done; exec \"$0\"' {{{{ .Path }}}}");
        for (phase, inside) in DIB_PHASES {
            for (_, path) in self.element_files(&elements, phase) {
                out.push(phase_script(loc, &path, *inside, &env_expr, &inside_exec));
            }
        }
        if !env_files.is_empty() {
            out.push(ProvisionerDef::plain(dib_block(
                loc,
                shell::KIND.name(),
                vec![dib_attr(
                    loc,
                    "inline",
                    hcl::Expression::Array(vec![lit("rm -rf /tmp/imgform-dib")]),
                )],
            )));
        }
        settings
    }

    /// The closure of element-deps, dependencies first; every element but
    /// `dir` itself is marked seen and its folder recorded in `dirs`.
    /// Every element `roots` need, dependencies first. A dependency that is
    /// no sibling folder is a virtual element: some element of the set must
    /// provide it (`element-provides`); `vm` without a `block-device-*` gets
    /// `block-device-mbr`, as `disk-image-create` does on x86.
    fn dib_elements(
        &mut self,
        roots: &[PathBuf],
        loc: &SourceLoc,
        dirs: &mut Vec<String>,
    ) -> Vec<PathBuf> {
        let mut elements: Vec<PathBuf> = Vec::new();
        let mut wanted: Vec<(String, PathBuf)> = Vec::new();
        for root in roots {
            self.dib_closure(root, &mut elements, &mut Vec::new(), &mut wanted);
        }
        let names = element_names(&elements);
        let has_block_device = names.iter().any(|n| n.starts_with("block-device-"));
        if names.iter().any(|n| n == "vm") && !has_block_device {
            if let Some(parent) = elements
                .iter()
                .find(|e| element_name(e) == "vm")
                .and_then(|e| e.parent())
            {
                let mbr = parent.join("block-device-mbr");
                if mbr.is_dir() {
                    self.dib_closure(&mbr, &mut elements, &mut Vec::new(), &mut wanted);
                }
            }
        }
        let provided: BTreeSet<String> = elements
            .iter()
            .flat_map(|e| read_list(&e.join("element-provides")))
            .collect();
        for (virtual_name, needed_by) in wanted {
            if !provided.contains(&virtual_name) {
                self.error(
                    loc,
                    format!(
                        "element {} depends on `{virtual_name}`, which no element of the set provides",
                        element_name(&needed_by)
                    ),
                    "element-deps names element folders next to this one, or a name another element lists in its element-provides",
                );
            }
        }
        for e in &elements {
            if !roots.contains(e) {
                self.seen.insert(e.clone());
                let r = rel(self.def_dir, e);
                if !dirs.contains(&r) {
                    dirs.push(r);
                }
            }
        }
        elements
    }

    /// The files in folder `sub` of every element, as (file name, path
    /// relative to the definition dir), sorted by file name across elements.
    fn element_files(&self, elements: &[PathBuf], sub: &str) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = Vec::new();
        for e in elements {
            for f in sorted_files(&e.join(sub)) {
                files.push((
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    rel(self.def_dir, &f),
                ));
            }
        }
        files.sort();
        files
    }

    fn dib_closure(
        &mut self,
        dir: &Path,
        out: &mut Vec<PathBuf>,
        stack: &mut Vec<PathBuf>,
        wanted: &mut Vec<(String, PathBuf)>,
    ) {
        if out.contains(&dir.to_path_buf()) || stack.contains(&dir.to_path_buf()) {
            return;
        }
        stack.push(dir.to_path_buf());
        let parent = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        for dep in read_list(&dir.join("element-deps")) {
            match std::fs::canonicalize(parent.join(&dep)) {
                Ok(d) if d.is_dir() => self.dib_closure(&d, out, stack, wanted),
                _ => wanted.push((dep, dir.to_path_buf())),
            }
        }
        stack.pop();
        out.push(dir.to_path_buf());
    }
}

fn lit(s: &str) -> hcl::Expression {
    hcl::Expression::String(s.to_owned())
}

/// An attribute of a generated DIB provisioner, placed at the module block.
fn dib_attr(loc: &SourceLoc, name: &str, expr: hcl::Expression) -> RawAttr {
    RawAttr {
        name: name.to_owned(),
        text: hcl::format::to_string(&expr).unwrap_or_default(),
        expr,
        loc: loc.clone(),
    }
}

/// A generated `provisioner "KIND"` block, placed at the module block.
fn dib_block(loc: &SourceLoc, kind: &str, attrs: Vec<RawAttr>) -> RawBlock {
    RawBlock {
        kind: "provisioner".to_owned(),
        labels: vec![kind.to_owned()],
        attrs,
        blocks: Vec::new(),
        loc: loc.clone(),
    }
}

/// The provisioner that runs one phase script: `shell` inside the image,
/// `shell-local` on the host.
fn phase_script(
    loc: &SourceLoc,
    path: &str,
    inside: bool,
    env_expr: &hcl::Expression,
    inside_exec: &str,
) -> ProvisionerDef {
    let attrs = if inside {
        vec![
            dib_attr(loc, "script", lit(path)),
            dib_attr(loc, "environment_vars", env_expr.clone()),
            dib_attr(loc, "execute_command", lit(inside_exec)),
        ]
    } else {
        // On the host, with TARGET_ROOT set by the chroot builder.
        let guard = "test -n \"$TARGET_ROOT\" || { echo 'TARGET_ROOT is not set: diskimage-builder host phases need the chroot builder' >&2; exit 1; }; {{.Vars}} {{.Script}}";
        vec![
            dib_attr(loc, "script", lit(path)),
            dib_attr(loc, "environment_vars", env_expr.clone()),
            dib_attr(
                loc,
                "execute_command",
                hcl::Expression::Array(vec![lit("/bin/sh"), lit("-c"), lit(guard)]),
            ),
        ]
    };
    ProvisionerDef::plain(dib_block(
        loc,
        if inside {
            shell::KIND.name()
        } else {
            shell_local::KIND.name()
        },
        attrs,
    ))
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The diskimage-builder elements that describe the disk (its partitions
/// and bootloader): imgform makes that disk itself, so their scripts do not
/// run; [`disk_settings`] turns them into the builder's settings.
const DISK_ELEMENTS: &[&str] = &[
    "vm",
    "block-device-mbr",
    "block-device-gpt",
    "block-device-efi",
    "bootloader",
];

/// The source settings DIB's disk elements stand for: `vm` makes a
/// partitioned bootable disk — MBR by default, GPT with `block-device-gpt`,
/// GPT with an EFI system partition with `block-device-efi` — with GRUB
/// (`bootloader`) and its default kernel command line, menu timeout 5 s.
fn disk_settings(names: &[String], loc: &SourceLoc) -> Vec<RawAttr> {
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
        dib_attr(loc, "partition_table", lit(table)),
        dib_attr(
            loc,
            "bootloader",
            lit(if has("bootloader") { "grub" } else { "none" }),
        ),
        dib_attr(
            loc,
            "kernel_args",
            hcl::Expression::Array(
                ["nofb", "nomodeset", "gfxpayload=text", "no_timer_check"]
                    .iter()
                    .map(|a| lit(a))
                    .collect(),
            ),
        ),
        dib_attr(loc, "grub_timeout", hcl::Expression::Number(5.into())),
    ];
    if has("block-device-efi") {
        attrs.push(dib_attr(loc, "efi", hcl::Expression::Bool(true)));
    }
    attrs
}

fn element_name(dir: &Path) -> String {
    dir.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn element_names(elements: &[PathBuf]) -> Vec<String> {
    elements.iter().map(|e| element_name(e)).collect()
}

/// The non-comment lines of a list file (`element-deps`, `element-provides`).
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

/// The sub-folders of `dir`, by name.
fn sorted_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
