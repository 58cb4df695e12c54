//! Progress of a release, reported through a small trait so the release machinery never knows
//! how (or whether) it is displayed. `src/ui/reporters.rs` implements it with indicatif bars
//! and JSON lines (`rollout-progress`, `endpoints`, `check`); [`NoopRolloutReporter`] ignores
//! everything.

use std::time::Duration;

use super::availability::ServiceAvailability;
use super::checks::CheckResult;
use super::rollout::{Progress, Workload};

/// Receives release progress. Called from watch tasks, possibly many times per millisecond:
/// implementations must be quick and never block on I/O for long.
pub trait RolloutReporter: Send + Sync {
    /// A workload's rollout moved: `progress` says what it waits for now.
    fn workload_progress(&self, workload: &Workload, progress: &Progress) {
        let _ = (workload, progress);
    }

    /// A workload's rollout completed after `elapsed`.
    fn workload_done(&self, workload: &Workload, elapsed: Duration) {
        let _ = (workload, elapsed);
    }

    /// The ready endpoints of a Service changed; `figures.min_ready` is the lowest seen so far.
    fn endpoints(&self, figures: &ServiceAvailability) {
        let _ = figures;
    }

    /// An attempt of an HTTP check failed and will be retried (`attempt` counts from 1).
    fn check_retry(&self, name: &str, attempt: u32, reason: &str) {
        let _ = (name, attempt, reason);
    }

    /// An HTTP check finished (passed or failed for good).
    fn check_finished(&self, result: &CheckResult) {
        let _ = result;
    }
}

/// A reporter that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopRolloutReporter;

impl RolloutReporter for NoopRolloutReporter {}
