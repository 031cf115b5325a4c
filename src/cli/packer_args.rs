//! Packer's command lines use Go's flag syntax: one dash before a long
//! option (`-var-file=prod.pkrvars.hcl`, `-var 'region=eu-west-1'`,
//! `-only=...`). imgform's options are clap's (`--var-file`); a single-dash
//! word that names one of imgform's long options is read as that option, so
//! a command line copied from a Packer README works as written.

use std::collections::BTreeSet;
use std::ffi::OsString;

/// `args` (the program name first) with every `-NAME` / `-NAME=VALUE` whose
/// NAME is a long option of `command` or of one of its subcommands written
/// `--NAME`; everything after a `--` is left alone.
pub fn normalize(args: Vec<OsString>, command: &clap::Command) -> Vec<OsString> {
    let mut longs = BTreeSet::new();
    collect_longs(command, &mut longs);
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        let Some(text) = arg.to_str().filter(|_| i > 0 && !rest) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let single_dash = text.strip_prefix('-').filter(|t| !t.starts_with('-'));
        match single_dash {
            Some(word) if longs.contains(word.split('=').next().unwrap_or_default()) => {
                out.push(OsString::from(format!("-{text}")));
            }
            _ => out.push(arg),
        }
    }
    out
}

fn collect_longs(command: &clap::Command, longs: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        // One letter is a short option's business (`-C`).
        if let Some(names) = arg.get_long_and_visible_aliases() {
            longs.extend(names.into_iter().filter(|n| n.len() > 1).map(str::to_owned));
        }
    }
    for sub in command.get_subcommands() {
        collect_longs(sub, longs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize(args, &crate::cli::Cli::command())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn packer_style_long_options_are_read_as_imgform_ones() {
        assert_eq!(
            norm(&[
                "imgform",
                "plan",
                "-var-file=prod.pkrvars.hcl",
                "-var",
                "a=b",
                "-C",
                "x",
                "-nope",
                "--",
                "-var"
            ]),
            [
                "imgform",
                "plan",
                "--var-file=prod.pkrvars.hcl",
                "--var",
                "a=b",
                "-C",
                "x",
                "-nope",
                "--",
                "-var"
            ]
        );
    }
}
