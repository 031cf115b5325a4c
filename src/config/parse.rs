//! Files → untyped block trees that remember where everything came from.
//!
//! HCL native syntax is parsed with hcl-rs's `hcl_edit` parser (which keeps
//! byte spans), then every attribute value is converted into an
//! `hcl::Expression` for evaluation. Packer's JSON variant (`*.pkr.json`) is
//! mapped onto the same tree using the table of known block kinds, because
//! JSON alone cannot say what is a block and what is an attribute.
//!
//! Nothing here knows what a block means; `config::load` interprets them.

use std::path::{Path, PathBuf};

use hcl::edit::structure::{Block as EditBlock, BlockLabel, Body as EditBody, Structure};
use hcl::edit::Span;

use crate::diag::{Diagnostic, LineIndex, SourceLoc};

#[derive(Debug, Clone)]
pub struct RawAttr {
    pub name: String,
    pub expr: hcl::Expression,
    pub loc: SourceLoc,
    /// The value as written (HCL source, or the JSON text of the value), used
    /// for static reference scanning.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct RawBlock {
    pub kind: String,
    pub labels: Vec<String>,
    pub attrs: Vec<RawAttr>,
    pub blocks: Vec<RawBlock>,
    pub loc: SourceLoc,
}

impl RawBlock {
    pub fn attr(&self, name: &str) -> Option<&RawAttr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The source text and place of every attribute, nested blocks included
    /// (for static reference scanning).
    pub fn texts(&self) -> Vec<(&str, &SourceLoc)> {
        let mut out: Vec<(&str, &SourceLoc)> = self
            .attrs
            .iter()
            .map(|a| (a.text.as_str(), &a.loc))
            .collect();
        for inner in &self.blocks {
            out.extend(inner.texts());
        }
        out
    }
}

/// One parsed file: its top-level attributes (only meaningful in variable
/// files) and blocks.
#[derive(Debug, Clone)]
pub struct RawFile {
    pub path: PathBuf,
    pub attrs: Vec<RawAttr>,
    pub blocks: Vec<RawBlock>,
}

/// Parses one HCL or JSON file. `display` is how the path is shown in
/// diagnostics.
pub fn parse_file(path: &Path, display: &Path) -> Result<RawFile, Diagnostic> {
    crate::watch::path(path);
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::error(format!("cannot read {}: {e}", display.display()))
            .hint("check that the file exists and is readable UTF-8 text")
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Point at the first byte that is not UTF-8.
        let valid = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        Diagnostic::error(format!(
            "{} is not UTF-8 text: byte 0x{:02x} cannot start a character here",
            display.display(),
            e.as_bytes()[valid]
        ))
        .at(Some(SourceLoc::from_offset(display, &prefix, valid)))
        .hint("save the file as UTF-8")
    })?;
    if path.extension().is_some_and(|e| e == "json") {
        parse_json(&text, display)
    } else {
        parse_hcl(&text, display)
    }
}

pub fn parse_hcl(text: &str, display: &Path) -> Result<RawFile, Diagnostic> {
    if text.len() >= PARALLEL_PARSE_BYTES {
        if let Some(file) = parse_hcl_in_pieces(text, display) {
            return Ok(file);
        }
    }
    let body = hcl::edit::parser::parse_body(text).map_err(|err| {
        let loc = err.location();
        Diagnostic::error(format!("syntax error: {}", err.message()))
            .at(Some(SourceLoc {
                file: display.to_path_buf(),
                line: loc.line(),
                col: loc.column(),
            }))
            .hint("this is HCL2 as Packer writes it: blocks look like `source \"null\" \"name\" { ... }`, attributes like `key = value`")
    })?;
    let index = LineIndex::new(text);
    let src = Src {
        text,
        full: text,
        base: 0,
        display,
        index: &index,
    };
    let (attrs, blocks) = convert_body(body, &src);
    Ok(RawFile {
        path: display.to_path_buf(),
        attrs,
        blocks,
    })
}

/// Files at least this large are parsed in pieces, in parallel.
const PARALLEL_PARSE_BYTES: usize = 128 * 1024;

