//! State listings for humans.

use crate::state::{ImageRecord, StateFile};

use super::Style;
use crate::addr::ImageAddr;

pub fn list(states: &[StateFile], style: Style) -> String {
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    for state in states {
        for (addr, record) in &state.images {
            rows.push((
                addr.to_string(),
                state.target.clone(),
                record.artifact.id.clone(),
                record.built_at.clone(),
            ));
        }
    }
    if rows.is_empty() {
        return "No images recorded yet. Run `imgform apply` to build some.\n".to_owned();
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(7);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
    let w2 = rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(8);
    let mut out = style.bold(&format!(
        "{:w0$}  {:w1$}  {:w2$}  {}",
        "ADDRESS", "TARGET", "ARTIFACT", "BUILT"
    )) + "\n";
    for (a, t, id, at) in rows {
        out.push_str(&format!("{a:w0$}  {t:w1$}  {id:w2$}  {at}\n"));
    }
    out
}

pub fn show(addr: &ImageAddr, target: &str, record: &ImageRecord, style: Style) -> String {
    let mut out = format!("{}\n", style.bold(&addr.to_string()));
    out.push_str(&format!(
        "  target:   {target}\n  builder:  {}\n  content:  {} ({})\n  artifact: {}\n",
        record.builder,
        record.content_address.short(),
        record.content_address,
        record.artifact.id
    ));
    for (k, v) in &record.artifact.attributes {
        out.push_str(&format!("    {k}: {v}\n"));
    }
    out.push_str(&format!("  built at: {}\n", record.built_at));
    if record.tainted {
        out.push_str("  tainted:  yes\n");
    }
    for (p, r) in &record.parents {
        out.push_str(&format!(
            "  parent:   {p} (artifact {}, {})\n",
            r.artifact_id,
            r.content_address.short()
        ));
    }
    for (path, hex) in &record.text_inputs {
        out.push_str(&format!(
            "  input:    {path} (sha256:{})\n",
            &hex[..hex.len().min(12)]
        ));
    }
    for a in &record.previous {
        out.push_str(&format!("  previous: {}\n", a.id));
    }
    out
}

pub fn summary(states: &[StateFile], style: Style) -> String {
    let mut out = String::new();
    for state in states {
        out.push_str(&format!(
            "{} {} (serial {}, lineage {})\n",
            style.bold("target"),
            state.target,
            state.serial,
            state.lineage
        ));
        for (addr, record) in &state.images {
            out.push_str(&format!(
                "  {addr}  {}  {}\n",
                record.artifact.id,
                record.content_address.short()
            ));
        }
        out.push('\n');
    }
    if states.is_empty() {
        out.push_str("No state recorded yet.\n");
    }
    out
}
