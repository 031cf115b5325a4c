//! A mutation fuzzer on stable Rust (proptest): real templates — the
//! examples, the test fixtures and the bad-input corpus — are cut, spliced
//! and sprinkled with the tokens that break parsers (braces, quotes,
//! `${`, NULs, huge numbers, deep nesting), then loaded, evaluated and
//! fingerprinted through the library (`pipeline::prepare`, as `validate`
//! runs it) and their diagnostics rendered. The property: no panic, and a
//! refused template says why (at least one error).
//!
//! CI runs `IMGFORM_FUZZ_CASES` cases (default 200, well under 30 s); set it
//! higher for a longer run, e.g. `IMGFORM_FUZZ_CASES=20000 cargo test
//! --locked --test fuzz`. A failing input is shrunk, printed and written to
//! the test's temporary dir; keep it as a regression case under
//! `tests/corpus/fuzz/` (one `*.pkr.hcl` or `*.pkr.json` per case), which
//! every run checks first.

use std::path::{Path, PathBuf};

use imgform::config::LoadOptions;
use imgform::pipeline::{self, PipelineError, Resolve};
use imgform::views::{self, Style};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The templates mutations start from: every definition file under
/// examples/, tests/fixtures/ and tests/corpus/.
fn seeds() -> Vec<(String, String)> {
    let mut seeds = Vec::new();
    for dir in ["examples", "tests/fixtures", "tests/corpus"] {
        for entry in walkdir::WalkDir::new(repo().join(dir))
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let template = name.ends_with(".pkr.hcl")
                || name.ends_with(".img.hcl")
                || name.ends_with(".pkr.json")
                || name.ends_with(".pkrvars.hcl");
            if !template || !entry.file_type().is_file() {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                let file = if name.ends_with(".pkr.json") {
                    "main.pkr.json"
                } else {
                    "main.pkr.hcl"
                };
                seeds.push((file.to_owned(), text));
            }
        }
    }
    assert!(
        seeds.len() >= 20,
        "found only {} seed templates",
        seeds.len()
    );
    seeds
}

/// Text that tends to break things, spliced in by [`Mutation::Insert`].
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "${",
    "%{",
    "}\n",
    "=",
    ",",
    "\n",
    ".",
    "*",
    "var.",
    "local.",
    "source.",
    "image.",
    "build.",
    "path.root",
    "\\u0000",
    "\0",
    "\\",
    "99999999999999999999",
    "-1",
    "1e308",
    "0.5",
    "\"99999999999999999999s\"",
    "<<EOT\n",
    "\nEOT\n",
    "# ",
    "/*",
    "*/",
    "null",
    "true",
    "[for x in var.list : x]",
    "try(",
    "can(",
    "file(\"/etc/hostname\")",
    "upper(",
    "jsondecode(\"{\")",
    "${var.list}",
    "é",
    "🦀",
    "\u{feff}",
    "only = [\"null.nope\"]\n",
    "provisioner \"shell-local\" {\n",
    "source ",
    "build {\n",
    "variable \"v\" {\n",
    "locals {\n",
    "\"source.null.a\"",
    "10 / 0",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Deletes `len` bytes at `at` (both scaled to the text).
    Delete { at: usize, len: usize },
    /// Inserts a token at `at`.
    Insert { at: usize, token: usize },
    /// Repeats the line at `at`.
    DuplicateLine { at: usize },
    /// Swaps two lines.
    SwapLines { a: usize, b: usize },
    /// Cuts the text at `at`.
    Truncate { at: usize },
    /// Nests the text `depth` times in braces.
    Nest { depth: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete { at, len }),
        6 => (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        2 => any::<usize>().prop_map(|at| Mutation::DuplicateLine { at }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (1usize..200).prop_map(|depth| Mutation::Nest { depth }),
    ]
}

/// The nearest char boundary at or below `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut i = at % (text.len() + 1);
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply(text: &mut String, m: &Mutation) {
    match m {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, start + len);
            if end > start {
                text.replace_range(start..end, "");
            }
        }
        Mutation::Insert { at, token } => {
            let at = boundary(text, *at);
            text.insert_str(at, TOKENS[*token]);
        }
        Mutation::DuplicateLine { at } => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let i = at % lines.len();
                lines.insert(i, lines[i]);
                *text = lines.concat();
            }
        }
        Mutation::SwapLines { a, b } => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
                *text = lines.concat();
            }
        }
        Mutation::Truncate { at } => {
            let at = boundary(text, *at);
            text.truncate(at);
        }
        Mutation::Nest { depth } => {
            *text = format!(
                "locals {{\n  deep = {}1{}\n}}\n{text}",
                "[".repeat(*depth),
                "]".repeat(*depth)
            );
        }
    }
}

/// Loads one template the way `validate` does and renders what it says.
/// Err: the property failed (a panic is caught by the runner itself).
fn check(file: &str, text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join(file), text).map_err(|e| e.to_string())?;
    let options = LoadOptions {
        vars: Vec::new(),
        var_files: Vec::new(),
        env: Default::default(),
        file_cache: false,
        work_dir: Some(dir.path().to_path_buf()),
        data: None,
    };
    match pipeline::prepare(dir.path(), &options, &Resolve::Skip) {
        Ok(prepared) => {
            let _ = views::diagnostics::render(&prepared.warnings, Style { color: false });
            Ok(())
        }
        Err(PipelineError::Definitions(diags)) => {
            let rendered = views::diagnostics::render(&diags.0, Style { color: false });
            if !diags.0.iter().any(|d| d.is_error()) {
                return Err(format!("refused without an error:\n{rendered}"));
            }
            Ok(())
        }
        // Other refusals (a key file, a backend flag) carry their own text.
        Err(e) => {
            let _ = e.to_string();
            Ok(())
        }
    }
}

fn cases() -> u32 {
    std::env::var("IMGFORM_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// Inputs that once failed, kept so they never fail again.
#[test]
fn regression_inputs_load_without_panic() {
    let dir = repo().join("tests/corpus/fuzz");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("tests/corpus/fuzz exists")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".pkr.hcl") || name.ends_with(".pkr.json")) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
        let file = if name.ends_with(".pkr.json") {
            "main.pkr.json"
        } else {
            "main.pkr.hcl"
        };
        let outcome = std::panic::catch_unwind(|| check(file, &text));
        match outcome {
            Ok(Ok(())) => checked += 1,
            Ok(Err(e)) => panic!("{name}: {e}"),
            Err(_) => panic!("{name}: panicked"),
        }
    }
    assert!(checked > 0, "no regression inputs in {}", dir.display());
}

#[test]
fn mutated_templates_never_panic_and_refusals_say_why() {
    let seeds = seeds();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        // Inputs are kept as files under tests/corpus/fuzz instead.
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    let mutated = |seed: usize, mutations: &[Mutation]| {
        let (file, original) = &seeds[seed];
        let mut text = original.clone();
        for m in mutations {
            apply(&mut text, m);
        }
        (file.clone(), text)
    };
    let result = runner.run(&strategy, |(seed, mutations)| {
        let (file, text) = mutated(seed, &mutations);
        check(&file, &text).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, (seed, mutations))) => {
            let (file, text) = mutated(seed, &mutations);
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-failure-{file}"));
            let _ = std::fs::write(&out, &text);
            panic!(
                "{why}\n--- input ({file}, written to {}; keep it as a regression case \
                 under tests/corpus/fuzz/):\n{text}",
                out.display()
            );
        }
        Err(other) => panic!("{other}"),
    }
}