/// Parses a large file as pieces cut between top-level blocks (after a line
/// that is just `}`), one thread per piece. Any piece that does not parse
/// on its own (a cut inside a heredoc or a comment) makes the caller parse
/// the whole file instead, so errors are reported exactly as usual.
fn parse_hcl_in_pieces(text: &str, display: &Path) -> Option<RawFile> {
    let threads = crate::threads(8);
    if threads < 2 {
        return None;
    }
    // Candidate cuts: the start of the line after each "}" line.
    let mut cuts = vec![0];
    let target = text.len() / threads;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == "}" && offset - cuts[cuts.len() - 1] >= target && cuts.len() < threads
        {
            cuts.push(offset);
        }
    }
    cuts.push(text.len());
    let index = LineIndex::new(text);
    let pieces: Vec<Option<(Vec<RawAttr>, Vec<RawBlock>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                let index = &index;
                scope.spawn(move || {
                    let piece = &text[start..end];
                    let body = hcl::edit::parser::parse_body(piece).ok()?;
                    let src = Src {
                        text: piece,
                        full: text,
                        base: start,
                        display,
                        index,
                    };
                    Some(convert_body(body, &src))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut attrs = Vec::new();
    let mut blocks = Vec::new();
    for piece in pieces {
        let (a, b) = piece?;
        attrs.extend(a);
        blocks.extend(b);
    }
    Some(RawFile {
        path: display.to_path_buf(),
        attrs,
        blocks,
    })
}

/// One source text being converted: the piece parsed (`text`, starting at
/// byte `base` of the whole file `full`), its display path and line index.
struct Src<'a> {
    text: &'a str,
    full: &'a str,
    base: usize,
    display: &'a Path,
    index: &'a LineIndex,
}

fn loc_of(span: Option<std::ops::Range<usize>>, src: &Src) -> SourceLoc {
    src.index.loc(
        src.display,
        src.full,
        src.base + span.map(|s| s.start).unwrap_or(0),
    )
}

/// Consumes the parsed body (no copies of expressions).
fn convert_body(body: EditBody, src: &Src) -> (Vec<RawAttr>, Vec<RawBlock>) {
    let text = src.text;
    let mut attrs = Vec::new();
    let mut blocks = Vec::new();
    for structure in body {
        match structure {
            Structure::Attribute(attr) => {
                let value_text = attr
                    .value
                    .span()
                    .and_then(|s| text.get(s))
                    .unwrap_or_default()
                    .to_owned();
                let loc = loc_of(attr.span(), src);
                let name = attr.key.as_str().to_owned();
                attrs.push(RawAttr {
                    name,
                    expr: hcl::Expression::from(attr.value),
                    loc,
                    text: value_text,
                });
            }
            Structure::Block(block) => blocks.push(convert_block(block, src)),
        }
    }
    (attrs, blocks)
}

fn convert_block(block: EditBlock, src: &Src) -> RawBlock {
    let loc = loc_of(block.span(), src);
    let kind = block.ident.as_str().to_owned();
    let labels = block
        .labels
        .iter()
        .map(|l| match l {
            BlockLabel::Ident(i) => i.as_str().to_owned(),
            BlockLabel::String(s) => s.as_str().to_owned(),
        })
        .collect();
    let (attrs, blocks) = convert_body(block.body, src);
    RawBlock {
        kind,
        labels,
        attrs,
        blocks,
        loc,
    }
}

/// How many labels a block kind takes, in the context of its parent block.
/// Used only for the JSON syntax, where the structure must be inferred.
fn json_block_labels(parent: Option<&str>, key: &str) -> Option<usize> {
    match (parent, key) {
        (None, "variable" | "local" | "backend") => Some(1),
        (None, "source" | "data") => Some(2),
        (None, "build" | "locals" | "packer" | "variables") => Some(0),
        (Some("packer"), "required_plugins") => Some(0),
        (Some("build"), "source") => Some(1),
        (
            Some("build"),
            "provisioner" | "post-processor" | "error-cleanup-provisioner" | "module",
        ) => Some(1),
        (Some("build"), "post-processors" | "hcp_packer_registry" | "test") => Some(0),
        (Some("post-processors"), "post-processor") => Some(1),
        (Some("test"), "provisioner") => Some(1),
        (Some("variable"), "validation") => Some(0),
        (
            Some("source"),
            "source_ami_filter"
            | "source_image_filter"
            | "launch_block_device_mappings"
            | "ami_block_device_mappings"
            | "subnet_filter"
            | "vpc_filter"
            | "security_group_filter",
        ) => Some(0),
        (Some("source_image_filter"), "filters") => Some(0),
        _ => None,
    }
}

pub fn parse_json(text: &str, display: &Path) -> Result<RawFile, Diagnostic> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Diagnostic::error(format!("JSON syntax error: {e}"))
            .at(Some(SourceLoc {
                file: display.to_path_buf(),
                line: e.line(),
                col: e.column(),
            }))
            .hint("*.pkr.json files use Packer's JSON variant of HCL2")
    })?;
    if let serde_json::Value::Object(root) = &value {
        if super::legacy_json::is_legacy(&value) {
            return super::legacy_json::parse_legacy(root, display, text);
        }
    }
    let serde_json::Value::Object(map) = value else {
        return Err(
            Diagnostic::error("a *.pkr.json file must hold a JSON object").at(Some(SourceLoc {
                file: display.to_path_buf(),
                line: 1,
                col: 1,
            })),
        );
    };
    let mut out = JsonOut::default();
    json_body(None, &map, display, text, &mut out);
    if let Some(first) = out.errors.into_iter().next() {
        return Err(first);
    }
    let JsonOut { attrs, blocks, .. } = out;
    Ok(RawFile {
        path: display.to_path_buf(),
        attrs,
        blocks,
    })
}

