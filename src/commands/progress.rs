//! Apply progress as it happens: every event goes to the image's log file
//! (`.imgform/logs/<image>.log`) and to stderr — on a terminal as a live
//! view (a spinner line per running image with its elapsed time and current
//! step, and a summary line), elsewhere as plain lines plus a heartbeat for
//! every silence longer than 30 s (`IMGFORM_HEARTBEAT` changes it). With
//! `apply --json` every event is also a JSON line on stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;

use crate::addr::ImageAddr;
use crate::build::events::Event;
use crate::cli::settings::Output;
use crate::views::live::{self, Phase, Tracker};
use crate::views::{self, Style};

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Where progress goes.
pub struct Settings {
    pub output: Output,
    /// `apply --json`: stream events on stdout.
    pub json: bool,
    pub log_dir: PathBuf,
}

/// Renders events until the channel closes.
pub fn spawn(
    mut events: mpsc::UnboundedReceiver<Event>,
    planned: Vec<ImageAddr>,
    settings: Settings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reporter = Reporter::new(planned, settings);
        let mut tick = tokio::time::interval(reporter.tick_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => reporter.event(&event),
                    None => break,
                },
                _ = tick.tick() => reporter.tick(),
            }
        }
        reporter.finish();
    })
}

struct Reporter {
    tracker: Tracker,
    style: Style,
    json: bool,
    heartbeat: Duration,
    live: Option<Live>,
    logs: Logs,
}

impl Reporter {
    fn new(planned: Vec<ImageAddr>, settings: Settings) -> Reporter {
        let tracker = Tracker::new(planned);
        let live = (settings.output.stderr_is_tty
            && !std::env::var("TERM").is_ok_and(|t| t == "dumb"))
        .then(|| Live::new(&tracker));
        Reporter {
            tracker,
            style: Style {
                color: settings.output.color_stderr,
            },
            json: settings.json,
            heartbeat: heartbeat_interval(),
            live,
            logs: Logs {
                dir: settings.log_dir,
                files: BTreeMap::new(),
            },
        }
    }

    fn tick_every(&self) -> Duration {
        if self.live.is_some() {
            Duration::from_millis(200)
        } else {
            (self.heartbeat / 6).clamp(Duration::from_millis(100), Duration::from_secs(5))
        }
    }

    fn event(&mut self, event: &Event) {
        let now = Instant::now();
        self.tracker.observe(event, now);
        self.logs.write(event);
        if self.json {
            if let Some(v) = live::json_event(event, &timestamp()) {
                print_json_line(&v);
            }
        }
        let line = views::progress::line(event, self.style);
        match &mut self.live {
            Some(l) => {
                if let Some(line) = line {
                    l.multi.suspend(|| eprintln!("{line}"));
                }
                l.update(&self.tracker, event);
            }
            None => {
                if let Some(line) = line {
                    eprintln!("{line}");
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        match &mut self.live {
            Some(l) => l.refresh(&self.tracker),
            None => {
                for beat in self.tracker.heartbeats(now, self.heartbeat) {
                    eprintln!("{}", beat.line());
                    if self.json {
                        print_json_line(&live::json_heartbeat(&beat, &timestamp()));
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(l) = self.live.take() {
            for bar in l.bars.values() {
                bar.finish_and_clear();
            }
            l.summary.finish_and_clear();
            let _ = l.multi.clear();
        }
    }
}

fn heartbeat_interval() -> Duration {
    std::env::var("IMGFORM_HEARTBEAT")
        .ok()
        .and_then(|v| crate::spec::parse_duration(&v))
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_HEARTBEAT)
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn print_json_line(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The terminal view: a spinner line per running image, a summary line.
struct Live {
    multi: MultiProgress,
    bars: BTreeMap<ImageAddr, ProgressBar>,
    summary: ProgressBar,
}

impl Live {
    fn new(tracker: &Tracker) -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let summary = multi.add(ProgressBar::new_spinner());
        summary.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
        summary.set_message(live::summary_line(tracker.counts()));
        Live {
            multi,
            bars: BTreeMap::new(),
            summary,
        }
    }

    fn update(&mut self, tracker: &Tracker, event: &Event) {
        let Some(addr) = super::apply::event_addr(event) else {
            return;
        };
        let Some(image) = tracker.get(addr) else {
            return;
        };
        if image.phase == Phase::Running {
            let multi = &self.multi;
            let summary = &self.summary;
            let bar = self.bars.entry(addr.clone()).or_insert_with(|| {
                let bar = multi.insert_before(summary, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                        .expect("a valid template"),
                );
                bar.set_prefix(addr.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(image.step.clone());
        } else if let Some(bar) = self.bars.remove(addr) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.summary
            .set_message(live::summary_line(tracker.counts()));
    }

    fn refresh(&mut self, tracker: &Tracker) {
        self.summary
            .set_message(live::summary_line(tracker.counts()));
        self.summary.tick();
    }
}

/// Per-image log files, opened on first use.
struct Logs {
    dir: PathBuf,
    files: BTreeMap<String, std::fs::File>,
}

impl Logs {
    fn write(&mut self, event: &Event) {
        let (Some(addr), Some(line)) = (
            super::apply::event_addr(event),
            views::progress::log_line(event),
        ) else {
            return;
        };
        let slug = addr.slug();
        if !self.files.contains_key(&slug) {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{slug}.log")))
            {
                Ok(f) => {
                    self.files.insert(slug.clone(), f);
                }
                Err(_) => return,
            }
        }
        if let Some(file) = self.files.get_mut(&slug) {
            let _ = writeln!(file, "{line}");
        }
    }
}
