//! The availability proof: during a rollout, watch the EndpointSlices of the Services in front
//! of the workloads and record the lowest number of ready endpoints each one had.
//!
//! One watch per Service (label `kubernetes.io/service-name`), each feeding a reflector store
//! keyed by slice; the ready count is recomputed from the whole store on every event, since a
//! Service may have several slices and an endpoint may move between them. The minimum is
//! counted from the first complete list on, so start the watch **before** the apply. The
//! figures are compared with each Service's floor (replicas minus maxUnavailable, see
//! [`availability_floor`]); a breach is reported at once through [`AvailabilityWatch::breached`]
//! so the caller can fail the release without waiting for the rollout to end.
//!
//! This module only watches; it never changes the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::reporter::RolloutReporter;
use crate::ui::{Diagnostic, ExitStatus};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long [`AvailabilityWatch::start`] waits for every first list.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Consecutive watch errors (each after the watcher's backoff) before a Service's watch stops.
const MAX_WATCH_ERRORS: u32 = 5;

/// A Service to watch and the number of ready endpoints it must never fall below.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceFloor {
    /// The Service's name (in the watch's namespace).
    pub service: String,
    /// The floor, usually [`availability_floor`] of the workload behind it.
    pub floor: u32,
}

/// What the watch saw of one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAvailability {
    /// The Service's name.
    pub service: String,
    /// The floor it was held to.
    pub floor: u32,
    /// The lowest number of ready endpoints seen since the first complete list.
    pub min_ready: u32,
    /// The number of ready endpoints at the last event.
    pub ready_now: u32,
    /// `min_ready >= floor`.
    pub held: bool,
}

impl ServiceAvailability {
    fn new(service: &str, floor: u32, ready: u32) -> Self {
        ServiceAvailability {
            service: service.to_string(),
            floor,
            min_ready: ready,
            ready_now: ready,
            held: ready >= floor,
        }
    }

    fn observe(&mut self, ready: u32) {
        self.ready_now = ready;
        self.min_ready = self.min_ready.min(ready);
        self.held = self.min_ready >= self.floor;
    }
}

/// The number of distinct endpoints across `slices` that take traffic: ready ones, and
/// terminating ones that still serve (a pod in its preStop pause, draining). The second kind
/// matters because the EndpointSlice controller lists a new pod a moment after the Deployment
/// controller, having seen it Ready, starts terminating an old one: counting only `ready` would
/// report a dip that no request sees. An endpoint counts once even when it appears in two
/// slices (a move between slices, or IPv4 and IPv6 slices of one pod). It is identified by its
/// target (usually the pod), else by its first address.
pub fn ready_endpoints<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> u32 {
    let ready: BTreeSet<String> = slices
        .into_iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().is_some_and(takes_traffic))
        .filter_map(|e| match &e.target_ref {
            Some(t) => Some(format!(
                "{}/{}/{}",
                t.kind.as_deref().unwrap_or_default(),
                t.namespace.as_deref().unwrap_or_default(),
                t.name.as_deref().unwrap_or_default()
            )),
            None => e.addresses.first().cloned(),
        })
        .collect();
    u32::try_from(ready.len()).unwrap_or(u32::MAX)
}

/// Ready, or terminating and still serving (draining during its preStop pause).
fn takes_traffic(conditions: &k8s_openapi::api::discovery::v1::EndpointConditions) -> bool {
    conditions.ready == Some(true)
        || (conditions.terminating == Some(true) && conditions.serving == Some(true))
}

/// The floor of a rolling update: `replicas − maxUnavailable`, with a percentage rounded down
/// like the Deployment controller does (default 25%). Never below 0.
pub fn availability_floor(replicas: i32, max_unavailable: Option<&IntOrString>) -> u32 {
    let replicas = replicas.max(0);
    let unavailable = match max_unavailable {
        None => replicas / 4,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
        {
            Some(percent) => i32::try_from(i64::from(replicas) * percent / 100).unwrap_or(replicas),
            None => replicas / 4,
        },
    };
    u32::try_from((replicas - unavailable.clamp(0, replicas)).max(0)).unwrap_or(0)
}

/// Why the availability watch failed.
#[derive(Debug, thiserror::Error)]
pub enum AvailabilityError {
    /// A Service's first EndpointSlice list did not complete in time.
    #[error(
        "the EndpointSlices of service {namespace}/{service} did not list the ready endpoints its floor expects in time"
    )]
    Sync {
        /// The namespace.
        namespace: String,
        /// The Service.
        service: String,
    },
    /// A Service's watch kept failing after its retries.
    #[error("the EndpointSlice watch of service {namespace}/{service} keeps failing")]
    Watch {
        /// The namespace.
        namespace: String,
        /// The Service.
        service: String,
        /// The last watch error.
        #[source]
        source: Box<crate::cluster::ApiCause>,
    },
}

