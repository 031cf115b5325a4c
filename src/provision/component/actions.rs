//! The shell scripts that carry out a component step on the machine: its
//! commands (`ExecuteBash`), its binary (`ExecuteBinary`), or a script
//! imgform writes for the file, folder, download and update actions.
//!
//! Every path and value from a document goes into a script quoted
//! ([`sh_quote`]). An input that is missing is an `Err` naming it, which the
//! runner reports as the step's failure. `Reboot`, `S3Download` and
//! `S3Upload` are not scripts: the runner handles them.

use serde_yaml::Value as Yaml;

use super::document::yaml_str;

pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

/// The shell script a step runs on the machine.
pub(super) fn step_script(action: &str, inputs: &Yaml) -> Result<String, String> {
    match action {
        "ExecuteBash" => {
            if let Some(commands) = inputs.get("commands").and_then(Yaml::as_sequence) {
                Ok(commands.iter().map(yaml_str).collect::<Vec<_>>().join("\n"))
            } else if let Some(file) = inputs.get("file").map(yaml_str) {
                Ok(format!("sh {}", sh_quote(&file)))
            } else {
                Err("ExecuteBash needs inputs.commands or inputs.file".to_owned())
            }
        }
        "ExecuteBinary" => {
            let path = inputs.get("path").map(yaml_str).unwrap_or_default();
            let args: Vec<String> = inputs
                .get("arguments")
                .and_then(Yaml::as_sequence)
                .map(|a| a.iter().map(|v| sh_quote(&yaml_str(v))).collect())
                .unwrap_or_default();
            Ok(format!("{} {}", sh_quote(&path), args.join(" ")))
        }
        other => action_script(other, inputs),
    }
}

/// The shell script that carries out a (non-ExecuteBash) action on the machine.
pub(super) fn action_script(action: &str, inputs: &Yaml) -> Result<String, String> {
    let items: Vec<&Yaml> = match inputs {
        Yaml::Sequence(items) => items.iter().collect(),
        Yaml::Null => Vec::new(),
        other => vec![other],
    };
    let mut script = Script {
        action,
        text: String::from("set -e\n"),
    };
    match action {
        "CreateFile" => script.create_file(&items)?,
        "CreateFolder" => script.create_folder(&items)?,
        "CopyFile" | "MoveFile" => script.copy_or_move(&items)?,
        "DeleteFile" => script.delete_file(&items)?,
        "DeleteFolder" => script.delete_folder(&items)?,
        "SetFilePermissions" => script.set_file_permissions(&items)?,
        "SetFileOwner" => script.set_file_owner(&items)?,
        "WebDownload" => script.web_download(&items)?,
        "UpdateOS" => script.text.push_str(UPDATE_OS),
        other => return Err(format!("{other} is not handled here")),
    }
    Ok(script.text)
}

/// Upgrades every package with the image's package manager.
const UPDATE_OS: &str = "if command -v apt-get >/dev/null 2>&1; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade;\n\
                 elif command -v dnf >/dev/null 2>&1; then dnf -y -q upgrade;\n\
                 elif command -v yum >/dev/null 2>&1; then yum -y -q update;\n\
                 elif command -v zypper >/dev/null 2>&1; then zypper --non-interactive update;\n\
                 else echo 'UpdateOS: no apt-get, dnf, yum or zypper in this image' >&2; exit 1; fi\n";

fn field(item: &Yaml, key: &str) -> Option<String> {
    item.get(key).map(yaml_str)
}

/// The script of one action, as it is written: one block per input item.
struct Script<'a> {
    action: &'a str,
    text: String,
}

