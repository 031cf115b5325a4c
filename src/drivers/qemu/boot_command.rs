//! Packer's `boot_command`: what is typed into a booting VM, in Packer's
//! key syntax, turned into key presses for QEMU (by qcode, a US keyboard)
//! and sent over QMP.
//!
//! Plain text is typed as written (capitals and symbols with shift);
//! `<enter>`, `<esc>`, `<tab>`, `<f1>`…, arrows and the like are single
//! keys; `<leftCtrlOn>` … `<leftCtrlOff>` hold and release a modifier;
//! `<wait>`, `<wait5>`, `<wait1m30s>` pause. Names are matched without
//! regard to case, as Packer does; a `<` that starts no known key is text.
//! `{{ .HTTPIP }}`, `{{ .HTTPPort }}` and `{{ .Name }}` are replaced first.

use std::time::Duration;

/// One thing to do while typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStep {
    /// Press these keys together, then release them (`["shift", "a"]`).
    Tap(Vec<&'static str>),
    /// Press and hold a key (`<leftCtrlOn>`).
    Down(&'static str),
    /// Release a held key (`<leftCtrlOff>`).
    Up(&'static str),
    Wait(Duration),
}

/// Why a boot command cannot be typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootCommandError {
    #[error("cannot type {0:?}: boot_command types US keyboard characters only")]
    Untypable(char),
    #[error("<{0}> is not a duration")]
    BadWait(String),
    #[error("{{{{ .{0} }}}} is not a boot_command variable")]
    UnknownVariable(String),
}

impl BootCommandError {
    pub fn hint(&self) -> &'static str {
        match self {
            BootCommandError::Untypable(_) => {
                "write the text with ASCII characters, or serve it with http_content and fetch it"
            }
            BootCommandError::BadWait(_) => "write <wait>, <wait5> or <wait1m30s>",
            BootCommandError::UnknownVariable(_) => {
                "boot_command knows {{ .HTTPIP }}, {{ .HTTPPort }} and {{ .Name }}"
            }
        }
    }
}

/// What `{{ .X }}` stands for.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub http_ip: String,
    pub http_port: String,
    pub name: String,
}

/// Replaces `{{ .HTTPIP }}`, `{{ .HTTPPort }}` and `{{ .Name }}`.
pub fn expand(text: &str, vars: &Vars) -> Result<String, BootCommandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        let value = match inner.strip_prefix('.').map(str::trim) {
            Some("HTTPIP") => &vars.http_ip,
            Some("HTTPPort") => &vars.http_port,
            Some("Name") => &vars.name,
            Some(other) => return Err(BootCommandError::UnknownVariable(other.to_owned())),
            None => return Err(BootCommandError::UnknownVariable(inner.to_owned())),
        };
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The steps that type `text` (already expanded).
pub fn parse(text: &str) -> Result<Vec<KeyStep>, BootCommandError> {
    let mut steps = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(end) = rest.find('>') {
                if let Some(step) = special(&rest[1..end])? {
                    steps.push(step);
                    rest = &rest[end + 1..];
                    continue;
                }
            }
        }
        steps.push(KeyStep::Tap(
            typed(c).ok_or(BootCommandError::Untypable(c))?,
        ));
        rest = &rest[c.len_utf8()..];
    }
    Ok(steps)
}

/// A `<name>` Packer knows, or `None` when `<` is only text.
fn special(name: &str) -> Result<Option<KeyStep>, BootCommandError> {
    let lower = name.to_ascii_lowercase();
    if let Some(wait) = lower.strip_prefix("wait") {
        if wait.is_empty() {
            return Ok(Some(KeyStep::Wait(Duration::from_secs(1))));
        }
        return match crate::spec::parse_duration(wait) {
            Some(d) => Ok(Some(KeyStep::Wait(d))),
            None if wait.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                Err(BootCommandError::BadWait(name.to_owned()))
            }
            None => Ok(None),
        };
    }
    for (suffix, down) in [("on", true), ("off", false)] {
        if let Some(modifier) = lower.strip_suffix(suffix).and_then(modifier) {
            return Ok(Some(if down {
                KeyStep::Down(modifier)
            } else {
                KeyStep::Up(modifier)
            }));
        }
    }
    if let Some(modifier) = modifier(&lower) {
        return Ok(Some(KeyStep::Tap(vec![modifier])));
    }
    let key = match lower.as_str() {
        "bs" => "backspace",
        "del" => "delete",
        "enter" | "return" => "ret",
        "esc" => "esc",
        "tab" => "tab",
        "spacebar" => "spc",
        "insert" => "insert",
        "home" => "home",
        "end" => "end",
        "pageup" => "pgup",
        "pagedown" => "pgdn",
        "up" => "up",
        "down" => "down",
        "left" => "left",
        "right" => "right",
        "menu" => "menu",
        f if f.starts_with('f') && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) => {
            FUNCTION_KEYS[f[1..].parse::<usize>().expect("checked") - 1]
        }
        _ => return Ok(None),
    };
    Ok(Some(KeyStep::Tap(vec![key])))
}

