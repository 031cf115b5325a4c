//! `imgform drift --html`: the drift report as one self-contained page (no
//! external assets, no JavaScript) that a scheduled job can publish: the
//! image graph drawn as SVG and coloured by status, then every image with
//! its reasons, artifact, target, age and ancestry.
//!
//! The layout is a layered drawing: an image's column is the length of the
//! longest chain of recorded parents above it, its row its place in that
//! column (by address). The same report and time give the same page.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::drift::{DriftEntry, DriftReport, DriftStatus};

use super::drift::{reason, summary};

const NODE_W: u32 = 250;
const NODE_H: u32 = 40;
const GAP_X: u32 = 70;
const GAP_Y: u32 = 18;
const MARGIN: u32 = 16;

/// Fill and stroke of each status: distinguishable in colour, and by the
/// stroke pattern for those who cannot tell the colours apart.
fn colours(status: DriftStatus) -> (&'static str, &'static str, &'static str) {
    match status {
        DriftStatus::Current => ("#d7f5dd", "#1f7a35", ""),
        DriftStatus::Stale => ("#fff1c2", "#9a6b00", "6 3"),
        DriftStatus::Missing => ("#fdd8d8", "#b42318", "2 2"),
        DriftStatus::Untracked => ("#e4e7ec", "#475467", "10 3 2 3"),
    }
}

pub fn page(report: &DriftReport, generated: DateTime<Utc>) -> String {
    let mut out = String::new();
    let when = generated.format("%Y-%m-%d %H:%M UTC").to_string();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>imgform drift — {when}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <header><h1>Image drift</h1><p class=\"summary\">{}</p>\
         <p class=\"generated\">Generated <time datetime=\"{}\">{when}</time> by imgform {}</p></header>\n",
        escape(&summary(report)),
        generated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        env!("CARGO_PKG_VERSION"),
    );
    if report.images.is_empty() {
        out.push_str("<p>No images recorded yet: nothing can drift. Run <code>imgform apply</code> first.</p>\n</body>\n</html>\n");
        return out;
    }
    out.push_str("<section><h2>Images and what they are built from</h2>\n");
    out.push_str(&legend(report));
    out.push_str(&graph(report));
    out.push_str("</section>\n<section><h2>Every image</h2>\n");
    for e in &report.images {
        out.push_str(&card(e, generated));
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

fn legend(report: &DriftReport) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for status in [
        DriftStatus::Current,
        DriftStatus::Stale,
        DriftStatus::Missing,
        DriftStatus::Untracked,
    ] {
        let _ = write!(
            out,
            "<li><span class=\"badge {s}\">{s}</span> {n}</li>",
            s = status.as_str(),
            n = report.count(status)
        );
    }
    out.push_str("</ul>\n");
    out
}