impl Script<'_> {
    fn need(&self, item: &Yaml, key: &str) -> Result<String, String> {
        let action = self.action;
        field(item, key).ok_or_else(|| format!("{action} input needs `{key}`"))
    }

    /// The item's `permissions`, `owner` and `group`, applied to `path`.
    fn chmod_chown(&mut self, item: &Yaml, path: &str) {
        if let Some(p) = field(item, "permissions") {
            self.text
                .push_str(&format!("chmod {} {}\n", sh_quote(&p), sh_quote(path)));
        }
        if let Some(o) = field(item, "owner") {
            let g = field(item, "group")
                .map(|g| format!(":{g}"))
                .unwrap_or_default();
            self.text.push_str(&format!(
                "chown {} {}\n",
                sh_quote(&format!("{o}{g}")),
                sh_quote(path)
            ));
        }
    }

    fn create_file(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let path = self.need(item, "path")?;
            let content = field(item, "content").unwrap_or_default();
            let overwrite = item
                .get("overwrite")
                .and_then(Yaml::as_bool)
                .unwrap_or(true);
            if !overwrite {
                self.text.push_str(&format!("if [ -e {p} ]; then echo 'CreateFile: {p} exists and overwrite is false' >&2; exit 1; fi\n", p = sh_quote(&path)));
            }
            self.text.push_str(&format!(
                "mkdir -p \"$(dirname {p})\"\nprintf '%s' {c} > {p}\n",
                p = sh_quote(&path),
                c = sh_quote(&content)
            ));
            self.chmod_chown(item, &path);
        }
        Ok(())
    }

    fn create_folder(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let path = self.need(item, "path")?;
            self.text
                .push_str(&format!("mkdir -p {}\n", sh_quote(&path)));
            self.chmod_chown(item, &path);
        }
        Ok(())
    }

    /// `CopyFile` and `MoveFile`.
    fn copy_or_move(&mut self, items: &[&Yaml]) -> Result<(), String> {
        let action = self.action;
        for item in items {
            let (src, dst) = (self.need(item, "source")?, self.need(item, "destination")?);
            let overwrite = item
                .get("overwrite")
                .and_then(Yaml::as_bool)
                .unwrap_or(true);
            if !overwrite {
                self.text.push_str(&format!("if [ -e {d} ]; then echo '{action}: {d} exists and overwrite is false' >&2; exit 1; fi\n", d = sh_quote(&dst)));
            }
            let verb = if action == "CopyFile" {
                "cp -p"
            } else {
                "mv -f"
            };
            self.text.push_str(&format!(
                "mkdir -p \"$(dirname {d})\"\n{verb} {s} {d}\n",
                s = sh_quote(&src),
                d = sh_quote(&dst)
            ));
            self.chmod_chown(item, &dst);
        }
        Ok(())
    }

    fn delete_file(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let path = self.need(item, "path")?;
            self.text.push_str(&format!("rm -f {}\n", sh_quote(&path)));
        }
        Ok(())
    }

    fn delete_folder(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let force = item.get("force").and_then(Yaml::as_bool).unwrap_or(false);
            let flag = if force { "-rf" } else { "-d" };
            let path = self.need(item, "path")?;
            self.text
                .push_str(&format!("rm {flag} {}\n", sh_quote(&path)));
        }
        Ok(())
    }

    fn set_file_permissions(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let (path, perm) = (self.need(item, "path")?, self.need(item, "permissions")?);
            self.text
                .push_str(&format!("chmod {} {}\n", sh_quote(&perm), sh_quote(&path)));
        }
        Ok(())
    }

    fn set_file_owner(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let path = self.need(item, "path")?;
            let owner = self.need(item, "owner")?;
            let g = field(item, "group")
                .map(|g| format!(":{g}"))
                .unwrap_or_default();
            let recursive = if item
                .get("recursive")
                .and_then(Yaml::as_bool)
                .unwrap_or(false)
            {
                "-R "
            } else {
                ""
            };
            self.text.push_str(&format!(
                "chown {recursive}{} {}\n",
                sh_quote(&format!("{owner}{g}")),
                sh_quote(&path)
            ));
        }
        Ok(())
    }

    /// http(s) only, fetched on the machine with curl or wget, then checked
    /// against `checksum` when given.
    fn web_download(&mut self, items: &[&Yaml]) -> Result<(), String> {
        for item in items {
            let (src, dst) = (self.need(item, "source")?, self.need(item, "destination")?);
            if !(src.starts_with("http://") || src.starts_with("https://")) {
                return Err(format!("WebDownload source `{src}` is not http(s)"));
            }
            self.text.push_str(&format!(
                "mkdir -p \"$(dirname {d})\"\nif command -v curl >/dev/null 2>&1; then curl -fsSL -o {d} {s}; else wget -q -O {d} {s}; fi\n",
                s = sh_quote(&src),
                d = sh_quote(&dst)
            ));
            if let Some(sum) = field(item, "checksum") {
                let algo = field(item, "algorithm")
                    .unwrap_or_else(|| "SHA256".to_owned())
                    .to_ascii_lowercase()
                    .replace('-', "");
                self.text.push_str(&format!(
                    "echo {sum}'  '{d} | {algo}sum -c - >/dev/null || {{ echo 'WebDownload: checksum mismatch for {d}' >&2; exit 1; }}\n",
                    sum = sh_quote(&sum),
                    d = sh_quote(&dst)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_paths() {
        let inputs: Yaml =
            serde_yaml::from_str("- path: /tmp/a b\n  content: it's\n  permissions: '0600'\n")
                .unwrap();
        let s = action_script("CreateFile", &inputs).unwrap();
        assert!(
            s.contains("'/tmp/a b'") && s.contains("chmod '0600'"),
            "{s}"
        );
    }
}
