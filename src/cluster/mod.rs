//! The Kubernetes adapter: everything Ferry does to or reads from a cluster.
//!
//! - [`connect`]: a kube client from a kubeconfig and context, checked with one request.
//! - [`discovery`]: which resource (plural, group, version, scope) serves each object's kind,
//!   including kinds whose CustomResourceDefinition is in the same bundle.
//! - [`applyset`]: ownership: the labels every applied object carries (kubectl's ApplySet
//!   conventions) and the parent Secret that records what was applied last.
//! - [`apply`]: the engine: one server-side dry run of the whole bundle, then server-side
//!   apply along the dependency plan ([`crate::plan`]), concurrent within a step; then
//!   pruning of owned objects that left the bundle.
//! - [`diff`]: what an apply would change, as unified diffs with server-managed fields
//!   stripped and Secret values redacted.
//! - [`status`]: what Ferry manages in an environment, workload readiness and drift.
//! - [`rbac`]: the exact rules a deployer identity needs for the calls this module makes.
//! - [`reporter`]: the progress trait the engine reports through ([`ApplyReporter`]).
//! - [`throttle`]: the client layer that waits out 429 Too Many Requests and resends, so
//!   throttling (API Priority and Fairness) never fails a request within its budget.
//! - `fake` (tests only): an in-process fake API server for the engine's error paths.
//!
//! This module performs I/O against the API server and nothing else: it never prints, never
//! reads project files and never picks an exit code (its errors say which one they deserve).

pub mod apply;
pub mod applyset;
pub mod connect;
pub mod diff;
pub mod discovery;
pub mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod rbac;
pub mod reporter;
pub mod status;
pub mod throttle;

pub use apply::{
    Action, ApplyFailure, ApplyReport, ApplyRequest, Members, Mode, ObjectResult, PreparedApply,
    Stage, prepare,
};
pub use applyset::Ownership;
pub use connect::{Cluster, ConnectError, ConnectOptions, connect};
pub use error::{ApiCause, Error, RequestError, Target, Verb};
pub use reporter::{ApplyReporter, NoopReporter};

/// The field manager of `ferry apply` (and of later `release`): the owner of every field
/// Ferry sets in an application's objects.
pub const FIELD_MANAGER: &str = "ferry";

/// The field manager of `ferry provision`, separate from [`FIELD_MANAGER`] so the two never
/// take fields from each other when both set one object (e.g. the app's ServiceAccount).
pub const PROVISION_FIELD_MANAGER: &str = "ferry-provision";

/// How many requests the engine keeps in flight by default.
pub const DEFAULT_CONCURRENCY: usize = 32;
