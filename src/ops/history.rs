//! `ferry history`: the release records of an environment, oldest first, with their status,
//! who released, the candidate and the availability proof. Reads only the cluster and the
//! environment's files (or flags): no render, no secrets.

use serde::Serialize;

use super::apply::ClusterOptions;
use super::target::{self, TargetOptions};
use crate::cluster::ConnectError;
use crate::release::{RecordError, RecordStore, ReleaseStatus, ServiceAvailability};
use crate::ui::{Diagnostic, ExitStatus};

/// Options of `ferry history`.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// The environment: from `ferry.yaml` and its file (no render, no secrets), or flags.
    pub target: TargetOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
}

/// One release record.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The revision.
    pub revision: u32,
    /// Where it stands.
    pub status: ReleaseStatus,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// Who released.
    pub released_by: Option<String>,
    /// The candidate id.
    pub candidate: Option<String>,
    /// The availability proof (empty when nothing was running before, or unreadable).
    pub availability: Vec<ServiceAvailability>,
    /// What failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The revision restored after a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u32>,
    /// Where the candidate came from (e.g. a rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The records of an environment.
#[derive(Debug, Serialize)]
pub struct HistoryOutcome {
    /// The application.
    pub app: String,
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// Oldest first.
    pub releases: Vec<HistoryEntry>,
}

/// Errors of `ferry history`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The environment could not be found.
    #[error(transparent)]
    Target(#[from] target::Error),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The records could not be listed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Target(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Record(e) => e.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Target(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Record(e) => e.hints(),
        }
    }
}

/// Lists the release records of the environment.
///
/// # Errors
/// Project, connection and list errors.
pub async fn history(opts: &HistoryOptions) -> Result<HistoryOutcome, Error> {
    let env = target::resolve(&opts.target)?;
    let cluster = opts.cluster.connect(&env.context).await?;
    let store = RecordStore::new(cluster.client, &env.namespace, &env.app, &env.environment);
    let mut releases = Vec::new();
    for summary in store.history().await? {
        let full = store.read(summary.revision).await.ok();
        releases.push(HistoryEntry {
            revision: summary.revision,
            status: summary.status,
            started_at: summary.started_at,
            released_by: summary.released_by,
            candidate: summary.candidate,
            availability: full
                .as_ref()
                .map(|r| r.availability.clone())
                .unwrap_or_default(),
            failure: full.as_ref().and_then(|r| r.failure.clone()),
            rolled_back_to: full.as_ref().and_then(|r| r.rolled_back_to),
            source: full.and_then(|r| r.source),
        });
    }
    Ok(HistoryOutcome {
        app: env.app,
        environment: env.environment,
        namespace: env.namespace,
        releases,
    })
}
