//! What an Ansible playbook reaches, for its image's content address.
//!
//! Followed statically: `import_playbook`, `vars_files`, plays' `roles`,
//! `include_role`/`import_role`, `include_tasks`/`import_tasks` (also
//! inside `block`/`rescue`/`always`, in roles' tasks and handlers), and
//! roles' `meta/main.yml` dependencies. Roles are looked up in the
//! playbook's `roles/` and in `roles_path`; a role found is hashed whole
//! (tasks, handlers, templates, files, defaults, vars, meta). Beside the
//! playbook, `group_vars/`, `host_vars/`, `ansible.cfg` and
//! `requirements.yml` count too. An edit to a role no playbook reaches
//! changes no address.
//!
//! When a name is only known at run time (`include_tasks: "{{ x }}.yml"`),
//! the reach is `Dynamic` and the caller hashes the whole playbook
//! directory instead (and says so).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

#[derive(Debug, Default, Clone)]
pub struct Reach {
    /// Files reached (absolute).
    pub files: BTreeSet<PathBuf>,
    /// Directories reached, hashed whole (absolute).
    pub dirs: BTreeSet<PathBuf>,
    /// Why the reach cannot be known statically, if it cannot.
    pub dynamic: Option<String>,
}

const INCLUDE_ROLE: &[&str] = &[
    "include_role",
    "import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
];
const INCLUDE_TASKS: &[&str] = &[
    "include_tasks",
    "import_tasks",
    "include",
    "ansible.builtin.include_tasks",
    "ansible.builtin.import_tasks",
    "ansible.builtin.include",
];
const TASK_LISTS: &[&str] = &["pre_tasks", "tasks", "post_tasks", "handlers"];

struct Walker<'a> {
    playbook_dir: PathBuf,
    roles_path: Vec<PathBuf>,
    reach: Reach,
    seen_roles: BTreeSet<String>,
    seen_files: BTreeSet<PathBuf>,
    _def_dir: &'a Path,
}

