//! Implementations of the libraries' reporter traits: indicatif bars for people on a terminal,
//! JSON Lines events for pipelines. The only place that knows indicatif.
//!
//! Bars are drawn only when stderr is a terminal and never with `--output json`,
//! `--no-progress` or `-v` (logs and bars do not mix); [`apply_reporter`] and
//! [`release_reporters`] choose.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{OutputFormat, Printer};
use crate::cluster::{ApplyReporter, NoopReporter, ObjectResult};
use crate::object::ObjectRef;
use crate::release::{
    CheckResult, NoopRolloutReporter, Progress, RolloutReporter, ServiceAvailability, Workload,
};

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

/// One bar for the server dry run, one per plan step, with counts, and one for pruning.
#[derive(Debug)]
pub struct ApplyBars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    /// The bar of the step being applied (where waits are shown).
    current: Mutex<Option<String>>,
}

/// The bar of plan step `number`.
fn step_bar(number: usize) -> String {
    format!("step {number}")
}

/// The bar of the server dry run.
const DRY_RUN_BAR: &str = "dry run";

impl ApplyBars {
    /// Bars on stderr.
    pub fn new() -> Self {
        Self::on(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    }

    /// Bars on `multi`, beside other bars of the same display.
    pub fn on(multi: MultiProgress) -> Self {
        ApplyBars {
            multi,
            bars: Mutex::new(BTreeMap::new()),
            current: Mutex::new(None),
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
    fn checking(&self, total: usize) {
        self.start(DRY_RUN_BAR, total);
    }

    fn checked(&self, _id: &ObjectRef) {
        self.with_bar(DRY_RUN_BAR, |bar| {
            bar.inc(1);
            if bar.position() >= bar.length().unwrap_or(0) {
                bar.finish();
            }
        });
    }

    fn step_started(&self, number: usize, of: usize, total: usize) {
        let name = step_bar(number);
        self.start(&name, total);
        self.with_bar(&name, |bar| bar.set_prefix(format!("step {number}/{of}")));
        if let Ok(mut current) = self.current.lock() {
            *current = Some(name);
        }
    }

    fn object_done(&self, result: &ObjectResult) {
        if let Some(step) = result.step {
            self.with_bar(&step_bar(step), |bar| {
                bar.set_message("");
                bar.inc(1);
            });
        }
    }

    fn waiting(&self, what: &str) {
        let current = self.current.lock().ok().and_then(|c| c.clone());
        if let Some(name) = current {
            self.with_bar(&name, |bar| bar.set_message(format!("waiting for {what}")));
        }
    }

    fn step_finished(&self, number: usize) {
        self.with_bar(&step_bar(number), |bar| {
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

/// The reporters of `ferry release` and `ferry rollback`, drawing on one display: the apply's
/// step bars, then a live line per workload (what its rollout waits for) and per Service (the
/// endpoints taking traffic against the floor). JSON Lines events with `--output json`;
/// nothing without a terminal or with `--no-progress`.
pub struct ReleaseReporters<'a> {
    /// Receives the apply's progress.
    pub apply: Box<dyn ApplyReporter + 'a>,
    /// Receives the rollout's, the endpoints' and the checks' progress.
    pub rollout: Arc<dyn RolloutReporter>,
    bars: Option<Arc<RolloutBars>>,
}

impl ReleaseReporters<'_> {
    /// Clears every bar, so the summary that follows stands alone.
    pub fn finished(&self) {
        self.apply.finished();
        if let Some(bars) = &self.bars {
            bars.clear();
        }
    }
}

/// The reporters of a release for `printer`'s format; bars only when `bars` (see
/// [`bars_allowed`]).
pub fn release_reporters(printer: &Printer, bars: bool) -> ReleaseReporters<'_> {
    if printer.format() == OutputFormat::Json {
        return ReleaseReporters {
            apply: Box::new(JsonEvents { printer }),
            rollout: Arc::new(RolloutEvents {
                printer: Printer::new(OutputFormat::Json),
            }),
            bars: None,
        };
    }
    if !bars {
        return ReleaseReporters {
            apply: Box::new(NoopReporter),
            rollout: Arc::new(NoopRolloutReporter),
            bars: None,
        };
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let rollout = Arc::new(RolloutBars::on(multi.clone()));
    ReleaseReporters {
        apply: Box::new(ApplyBars::on(multi)),
        rollout: Arc::clone(&rollout) as Arc<dyn RolloutReporter>,
        bars: Some(rollout),
    }
}

/// One live line per workload, Service and check while a release watches its rollout.
#[derive(Debug)]
pub struct RolloutBars {
    multi: MultiProgress,
    lines: Mutex<BTreeMap<String, ProgressBar>>,
}

impl RolloutBars {
    /// Lines on `multi`.
    pub fn on(multi: MultiProgress) -> Self {
        RolloutBars {
            multi,
            lines: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets the message of the line `key` (created with `verb` on first use); `done` freezes it.
    fn show(&self, key: String, verb: &str, message: String, done: bool) {
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        let line = lines.entry(key).or_insert_with(|| {
            let line = self.multi.add(ProgressBar::new_spinner());
            line.set_style(
                ProgressStyle::with_template("{prefix:>12.cyan.bold} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            line.set_prefix(verb.to_string());
            line
        });
        if line.is_finished() {
            return;
        }
        line.set_message(message);
        if done {
            line.finish();
        }
    }

    /// Removes every line.
    pub fn clear(&self) {
        if let Ok(lines) = self.lines.lock() {
            for line in lines.values() {
                line.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

impl RolloutReporter for RolloutBars {
    fn workload_progress(&self, workload: &Workload, progress: &Progress) {
        self.show(
            format!("1/{workload}"),
            "Rolling out",
            format!("{} {}: {progress}", workload.kind, workload.name),
            false,
        );
    }

    fn workload_done(&self, workload: &Workload, elapsed: Duration) {
        self.show(
            format!("1/{workload}"),
            "Rolled out",
            format!(
                "{} {} in {:.1}s",
                workload.kind,
                workload.name,
                elapsed.as_secs_f64()
            ),
            true,
        );
    }

    fn endpoints(&self, figures: &ServiceAvailability) {
        self.show(
            format!("2/{}", figures.service),
            "Endpoints",
            format!(
                "service {}: {} ready + {} draining now, floor {}, lowest {}",
                figures.service,
                figures.ready_now.saturating_sub(figures.draining_now),
                figures.draining_now,
                figures.floor,
                super::availability::figure(figures)
            ),
            false,
        );
    }

    fn check_retry(&self, name: &str, attempt: u32, reason: &str) {
        self.show(
            format!("3/{name}"),
            "Checking",
            format!("{name}: attempt {attempt} failed ({reason}), retrying"),
            false,
        );
    }

    fn check_finished(&self, result: &CheckResult) {
        let verdict = if result.passed { "passed" } else { "failed" };
        self.show(
            format!("3/{}", result.name),
            "Checked",
            format!("{} {}: {verdict}", result.name, result.url),
            true,
        );
    }
}

/// Release progress as JSON Lines events: `rollout-progress`, `rollout-done`, `endpoints`,
/// `check-retry`, `check`.
#[derive(Debug)]
struct RolloutEvents {
    printer: Printer,
}

impl RolloutReporter for RolloutEvents {
    fn workload_progress(&self, workload: &Workload, progress: &Progress) {
        self.printer.json(&Event {
            event: "rollout-progress",
            body: serde_json::json!({ "workload": workload, "progress": progress }),
        });
    }

    fn workload_done(&self, workload: &Workload, elapsed: Duration) {
        self.printer.json(&Event {
            event: "rollout-done",
            body: serde_json::json!({
                "workload": workload,
                "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            }),
        });
    }

    fn endpoints(&self, figures: &ServiceAvailability) {
        self.printer.json(&Event {
            event: "endpoints",
            body: figures,
        });
    }

    fn check_retry(&self, name: &str, attempt: u32, reason: &str) {
        self.printer.json(&Event {
            event: "check-retry",
            body: serde_json::json!({ "name": name, "attempt": attempt, "reason": reason }),
        });
    }

    fn check_finished(&self, result: &CheckResult) {
        self.printer.json(&Event {
            event: "check",
            body: result,
        });
    }
}

/// The reporter of `ferry backup create`: JSON Lines events in JSON mode, a spinner with
/// counts when `bars`, else nothing.
pub fn backup_reporter<'a>(
    printer: &'a Printer,
    bars: bool,
) -> Box<dyn crate::backup::Reporter + 'a> {
    if printer.format() == OutputFormat::Json {
        Box::new(BackupEvents { printer })
    } else if bars {
        Box::new(BackupBar::new())
    } else {
        Box::new(crate::backup::NoopReporter)
    }
}

/// JSON Lines events of `backup create`.
struct BackupEvents<'a> {
    printer: &'a Printer,
}

#[derive(Serialize)]
struct BackupEvent<'a> {
    event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uploaded: Option<bool>,
}

impl crate::backup::Reporter for BackupEvents<'_> {
    fn objects(&self, count: usize) {
        self.printer.json(&BackupEvent {
            event: "objects-read",
            count: Some(count),
            digest: None,
            bytes: None,
            uploaded: None,
        });
    }

    fn blob(&self, digest: &str, bytes: u64, uploaded: bool) {
        self.printer.json(&BackupEvent {
            event: "blob",
            count: None,
            digest: Some(digest),
            bytes: Some(bytes),
            uploaded: Some(uploaded),
        });
    }

    fn archive(&self, bytes: u64) {
        self.printer.json(&BackupEvent {
            event: "archive-written",
            count: None,
            digest: None,
            bytes: Some(bytes),
            uploaded: None,
        });
    }
}

/// A spinner: objects read, blobs stored, bytes written.
struct BackupBar {
    bar: ProgressBar,
    state: Mutex<(usize, usize, u64)>,
}

impl BackupBar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} backing up: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        BackupBar {
            bar,
            state: Mutex::new((0, 0, 0)),
        }
    }

    fn show(&self) {
        let Ok(s) = self.state.lock() else { return };
        self.bar.set_message(format!(
            "{} objects, {} image blobs, {:.1} MB written",
            s.0,
            s.1,
            s.2 as f64 / 1e6
        ));
    }
}

impl crate::backup::Reporter for BackupBar {
    fn objects(&self, count: usize) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = count;
        }
        self.show();
    }

    fn blob(&self, _digest: &str, bytes: u64, uploaded: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.1 += 1;
            if uploaded {
                s.2 += bytes;
            }
        }
        self.show();
    }

    fn archive(&self, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.2 += bytes;
        }
        self.show();
        self.bar.finish_and_clear();
    }
}

impl Drop for BackupBar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