const FUNCTION_KEYS: [&str; 12] = [
    "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12",
];

/// Packer's modifier names (lower-cased) → qcodes.
fn modifier(name: &str) -> Option<&'static str> {
    Some(match name {
        "leftalt" => "alt",
        "rightalt" => "alt_r",
        "leftctrl" => "ctrl",
        "rightctrl" => "ctrl_r",
        "leftshift" => "shift",
        "rightshift" => "shift_r",
        "leftsuper" => "meta_l",
        "rightsuper" => "meta_r",
        _ => return None,
    })
}

/// The keys that type `c` on a US keyboard.
fn typed(c: char) -> Option<Vec<&'static str>> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let plain = |k: &'static str| Some(vec![k]);
    let shifted = |k: &'static str| Some(vec!["shift", k]);
    match c {
        'a'..='z' => plain(LETTERS[(c as u8 - b'a') as usize]),
        'A'..='Z' => shifted(LETTERS[(c as u8 - b'A') as usize]),
        '0'..='9' => plain(DIGITS[(c as u8 - b'0') as usize]),
        ' ' => plain("spc"),
        '\n' => plain("ret"),
        '\t' => plain("tab"),
        '-' => plain("minus"),
        '=' => plain("equal"),
        '[' => plain("bracket_left"),
        ']' => plain("bracket_right"),
        '\\' => plain("backslash"),
        ';' => plain("semicolon"),
        '\'' => plain("apostrophe"),
        ',' => plain("comma"),
        '.' => plain("dot"),
        '/' => plain("slash"),
        '`' => plain("grave_accent"),
        '!' => shifted("1"),
        '@' => shifted("2"),
        '#' => shifted("3"),
        '$' => shifted("4"),
        '%' => shifted("5"),
        '^' => shifted("6"),
        '&' => shifted("7"),
        '*' => shifted("8"),
        '(' => shifted("9"),
        ')' => shifted("0"),
        '_' => shifted("minus"),
        '+' => shifted("equal"),
        '{' => shifted("bracket_left"),
        '}' => shifted("bracket_right"),
        '|' => shifted("backslash"),
        ':' => shifted("semicolon"),
        '"' => shifted("apostrophe"),
        '<' => shifted("comma"),
        '>' => shifted("dot"),
        '?' => shifted("slash"),
        '~' => shifted("grave_accent"),
        _ => None,
    }
}

/// Checks every line of a boot command (for plan-time diagnostics).
pub fn check(lines: &[String]) -> Result<(), BootCommandError> {
    let vars = Vars {
        http_ip: "10.0.2.2".into(),
        http_port: "8000".into(),
        name: "name".into(),
    };
    for line in lines {
        parse(&expand(line, &vars)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeyStep::*;

    #[test]
    fn text_special_keys_waits_and_held_modifiers() {
        let steps = parse("aB <enter><wait5><leftCtrlOn>c<leftCtrlOff><F10><wait>").unwrap();
        assert_eq!(
            steps,
            vec![
                Tap(vec!["a"]),
                Tap(vec!["shift", "b"]),
                Tap(vec!["spc"]),
                Tap(vec!["ret"]),
                Wait(Duration::from_secs(5)),
                Down("ctrl"),
                Tap(vec!["c"]),
                Up("ctrl"),
                Tap(vec!["f10"]),
                Wait(Duration::from_secs(1)),
            ]
        );
        assert_eq!(
            parse("<wait1m30s>").unwrap(),
            vec![Wait(Duration::from_secs(90))]
        );
        assert_eq!(
            parse("<Esc><BS>").unwrap(),
            vec![Tap(vec!["esc"]), Tap(vec!["backspace"])]
        );
    }

    #[test]
    fn a_lone_angle_bracket_is_text() {
        assert_eq!(
            parse("a<b").unwrap(),
            vec![Tap(vec!["a"]), Tap(vec!["shift", "comma"]), Tap(vec!["b"])]
        );
        assert_eq!(parse("<x>").unwrap().len(), 3);
    }

    #[test]
    fn variables_are_expanded_and_unknown_ones_refused() {
        let vars = Vars {
            http_ip: "10.0.2.2".into(),
            http_port: "8123".into(),
            name: "app".into(),
        };
        assert_eq!(
            expand(
                "url=http://{{ .HTTPIP }}:{{.HTTPPort}}/ks.cfg {{ .Name }}",
                &vars
            )
            .unwrap(),
            "url=http://10.0.2.2:8123/ks.cfg app"
        );
        assert_eq!(
            expand("{{ .Nope }}", &vars),
            Err(BootCommandError::UnknownVariable("Nope".into()))
        );
        assert_eq!(parse("é"), Err(BootCommandError::Untypable('é')));
        assert_eq!(
            parse("<wait5x>"),
            Err(BootCommandError::BadWait("wait5x".into()))
        );
    }
}