fn json_loc(display: &Path, text: &str, key: &str) -> SourceLoc {
    // serde_json keeps no spans; point at the first occurrence of the key.
    let needle = format!("\"{key}\"");
    let offset = text.find(&needle).unwrap_or(0);
    SourceLoc::from_offset(display, text, offset)
}

/// What a JSON body turns into: its attributes and blocks, and the places
/// where a value has the wrong shape for the block it stands for.
#[derive(Default)]
struct JsonOut {
    attrs: Vec<RawAttr>,
    blocks: Vec<RawBlock>,
    errors: Vec<Diagnostic>,
}

/// A block written with the wrong JSON shape (Packer would reject it; it
/// must never be dropped silently).
fn json_shape_error(kind: &str, labels: &[String], want: &str, loc: SourceLoc) -> Diagnostic {
    let mut shown = kind.to_owned();
    for l in labels {
        shown.push_str(&format!(" \"{l}\""));
    }
    Diagnostic::error(format!("`{shown}` must be {want}"))
        .at(Some(loc))
        .hint(format!(
            "in *.pkr.json a block is an object, its labels nested objects: \
             {{\"{kind}\": {}{{ ... }}{}}}",
            "{\"LABEL\": ".repeat(json_depth(kind, labels)),
            "}".repeat(json_depth(kind, labels))
        ))
}

/// How many labels are still to come below `labels` for a block `kind`
/// (for the hint only; 0 when not known).
fn json_depth(kind: &str, labels: &[String]) -> usize {
    let total: usize = match kind {
        "source" | "data" => 2,
        "variable"
        | "local"
        | "backend"
        | "provisioner"
        | "post-processor"
        | "module"
        | "error-cleanup-provisioner" => 1,
        _ => 0,
    };
    total.saturating_sub(labels.len())
}

fn json_body(
    parent: Option<&str>,
    map: &serde_json::Map<String, serde_json::Value>,
    display: &Path,
    text: &str,
    out: &mut JsonOut,
) {
    for (key, value) in map {
        if key == "//" {
            continue; // JSON comments, as Packer allows
        }
        match json_block_labels(parent, key) {
            Some(labels) => {
                let items: Vec<&serde_json::Value> = match value {
                    serde_json::Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    json_labeled(key, labels, Vec::new(), item, display, text, out);
                }
            }
            None => out.attrs.push(RawAttr {
                name: key.clone(),
                expr: json_expr(value),
                loc: json_loc(display, text, key),
                text: value.to_string(),
            }),
        }
    }
}

