//! SIGINT (Ctrl-C) and SIGTERM (`timeout`, systemd, a cancelled CI job) from
//! the moment a command starts: both are handled alike, whatever the
//! command is doing.
//!
//! - While `apply` builds ([`handle_gracefully`]), the first signal stops
//!   new work and cancels running builds, which clean up and are recorded
//!   as usual; a second one ends the process at once.
//! - At any other moment (loading, refresh, planning, waiting on
//!   `--lock-timeout`, a `state` command, the confirmation prompt) the work
//!   stops where it is: what was registered with [`on_interrupt`] is undone
//!   (the state lock this process holds is released, never another run's),
//!   this process's private temporary dirs are removed (never through a
//!   mount point), and the process exits.
//!
//! The exit code is 128 + the signal's number, as a shell reports it: 130
//! after SIGINT, 143 after SIGTERM ([`Interrupt::exit_code`]).
//!
//! Invariants: undo actions own what they need (`'static`), since the
//! handler runs on another thread while the interrupted code may be blocked
//! anywhere; an action registered after the process began to stop runs at
//! once, and the handler waits for an attempt to take a lock that is under
//! way ([`taking`]) before it exits, so a lock taken in that moment is
//! released too. Callers must keep
//! an undo action cheap and idempotent (it may race the normal release).

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A signal that ends or cancels a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT: Ctrl-C.
    Int,
    /// SIGTERM: `kill`, `timeout`, systemd, CI cancellation.
    Term,
}

impl Interrupt {
    /// 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
        }
    }
}

/// The longest an interrupt waits for an attempt to take a lock (one
/// request) to end.
const TAKING_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

type Undo = Box<dyn FnOnce() + Send>;
type Stop = Box<dyn Fn(Interrupt) + Send>;

#[derive(Default)]
struct Registry {
    next: u64,
    undo: BTreeMap<u64, Undo>,
    /// Set while apply's builds run: they stop on the first signal.
    graceful: Option<Stop>,
    /// The first signal received, if any.
    received: Option<Interrupt>,
    /// The process is stopping: undo actions have been taken.
    stopping: bool,
    /// Attempts to take a lock under way (see [`taking`]).
    taking: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 0,
    undo: BTreeMap::new(),
    graceful: None,
    received: None,
    stopping: false,
    taking: 0,
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding it leaves nothing half-done worth refusing.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// An undo action registered with [`on_interrupt`]; dropping it withdraws
/// the action (without running it).
#[must_use = "the action is withdrawn when this is dropped"]
#[derive(Debug)]
pub struct Registration(Option<u64>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            registry().undo.remove(&id);
        }
    }
}

/// Runs `undo` if the process is interrupted while the returned
/// registration lives (outside [`handle_gracefully`]); at once if it is
/// already stopping.
pub fn on_interrupt(undo: impl FnOnce() + Send + 'static) -> Registration {
    let mut reg = registry();
    if reg.stopping {
        drop(reg);
        undo();
        return Registration(None);
    }
    let id = reg.next;
    reg.next += 1;
    reg.undo.insert(id, Box::new(undo));
    Registration(Some(id))
}

/// While the returned guard lives, the first signal calls `stop` (apply's
/// builds cancel and clean up) instead of ending the process; a second
/// ends it at once.
#[must_use = "signals end the process again once this is dropped"]
pub struct Graceful(());

impl Drop for Graceful {
    fn drop(&mut self) {
        registry().graceful = None;
    }
}

pub fn handle_gracefully(stop: impl Fn(Interrupt) + Send + 'static) -> Graceful {
    registry().graceful = Some(Box::new(stop));
    Graceful(())
}

/// Held around one attempt to take a lock and, when it succeeds, the
/// registration of its release: an interrupt waits for it before it undoes
/// what is registered and exits, so a lock taken in that instant (an S3
/// request in flight) is released too.
#[must_use = "the attempt ends when this is dropped"]
pub struct Taking(());

impl Drop for Taking {
    fn drop(&mut self) {
        registry().taking -= 1;
    }
}

/// Starts an attempt to take a lock. Once the process is stopping no new
/// attempt starts: the caller waits here for the exit.
pub fn taking() -> Taking {
    let mut reg = registry();
    if reg.stopping {
        drop(reg);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    reg.taking += 1;
    Taking(())
}

/// Once the process is stopping (an interrupt outside apply's builds), the
/// caller waits here for the exit instead of going on: after a lock taken in
/// that instant is released, or when a command would end on its own.
pub fn park_if_stopping() {
    if registry().stopping {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// The first signal this process received, if any.
pub fn received() -> Option<Interrupt> {
    registry().received
}

/// Starts listening for SIGINT and SIGTERM on `runtime` (its worker threads
/// answer even while the command blocks the main thread).
pub fn listen(runtime: &tokio::runtime::Runtime) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = runtime.block_on(async {
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    }) else {
        // Signals keep their default action.
        return;
    };
    runtime.spawn(async move {
        loop {
            let which = tokio::select! {
                _ = int.recv() => Interrupt::Int,
                _ = term.recv() => Interrupt::Term,
            };
            handle(which);
        }
    });
}

fn handle(which: Interrupt) {
    let mut reg = registry();
    let first = reg.received.is_none();
    if first {
        reg.received = Some(which);
    }
    if reg.graceful.is_some() && first {
        if let Some(stop) = &reg.graceful {
            stop(which);
        }
        return;
    }
    if reg.graceful.is_some() || reg.stopping {
        // A second signal: now.
        drop(reg);
        eprintln!(
            "Interrupted twice ({}): exiting now. Run `imgform plan` to see what was recorded.",
            which.name()
        );
        std::process::exit(which.exit_code().into());
    }
    reg.stopping = true;
    let undo = std::mem::take(&mut reg.undo);
    drop(reg);
    // On a thread of its own: a slow release (a remote lock) must not keep
    // a second signal from ending the process.
    std::thread::spawn(move || {
        eprintln!("Interrupted ({}): stopping.", which.name());
        // A lock being taken right now is registered (and, as the process
        // is stopping, released at once) before the process ends.
        let started = std::time::Instant::now();
        while registry().taking > 0 && started.elapsed() < TAKING_WAIT {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for (_, action) in undo.into_iter().rev() {
            action();
        }
        crate::paths::remove_own_temp_dirs(&std::env::temp_dir());
        std::process::exit(which.exit_code().into());
    });
}
