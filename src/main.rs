//! The `imgform` binary: parse the command line, run the command, decide the
//! exit code (0 ok, 1 error — a usage error too —, 2 changes with
//! --detailed-exitcode, 130/143 after SIGINT/SIGTERM) and render errors: diagnostics with their places,
//! anything else as `error:` with its hint.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use imgform::cli::{packer_args, settings::Output, Cli};
use imgform::commands::{self, Status};
use imgform::diag::Diagnostics;
use imgform::views::{self, Style};

fn main() -> ExitCode {
    // A usage error exits 1 like any other error: 2 means "changes" to
    // scripts using --detailed-exitcode (clap's own code would collide).
    // Packer's one-dash long options (`-var-file=x`) read as imgform's.
    let args = packer_args::normalize(std::env::args_os().collect(), &Cli::command());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    let output = Output::detect(cli.no_color);
    let style = Style {
        color: output.color_stderr,
    };
    match commands::run(cli, output) {
        Ok(Status::Ok) => ExitCode::SUCCESS,
        Ok(Status::Changes) => ExitCode::from(2),
        Ok(Status::Failed) => ExitCode::from(1),
        Ok(Status::Interrupted(signal)) => ExitCode::from(signal.exit_code()),
        Err(err) => {
            match err.chain().find_map(|e| e.downcast_ref::<Diagnostics>()) {
                Some(diags) => eprint!("{}", views::diagnostics::render(&diags.0, style)),
                None => eprint!(
                    "{}",
                    views::diagnostics::error(&format!("{err:#}"), commands::hint(&err), style)
                ),
            }
            ExitCode::from(1)
        }
    }
}
