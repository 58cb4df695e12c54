//! `ferry diff`: what `ferry apply` would change, asked of the server with a dry run, as one
//! unified diff per object (server-managed fields stripped, Secret values redacted).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::apply::{ClusterOptions, TEMPLATES_DIGEST_ANNOTATION};
use super::prepare::{self, ProjectOptions, prepare};
use crate::cluster::diff::{ObjectDiff, object_diffs};
use crate::cluster::{self, ApplyRequest, ConnectError, Mode, NoopReporter, Ownership};
use crate::object::ObjectRef;
use crate::ui::{Diagnostic, ExitStatus};

/// What to compare.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Compare as `apply --force-conflicts` would apply.
    pub force_conflicts: bool,
    /// Include the objects an apply would prune.
    pub prune: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// The differences.
#[derive(Debug, Serialize)]
pub struct DiffOutcome {
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// True when applying would change something.
    pub changed: bool,
    /// One entry per object that would change, in apply order, prunes last.
    pub objects: Vec<ObjectDiff>,
    /// How many objects of the bundle would not change.
    pub unchanged: usize,
    /// Objects labelled as Ferry's that an apply would leave alone (never applied by Ferry).
    pub kept: Vec<ObjectRef>,
}

/// Errors of `ferry diff`. All of them exit 2 or more, since 1 means "there are differences".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server's dry run failed.
    #[error("failed to compare `{environment}` with the cluster")]
    Compare {
        /// The environment.
        environment: String,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        let status = match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Compare { source, .. } => source.exit_status(),
        };
        // Like `kubectl diff`: 0 no differences, 1 differences, >1 failure.
        match status {
            ExitStatus::Success | ExitStatus::Failure => ExitStatus::BadInput,
            other => other,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Compare {
                environment,
                source,
            } => source
                .hints()
                .into_iter()
                .map(|h| h.replace("<env>", environment))
                .collect(),
        }
    }
}

/// Renders the environment, dry-runs it on the server and diffs each object with the live one.
///
/// # Errors
/// Project and connection errors; a dry run the server refuses (invalid object, RBAC).
pub async fn diff(opts: &DiffOptions) -> Result<DiffOutcome, Error> {
    let prepared = prepare(&opts.project)?;
    let env = &prepared.env;
    let cluster = opts.cluster.connect(&env.context).await?;
    let ownership = Ownership::application(&env.app, &env.name, &env.namespace);
    let request = ApplyRequest {
        objects: &prepared.bundle.objects,
        ownership: &ownership,
        mode: Mode::DryRun,
        force_conflicts: opts.force_conflicts,
        prune: opts.prune,
        reapply: true,
        concurrency: opts.concurrency,
        establish_timeout: Duration::from_secs(0),
        parent_annotations: BTreeMap::from([(
            TEMPLATES_DIGEST_ANNOTATION.to_string(),
            prepared.bundle.templates_digest.clone(),
        )]),
        capture: true,
        members: Default::default(),
    };
    let report = cluster::apply::apply(&cluster.client, &request, &NoopReporter)
        .await
        .map_err(|failure| Error::Compare {
            environment: env.name.clone(),
            source: Box::new(failure.error),
        })?;
    let objects = object_diffs(&report);
    let unchanged = report
        .objects
        .iter()
        .filter(|r| !r.action.is_change())
        .count();
    Ok(DiffOutcome {
        environment: env.name.clone(),
        namespace: env.namespace.clone(),
        changed: !objects.is_empty(),
        objects,
        unchanged,
        kept: report.kept,
    })
}
