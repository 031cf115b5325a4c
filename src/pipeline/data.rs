//! The **resolve** stage for data sources: every `data` block is evaluated
//! and looked up once per run, before any image is evaluated, and its
//! outputs become what `data.KIND.NAME` holds.
//!
//! A block may use variables, locals and other data blocks (and locals may
//! use data blocks): the stage resolves every block it can evaluate, sets
//! the results, and tries the rest again until nothing more resolves; what
//! is left is reported (its own error, or the blocks it waits for).
//!
//! Under [`Resolve::Skip`] (`validate`, `graph`) nothing is looked up and
//! `data.*` keeps its placeholders. Under [`Resolve::Recorded`]
//! (`--refresh=false`, a saved plan) a block whose inputs are the same as
//! recorded takes the recorded outputs — unless any of them is secret: no
//! secret is ever recorded, so such a block is looked up again.
//!
//! The records returned hold no secret (see [`DataRecord`]); the caller
//! hands each image the records of the data blocks its inputs use.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{DataDef, Project};
use crate::data::{self, Outputs, Request, Resolved};
use crate::diag::Diagnostic;
use crate::fingerprint::canonical_json;
use crate::state::DataRecord;

use super::resolve::Resolve;

/// Where kinds keep what they must find again (the `sshkey` pairs).
pub const KEEP_DIR: &str = ".imgform/data";

/// Resolves every data block of `project` and sets `data.*`; returns the
/// record of each (empty under [`Resolve::Skip`]).
pub(super) fn resolve_data(
    project: &mut Project,
    resolve: &Resolve,
) -> Result<BTreeMap<String, DataRecord>, Vec<Diagnostic>> {
    if project.data.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (handle, recorded) = match resolve {
        Resolve::Skip => return Ok(BTreeMap::new()),
        Resolve::Refresh(h) | Resolve::RecordedInState(h, _) => (h, None),
        Resolve::Recorded(h, r) => (h, Some(&r.data)),
    };
    let defs: Vec<DataDef> = project.data.clone();
    let keep_dir = project.template_dir.join(KEEP_DIR);
    // Values of sensitive variables that a block's inputs may hold: never
    // in a recorded query.
    let secrets = project.sensitive_values();
    let mut results: BTreeMap<String, (Outputs, BTreeSet<String>)> = BTreeMap::new();
    let mut queries: BTreeMap<String, String> = BTreeMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut pending: Vec<&DataDef> = defs.iter().collect();
    loop {
        project.set_data(&results);
        let mut progressed = false;
        let mut still: Vec<(&DataDef, Vec<Diagnostic>)> = Vec::new();
        for def in pending {
            let (inputs, config) = match project.evaluate_data_config(def) {
                Ok(evaluated) => evaluated,
                Err(errors) => {
                    still.push((def, errors));
                    continue;
                }
            };
            progressed = true;
            let address = def.address();
            let mut query = serde_json::json!({ "kind": def.kind, "inputs": inputs });
            crate::sensitive::redact_in(&mut query, &secrets);
            let query = String::from_utf8_lossy(&canonical_json(&query)).into_owned();
            let reuse = recorded
                .and_then(|r| r.get(&address))
                .filter(|r| r.query == query)
                .and_then(|r| r.outputs.clone());
            let found = match reuse {
                Some(outputs) => Ok(Resolved::public(outputs.into_iter().collect())),
                None => look_up(handle, def, &address, &config, project, &keep_dir),
            };
            match found {
                Ok(resolved) => {
                    queries.insert(address.clone(), query);
                    results.insert(address, (resolved.outputs, resolved.sensitive));
                }
                Err(message) => diags.push(
                    Diagnostic::error(format!(
                        "{address}: cannot look it up: {}",
                        crate::sensitive::scrub(&message, &secrets)
                    ))
                    .at(Some(def.loc().clone()))
                    .hint(hint_for(&def.kind)),
                ),
            }
        }
        if still.is_empty() || !progressed {
            let waiting: Vec<String> = still.iter().map(|(d, _)| d.address()).collect();
            for (def, errors) in still {
                diags.extend(project.unresolvable_data(def, errors, &waiting));
            }
            break;
        }
        pending = still.into_iter().map(|(d, _)| d).collect();
    }
    project.set_data(&results);
    if !diags.is_empty() {
        return Err(diags);
    }
    if project.has_secrets() {
        crate::sensitive::use_project_key(&project.template_dir).map_err(|e| {
            vec![Diagnostic::error(format!(
                "cannot read or make the digest key {}: {e}",
                project
                    .template_dir
                    .join(crate::sensitive::KEY_FILE)
                    .display()
            ))]
        })?;
    }
    Ok(results
        .into_iter()
        .map(|(address, (outputs, sensitive))| {
            let record = record(&address, &outputs, &sensitive, queries.remove(&address));
            (address, record)
        })
        .collect())
}

/// Asks the kind, on a thread of its own (the caller may be inside the
/// runtime, where blocking on it is not allowed).
fn look_up(
    handle: &tokio::runtime::Handle,
    def: &DataDef,
    address: &str,
    config: &crate::spec::Attrs,
    project: &Project,
    keep_dir: &std::path::Path,
) -> Result<Resolved, String> {
    let kind = data::kind_of(&def.kind).expect("the loader checked the kind");
    let request = Request {
        address,
        name: &def.name,
        config,
        def_dir: &project.def_dir,
        keep_dir,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| handle.block_on((kind.resolve)(request)))
            .join()
            .unwrap_or_else(|_| Err("the look-up panicked".to_owned()))
    })
}

/// The record of one result: its summary with every secret output replaced
/// by its keyed digest, and its outputs only when none is secret.
fn record(
    address: &str,
    outputs: &Outputs,
    sensitive: &BTreeSet<String>,
    query: Option<String>,
) -> DataRecord {
    let kind = address
        .split('.')
        .nth(1)
        .and_then(data::kind_of)
        .expect("a resolved data source has a known kind");
    let mut summary = (kind.summary)(outputs);
    let secrets: Vec<String> = sensitive
        .iter()
        .filter_map(|name| outputs.get(name))
        .map(crate::spec::scalar)
        .filter(|s| !s.is_empty())
        .collect();
    if !secrets.is_empty() {
        redact_secrets(&mut summary, &secrets);
    }
    DataRecord {
        query: query.unwrap_or_default(),
        summary,
        outputs: sensitive.is_empty().then(|| {
            outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
    }
}

/// Every string holding a secret becomes the secret's digest — whole, even
/// a secret shorter than the scrubber's minimum, since a summary is written
/// to the state.
fn redact_secrets(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(s) => {
            if let Some(secret) = secrets.iter().find(|x| s.contains(x.as_str())) {
                *s = crate::sensitive::redact(secret);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| redact_secrets(v, secrets))
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_secrets(v, secrets)),
        _ => {}
    }
}

fn hint_for(kind: &str) -> &'static str {
    match kind {
        "amazon-ami" | "amazon-parameterstore" | "amazon-secretsmanager" => {
            "check the attributes and the AWS credentials and region (the standard AWS chain, or access_key / profile / region in the block); with --refresh=false a recorded answer is reused"
        }
        "http" => "check the url and that the server answers 2xx",
        "git-commit" | "git-repository" => "path must be inside a git work tree (the default is the definition dir)",
        _ => "check the data block's attributes",
    }
}
