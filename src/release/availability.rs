//! The availability proof: during a rollout, watch the EndpointSlices of the Services in front
//! of the workloads and record the lowest number of endpoints taking traffic each one had, and
//! whether the watch saw everything in between.
//!
//! One list and then one watch per Service (label `kubernetes.io/service-name`), not kube's
//! `watcher`, which resumes a cut connection silently. Its events drive a small pure state
//! machine (`Tracker`) that keeps the Service's slices by name and recounts the
//! endpoints on every change, since a Service may have several slices and an endpoint may move
//! between them. The watch is **armed** once its first list is complete and lists at least the
//! floor's endpoints; [`AvailabilityWatch::start`] returns only then, so start it **before**
//! the apply.
//!
//! # Guarantees
//!
//! A figure is a proof ([`ServiceAvailability::proven`]) only when the watch was live and
//! current from the arming list until [`AvailabilityWatch::finish`]:
//!
//! - any watch error, end of the watch stream (a cut connection, an API server restart) or
//!   re-list after arming is a gap: the Service is marked
//!   [`unproven`](ServiceAvailability::unproven) at once, its watch stops, and
//!   [`AvailabilityWatch::failed`] resolves so the caller can stop the release;
//! - at the end, a consistent LIST of the Service's slices must match what the watch shows
//!   within [`LAG_BOUND`]; a watch that lags past it is not a proof;
//! - a Service whose slices never list its floor is refused before anything is applied
//!   ([`AvailabilityError::Sync`]).
//!
//! A fall below the floor also resolves [`AvailabilityWatch::failed`] at once, with the
//! minimum, its ready/draining split and when it was first reached.
//!
//! This module only watches and lists; it never changes the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::reporter::RolloutReporter;
use crate::ui::{Diagnostic, ExitStatus};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long [`AvailabilityWatch::start`] waits for every first list.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Consecutive watch errors (each after the watcher's backoff) before a Service's watch gives
/// up arming. After arming, a single error is a gap.
const MAX_WATCH_ERRORS: u32 = 5;

/// The server-side timeout of the EndpointSlice watch: long enough that a stream ending
/// during a release means the connection broke (a gap), not that the server closed it.
const WATCH_TIMEOUT_SECS: u32 = 3600;

/// The pause before a fresh list when a watch fails before arming.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// How long [`AvailabilityWatch::finish`] waits for each watch to show what a fresh, consistent
/// list of the Service's slices shows. A watch further behind than this proves nothing.
pub const LAG_BOUND: Duration = Duration::from_secs(5);

/// A Service to watch and the number of endpoints taking traffic it must never fall below.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceFloor {
    /// The Service's name (in the watch's namespace).
    pub service: String,
    /// The floor, usually [`availability_floor`] of the workload behind it.
    pub floor: u32,
}

/// What the watch saw of one Service.
///
/// "Endpoints taking traffic" are the ready ones plus the draining ones (terminating but still
/// serving, e.g. in their preStop pause); `min_ready` and `ready_now` count both, and
/// `draining_at_min` / `draining_now` say how many of them were draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAvailability {
    /// The Service's name.
    pub service: String,
    /// The floor it was held to.
    pub floor: u32,
    /// The lowest number of endpoints taking traffic (ready or draining) seen since the watch
    /// was armed.
    pub min_ready: u32,
    /// The number of endpoints taking traffic (ready or draining) at the last event.
    pub ready_now: u32,
    /// `min_ready >= floor`.
    pub held: bool,
    /// Of `min_ready`, how many were draining when the minimum was first reached.
    #[serde(default)]
    pub draining_at_min: u32,
    /// Of `ready_now`, how many were draining.
    #[serde(default)]
    pub draining_now: u32,
    /// When the minimum was first reached (RFC 3339, UTC); `None` while it is still the count
    /// of the arming list.
    #[serde(default)]
    pub min_at: Option<String>,
    /// True only when the watch was live and current from before the apply until after the
    /// rollout (settled by [`AvailabilityWatch::finish`]; false while watching).
    #[serde(default)]
    pub proven: bool,
    /// Why the figures are not a proof, in one line (a watch error, a re-list, a lag).
    #[serde(default)]
    pub unproven: Option<String>,
}

