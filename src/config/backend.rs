//! The `backend` block: where the state is kept.
//!
//! ```hcl
//! backend "s3" {
//!   bucket     = "acme-images-state"
//!   key_prefix = "imgform"          # default
//!   region     = "eu-west-1"
//!   endpoint   = "http://127.0.0.1:9000"  # MinIO, moto: path-style
//!   profile    = "ci"
//! }
//! ```
//!
//! Settings are literal strings only, as in Terraform's backend blocks: the
//! state must be found before (and without) evaluating anything, so commands
//! that never load the definitions (`state list`, `force-unlock`) find the
//! same backend through [`load_backend`], which only parses the files.
//! `--backend-config KEY=VALUE` flags override the block's settings, or
//! configure an `s3` backend on their own when there is no block.
//!
//! Nothing here talks to a backend: `commands::prepare::backend_for` turns a
//! [`BackendConfig`] into one.

use std::collections::BTreeMap;
use std::path::Path;

use super::parse::{self, RawBlock};
use crate::diag::closest;
use crate::diag::{Diagnostic, Diagnostics, SourceLoc};

/// The settings an `s3` backend takes.
pub const S3_SETTINGS: &[&str] = &["bucket", "key_prefix", "region", "endpoint", "profile"];
const BACKEND_TYPES: &[&str] = &["local", "s3"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `state/` in the definition dir (the default).
    Local,
    S3,
}

/// A backend block (or `--backend-config` flags): its type and literal
/// settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub kind: BackendKind,
    /// Setting name → value; only names valid for `kind`.
    pub settings: BTreeMap<String, String>,
    /// Where the block is; `None` when it comes from flags only.
    pub loc: Option<SourceLoc>,
}

impl BackendConfig {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }
}

/// Checks one `backend "TYPE" { ... }` block; `previous` is an earlier one
/// (only one is allowed).
pub(crate) fn backend_block(
    block: &RawBlock,
    previous: Option<&BackendConfig>,
) -> Result<BackendConfig, Vec<Diagnostic>> {
    let error = |loc: &SourceLoc, summary: String, hint: String| {
        Diagnostic::error(summary).at(Some(loc.clone())).hint(hint)
    };
    if let Some(previous) = previous {
        let at = previous
            .loc
            .as_ref()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        return Err(vec![error(
            &block.loc,
            "duplicate backend block".to_owned(),
            format!("the state has one home: a backend block is already defined{at}; remove one of them"),
        )]);
    }
    let kind = match block.labels.as_slice() {
        [kind] if kind == "s3" => BackendKind::S3,
        [kind] if kind == "local" => BackendKind::Local,
        [other] => {
            let hint = match closest(other, BACKEND_TYPES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? imgform keeps state in `local` (state/ in the definition dir) or `s3`"),
                None => "imgform keeps state in `local` (state/ in the definition dir) or `s3`".to_owned(),
            };
            return Err(vec![error(
                &block.loc,
                format!("unknown backend type `{other}`"),
                hint,
            )]);
        }
        _ => {
            return Err(vec![error(
                &block.loc,
                "a backend block needs one label: its type".to_owned(),
                "write `backend \"s3\" { bucket = \"...\" }`".to_owned(),
            )])
        }
    };
    let allowed: &[&str] = match kind {
        BackendKind::S3 => S3_SETTINGS,
        BackendKind::Local => &[],
    };
    let mut diags = Vec::new();
    let mut settings = BTreeMap::new();
    for attr in &block.attrs {
        if !allowed.contains(&attr.name.as_str()) {
            diags.push(error(
                &attr.loc,
                format!(
                    "unknown attribute `{}` in backend \"{}\"",
                    attr.name, block.labels[0]
                ),
                unknown_setting_hint(kind, &attr.name),
            ));
            continue;
        }
        match &attr.expr {
            hcl::Expression::String(value) => {
                settings.insert(attr.name.clone(), value.clone());
            }
            _ => diags.push(error(
                &attr.loc,
                format!("backend setting `{}` must be a literal string", attr.name),
                "the state is found before anything is evaluated, so variables, locals and functions cannot be used here; pass a value that varies with --backend-config NAME=VALUE".to_owned(),
            )),
        }
    }
    for inner in &block.blocks {
        diags.push(error(
            &inner.loc,
            format!("unexpected block `{}` in a backend block", inner.kind),
            "a backend block holds only `name = \"value\"` settings".to_owned(),
        ));
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(BackendConfig {
        kind,
        settings,
        loc: Some(block.loc.clone()),
    })
}

fn unknown_setting_hint(kind: BackendKind, name: &str) -> String {
    match kind {
        BackendKind::Local => {
            "the local backend takes no settings: its state is in state/ in the definition dir"
                .to_owned()
        }
        BackendKind::S3 => {
            let known = S3_SETTINGS.join(", ");
            match closest(name, S3_SETTINGS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? The s3 backend takes {known}"),
                None => format!("the s3 backend takes {known}"),
            }
        }
    }
}

/// Only the `backend` block of the definitions in `dir` (files are parsed,
/// nothing is evaluated). `None` when there is none, or no definition files.
pub fn load_backend(dir: &Path) -> Result<Option<BackendConfig>, Diagnostics> {
    let paths = match super::definition_files(dir) {
        Ok(paths) => paths,
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::error(format!(
                "cannot list {}: {e}",
                dir.display()
            ))]))
        }
    };
    let mut diags = Vec::new();
    let mut backend: Option<BackendConfig> = None;
    for path in &paths {
        let display = match path.strip_prefix(dir) {
            Ok(rel) if dir != Path::new(".") => dir.join(rel),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => path.clone(),
        };
        let file = match parse::parse_file(path, &display) {
            Ok(file) => file,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        for block in file.blocks.iter().filter(|b| b.kind == "backend") {
            match backend_block(block, backend.as_ref()) {
                Ok(config) => backend = Some(config),
                Err(d) => diags.extend(d),
            }
        }
    }
    if diags.is_empty() {
        Ok(backend)
    } else {
        Err(Diagnostics(diags))
    }
}

