//! The drift report for humans and as Markdown.

use crate::drift::{DriftEntry, DriftReason, DriftReport, DriftStatus};

use super::plan::reason_text;
use super::Style;

pub fn reason(r: &DriftReason) -> String {
    match r {
        DriftReason::InputsChanged { changes } => {
            let what: Vec<String> = changes.iter().map(reason_text).collect();
            format!("inputs changed since it was built: {}", what.join("; "))
        }
        DriftReason::ParentRebuilt {
            address,
            built_from,
            current,
        } => {
            format!("parent {address} was rebuilt: built from {built_from}, the parent is {current} now")
        }
        DriftReason::TooOld { built_at, max_age } => {
            format!("older than max_age {max_age} (built {built_at})")
        }
        DriftReason::Rebuild(r) => reason_text(r),
    }
}

fn status(s: DriftStatus, style: Style) -> String {
    let text = format!("{:9}", s.as_str());
    match s {
        DriftStatus::Current => style.green(&text),
        DriftStatus::Stale => style.yellow(&text),
        DriftStatus::Missing | DriftStatus::Untracked => style.red(&text),
    }
}

pub fn summary(report: &DriftReport) -> String {
    format!(
        "Drift: {} current, {} stale, {} missing, {} untracked.",
        report.count(DriftStatus::Current),
        report.count(DriftStatus::Stale),
        report.count(DriftStatus::Missing),
        report.count(DriftStatus::Untracked)
    )
}

fn detail_lines(e: &DriftEntry) -> Vec<String> {
    let mut out: Vec<String> = e
        .reasons
        .iter()
        .map(|r| format!("- {}", reason(r)))
        .collect();
    if e.status == DriftStatus::Missing {
        out.push(format!("- artifact {} no longer exists", e.artifact_id));
    }
    if e.status == DriftStatus::Untracked {
        out.push("- an artifact of this image that no state records (imgform state rm, a crash, or a copy)".to_owned());
    }
    for p in &e.parents {
        let now = match (&p.current, p.moved_on) {
            (Some(c), true) => format!(" (moved on → {c})"),
            (Some(_), false) => " (still current)".to_owned(),
            (None, _) => " (parent not recorded)".to_owned(),
        };
        out.push(format!(
            "└ built from {} @ {}{now}",
            p.address, p.built_from
        ));
    }
    out
}

pub fn human(report: &DriftReport, style: Style) -> String {
    if report.images.is_empty() {
        return "No images recorded yet: nothing can drift. Run `imgform apply` first.\n"
            .to_owned();
    }
    let w = report
        .images
        .iter()
        .map(|e| e.address.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let t = report
        .images
        .iter()
        .map(|e| e.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = style.bold(&format!(
        "{:w$}  {:t$}  {:9}  {}",
        "IMAGE", "TARGET", "STATUS", "ARTIFACT"
    )) + "\n";
    for e in &report.images {
        out.push_str(&format!(
            "{:w$}  {:t$}  {}  {}\n",
            e.address,
            e.target,
            status(e.status, style),
            e.artifact_id
        ));
        for line in detail_lines(e) {
            out.push_str(&format!("{:w$}    {line}\n", ""));
        }
    }
    out.push('\n');
    out.push_str(&style.bold(&summary(report)));
    out.push('\n');
    out
}

pub fn markdown(report: &DriftReport) -> String {
    let mut out = String::from("<!-- imgform-drift -->\n### imgform drift\n\n");
    out.push_str(&format!("**{}**\n\n", summary(report)));
    if report.images.is_empty() {
        return out;
    }
    out.push_str("| image | target | status | artifact | why |\n|---|---|---|---|---|\n");
    for e in &report.images {
        let why = detail_lines(e).join("<br>").replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            e.address,
            e.target,
            e.status.as_str(),
            e.artifact_id,
            why
        ));
    }
    out
}