impl Diagnostic for AvailabilityError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }

    fn hints(&self) -> Vec<String> {
        vec!["ferry needs `list` and `watch` on endpointslices.discovery.k8s.io".to_string()]
    }
}

/// State shared by the per-Service tasks and the handle.
#[derive(Debug, Default)]
struct Shared {
    figures: BTreeMap<String, ServiceAvailability>,
}

/// A running availability watch over some Services of one namespace. Dropping it stops the
/// watches; [`AvailabilityWatch::finish`] stops them and returns the figures.
pub struct AvailabilityWatch {
    namespace: String,
    shared: Arc<Mutex<Shared>>,
    stop: watch::Sender<bool>,
    breach: watch::Receiver<Option<ServiceAvailability>>,
    tasks: Vec<JoinHandle<Result<(), AvailabilityError>>>,
}

impl AvailabilityWatch {
    /// Starts watching `services` in `namespace` and returns once each has been listed
    /// completely and lists at least its floor of endpoints (its slices have caught up with
    /// the pods already ready), so the minimum covers everything that happens after this call.
    ///
    /// # Errors
    /// [`AvailabilityError::Sync`] when a first list does not complete within 30 s,
    /// [`AvailabilityError::Watch`] when a watch fails for good before that.
    pub async fn start(
        client: &Client,
        namespace: &str,
        services: &[ServiceFloor],
        reporter: Arc<dyn RolloutReporter>,
    ) -> Result<Self, AvailabilityError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, stop_rx) = watch::channel(false);
        let (breach_tx, breach) = watch::channel(None);
        let breach_tx = Arc::new(breach_tx);
        let mut tasks = Vec::new();
        let mut synced = Vec::new();
        for s in services {
            let (tx, rx) = oneshot::channel();
            synced.push((s.service.clone(), rx));
            tasks.push(tokio::spawn(watch_service(
                Api::namespaced(client.clone(), namespace),
                namespace.to_string(),
                s.clone(),
                Arc::clone(&shared),
                stop_rx.clone(),
                Arc::clone(&breach_tx),
                Arc::clone(&reporter),
                tx,
            )));
        }
        let mut handle = AvailabilityWatch {
            namespace: namespace.to_string(),
            shared,
            stop,
            breach,
            tasks,
        };
        for (service, rx) in synced {
            match tokio::time::timeout(SYNC_TIMEOUT, rx).await {
                Ok(Ok(())) => {}
                // The task ended before its first list: its own error says why.
                Ok(Err(_)) => return Err(handle.stop_with_error(&service).await),
                Err(_) => {
                    return Err(AvailabilityError::Sync {
                        namespace: namespace.to_string(),
                        service,
                    });
                }
            }
        }
        handle.breach.mark_unchanged();
        Ok(handle)
    }

    /// The figures so far, sorted by Service.
    pub fn snapshot(&self) -> Vec<ServiceAvailability> {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.figures.values().cloned().collect()
    }

    /// Resolves with the first Service whose ready endpoints fell below its floor. Pending
    /// forever while every floor holds (select it against the rollout wait).
    pub async fn breached(&mut self) -> ServiceAvailability {
        loop {
            if let Some(b) = self.breach.borrow_and_update().clone() {
                return b;
            }
            if self.breach.changed().await.is_err() {
                // Every sender is gone: no breach can come any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the watches and returns the final figures, sorted by Service.
    ///
    /// # Errors
    /// [`AvailabilityError::Watch`] when a watch had failed for good (its figures would be
    /// incomplete, so they are not returned as a proof).
    pub async fn finish(mut self) -> Result<Vec<ServiceAvailability>, AvailabilityError> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for task in self.tasks.drain(..) {
            if let Ok(Err(e)) = task.await
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.snapshot()),
        }
    }

    async fn stop_with_error(&mut self, service: &str) -> AvailabilityError {
        let _ = self.stop.send(true);
        let mut found = None;
        for task in self.tasks.drain(..) {
            if let Ok(Err(e)) = task.await
                && found.is_none()
            {
                found = Some(e);
            }
        }
        found.unwrap_or_else(|| AvailabilityError::Sync {
            namespace: self.namespace.clone(),
            service: service.to_string(),
        })
    }
}

