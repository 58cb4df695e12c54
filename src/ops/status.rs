//! `ferry status`: what Ferry manages in an environment, each workload's readiness, and drift
//! from the last apply. Reads the cluster only; renders nothing (so it needs no secrets).

use serde::Serialize;

use super::apply::ClusterOptions;
use super::prepare::ProjectOptions;
use crate::cluster::status::{ObjectStatus, inspect};
use crate::cluster::{self, ConnectError, Ownership};
use crate::object::ObjectRef;
use crate::project::{self, Project, SetOverride};
use crate::ui::{Diagnostic, ExitStatus};

/// Which environment to inspect.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// Project and environment (`--set` is accepted and ignored: nothing is rendered).
    pub project: ProjectOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// The environment as Ferry sees it.
#[derive(Debug, Serialize)]
pub struct StatusOutcome {
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The kubeconfig context used.
    pub context: String,
    /// False when Ferry never applied anything here.
    pub applied: bool,
    /// True when every object is as applied and every workload ready.
    pub healthy: bool,
    /// The templates digest of the last apply, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates_digest: Option<String>,
    /// Every object of the last apply.
    pub objects: Vec<ObjectStatus>,
    /// Members carrying Ferry's labels that the last apply did not record.
    pub unrecorded: Vec<ObjectRef>,
}

/// Errors of `ferry status`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project or environment is invalid.
    #[error(transparent)]
    Project(#[from] project::Error),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Reading the cluster failed.
    #[error("failed to read the state of `{environment}`")]
    Inspect {
        /// The environment.
        environment: String,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Project(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Inspect { source, .. } => source.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Project(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Inspect {
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

/// Reads the environment's state from its cluster.
///
/// # Errors
/// Project and connection errors; a refused read or list.
pub async fn status(opts: &StatusOptions) -> Result<StatusOutcome, Error> {
    let project = match &opts.project.project {
        Some(dir) => Project::load(dir)?,
        None => Project::discover(&opts.project.cwd)?,
    };
    let sets = opts
        .project
        .sets
        .iter()
        .map(|s| SetOverride::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let env = project.resolve(&opts.project.environment, &sets)?;
    let cluster = opts.cluster.connect(&env.context).await?;
    let ownership = Ownership::application(&env.app, &env.name, &env.namespace);
    let report = inspect(&cluster.client, &ownership, opts.concurrency)
        .await
        .map_err(|source| Error::Inspect {
            environment: env.name.clone(),
            source: Box::new(source),
        })?;
    Ok(StatusOutcome {
        healthy: report.healthy(),
        environment: env.name,
        namespace: env.namespace,
        context: cluster.context,
        applied: report.applied,
        templates_digest: report
            .annotations
            .get(super::apply::TEMPLATES_DIGEST_ANNOTATION)
            .cloned(),
        objects: report.objects,
        unrecorded: report.unrecorded,
    })
}
