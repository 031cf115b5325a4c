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

/// Longest a value is shown in a reason line.
const SHORT: usize = 60;

/// Both sides of a change, each cut to [`SHORT`] characters around the first
/// character where they differ, so the change is what stays in view: two
/// long lists that share a prefix are not shown as the same `…`.
fn short_pair(old: &serde_json::Value, new: &serde_json::Value) -> (String, String) {
    let (a, b) = (old.to_string(), new.to_string());
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let first_diff = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Keep a little context before the difference.
    let start = first_diff.saturating_sub(SHORT / 4);
    (cut(&a, start), cut(&b, start))
}

/// `chars[start..]` in at most [`SHORT`] characters, `…` marking each cut.
fn cut(chars: &[char], start: usize) -> String {
    let start = if chars.len() <= SHORT {
        0
    } else {
        start.min(chars.len().saturating_sub(SHORT - 1))
    };
    let mut out = String::new();
    let mut room = SHORT;
    if start > 0 {
        out.push('…');
        room -= 1;
    }
    let rest = &chars[start..];
    if rest.len() > room {
        out.extend(&rest[..room - 1]);
        out.push('…');
    } else {
        out.extend(rest);
    }
    out
}

/// One value, cut to [`SHORT`] characters.
fn short(value: &serde_json::Value) -> String {
    let chars: Vec<char> = value.to_string().chars().collect();
    cut(&chars, 0)
}

/// Whether two file digests differ only in the executable mark.
fn only_mode(old: &str, new: &str) -> bool {
    old != new && old.trim_end_matches("+x") == new.trim_end_matches("+x")
}

/// One line per reason.
pub fn reason_text(reason: &RebuildReason) -> String {
    match reason {
        RebuildReason::NotInState => "not built yet".to_owned(),
        RebuildReason::InputChanged { path, old, new } => match (old, new) {
            (Some(o), Some(n)) => {
                let (o, n) = short_pair(o, n);
                format!("{path} changed: {o} → {n}")
            }
            (None, Some(n)) => format!("{path} added: {}", short(n)),
            (Some(o), None) => format!("{path} removed (was {})", short(o)),
            (None, None) => format!("{path} changed"),
        },
        RebuildReason::FileChanged { path, old, new } => match (old, new) {
            (None, Some(_)) => format!("file {path} added"),
            (Some(_), None) => format!("file {path} removed"),
            (Some(o), Some(n)) if only_mode(o, n) => {
                let now = if n.ends_with("+x") {
                    "executable"
                } else {
                    "not executable"
                };
                format!("file {path} mode changed (now {now})")
            }
            _ => format!("file {path} changed"),
        },
        RebuildReason::VariableChanged { name } => format!("variable {name} changed"),
        RebuildReason::ParentRebuilt { address } => format!("parent {address} is rebuilt"),
        RebuildReason::BaseUpdated { old_id, new_id } => {
            format!("base image updated upstream: {old_id} → {new_id}")
        }
        RebuildReason::DataChanged { address, old, new } => match (old, new) {
            (Some(o), Some(n)) => {
                let (o, n) = short_pair(o, n);
                format!("{address} changed: {o} → {n}")
            }
            (None, Some(n)) => format!("{address} now used: {}", short(n)),
            (Some(o), None) => format!("{address} no longer used (was {})", short(o)),
            (None, None) => format!("{address} changed"),
        },
        RebuildReason::ArtifactMissing { id } => format!("artifact {id} no longer exists"),
        RebuildReason::ArtifactChanged {
            id,
            recorded,
            found,
        } => format!(
            "artifact {id} was changed since it was built (recorded {recorded}, now {found})"
        ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changed(old: serde_json::Value, new: serde_json::Value) -> String {
        reason_text(&RebuildReason::InputChanged {
            path: "provisioners[1].config.inline".into(),
            old: Some(old),
            new: Some(new),
        })
    }

    #[test]
    fn a_long_change_is_cut_around_its_first_difference() {
        let old = json!([
            "mkdir -p /opt/app",
            "printf 'hello' > /opt/app/index.html",
            "chmod 0644 /opt/app/index.html",
            "echo one"
        ]);
        let new = json!([
            "mkdir -p /opt/app",
            "printf 'hello' > /opt/app/index.html",
            "chmod 0644 /opt/app/index.html",
            "echo two"
        ]);
        let text = changed(old, new);
        assert_eq!(
            text,
            "provisioners[1].config.inline changed: …pp/index.html\",\"chmod 0644 /opt/app/index.html\",\"echo one\"] → …pp/index.html\",\"chmod 0644 /opt/app/index.html\",\"echo two\"]"
        );
    }

    #[test]
    fn a_long_value_differing_early_is_cut_at_the_end() {
        let old = json!(format!("a{}", "x".repeat(100)));
        let new = json!(format!("b{}", "x".repeat(100)));
        let text = changed(old, new);
        let (o, n) = text.split_once(" → ").unwrap();
        assert!(o.ends_with('…') && n.ends_with('…'), "{text}");
        assert!(o.contains("\"axxx") && n.starts_with("\"bxxx"), "{text}");
        assert_eq!(n.chars().count(), SHORT);
    }

    #[test]
    fn short_values_are_shown_whole() {
        assert_eq!(
            changed(json!("t3.micro"), json!("t3.small")),
            "provisioners[1].config.inline changed: \"t3.micro\" → \"t3.small\""
        );
    }

    #[test]
    fn a_mode_only_change_says_so() {
        let reason = |old: &str, new: &str| {
            reason_text(&RebuildReason::FileChanged {
                path: "scripts/a.sh".into(),
                old: Some(old.into()),
                new: Some(new.into()),
            })
        };
        assert_eq!(
            reason("sha256:ab", "sha256:ab+x"),
            "file scripts/a.sh mode changed (now executable)"
        );
        assert_eq!(
            reason("sha256:ab+x", "sha256:ab"),
            "file scripts/a.sh mode changed (now not executable)"
        );
        assert_eq!(
            reason("sha256:ab+x", "sha256:cd+x"),
            "file scripts/a.sh changed"
        );
    }
}
