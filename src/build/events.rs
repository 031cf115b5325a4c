//! Events: how the core reports progress without printing.
//!
//! Builders and provisioners send [`Event`]s into an [`EventSink`]; the
//! command renders them (stderr lines prefixed with the image address) and
//! writes per-image logs. Output lines pass through the image's secret
//! scrubber before they leave the sink.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::addr::ImageAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub enum Event {
    Started {
        addr: ImageAddr,
    },
    /// A step began, e.g. `provisioner "shell-local"`.
    Step {
        addr: ImageAddr,
        message: String,
    },
    Output {
        addr: ImageAddr,
        stream: Stream,
        line: String,
    },
    Built {
        addr: ImageAddr,
        artifact_id: String,
        elapsed: Duration,
    },
    Failed {
        addr: ImageAddr,
        message: String,
        elapsed: Duration,
    },
    Skipped {
        addr: ImageAddr,
        because: ImageAddr,
    },
    Cancelled {
        addr: ImageAddr,
    },
    Destroyed {
        addr: ImageAddr,
        artifact_id: String,
    },
    /// The state of a target was written.
    StateSaved {
        target: String,
        serial: u64,
    },
    Interrupted,
}

/// Where one image's events go. Cloneable; cheap.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    addr: ImageAddr,
    secrets: std::sync::Arc<Vec<String>>,
}

impl EventSink {
    pub fn new(
        tx: mpsc::UnboundedSender<Event>,
        addr: ImageAddr,
        secrets: Vec<String>,
    ) -> EventSink {
        EventSink {
            tx,
            addr,
            secrets: std::sync::Arc::new(secrets),
        }
    }

    pub fn addr(&self) -> &ImageAddr {
        &self.addr
    }

    pub fn step(&self, message: impl Into<String>) {
        let message = crate::sensitive::scrub(&message.into(), &self.secrets);
        let _ = self.tx.send(Event::Step {
            addr: self.addr.clone(),
            message,
        });
    }

    pub fn output(&self, stream: Stream, line: impl Into<String>) {
        let line = crate::sensitive::scrub(&line.into(), &self.secrets);
        let _ = self.tx.send(Event::Output {
            addr: self.addr.clone(),
            stream,
            line,
        });
    }

    pub fn send(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

/// Cooperative cancellation (Ctrl-C): builders check it between steps and
/// clean up when it fires.
#[derive(Debug, Clone)]
pub struct CancelToken(tokio::sync::watch::Receiver<bool>);

impl CancelToken {
    pub fn new() -> (tokio::sync::watch::Sender<bool>, CancelToken) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, CancelToken(rx))
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when cancellation is requested.
    pub async fn cancelled(&mut self) {
        let _ = self.0.wait_for(|c| *c).await;
    }
}
