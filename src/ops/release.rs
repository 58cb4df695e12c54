//! `ferry release` and `ferry rollback`: render (or read a recorded revision), lint strictly,
//! take the lock, recover from a crashed release, record, apply, wait for the rollout while
//! proving availability, run the checks, and restore the last good revision on any failure.
//!
//! This file only composes the building blocks of [`crate::release`] and the apply engine of
//! [`crate::cluster`]; it never prints and never picks an exit code (an outcome that failed
//! safely is still `Ok`, with its [`ReleaseStatus`]).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use super::apply::{ClusterOptions, TEMPLATES_DIGEST_ANNOTATION};
use super::prepare::{self, ProjectOptions, prepare};
use crate::cluster::{
    self, ApplyReporter, ApplyRequest, ConnectError, DEFAULT_CONCURRENCY, Mode, ObjectResult,
    Ownership,
};
use crate::object::{Object, ObjectError};
use crate::policy::{self, Finding, LintContext, Severity};
use crate::release::{
    AvailabilityError, AvailabilityWatch, Candidate, CheckError, CheckResult, CheckSpec,
    DEFAULT_LEASE_DURATION, LockError, LockGuard, LockOptions, RecordError, RecordStore,
    RecordSummary, ReleaseRecord, ReleaseStatus, RolloutError, RolloutOutcome, RolloutReporter,
    RolloutWatch, ServiceAvailability, ServiceFloor, ServiceProxy, Timings, WaitOptions, Workload,
    WorkloadKind, WorkloadOutcome, acquire, availability_floor, current_user, default_holder,
    http_client, next_revision_after, run_checks, wait_for_rollout,
};
use crate::ui::{Diagnostic, ExitStatus};

/// How long to wait for a CRD of the bundle to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The signal future a release watches: resolves on Ctrl-C or SIGTERM.
pub type Interrupt = BoxFuture<'static, ()>;

/// What to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Render the project (`ferry release`).
    Render,
    /// Re-release a recorded revision (`ferry rollback`): `None` means the succeeded revision
    /// before the newest succeeded one.
    Revision(Option<u32>),
}

/// Options of `ferry release` and `ferry rollback`.
#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Render the project or re-release a recorded revision.
    pub source: Source,
    /// `--wait-lock`: how long to wait for another release's lock (`None`: refuse at once).
    pub wait_lock: Option<Duration>,
    /// Restore the last succeeded revision on failure (`--no-rollback` turns it off).
    pub rollback: bool,
}

/// A pending release left by a crashed or killed Ferry, and what this run did about it.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The revision that was left pending.
    pub revision: u32,
    /// The holder whose expired lock was taken over, when known.
    pub former_holder: Option<String>,
    /// What the pending record became: `rolled-back` or `failed`.
    pub status: ReleaseStatus,
    /// The revision restored, when there was one.
    pub restored: Option<u32>,
}

/// What a release did. A failed release that was rolled back is still an outcome.
#[derive(Debug, Serialize)]
pub struct ReleaseOutcome {
    /// The application.
    pub app: String,
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The revision this release recorded.
    pub revision: u32,
    /// `succeeded`, `rolled-back` or `failed`.
    pub status: ReleaseStatus,
    /// True when a signal stopped the release.
    pub interrupted: bool,
    /// The candidate id released.
    pub candidate: String,
    /// Where the objects came from (`rollback` names the revision re-released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A crashed release found and settled before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovery>,
    /// Lint warnings (errors stop the release).
    pub findings: Vec<Finding>,
    /// What the apply did to each object.
    pub objects: Vec<ObjectResult>,
    /// Objects pruned.
    pub pruned: Vec<ObjectResult>,
    /// Workloads whose rollout completed.
    pub workloads: Vec<WorkloadOutcome>,
    /// The availability proof, one entry per Service in front of a released workload.
    pub availability: Vec<ServiceAvailability>,
    /// The HTTP checks' results.
    pub checks: Vec<CheckResult>,
    /// What failed, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The revision restored after the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u32>,
    /// From start to end.
    #[serde(rename = "elapsed_ms", with = "crate::release::millis")]
    pub elapsed: Duration,
}

