//! When is a rollout done? Pure decisions over k8s-openapi types, and the watch that applies
//! them while the controllers work.
//!
//! The decisions follow `kubectl rollout status` (`rollout_status.go`), pinned to the
//! generation `G` the apply returned rather than the generation of whatever object the watch
//! happens to see: a status that has not observed `G` yet is stale, however complete it looks.
//! That is why [`deployment_state`] never relies on the `Progressing` /
//! `NewReplicaSetAvailable` condition alone (the bug class of `is_deployment_completed`,
//! kubernetes#124264, helm#12861).
//!
//! [`RolloutWatch`] watches (never polls) the workloads, their pods and, for Deployments,
//! their ReplicaSets (one namespace-wide watch per kind), re-decides on every event, and fails fast with the pod, container and
//! reason when a pod of the *new* revision cannot start (image pull errors, crash loops,
//! configuration errors, an unschedulable pod). It never issues other API calls from the event
//! loop and never waits longer than its timeout. This module does not apply anything and does
//! not roll back: the caller decides what a failure means.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::SelectorExt;
use kube::core::labels::{ParseExpressionError, Selector};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Serialize;
use tokio::task::JoinHandle;

use super::reporter::RolloutReporter;
use crate::cluster::ApiCause;
use crate::ui::{Diagnostic, ExitStatus};

