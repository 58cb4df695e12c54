//! Progress of the apply engine, reported through a small trait so the engine never knows
//! how (or whether) it is displayed. `src/ui/reporters.rs` implements it with indicatif bars
//! and JSON lines; [`NoopReporter`] ignores everything.

use super::apply::ObjectResult;
use crate::render::Wave;

/// Receives the engine's progress. Called from the engine's task, possibly many times per
/// millisecond: implementations must be quick and never block on I/O for long.
pub trait ApplyReporter: Send + Sync {
    /// A wave starts with `total` objects.
    fn wave_started(&self, wave: Wave, total: usize) {
        let _ = (wave, total);
    }

    /// The server checks `total` objects of the wave with a dry run before any is applied.
    fn checking(&self, wave: Wave, total: usize) {
        let _ = (wave, total);
    }

    /// One object of the current wave is done (applied, found unchanged, or dry-run checked).
    fn object_done(&self, result: &ObjectResult) {
        let _ = result;
    }

    /// The engine waits for CustomResourceDefinitions to be established.
    fn waiting(&self, what: &str) {
        let _ = what;
    }

    /// A wave is finished.
    fn wave_finished(&self, wave: Wave) {
        let _ = wave;
    }

    /// Pruning starts with `total` objects to delete.
    fn prune_started(&self, total: usize) {
        let _ = total;
    }

    /// One object was pruned.
    fn pruned(&self, result: &ObjectResult) {
        let _ = result;
    }

    /// The run is over (successfully or not): clear any display.
    fn finished(&self) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopReporter;

impl ApplyReporter for NoopReporter {}
