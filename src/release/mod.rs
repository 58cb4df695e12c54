//! The building blocks of `ferry release`: the rollout watch, the availability proof, release
//! records, the lease lock, HTTP checks and the progress reporter.
//!
//! Each piece is usable and tested on its own; `ops::release` composes them. This module never
//! renders, never applies objects (that is `cluster`) and never prints (progress goes through
//! [`RolloutReporter`]).
//!
//! - [`rollout`]: pure completion decisions ([`deployment_state`], [`statefulset_state`],
//!   [`daemonset_state`], [`pod_failure`]) and [`RolloutWatch`], the namespace-wide watch that
//!   applies them, pinned to the generations the apply returned ([`wait_for_rollout`] starts
//!   one and waits).
//! - [`availability`]: [`AvailabilityWatch`], the minimum number of endpoints taking traffic
//!   (ready and draining, counted apart) of each Service during the rollout, against its
//!   floor, and whether the watch saw all of it ([`ServiceAvailability::proven`]).
//! - [`floors`](mod@floors): [`floors()`], the floor of each live Service in front of a released
//!   Deployment, StatefulSet or DaemonSet ([`FloorRule`], [`manifest_floor`]).
//! - [`record`]: [`ReleaseRecord`] and [`RecordStore`]: one compressed, chunked Secret set per
//!   revision; history, last succeeded revision, pruning.
//! - [`lock`]: [`acquire`] the per-environment Lease; [`LockGuard`] renews it, reports its
//!   loss at once ([`LockGuard::lost`]) and releases it.
//! - [`checks`]: [`run_checks`] over [`CheckSpec`]s, with retries, backoff and timeouts, to a
//!   URL or through the API server's service proxy ([`ServiceProxy`]).
//! - [`reporter`]: the [`RolloutReporter`] trait and [`NoopRolloutReporter`].
//!
//! # Composing `ferry release`
//!
//! ```text
//! let store = RecordStore::new(client.clone(), &ns, &app, &env);
//! let history = store.history().await?;               // lint against last_succeeded_in(&history)
//! let rollout = RolloutWatch::start(&client, namespaces, &kinds);   // warm before the apply
//! let guard = lock::acquire(&client, &LockOptions { namespace, app, env,
//!     holder: lock::default_holder(), duration: DEFAULT_LEASE_DURATION, wait })?;
//! // `history` stands if guard.uncontended() and its newest record is settled; else re-read.
//! // Newest record `pending` (a crash; guard.took_over() names the former holder): restore
//! // store.last_succeeded_in(&history) and mark it rolled back.
//! let mut record = ReleaseRecord { revision: next_revision_after(&history),
//!     status: ReleaseStatus::Pending, candidate: Candidate::new(images, bundle.templates_digest),
//!     objects, timings: Timings::starting_now(), released_by: record::current_user(), .. };
//! store.create(&record).await?;                       // before the apply; RevisionTaken → re-read
//! let prepared = cluster::prepare(&client, &request); // concurrently with the create and:
//! let floors = floors(&client, &ns, &objects).await?;  // live Services, live workloads
//! let mut endpoints = AvailabilityWatch::start(&client, &ns, &floors, reporter.clone()).await?;
//! let applied = tokio::select! {                      // a lost lock stops every phase
//!     r = prepared.run(reporter) => r?,               // keep metadata.generation per workload
//!     e = guard.lost() => /* stop at once, restore nothing */,
//! };
//! let workloads: Vec<Workload> = /* kind via WorkloadKind::from_kind, generation from apply */;
//! let outcome = tokio::select! {                      // a breach or a watch gap fails at once
//!     r = rollout.wait(&workloads, timeout, WaitOptions::default(), &*reporter) => r,
//!     f = endpoints.failed() => /* fail with f.failure(Some(apply_started)) */,
//!     e = guard.lost() => /* stop */,
//! };
//! record.availability = endpoints.finish().await?;    // proves each watch current
//! // any a.failure(..) (below the floor, or not proven) fails the release
//! let specs = env.gates.checks.iter().map(CheckSpec::from_config).collect::<Result<_, _>>()?;
//! record.checks = run_checks(&checks::http_client()?, Some(&proxy), &specs, &*reporter).await;
//! // success → status Succeeded; any failure → re-apply store.last_succeeded() objects,
//! // wait_for_rollout again, status RolledBack + rolled_back_to; then:
//! record.timings.finish(); store.update(&record).await?;
//! store.prune_in(&history_with_this_record, history_limit).await?;
//! guard.release().await?;
//! ```
//!
//! Every error type implements [`crate::ui::Diagnostic`] (exit status and hints).

pub mod availability;
pub mod checks;
pub mod floors;
pub mod lock;
pub mod record;
pub mod reporter;
pub mod rollout;

pub use availability::{
    AvailabilityError, AvailabilityWatch, EndpointCounts, LAG_BOUND, ServiceAvailability,
    ServiceFloor, availability_floor, endpoint_counts, ready_endpoints,
};
pub use checks::{
    CheckError, CheckResult, CheckSpec, CheckTarget, ServiceProxy, http_client, run_check,
    run_checks,
};
pub use floors::{FloorError, FloorRule, Live, floors, manifest_floor};
pub use lock::{
    DEFAULT_LEASE_DURATION, LeaseState, LockError, LockGuard, LockOptions, TakenOver, acquire,
    default_holder, lease_name, lease_state,
};
pub use record::{
    Candidate, RecordError, RecordStore, RecordSummary, ReleaseRecord, ReleaseStatus, Timings,
    current_user, next_revision_after,
};
pub use reporter::{NoopRolloutReporter, RolloutReporter};
pub use rollout::{
    PodFailure, Progress, RolloutError, RolloutOutcome, RolloutState, RolloutWatch, WaitOptions,
    Workload, WorkloadFailure, WorkloadKind, WorkloadOutcome, daemonset_state, deployment_state,
    pod_failure, statefulset_state, wait_for_rollout,
};

/// Serializes a [`std::time::Duration`] as whole milliseconds (fields named `*_ms`).
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
