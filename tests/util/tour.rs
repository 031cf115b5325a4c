//! The README's tour, read back and compared with a real run: what a reader
//! is shown is what imgform prints (up to what differs between machines and
//! runs: hashes, times, ports, the kernel's version).

use std::path::Path;

use regex::Regex;

/// The lines of the README's console block that starts with the line
/// `$ {command}` (up to the next `$ ` line or the block's end).
pub fn readme_session(command: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with(&format!("$ {command}")));
    assert!(
        lines.next().is_some(),
        "the README has no console line `$ {command}`"
    );
    lines
        .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// `text` with what differs between machines and runs replaced by
/// placeholders, heartbeat lines, trailing spaces and blank lines at the ends
/// dropped.
pub fn normalize(text: &str) -> String {
    let rules = [
        (r"sha256:[0-9a-f]{12}", "sha256:<hash>"),
        (r"-[0-9a-f]{12}\.qcow2", "-<hash>.qcow2"),
        (r"\[\d+(\.\d+)?s\]", "[<secs>]"),
        (r"after \d+(\.\d+)?s", "after <secs>"),
        (r"in \d+(\.\d+)?s\b", "in <secs>"),
        (r"\(\d+ attempts?\)", "(<n> attempts)"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"SOURCE_DATE_EPOCH=\d+", "SOURCE_DATE_EPOCH=<epoch>"),
        (r"vmlinuz-\S+", "vmlinuz-<version>"),
        (r"under (tcg|kvm)", "under <accelerator>"),
        (
            r"package list read: \d+ packages",
            "package list read: <n> packages",
        ),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"),
    ];
    let mut out = text.to_owned();
    for (pattern, with) in rules {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, with)
            .into_owned();
    }
    // Heartbeats come when a step is slow, which is up to the machine.
    let heartbeat = Regex::new(r"^\S+: still .* \(\d+(s|m\d\ds|h\d\dm)\)$").unwrap();
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim_end)
        .filter(|l| !heartbeat.is_match(l))
        .collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

/// Asserts that `shown` (README lines, `…` lines marking an elision) appear
/// in `printed` in order, each `…` standing for any number of lines. Blank
/// lines are layout and not compared.
#[track_caller]
pub fn assert_shown(what: &str, shown: &[String], printed: &str) {
    let printed = normalize(printed);
    let printed: Vec<&str> = printed.lines().filter(|l| !l.is_empty()).collect();
    let shown = shown.iter().filter(|l| !l.trim().is_empty());
    let mut at = 0;
    let mut skipping = false;
    for line in shown {
        if line.trim() == "…" {
            skipping = true;
            continue;
        }
        let line = normalize(line);
        let found = if skipping {
            printed[at..]
                .iter()
                .position(|p| *p == line)
                .map(|i| at + i)
        } else {
            (printed.get(at) == Some(&line.as_str())).then_some(at)
        };
        match found {
            Some(i) => at = i + 1,
            None => panic!(
                "the README's {what} says\n    {line}\nwhere the real run printed\n    {}\n\n--- the real run (normalized)\n{}",
                printed.get(at).unwrap_or(&"(nothing more)"),
                printed.join("\n")
            ),
        }
        skipping = false;
    }
}
