//! Markdown for pull-request comments: a summary line, a table of images
//! with action and reasons, and collapsible diffs. No ANSI codes, no
//! timestamps: the same plan renders to the same text, so a bot can update
//! one comment on every push.

use crate::apply::ApplyOutcome;
use crate::plan::{Action, Plan};

use super::plan::{reason_text, summary_line};

/// The marker a bot can search for to find and update its comment.
pub const COMMENT_MARKER: &str = "<!-- imgform-plan -->";

/// The marker of the comment `apply --markdown` prints.
pub const APPLY_MARKER: &str = "<!-- imgform-apply -->";

/// What an apply did, for the pull request that triggered it: one row per
/// image, then the package changes of each rebuilt image.
pub fn apply(outcome: &ApplyOutcome) -> String {
    let mut out = format!("{APPLY_MARKER}\n### imgform apply\n\n");
    out.push_str(&format!(
        "**{}** {} built, {} failed, {} skipped, {} destroyed{}.\n\n",
        if outcome.ok() {
            "Apply complete."
        } else {
            "Apply finished with errors."
        },
        outcome.built.len(),
        outcome.failed.len(),
        outcome.skipped.len(),
        outcome.destroyed.len(),
        if outcome.not_started.is_empty() {
            String::new()
        } else {
            format!(", {} not started", outcome.not_started.len())
        }
    ));
    let rows: Vec<String> = outcome
        .built
        .iter()
        .map(|b| {
            format!(
                "| `{}` | ✅ built | `{}` |",
                b.address,
                escape(&b.artifact_id)
            )
        })
        .chain(
            outcome
                .failed
                .iter()
                .map(|f| format!("| `{}` | ❌ failed | {} |", f.address, escape(&f.message))),
        )
        .chain(outcome.skipped.iter().map(|s| {
            format!(
                "| `{}` | ⏭️ skipped | because `{}` failed |",
                s.address, s.because
            )
        }))
        .chain(outcome.destroyed.iter().map(|d| {
            format!(
                "| `{}` | 🗑️ destroyed | `{}` |",
                d.address,
                escape(&d.artifact_id)
            )
        }))
        .chain(
            outcome
                .not_started
                .iter()
                .map(|a| format!("| `{a}` | ⏸️ not started | interrupted |")),
        )
        .collect();
    if !rows.is_empty() {
        out.push_str("| image | result | artifact / why |\n|---|---|---|\n");
        for row in rows {
            out.push_str(&row);
            out.push('\n');
        }
    }
    for b in &outcome.built {
        if let Some(changes) = &b.packages {
            let section = super::packages::markdown(&b.address, changes);
            if !section.is_empty() {
                out.push('\n');
                out.push_str(&section);
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn plan(plan: &Plan) -> String {
    let mut out = format!("{COMMENT_MARKER}\n### imgform plan\n\n");
    if !plan.has_changes() {
        out.push_str(&format!(
            "**No changes.** Every image is up to date.\n\n`{}`\n",
            summary_line(plan)
        ));
        return out;
    }
    out.push_str(&format!("**{}**\n\n", summary_line(plan)));
    out.push_str("| image | target | action | why |\n|---|---|---|---|\n");
    for c in plan.changes.iter().filter(|c| c.action.is_change()) {
        let icon = match c.action {
            Action::Build => "🆕 build",
            Action::Rebuild => "🔁 rebuild",
            Action::Destroy => "🗑️ destroy",
            Action::NoOp => "no-op",
        };
        let why = c
            .reasons
            .iter()
            .map(|r| escape(&reason_text(r)))
            .collect::<Vec<_>>()
            .join("<br>");
        out.push_str(&format!(
            "| `{}` | {} | {icon} | {why} |\n",
            c.address, c.target
        ));
    }
    for c in plan
        .changes
        .iter()
        .filter(|c| c.action.is_change() && !c.diff.is_empty())
    {
        out.push_str(&format!(
            "\n<details><summary><code>{}</code>: changes</summary>\n\n",
            c.address
        ));
        if let (Some(old), Some(new)) = (&c.content.old, &c.content.new) {
            out.push_str(&format!(
                "content `{}` → `{}`\n\n",
                old.short(),
                new.short()
            ));
        }
        for (path, diff) in &c.diff.files {
            out.push_str(&format!(
                "`{path}`\n\n```diff\n{}```\n\n",
                ensure_newline(diff)
            ));
        }
        if let Some(diff) = &c.diff.manifest {
            out.push_str(&format!(
                "manifest\n\n```diff\n{}```\n\n",
                ensure_newline(diff)
            ));
        }
        out.push_str("</details>\n");
    }
    let unchanged: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| !c.action.is_change())
        .map(|c| format!("`{}`", c.address))
        .collect();
    if !unchanged.is_empty() {
        out.push_str(&format!(
            "\n<details><summary>{} unchanged</summary>\n\n{}\n</details>\n",
            unchanged.len(),
            unchanged.join(", ")
        ));
    }
    out
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_owned()
    } else {
        format!("{s}\n")
    }
}