impl ServiceAvailability {
    fn new(service: &str, floor: u32, counts: EndpointCounts) -> Self {
        ServiceAvailability {
            service: service.to_string(),
            floor,
            min_ready: counts.serving(),
            ready_now: counts.serving(),
            held: counts.serving() >= floor,
            draining_at_min: counts.draining,
            draining_now: counts.draining,
            min_at: None,
            proven: false,
            unproven: None,
        }
    }

    fn observe(&mut self, counts: EndpointCounts, now: Timestamp) {
        self.ready_now = counts.serving();
        self.draining_now = counts.draining;
        if counts.serving() < self.min_ready {
            self.min_ready = counts.serving();
            self.draining_at_min = counts.draining;
            self.min_at = Some(rfc3339(now));
        }
        self.held = self.min_ready >= self.floor;
    }

    /// What fails the release, in one line: a fall below the floor (with the minimum, its
    /// split, when, and how long after `rollout_started`), else why the figures are not a
    /// proof; `None` when neither.
    pub fn failure(&self, rollout_started: Option<Timestamp>) -> Option<String> {
        if !self.held {
            let n = self.min_ready;
            let when = match self
                .min_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
            {
                Some(at) => {
                    let into = match rollout_started {
                        Some(start) => {
                            let secs = at.duration_since(start).as_secs_f64();
                            format!(", {secs:.1}s into the rollout")
                        }
                        None => String::new(),
                    };
                    format!(" at {}{into}", clock(at))
                }
                None => String::new(),
            };
            return Some(format!(
                "service {} fell to {n} endpoint{} taking traffic ({} ready, {} draining){when}, below its floor of {}",
                self.service,
                if n == 1 { "" } else { "s" },
                n - self.draining_at_min.min(n),
                self.draining_at_min,
                self.floor
            ));
        }
        self.unproven
            .as_ref()
            .map(|why| format!("availability of service {} not proven: {why}", self.service))
    }
}

/// RFC 3339 in UTC, to the millisecond.
fn rfc3339(t: Timestamp) -> String {
    t.round(Unit::Millisecond).unwrap_or(t).to_string()
}

/// The time of day of `t` in UTC, e.g. `12:03:04.5Z`.
fn clock(t: Timestamp) -> String {
    let text = rfc3339(t);
    match text.split_once('T') {
        Some((_, time)) => time.to_string(),
        None => text,
    }
}

/// Endpoints taking traffic, split by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointCounts {
    /// Ready endpoints.
    pub ready: u32,
    /// Terminating endpoints that still serve (draining, e.g. during a preStop pause).
    pub draining: u32,
}

impl EndpointCounts {
    /// Ready plus draining: the endpoints taking traffic.
    pub fn serving(self) -> u32 {
        self.ready.saturating_add(self.draining)
    }
}

/// The distinct endpoints across `slices` that take traffic, split into ready and draining
/// (terminating but still serving: a pod in its preStop pause). The second kind matters
/// because the EndpointSlice controller lists a new pod a moment after the Deployment
/// controller, having seen it Ready, starts terminating an old one: counting only `ready`
/// would report a dip that no request sees. An endpoint counts once even when it appears in
/// two slices (a move between slices, or IPv4 and IPv6 slices of one pod), as ready if any
/// slice says so. It is identified by its target (usually the pod), else by its first address.
pub fn endpoint_counts<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> EndpointCounts {
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    for e in slices
        .into_iter()
        .flat_map(|s| s.endpoints.iter().flatten())
    {
        let Some(conditions) = e.conditions.as_ref().filter(|c| takes_traffic(c)) else {
            continue;
        };
        let id = match &e.target_ref {
            Some(t) => format!(
                "{}/{}/{}",
                t.kind.as_deref().unwrap_or_default(),
                t.namespace.as_deref().unwrap_or_default(),
                t.name.as_deref().unwrap_or_default()
            ),
            None => match e.addresses.first() {
                Some(a) => a.clone(),
                None => continue,
            },
        };
        *seen.entry(id).or_insert(false) |= conditions.ready == Some(true);
    }
    let ready = seen.values().filter(|r| **r).count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    EndpointCounts {
        ready: count(ready),
        draining: count(seen.len() - ready),
    }
}