/// A `--backend-config` flag that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendFlagError {
    #[error("--backend-config `{flag}` is not KEY=VALUE")]
    NotKeyValue { flag: String },
    #[error(
        "--backend-config `{name}` does not apply: the definitions choose the local backend{}, which takes no settings",
        at.as_ref().map(|l| format!(" (at {l})")).unwrap_or_default()
    )]
    LocalTakesNoSettings { name: String, at: Option<SourceLoc> },
    #[error("--backend-config: unknown setting `{name}`")]
    UnknownSetting { name: String },
}

impl BackendFlagError {
    pub fn hint(&self) -> String {
        match self {
            BackendFlagError::NotKeyValue { .. } => {
                "e.g. --backend-config bucket=acme-images-state".to_owned()
            }
            BackendFlagError::LocalTakesNoSettings { .. } => {
                "use backend \"s3\" to keep the state on S3".to_owned()
            }
            BackendFlagError::UnknownSetting { name } => {
                unknown_setting_hint(BackendKind::S3, name)
            }
        }
    }
}

/// The backend block with `--backend-config KEY=VALUE` flags applied (later
/// flags win). Flags without a block configure an `s3` backend.
pub fn with_flags(
    block: Option<BackendConfig>,
    flags: &[String],
) -> Result<Option<BackendConfig>, BackendFlagError> {
    if flags.is_empty() {
        return Ok(block);
    }
    let mut config = block.unwrap_or(BackendConfig {
        kind: BackendKind::S3,
        settings: BTreeMap::new(),
        loc: None,
    });
    for flag in flags {
        let Some((name, value)) = flag.split_once('=') else {
            return Err(BackendFlagError::NotKeyValue { flag: flag.clone() });
        };
        let name = name.trim();
        match config.kind {
            BackendKind::Local => {
                return Err(BackendFlagError::LocalTakesNoSettings {
                    name: name.to_owned(),
                    at: config.loc.clone(),
                })
            }
            BackendKind::S3 if !S3_SETTINGS.contains(&name) => {
                return Err(BackendFlagError::UnknownSetting {
                    name: name.to_owned(),
                })
            }
            BackendKind::S3 => {
                config.settings.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(diags: &[Diagnostic]) -> String {
        crate::views::diagnostics::render(diags, crate::views::Style { color: false })
    }

    fn block(text: &str) -> Result<BackendConfig, Vec<Diagnostic>> {
        let file = parse::parse_hcl(text, Path::new("main.pkr.hcl")).unwrap();
        backend_block(&file.blocks[0], None)
    }

    #[test]
    fn s3_block_with_literal_settings() {
        let config = block(
            "backend \"s3\" {\n  bucket = \"b\"\n  key_prefix = \"team/images\"\n  region = \"eu-west-1\"\n}\n",
        )
        .unwrap();
        assert_eq!(config.kind, BackendKind::S3);
        assert_eq!(config.get("bucket"), Some("b"));
        assert_eq!(config.get("key_prefix"), Some("team/images"));
        assert_eq!(config.loc.unwrap().line, 1);
    }

    #[test]
    fn unknown_settings_types_and_expressions_are_placed() {
        let diags = block("backend \"s3\" {\n  bucket = \"b\"\n  regoin = \"x\"\n}\n").unwrap_err();
        let text = render(&diags);
        assert!(text.contains("main.pkr.hcl:3:3"), "{text}");
        assert!(text.contains("did you mean `region`"), "{text}");

        let diags = block("backend \"s3\" {\n  bucket = var.bucket\n}\n").unwrap_err();
        assert!(render(&diags).contains("literal string"));
        let diags = block("backend \"s3\" {\n  bucket = \"${var.b}\"\n}\n").unwrap_err();
        assert!(render(&diags).contains("literal string"));

        let diags = block("backend \"gcs\" {}\n").unwrap_err();
        assert!(render(&diags).contains("unknown backend type `gcs`"));
        let diags = block("backend \"local\" {\n  path = \"x\"\n}\n").unwrap_err();
        assert!(render(&diags).contains("takes no settings"));
    }

    #[test]
    fn flags_override_the_block_or_stand_alone() {
        let base = block("backend \"s3\" {\n  bucket = \"b\"\n  region = \"r\"\n}\n").unwrap();
        let merged = with_flags(
            Some(base.clone()),
            &["region=eu-west-1".into(), "endpoint=http://x:1".into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(merged.get("bucket"), Some("b"));
        assert_eq!(merged.get("region"), Some("eu-west-1"));
        assert_eq!(merged.get("endpoint"), Some("http://x:1"));
        assert_eq!(
            with_flags(Some(base), &[]).unwrap().unwrap().get("region"),
            Some("r")
        );

        let alone = with_flags(None, &["bucket=x".into()]).unwrap().unwrap();
        assert_eq!(alone.kind, BackendKind::S3);
        assert_eq!(with_flags(None, &[]).unwrap(), None);

        assert!(with_flags(None, &["bucket".into()])
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
        assert!(with_flags(None, &["bukket=x".into()])
            .unwrap_err()
            .hint()
            .contains("did you mean `bucket`"));
        let local = block("backend \"local\" {}\n").unwrap();
        assert!(with_flags(Some(local), &["bucket=x".into()]).is_err());
    }
}
