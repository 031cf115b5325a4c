//! What an apply is doing right now, from its events: each image's state,
//! current step and how long it has been at it. The terminal view (one
//! spinner line per running image and a summary line), the heartbeats of
//! plain output (CI) and the `apply --json` event stream are all drawn from
//! a [`Tracker`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::addr::ImageAddr;
use crate::build::events::{Event, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Running,
    Built,
    Failed,
    Skipped,
}

#[derive(Debug, Clone)]
pub struct ImageProgress {
    pub phase: Phase,
    /// The current step, e.g. `provisioner 2 "shell"`.
    pub step: String,
    pub started: Option<Instant>,
    pub step_started: Option<Instant>,
    /// When something was last said about this image (a line, a
    /// heartbeat): heartbeats only fill silences.
    pub last_said: Option<Instant>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub built: usize,
    pub running: usize,
    pub waiting: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    images: BTreeMap<ImageAddr, ImageProgress>,
}

impl Tracker {
    /// A tracker for the images an apply will build, all waiting.
    pub fn new(planned: impl IntoIterator<Item = ImageAddr>) -> Tracker {
        Tracker {
            images: planned
                .into_iter()
                .map(|a| {
                    (
                        a,
                        ImageProgress {
                            phase: Phase::Waiting,
                            step: "waiting for the images it is built from".to_owned(),
                            started: None,
                            step_started: None,
                            last_said: None,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn observe(&mut self, event: &Event, now: Instant) {
        let (addr, phase, step) = match event {
            Event::Started { addr } => (addr, Phase::Running, Some("starting".to_owned())),
            Event::Step { addr, message } => (addr, Phase::Running, Some(message.clone())),
            Event::Output { addr, .. } => (addr, Phase::Running, None),
            Event::Built { addr, .. } => (addr, Phase::Built, None),
            Event::Failed { addr, .. } | Event::Cancelled { addr } => (addr, Phase::Failed, None),
            Event::Skipped { addr, .. } => (addr, Phase::Skipped, None),
            Event::Destroyed { .. } | Event::StateSaved { .. } | Event::Interrupted => return,
        };
        let image = self
            .images
            .entry(addr.clone())
            .or_insert_with(|| ImageProgress {
                phase: Phase::Waiting,
                step: String::new(),
                started: None,
                step_started: None,
                last_said: None,
            });
        if image.phase == Phase::Waiting && phase == Phase::Running {
            image.started = Some(now);
        }
        // A finished image stays finished (a late output line does not
        // revive it).
        if matches!(image.phase, Phase::Waiting | Phase::Running) {
            image.phase = phase;
        }
        if let Some(step) = step {
            image.step = step;
            image.step_started = Some(now);
        }
        image.last_said = Some(now);
    }

    pub fn get(&self, addr: &ImageAddr) -> Option<&ImageProgress> {
        self.images.get(addr)
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for i in self.images.values() {
            match i.phase {
                Phase::Waiting => c.waiting += 1,
                Phase::Running => c.running += 1,
                Phase::Built => c.built += 1,
                Phase::Failed => c.failed += 1,
                Phase::Skipped => c.skipped += 1,
            }
        }
        c
    }

    /// The running images that have said nothing for `every`: each gets a
    /// heartbeat (and counts as having said something now).
    pub fn heartbeats(&mut self, now: Instant, every: Duration) -> Vec<Heartbeat> {
        let mut out = Vec::new();
        for (addr, image) in &mut self.images {
            if image.phase != Phase::Running {
                continue;
            }
            let quiet = image.last_said.map_or(Duration::ZERO, |t| now - t);
            if quiet >= every {
                image.last_said = Some(now);
                out.push(Heartbeat {
                    addr: addr.clone(),
                    step: image.step.clone(),
                    for_: image.step_started.map_or(Duration::ZERO, |t| now - t),
                });
            }
        }
        out
    }
}

/// A running image that has been quiet for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub addr: ImageAddr,
    pub step: String,
    /// How long the current step has been going.
    pub for_: Duration,
}

impl Heartbeat {
    /// `golden.amazon-ebs.web: still waiting for ami-0abc to become available (4m30s)`.
    pub fn line(&self) -> String {
        let step = self.step.trim();
        let what = if step.starts_with("waiting") {
            step.to_owned()
        } else {
            format!("at {step}")
        };
        format!("{}: still {what} ({})", self.addr, duration(self.for_))
    }
}

/// `4m30s`, `12s`, `1h02m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `built 2 · running 1 · waiting 3 · failed 0`, for the terminal's last line.
pub fn summary_line(c: Counts) -> String {
    let mut out = format!(
        "built {} · running {} · waiting {} · failed {}",
        c.built, c.running, c.waiting, c.failed
    );
    if c.skipped > 0 {
        out.push_str(&format!(" · skipped {}", c.skipped));
    }
    out
}

/// One `apply --json` event line (see schemas/apply-events.v1.schema.json),
/// or `None` for events that are not streamed. `time` is RFC 3339.
pub fn json_event(event: &Event, time: &str) -> Option<Value> {
    let v = match event {
        Event::Started { addr } => json!({"type": "started", "address": addr}),
        Event::Step { addr, message } => {
            json!({"type": "step", "address": addr, "message": message})
        }
        Event::Output { addr, stream, line } => json!({
            "type": "output",
            "address": addr,
            "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
            "line": line,
        }),
        Event::Built {
            addr,
            artifact_id,
            elapsed,
        } => json!({
            "type": "built",
            "address": addr,
            "artifact_id": artifact_id,
            "elapsed_seconds": round(elapsed.as_secs_f64()),
        }),
        Event::Failed {
            addr,
            message,
            elapsed,
        } => json!({
            "type": "failed",
            "address": addr,
            "message": message,
            "elapsed_seconds": round(elapsed.as_secs_f64()),
        }),
        Event::Skipped { addr, because } => {
            json!({"type": "skipped", "address": addr, "because": because})
        }
        Event::Cancelled { addr } => json!({"type": "cancelled", "address": addr}),
        Event::Destroyed { addr, artifact_id } => {
            json!({"type": "destroyed", "address": addr, "artifact_id": artifact_id})
        }
        Event::Interrupted => json!({"type": "interrupted"}),
        Event::StateSaved { .. } => return None,
    };
    Some(with_time(v, time))
}

/// The `apply --json` line of a heartbeat.
pub fn json_heartbeat(h: &Heartbeat, time: &str) -> Value {
    with_time(
        json!({
            "type": "heartbeat",
            "address": h.addr,
            "step": h.step,
            "step_seconds": h.for_.as_secs(),
        }),
        time,
    )
}

fn with_time(mut v: Value, time: &str) -> Value {
    v["time"] = Value::String(time.to_owned());
    v
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> ImageAddr {
        s.parse().unwrap()
    }

    #[test]
    fn images_move_from_waiting_to_running_to_done() {
        let t0 = Instant::now();
        let mut t = Tracker::new([addr("g.null.a"), addr("g.null.b")]);
        assert_eq!(t.counts().waiting, 2);
        t.observe(
            &Event::Started {
                addr: addr("g.null.a"),
            },
            t0,
        );
        t.observe(
            &Event::Step {
                addr: addr("g.null.a"),
                message: "provisioner 1 \"shell\"".into(),
            },
            t0,
        );
        assert_eq!(
            t.counts(),
            Counts {
                running: 1,
                waiting: 1,
                ..Counts::default()
            }
        );
        assert_eq!(
            t.get(&addr("g.null.a")).unwrap().step,
            "provisioner 1 \"shell\""
        );
        t.observe(
            &Event::Built {
                addr: addr("g.null.a"),
                artifact_id: "x".into(),
                elapsed: Duration::from_secs(1),
            },
            t0,
        );
        t.observe(
            &Event::Output {
                addr: addr("g.null.a"),
                stream: Stream::Stdout,
                line: "late".into(),
            },
            t0,
        );
        assert_eq!(t.counts().built, 1);
        assert_eq!(
            summary_line(t.counts()),
            "built 1 · running 0 · waiting 1 · failed 0"
        );
    }

    #[test]
    fn a_quiet_running_image_gets_one_heartbeat_per_silence() {
        let t0 = Instant::now();
        let mut t = Tracker::new([addr("g.amazon-ebs.web")]);
        t.observe(
            &Event::Step {
                addr: addr("g.amazon-ebs.web"),
                message: "waiting for ami-0abc to become available".into(),
            },
            t0,
        );
        let every = Duration::from_secs(30);
        assert!(t.heartbeats(t0 + Duration::from_secs(29), every).is_empty());
        let beats = t.heartbeats(t0 + Duration::from_secs(270), every);
        assert_eq!(
            beats[0].line(),
            "g.amazon-ebs.web: still waiting for ami-0abc to become available (4m30s)"
        );
        assert!(t
            .heartbeats(t0 + Duration::from_secs(280), every)
            .is_empty());
        let beats = t.heartbeats(t0 + Duration::from_secs(300), every);
        assert_eq!(beats.len(), 1);
        let other = Heartbeat {
            addr: addr("g.null.a"),
            step: "provisioner 2 \"shell\"".into(),
            for_: Duration::from_secs(3725),
        };
        assert_eq!(
            other.line(),
            "g.null.a: still at provisioner 2 \"shell\" (1h02m)"
        );
    }

    #[test]
    fn events_stream_as_json_lines_with_a_type_and_time() {
        let e = Event::Built {
            addr: addr("g.null.a"),
            artifact_id: "null:abc".into(),
            elapsed: Duration::from_millis(1234),
        };
        let v = json_event(&e, "2026-12-02T08:00:00Z").unwrap();
        assert_eq!(
            v,
            json!({"type": "built", "address": "g.null.a", "artifact_id": "null:abc", "elapsed_seconds": 1.2, "time": "2026-12-02T08:00:00Z"})
        );
        assert!(json_event(
            &Event::StateSaved {
                target: "local".into(),
                serial: 1
            },
            "t"
        )
        .is_none());
    }
}
