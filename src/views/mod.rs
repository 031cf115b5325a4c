//! Rendering: plans, diagnostics, progress and state, for humans (with
//! optional colour), as JSON, and as Markdown. Views never decide anything:
//! they show the values they are given.

pub mod diagnostics;
pub mod drift;
pub mod drift_html;
pub mod json;
pub mod live;
pub mod markdown;
pub mod packages;
pub mod plan;
pub mod progress;
pub mod state;

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    pub fn bold(&self, t: &str) -> String {
        self.paint("1", t)
    }
    pub fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    pub fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    pub fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    pub fn cyan(&self, t: &str) -> String {
        self.paint("36", t)
    }
    pub fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}