/// Why a restore of a recorded revision failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A recorded object is not a Kubernetes object.
    #[error("a recorded object is invalid")]
    Object(#[source] ObjectError),
    /// The apply engine stopped.
    #[error("the apply of the recorded objects failed")]
    Apply(#[source] Box<cluster::Error>),
    /// The restored workloads did not roll out.
    #[error("the restored workloads did not become ready")]
    Rollout(#[source] RolloutError),
}

/// Errors of `ferry release` and `ferry rollback`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed; nothing was changed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The strict lint found errors; nothing was changed.
    #[error("refusing to release {environment}: {} lint error{}", errors, if *errors == 1 { "" } else { "s" })]
    Lint {
        /// The environment.
        environment: String,
        /// How many findings are errors.
        errors: usize,
        /// Every finding.
        findings: Vec<Finding>,
    },
    /// `release.timeout` is not a duration.
    #[error("release.timeout `{value}` is not a duration such as `5m`")]
    Timeout {
        /// The value given.
        value: String,
        /// The parse error.
        #[source]
        source: humantime::DurationError,
    },
    /// A check of the environment is invalid.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Reading or writing release records failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A live workload could not be read to compute its availability floor.
    #[error("failed to read {kind} {namespace}/{name}")]
    Live {
        /// The kind.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The API error.
        #[source]
        source: cluster::ApiCause,
    },
    /// The availability watch could not start; nothing was applied.
    #[error("failed to start the availability watch of {environment}")]
    Availability {
        /// The environment.
        environment: String,
        /// Why.
        #[source]
        source: AvailabilityError,
    },
    /// `rollback` found no revision to go back to.
    #[error("no earlier succeeded revision of {app} in {environment} to roll back to")]
    NoTarget {
        /// The application.
        app: String,
        /// The environment.
        environment: String,
    },
    /// The record to roll back to did not succeed.
    #[error("revision {revision} of {app} in {environment} is {status}, not succeeded")]
    NotSucceeded {
        /// The application.
        app: String,
        /// The environment.
        environment: String,
        /// The revision asked for.
        revision: u32,
        /// Its status.
        status: &'static str,
    },
    /// The recorded objects of the revision to roll back to are invalid.
    #[error("release record {revision} holds an invalid object")]
    InvalidRecord {
        /// The revision.
        revision: u32,
        /// What is wrong.
        #[source]
        source: Box<RestoreError>,
    },
    /// A signal stopped the release before anything was applied.
    #[error("interrupted before anything was applied")]
    Interrupted,
    /// The release failed, and restoring the last succeeded revision failed too.
    #[error(
        "release of {environment} failed ({failure}) and restoring revision {target} failed: the environment is part-way"
    )]
    Restore {
        /// The environment.
        environment: String,
        /// The revision that failed.
        revision: u32,
        /// The revision being restored.
        target: u32,
        /// What made the release fail, in one line.
        failure: String,
        /// Why the restore failed.
        #[source]
        source: Box<RestoreError>,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Lint { .. } | Error::Timeout { .. } => ExitStatus::BadInput,
            Error::NoTarget { .. } | Error::NotSucceeded { .. } => ExitStatus::BadInput,
            Error::Check(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Lock(e) => e.exit_status(),
            Error::Record(e) => e.exit_status(),
            Error::Live { .. } | Error::Availability { .. } | Error::InvalidRecord { .. } => {
                ExitStatus::Failure
            }
            Error::Interrupted => ExitStatus::Interrupted,
            Error::Restore { .. } => ExitStatus::Partial,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Lint { .. } => vec!["fix the findings above, then release again".to_string()],
            Error::Check(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Lock(e) => e.hints(),
            Error::Record(e) => e.hints(),
            Error::Availability { source, .. } => source.hints(),
            Error::NoTarget { environment, .. } | Error::NotSucceeded { environment, .. } => {
                vec![format!(
                    "`ferry history {environment}` lists the recorded revisions"
                )]
            }
            Error::Restore {
                environment,
                target,
                ..
            } => vec![
                format!(
                    "fix the cause, then run `ferry rollback {environment} --to {target}` to restore the last good revision"
                ),
                format!("`ferry status {environment}` shows what is live now"),
            ],
            _ => Vec::new(),
        }
    }
}

