//! Where things are in a component document's text: the line of each
//! phase and step and of a step's own keys, so every diagnostic points at
//! the step it is about (serde_yaml keeps no positions).
//!
//! A scanner of block-style YAML, the way component documents are written
//! (`phases:` → `- name:` items → `steps:` → `- name:` items, in either the
//! `- name: x` or the `-` / `  name: x` layout). A document in flow style
//! yields no positions; callers then fall back to searching the text.

/// One non-empty, non-comment line.
#[derive(Debug, Clone, Copy)]
struct Line<'t> {
    /// 1-based.
    number: usize,
    indent: usize,
    /// The text after the indent.
    text: &'t str,
}

impl Line<'_> {
    fn is_item(&self) -> bool {
        self.text == "-" || self.text.starts_with("- ")
    }

    /// The text with a leading `- ` removed.
    fn content(&self) -> &str {
        if self.text == "-" {
            ""
        } else {
            self.text
                .strip_prefix("- ")
                .unwrap_or(self.text)
                .trim_start()
        }
    }

    /// The indent of the content (after `- `).
    fn content_indent(&self) -> usize {
        if self.is_item() && self.text != "-" {
            let after = &self.text[1..];
            self.indent + 1 + (after.len() - after.trim_start().len())
        } else {
            self.indent
        }
    }
}

/// The lines of one step: from its `-` item line to the line before the
/// next item.
#[derive(Debug, Clone, Default)]
pub struct StepSpan {
    pub first: usize,
    pub last: usize,
    /// The indent of the step's own keys.
    key_indent: usize,
}

/// Positions of a document's phases and steps.
#[derive(Debug, Default)]
pub struct Positions {
    lines: Vec<(usize, usize, String)>,
    /// Per phase: its item line and its steps.
    pub phases: Vec<(usize, Vec<StepSpan>)>,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - trimmed.len(),
                text: trimmed.trim_end(),
            })
        })
        .collect()
}

/// The items of the sequence under the key on line index `key`: (index of
/// the item line, index past its last line) pairs, and the end of the
/// sequence.
fn items(ls: &[Line<'_>], key: usize, end: usize) -> Vec<(usize, usize)> {
    let Some(first) = ls.get(key + 1).filter(|l| l.is_item()) else {
        return Vec::new();
    };
    let dash = first.indent;
    if dash < ls[key].indent {
        return Vec::new();
    }
    let mut starts = Vec::new();
    let mut stop = end;
    for (i, l) in ls.iter().enumerate().take(end).skip(key + 1) {
        if l.indent < dash || (l.indent == dash && !l.is_item()) {
            stop = i;
            break;
        }
        if l.indent == dash && l.is_item() {
            starts.push(i);
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| (s, starts.get(n + 1).copied().unwrap_or(stop)))
        .collect()
}

/// The indent of an item's keys: after its `- `, or the next line's.
fn key_indent(ls: &[Line<'_>], item: usize) -> usize {
    let l = ls[item];
    if l.text == "-" {
        ls.get(item + 1).map(|n| n.indent).unwrap_or(l.indent + 2)
    } else {
        l.content_indent()
    }
}

/// The line index of `key:` among an item's own keys.
fn key_in(ls: &[Line<'_>], (start, end): (usize, usize), key: &str) -> Option<usize> {
    let indent = key_indent(ls, start);
    (start..end).find(|&i| {
        let l = ls[i];
        let at = if i == start {
            l.content_indent()
        } else {
            l.indent
        };
        at == indent && {
            let c = if i == start { l.content() } else { l.text };
            c == format!("{key}:") || c.starts_with(&format!("{key}:"))
        }
    })
}

impl Positions {
    pub fn scan(text: &str) -> Positions {
        let ls = lines(text);
        let mut out = Positions {
            lines: ls
                .iter()
                .map(|l| (l.number, l.indent, l.text.to_owned()))
                .collect(),
            phases: Vec::new(),
        };
        let Some(phases_key) = ls.iter().position(|l| l.indent == 0 && l.text == "phases:") else {
            return out;
        };
        for phase in items(&ls, phases_key, ls.len()) {
            let mut steps = Vec::new();
            if let Some(steps_key) = key_in(&ls, phase, "steps") {
                for step in items(&ls, steps_key, phase.1) {
                    steps.push(StepSpan {
                        first: ls[step.0].number,
                        last: ls[step.1 - 1].number,
                        key_indent: key_indent(&ls, step.0),
                    });
                }
            }
            out.phases.push((ls[phase.0].number, steps));
        }
        out
    }

    /// The span of step `s` of phase `p`.
    pub fn step(&self, p: usize, s: usize) -> Option<&StepSpan> {
        self.phases.get(p).and_then(|(_, steps)| steps.get(s))
    }

    /// The line of the step's own `key:`, else the step's first line.
    pub fn key_line(&self, span: &StepSpan, key: &str) -> usize {
        self.lines
            .iter()
            .filter(|(n, _, _)| *n >= span.first && *n <= span.last)
            .find(|(n, indent, text)| {
                let (indent, text) = if *n == span.first {
                    let content = text.strip_prefix("- ").unwrap_or(text).trim_start();
                    (span.key_indent, content)
                } else {
                    (*indent, text.as_str())
                };
                indent == span.key_indent && text.starts_with(&format!("{key}:"))
            })
            .map(|(n, _, _)| *n)
            .unwrap_or(span.first)
    }

    /// The first line of the step holding `needle`, else the step's first
    /// line.
    pub fn line_with(&self, span: &StepSpan, needle: &str) -> usize {
        self.lines
            .iter()
            .filter(|(n, _, _)| *n >= span.first && *n <= span.last)
            .find(|(_, _, text)| text.contains(needle))
            .map(|(n, _, _)| *n)
            .unwrap_or(span.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_item_layouts() {
        let doc = "name: x\nphases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n      -\n        name: Two\n        # c\n        action: CreateFile\n        inputs:\n          - path: /a\n            action: nested\n  -\n    name: validate\n    steps:\n      - action: ExecuteBash\n        name: Three\n";
        let p = Positions::scan(doc);
        assert_eq!(p.phases.len(), 2);
        let two = p.step(0, 1).unwrap();
        assert_eq!((two.first, two.last), (7, 13));
        assert_eq!(p.key_line(two, "action"), 10);
        let three = p.step(1, 0).unwrap();
        assert_eq!(p.key_line(three, "action"), 17);
        assert_eq!(p.key_line(three, "name"), 18);
        assert_eq!(p.line_with(two, "/a"), 12);
    }
}