/// Container waiting reasons that mean a new pod will not start without a change.
pub const FAILING_WAIT_REASONS: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The annotation the Deployment controller numbers revisions with.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Consecutive watch errors (each after the watcher's own backoff) before the wait gives up.
const MAX_WATCH_ERRORS: u32 = 5;

/// The kinds whose rollout Ferry can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// The kind for a `kind` string of an `apps/v1` object; `None` for kinds without a rollout.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "Deployment" => Some(WorkloadKind::Deployment),
            "StatefulSet" => Some(WorkloadKind::StatefulSet),
            "DaemonSet" => Some(WorkloadKind::DaemonSet),
            _ => None,
        }
    }

    /// The kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload to wait for, pinned to the generation its apply returned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's name.
    pub name: String,
    /// `metadata.generation` of the object the apply returned: the controller must have
    /// observed at least this generation before any status counts.
    pub generation: i64,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What an unfinished rollout waits for, in the words of `kubectl rollout status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "waiting", rename_all = "kebab-case")]
pub enum Progress {
    /// The controller has not written a status yet.
    NoStatus,
    /// The status describes an older generation than the one applied.
    StaleGeneration {
        /// `status.observedGeneration`.
        observed: i64,
        /// The generation the apply returned.
        wanted: i64,
    },
    /// Fewer pods run the new template than wanted.
    Updating {
        /// Pods of the new revision.
        updated: i32,
        /// Pods wanted of the new revision.
        wanted: i32,
    },
    /// Pods of old revisions still exist.
    OldReplicasPending {
        /// How many.
        old: i32,
    },
    /// Pods of the new revision exist but are not all available yet.
    BecomingAvailable {
        /// Available pods.
        available: i32,
        /// Pods of the new revision.
        updated: i32,
    },
    /// StatefulSet pods are not all ready yet.
    BecomingReady {
        /// Ready pods.
        ready: i32,
        /// Pods wanted.
        wanted: i32,
    },
    /// A StatefulSet's current revision is not the update revision yet.
    RevisionPending,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::NoStatus => f.write_str("waiting for the controller to report a status"),
            Progress::StaleGeneration { observed, wanted } => write!(
                f,
                "waiting for the controller to observe generation {wanted} (at {observed})"
            ),
            Progress::Updating { updated, wanted } => {
                write!(f, "{updated} of {wanted} new replicas have been updated")
            }
            Progress::OldReplicasPending { old } => {
                write!(f, "{old} old replicas are pending termination")
            }
            Progress::BecomingAvailable { available, updated } => {
                write!(f, "{available} of {updated} updated replicas are available")
            }
            Progress::BecomingReady { ready, wanted } => {
                write!(f, "{ready} of {wanted} replicas are ready")
            }
            Progress::RevisionPending => {
                f.write_str("waiting for the update revision to become current")
            }
        }
    }
}

/// Why a workload's rollout cannot complete, as decided from the workload alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum WorkloadFailure {
    /// The Deployment controller gave up: `Progressing` is `ProgressDeadlineExceeded`.
    ProgressDeadlineExceeded {
        /// The controller's message.
        message: String,
    },
    /// The update strategy (e.g. `OnDelete`) never rolls pods by itself.
    NotWaitable {
        /// The strategy's type.
        strategy: String,
    },
}

/// The decision for one workload at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RolloutState {
    /// Still rolling; the payload says what it waits for.
    Progressing(Progress),
    /// The rollout is complete.
    Done,
    /// The Deployment is paused: it will not progress until resumed, so waiting is pointless.
    Paused,
    /// The rollout failed.
    Failed(WorkloadFailure),
}

/// Decides a Deployment's rollout, pinned to `generation`, like `kubectl rollout status`:
/// stale status → progressing; `ProgressDeadlineExceeded` → failed; then updated, old and
/// available replicas in that order. `spec.paused` → [`RolloutState::Paused`].
pub fn deployment_state(d: &Deployment, generation: i64) -> RolloutState {
    let spec = d.spec.as_ref();
    if spec.and_then(|s| s.paused).unwrap_or(false) {
        return RolloutState::Paused;
    }
    let Some(st) = &d.status else {
        return RolloutState::Progressing(Progress::NoStatus);
    };
    let observed = st.observed_generation.unwrap_or(0);
    if observed < generation {
        return RolloutState::Progressing(Progress::StaleGeneration {
            observed,
            wanted: generation,
        });
    }
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return RolloutState::Failed(WorkloadFailure::ProgressDeadlineExceeded {
            message: c.message.clone().unwrap_or_default(),
        });
    }
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    if updated < wanted {
        return RolloutState::Progressing(Progress::Updating { updated, wanted });
    }
    let total = st.replicas.unwrap_or(0);
    if total > updated {
        return RolloutState::Progressing(Progress::OldReplicasPending {
            old: total - updated,
        });
    }
    let available = st.available_replicas.unwrap_or(0);
    if available < updated {
        return RolloutState::Progressing(Progress::BecomingAvailable { available, updated });
    }
    RolloutState::Done
}

/// Decides a StatefulSet's rollout, pinned to `generation`. With a partition `P` only the
/// ordinals ≥ `P` are updated, so `updatedReplicas ≥ replicas − P` suffices; without one the
/// current revision must equal the update revision. `OnDelete` is not waitable.
pub fn statefulset_state(s: &StatefulSet, generation: i64) -> RolloutState {
    let spec = s.spec.as_ref();
    let strategy = spec.and_then(|s| s.update_strategy.as_ref());
    let kind = strategy
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate");
    if kind != "RollingUpdate" {
        return RolloutState::Failed(WorkloadFailure::NotWaitable {
            strategy: kind.to_string(),
        });
    }
    let Some(st) = &s.status else {
        return RolloutState::Progressing(Progress::NoStatus);
    };
    let observed = st.observed_generation.unwrap_or(0);
    if observed < generation {
        return RolloutState::Progressing(Progress::StaleGeneration {
            observed,
            wanted: generation,
        });
    }
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = st.ready_replicas.unwrap_or(0);
    if ready < wanted {
        return RolloutState::Progressing(Progress::BecomingReady { ready, wanted });
    }
    let partition = strategy
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    if partition > 0 {
        let wanted_updated = (wanted - partition).max(0);
        if updated < wanted_updated {
            return RolloutState::Progressing(Progress::Updating {
                updated,
                wanted: wanted_updated,
            });
        }
        return RolloutState::Done;
    }
    if st.update_revision.is_some() && st.current_revision != st.update_revision {
        if updated < wanted {
            return RolloutState::Progressing(Progress::Updating { updated, wanted });
        }
        return RolloutState::Progressing(Progress::RevisionPending);
    }
    RolloutState::Done
}

/// Decides a DaemonSet's rollout, pinned to `generation`: every desired node runs an updated
/// and available pod. `OnDelete` is not waitable.
pub fn daemonset_state(ds: &DaemonSet, generation: i64) -> RolloutState {
    let kind = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate");
    if kind != "RollingUpdate" {
        return RolloutState::Failed(WorkloadFailure::NotWaitable {
            strategy: kind.to_string(),
        });
    }
    let Some(st) = &ds.status else {
        return RolloutState::Progressing(Progress::NoStatus);
    };
    let observed = st.observed_generation.unwrap_or(0);
    if observed < generation {
        return RolloutState::Progressing(Progress::StaleGeneration {
            observed,
            wanted: generation,
        });
    }
    let desired = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if updated < desired {
        return RolloutState::Progressing(Progress::Updating {
            updated,
            wanted: desired,
        });
    }
    let available = st.number_available.unwrap_or(0);
    if available < desired {
        return RolloutState::Progressing(Progress::BecomingAvailable {
            available,
            updated: desired,
        });
    }
    RolloutState::Done
}

/// A pod of the new revision that cannot start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodFailure {
    /// The pod's name.
    pub pod: String,
    /// The container that fails, when the signal is a container's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `ImagePullBackOff`, `CrashLoopBackOff`, `Unschedulable`, …
    pub reason: String,
    /// The kubelet's or scheduler's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The first failure signal of `pod`: a container (init containers first) waiting for one of
/// [`FAILING_WAIT_REASONS`], or a `PodScheduled=False/Unschedulable` condition older than
/// `unschedulable_grace` at `now` (so a pod the scheduler retries briefly is not a failure).
pub fn pod_failure(pod: &Pod, now: Timestamp, unschedulable_grace: Duration) -> Option<PodFailure> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in containers {
        let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let Some(reason) = waiting.reason.as_deref() else {
            continue;
        };
        if FAILING_WAIT_REASONS.contains(&reason) {
            return Some(PodFailure {
                pod: name,
                container: Some(c.name.clone()),
                reason: reason.to_string(),
                message: waiting.message.clone(),
            });
        }
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    let since = unschedulable
        .last_transition_time
        .as_ref()
        .map_or(now, |t| t.0);
    let grace = i64::try_from(unschedulable_grace.as_millis()).unwrap_or(i64::MAX);
    let waited = now.as_millisecond().saturating_sub(since.as_millisecond());
    (waited >= grace).then(|| PodFailure {
        pod: name,
        container: None,
        reason: "Unschedulable".to_string(),
        message: unschedulable.message.clone(),
    })
}

/// Whether `pod` reports `PodScheduled=False/Unschedulable` (failing or within its grace).
fn is_unschedulable(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable"))
        })
}

/// The `pod-template-hash` of a Deployment's new ReplicaSet: the one it controls whose
/// revision annotation equals the Deployment's. `None` until the controller has made it.
pub fn new_replicaset_hash<'a>(
    d: &Deployment,
    replicasets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Option<String> {
    let uid = d.metadata.uid.as_deref()?;
    let revision = d.metadata.annotations.as_ref()?.get(REVISION_ANNOTATION)?;
    replicasets
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                == Some(revision)
        })
        .and_then(|rs| {
            rs.metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")
                .cloned()
        })
}

/// What a finished rollout took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadOutcome {
    /// The workload.
    pub workload: Workload,
    /// From the start of the wait to completion.
    #[serde(rename = "elapsed_ms", with = "super::millis")]
    pub elapsed: Duration,
}

/// Every workload's rollout completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutOutcome {
    /// One per workload, in the order given.
    pub workloads: Vec<WorkloadOutcome>,
}

/// Knobs of [`wait_for_rollout`] beyond the timeout.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// How long a new pod may stay unschedulable before the rollout fails.
    pub unschedulable_grace: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            unschedulable_grace: Duration::from_secs(30),
        }
    }
}

/// A workload still rolling when the timeout struck, and what it waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The workload.
    pub workload: Workload,
    /// Its last known progress (`None` if no status was seen).
    pub progress: Option<Progress>,
}

/// Why waiting for a rollout failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The workload was deleted (or replaced) while its rollout was watched.
    #[error("{workload} was deleted during its rollout")]
    Deleted {
        /// The workload.
        workload: Workload,
    },
    /// The workload's label selector cannot be turned into a watch selector.
    #[error("the selector of {workload} is invalid")]
    Selector {
        /// The workload.
        workload: Workload,
        /// The parse error.
        #[source]
        source: ParseExpressionError,
    },
    /// A watch kept failing after its retries.
    #[error("the watch of {what} for {workload} keeps failing")]
    Watch {
        /// The workload.
        workload: Workload,
        /// What was watched: `the workload`, `pods`, `replicasets`.
        what: &'static str,
        /// The last watch error.
        #[source]
        source: Box<ApiCause>,
    },
    /// The Deployment controller reported `ProgressDeadlineExceeded`.
    #[error("{workload} failed: ProgressDeadlineExceeded")]
    DeadlineExceeded {
        /// The workload.
        workload: Workload,
        /// The controller's message.
        message: String,
    },
    /// A pod of the new revision cannot start.
    #[error("{workload} failed: pod {} {}", .failure.pod, describe(.failure))]
    PodFailed {
        /// The workload.
        workload: Workload,
        /// The pod, container and reason.
        failure: Box<PodFailure>,
    },
    /// The Deployment is paused, so its rollout would never finish.
    #[error("{workload} is paused")]
    Paused {
        /// The workload.
        workload: Workload,
    },
    /// The update strategy never rolls pods by itself.
    #[error("{workload} uses the {strategy} update strategy, whose rollout cannot be waited for")]
    NotWaitable {
        /// The workload.
        workload: Workload,
        /// The strategy.
        strategy: String,
    },
    /// The timeout struck before every rollout completed.
    #[error("rollout not complete after {}: {}", humantime::format_duration(*.timeout), summarize(.pending))]
    Timeout {
        /// The timeout.
        timeout: Duration,
        /// The workloads still rolling.
        pending: Vec<Pending>,
    },
}

fn describe(f: &PodFailure) -> String {
    match &f.container {
        Some(c) => format!("has container {c} in {}", f.reason),
        None => format!("is {}", f.reason),
    }
}

fn summarize(pending: &[Pending]) -> String {
    pending
        .iter()
        .map(|p| match &p.progress {
            Some(progress) => format!("{} ({progress})", p.workload),
            None => p.workload.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl RolloutError {
    /// The workload the error is about (`None` for a timeout over several).
    pub fn workload(&self) -> Option<&Workload> {
        match self {
            RolloutError::Deleted { workload }
            | RolloutError::Selector { workload, .. }
            | RolloutError::Watch { workload, .. }
            | RolloutError::DeadlineExceeded { workload, .. }
            | RolloutError::PodFailed { workload, .. }
            | RolloutError::Paused { workload }
            | RolloutError::NotWaitable { workload, .. } => Some(workload),
            RolloutError::Timeout { .. } => None,
        }
    }
}

impl Diagnostic for RolloutError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }

    fn hints(&self) -> Vec<String> {
        match self {
            RolloutError::DeadlineExceeded { message, .. } if !message.is_empty() => {
                vec![format!("the controller says: {message}")]
            }
            RolloutError::PodFailed { failure, .. } => failure
                .message
                .iter()
                .map(|m| format!("the cluster says: {m}"))
                .collect(),
            RolloutError::Paused { workload } => vec![format!(
                "resume it with `kubectl -n {} rollout resume deployment/{}`",
                workload.namespace, workload.name
            )],
            RolloutError::Timeout { .. } => vec![
                "raise `release.timeout` in ferry.yaml if the rollout is merely slow".to_string(),
            ],
            _ => Vec::new(),
        }
    }
}

/// The per-kind parts of the watch loop.
trait Rollable:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn state(&self, generation: i64) -> RolloutState;
    fn selector(&self) -> Option<&LabelSelector>;
    /// Whether `pod` belongs to the revision being rolled out.
    fn is_new_pod(&self, pod: &Pod, replicasets: &[Arc<ReplicaSet>]) -> bool;
}

fn pod_label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

impl Rollable for Deployment {
    fn state(&self, generation: i64) -> RolloutState {
        deployment_state(self, generation)
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn is_new_pod(&self, pod: &Pod, replicasets: &[Arc<ReplicaSet>]) -> bool {
        new_replicaset_hash(self, replicasets.iter().map(AsRef::as_ref))
            .is_some_and(|hash| pod_label(pod, "pod-template-hash") == Some(hash.as_str()))
    }
}

impl Rollable for StatefulSet {
    fn state(&self, generation: i64) -> RolloutState {
        statefulset_state(self, generation)
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn is_new_pod(&self, pod: &Pod, _: &[Arc<ReplicaSet>]) -> bool {
        let update = self
            .status
            .as_ref()
            .and_then(|s| s.update_revision.as_deref());
        update.is_some() && pod_label(pod, "controller-revision-hash") == update
    }
}

impl Rollable for DaemonSet {
    fn state(&self, generation: i64) -> RolloutState {
        daemonset_state(self, generation)
    }
    fn selector(&self) -> Option<&LabelSelector> {
        self.spec.as_ref().map(|s| &s.selector)
    }
    fn is_new_pod(&self, pod: &Pod, _: &[Arc<ReplicaSet>]) -> bool {
        let generation = self.metadata.generation.map(|g| g.to_string());
        generation.is_some() && pod_label(pod, "pod-template-generation") == generation.as_deref()
    }
}

/// Namespace-wide watches of the workloads, their pods and ReplicaSets, each feeding a
/// reflector store, shared by every workload a release waits for.
///
/// Start it **before** the apply ([`RolloutWatch::start`] issues no request itself; the
/// spawned watches list and watch in the background), so that by the time the apply returns
/// the stores are warm and [`RolloutWatch::wait`] decides from events as they arrive. The first
/// lists may be served from the API server's watch cache (`resourceVersion=0`): a slightly
/// stale start is harmless, since every decision is pinned to the generation the apply
/// returned and the watch delivers every later change in order. One watch per kind and
/// namespace, however many workloads: ten Deployments cost three watches, not thirty.
/// Dropping the value stops the watches.
pub struct RolloutWatch {
    stores: BTreeMap<String, NamespaceStores>,
    changed: tokio::sync::watch::Receiver<u64>,
    failure: Arc<Mutex<Option<(&'static str, watcher::Error)>>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The stores of one namespace; a kind not watched has an empty store.
struct NamespaceStores {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
}

/// What the background watches share with the waiter.
struct Shared {
    changed: tokio::sync::watch::Sender<u64>,
    failure: Arc<Mutex<Option<(&'static str, watcher::Error)>>>,
}

impl RolloutWatch {
    /// Starts watching `kinds` (and their pods; ReplicaSets too for Deployments) in every
    /// namespace of `namespaces`. Must be called within a Tokio runtime.
    pub fn start(
        client: &Client,
        namespaces: impl IntoIterator<Item = String>,
        kinds: &BTreeSet<WorkloadKind>,
    ) -> Self {
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let failure = Arc::new(Mutex::new(None));
        let shared = Arc::new(Shared {
            changed: tx,
            failure: Arc::clone(&failure),
        });
        let mut tasks = Vec::new();
        let mut stores = BTreeMap::new();
        for ns in namespaces {
            let wants = |k| kinds.contains(&k);
            let any = !kinds.is_empty();
            let stores_of_ns = NamespaceStores {
                deployments: reflect(
                    client,
                    &ns,
                    wants(WorkloadKind::Deployment),
                    "the Deployments",
                    &shared,
                    &mut tasks,
                ),
                statefulsets: reflect(
                    client,
                    &ns,
                    wants(WorkloadKind::StatefulSet),
                    "the StatefulSets",
                    &shared,
                    &mut tasks,
                ),
                daemonsets: reflect(
                    client,
                    &ns,
                    wants(WorkloadKind::DaemonSet),
                    "the DaemonSets",
                    &shared,
                    &mut tasks,
                ),
                pods: reflect(client, &ns, any, "pods", &shared, &mut tasks),
                replicasets: reflect(
                    client,
                    &ns,
                    wants(WorkloadKind::Deployment),
                    "replicasets",
                    &shared,
                    &mut tasks,
                ),
            };
            stores.insert(ns, stores_of_ns);
        }
        RolloutWatch {
            stores,
            changed,
            failure,
            tasks,
        }
    }

    /// Waits until every workload's rollout completes. Each workload is pinned to its
    /// [`Workload::generation`]; progress goes to `reporter` as it changes. Returns at the
    /// first failure, so a broken image fails the release within moments of the kubelet
    /// reporting it.
    ///
    /// # Errors
    /// [`RolloutError::DeadlineExceeded`], [`RolloutError::PodFailed`] (naming pod, container
    /// and reason), [`RolloutError::Paused`] or [`RolloutError::NotWaitable`] when a rollout
    /// cannot finish; [`RolloutError::Deleted`] when a workload seen during the wait vanishes;
    /// [`RolloutError::Timeout`] (naming what each unfinished workload waited for) after
    /// `timeout`; [`RolloutError::Watch`] when a watch keeps failing; [`RolloutError::Selector`]
    /// for a selector that cannot be matched.
    ///
    /// # Guarantees
    /// Never returns success from a status that has not observed the pinned generation, issues
    /// no API call, and never waits longer than `timeout`.
    pub async fn wait(
        &self,
        workloads: &[Workload],
        timeout: Duration,
        options: WaitOptions,
        reporter: &dyn RolloutReporter,
    ) -> Result<RolloutOutcome, RolloutError> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.changed.clone();
        let mut pending: Vec<Tracked> = workloads.iter().cloned().map(Tracked::new).collect();
        let mut done: BTreeMap<Workload, WorkloadOutcome> = BTreeMap::new();
        loop {
            changed.borrow_and_update();
            // A namespace-wide watch that gave up is charged to the first workload waited for.
            if let Some(first) = pending.first()
                && let Some((what, source)) = self.take_failure()
            {
                return Err(RolloutError::Watch {
                    workload: first.workload.clone(),
                    what,
                    source: Box::new(ApiCause::from_watcher(&source)),
                });
            }
            let mut recheck = false;
            let mut still = Vec::with_capacity(pending.len());
            for mut tracked in pending {
                match self.decide(&mut tracked, options)? {
                    Decision::Done => {
                        let elapsed = start.elapsed();
                        reporter.workload_done(&tracked.workload, elapsed);
                        done.insert(
                            tracked.workload.clone(),
                            WorkloadOutcome {
                                workload: tracked.workload,
                                elapsed,
                            },
                        );
                    }
                    Decision::Rolling {
                        progress,
                        unschedulable,
                    } => {
                        recheck |= unschedulable;
                        if tracked.reported.as_ref() != Some(&progress) {
                            reporter.workload_progress(&tracked.workload, &progress);
                            tracked.reported = Some(progress);
                        }
                        still.push(tracked);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                let workloads = workloads.iter().filter_map(|w| done.remove(w)).collect();
                return Ok(RolloutOutcome { workloads });
            }
            // An unschedulable new pod raises no further events while it waits: re-decide on
            // a local timer (no API call) so its grace period can run out.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline) => {
                    return Err(RolloutError::Timeout {
                        timeout,
                        pending: pending.into_iter().map(Tracked::into_pending).collect(),
                    });
                }
                r = changed.changed() => {
                    if r.is_err() {
                        // Every watch task ended: only a failure ends them.
                        if let Some(t) = pending.first() {
                            return Err(RolloutError::Deleted { workload: t.workload.clone() });
                        }
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)), if recheck => {}
            }
        }
    }

    fn take_failure(&self) -> Option<(&'static str, watcher::Error)> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn decide(&self, t: &mut Tracked, options: WaitOptions) -> Result<Decision, RolloutError> {
        let w = &t.workload;
        let Some(stores) = self.stores.get(&w.namespace) else {
            return Ok(t.waiting());
        };
        match w.kind {
            WorkloadKind::Deployment => decide_kind(&stores.deployments, stores, t, options),
            WorkloadKind::StatefulSet => decide_kind(&stores.statefulsets, stores, t, options),
            WorkloadKind::DaemonSet => decide_kind(&stores.daemonsets, stores, t, options),
        }
    }
}

impl Drop for RolloutWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A workload being waited for.
struct Tracked {
    workload: Workload,
    /// The object's uid once the watch has shown it.
    seen: Option<String>,
    reported: Option<Progress>,
}

impl Tracked {
    fn new(workload: Workload) -> Self {
        Tracked {
            workload,
            seen: None,
            reported: None,
        }
    }

    fn waiting(&self) -> Decision {
        Decision::Rolling {
            progress: self.reported.clone().unwrap_or(Progress::NoStatus),
            unschedulable: false,
        }
    }

    fn into_pending(self) -> Pending {
        Pending {
            workload: self.workload,
            progress: self.reported.filter(|p| p != &Progress::NoStatus),
        }
    }
}

/// One decision of the wait loop.
enum Decision {
    Done,
    Rolling {
        progress: Progress,
        /// A new pod waits for a node (re-decide on a timer).
        unschedulable: bool,
    },
}

/// Starts one namespace-wide watch into a new store (an empty store when `wanted` is false).
fn reflect<K>(
    client: &Client,
    namespace: &str,
    wanted: bool,
    what: &'static str,
    shared: &Arc<Shared>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    if !wanted {
        return store;
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()),
    )
    .default_backoff();
    let shared = Arc::clone(shared);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut errors = 0u32;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => errors = 0,
                Err(e) => {
                    errors += 1;
                    tracing::debug!(what, error = %ApiCause::from_watcher(&e), "rollout watch error");
                    if errors >= MAX_WATCH_ERRORS {
                        *shared
                            .failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((what, e));
                        shared.changed.send_modify(|n| *n += 1);
                        return;
                    }
                }
            }
            shared.changed.send_modify(|n| *n += 1);
        }
    }));
    store
}

/// Decides one workload of kind `K` from the stores.
fn decide_kind<K: Rollable>(
    objects: &Store<K>,
    stores: &NamespaceStores,
    t: &mut Tracked,
    options: WaitOptions,
) -> Result<Decision, RolloutError> {
    let w = &t.workload;
    let key = reflector::ObjectRef::<K>::new(&w.name).within(&w.namespace);
    let Some(obj) = objects.get(&key) else {
        if t.seen.is_some() {
            return Err(RolloutError::Deleted {
                workload: w.clone(),
            });
        }
        // Not listed yet: the watch is still catching up with the apply.
        return Ok(t.waiting());
    };
    let uid = obj.meta().uid.clone();
    match (&t.seen, &uid) {
        (Some(seen), Some(uid)) if seen != uid => {
            return Err(RolloutError::Deleted {
                workload: w.clone(),
            });
        }
        _ => t.seen = uid,
    }
    match obj.state(w.generation) {
        RolloutState::Done => Ok(Decision::Done),
        RolloutState::Paused => Err(RolloutError::Paused {
            workload: w.clone(),
        }),
        RolloutState::Failed(WorkloadFailure::ProgressDeadlineExceeded { message }) => {
            Err(RolloutError::DeadlineExceeded {
                workload: w.clone(),
                message,
            })
        }
        RolloutState::Failed(WorkloadFailure::NotWaitable { strategy }) => {
            Err(RolloutError::NotWaitable {
                workload: w.clone(),
                strategy,
            })
        }
        RolloutState::Progressing(progress) => {
            let selector = match obj.selector() {
                Some(s) => {
                    Selector::try_from(s.clone()).map_err(|source| RolloutError::Selector {
                        workload: w.clone(),
                        source,
                    })?
                }
                None => Selector::default(),
            };
            let rs = stores.replicasets.state();
            let now = Timestamp::now();
            let mut pods: Vec<Arc<Pod>> = stores
                .pods
                .state()
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .is_some_and(|labels| selector.matches(labels))
                })
                .collect();
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let mut unschedulable = false;
            for pod in pods.iter().filter(|p| obj.is_new_pod(p, &rs)) {
                if let Some(failure) = pod_failure(pod, now, options.unschedulable_grace) {
                    return Err(RolloutError::PodFailed {
                        workload: w.clone(),
                        failure: Box::new(failure),
                    });
                }
                unschedulable |= is_unschedulable(pod);
            }
            Ok(Decision::Rolling {
                progress,
                unschedulable,
            })
        }
    }
}

/// Waits until every workload's rollout completes: starts a [`RolloutWatch`] of their
/// namespaces and kinds and [`RolloutWatch::wait`]s on it. Prefer starting the watch before
/// the apply when there is one.
///
/// # Errors
/// As [`RolloutWatch::wait`].
pub async fn wait_for_rollout(
    client: &Client,
    workloads: &[Workload],
    timeout: Duration,
    options: WaitOptions,
    reporter: &dyn RolloutReporter,
) -> Result<RolloutOutcome, RolloutError> {
    let namespaces: BTreeSet<String> = workloads.iter().map(|w| w.namespace.clone()).collect();
    let kinds: BTreeSet<WorkloadKind> = workloads.iter().map(|w| w.kind).collect();
    let watch = RolloutWatch::start(client, namespaces, &kinds);
    watch.wait(workloads, timeout, options, reporter).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(spec: serde_json::Value, status: serde_json::Value) -> Deployment {
        let mut spec_full = json!({
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "app", "image": "x" }] } }
        });
        if let (Some(s), Some(extra)) = (spec_full.as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "generation": 4 },
            "spec": spec_full,
            "status": status,
        }))
        .unwrap()
    }

    fn complete() -> serde_json::Value {
        json!({ "observedGeneration": 4, "replicas": 3, "updatedReplicas": 3,
                "readyReplicas": 3, "availableReplicas": 3,
                "conditions": [{ "type": "Progressing", "status": "True",
                                 "reason": "NewReplicaSetAvailable" }] })
    }

    fn with(mut base: serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
        if let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) {
            b.extend(p.clone());
        }
        base
    }

    #[test]
    fn deployment_with_stale_status_is_not_done_even_if_it_looks_complete() {
        let d = deployment(
            json!({}),
            with(complete(), json!({ "observedGeneration": 3 })),
        );
        assert_eq!(
            deployment_state(&d, 4),
            RolloutState::Progressing(Progress::StaleGeneration {
                observed: 3,
                wanted: 4
            })
        );
    }

    #[test]
    fn deployment_pinned_generation_beats_the_objects_own() {
        // The watched object shows generation 4 observed, but the apply returned 5.
        let d = deployment(json!({}), complete());
        assert!(matches!(
            deployment_state(&d, 5),
            RolloutState::Progressing(Progress::StaleGeneration { wanted: 5, .. })
        ));
        assert_eq!(deployment_state(&d, 4), RolloutState::Done);
    }

    #[test]
    fn deployment_without_status_waits() {
        let d = deployment(json!({}), json!(null));
        assert_eq!(
            deployment_state(&d, 1),
            RolloutState::Progressing(Progress::NoStatus)
        );
    }

    #[test]
    fn deployment_deadline_exceeded_fails() {
        let d = deployment(
            json!({}),
            with(
                complete(),
                json!({ "updatedReplicas": 1, "conditions": [{ "type": "Progressing", "status": "False",
                  "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing." }] }),
            ),
        );
        assert_eq!(
            deployment_state(&d, 4),
            RolloutState::Failed(WorkloadFailure::ProgressDeadlineExceeded {
                message: "ReplicaSet \"web-1\" has timed out progressing.".into()
            })
        );
    }

    #[test]
    fn deployment_waits_for_updated_replicas() {
        let d = deployment(
            json!({}),
            with(complete(), json!({ "replicas": 4, "updatedReplicas": 1 })),
        );
        assert_eq!(
            deployment_state(&d, 4),
            RolloutState::Progressing(Progress::Updating {
                updated: 1,
                wanted: 3
            })
        );
    }

    #[test]
    fn deployment_waits_for_old_replicas_to_go() {
        let d = deployment(json!({}), with(complete(), json!({ "replicas": 4 })));
        assert_eq!(
            deployment_state(&d, 4),
            RolloutState::Progressing(Progress::OldReplicasPending { old: 1 })
        );
    }

    #[test]
    fn deployment_waits_for_available_replicas() {
        let d = deployment(
            json!({}),
            with(complete(), json!({ "availableReplicas": 2 })),
        );
        assert_eq!(
            deployment_state(&d, 4),
            RolloutState::Progressing(Progress::BecomingAvailable {
                available: 2,
                updated: 3
            })
        );
    }

    #[test]
    fn deployment_complete_is_done() {
        assert_eq!(
            deployment_state(&deployment(json!({}), complete()), 4),
            RolloutState::Done
        );
    }

    #[test]
    fn deployment_paused_is_reported_not_waited_for() {
        let d = deployment(
            json!({ "paused": true }),
            with(complete(), json!({ "observedGeneration": 3 })),
        );
        assert_eq!(deployment_state(&d, 4), RolloutState::Paused);
    }

    #[test]
    fn progress_reads_like_kubectl() {
        assert_eq!(
            Progress::BecomingAvailable {
                available: 2,
                updated: 3
            }
            .to_string(),
            "2 of 3 updated replicas are available"
        );
        assert_eq!(
            Progress::OldReplicasPending { old: 1 }.to_string(),
            "1 old replicas are pending termination"
        );
    }

    fn statefulset(
        partition: Option<i32>,
        strategy: &str,
        status: serde_json::Value,
    ) -> StatefulSet {
        let mut update = json!({ "type": strategy });
        if let Some(p) = partition {
            update["rollingUpdate"] = json!({ "partition": p });
        }
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "db", "generation": 2 },
            "spec": { "replicas": 3, "serviceName": "db",
                      "selector": { "matchLabels": { "app": "db" } },
                      "updateStrategy": update,
                      "template": { "metadata": { "labels": { "app": "db" } },
                                    "spec": { "containers": [{ "name": "db", "image": "x" }] } } },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn statefulset_decisions() {
        let done = json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "db-2", "updateRevision": "db-2" });
        assert_eq!(
            statefulset_state(&statefulset(None, "RollingUpdate", done.clone()), 2),
            RolloutState::Done
        );
        assert!(matches!(
            statefulset_state(&statefulset(None, "RollingUpdate", done.clone()), 3),
            RolloutState::Progressing(Progress::StaleGeneration { .. })
        ));
        let rolling = json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "updatedReplicas": 1, "currentRevision": "db-1", "updateRevision": "db-2" });
        assert_eq!(
            statefulset_state(&statefulset(None, "RollingUpdate", rolling.clone()), 2),
            RolloutState::Progressing(Progress::Updating {
                updated: 1,
                wanted: 3
            })
        );
        // Partition 2: only ordinal 2 is updated, so one updated replica completes it.
        assert_eq!(
            statefulset_state(&statefulset(Some(2), "RollingUpdate", rolling.clone()), 2),
            RolloutState::Done
        );
        assert_eq!(
            statefulset_state(&statefulset(Some(1), "RollingUpdate", rolling), 2),
            RolloutState::Progressing(Progress::Updating {
                updated: 1,
                wanted: 2
            })
        );
        let unready = json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 2,
            "updatedReplicas": 3, "currentRevision": "db-2", "updateRevision": "db-2" });
        assert_eq!(
            statefulset_state(&statefulset(None, "RollingUpdate", unready), 2),
            RolloutState::Progressing(Progress::BecomingReady {
                ready: 2,
                wanted: 3
            })
        );
        let settling = json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "db-1", "updateRevision": "db-2" });
        assert_eq!(
            statefulset_state(&statefulset(None, "RollingUpdate", settling), 2),
            RolloutState::Progressing(Progress::RevisionPending)
        );
        assert_eq!(
            statefulset_state(&statefulset(None, "OnDelete", done), 2),
            RolloutState::Failed(WorkloadFailure::NotWaitable {
                strategy: "OnDelete".into()
            })
        );
    }

    fn daemonset(status: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": "agent", "generation": 3 },
            "spec": { "selector": { "matchLabels": { "app": "agent" } },
                      "template": { "metadata": { "labels": { "app": "agent" } },
                                    "spec": { "containers": [{ "name": "a", "image": "x" }] } } },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn daemonset_decisions() {
        let base = json!({ "observedGeneration": 3, "desiredNumberScheduled": 4,
            "currentNumberScheduled": 4, "numberMisscheduled": 0, "numberReady": 4,
            "updatedNumberScheduled": 4, "numberAvailable": 4 });
        assert_eq!(
            daemonset_state(&daemonset(base.clone()), 3),
            RolloutState::Done
        );
        assert!(matches!(
            daemonset_state(
                &daemonset(with(base.clone(), json!({ "observedGeneration": 2 }))),
                3
            ),
            RolloutState::Progressing(Progress::StaleGeneration { .. })
        ));
        assert_eq!(
            daemonset_state(
                &daemonset(with(base.clone(), json!({ "updatedNumberScheduled": 2 }))),
                3
            ),
            RolloutState::Progressing(Progress::Updating {
                updated: 2,
                wanted: 4
            })
        );
        assert_eq!(
            daemonset_state(&daemonset(with(base, json!({ "numberAvailable": 3 }))), 3),
            RolloutState::Progressing(Progress::BecomingAvailable {
                available: 3,
                updated: 4
            })
        );
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "web-abc", "labels": { "pod-template-hash": "abc" } },
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str) -> serde_json::Value {
        json!({ "containerStatuses": [
            { "name": "sidecar", "ready": true, "restartCount": 0, "image": "s", "imageID": "",
              "state": { "running": {} } },
            { "name": "app", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
              "state": { "waiting": { "reason": reason, "message": "back-off pulling" } } }
        ] })
    }

    #[test]
    fn pod_signals_name_pod_and_container() {
        let now = Timestamp::now();
        for reason in FAILING_WAIT_REASONS {
            let f = pod_failure(&pod(waiting(reason)), now, Duration::ZERO).unwrap();
            assert_eq!(f.pod, "web-abc");
            assert_eq!(f.container.as_deref(), Some("app"));
            assert_eq!(f.reason, reason);
        }
        assert_eq!(
            pod_failure(&pod(waiting("ContainerCreating")), now, Duration::ZERO),
            None
        );
        assert_eq!(pod_failure(&pod(json!({})), now, Duration::ZERO), None);
    }

    #[test]
    fn unschedulable_pod_fails_after_its_grace() {
        let since = Timestamp::now();
        let p = pod(
            json!({ "conditions": [{ "type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available",
            "lastTransitionTime": since.to_string() }] }),
        );
        assert_eq!(pod_failure(&p, since, Duration::from_secs(30)), None);
        let later = since
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(31))
            .unwrap();
        let f = pod_failure(&p, later, Duration::from_secs(30)).unwrap();
        assert_eq!((f.reason.as_str(), f.container), ("Unschedulable", None));
    }

    #[test]
    fn new_replicaset_is_the_one_with_the_deployments_revision() {
        let mut d = deployment(json!({}), complete());
        d.metadata.uid = Some("d-uid".into());
        d.metadata.annotations = Some([(REVISION_ANNOTATION.to_string(), "2".to_string())].into());
        let rs = |hash: &str, rev: &str, owner: &str| -> ReplicaSet {
            serde_json::from_value(json!({
                "metadata": { "name": format!("web-{hash}"),
                    "labels": { "pod-template-hash": hash },
                    "annotations": { REVISION_ANNOTATION: rev },
                    "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "Deployment",
                        "name": "web", "uid": owner, "controller": true }] },
            }))
            .unwrap()
        };
        let sets = [
            rs("old", "1", "d-uid"),
            rs("new", "2", "d-uid"),
            rs("other", "2", "x"),
        ];
        assert_eq!(new_replicaset_hash(&d, &sets).as_deref(), Some("new"));
        assert_eq!(new_replicaset_hash(&d, &sets[..1]), None);
    }

    #[test]
    fn pod_failure_error_names_pod_container_and_reason() {
        let e = RolloutError::PodFailed {
            workload: Workload {
                kind: WorkloadKind::Deployment,
                namespace: "shop".into(),
                name: "web".into(),
                generation: 2,
            },
            failure: Box::new(PodFailure {
                pod: "web-abc".into(),
                container: Some("app".into()),
                reason: "ImagePullBackOff".into(),
                message: None,
            }),
        };
        assert_eq!(
            e.to_string(),
            "Deployment shop/web failed: pod web-abc has container app in ImagePullBackOff"
        );
    }
}