/// The number of distinct endpoints across `slices` that take traffic (ready or draining):
/// [`endpoint_counts`]`.serving()`.
pub fn ready_endpoints<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> u32 {
    endpoint_counts(slices).serving()
}

/// Ready, or terminating and still serving (draining during its preStop pause).
fn takes_traffic(conditions: &EndpointConditions) -> bool {
    conditions.ready == Some(true)
        || (conditions.terminating == Some(true) && conditions.serving == Some(true))
}

/// The floor of a Deployment's rolling update: `replicas − maxUnavailable`, with a percentage
/// rounded down like the Deployment controller does (default 25%). Never below 0. (The other
/// kinds are in [`super::floors`](mod@super::floors).)
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
    /// A Service's first EndpointSlice list did not list its floor in time: its availability
    /// could not be proven, so nothing is applied.
    #[error(
        "availability of service {namespace}/{service} cannot be proven: its EndpointSlices did not list the {floor} endpoints its floor expects in time"
    )]
    Sync {
        /// The namespace.
        namespace: String,
        /// The Service.
        service: String,
        /// Its floor.
        floor: u32,
    },
    /// A Service's watch kept failing before it was armed.
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

/// What one watch event did to a [`Tracker`].
#[derive(Debug)]
enum Step {
    /// Not armed yet; nothing to report.
    Waiting,
    /// This event armed the watch.
    Armed,
    /// Armed: the figures may have changed.
    Changed,
    /// The watch kept failing before it could arm.
    GaveUp(watcher::Error),
}

/// The pure core of one Service's watch: fed the watcher's events (and errors), it keeps the
/// Service's slices, arms once a complete list shows the floor, then keeps the figures and
/// marks any gap in the watch.
#[derive(Debug)]
struct Tracker {
    target: ServiceFloor,
    /// The slices as the watch shows them, by name.
    slices: BTreeMap<String, EndpointSlice>,
    /// A list in progress (between `Init` and `InitDone`).
    relist: Option<BTreeMap<String, EndpointSlice>>,
    /// A complete list has been seen.
    listed: bool,
    /// Consecutive errors before arming.
    errors: u32,
    /// The figures, from arming on.
    figures: Option<ServiceAvailability>,
}

impl Tracker {
    fn new(target: ServiceFloor) -> Self {
        Tracker {
            target,
            slices: BTreeMap::new(),
            relist: None,
            listed: false,
            errors: 0,
            figures: None,
        }
    }

    fn on(
        &mut self,
        event: Result<watcher::Event<EndpointSlice>, watcher::Error>,
        now: Timestamp,
    ) -> Step {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if self.figures.is_some() {
                    self.gap(format!(
                        "the EndpointSlice watch failed at {} ({}); changes may have been missed",
                        clock(now),
                        crate::cluster::ApiCause::from_watcher(&e)
                    ));
                    return Step::Changed;
                }
                self.errors += 1;
                if self.errors >= MAX_WATCH_ERRORS {
                    return Step::GaveUp(e);
                }
                return Step::Waiting;
            }
        };
        self.errors = 0;
        match event {
            watcher::Event::Init => {
                self.relist = Some(BTreeMap::new());
                if self.figures.is_some() {
                    self.gap(format!(
                        "the EndpointSlice watch restarted with a new list at {}; changes before it may have been missed",
                        clock(now)
                    ));
                    return Step::Changed;
                }
                return Step::Waiting;
            }
            watcher::Event::InitApply(s) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(s.name_any(), s);
                return Step::Waiting;
            }
            watcher::Event::InitDone => {
                self.slices = self.relist.take().unwrap_or_default();
                self.listed = true;
            }
            watcher::Event::Apply(s) => {
                self.slices.insert(s.name_any(), s);
            }
            watcher::Event::Delete(s) => {
                self.slices.remove(&s.name_any());
            }
        }
        if !self.listed {
            return Step::Waiting;
        }
        let counts = endpoint_counts(self.slices.values());
        match &mut self.figures {
            Some(f) => {
                f.observe(counts, now);
                Step::Changed
            }
            // Arm only once the slices list the endpoints the floor expects: the floor is
            // capped at the pods the workload reports ready, and the EndpointSlice controller
            // can lag behind them (e.g. right after a previous release).
            None if counts.serving() >= self.target.floor => {
                self.figures = Some(ServiceAvailability::new(
                    &self.target.service,
                    self.target.floor,
                    counts,
                ));
                Step::Armed
            }
            None => Step::Waiting,
        }
    }

    /// The watch stopped delivering events.
    fn ended(&mut self, now: Timestamp) {
        self.gap(format!(
            "the EndpointSlice watch stream was cut at {}; changes after it may have been missed",
            clock(now)
        ));
    }

    /// Marks the figures unproven (the first reason stands).
    fn gap(&mut self, why: String) {
        if let Some(f) = &mut self.figures
            && f.unproven.is_none()
        {
            f.unproven = Some(why);
        }
    }

    /// Slice name → resourceVersion, as the watch shows them.
    fn view(&self) -> BTreeMap<String, Option<String>> {
        self.slices
            .iter()
            .map(|(name, s)| (name.clone(), s.resource_version()))
            .collect()
    }
}

