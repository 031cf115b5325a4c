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

/// A plan refused after taking the lock (a bad --target) leaves nothing
/// behind: no empty `state/`.
#[test]
fn a_refused_plan_writes_nothing() {
    let p = Project::new();
    p.file(
        "images.pkr.hcl",
        "source \"null\" \"x\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.x\"]\n}\n",
    );
    let run = p.run(&["plan", "--target", "null.bogus"]);
    run.code(1);
    run.stderr_has("no such image in the definitions");
    assert!(!p.path().join("state").exists());
    assert!(!p.path().join(".imgform").exists());
    // A good plan still reads an empty state and writes no state either.
    p.run(&["plan"]).success();
    assert!(!p.path().join("state").exists());
    // An apply keeps what it wrote.
    p.run(&["apply", "--auto-approve"]).success();
    assert!(p.path().join("state/local.json").is_file());
}