fn is_dynamic(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn read_yaml(path: &Path) -> Option<Yaml> {
    serde_yaml::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The reach of `playbook` (absolute), with `roles_path` entries (absolute).
pub fn playbook_reach(def_dir: &Path, playbook: &Path, roles_path: &[PathBuf]) -> Reach {
    let playbook_dir = playbook
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| def_dir.to_path_buf());
    let mut walker = Walker {
        playbook_dir: playbook_dir.clone(),
        roles_path: roles_path.to_vec(),
        reach: Reach::default(),
        seen_roles: BTreeSet::new(),
        seen_files: BTreeSet::new(),
        _def_dir: def_dir,
    };
    for name in ["group_vars", "host_vars"] {
        if playbook_dir.join(name).is_dir() {
            walker.reach.dirs.insert(playbook_dir.join(name));
        }
    }
    for name in ["ansible.cfg", "requirements.yml"] {
        if playbook_dir.join(name).is_file() {
            walker.reach.files.insert(playbook_dir.join(name));
        }
    }
    walker.playbook(playbook);
    walker.reach
}

impl Walker<'_> {
    fn dynamic(&mut self, what: String) {
        if self.reach.dynamic.is_none() {
            self.reach.dynamic = Some(what);
        }
    }

    fn playbook(&mut self, path: &Path) {
        if !self.seen_files.insert(path.to_path_buf()) {
            return;
        }
        self.reach.files.insert(path.to_path_buf());
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let Some(Yaml::Sequence(plays)) = read_yaml(path) else {
            return;
        };
        for play in &plays {
            for key in ["import_playbook", "ansible.builtin.import_playbook"] {
                if let Some(target) = play.get(key).and_then(Yaml::as_str) {
                    if is_dynamic(target) {
                        self.dynamic(format!(
                            "{} imports a playbook by a variable name ({target})",
                            path.display()
                        ));
                    } else {
                        self.playbook(&base.join(target));
                    }
                }
            }
            if let Some(Yaml::Sequence(files)) = play.get("vars_files") {
                for f in files.iter().filter_map(Yaml::as_str) {
                    if is_dynamic(f) {
                        self.dynamic(format!(
                            "{} reads vars_files by a variable name ({f})",
                            path.display()
                        ));
                    } else {
                        self.reach.files.insert(base.join(f));
                    }
                }
            }
            if let Some(Yaml::Sequence(roles)) = play.get("roles") {
                for r in roles {
                    let name = r.as_str().map(str::to_owned).or_else(|| {
                        r.get("role")
                            .or_else(|| r.get("name"))
                            .and_then(Yaml::as_str)
                            .map(str::to_owned)
                    });
                    if let Some(name) = name {
                        self.role(&name, path);
                    }
                }
            }
            for list in TASK_LISTS {
                if let Some(Yaml::Sequence(tasks)) = play.get(*list) {
                    self.tasks(tasks, &base, path);
                }
            }
        }
    }

    fn tasks(&mut self, tasks: &[Yaml], base: &Path, from: &Path) {
        for task in tasks {
            for key in ["block", "rescue", "always"] {
                if let Some(Yaml::Sequence(inner)) = task.get(key) {
                    self.tasks(inner, base, from);
                }
            }
            for key in INCLUDE_ROLE {
                if let Some(spec) = task.get(*key) {
                    let name = spec
                        .as_str()
                        .or_else(|| spec.get("name").and_then(Yaml::as_str))
                        .unwrap_or_default()
                        .to_owned();
                    self.role(&name, from);
                }
            }
            for key in INCLUDE_TASKS {
                if let Some(spec) = task.get(*key) {
                    let file = spec
                        .as_str()
                        .or_else(|| spec.get("file").and_then(Yaml::as_str))
                        .unwrap_or_default()
                        .to_owned();
                    if is_dynamic(&file) || file.is_empty() {
                        self.dynamic(format!(
                            "{} includes tasks by a variable name ({file})",
                            from.display()
                        ));
                        continue;
                    }
                    let path = base.join(&file);
                    if self.seen_files.insert(path.clone()) {
                        self.reach.files.insert(path.clone());
                        if let Some(Yaml::Sequence(inner)) = read_yaml(&path) {
                            let inner_base = path
                                .parent()
                                .map(Path::to_path_buf)
                                .unwrap_or_else(|| base.to_path_buf());
                            self.tasks(&inner, &inner_base, &path);
                        }
                    }
                }
            }
        }
    }

    fn find_role(&self, name: &str) -> Option<PathBuf> {
        std::iter::once(self.playbook_dir.join("roles"))
            .chain(self.roles_path.iter().cloned())
            .map(|d| d.join(name))
            .find(|d| d.is_dir())
    }

    fn role(&mut self, name: &str, from: &Path) {
        if name.is_empty() || is_dynamic(name) {
            self.dynamic(format!(
                "{} uses a role by a variable name ({name})",
                from.display()
            ));
            return;
        }
        if !self.seen_roles.insert(name.to_owned()) {
            return;
        }
        // A role not found here is installed at run time (galaxy_file).
        let Some(dir) = self.find_role(name) else {
            return;
        };
        self.reach.dirs.insert(dir.clone());
        if let Some(meta) =
            read_yaml(&dir.join("meta/main.yml")).or_else(|| read_yaml(&dir.join("meta/main.yaml")))
        {
            if let Some(Yaml::Sequence(deps)) = meta.get("dependencies") {
                for d in deps {
                    let dep = d.as_str().map(str::to_owned).or_else(|| {
                        d.get("role")
                            .or_else(|| d.get("name"))
                            .and_then(Yaml::as_str)
                            .map(str::to_owned)
                    });
                    if let Some(dep) = dep {
                        self.role(&dep, &dir.join("meta/main.yml"));
                    }
                }
            }
        }
        for sub in ["tasks", "handlers"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect();
            files.sort();
            for f in files {
                if let Some(Yaml::Sequence(tasks)) = read_yaml(&f) {
                    let base = dir.join(sub);
                    self.tasks_in_role(&tasks, &base, &f);
                }
            }
        }
    }

    /// Role task files: their includes are relative to the role's tasks
    /// dir, and the files themselves are already in the role's tree.
    fn tasks_in_role(&mut self, tasks: &[Yaml], base: &Path, from: &Path) {
        let before = self.reach.files.clone();
        self.tasks(tasks, base, from);
        // Keep only files outside the role dirs (inside ones are hashed already).
        let dirs = self.reach.dirs.clone();
        self.reach
            .files
            .retain(|f| before.contains(f) || !dirs.iter().any(|d| f.starts_with(d)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_roles_dependencies_and_includes() {
        let d = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "site.yml",
            "- hosts: all\n  roles:\n    - web\n  tasks:\n    - include_tasks: extra.yml\n",
        );
        w("extra.yml", "- debug: msg=hi\n");
        w(
            "roles/web/tasks/main.yml",
            "- include_role:\n    name: tls\n",
        );
        w(
            "roles/web/meta/main.yml",
            "dependencies:\n  - role: common\n",
        );
        w("roles/common/tasks/main.yml", "- debug: msg=common\n");
        w("roles/tls/tasks/main.yml", "- debug: msg=tls\n");
        w("roles/unused/tasks/main.yml", "- debug: msg=unused\n");
        let r = playbook_reach(d.path(), &d.path().join("site.yml"), &[]);
        let names: Vec<String> = r
            .dirs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["common", "tls", "web"]);
        assert!(r.files.contains(&d.path().join("extra.yml")));
        assert!(r.dynamic.is_none());
        w(
            "site.yml",
            "- hosts: all\n  tasks:\n    - include_tasks: \"{{ item }}.yml\"\n",
        );
        assert!(playbook_reach(d.path(), &d.path().join("site.yml"), &[])
            .dynamic
            .is_some());
    }
}
