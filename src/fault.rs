//! Fault injection for the crash and failure tests. `IMGFORM_FAULT` names a
//! point, optionally for one image (`POINT` or `POINT:ADDRESS`); code at a
//! named point asks [`armed`] and then fails the way the point says. Unset
//! (always, outside tests), every point is a no-op.
//!
//! Points: `kill-after-capture` (apply dies like a SIGKILL between capturing
//! an artifact and recording it), `kill-after-record` (apply dies like a
//! SIGKILL right after an image's record is durable, before the state file
//! is rewritten), `panic-in-build` (a build task panics),
//! `kill-before-backup` (apply dies after a state file is replaced, before
//! the previous version becomes its `.bak`), `kill-during-provisioning`
//! (apply dies after an image's first provisioner, with the chroot's
//! mounts up), `kill-during-artifact-write` (apply dies halfway through
//! copying a local image into its output folder), `pause-after-lock` (a
//! command stops for a minute right after taking the state lock, blocking
//! its thread as a slow refresh or a hung cloud call would: the moment to
//! send it a signal), `pause-while-taking-lock` (the local backend stops
//! for two seconds between creating the lock file and registering its
//! release on interrupt, as an S3 request in flight would).

use crate::addr::ImageAddr;

/// Whether the fault `point` is armed for the image `addr`.
pub fn armed(point: &str, addr: &ImageAddr) -> bool {
    let Ok(spec) = std::env::var("IMGFORM_FAULT") else {
        return false;
    };
    match spec.split_once(':') {
        Some((p, only)) => p == point && only == addr.to_string(),
        None => spec == point,
    }
}

/// Whether the fault `point` is armed for the whole run (points that
/// belong to no one image, such as state writes).
pub fn armed_anywhere(point: &str) -> bool {
    std::env::var("IMGFORM_FAULT").is_ok_and(|spec| spec == point)
}

/// Dies at once, as a SIGKILL would: no destructor, no cleanup.
pub fn die() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Blocks the calling thread for a minute, as a hung call would.
pub fn pause() {
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// Blocks the calling thread for two seconds.
pub fn pause_briefly() {
    std::thread::sleep(std::time::Duration::from_secs(2));
}