/// Column of every image: the longest chain of parents in the report.
fn columns(report: &DriftReport) -> BTreeMap<&str, usize> {
    let parents: BTreeMap<&str, Vec<&str>> = report
        .images
        .iter()
        .map(|e| {
            (
                e.address.as_str(),
                e.parents.iter().map(|p| p.address.as_str()).collect(),
            )
        })
        .collect();
    let mut column: BTreeMap<&str, usize> = BTreeMap::new();
    // Relaxation bounded by the number of images: a cycle (which a state
    // cannot record, but a hand-edited one might) cannot loop forever.
    for _ in 0..=report.images.len() {
        let mut changed = false;
        for (addr, ps) in &parents {
            let c = ps
                .iter()
                .filter(|p| parents.contains_key(*p))
                .map(|p| column.get(p).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0)
                .min(report.images.len());
            if column.get(addr) != Some(&c) {
                column.insert(addr, c);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    column
}

fn graph(report: &DriftReport) -> String {
    let column = columns(report);
    let mut rows: BTreeMap<usize, Vec<&DriftEntry>> = BTreeMap::new();
    for e in &report.images {
        rows.entry(column[e.address.as_str()]).or_default().push(e);
    }
    let mut place: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (c, entries) in &rows {
        for (r, e) in entries.iter().enumerate() {
            let x = MARGIN + *c as u32 * (NODE_W + GAP_X);
            let y = MARGIN + r as u32 * (NODE_H + GAP_Y);
            place.insert(e.address.as_str(), (x, y));
        }
    }
    let width = MARGIN * 2 + rows.len() as u32 * (NODE_W + GAP_X) - GAP_X;
    let height = MARGIN * 2
        + rows.values().map(|v| v.len() as u32).max().unwrap_or(1) * (NODE_H + GAP_Y)
        - GAP_Y;
    let mut svg = format!(
        "<svg class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"image dependency graph\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#667085\"/></marker></defs>\n"
    );
    for e in &report.images {
        let (cx, cy) = place[e.address.as_str()];
        for p in &e.parents {
            let Some(&(px, py)) = place.get(p.address.as_str()) else {
                continue;
            };
            let (x1, y1) = (px + NODE_W, py + NODE_H / 2);
            let (x2, y2) = (cx, cy + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            let class = if p.moved_on { "edge moved" } else { "edge" };
            let _ = writeln!(
                svg,
                "<path class=\"{class}\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\" marker-end=\"url(#arrow)\"/>"
            );
        }
    }
    for e in &report.images {
        let (x, y) = place[e.address.as_str()];
        let (fill, stroke, dash) = colours(e.status);
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let _ = writeln!(
            svg,
            "<a href=\"#{id}\"><g class=\"node {status}\"><title>{addr}: {status}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{tx}\" y=\"{ty}\" class=\"addr\">{label}</text>\
             <text x=\"{tx}\" y=\"{sy}\" class=\"status\" fill=\"{stroke}\">{status}</text></g></a>",
            id = anchor(&e.address),
            addr = escape(&e.address),
            status = e.status.as_str(),
            tx = x + 10,
            ty = y + 17,
            sy = y + 32,
            label = escape(&ellipsis(&e.address, 34)),
        );
    }
    svg.push_str("</svg>\n");
    format!("<div class=\"graph-box\">{svg}</div>\n")
}

fn card(e: &DriftEntry, now: DateTime<Utc>) -> String {
    let mut out = format!(
        "<article id=\"{}\" class=\"image {status}\"><h3><code>{}</code> <span class=\"badge {status}\">{status}</span></h3>\n<dl>",
        anchor(&e.address),
        escape(&e.address),
        status = e.status.as_str()
    );
    let _ = write!(
        out,
        "<dt>target</dt><dd><code>{}</code></dd><dt>artifact</dt><dd><code>{}</code></dd>",
        escape(&e.target),
        escape(&e.artifact_id)
    );
    if let Some(built) = &e.built_at {
        let _ = write!(
            out,
            "<dt>built</dt><dd><time datetime=\"{b}\">{b}</time> ({})</dd>",
            age(built, now),
            b = escape(built)
        );
    }
    out.push_str("</dl>\n");
    let mut why: Vec<String> = e.reasons.iter().map(|r| escape(&reason(r))).collect();
    if e.status == DriftStatus::Missing {
        why.push(format!(
            "artifact <code>{}</code> no longer exists",
            escape(&e.artifact_id)
        ));
    }
    if e.status == DriftStatus::Untracked {
        why.push("an artifact of this image that no state records (<code>imgform state rm</code>, a crash, or a copy); <code>imgform state recover</code> adopts it".to_owned());
    }
    if !why.is_empty() {
        out.push_str("<h4>Why</h4><ul class=\"why\">");
        for w in why {
            let _ = write!(out, "<li>{w}</li>");
        }
        out.push_str("</ul>\n");
    }
    if !e.parents.is_empty() {
        out.push_str("<h4>Built from</h4><ul class=\"ancestry\">");
        for p in &e.parents {
            let now = match (&p.current, p.moved_on) {
                (Some(c), true) => {
                    format!(" — <strong>moved on</strong> to <code>{}</code>", escape(c))
                }
                (Some(_), false) => " — still current".to_owned(),
                (None, _) => " — parent not recorded".to_owned(),
            };
            let _ = write!(
                out,
                "<li><a href=\"#{}\"><code>{}</code></a> @ <code>{}</code>{now}</li>",
                anchor(&p.address),
                escape(&p.address),
                escape(&p.built_from)
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</article>\n");
    out
}

/// `3 days ago`, from an RFC 3339 time.
fn age(built_at: &str, now: DateTime<Utc>) -> String {
    let Ok(then) = DateTime::parse_from_rfc3339(built_at) else {
        return "age unknown".to_owned();
    };
    let secs = (now - then.with_timezone(&Utc)).num_seconds();
    if secs < 0 {
        return "in the future".to_owned();
    }
    let (n, unit) = match secs {
        s if s < 120 => (s, "second"),
        s if s < 7200 => (s / 60, "minute"),
        s if s < 2 * 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn anchor(address: &str) -> String {
    let id: String = address
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("img-{id}")
}

fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max - 1).collect();
    format!("{keep}…")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem;color:#101828;background:#fff}
h1{margin:0 0 .25rem}h2{margin-top:2rem;font-size:1.2rem}h3{margin:0 0 .5rem;font-size:1rem}h4{margin:.75rem 0 .25rem;font-size:.9rem}
.summary{font-size:1.1rem;font-weight:600;margin:.25rem 0}.generated{color:#475467;margin:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.legend{list-style:none;padding:0;display:flex;gap:1.25rem;margin:.5rem 0 1rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;font-weight:600;border:2px solid}
.badge.current{background:#d7f5dd;border-color:#1f7a35;color:#1f7a35}
.badge.stale{background:#fff1c2;border-color:#9a6b00;color:#7a5500;border-style:dashed}
.badge.missing{background:#fdd8d8;border-color:#b42318;color:#b42318;border-style:dotted}
.badge.untracked{background:#e4e7ec;border-color:#475467;color:#475467;border-style:dashed}
.graph-box{overflow-x:auto;border:1px solid #eaecf0;border-radius:8px;padding:.5rem}
.graph text{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}.graph .addr{font-size:13px;fill:#101828}.graph .status{font-size:11px;font-weight:700}
.graph .edge{fill:none;stroke:#667085;stroke-width:1.5}.graph .edge.moved{stroke:#9a6b00;stroke-dasharray:5 3}
article.image{border:1px solid #eaecf0;border-left:6px solid #1f7a35;border-radius:6px;padding:.75rem 1rem;margin:.75rem 0}
article.stale{border-left-color:#9a6b00}article.missing{border-left-color:#b42318}article.untracked{border-left-color:#475467}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}dt{color:#475467}dd{margin:0;overflow-wrap:anywhere}
ul.why,ul.ancestry{margin:.25rem 0;padding-left:1.25rem}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Ancestry, DriftReason, DRIFT_FORMAT_VERSION};
    use crate::fingerprint::RebuildReason;

    fn entry(address: &str, status: DriftStatus, parent: Option<(&str, bool)>) -> DriftEntry {
        DriftEntry {
            address: address.into(),
            target: "local".into(),
            status,
            artifact_id: format!("output/{address}.qcow2"),
            built_at: Some("2026-11-29T08:00:00Z".into()),
            reasons: if status == DriftStatus::Stale {
                vec![DriftReason::Rebuild(RebuildReason::Tainted)]
            } else {
                vec![]
            },
            parents: parent
                .map(|(p, moved_on)| {
                    vec![Ancestry {
                        address: p.into(),
                        built_from: format!("output/{p}-old.qcow2"),
                        current: Some(format!("output/{p}.qcow2")),
                        moved_on,
                    }]
                })
                .unwrap_or_default(),
        }
    }

    fn report() -> DriftReport {
        DriftReport {
            format_version: DRIFT_FORMAT_VERSION,
            images: vec![
                entry(
                    "local.chroot.app",
                    DriftStatus::Stale,
                    Some(("local.chroot.base", true)),
                ),
                entry("local.chroot.base", DriftStatus::Current, None),
                entry("local.chroot.gone", DriftStatus::Missing, None),
                entry(
                    "local.chroot.web",
                    DriftStatus::Current,
                    Some(("local.chroot.app", false)),
                ),
            ],
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn children_are_drawn_right_of_their_parents() {
        let report = report();
        let c = columns(&report);
        assert_eq!(c["local.chroot.base"], 0);
        assert_eq!(c["local.chroot.gone"], 0);
        assert_eq!(c["local.chroot.app"], 1);
        assert_eq!(c["local.chroot.web"], 2);
    }

    #[test]
    fn the_page_is_self_contained_and_says_everything() {
        let html = page(&report(), now());
        assert!(!html.contains("<script"), "no JavaScript");
        assert!(
            !html.contains("src=") && !html.contains("<link"),
            "no external assets"
        );
        for want in [
            "Drift: 2 current, 1 stale, 1 missing, 0 untracked.",
            "<svg class=\"graph\"",
            "href=\"#img-local-chroot-app\"",
            "id=\"img-local-chroot-app\"",
            "marked as tainted",
            "moved on</strong> to <code>output/local.chroot.base.qcow2</code>",
            "(3 days ago)",
            "Generated <time datetime=\"2026-12-02T08:00:00Z\">2026-12-02 08:00 UTC</time>",
            "class=\"edge moved\"",
        ] {
            assert!(html.contains(want), "missing {want:?} in\n{html}");
        }
        assert_eq!(html, page(&report(), now()), "same input, same page");
    }

    #[test]
    fn nothing_recorded_is_said_so() {
        let empty = DriftReport {
            format_version: DRIFT_FORMAT_VERSION,
            images: vec![],
        };
        assert!(page(&empty, now()).contains("No images recorded yet"));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age("2026-12-02T07:59:00Z", now()), "60 seconds ago");
        assert_eq!(age("2026-12-02T05:00:00Z", now()), "3 hours ago");
        assert_eq!(age("2026-12-01T08:00:00Z", now()), "24 hours ago");
        assert_eq!(age("2026-11-02T08:00:00Z", now()), "30 days ago");
        assert_eq!(age("garbage", now()), "age unknown");
    }
}
