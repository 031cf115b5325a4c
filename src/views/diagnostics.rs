//! Diagnostics for humans: `error: summary`, ` --> file:line:col`, the
//! source line with a caret, then detail and `hint:` lines.

use crate::diag::{Diagnostic, Severity};

use super::Style;

pub fn render(diags: &[Diagnostic], style: Style) -> String {
    let mut out = String::new();
    for d in diags {
        let label = match d.severity {
            Severity::Error => style.red(&style.bold("error")),
            Severity::Warning => style.yellow(&style.bold("warning")),
            Severity::Note => style.cyan("note"),
        };
        out.push_str(&format!("{label}: {}\n", style.bold(&d.summary)));
        if let Some(loc) = &d.location {
            out.push_str(&format!("  --> {loc}\n"));
            if let Some(line) = std::fs::read_to_string(&loc.file)
                .ok()
                .and_then(|t| t.lines().nth(loc.line.saturating_sub(1)).map(str::to_owned))
            {
                let number = loc.line.to_string();
                let pad = " ".repeat(number.len());
                out.push_str(&format!(
                    "{pad} |\n{number} | {line}\n{pad} | {}{}\n",
                    " ".repeat(loc.col.saturating_sub(1)),
                    style.red("^")
                ));
            }
        }
        if let Some(detail) = &d.detail {
            for line in detail.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if let Some(hint) = &d.hint {
            out.push_str(&format!("  {}: {hint}\n", style.cyan("hint")));
        }
        out.push('\n');
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        out.push_str(&format!(
            "{} error{} found; nothing was changed.\n",
            errors,
            if errors == 1 { "" } else { "s" }
        ));
    }
    out
}

/// An error without a place: `error: message`, then its hint.
pub fn error(message: &str, hint: Option<String>, style: Style) -> String {
    let mut out = format!("{}: {message}\n", style.red(&style.bold("error")));
    if let Some(hint) = hint {
        out.push_str(&format!("  {}: {hint}\n", style.cyan("hint")));
    }
    out
}
