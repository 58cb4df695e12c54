//! The release engine: takes a [`ReleaseBundle`] from any source (a render of the project, a
//! release record; later a promotion candidate or a backup) and carries it through named
//! phases, each a method of [`Session`]:
//!
//! 1. **open**: connect, read the record history (before the lock);
//! 2. **lock**: take the environment's Lease;
//! 3. **record**: settle a crashed release ([`super::recovery`]) and write the pending record,
//!    concurrently with **prepare** (the apply's reads) and the availability floors' watch;
//! 4. **apply**: server-side apply with pruning;
//! 5. **watch**: the rollout, pinned to the applied generations, with the availability proof;
//! 6. **check**: the environment's HTTP checks;
//! 7. **finish**, or **roll back** to the last succeeded revision on any failure after the
//!    apply; then the record is settled and the Lease let go.
//!
//! Nothing here renders or reads a secret: the bundle arrives complete.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::Shared;
use k8s_openapi::jiff::Timestamp;
use kube::Client;

use super::recovery::{recover, restore};
use super::{Error, Interrupt, Recovery, ReleaseOptions, ReleaseOutcome};
use crate::cluster::{
    self, ApplyReporter, ApplyRequest, DEFAULT_CONCURRENCY, Mode, ObjectResult, Ownership,
};
use crate::object::Object;
use crate::ops::apply::TEMPLATES_DIGEST_ANNOTATION;
use crate::policy::Finding;
use crate::project::{HttpCheck, ReleasePolicy};
use crate::release::{
    AvailabilityWatch, Candidate, CheckSpec, DEFAULT_LEASE_DURATION, LockError, LockGuard,
    LockOptions, RecordError, RecordStore, RecordSummary, ReleaseRecord, ReleaseStatus,
    RolloutReporter, RolloutWatch, ServiceAvailability, ServiceProxy, Timings, WaitOptions,
    Workload, WorkloadKind, WorkloadOutcome, acquire, current_user, default_holder, http_client,
    next_revision_after, run_checks,
};
use crate::ui::one_line;

/// How long to wait for a CRD of the bundle to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment a release acts on, however it was found.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The application.
    pub app: String,
    /// The environment's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The kubeconfig context (before `--context`).
    pub context: String,
    /// How long a rollout may take.
    pub timeout: Duration,
    /// How many records to keep.
    pub history_limit: usize,
    /// The HTTP checks run after the rollout.
    pub checks: Vec<CheckSpec>,
}

impl Environment {
    /// Validates the release policy and the checks.
    ///
    /// # Errors
    /// [`Error::Timeout`] for a malformed `release.timeout`, [`Error::Check`] for an invalid
    /// check.
    pub fn new(
        app: &str,
        name: &str,
        namespace: &str,
        context: &str,
        policy: &ReleasePolicy,
        checks: &[HttpCheck],
    ) -> Result<Self, Error> {
        let timeout =
            humantime::parse_duration(&policy.timeout).map_err(|source| Error::Timeout {
                value: policy.timeout.clone(),
                source,
            })?;
        let checks = checks
            .iter()
            .map(CheckSpec::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Environment {
            app: app.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            context: context.to_string(),
            timeout,
            history_limit: usize::try_from(policy.history_limit).unwrap_or(usize::MAX),
            checks,
        })
    }
}

/// What to release, whatever its source: the objects, their candidate id, where they came
/// from and the lint warnings they carry.
#[derive(Debug)]
pub struct ReleaseBundle {
    /// The objects to apply, secrets in clear: never print them directly.
    pub objects: Vec<Object>,
    /// Image digests and templates digest.
    pub candidate: Candidate,
    /// Where the objects came from (`rollback to revision 3`), `None` for a render.
    pub source: Option<String>,
    /// Lint warnings (errors have already stopped the release).
    pub findings: Vec<Finding>,
}

/// Why the release phases stopped.
pub(super) enum Stop {
    /// A signal arrived.
    Interrupted,
    /// Something failed: one line saying what.
    Failed(String),
    /// The lock was lost: stop changing the cluster at once (no rollback); one line.
    LockLost(String),
}

/// What the phases produced, kept even when they stop part-way.
#[derive(Default)]
struct Attempt {
    apply_started: bool,
    objects: Vec<ObjectResult>,
    pruned: Vec<ObjectResult>,
    workloads: Vec<WorkloadOutcome>,
    availability: Vec<ServiceAvailability>,
    checks: Vec<crate::release::CheckResult>,
}

