//! Progress of the apply engine, reported through a small trait so the engine never knows
//! how (or whether) it is displayed. `src/ui/reporters.rs` implements it with indicatif bars
//! and JSON lines; [`NoopReporter`] ignores everything.

use super::apply::ObjectResult;
use crate::object::ObjectRef;

/// Receives the engine's progress. Called from the engine's task, possibly many times per
/// millisecond: implementations must be quick and never block on I/O for long.
pub trait ApplyReporter: Send + Sync {
    /// The server checks `total` objects with a dry run before they are applied.
    fn checking(&self, total: usize) {
        let _ = total;
    }

    /// The server's dry run of one object answered (passed or failed).
    fn checked(&self, id: &ObjectRef) {
        let _ = id;
    }

    /// Step `number` (1-based) of `of` starts with `total` objects.
    fn step_started(&self, number: usize, of: usize, total: usize) {
        let _ = (number, of, total);
    }

    /// One object is done (applied, found unchanged, or, in a dry run, checked).
    fn object_done(&self, result: &ObjectResult) {
        let _ = result;
    }

    /// The engine waits for CustomResourceDefinitions to be established.
    fn waiting(&self, what: &str) {
        let _ = what;
    }

    /// Step `number` is finished.
    fn step_finished(&self, number: usize) {
        let _ = number;
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
