//! JSON documents. Each carries `format_version`; the shapes are documented
//! in the README and checked against `schemas/*.json` by the tests.

use serde_json::{json, Value};

use crate::diag::Diagnostic;
use crate::plan::Plan;

pub const JSON_FORMAT_VERSION: u32 = 1;

pub fn plan(plan: &Plan) -> Value {
    let s = plan.summary();
    json!({
        "format_version": JSON_FORMAT_VERSION,
        "changes": plan.changes.iter().map(|c| {
            let mut v = json!({
                "address": c.address.to_string(),
                "target": c.target.to_string(),
                "builder": c.builder,
                "action": c.action.as_str(),
                "reasons": serde_json::to_value(&c.reasons).unwrap_or(Value::Null),
                "content": { "old": c.content.old, "new": c.content.new },
            });
            if !c.parents.is_empty() {
                v["parents"] = json!(c.parents.iter().map(ToString::to_string).collect::<Vec<_>>());
            }
            if let Some(a) = &c.current_artifact {
                v["current_artifact"] = json!(a.id);
            }
            if !c.diff.is_empty() {
                v["diff"] = serde_json::to_value(&c.diff).unwrap_or(Value::Null);
            }
            v
        }).collect::<Vec<_>>(),
        "summary": { "build": s.build, "rebuild": s.rebuild, "destroy": s.destroy, "unchanged": s.unchanged },
    })
}

pub fn diagnostics(valid: bool, diags: &[Diagnostic]) -> Value {
    json!({
        "format_version": JSON_FORMAT_VERSION,
        "valid": valid,
        "error_count": diags.iter().filter(|d| d.is_error()).count(),
        "diagnostics": diags,
    })
}

pub fn to_string(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}