/// What the phases share: the clients, the environment's identity, the reporters and the
/// interrupt.
pub(super) struct Ctx<'a> {
    pub(super) client: Client,
    /// The client without kube's retries of 503 answers, for service proxy checks.
    proxy_client: Client,
    pub(super) namespace: String,
    pub(super) ownership: Ownership,
    pub(super) timeout: Duration,
    pub(super) reporter: Arc<dyn RolloutReporter>,
    pub(super) apply_reporter: &'a dyn ApplyReporter,
    pub(super) interrupt: Shared<Interrupt>,
}

/// Runs `work`, or `None` when the interrupt fires first.
pub(super) async fn or_interrupt<T>(
    work: impl Future<Output = T>,
    interrupt: &Shared<Interrupt>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = interrupt.clone() => None,
        result = work => Some(result),
    }
}

/// A release in progress against one environment: connected, with the record history read.
pub(super) struct Session<'a> {
    env: Environment,
    pub(super) ctx: Ctx<'a>,
    pub(super) store: RecordStore,
    /// The record history read before the lock (see [`settled_history`]).
    history: Vec<RecordSummary>,
    /// The last succeeded record in `history`.
    pub(super) previous: Option<ReleaseRecord>,
    /// The client of the HTTP checks.
    http: reqwest::Client,
    wait_lock: Option<Duration>,
    rollback: bool,
    started: Instant,
}

