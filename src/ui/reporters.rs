//! Implementations of the libraries' reporter traits: indicatif bars for people on a terminal,
//! JSON Lines events for pipelines. The only place that knows indicatif.
//!
//! Bars are drawn only when stderr is a terminal and never with `--output json`,
//! `--no-progress` or `-v` (logs and bars do not mix); [`apply_reporter`] chooses.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{OutputFormat, Printer};
use crate::cluster::error::wave_name;
use crate::cluster::{ApplyReporter, NoopReporter, ObjectResult};
use crate::render::Wave;

/// True when progress bars may be drawn: stderr is a terminal, `--no-progress` is not given
/// and logs are not verbose.
pub fn bars_allowed(no_progress: bool, verbose: u8) -> bool {
    !no_progress && verbose == 0 && std::io::stderr().is_terminal()
}

/// The reporter for an apply-like command: JSON Lines events in JSON mode, bars when
/// `bars` (see [`bars_allowed`]), else nothing.
pub fn apply_reporter<'a>(printer: &'a Printer, bars: bool) -> Box<dyn ApplyReporter + 'a> {
    if printer.format() == OutputFormat::Json {
        Box::new(JsonEvents { printer })
    } else if bars {
        Box::new(ApplyBars::new())
    } else {
        Box::new(NoopReporter)
    }
}

/// One bar per wave, with counts, and one for pruning.
#[derive(Debug)]
pub struct ApplyBars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl ApplyBars {
    /// Bars on stderr.
    pub fn new() -> Self {
        ApplyBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(BTreeMap::new()),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix:>12.cyan.bold} [{bar:30}] {pos}/{len} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn start(&self, name: &str, total: usize) {
        let bar = self.multi.add(ProgressBar::new(total as u64));
        bar.set_style(Self::style());
        bar.set_prefix(name.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(name.to_string(), bar);
        }
    }

    fn with_bar(&self, name: &str, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(name)
        {
            f(bar);
        }
    }
}

impl Default for ApplyBars {
    fn default() -> Self {
        Self::new()
    }
}

impl ApplyReporter for ApplyBars {
    fn wave_started(&self, wave: Wave, total: usize) {
        self.start(wave_name(wave), total);
    }

    fn checking(&self, wave: Wave, total: usize) {
        self.with_bar(wave_name(wave), |bar| {
            bar.set_message(format!("server dry run of {total}"));
        });
    }

    fn object_done(&self, result: &ObjectResult) {
        self.with_bar(wave_name(result.wave), |bar| {
            bar.set_message("");
            bar.inc(1);
        });
    }

    fn waiting(&self, what: &str) {
        self.with_bar(wave_name(Wave::Definitions), |bar| {
            bar.set_message(format!("waiting for {what}"));
        });
    }

    fn wave_finished(&self, wave: Wave) {
        self.with_bar(wave_name(wave), |bar| {
            bar.set_message("");
            bar.finish();
        });
    }

    fn prune_started(&self, total: usize) {
        self.start("prune", total);
    }

    fn pruned(&self, _result: &ObjectResult) {
        self.with_bar("prune", |bar| bar.inc(1));
    }

    fn finished(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

/// JSON Lines events: `{"event":"applied",…}` per object, `{"event":"pruned",…}` per
/// deletion, `{"event":"waiting",…}` while CRDs become Established.
#[derive(Debug)]
pub struct JsonEvents<'a> {
    printer: &'a Printer,
}

#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    event: &'a str,
    #[serde(flatten)]
    body: T,
}

impl ApplyReporter for JsonEvents<'_> {
    fn object_done(&self, result: &ObjectResult) {
        self.printer.json(&Event {
            event: "applied",
            body: result,
        });
    }

    fn waiting(&self, what: &str) {
        self.printer.json(&Event {
            event: "waiting",
            body: serde_json::json!({ "for": what }),
        });
    }

    fn pruned(&self, result: &ObjectResult) {
        self.printer.json(&Event {
            event: "pruned",
            body: result,
        });
    }
}
