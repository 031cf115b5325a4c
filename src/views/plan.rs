//! The human plan view, terraform-style: one block per changed image with
//! its reasons and diffs, then the summary line.

use crate::plan::{Action, Change, Plan, RebuildReason};

use super::Style;

fn symbol(action: Action, style: Style) -> String {
    match action {
        Action::Build => style.green("+"),
        Action::Rebuild => style.yellow("~"),
        Action::Destroy => style.red("-"),
        Action::NoOp => " ".to_owned(),
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Build => "will be built",
        Action::Rebuild => "will be rebuilt",
        Action::Destroy => "will be destroyed",
        Action::NoOp => "is up to date",
    }
}

fn short(value: &serde_json::Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

/// One line per reason.
pub fn reason_text(reason: &RebuildReason) -> String {
    match reason {
        RebuildReason::NotInState => "not built yet".to_owned(),
        RebuildReason::InputChanged { path, old, new } => match (old, new) {
            (Some(o), Some(n)) => format!("{path} changed: {} → {}", short(o), short(n)),
            (None, Some(n)) => format!("{path} added: {}", short(n)),
            (Some(o), None) => format!("{path} removed (was {})", short(o)),
            (None, None) => format!("{path} changed"),
        },
        RebuildReason::FileChanged { path, old, new } => match (old, new) {
            (None, Some(_)) => format!("file {path} added"),
            (Some(_), None) => format!("file {path} removed"),
            _ => format!("file {path} changed"),
        },
        RebuildReason::VariableChanged { name } => format!("variable {name} changed"),
        RebuildReason::ParentRebuilt { address } => format!("parent {address} is rebuilt"),
        RebuildReason::BaseUpdated { old_id, new_id } => {
            format!("base image updated upstream: {old_id} → {new_id}")
        }
        RebuildReason::ArtifactMissing { id } => format!("artifact {id} no longer exists"),
        RebuildReason::Tainted => "marked as tainted".to_owned(),
        RebuildReason::Forced => "replacement requested (--replace)".to_owned(),
        RebuildReason::RemovedFromConfig => "no longer in the definitions".to_owned(),
        RebuildReason::ContentChanged => {
            "inputs changed (the previous manifest is not in the object store, so no details)"
                .to_owned()
        }
        RebuildReason::UnknownChange => {
            "content address changed, but no field of the manifest did (stored by another version?)"
                .to_owned()
        }
    }
}

fn change_block(change: &Change, style: Style, out: &mut String) {
    out.push_str(&format!(
        "  {} {} {}\n",
        style.dim("#"),
        style.bold(&change.address.to_string()),
        verb(change.action)
    ));
    out.push_str(&format!(
        "  {} {} ({}, target {})\n",
        symbol(change.action, style),
        change.address,
        change.builder,
        change.target
    ));
    match (&change.content.old, &change.content.new) {
        (Some(o), Some(n)) if o != n => {
            out.push_str(&format!("      content: {} → {}\n", o.short(), n.short()))
        }
        (_, Some(n)) => out.push_str(&format!("      content: {}\n", n.short())),
        (Some(o), None) => out.push_str(&format!("      content: {}\n", o.short())),
        (None, None) => {}
    }
    if let Some(a) = &change.current_artifact {
        out.push_str(&format!("      artifact: {}\n", a.id));
    }
    out.push_str("      because:\n");
    for reason in &change.reasons {
        out.push_str(&format!("        - {}\n", reason_text(reason)));
    }
    for (path, diff) in &change.diff.files {
        out.push_str(&format!("      diff of {path}:\n"));
        push_diff(diff, style, out);
    }
    if let Some(diff) = &change.diff.manifest {
        out.push_str("      manifest diff:\n");
        push_diff(diff, style, out);
    }
    out.push('\n');
}

fn push_diff(diff: &str, style: Style, out: &mut String) {
    for line in diff.lines() {
        let painted = if line.starts_with("+++") || line.starts_with("---") {
            style.bold(line)
        } else if line.starts_with('+') {
            style.green(line)
        } else if line.starts_with('-') {
            style.red(line)
        } else if line.starts_with("@@") {
            style.cyan(line)
        } else {
            line.to_owned()
        };
        out.push_str(&format!("        {painted}\n"));
    }
}

pub fn summary_line(plan: &Plan) -> String {
    let s = plan.summary();
    format!(
        "Plan: {} to build, {} to rebuild, {} to destroy, {} unchanged.",
        s.build, s.rebuild, s.destroy, s.unchanged
    )
}

pub fn render(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        out.push_str(&format!(
            "{}\n\n",
            style.green("No changes. Every image is up to date.")
        ));
    } else {
        out.push_str("imgform will perform the following actions:\n\n");
        for change in plan.changes.iter().filter(|c| c.action.is_change()) {
            change_block(change, style, &mut out);
        }
    }
    out.push_str(&style.bold(&summary_line(plan)));
    out.push('\n');
    out
}