/// State shared by the per-Service tasks and the handle.
#[derive(Debug, Default)]
struct State {
    figures: BTreeMap<String, ServiceAvailability>,
    views: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped whenever a task publishes.
    changed: watch::Sender<u64>,
    /// The first Service that fell below its floor or lost its proof.
    failure: watch::Sender<Option<ServiceAvailability>>,
    reporter: Arc<dyn RolloutReporter>,
}

impl Shared {
    fn publish(&self, tracker: &Tracker) {
        let Some(figures) = tracker.figures.clone() else {
            return;
        };
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .figures
                .insert(figures.service.clone(), figures.clone());
            state.views.insert(figures.service.clone(), tracker.view());
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        if figures.failure(None).is_some() {
            self.failure.send_if_modified(|f| {
                if f.is_none() {
                    *f = Some(figures.clone());
                    true
                } else {
                    false
                }
            });
        }
        self.reporter.endpoints(&figures);
    }
}

/// A running availability watch over some Services of one namespace. Dropping it stops the
/// watches; [`AvailabilityWatch::finish`] proves the watches current, stops them and returns
/// the figures.
pub struct AvailabilityWatch {
    api: Api<EndpointSlice>,
    namespace: String,
    services: Vec<ServiceFloor>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    failure: watch::Receiver<Option<ServiceAvailability>>,
    tasks: Vec<JoinHandle<Result<(), AvailabilityError>>>,
}

