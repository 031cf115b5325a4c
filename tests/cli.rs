//! The command line itself: exit codes of usage mistakes and of --help.

mod util;

use util::Project;

/// A usage mistake exits 1, never 2 (which means "changes" to scripts that
/// use --detailed-exitcode); --help exits 0.
#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let p = Project::new();
    let bad = p.run(&["plan", "--detailed-exitcode", "--no-such-flag"]);
    bad.code(1);
    bad.stderr_has("--no-such-flag");
    p.run(&["frobnicate"]).code(1);
    let help = p.run(&["plan", "--help"]);
    help.success();
    assert!(
        help.stdout.contains("--detailed-exitcode"),
        "{}",
        help.stdout
    );
}
