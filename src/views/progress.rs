//! Apply progress for humans, on stderr: one line per event, prefixed with
//! the image address; elapsed time on completion.

use std::time::Duration;

use crate::apply::ApplyOutcome;
use crate::build::events::{Event, Stream};

use super::Style;

fn secs(d: &Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The stderr line for an event, if it gets one.
pub fn line(event: &Event, style: Style) -> Option<String> {
    Some(match event {
        Event::Started { addr } => format!("{}: {}", style.bold(&addr.to_string()), style.cyan("building…")),
        Event::Step { addr, message } => format!("{}: {message}", style.bold(&addr.to_string())),
        Event::Output { addr, stream, line } => match stream {
            Stream::Stdout => format!("{}: {line}", addr),
            Stream::Stderr => format!("{}: {}", addr, style.yellow(line)),
        },
        Event::Built { addr, artifact_id, elapsed } => format!("{}: {} {artifact_id} [{}]", style.bold(&addr.to_string()), style.green("built"), secs(elapsed)),
        Event::Failed { addr, message, elapsed } => format!("{}: {} after {}: {message}", style.bold(&addr.to_string()), style.red("FAILED"), secs(elapsed)),
        Event::Skipped { addr, because } => format!("{}: {} because {because} failed", style.bold(&addr.to_string()), style.yellow("skipped")),
        Event::Cancelled { addr } => format!("{}: {}", style.bold(&addr.to_string()), style.yellow("cancelled")),
        Event::Destroyed { addr, artifact_id } => format!("{}: {} {artifact_id}", style.bold(&addr.to_string()), style.red("destroyed")),
        Event::StateSaved { .. } => return None,
        Event::Interrupted => style.yellow("Interrupted: no new images will be started; waiting for running builds to finish or clean up (Ctrl-C again to stop at once)."),
    })
}

/// The plain log line for an image's log file.
pub fn log_line(event: &Event) -> Option<String> {
    line(event, Style { color: false })
        .map(|l| format!("{} {l}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")))
}

pub fn summary(outcome: &ApplyOutcome, style: Style) -> String {
    let mut out = String::new();
    let status = if outcome.ok() {
        style.green(&style.bold("Apply complete!"))
    } else {
        style.red(&style.bold("Apply finished with errors."))
    };
    out.push_str(&format!(
        "\n{status} {} built, {} failed, {} skipped, {} destroyed{}.\n",
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
    for f in &outcome.failed {
        out.push_str(&format!(
            "  {} {}: {}\n",
            style.red("✗"),
            f.address,
            f.message
        ));
    }
    for s in &outcome.skipped {
        out.push_str(&format!(
            "  {} {}: skipped because {} failed\n",
            style.yellow("-"),
            s.address,
            s.because
        ));
    }
    for addr in &outcome.not_started {
        out.push_str(&format!(
            "  {} {addr}: not started (interrupted)\n",
            style.yellow("-")
        ));
    }
    for built in &outcome.built {
        if let Some(changes) = &built.packages {
            out.push_str(&super::packages::summary(&built.address, changes, style));
        }
    }
    out
}