impl AvailabilityWatch {
    /// Starts watching `services` in `namespace` and returns once each has been listed
    /// completely and lists at least its floor of endpoints (its slices have caught up with
    /// the pods already ready), so the minimum covers everything that happens after this call.
    ///
    /// # Errors
    /// [`AvailabilityError::Sync`] when a first list does not show the floor within 30 s,
    /// [`AvailabilityError::Watch`] when a watch keeps failing before that.
    pub async fn start(
        client: &Client,
        namespace: &str,
        services: &[ServiceFloor],
        reporter: Arc<dyn RolloutReporter>,
    ) -> Result<Self, AvailabilityError> {
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let (stop, stop_rx) = watch::channel(false);
        let (failure_tx, failure) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            failure: failure_tx,
            reporter,
        });
        let mut tasks = Vec::new();
        let mut synced = Vec::new();
        for s in services {
            let (tx, rx) = oneshot::channel();
            synced.push((s.clone(), rx));
            tasks.push(tokio::spawn(watch_service(
                api.clone(),
                namespace.to_string(),
                Tracker::new(s.clone()),
                Arc::clone(&shared),
                stop_rx.clone(),
                tx,
            )));
        }
        let mut handle = AvailabilityWatch {
            api,
            namespace: namespace.to_string(),
            services: services.to_vec(),
            shared,
            stop,
            failure,
            tasks,
        };
        for (service, rx) in synced {
            match tokio::time::timeout(SYNC_TIMEOUT, rx).await {
                Ok(Ok(())) => {}
                // The task ended before arming: its own error says why.
                Ok(Err(_)) => return Err(handle.stop_with_error(&service).await),
                Err(_) => {
                    return Err(AvailabilityError::Sync {
                        namespace: namespace.to_string(),
                        service: service.service,
                        floor: service.floor,
                    });
                }
            }
        }
        handle.failure.mark_unchanged();
        Ok(handle)
    }

    /// The figures so far, sorted by Service.
    pub fn snapshot(&self) -> Vec<ServiceAvailability> {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.figures.values().cloned().collect()
    }

    /// Resolves with the first Service whose endpoints fell below its floor, or whose watch
    /// had a gap (see [`ServiceAvailability::failure`] for the line to fail with). Pending
    /// forever while every floor holds and every watch is live (select it against the
    /// rollout wait).
    pub async fn failed(&mut self) -> ServiceAvailability {
        loop {
            if let Some(f) = self.failure.borrow_and_update().clone() {
                return f;
            }
            if self.failure.changed().await.is_err() {
                // Every sender is gone: no failure can come any more.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Proves each watch current (a consistent list of the Service's slices matches what the
    /// watch shows, within [`LAG_BOUND`]), stops the watches and returns the final figures,
    /// sorted by Service. A Service is [`proven`](ServiceAvailability::proven) only when its
    /// watch had no gap and was current; otherwise [`unproven`](ServiceAvailability::unproven)
    /// says why.
    ///
    /// # Errors
    /// [`AvailabilityError::Watch`] when a watch had failed for good before arming (not
    /// possible once [`AvailabilityWatch::start`] returned, kept for completeness).
    pub async fn finish(mut self) -> Result<Vec<ServiceAvailability>, AvailabilityError> {
        let deadline = tokio::time::Instant::now() + LAG_BOUND;
        let mut current = BTreeMap::new();
        for s in self.services.clone() {
            let verdict = match self.current(&s.service, deadline).await {
                Ok(true) => None,
                Ok(false) => Some(format!(
                    "the EndpointSlice watch had not caught up with the API server {}s after the rollout",
                    LAG_BOUND.as_secs()
                )),
                Err(e) => Some(format!(
                    "a fresh list of its EndpointSlices to check the watch failed ({})",
                    crate::cluster::ApiCause::from_kube(&e)
                )),
            };
            current.insert(s.service, verdict);
        }
        let _ = self.stop.send(true);
        let mut first_error = None;
        for task in self.tasks.drain(..) {
            if let Ok(Err(e)) = task.await
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let mut figures = self.snapshot();
        for f in &mut figures {
            match current.remove(&f.service).flatten() {
                Some(why) if f.unproven.is_none() => f.unproven = Some(why),
                _ => {}
            }
            f.proven = f.unproven.is_none();
        }
        Ok(figures)
    }

    /// Whether the watch of `service` shows what a consistent list shows, before `deadline`.
    async fn current(
        &self,
        service: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, kube::Error> {
        let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
        let mut changed = self.shared.changed.subscribe();
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            // No resourceVersion: a consistent read, as recent as the API server knows.
            let listed = self.api.list(&lp).await?;
            let want: BTreeMap<String, Option<String>> = listed
                .items
                .iter()
                .map(|s| (s.name_any(), s.resource_version()))
                .collect();
            // Give the watch a moment to show the same; if it moves on elsewhere (it can be
            // ahead of the list), list again.
            for _ in 0..2 {
                changed.borrow_and_update();
                if self.view(service).as_ref() == Some(&want) {
                    return Ok(true);
                }
                let wait = deadline.min(tokio::time::Instant::now() + Duration::from_millis(500));
                match tokio::time::timeout_at(wait, changed.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(false),
                    Err(_) => break,
                }
            }
        }
    }

    fn view(&self, service: &str) -> Option<BTreeMap<String, Option<String>>> {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.views.get(service).cloned()
    }

    async fn stop_with_error(&mut self, service: &ServiceFloor) -> AvailabilityError {
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
            service: service.service.clone(),
            floor: service.floor,
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

/// One Service's watch: one consistent list, then one watch from the list's resourceVersion,
/// fed to `tracker`. Not kube's `watcher`: it resumes a broken watch silently (a connection
/// cut ends the stream as if the server had closed it), which is exactly the gap a proof must
/// not hide. Before arming, a failed list or watch is retried with a fresh list; after
/// arming, the end of the watch stream or an error is a gap, and the task stops.
async fn watch_service(
    api: Api<EndpointSlice>,
    namespace: String,
    mut tracker: Tracker,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    synced: oneshot::Sender<()>,
) -> Result<(), AvailabilityError> {
    let selector = format!("{SERVICE_NAME_LABEL}={}", tracker.target.service);
    let lp = ListParams::default().labels(&selector);
    let wp = WatchParams::default()
        .labels(&selector)
        .timeout(WATCH_TIMEOUT_SECS);
    let mut synced = Some(synced);
    let mut feed = |tracker: &mut Tracker,
                    event: Result<watcher::Event<EndpointSlice>, watcher::Error>|
     -> Result<(), AvailabilityError> {
        if let Err(e) = &event {
            let error = crate::cluster::ApiCause::from_watcher(e);
            tracing::debug!(service = %tracker.target.service, %error, "EndpointSlice watch error");
        }
        match tracker.on(event, Timestamp::now()) {
            Step::Waiting => {}
            Step::GaveUp(e) => {
                return Err(AvailabilityError::Watch {
                    namespace: namespace.clone(),
                    service: tracker.target.service.clone(),
                    source: Box::new(crate::cluster::ApiCause::from_watcher(&e)),
                });
            }
            Step::Armed => {
                shared.publish(tracker);
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Step::Changed => shared.publish(tracker),
        }
        Ok(())
    };
    loop {
        let listed = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            listed = api.list(&lp) => listed,
        };
        let rv = match listed {
            Ok(list) => {
                feed(&mut tracker, Ok(watcher::Event::Init))?;
                for slice in list.items {
                    feed(&mut tracker, Ok(watcher::Event::InitApply(slice)))?;
                }
                feed(&mut tracker, Ok(watcher::Event::InitDone))?;
                list.metadata.resource_version
            }
            Err(e) => {
                feed(&mut tracker, Err(watcher::Error::InitialListFailed(e)))?;
                None
            }
        };
        if let Some(rv) = rv {
            let started = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                started = api.watch(&wp, &rv) => started,
            };
            match started {
                Err(e) => feed(&mut tracker, Err(watcher::Error::WatchStartFailed(e)))?,
                Ok(events) => {
                    let mut events = std::pin::pin!(events);
                    loop {
                        let event = tokio::select! {
                            _ = stop.wait_for(|s| *s) => return Ok(()),
                            event = events.next() => event,
                        };
                        match event {
                            Some(Ok(WatchEvent::Added(s) | WatchEvent::Modified(s))) => {
                                feed(&mut tracker, Ok(watcher::Event::Apply(s)))?;
                            }
                            Some(Ok(WatchEvent::Deleted(s))) => {
                                feed(&mut tracker, Ok(watcher::Event::Delete(s)))?;
                            }
                            Some(Ok(WatchEvent::Bookmark(_))) => {}
                            Some(Ok(WatchEvent::Error(status))) => {
                                feed(&mut tracker, Err(watcher::Error::WatchError(status)))?;
                                break;
                            }
                            Some(Err(e)) => {
                                feed(&mut tracker, Err(watcher::Error::WatchFailed(e)))?;
                                break;
                            }
                            None => {
                                // A cut connection ends the stream like a server timeout.
                                tracker.ended(Timestamp::now());
                                break;
                            }
                        }
                    }
                }
            }
        }
        if tracker.figures.is_some() {
            // The proof is gone (the gap is recorded): report it and stop watching.
            shared.publish(&tracker);
            return Ok(());
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep(RETRY_BACKOFF) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    fn slice_named(name: &str, rv: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "resourceVersion": rv }, "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        slice_named("web-x", "1", endpoints)
    }

    fn ep(pod: &str, ip: &str, ready: bool) -> serde_json::Value {
        json!({ "addresses": [ip], "conditions": { "ready": ready, "serving": ready },
                "targetRef": { "kind": "Pod", "namespace": "ns", "name": pod } })
    }

    fn draining(pod: &str, ip: &str) -> serde_json::Value {
        json!({ "addresses": [ip], "targetRef": {"kind": "Pod", "namespace": "ns", "name": pod},
            "conditions": { "ready": false, "serving": true, "terminating": true } })
    }

    /// Slice `web-1` at resourceVersion `rv` with `ready` ready pods and `draining` draining ones.
    fn web(rv: &str, ready: usize, draining_pods: usize) -> EndpointSlice {
        let mut endpoints: Vec<serde_json::Value> = (0..ready)
            .map(|i| ep(&format!("new-{i}"), &format!("10.0.1.{i}"), true))
            .collect();
        endpoints.extend(
            (0..draining_pods).map(|i| draining(&format!("old-{i}"), &format!("10.0.2.{i}"))),
        );
        slice_named("web-1", rv, json!(endpoints))
    }

    fn t0() -> Timestamp {
        "2026-11-05T12:03:02Z".parse().unwrap()
    }

    fn at(tenths: i64) -> Timestamp {
        t0().checked_add(SignedDuration::from_millis(tenths * 100))
            .unwrap()
    }

    /// A tracker for `web` with floor 3, armed by a list of `web("1", 3, 0)`.
    fn armed() -> Tracker {
        let mut t = Tracker::new(ServiceFloor {
            service: "web".into(),
            floor: 3,
        });
        assert!(matches!(
            t.on(Ok(watcher::Event::Init), at(0)),
            Step::Waiting
        ));
        assert!(matches!(
            t.on(Ok(watcher::Event::InitApply(web("1", 3, 0))), at(0)),
            Step::Waiting
        ));
        assert!(matches!(
            t.on(Ok(watcher::Event::InitDone), at(0)),
            Step::Armed
        ));
        t
    }

    fn figures(t: &Tracker) -> &ServiceAvailability {
        t.figures.as_ref().unwrap()
    }

    fn watch_error() -> watcher::Error {
        watcher::Error::NoResourceVersion
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
    fn a_draining_endpoint_counts_apart_and_a_stopped_one_does_not() {
        let stopped = json!({ "addresses": ["10.0.0.8"], "targetRef": {"kind": "Pod", "namespace": "n", "name": "gone"},
            "conditions": { "ready": false, "serving": false, "terminating": true } });
        let starting = json!({ "addresses": ["10.0.0.7"], "targetRef": {"kind": "Pod", "namespace": "n", "name": "new"},
            "conditions": { "ready": false, "serving": false, "terminating": false } });
        let s = slice(json!([
            draining("old", "10.0.0.9"),
            stopped,
            starting,
            ep("p1", "10.0.0.1", true)
        ]));
        assert_eq!(
            endpoint_counts([&s]),
            EndpointCounts {
                ready: 1,
                draining: 1
            }
        );
        assert_eq!(ready_endpoints([&s]), 2);
        // A pod ready in one slice and draining in another counts once, as ready.
        let moved = slice(json!([draining("p1", "10.0.0.1")]));
        assert_eq!(
            endpoint_counts([&s, &moved]),
            EndpointCounts {
                ready: 1,
                draining: 1
            }
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
    fn the_minimum_only_goes_down_and_remembers_when_and_its_split() {
        let mut t = armed();
        assert_eq!(figures(&t).min_at, None);
        t.on(Ok(watcher::Event::Apply(web("2", 4, 0))), at(1));
        assert!(figures(&t).held);
        assert_eq!(figures(&t).min_at, None, "never below the arming count");
        t.on(Ok(watcher::Event::Apply(web("3", 1, 1))), at(21));
        t.on(Ok(watcher::Event::Apply(web("4", 3, 0))), at(30));
        t.on(Ok(watcher::Event::Apply(web("5", 2, 0))), at(40));
        let f = figures(&t);
        assert_eq!(
            (
                f.min_ready,
                f.draining_at_min,
                f.ready_now,
                f.draining_now,
                f.held
            ),
            (2, 1, 2, 0, false)
        );
        assert_eq!(f.min_at.as_deref(), Some("2026-11-05T12:03:04.1Z"));
        assert_eq!(f.unproven, None);
        assert_eq!(
            f.failure(Some(t0())).as_deref(),
            Some(
                "service web fell to 2 endpoints taking traffic (1 ready, 1 draining) at 12:03:04.1Z, 2.1s into the rollout, below its floor of 3"
            )
        );
    }

    #[test]
    fn a_watch_that_sees_nothing_changing_holds_but_is_not_a_failure() {
        let t = armed();
        let f = figures(&t);
        assert!(f.held && !f.proven);
        assert_eq!(f.failure(None), None);
    }

    #[test]
    fn an_error_after_arming_is_a_gap_and_fails_at_once() {
        let mut t = armed();
        assert!(matches!(t.on(Err(watch_error()), at(5)), Step::Changed));
        let f = figures(&t);
        assert!(f.held, "still above the floor as far as it saw");
        let why = f.unproven.clone().unwrap();
        assert!(
            why.starts_with("the EndpointSlice watch failed at 12:03:02.5Z"),
            "{why}"
        );
        assert!(
            f.failure(None).unwrap().starts_with(
                "availability of service web not proven: the EndpointSlice watch failed"
            ),
        );
        // Later events keep counting, but the first reason stands and nothing proves it.
        t.on(Ok(watcher::Event::Apply(web("9", 3, 0))), at(9));
        assert_eq!(figures(&t).unproven.as_ref(), Some(&why));
    }

    #[test]
    fn a_relist_after_arming_is_a_gap() {
        let mut t = armed();
        t.on(Ok(watcher::Event::Init), at(7));
        t.on(Ok(watcher::Event::InitApply(web("8", 3, 0))), at(7));
        t.on(Ok(watcher::Event::InitDone), at(7));
        let why = figures(&t).unproven.clone().unwrap();
        assert!(why.contains("restarted with a new list"), "{why}");
        assert_eq!(figures(&t).min_ready, 3);
    }

    #[test]
    fn an_ended_watch_is_a_gap() {
        let mut t = armed();
        t.ended(at(3));
        assert!(
            figures(&t)
                .unproven
                .as_deref()
                .unwrap()
                .contains("was cut at")
        );
    }

    #[test]
    fn before_arming_errors_are_retried_and_a_short_list_does_not_arm() {
        let mut t = Tracker::new(ServiceFloor {
            service: "web".into(),
            floor: 3,
        });
        for _ in 0..MAX_WATCH_ERRORS - 1 {
            assert!(matches!(t.on(Err(watch_error()), at(0)), Step::Waiting));
        }
        t.on(Ok(watcher::Event::Init), at(0));
        t.on(Ok(watcher::Event::InitApply(web("1", 2, 0))), at(0));
        assert!(matches!(
            t.on(Ok(watcher::Event::InitDone), at(0)),
            Step::Waiting
        ));
        // The slices catch up with the ready pods: armed, no gap recorded.
        assert!(matches!(
            t.on(Ok(watcher::Event::Apply(web("2", 3, 0))), at(1)),
            Step::Armed
        ));
        assert_eq!(figures(&t).unproven, None);
        let mut t = Tracker::new(ServiceFloor {
            service: "web".into(),
            floor: 3,
        });
        for _ in 0..MAX_WATCH_ERRORS - 1 {
            t.on(Err(watch_error()), at(0));
        }
        assert!(matches!(t.on(Err(watch_error()), at(0)), Step::GaveUp(_)));
    }

    #[test]
    fn the_view_follows_applies_and_deletes() {
        let mut t = armed();
        let other = slice_named("web-2", "7", json!([ep("p9", "10.0.3.1", true)]));
        t.on(Ok(watcher::Event::Apply(other.clone())), at(1));
        assert_eq!(
            t.view(),
            BTreeMap::from([
                ("web-1".to_string(), Some("1".to_string())),
                ("web-2".to_string(), Some("7".to_string()))
            ])
        );
        assert_eq!(figures(&t).ready_now, 4);
        t.on(Ok(watcher::Event::Delete(other)), at(2));
        assert_eq!(t.view().len(), 1);
        assert_eq!(figures(&t).ready_now, 3);
    }

    #[test]
    fn old_records_without_the_new_fields_still_read() {
        let old: ServiceAvailability = serde_json::from_value(json!({
            "service": "web", "floor": 3, "min_ready": 3, "ready_now": 3, "held": true
        }))
        .unwrap();
        assert!(!old.proven && old.min_at.is_none() && old.draining_at_min == 0);
    }
}
