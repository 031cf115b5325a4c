//! Every attribute and block a builder, provisioner or post-processor
//! schema lists is either
//! acted on (the code outside the schema declarations reads it by name) or
//! marked `ignored` (a warning when it is set): a template never sets
//! something imgform silently does nothing with.

use std::path::{Path, PathBuf};

use crate::{data, drivers, postprocess, provision};

/// The Rust sources of the crate, test code left out (`*_tests.rs`, and
/// each file's `#[cfg(test)] mod`), comments dropped, and with the
/// schema declarations (`setting("x")`, `block(\n "x"`, ...) removed.
fn code_without_declarations() -> String {
    code_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), |_| true)
}

/// [`code_without_declarations`] of the files under `dir` that `keep`
/// takes.
fn code_of(dir: &Path, keep: impl Fn(&Path) -> bool) -> String {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("src entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.retain(|f| keep(f));
    let declaration =
        regex::Regex::new(r#"\b(input|setting|secret|block|blocks|filter_block)\(\s*"[a-z0-9_]+""#)
            .unwrap();
    let mut code = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        // A file's test module is its tail: `#[cfg(test)]`, maybe a
        // `#[path]`, then `mod`.
        let tests_start = (0..lines.len())
            .find(|&i| {
                lines[i].trim() == "#[cfg(test)]"
                    && lines[i + 1..]
                        .iter()
                        .find(|l| !l.trim_start().starts_with("#["))
                        .is_some_and(|l| l.trim_start().starts_with("mod "))
            })
            .unwrap_or(lines.len());
        let text: String = lines[..tests_start]
            .iter()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        code.push_str(&declaration.replace_all(&text, "DECLARED"));
    }
    code
}

#[test]
fn every_schema_attribute_is_acted_on_or_warned_about() {
    let code = code_without_declarations();
    let mut silent = Vec::new();
    let schemas = drivers::KINDS
        .iter()
        .map(|k| &k.schema)
        .chain(provision::KINDS.iter().map(|k| &k.schema))
        .chain(postprocess::KINDS.iter().map(|k| &k.schema));
    for schema in schemas {
        let attrs = schema.all_attrs().map(|a| (a.name, a.ignored));
        let blocks = schema.blocks.iter().map(|b| (b.name, b.ignored));
        for (name, ignored) in attrs.chain(blocks) {
            if ignored.is_none() && !code.contains(&format!("\"{name}\"")) {
                silent.push(format!("{} `{name}`", schema.kind));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "attributes accepted but neither acted on nor marked ignored (a warning):\n  {}",
        silent.join("\n  ")
    );
}

/// The same for data sources, stricter: a kind's attributes must be read
/// by its own module (`src/data/<kind>.rs`) or the helpers its family
/// shares (`aws_access.rs`, `git.rs`): the AWS access attributes are
/// read elsewhere by the builders, which says nothing about data sources.
#[test]
fn every_data_source_attribute_is_acted_on_or_warned_about() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data");
    let mut silent = Vec::new();
    for kind in data::KINDS {
        let module = format!("{}.rs", kind.name().replace('-', "_"));
        let family = kind.name().split('-').next().unwrap_or_default().to_owned();
        let code = code_of(&dir, |f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name == module
                || (family == "amazon" && name == "aws_access.rs")
                || (family == "git" && name == "git.rs")
        });
        assert!(!code.is_empty(), "no module {module} for {}", kind.name());
        let schema = &kind.schema;
        let attrs = schema.all_attrs().map(|a| (a.name, a.ignored));
        let blocks = schema.blocks.iter().map(|b| (b.name, b.ignored));
        for (name, ignored) in attrs.chain(blocks) {
            if ignored.is_none() && !code.contains(&format!("\"{name}\"")) {
                silent.push(format!("data {} `{name}`", schema.kind));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "data source attributes accepted but neither acted on nor marked ignored:\n  {}",
        silent.join("\n  ")
    );
}

/// The same for post-processors, stricter: an attribute must be read by
/// the code that runs post-processors (`src/postprocess/`), by the
/// `shell-local` code the `shell-local` post-processor shares with the
/// provisioner (`provision/shell_local.rs`, the environment in
/// `provision/mod.rs`), or where `only`/`except` pick the sources
/// (`config/build.rs`).
#[test]
fn every_post_processor_attribute_is_acted_on_or_warned_about() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let code = code_of(&src, |f| {
        let rel = f.strip_prefix(&src).unwrap_or(f);
        rel.starts_with("postprocess")
            || rel == Path::new("provision/shell_local.rs")
            || rel == Path::new("provision/mod.rs")
            || rel == Path::new("config/build.rs")
    });
    let mut silent = Vec::new();
    for kind in postprocess::KINDS {
        let schema = &kind.schema;
        for attr in schema.all_attrs() {
            if attr.ignored.is_none() && !code.contains(&format!("\"{}\"", attr.name)) {
                silent.push(format!("post-processor {} `{}`", schema.kind, attr.name));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "post-processor attributes accepted but neither acted on nor marked ignored:\n  {}",
        silent.join("\n  ")
    );
}

#[test]
fn an_ignored_attribute_is_found_only_when_set() {
    let schema = &drivers::kind_of("amazon-ebs").unwrap().schema;
    let config: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
        serde_json::json!({"spot_price": "auto", "mfa_code": "", "enable_nitro_enclave": false, "region": "x"}),
    )
    .unwrap();
    let found: Vec<&str> = schema
        .ignored_in(|n| config.get(n))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(found, ["spot_price"]);
}