impl Drop for AvailabilityWatch {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)] // one spawned task's whole context; private
async fn watch_service(
    api: Api<EndpointSlice>,
    namespace: String,
    target: ServiceFloor,
    shared: Arc<Mutex<Shared>>,
    mut stop: watch::Receiver<bool>,
    breach: Arc<watch::Sender<Option<ServiceAvailability>>>,
    reporter: Arc<dyn RolloutReporter>,
    synced: oneshot::Sender<()>,
) -> Result<(), AvailabilityError> {
    let (store, writer) = reflector::store::<EndpointSlice>();
    let cfg =
        watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", target.service));
    let mut events = reflector::reflector(writer, watcher(api, cfg))
        .default_backoff()
        .boxed();
    let mut synced = Some(synced);
    let mut listed = false;
    let mut errors = 0u32;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            event = events.next() => event,
        };
        match event {
            None => return Ok(()),
            Some(Err(e)) => {
                errors += 1;
                let error = crate::cluster::ApiCause::from_watcher(&e);
                tracing::debug!(service = %target.service, %error, "EndpointSlice watch error");
                if errors >= MAX_WATCH_ERRORS {
                    return Err(AvailabilityError::Watch {
                        namespace,
                        service: target.service,
                        source: Box::new(crate::cluster::ApiCause::from_watcher(&e)),
                    });
                }
            }
            Some(Ok(event)) => {
                errors = 0;
                match event {
                    // The store swaps in the new list only at InitDone.
                    watcher::Event::Init | watcher::Event::InitApply(_) => continue,
                    watcher::Event::InitDone => listed = true,
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
                }
                if !listed {
                    continue;
                }
                // Arm only once the slices list the endpoints the floor expects: the floor is
                // capped at the pods the workload reports ready, and the EndpointSlice
                // controller can lag behind them (e.g. right after a previous release).
                if synced.is_some()
                    && ready_endpoints(store.state().iter().map(AsRef::as_ref)) < target.floor
                {
                    continue;
                }
                record(&store, &target, &shared, &breach, reporter.as_ref());
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
        }
    }
}

fn record(
    store: &Store<EndpointSlice>,
    target: &ServiceFloor,
    shared: &Mutex<Shared>,
    breach: &watch::Sender<Option<ServiceAvailability>>,
    reporter: &dyn RolloutReporter,
) {
    let slices = store.state();
    let ready = ready_endpoints(slices.iter().map(AsRef::as_ref));
    let figures = {
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = shared
            .figures
            .entry(target.service.clone())
            .and_modify(|f| f.observe(ready))
            .or_insert_with(|| ServiceAvailability::new(&target.service, target.floor, ready));
        entry.clone()
    };
    if !figures.held {
        breach.send_if_modified(|b| {
            if b.is_none() {
                *b = Some(figures.clone());
                true
            } else {
                false
            }
        });
    }
    reporter.endpoints(&figures);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "web-x" }, "addressType": "IPv4", "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn ep(pod: &str, ip: &str, ready: bool) -> serde_json::Value {
        json!({ "addresses": [ip], "conditions": { "ready": ready, "serving": ready },
                "targetRef": { "kind": "Pod", "namespace": "ns", "name": pod } })
    }

    #[test]
    fn ready_endpoints_counts_each_ready_pod_once() {
        let a = slice(json!([
            ep("p1", "10.0.0.1", true),
            ep("p2", "10.0.0.2", false)
        ]));
        let b = slice(json!([
            ep("p1", "10.0.0.1", true),
            ep("p3", "10.0.0.3", true)
        ]));
        assert_eq!(ready_endpoints([&a, &b]), 2);
        assert_eq!(ready_endpoints([&slice(json!(null))]), 0);
    }

    #[test]
    fn a_draining_endpoint_counts_and_a_stopped_one_does_not() {
        let draining = json!({ "addresses": ["10.0.0.9"], "targetRef": {"kind": "Pod", "namespace": "n", "name": "old"},
            "conditions": { "ready": false, "serving": true, "terminating": true } });
        let stopped = json!({ "addresses": ["10.0.0.8"], "targetRef": {"kind": "Pod", "namespace": "n", "name": "gone"},
            "conditions": { "ready": false, "serving": false, "terminating": true } });
        let starting = json!({ "addresses": ["10.0.0.7"], "targetRef": {"kind": "Pod", "namespace": "n", "name": "new"},
            "conditions": { "ready": false, "serving": false, "terminating": false } });
        assert_eq!(
            ready_endpoints([&slice(json!([draining, stopped, starting]))]),
            1
        );
    }

    #[test]
    fn floors_follow_the_deployment_controller() {
        assert_eq!(availability_floor(3, Some(&IntOrString::Int(0))), 3);
        assert_eq!(availability_floor(3, Some(&IntOrString::Int(1))), 2);
        assert_eq!(availability_floor(4, None), 3);
        assert_eq!(
            availability_floor(3, Some(&IntOrString::String("50%".into()))),
            2
        );
        assert_eq!(availability_floor(3, Some(&IntOrString::Int(9))), 0);
    }

    #[test]
    fn the_minimum_only_goes_down() {
        let mut f = ServiceAvailability::new("web", 3, 3);
        f.observe(4);
        assert!(f.held);
        f.observe(2);
        f.observe(3);
        assert_eq!((f.min_ready, f.ready_now, f.held), (2, 3, false));
    }
}