fn json_labeled(
    kind: &str,
    remaining: usize,
    labels: Vec<String>,
    value: &serde_json::Value,
    display: &Path,
    text: &str,
    out: &mut JsonOut,
) {
    let loc = json_loc(
        display,
        text,
        labels.last().map(String::as_str).unwrap_or(kind),
    );
    if remaining == 0 {
        let serde_json::Value::Object(map) = value else {
            out.errors.push(json_shape_error(
                kind,
                &labels,
                &format!("a JSON object (the block's body), not {}", json_kind(value)),
                loc,
            ));
            return;
        };
        let mut body = JsonOut::default();
        json_body(Some(kind), map, display, text, &mut body);
        out.errors.append(&mut body.errors);
        out.blocks.push(RawBlock {
            kind: kind.to_owned(),
            labels,
            attrs: body.attrs,
            blocks: body.blocks,
            loc,
        });
        return;
    }
    match value {
        serde_json::Value::Object(map) => {
            for (label, inner) in map {
                let mut labels = labels.clone();
                labels.push(label.clone());
                let items: Vec<&serde_json::Value> = match inner {
                    serde_json::Value::Array(items) if remaining == 1 => items.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    json_labeled(
                        kind,
                        remaining - 1,
                        labels.clone(),
                        item,
                        display,
                        text,
                        out,
                    );
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                json_labeled(kind, remaining, labels.clone(), item, display, text, out);
            }
        }
        other => out.errors.push(json_shape_error(
            kind,
            &labels,
            &format!("a JSON object keyed by its label, not {}", json_kind(other)),
            loc,
        )),
    }
}

/// "a string", "a number", ... for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// JSON values become expressions; strings are templates (`${...}`), as in
/// HCL's JSON syntax.
fn json_expr(value: &serde_json::Value) -> hcl::Expression {
    use hcl::expr::{Heredoc, HeredocStripMode, TemplateExpr};
    match value {
        serde_json::Value::Null => hcl::Expression::Null,
        serde_json::Value::Bool(b) => hcl::Expression::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => hcl::Expression::Number(i.into()),
            (_, Some(u), _) => hcl::Expression::Number(u.into()),
            (_, _, Some(f)) => hcl::Number::from_f64(f)
                .map(hcl::Expression::Number)
                .unwrap_or(hcl::Expression::Null),
            _ => hcl::Expression::Null,
        },
        serde_json::Value::String(s) => {
            if s.contains("${") || s.contains("%{") {
                hcl::Expression::TemplateExpr(Box::new(TemplateExpr::Heredoc(Heredoc {
                    delimiter: hcl::Identifier::unchecked("EOT"),
                    template: s.clone(),
                    strip: HeredocStripMode::None,
                })))
            } else {
                hcl::Expression::String(s.clone())
            }
        }
        serde_json::Value::Array(items) => {
            hcl::Expression::Array(items.iter().map(json_expr).collect())
        }
        serde_json::Value::Object(map) => hcl::Expression::Object(
            map.iter()
                .map(|(k, v)| {
                    (
                        hcl::ObjectKey::Expression(hcl::Expression::String(k.clone())),
                        json_expr(v),
                    )
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_blocks_keep_locations() {
        let text = "variable \"x\" {\n  default = 1\n}\n\nsource \"null\" \"a\" {\n  communicator = \"none\"\n}\n";
        let file = parse_hcl(text, Path::new("t.pkr.hcl")).unwrap();
        assert_eq!(file.blocks.len(), 2);
        assert_eq!(file.blocks[1].labels, vec!["null", "a"]);
        assert_eq!(file.blocks[1].loc.line, 5);
        let attr = &file.blocks[1].attrs[0];
        assert_eq!((attr.loc.line, attr.loc.col), (6, 3));
        assert_eq!(attr.text, "\"none\"");
    }

    #[test]
    fn large_files_parse_in_pieces_with_the_same_result() {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!(
                "source \"null\" \"s{i}\" {{\n  communicator = \"none\"\n}}\n\n"
            ));
        }
        assert!(text.len() >= PARALLEL_PARSE_BYTES);
        let whole = {
            let body = hcl::edit::parser::parse_body(&text).unwrap();
            let index = LineIndex::new(&text);
            let src = Src {
                text: &text,
                full: &text,
                base: 0,
                display: Path::new("t.pkr.hcl"),
                index: &index,
            };
            convert_body(body, &src).1
        };
        let pieces = parse_hcl(&text, Path::new("t.pkr.hcl")).unwrap().blocks;
        assert_eq!(whole.len(), pieces.len());
        for (a, b) in whole.iter().zip(&pieces) {
            assert_eq!(
                (a.labels.clone(), a.loc.clone()),
                (b.labels.clone(), b.loc.clone())
            );
            assert_eq!(a.attrs[0].loc, b.attrs[0].loc);
            assert_eq!(a.attrs[0].text, b.attrs[0].text);
        }
        // A cut that breaks a heredoc falls back to the whole file.
        let tricky = format!("{text}locals {{\n  x = <<EOT\n}}\nEOT\n}}\n{text}");
        assert_eq!(
            parse_hcl(&tricky, Path::new("t.pkr.hcl"))
                .unwrap()
                .blocks
                .len(),
            6001
        );
    }

    #[test]
    fn syntax_error_has_place() {
        let err = parse_hcl(
            "source \"null\" \"a\" {\n  x = \n}\n",
            Path::new("t.pkr.hcl"),
        )
        .unwrap_err();
        let loc = err.location.unwrap();
        assert_eq!(loc.line, 2);
    }

    #[test]
    fn json_variant_maps_to_blocks() {
        let text = r#"{"source": {"null": {"a": {"communicator": "none"}}},
            "build": {"sources": ["source.null.a"], "provisioner": [{"shell-local": {"inline": ["echo ${source.name}"]}}]}}"#;
        let file = parse_json(text, Path::new("t.pkr.json")).unwrap();
        let kinds: Vec<_> = file.blocks.iter().map(|b| b.kind.as_str()).collect();
        assert_eq!(kinds, vec!["build", "source"]);
        let build = &file.blocks[0];
        assert_eq!(build.blocks[0].kind, "provisioner");
        assert_eq!(build.blocks[0].labels, vec!["shell-local"]);
    }
}