impl<'a> Session<'a> {
    /// **open**: connects to the environment's cluster and reads its record history.
    ///
    /// # Errors
    /// Connection and record errors; nothing was changed.
    pub(super) async fn open(
        env: Environment,
        opts: &ReleaseOptions,
        reporter: Arc<dyn RolloutReporter>,
        apply_reporter: &'a dyn ApplyReporter,
        interrupt: Shared<Interrupt>,
        started: Instant,
    ) -> Result<Session<'a>, Error> {
        let t = Instant::now();
        // What ran before the engine: the render and lint (or the resolve of a revision).
        tracing::debug!(phase = "render+lint", elapsed = ?t.duration_since(started), "phase done");
        let http = http_client()?;
        let cluster = or_interrupt(opts.cluster.connect(&env.context), &interrupt)
            .await
            .ok_or(Error::Interrupted)??;
        let client = cluster.client.clone();
        let store = RecordStore::new(client.clone(), &env.namespace, &env.app, &env.name);
        let history = store.history().await?;
        let previous = store.last_succeeded_in(&history).await?;
        tracing::debug!(phase = "open", elapsed = ?t.elapsed(), "phase done");
        let ctx = Ctx {
            client,
            proxy_client: cluster.proxy_client.clone(),
            namespace: env.namespace.clone(),
            ownership: Ownership::application(&env.app, &env.name, &env.namespace),
            timeout: env.timeout,
            reporter,
            apply_reporter,
            interrupt,
        };
        Ok(Session {
            env,
            ctx,
            store,
            history,
            previous,
            http,
            wait_lock: opts.wait_lock,
            rollback: opts.rollback,
            started,
        })
    }

    /// The environment.
    pub(super) fn environment(&self) -> &Environment {
        &self.env
    }

    /// Runs every phase after **open** on `bundle`.
    ///
    /// # Errors
    /// Lock, record and availability-arming errors before the apply change nothing;
    /// [`Error::Restore`] when a failed release could not be rolled back.
    pub(super) async fn run(self, bundle: ReleaseBundle) -> Result<ReleaseOutcome, Error> {
        let objects = &bundle.objects;
        // Watch the workloads from now on, so the wait after the apply starts warm.
        let rollout_watch = RolloutWatch::start(
            &self.ctx.client,
            namespaces_of(objects, &self.env.namespace),
            &kinds_of(objects),
        );
        let t = Instant::now();
        let guard = self.lock().await?;
        tracing::debug!(phase = "lock", elapsed = ?t.elapsed(), "phase done");
        let t = Instant::now();
        let history = match settled_history(&self.store, &guard, self.history.clone()).await {
            Ok(h) => h,
            Err(e) => {
                let _ = guard.release().await;
                return Err(e.into());
            }
        };

        let mut record = self.pending_record(&bundle);
        let request = apply_request(
            objects,
            &self.ctx.ownership,
            &record.candidate.templates_digest,
        );
        let (recovered, history, prepared, watch) = match self
            .record(&guard, history, &mut record, &request, objects)
            .await
        {
            Ok(recorded) => recorded,
            Err(e) => {
                let _ = guard.release().await;
                return Err(e);
            }
        };
        tracing::debug!(phase = "record+prepare", elapsed = ?t.elapsed(), "phase done");

        let mut attempt = Attempt::default();
        let result = self
            .phases(
                prepared,
                watch,
                &rollout_watch,
                &guard,
                &mut record.timings,
                &mut attempt,
            )
            .await;
        record.availability = attempt.availability.clone();
        record.checks = attempt.checks.clone();
        let interrupted = matches!(result, Err(Stop::Interrupted));
        match result {
            Ok(()) => record.status = ReleaseStatus::Succeeded,
            Err(stop) => {
                if let Err(e) = self
                    .roll_back(stop, &mut record, attempt.apply_started)
                    .await
                {
                    let _ = guard.release().await;
                    return Err(e);
                }
            }
        }
        let t = Instant::now();
        self.finish(&mut record, history, guard).await?;
        tracing::debug!(phase = "finish", elapsed = ?t.elapsed(), "phase done");
        tracing::debug!(elapsed = ?self.started.elapsed(), "release done");
        Ok(ReleaseOutcome {
            app: self.env.app.clone(),
            environment: self.env.name.clone(),
            namespace: self.env.namespace.clone(),
            revision: record.revision,
            status: record.status,
            interrupted,
            candidate: record.candidate.id.clone(),
            source: bundle.source,
            recovered,
            findings: bundle.findings,
            objects: attempt.objects,
            pruned: attempt.pruned,
            workloads: attempt.workloads,
            availability: attempt.availability,
            checks: attempt.checks,
            failure: record.failure,
            rolled_back_to: record.rolled_back_to,
            elapsed: self.started.elapsed(),
        })
    }

    /// **lock**: takes the environment's Lease (waiting up to `--wait-lock`).
    async fn lock(&self) -> Result<LockGuard, Error> {
        let options = LockOptions {
            namespace: self.env.namespace.clone(),
            app: self.env.app.clone(),
            env: self.env.name.clone(),
            holder: default_holder(),
            duration: DEFAULT_LEASE_DURATION,
            wait: self.wait_lock,
        };
        Ok(
            or_interrupt(acquire(&self.ctx.client, &options), &self.ctx.interrupt)
                .await
                .ok_or(Error::Interrupted)??,
        )
    }

    /// The pending record of `bundle` (its revision is chosen when it is created).
    fn pending_record(&self, bundle: &ReleaseBundle) -> ReleaseRecord {
        ReleaseRecord {
            app: self.env.app.clone(),
            env: self.env.name.clone(),
            revision: 0,
            status: ReleaseStatus::Pending,
            candidate: bundle.candidate.clone(),
            objects: bundle.objects.iter().map(|o| o.value.clone()).collect(),
            timings: Timings::starting_now(),
            availability: Vec::new(),
            checks: Vec::new(),
            released_by: current_user(),
            failure: None,
            rolled_back_to: None,
            source: bundle.source.clone(),
        }
    }

    /// **record** and **prepare**, under the lock, at once: the pending record (after settling
    /// a crashed release); the apply's reads; the availability floors and their watch. Only
    /// the record writes, and it is written before anything is applied. A failure leaves the
    /// record, if written, failed.
    #[allow(clippy::type_complexity)] // the four results of one concurrent phase; private
    async fn record<'r>(
        &'r self,
        guard: &LockGuard,
        history: Vec<RecordSummary>,
        record: &mut ReleaseRecord,
        request: &'r ApplyRequest<'r>,
        objects: &[Object],
    ) -> Result<
        (
            Option<Recovery>,
            Vec<RecordSummary>,
            Result<cluster::PreparedApply<'r>, cluster::ApplyFailure>,
            AvailabilityWatch,
        ),
        Error,
    > {
        let (created, prepared, armed) = tokio::join!(
            self.create_pending(guard, history, record),
            cluster::prepare(&self.ctx.client, request),
            self.arm_availability(objects),
        );
        let (recovered, history) = created?;
        // A recovery restored an older revision: what was read before it is stale.
        let (prepared, armed) = if recovered.is_some() {
            drop((prepared, armed));
            (
                cluster::prepare(&self.ctx.client, request).await,
                self.arm_availability(objects).await,
            )
        } else {
            (prepared, armed)
        };
        match armed {
            Ok(watch) => Ok((recovered, history, prepared, watch)),
            Err(e) => {
                record.status = ReleaseStatus::Failed;
                record.failure = Some(one_line(&e));
                record.timings.finish();
                let _ = self.store.update(record).await;
                Err(e)
            }
        }
    }

    /// Settles what a crashed release left (see [`recover`]) and creates the pending record
    /// under the next revision. A revision taken since `history` was read means a release ran
    /// in between: the history is read again (recovering what that one left) and the create
    /// retried.
    async fn create_pending(
        &self,
        guard: &LockGuard,
        mut history: Vec<RecordSummary>,
        record: &mut ReleaseRecord,
    ) -> Result<(Option<Recovery>, Vec<RecordSummary>), Error> {
        let mut recovered = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(r) =
                recover(&self.ctx, &self.store, guard, &self.env.name, &history).await?
            {
                recovered = Some(r);
            }
            record.revision = next_revision_after(&history);
            match self.store.create(record).await {
                Ok(()) => return Ok((recovered, history)),
                Err(RecordError::RevisionTaken { .. }) if attempts < 3 => {
                    history = self.store.history().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The availability floors of the Services in front of live workloads, and their watch,
    /// armed (first lists done) so it can prove availability from before the apply on.
    async fn arm_availability(&self, objects: &[Object]) -> Result<AvailabilityWatch, Error> {
        let floors = crate::release::floors(&self.ctx.client, &self.ctx.namespace, objects).await?;
        AvailabilityWatch::start(
            &self.ctx.client,
            &self.ctx.namespace,
            &floors,
            Arc::clone(&self.ctx.reporter),
        )
        .await
        .map_err(|source| Error::Availability {
            environment: self.env.name.clone(),
            source,
        })
    }

    /// **apply**, **watch** and **check**; a lost Lease stops each of them at once.
    async fn phases(
        &self,
        prepared: Result<cluster::PreparedApply<'_>, cluster::ApplyFailure>,
        watch: AvailabilityWatch,
        rollout_watch: &RolloutWatch,
        guard: &LockGuard,
        timings: &mut Timings,
        attempt: &mut Attempt,
    ) -> Result<(), Stop> {
        // The reference for "how long into the rollout" a minimum was reached.
        let rollout_started = Timestamp::now();
        let workloads = self.apply(prepared, guard, timings, attempt).await?;
        self.watch(
            &workloads,
            watch,
            rollout_watch,
            guard,
            rollout_started,
            timings,
            attempt,
        )
        .await?;
        if let Err(e) = guard.check() {
            return Err(lock_lost(&e, "rollout"));
        }
        self.check(guard, timings, attempt).await
    }

    /// **apply**: server-side apply with pruning; returns the workloads pinned to the
    /// generations the apply returned.
    async fn apply(
        &self,
        prepared: Result<cluster::PreparedApply<'_>, cluster::ApplyFailure>,
        guard: &LockGuard,
        timings: &mut Timings,
        attempt: &mut Attempt,
    ) -> Result<Vec<Workload>, Stop> {
        // A failed preparation read, and changed, nothing.
        let prepared = prepared.map_err(|failure| Stop::Failed(one_line(&failure.error)))?;
        attempt.apply_started = true;
        let t = Instant::now();
        let applied = tokio::select! {
            biased;
            () = self.ctx.interrupt.clone() => None,
            e = guard.lost() => return Err(lock_lost(&e, "apply")),
            r = prepared.run(self.ctx.apply_reporter) => Some(r),
        };
        timings.phase("apply", t.elapsed());
        tracing::debug!(phase = "apply", elapsed = ?t.elapsed(), "phase done");
        let report = match applied {
            None => return Err(Stop::Interrupted),
            Some(Err(failure)) => {
                attempt.objects = failure.report.objects;
                attempt.pruned = failure.report.pruned;
                return Err(Stop::Failed(one_line(&failure.error)));
            }
            Some(Ok(report)) => report,
        };
        let workloads = workloads_of(&report.objects, &self.ctx.namespace);
        attempt.objects = report.objects;
        attempt.pruned = report.pruned;
        Ok(workloads)
    }

    /// **watch**: waits for every workload's rollout while the availability watch proves that
    /// the Services in front of them never fell below their floors. A fall below a floor, a
    /// gap in an availability watch or a lost lock stops the wait at once; the proof stands
    /// only once every watch is found current after the rollout.
    #[allow(clippy::too_many_arguments)] // one phase's whole context; private
    async fn watch(
        &self,
        workloads: &[Workload],
        mut watch: AvailabilityWatch,
        rollout_watch: &RolloutWatch,
        guard: &LockGuard,
        rollout_started: Timestamp,
        timings: &mut Timings,
        attempt: &mut Attempt,
    ) -> Result<(), Stop> {
        let ctx = &self.ctx;
        let t = Instant::now();
        let rollout = tokio::select! {
            biased;
            () = ctx.interrupt.clone() => {
                attempt.availability = watch.snapshot();
                return Err(Stop::Interrupted);
            }
            e = guard.lost() => {
                attempt.availability = watch.snapshot();
                return Err(lock_lost(&e, "rollout"));
            }
            f = watch.failed() => {
                attempt.availability = watch.snapshot();
                // The latest figures of that Service (it may have fallen further since).
                let f = attempt.availability.iter().find(|a| a.service == f.service).unwrap_or(&f);
                return Err(availability_failed(f, rollout_started));
            }
            r = rollout_watch.wait(workloads, ctx.timeout, WaitOptions::default(), ctx.reporter.as_ref()) => r,
        };
        timings.phase("rollout", t.elapsed());
        tracing::debug!(phase = "rollout", elapsed = ?t.elapsed(), "rollout complete");
        attempt.availability = watch.snapshot();
        match rollout {
            Ok(outcome) => attempt.workloads = outcome.workloads,
            Err(e) => return Err(Stop::Failed(one_line(&e))),
        }
        // The proof: each watch current at the end, no gap since before the apply.
        let t = Instant::now();
        let finished = tokio::select! {
            biased;
            () = ctx.interrupt.clone() => return Err(Stop::Interrupted),
            e = guard.lost() => return Err(lock_lost(&e, "availability check")),
            r = watch.finish() => r,
        };
        attempt.availability = finished.map_err(|e| Stop::Failed(one_line(&e)))?;
        tracing::debug!(phase = "availability", elapsed = ?t.elapsed(), "availability watch finished");
        if let Some(line) = attempt
            .availability
            .iter()
            .find_map(|a| a.failure(Some(rollout_started)))
        {
            return Err(Stop::Failed(line));
        }
        Ok(())
    }

    /// **check**: the environment's HTTP checks, directly or through the service proxy.
    async fn check(
        &self,
        guard: &LockGuard,
        timings: &mut Timings,
        attempt: &mut Attempt,
    ) -> Result<(), Stop> {
        let ctx = &self.ctx;
        let t = Instant::now();
        let proxy = ServiceProxy {
            client: ctx.proxy_client.clone(),
            namespace: ctx.namespace.clone(),
        };
        let results = tokio::select! {
            biased;
            () = ctx.interrupt.clone() => return Err(Stop::Interrupted),
            e = guard.lost() => return Err(lock_lost(&e, "checks")),
            r = run_checks(&self.http, Some(&proxy), &self.env.checks, ctx.reporter.as_ref()) => r,
        };
        timings.phase("checks", t.elapsed());
        tracing::debug!(phase = "checks", elapsed = ?t.elapsed(), "phase done");
        attempt.checks = results;
        if let Some(failed) = attempt.checks.iter().find(|c| !c.passed) {
            return Err(Stop::Failed(format!(
                "check {} failed: {}",
                failed.name,
                failed.failure.as_deref().unwrap_or("unexpected answer")
            )));
        }
        Ok(())
    }

    /// **roll back**: marks the record failed and, when something was applied, rollback is on
    /// and the lock is still held, restores the last succeeded revision (read again under the lock: another
    /// release may have succeeded since the history was read).
    ///
    /// # Errors
    /// [`Error::Restore`] when the restore failed (the record is written first).
    async fn roll_back(
        &self,
        stop: Stop,
        record: &mut ReleaseRecord,
        apply_started: bool,
    ) -> Result<(), Error> {
        let (failure, lock_lost) = match stop {
            Stop::Interrupted => ("interrupted by a signal".to_string(), false),
            Stop::Failed(f) => (f, false),
            Stop::LockLost(f) => (f, true),
        };
        record.failure = Some(failure.clone());
        record.status = ReleaseStatus::Failed;
        // Without the lock another release may be changing the cluster: restore nothing.
        if !apply_started || !self.rollback || lock_lost {
            return Ok(());
        }
        let target = self
            .store
            .last_succeeded()
            .await
            .unwrap_or_else(|_| self.previous.clone())
            .filter(|p| p.revision != record.revision);
        let Some(target) = target else {
            return Ok(());
        };
        match restore(&self.ctx, &target).await {
            Ok(_) => {
                record.status = ReleaseStatus::RolledBack;
                record.rolled_back_to = Some(target.revision);
                Ok(())
            }
            Err(source) => {
                record.timings.finish();
                let _ = self.store.update(record).await;
                Err(Error::Restore {
                    environment: self.env.name.clone(),
                    revision: record.revision,
                    target: target.revision,
                    failure,
                    source: Box::new(source),
                })
            }
        }
    }

    /// **finish**: writes the settled record, prunes old records after a success, and lets
    /// the lock go.
    async fn finish(
        &self,
        record: &mut ReleaseRecord,
        mut history: Vec<RecordSummary>,
        guard: LockGuard,
    ) -> Result<(), Error> {
        record.timings.finish();
        self.store.update(record).await?;
        tracing::debug!(status = record.status.as_str(), "record written");
        if record.status == ReleaseStatus::Succeeded {
            // The history read under the lock, and this record: nobody else wrote one since.
            history.push(RecordSummary {
                revision: record.revision,
                status: record.status,
                started_at: None,
                released_by: None,
                candidate: None,
            });
            self.store
                .prune_in(&history, self.env.history_limit)
                .await?;
            tracing::debug!("old records pruned");
        }
        guard.release().await?;
        tracing::debug!("lock released");
        Ok(())
    }
}

/// The record history to go on with once the lock is held: `read_before` (read before the
/// lock) when the lock was free all along and its newest record is settled, else a fresh read.
/// A release that took and let go of the lock in between wrote a revision, which the pending
/// record's create then finds taken.
async fn settled_history(
    store: &RecordStore,
    guard: &LockGuard,
    read_before: Vec<RecordSummary>,
) -> Result<Vec<RecordSummary>, RecordError> {
    let newest_pending = read_before
        .last()
        .is_some_and(|s| s.status == ReleaseStatus::Pending);
    if guard.uncontended() && !newest_pending {
        Ok(read_before)
    } else {
        store.history().await
    }
}

/// The apply of a release: server-side, pruning, every object sent (never skipped as
/// unchanged), the templates digest on the ApplySet parent.
pub(super) fn apply_request<'a>(
    objects: &'a [Object],
    ownership: &'a Ownership,
    templates_digest: &str,
) -> ApplyRequest<'a> {
    ApplyRequest {
        objects,
        ownership,
        mode: Mode::Apply,
        force_conflicts: false,
        prune: true,
        reapply: true,
        concurrency: DEFAULT_CONCURRENCY,
        establish_timeout: ESTABLISH_TIMEOUT,
        parent_annotations: BTreeMap::from([(
            TEMPLATES_DIGEST_ANNOTATION.to_string(),
            templates_digest.to_string(),
        )]),
        capture: false,
        members: Default::default(),
    }
}