/// Why the release phases stopped.
enum Stop {
    /// A signal arrived.
    Interrupted,
    /// Something failed: one line saying what.
    Failed(String),
}

/// What the phases produced, kept even when they stop part-way.
#[derive(Default)]
struct Attempt {
    apply_started: bool,
    objects: Vec<ObjectResult>,
    pruned: Vec<ObjectResult>,
    workloads: Vec<WorkloadOutcome>,
    availability: Vec<ServiceAvailability>,
    checks: Vec<CheckResult>,
}

/// The release context shared by the phases.
struct Ctx<'a> {
    client: Client,
    /// The client without kube's retries of 503 answers, for service proxy checks.
    proxy_client: Client,
    namespace: String,
    ownership: Ownership,
    timeout: Duration,
    reporter: Arc<dyn RolloutReporter>,
    apply_reporter: &'a dyn ApplyReporter,
    interrupt: Shared<Interrupt>,
}

/// One line: an error and its causes, `: `-separated (for records and outcomes).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `work`, or `None` when the interrupt fires first.
async fn or_interrupt<T>(
    work: impl Future<Output = T>,
    interrupt: &Shared<Interrupt>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = interrupt.clone() => None,
        result = work => Some(result),
    }
}

/// Releases the environment (or a recorded revision).
///
/// # Errors
/// Input, lint, connection, lock and record errors before the apply change nothing;
/// [`Error::Restore`] when a failed release could not be rolled back.
pub async fn release(
    opts: &ReleaseOptions,
    reporter: Arc<dyn RolloutReporter>,
    apply_reporter: &dyn ApplyReporter,
    interrupt: Interrupt,
) -> Result<ReleaseOutcome, Error> {
    let started = Instant::now();
    let interrupt = interrupt.shared();
    let prepared = prepare(&opts.project)?;
    let env = &prepared.env;
    if opts.source == Source::Render {
        lint(&env.name, &prepared.bundle.objects, &[])?;
    }
    let timeout =
        humantime::parse_duration(&env.release.timeout).map_err(|source| Error::Timeout {
            value: env.release.timeout.clone(),
            source,
        })?;
    let specs = env
        .gates
        .checks
        .iter()
        .map(CheckSpec::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    let http = http_client()?;
    let cluster = or_interrupt(opts.cluster.connect(&env.context), &interrupt)
        .await
        .ok_or(Error::Interrupted)??;
    let client = cluster.client.clone();
    let store = RecordStore::new(client.clone(), &env.namespace, &env.app, &env.name);

    // What to release, and the strict lint against the last good revision. This history is
    // read before the lock; it stands after the lock only when nobody held the lock meanwhile
    // (see `settled_history`).
    let history = store.history().await?;
    let previous = store.last_succeeded_in(&history).await?;
    let (objects, candidate, source, findings) = match opts.source {
        Source::Render => {
            let previous_objects = match &previous {
                Some(p) => to_objects(&p.objects).unwrap_or_default(),
                None => Vec::new(),
            };
            let findings = lint(&env.name, &prepared.bundle.objects, &previous_objects)?;
            let candidate = Candidate::new(
                images_of(&prepared.bundle.objects),
                prepared.bundle.templates_digest.clone(),
            );
            (prepared.bundle.objects.clone(), candidate, None, findings)
        }
        Source::Revision(to) => {
            let target = rollback_target(&store, to, &env.app, &env.name).await?;
            let objects = to_objects(&target.objects).map_err(|source| Error::InvalidRecord {
                revision: target.revision,
                source: Box::new(source),
            })?;
            let source = Some(format!("rollback to revision {}", target.revision));
            (objects, target.candidate.clone(), source, Vec::new())
        }
    };

    // Watch the workloads from now on, so the wait after the apply starts warm.
    let rollout_watch = RolloutWatch::start(
        &client,
        namespaces_of(&objects, &env.namespace),
        &kinds_of(&objects),
    );

    let guard = or_interrupt(
        acquire(
            &client,
            &LockOptions {
                namespace: env.namespace.clone(),
                app: env.app.clone(),
                env: env.name.clone(),
                holder: default_holder(),
                duration: DEFAULT_LEASE_DURATION,
                wait: opts.wait_lock,
            },
        ),
        &interrupt,
    )
    .await
    .ok_or(Error::Interrupted)??;

    let ctx = Ctx {
        client: client.clone(),
        proxy_client: cluster.proxy_client.clone(),
        namespace: env.namespace.clone(),
        ownership: Ownership::application(&env.app, &env.name, &env.namespace),
        timeout,
        reporter,
        apply_reporter,
        interrupt,
    };

    let history = match settled_history(&store, &guard, history).await {
        Ok(h) => h,
        Err(e) => {
            let _ = guard.release().await;
            return Err(e.into());
        }
    };

    let mut record = ReleaseRecord {
        app: env.app.clone(),
        env: env.name.clone(),
        revision: 0,
        status: ReleaseStatus::Pending,
        candidate,
        objects: objects.iter().map(|o| o.value.clone()).collect(),
        timings: Timings::starting_now(),
        availability: Vec::new(),
        checks: Vec::new(),
        released_by: current_user(),
        failure: None,
        rolled_back_to: None,
        source: source.clone(),
    };
    // Under the lock, at once: the pending record; the apply's reads; the availability floors
    // and their watch. Only the record writes, and it is written before anything is applied.
    let templates_digest = record.candidate.templates_digest.clone();
    let request = apply_request(&objects, &ctx.ownership, &templates_digest);
    let (created, prepared, armed) = tokio::join!(
        create_pending(&ctx, &store, &guard, &env.name, history, &mut record),
        cluster::prepare(&client, &request),
        arm_availability(&ctx, &env.name, &objects),
    );
    let (recovered, history) = match created {
        Ok(r) => r,
        Err(e) => {
            let _ = guard.release().await;
            return Err(e);
        }
    };
    // A recovery restored an older revision: what was read before it is stale.
    let (prepared, armed) = if recovered.is_some() {
        drop((prepared, armed));
        (
            cluster::prepare(&client, &request).await,
            arm_availability(&ctx, &env.name, &objects).await,
        )
    } else {
        (prepared, armed)
    };
    let watch = match armed {
        Ok(w) => w,
        Err(e) => {
            settle_unapplied(&store, &mut record, guard, &chain(&e)).await;
            return Err(e);
        }
    };

    let mut attempt = Attempt::default();
    let result = phases(
        &ctx,
        prepared,
        watch,
        &rollout_watch,
        &specs,
        &http,
        &guard,
        &mut record.timings,
        &mut attempt,
    )
    .await;

    record.availability = attempt.availability.clone();
    record.checks = attempt.checks.clone();
    let mut interrupted = false;
    match result {
        Ok(()) => record.status = ReleaseStatus::Succeeded,
        Err(stop) => {
            let failure = match stop {
                Stop::Interrupted => {
                    interrupted = true;
                    "interrupted by a signal".to_string()
                }
                Stop::Failed(f) => f,
            };
            record.failure = Some(failure.clone());
            record.status = ReleaseStatus::Failed;
            // Read again under the lock: another release may have succeeded since the lint.
            let target = store
                .last_succeeded()
                .await
                .unwrap_or(previous)
                .filter(|p| p.revision != record.revision);
            if attempt.apply_started
                && opts.rollback
                && let Some(target) = target
            {
                match restore(&ctx, &target).await {
                    Ok(_) => {
                        record.status = ReleaseStatus::RolledBack;
                        record.rolled_back_to = Some(target.revision);
                    }
                    Err(source) => {
                        record.timings.finish();
                        let _ = store.update(&record).await;
                        let _ = guard.release().await;
                        return Err(Error::Restore {
                            environment: env.name.clone(),
                            revision: record.revision,
                            target: target.revision,
                            failure,
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
    }
    record.timings.finish();
    store.update(&record).await?;
    tracing::debug!(status = record.status.as_str(), "record written");
    if record.status == ReleaseStatus::Succeeded {
        // The history read under the lock, and this record: nobody else wrote one since.
        let mut history = history;
        history.push(RecordSummary {
            revision: record.revision,
            status: record.status,
            started_at: None,
            released_by: None,
            candidate: None,
        });
        store
            .prune_in(
                &history,
                usize::try_from(env.release.history_limit).unwrap_or(usize::MAX),
            )
            .await?;
        tracing::debug!("old records pruned");
    }
    guard.release().await?;
    tracing::debug!("lock released");
    Ok(ReleaseOutcome {
        app: env.app.clone(),
        environment: env.name.clone(),
        namespace: env.namespace.clone(),
        revision: record.revision,
        status: record.status,
        interrupted,
        candidate: record.candidate.id.clone(),
        source,
        recovered,
        findings,
        objects: attempt.objects,
        pruned: attempt.pruned,
        workloads: attempt.workloads,
        availability: attempt.availability,
        checks: attempt.checks,
        failure: record.failure,
        rolled_back_to: record.rolled_back_to,
        elapsed: started.elapsed(),
    })
}

/// The strict lint; errors stop the release.
fn lint(environment: &str, objects: &[Object], previous: &[Object]) -> Result<Vec<Finding>, Error> {
    let findings = policy::lint(
        objects,
        &LintContext {
            previous,
            strict_zero_downtime: true,
        },
    );
    if policy::has_errors(&findings) {
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        return Err(Error::Lint {
            environment: environment.to_string(),
            errors,
            findings,
        });
    }
    Ok(findings)
}

/// Settles what a crashed release left (see [`recover`]) and creates the pending record
/// under the next revision. A revision taken since `history` was read means a release ran in
/// between: the history is read again (recovering what that one left) and the create retried.
async fn create_pending(
    ctx: &Ctx<'_>,
    store: &RecordStore,
    guard: &LockGuard,
    environment: &str,
    mut history: Vec<RecordSummary>,
    record: &mut ReleaseRecord,
) -> Result<(Option<Recovery>, Vec<RecordSummary>), Error> {
    let mut recovered = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Some(r) = recover(ctx, store, guard, environment, &history).await? {
            recovered = Some(r);
        }
        record.revision = next_revision_after(&history);
        match store.create(record).await {
            Ok(()) => return Ok((recovered, history)),
            Err(RecordError::RevisionTaken { .. }) if attempts < 3 => {
                history = store.history().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The availability floors of the Services in front of live workloads, and their watch,
/// armed (first lists done) so it can prove availability from before the apply on.
async fn arm_availability(
    ctx: &Ctx<'_>,
    environment: &str,
    objects: &[Object],
) -> Result<AvailabilityWatch, Error> {
    let floors = floors(&ctx.client, &ctx.namespace, objects).await?;
    AvailabilityWatch::start(
        &ctx.client,
        &ctx.namespace,
        &floors,
        Arc::clone(&ctx.reporter),
    )
    .await
    .map_err(|source| Error::Availability {
        environment: environment.to_string(),
        source,
    })
}

/// Marks a record that never reached the apply as failed and lets the lock go.
async fn settle_unapplied(
    store: &RecordStore,
    record: &mut ReleaseRecord,
    guard: LockGuard,
    failure: &str,
) {
    record.status = ReleaseStatus::Failed;
    record.failure = Some(failure.to_string());
    record.timings.finish();
    let _ = store.update(record).await;
    let _ = guard.release().await;
}

/// Apply, rollout wait with the availability proof, checks.
#[allow(clippy::too_many_arguments)] // the phases' whole context; private
async fn phases(
    ctx: &Ctx<'_>,
    prepared: Result<cluster::PreparedApply<'_>, cluster::ApplyFailure>,
    mut watch: AvailabilityWatch,
    rollout_watch: &RolloutWatch,
    specs: &[CheckSpec],
    http: &reqwest::Client,
    guard: &LockGuard,
    timings: &mut Timings,
    attempt: &mut Attempt,
) -> Result<(), Stop> {
    // A failed preparation read, and changed, nothing.
    let prepared = prepared.map_err(|failure| Stop::Failed(chain(&failure.error)))?;
    attempt.apply_started = true;
    let t = Instant::now();
    let applied = or_interrupt(prepared.run(ctx.apply_reporter), &ctx.interrupt).await;
    timings.phase("apply", t.elapsed());
    let report = match applied {
        None => return Err(Stop::Interrupted),
        Some(Err(failure)) => {
            attempt.objects = failure.report.objects;
            attempt.pruned = failure.report.pruned;
            return Err(Stop::Failed(chain(&failure.error)));
        }
        Some(Ok(report)) => report,
    };
    let workloads = workloads_of(&report.objects, &ctx.namespace);
    attempt.objects = report.objects;
    attempt.pruned = report.pruned;

    let t = Instant::now();
    let rollout = tokio::select! {
        biased;
        () = ctx.interrupt.clone() => {
            attempt.availability = watch.snapshot();
            return Err(Stop::Interrupted);
        }
        b = watch.breached() => {
            attempt.availability = watch.snapshot();
            return Err(Stop::Failed(format!(
                "service {} fell to {} ready endpoints, below its floor of {}",
                b.service, b.min_ready, b.floor
            )));
        }
        r = rollout_watch.wait(&workloads, ctx.timeout, WaitOptions::default(), ctx.reporter.as_ref()) => r,
    };
    timings.phase("rollout", t.elapsed());
    tracing::debug!(elapsed = ?t.elapsed(), "rollout complete");
    match rollout {
        Ok(outcome) => attempt.workloads = outcome.workloads,
        Err(e) => {
            attempt.availability = watch.snapshot();
            return Err(Stop::Failed(chain(&e)));
        }
    }
    attempt.availability = watch.finish().await.map_err(|e| Stop::Failed(chain(&e)))?;
    tracing::debug!("availability watch finished");
    if let Some(b) = attempt.availability.iter().find(|a| !a.held) {
        return Err(Stop::Failed(format!(
            "service {} fell to {} ready endpoints, below its floor of {}",
            b.service, b.min_ready, b.floor
        )));
    }
    guard.check().map_err(|e| Stop::Failed(chain(&e)))?;

    let t = Instant::now();
    let results = or_interrupt(
        run_checks(
            http,
            Some(&ServiceProxy {
                client: ctx.proxy_client.clone(),
                namespace: ctx.namespace.clone(),
            }),
            specs,
            ctx.reporter.as_ref(),
        ),
        &ctx.interrupt,
    )
    .await
    .ok_or(Stop::Interrupted)?;
    timings.phase("checks", t.elapsed());
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

/// Server-side applies `objects` with pruning under field manager `ferry`.
async fn apply_objects(
    ctx: &Ctx<'_>,
    objects: &[Object],
    templates_digest: &str,
) -> Result<cluster::ApplyReport, cluster::ApplyFailure> {
    let request = apply_request(objects, &ctx.ownership, templates_digest);
    cluster::apply::apply(&ctx.client, &request, ctx.apply_reporter).await
}

/// The apply of a release: server-side, pruning, every object sent (never skipped as
/// unchanged), the templates digest on the ApplySet parent.
fn apply_request<'a>(
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
    }
}

/// Restores a recorded revision through the same engine and waits for it.
async fn restore(ctx: &Ctx<'_>, target: &ReleaseRecord) -> Result<RolloutOutcome, RestoreError> {
    let objects = to_objects(&target.objects)?;
    let report = apply_objects(ctx, &objects, &target.candidate.templates_digest)
        .await
        .map_err(|f| RestoreError::Apply(Box::new(f.error)))?;
    let workloads = workloads_of(&report.objects, &ctx.namespace);
    wait_for_rollout(
        &ctx.client,
        &workloads,
        ctx.timeout,
        WaitOptions::default(),
        ctx.reporter.as_ref(),
    )
    .await
    .map_err(RestoreError::Rollout)
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

/// Settles a release left pending by a crashed Ferry: restores the last succeeded revision
/// (or marks it failed when there is none).
async fn recover(
    ctx: &Ctx<'_>,
    store: &RecordStore,
    guard: &LockGuard,
    environment: &str,
    history: &[RecordSummary],
) -> Result<Option<Recovery>, Error> {
    let Some(newest) = history.last() else {
        return Ok(None);
    };
    if newest.status != ReleaseStatus::Pending {
        return Ok(None);
    }
    let former_holder = guard.took_over().map(|t| t.holder.clone());
    let mut pending = store.read(newest.revision).await?;
    let failure = match &former_holder {
        Some(h) => format!("ferry stopped mid-release (the lock of {h} expired)"),
        None => "ferry stopped mid-release".to_string(),
    };
    pending.failure = Some(failure.clone());
    pending.status = ReleaseStatus::Failed;
    let target = store.last_succeeded().await?;
    if let Some(target) = &target {
        match restore(ctx, target).await {
            Ok(_) => {
                pending.status = ReleaseStatus::RolledBack;
                pending.rolled_back_to = Some(target.revision);
            }
            Err(source) => {
                pending.timings.finish();
                let _ = store.update(&pending).await;
                return Err(Error::Restore {
                    environment: environment.to_string(),
                    revision: pending.revision,
                    target: target.revision,
                    failure,
                    source: Box::new(source),
                });
            }
        }
    }
    pending.timings.finish();
    store.update(&pending).await?;
    Ok(Some(Recovery {
        revision: pending.revision,
        former_holder,
        status: pending.status,
        restored: pending.rolled_back_to,
    }))
}

/// The record `rollback` re-releases: `--to N`, else the succeeded revision before the newest
/// succeeded one.
async fn rollback_target(
    store: &RecordStore,
    to: Option<u32>,
    app: &str,
    environment: &str,
) -> Result<ReleaseRecord, Error> {
    let revision = match to {
        Some(n) => n,
        None => {
            let succeeded: Vec<u32> = store
                .history()
                .await?
                .iter()
                .filter(|s| s.status == ReleaseStatus::Succeeded)
                .map(|s| s.revision)
                .collect();
            match succeeded
                .len()
                .checked_sub(2)
                .and_then(|i| succeeded.get(i))
            {
                Some(n) => *n,
                None => {
                    return Err(Error::NoTarget {
                        app: app.to_string(),
                        environment: environment.to_string(),
                    });
                }
            }
        }
    };
    let record = store.read(revision).await?;
    if record.status != ReleaseStatus::Succeeded {
        return Err(Error::NotSucceeded {
            app: app.to_string(),
            environment: environment.to_string(),
            revision,
            status: record.status.as_str(),
        });
    }
    Ok(record)
}

fn to_objects(values: &[Value]) -> Result<Vec<Object>, RestoreError> {
    values
        .iter()
        .map(|v| Object::new(v.clone(), None).map_err(RestoreError::Object))
        .collect()
}

/// The workloads the apply returned, pinned to the generations it returned.
fn workloads_of(objects: &[ObjectResult], namespace: &str) -> Vec<Workload> {
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

/// Container images of the bundle: image reference without digest or tag → full reference.
fn images_of(objects: &[Object]) -> BTreeMap<String, String> {
    let mut images = BTreeMap::new();
    for o in objects {
        let Some(spec) = o.pod_spec() else { continue };
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get(list).and_then(Value::as_array) else {
                continue;
            };
            for c in containers {
                if let Some(image) = c.get("image").and_then(Value::as_str) {
                    let name = image.split('@').next().unwrap_or(image);
                    images.insert(name.to_string(), image.to_string());
                }
            }
        }
    }
    images
}

/// The Services in front of workloads that already run, with their floors: `replicas −
/// maxUnavailable` of the new spec, never above what is ready now (a first install or a
/// scale-up has nothing more to keep available).
async fn floors(
    client: &Client,
    namespace: &str,
    objects: &[Object],
) -> Result<Vec<ServiceFloor>, Error> {
    // Which workload each Service selects, and the floor its manifest asks for.
    let mut pairs: Vec<(&str, &Object, u32)> = Vec::new();
    for svc in objects.iter().filter(|o| o.id.kind == "Service") {
        let Some(selector) = svc
            .value
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        for w in objects {
            let Some(labels) = w
                .value
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object)
            else {
                continue;
            };
            if selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                && let Some(floor) = manifest_floor(w)
            {
                pairs.push((svc.id.name.as_str(), w, floor));
            }
        }
    }
    // The live ready replicas of each workload concerned (once each), read concurrently.
    let workloads: BTreeMap<(&str, &str), &Object> = pairs
        .iter()
        .map(|(_, w, _)| ((w.id.kind.as_str(), w.id.name.as_str()), *w))
        .collect();
    let ready: Vec<Option<i32>> = futures::future::try_join_all(
        workloads
            .values()
            .map(|w| live_ready(client, namespace, &w.id.kind, &w.id.name)),
    )
    .await?;
    let ready: BTreeMap<(&str, &str), Option<i32>> = workloads.into_keys().zip(ready).collect();
    let mut floors: BTreeMap<String, u32> = BTreeMap::new();
    for (service, w, floor) in pairs {
        // A workload not live yet has nothing to keep available.
        let Some(ready) = ready[&(w.id.kind.as_str(), w.id.name.as_str())] else {
            continue;
        };
        let floor = floor.min(u32::try_from(ready).unwrap_or(0));
        if floor > 0 {
            *floors.entry(service.to_string()).or_insert(0) += floor;
        }
    }
    Ok(floors
        .into_iter()
        .map(|(service, floor)| ServiceFloor { service, floor })
        .collect())
}

/// The availability floor a Deployment's or StatefulSet's manifest asks for (replicas minus
/// maxUnavailable); `None` for other kinds.
fn manifest_floor(w: &Object) -> Option<u32> {
    let replicas = w
        .value
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
        .unwrap_or(1);
    match w.id.kind.as_str() {
        "Deployment" => {
            let max: Option<IntOrString> = w
                .value
                .pointer("/spec/strategy/rollingUpdate/maxUnavailable")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            Some(availability_floor(replicas, max.as_ref()))
        }
        "StatefulSet" => {
            let max: IntOrString = w
                .value
                .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(IntOrString::Int(1));
            Some(availability_floor(replicas, Some(&max)))
        }
        _ => None,
    }
}

/// The ready replicas of a live Deployment or StatefulSet; `None` when it does not exist.
async fn live_ready(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<i32>, Error> {
    let live_err = |kind: &'static str| {
        move |source: kube::Error| Error::Live {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: cluster::ApiCause::from_kube(&source),
        }
    };
    let ready = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_err("Deployment"))?
            .map(|d| d.status.and_then(|s| s.ready_replicas).unwrap_or(0)),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_err("StatefulSet"))?
            .map(|s| s.status.and_then(|s| s.ready_replicas).unwrap_or(0)),
        _ => None,
    };
    Ok(ready)
}
