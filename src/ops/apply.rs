//! `ferry apply`: render an environment, lint it, and apply it to its cluster with the
//! engine of [`crate::cluster::apply`] (one server dry run, server-side apply along the
//! dependency plan, then prune).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::prepare::{self, ProjectOptions, prepare};
use crate::cluster::{
    self, ApplyReporter, ApplyRequest, Cluster, ConnectError, ConnectOptions, Mode, ObjectResult,
    Ownership,
};
use crate::object::ObjectRef;
use crate::policy::Finding;
use crate::ui::{Diagnostic, ExitStatus};

/// The annotation on the ApplySet parent recording the templates digest of the last apply.
pub const TEMPLATES_DIGEST_ANNOTATION: &str = "ferry.dev/templates-digest";

/// How long to wait for a CRD of the bundle to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Which cluster to talk to.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`, overriding the environment file's.
    pub context: Option<String>,
}

impl ClusterOptions {
    /// Connects to the environment's cluster: `--context`, else the environment's context.
    ///
    /// # Errors
    /// Every way of failing to reach the cluster.
    pub async fn connect(&self, environment_context: &str) -> Result<Cluster, ConnectError> {
        let context = self
            .context
            .clone()
            .unwrap_or_else(|| environment_context.to_string());
        cluster::connect(&ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context,
        })
        .await
    }
}

/// What to apply, and how.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Ask the server, change nothing.
    pub dry_run: bool,
    /// Take over fields owned by other field managers.
    pub force_conflicts: bool,
    /// Delete owned objects that left the bundle.
    pub prune: bool,
    /// Send every object, even those unchanged since the last apply.
    pub reapply: bool,
    /// Run the lint first and refuse a bundle with errors.
    pub lint: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// What the apply did.
#[derive(Debug, Serialize)]
pub struct ApplyOutcome {
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The kubeconfig context used.
    pub context: String,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// The bundle's objects, in apply order, with what happened to each.
    pub objects: Vec<ObjectResult>,
    /// Objects pruned, in deletion order.
    pub pruned: Vec<ObjectResult>,
    /// Objects labelled as Ferry's that Ferry never applied: left alone.
    pub kept: Vec<ObjectRef>,
    /// Lint warnings (errors stop the apply).
    pub findings: Vec<Finding>,
}

impl ApplyOutcome {
    /// Objects created, adopted, configured or pruned.
    pub fn changes(&self) -> usize {
        self.objects
            .iter()
            .chain(&self.pruned)
            .filter(|r| r.action.is_change())
            .count()
    }
}

/// Errors of `ferry apply`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The lint found errors; nothing was sent.
    #[error("refusing to apply {environment}: {} lint error{}", errors, if *errors == 1 { "" } else { "s" })]
    Lint {
        /// The environment.
        environment: String,
        /// How many findings are errors.
        errors: usize,
        /// Every finding.
        findings: Vec<Finding>,
    },
    /// A declared dependency is unknown or circular: nothing was sent.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The engine stopped.
    #[error("{}", apply_headline(environment, *dry_run, *changes, *stage))]
    Apply {
        /// The environment.
        environment: String,
        /// True for `--dry-run`.
        dry_run: bool,
        /// Where it stopped, if it got past reading the cluster.
        stage: Option<cluster::Stage>,
        /// Objects changed before the failure.
        changes: usize,
        /// What was done before the failure.
        done: Vec<ObjectResult>,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
}

fn apply_headline(
    environment: &str,
    dry_run: bool,
    changes: usize,
    stage: Option<cluster::Stage>,
) -> String {
    let stage = match stage {
        Some(stage) => format!(" {stage}"),
        None => String::new(),
    };
    if dry_run {
        format!("dry run of `{environment}` failed{stage}")
    } else if changes == 0 {
        format!("failed to apply `{environment}`{stage}; nothing was changed")
    } else {
        format!(
            "apply of `{environment}` stopped{stage} after changing {changes} object{}: the environment is part-way",
            if changes == 1 { "" } else { "s" }
        )
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Lint { .. } => ExitStatus::BadInput,
            Error::Plan(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Apply { changes, .. } if *changes > 0 => ExitStatus::Partial,
            Error::Apply { source, .. } => source.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Lint { .. } => {
                vec!["fix the findings above, or pass --no-lint to apply anyway".to_string()]
            }
            Error::Plan(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Apply {
                environment,
                changes,
                source,
                ..
            } => {
                let mut hints: Vec<String> = source
                    .hints()
                    .into_iter()
                    .map(|h| h.replace("<env>", environment))
                    .collect();
                if *changes > 0 {
                    hints.push(format!(
                        "fix the cause, then run `ferry apply {environment}` again: objects already applied are skipped"
                    ));
                }
                hints
            }
        }
    }
}

/// Renders, lints, connects and applies.
///
/// # Errors
/// Project, lint and connection errors change nothing; [`Error::Apply`] says how far the
/// apply got.
pub async fn apply(
    opts: &ApplyOptions,
    reporter: &dyn ApplyReporter,
) -> Result<ApplyOutcome, Error> {
    let prepared = prepare(&opts.project)?;
    let findings =
        super::lint::gate(&prepared.bundle.objects, opts.lint).map_err(|(errors, findings)| {
            Error::Lint {
                environment: prepared.env.name.clone(),
                errors,
                findings,
            }
        })?;
    // The plan is checked before any request: a cycle or an unknown dependency reads nothing.
    crate::plan::plan(&super::plan::entries(&prepared.bundle.objects))?;
    let env = &prepared.env;
    let cluster = opts.cluster.connect(&env.context).await?;
    let ownership = Ownership::application(&env.app, &env.name, &env.namespace);
    let request = ApplyRequest {
        objects: &prepared.bundle.objects,
        ownership: &ownership,
        mode: if opts.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        },
        force_conflicts: opts.force_conflicts,
        prune: opts.prune,
        reapply: opts.reapply,
        concurrency: opts.concurrency,
        establish_timeout: ESTABLISH_TIMEOUT,
        parent_annotations: BTreeMap::from([(
            TEMPLATES_DIGEST_ANNOTATION.to_string(),
            prepared.bundle.templates_digest.clone(),
        )]),
        capture: false,
        members: Default::default(),
    };
    match cluster::apply::apply(&cluster.client, &request, reporter).await {
        Ok(report) => Ok(ApplyOutcome {
            environment: env.name.clone(),
            namespace: env.namespace.clone(),
            context: cluster.context.clone(),
            dry_run: opts.dry_run,
            objects: report.objects,
            pruned: report.pruned,
            kept: report.kept,
            findings,
        }),
        Err(failure) => {
            let changes = if opts.dry_run {
                0
            } else {
                failure.report.changes()
            };
            let mut done = failure.report.objects;
            done.extend(failure.report.pruned);
            Err(Error::Apply {
                environment: env.name.clone(),
                dry_run: opts.dry_run,
                stage: failure.stage,
                changes,
                done,
                source: Box::new(failure.error),
            })
        }
    }
}
