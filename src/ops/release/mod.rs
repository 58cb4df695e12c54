//! `ferry release` and `ferry rollback`: find the bundle to release (a render of the project,
//! or a release record), then carry it through the release engine ([`engine`]): lock, record,
//! apply, watch with the availability proof, check, and finish or roll back.
//!
//! `rollback` and the recovery of a crashed release need only the cluster: they read the
//! environment from `ferry.yaml` and its environment file, or from flags ([`super::target`]),
//! and apply the recorded objects as they were, never rendering or reading a secret.
//!
//! Nothing here prints or picks an exit code: an outcome that failed safely is still `Ok`,
//! with its [`ReleaseStatus`].

mod engine;
mod recovery;
mod source;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use engine::Session;
pub(crate) use engine::workloads_of;
pub use engine::{Environment, ReleaseBundle};

use super::apply::ClusterOptions;
use super::prepare::{self, ProjectOptions, prepare};
use super::target::{self, TargetOptions};
use crate::cluster::{self, ApplyReporter, ConnectError, ObjectResult};
use crate::object::{Object, ObjectError};
use crate::policy::{self, Finding, LintContext};
use crate::project::Gates;
use crate::release::{
    AvailabilityError, CheckError, CheckResult, FloorError, LockError, RecordError, ReleaseStatus,
    RolloutError, RolloutReporter, ServiceAvailability, WorkloadOutcome,
};
use crate::ui::{Diagnostic, ExitStatus};

/// The signal future a release watches: resolves on Ctrl-C or SIGTERM.
pub type Interrupt = BoxFuture<'static, ()>;

/// What to release.
#[derive(Debug, Clone)]
pub enum Source {
    /// Render the project (`ferry release`): project, environment and `--set` overrides.
    Render(ProjectOptions),
    /// Re-release a recorded revision (`ferry rollback`): `None` means the succeeded revision
    /// before the newest succeeded one. Only the target's files (or flags) are read.
    Revision {
        /// The environment.
        target: TargetOptions,
        /// `--to N`.
        revision: Option<u32>,
    },
}

/// Options of `ferry release` and `ferry rollback`.
#[derive(Debug, Clone)]
pub struct ReleaseOptions {
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
    /// The environment to roll back could not be found; nothing was changed.
    #[error(transparent)]
    Target(#[from] target::Error),
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
    #[error(transparent)]
    Floors(#[from] FloorError),
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
    /// The environment configures a promotion gate that Ferry does not enforce yet: refused
    /// rather than ignored.
    #[error("environment {environment} configures gates.{gate}, which ferry does not enforce yet")]
    GateNotEnforced {
        /// The environment.
        environment: String,
        /// `approval` or `soak`.
        gate: &'static str,
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
            Error::Target(e) => e.exit_status(),
            Error::Lint { .. } | Error::Timeout { .. } => ExitStatus::BadInput,
            Error::NoTarget { .. } | Error::NotSucceeded { .. } => ExitStatus::BadInput,
            Error::GateNotEnforced { .. } => ExitStatus::BadInput,
            Error::Check(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Lock(e) => e.exit_status(),
            Error::Record(e) => e.exit_status(),
            Error::Floors(_) | Error::Availability { .. } | Error::InvalidRecord { .. } => {
                ExitStatus::Failure
            }
            Error::Interrupted => ExitStatus::Interrupted,
            Error::Restore { .. } => ExitStatus::Partial,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Target(e) => e.hints(),
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
            Error::GateNotEnforced { environment, gate } => vec![
                format!(
                    "ferry refuses to release past a gate it cannot check; remove `gates.{gate}` from environments/{environment}.yaml to release without it"
                ),
                "`ferry rollback` is not gated: the way back stays open".to_string(),
            ],
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

/// Releases the environment (a render of the project, or a recorded revision).
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
    match &opts.source {
        Source::Render(project) => {
            // Gates first: a release past one is refused before anything is rendered.
            let target = target::resolve(&TargetOptions::Project {
                project: project.project.clone(),
                cwd: project.cwd.clone(),
                environment: project.environment.clone(),
            })
            .map_err(|e| match e {
                // Reported as the render would report it (no hint about --app).
                target::Error::Project(p) => Error::Prepare(prepare::Error::Project(p)),
                other => Error::Target(other),
            })?;
            refuse_unenforced_gates(&target.environment, &target.gates)?;
            let prepared = prepare(project)?;
            // Fail fast on errors that need no cluster; the lint against the last good
            // revision follows once the history is read.
            lint(&prepared.env.name, &prepared.bundle.objects, &[])?;
            let e = &prepared.env;
            let env = Environment::new(
                &e.app,
                &e.name,
                &e.namespace,
                &e.context,
                &e.release,
                &e.gates.checks,
            )?;
            let session =
                Session::open(env, opts, reporter, apply_reporter, interrupt, started).await?;
            let bundle = source::rendered(&session, prepared.bundle)?;
            session.run(bundle).await
        }
        Source::Revision { target, revision } => {
            let t = target::resolve(target)?;
            let env = Environment::new(
                &t.app,
                &t.environment,
                &t.namespace,
                &t.context,
                &t.release,
                &t.gates.checks,
            )?;
            let session =
                Session::open(env, opts, reporter, apply_reporter, interrupt, started).await?;
            let bundle = source::recorded(&session, *revision).await?;
            session.run(bundle).await
        }
    }
}

/// Approval and soak gates are parsed but not enforced until promotion exists: a release
/// past one is refused, never silently allowed.
fn refuse_unenforced_gates(environment: &str, gates: &Gates) -> Result<(), Error> {
    let gate = if gates.approval {
        "approval"
    } else if gates.soak.is_some() {
        "soak"
    } else {
        return Ok(());
    };
    Err(Error::GateNotEnforced {
        environment: environment.to_string(),
        gate,
    })
}

/// The strict lint and the dependency plan's errors; errors stop the release.
fn lint(environment: &str, objects: &[Object], previous: &[Object]) -> Result<Vec<Finding>, Error> {
    let mut findings = policy::lint(
        objects,
        &LintContext {
            previous,
            strict_zero_downtime: true,
        },
    );
    // A cycle or an unknown dependency is refused here, before the lock and the record.
    findings.extend(super::plan::lint_plan(objects));
    if policy::has_errors(&findings) {
        return Err(Error::Lint {
            environment: environment.to_string(),
            errors: policy::error_count(&findings),
            findings,
        });
    }
    Ok(findings)
}