/// The workloads the apply returned, pinned to the generations it returned.
pub(crate) fn workloads_of(objects: &[ObjectResult], namespace: &str) -> Vec<Workload> {
    objects
        .iter()
        .filter_map(|r| {
            Some(Workload {
                kind: WorkloadKind::from_kind(&r.id.kind)?,
                namespace: r
                    .id
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.to_string()),
                name: r.id.name.clone(),
                generation: r.generation?,
            })
        })
        .collect()
}

/// The namespaces of the bundle's workloads (`default_namespace` for those without one).
fn namespaces_of(objects: &[Object], default_namespace: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| WorkloadKind::from_kind(&o.id.kind).is_some())
        .map(|o| {
            o.id.namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string())
        })
        .collect()
}

/// The workload kinds of the bundle.
fn kinds_of(objects: &[Object]) -> BTreeSet<WorkloadKind> {
    objects
        .iter()
        .filter_map(|o| WorkloadKind::from_kind(&o.id.kind))
        .collect()
}

/// The stop for a lock lost during `phase`.
fn lock_lost(error: &LockError, phase: &str) -> Stop {
    Stop::LockLost(format!(
        "{} during the {phase}: ferry stopped at once and restored nothing",
        one_line(error)
    ))
}

/// The stop for an availability watch that saw a floor breached or lost its proof.
fn availability_failed(figures: &ServiceAvailability, rollout_started: Timestamp) -> Stop {
    Stop::Failed(
        figures
            .failure(Some(rollout_started))
            .unwrap_or_else(|| format!("availability of service {} failed", figures.service)),
    )
}
