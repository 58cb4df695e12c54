//! Release records: one per revision, kept as Secrets in the environment's namespace, so
//! `history`, `rollback` and crash recovery need nothing but the cluster.
//!
//! A record ([`ReleaseRecord`]) holds the rendered objects, the image digests, the candidate id
//! (digests + templates digest), timings, the availability figures, the check results, who
//! released and the status (`pending` → `succeeded` / `failed` / `rolled-back`). It is stored
//! as gzip-compressed JSON split into chunks of at most [`CHUNK_SIZE`] bytes, one Secret each,
//! so a record is never limited by the 1 MiB size of one Secret (Helm's limit, helm#7126):
//!
//! - the head `ferry.release.<app>.<env>.v<N>` holds chunk 0 and, in annotations, the number
//!   of chunks and the SHA-256 of the whole compressed payload; its labels carry app, env,
//!   revision and status, so history is listed without decoding anything;
//! - chunk `i ≥ 1` is `ferry.release.<app>.<env>.v<N>.<i>`.
//!
//! Writes put the extra chunks first and the head last; a reader checks the digest, so it
//! never returns a record assembled from two writes. All Secrets have type
//! [`SECRET_TYPE`]. The environment is part of the name (not only the namespace) so two
//! environments sharing a namespace never overwrite each other's history.
//!
//! A record holds rendered Secrets in clear: decoding one registers their values with
//! [`crate::redact`] (so `rollback`, which has no secret store, still hides them from every
//! output), and a record's `Debug` shows its objects as `***`.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::availability::ServiceAvailability;
use super::checks::CheckResult;
use crate::cluster::ApiCause;
use crate::cluster::error::missing_namespace_hint;
use crate::ui::{Diagnostic, ExitStatus};

/// The Secret type of release records.
pub const SECRET_TYPE: &str = "ferry.dev/release.v1";

/// The largest chunk of compressed record one Secret holds.
pub const CHUNK_SIZE: usize = 512 * 1024;

/// The most a record may decompress to (a guard against a corrupted or hostile Secret).
pub const MAX_RECORD: u64 = 256 * 1024 * 1024;

/// The data key of a chunk.
const DATA_KEY: &str = "release";

/// Label: marks a Secret as a Ferry release record chunk (value `release`).
pub const LABEL_RECORD: &str = "ferry.dev/record";
/// Label: the application.
pub const LABEL_APP: &str = "ferry.dev/app";
/// Label: the environment.
pub const LABEL_ENV: &str = "ferry.dev/env";
/// Label: the revision number.
pub const LABEL_REVISION: &str = "ferry.dev/revision";
/// Label: the status ([`ReleaseStatus`] in kebab case), on the head only.
pub const LABEL_STATUS: &str = "ferry.dev/status";
/// Label: the chunk index (`0` is the head).
pub const LABEL_CHUNK: &str = "ferry.dev/chunk";
/// Annotation on the head: the number of chunks.
const ANNOTATION_CHUNKS: &str = "ferry.dev/chunks";
/// Annotation on the head: SHA-256 (hex) of the whole compressed payload.
const ANNOTATION_DIGEST: &str = "ferry.dev/sha256";
/// Annotation on the head: who released.
const ANNOTATION_BY: &str = "ferry.dev/released-by";
/// Annotation on the head: when the release started (RFC 3339).
const ANNOTATION_STARTED: &str = "ferry.dev/started-at";
/// Annotation on the head: the candidate id.
const ANNOTATION_CANDIDATE: &str = "ferry.dev/candidate";

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    /// Written before the apply; still pending afterwards means Ferry stopped mid-release.
    Pending,
    /// Rolled out and checked.
    Succeeded,
    /// Failed, and the cluster was not restored (e.g. `--no-rollback`, or no earlier revision).
    Failed,
    /// Failed, and the last succeeded revision was restored.
    RolledBack,
}

impl ReleaseStatus {
    /// The status as labels and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::RolledBack => "rolled-back",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            ReleaseStatus::Pending,
            ReleaseStatus::Succeeded,
            ReleaseStatus::Failed,
            ReleaseStatus::RolledBack,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// What is released: the image digests plus the digest of the rendered templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// `sha256:…` over the images and templates digest (see [`Candidate::new`]).
    pub id: String,
    /// Image name → `repository@sha256:…`.
    pub images: BTreeMap<String, String>,
    /// `render::Bundle::templates_digest`.
    pub templates_digest: String,
}

impl Candidate {
    /// A candidate and its id: SHA-256 of the canonical JSON of the sorted images and the
    /// templates digest, so the same artifact always has the same id.
    pub fn new(images: BTreeMap<String, String>, templates_digest: String) -> Self {
        let canonical = serde_json::json!({ "images": images, "templates": templates_digest });
        let id = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(canonical.to_string()))
        );
        Candidate {
            id,
            images,
            templates_digest,
        }
    }
}

/// When the phases of a release happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// When the release started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339); `None` while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Phase (`apply`, `rollout`, `checks`, `rollback`, …) → milliseconds.
    #[serde(default)]
    pub phases_ms: BTreeMap<String, u64>,
}

impl Timings {
    /// Timings starting now.
    pub fn starting_now() -> Self {
        Timings {
            started_at: now(),
            ..Timings::default()
        }
    }

    /// Records how long `phase` took.
    pub fn phase(&mut self, phase: &str, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.phases_ms.insert(phase.to_string(), ms);
    }

    /// Marks the release finished now.
    pub fn finish(&mut self) {
        self.finished_at = Some(now());
    }
}

/// The current time in RFC 3339.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// One release of an application to an environment.
///
/// `Debug` prints the objects as `***` (they include rendered Secrets).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The application.
    pub app: String,
    /// The environment.
    pub env: String,
    /// The revision, from 1, one more than the newest record.
    pub revision: u32,
    /// Where the release stands.
    pub status: ReleaseStatus,
    /// What was released.
    pub candidate: Candidate,
    /// The rendered objects as applied (secrets included: the record is a Secret).
    pub objects: Vec<serde_json::Value>,
    /// When things happened.
    pub timings: Timings,
    /// The availability proof, one entry per Service.
    #[serde(default)]
    pub availability: Vec<ServiceAvailability>,
    /// The HTTP checks' results.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Who released ([`current_user`]).
    pub released_by: String,
    /// What failed, in one line, when the release failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The revision restored after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<u32>,
    /// Where the candidate came from: `promote` names the source environment and revision,
    /// `rollback` the revision it re-releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl std::fmt::Debug for ReleaseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let objects = format!("*** ({} objects)", self.objects.len());
        f.debug_struct("ReleaseRecord")
            .field("app", &self.app)
            .field("env", &self.env)
            .field("revision", &self.revision)
            .field("status", &self.status)
            .field("candidate", &self.candidate)
            .field("objects", &objects)
            .field("timings", &self.timings)
            .field("availability", &self.availability)
            .field("checks", &self.checks)
            .field("released_by", &self.released_by)
            .field("failure", &self.failure)
            .field("rolled_back_to", &self.rolled_back_to)
            .field("source", &self.source)
            .finish()
    }
}

/// A record as history lists it, read from the head Secret's labels and annotations only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSummary {
    /// The revision.
    pub revision: u32,
    /// Its status.
    pub status: ReleaseStatus,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// Who released.
    pub released_by: Option<String>,
    /// The candidate id.
    pub candidate: Option<String>,
}

/// Why reading or writing records failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record could not be serialized or compressed.
    #[error("failed to encode release record {revision}")]
    Encode {
        /// The revision.
        revision: u32,
        /// The I/O or JSON error.
        #[source]
        source: std::io::Error,
    },
    /// The stored record is not valid gzip-compressed JSON of a record.
    #[error("release record {revision} is corrupt")]
    Corrupt {
        /// The revision.
        revision: u32,
        /// What is wrong.
        #[source]
        source: std::io::Error,
    },
    /// The chunks do not add up: one is missing, or they come from two different writes.
    #[error("release record {revision} is incomplete ({found} of {expected} chunks match)")]
    Incomplete {
        /// The revision.
        revision: u32,
        /// Chunks found and consistent.
        found: usize,
        /// Chunks the head announces.
        expected: usize,
    },
    /// No record with this revision exists.
    #[error("release record {revision} of {app} in {env} does not exist")]
    NotFound {
        /// The application.
        app: String,
        /// The environment.
        env: String,
        /// The revision.
        revision: u32,
    },
    /// Another release created this revision first.
    #[error("release record {revision} already exists")]
    RevisionTaken {
        /// The revision.
        revision: u32,
    },
    /// The API server refused or failed a request.
    #[error("failed to {verb} release record secrets in namespace {namespace}")]
    Api {
        /// `create`, `apply`, `get`, `list` or `delete`.
        verb: &'static str,
        /// The environment.
        env: String,
        /// The namespace.
        namespace: String,
        /// What the API server or the connection said.
        #[source]
        source: Box<ApiCause>,
    },
}

impl Diagnostic for RecordError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            RecordError::NotFound { .. } => ExitStatus::BadInput,
            _ => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            RecordError::NotFound { env, .. } => {
                vec![format!(
                    "`ferry history {env}` lists the recorded revisions"
                )]
            }
            RecordError::Api { source, env, .. } => {
                if let Some(namespace) = source.missing_namespace() {
                    vec![missing_namespace_hint(namespace, env)]
                } else if source.is_forbidden() {
                    vec![
                        "ferry needs get, list, create, patch and delete on secrets in the namespace"
                            .to_string(),
                    ]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }
}

/// A record compressed and split, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRecord {
    /// The compressed payload in chunks of at most [`CHUNK_SIZE`] bytes (at least one).
    pub chunks: Vec<Vec<u8>>,
    /// SHA-256 (hex) of the whole compressed payload.
    pub digest: String,
}

/// Serializes, compresses and splits a record.
///
/// # Errors
/// [`RecordError::Encode`] when serialization fails (it does not for well-formed records).
pub fn encode(record: &ReleaseRecord) -> Result<EncodedRecord, RecordError> {
    let err = |source| RecordError::Encode {
        revision: record.revision,
        source,
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    serde_json::to_writer(&mut gz, record).map_err(|e| err(e.into()))?;
    let payload = gz.finish().map_err(err)?;
    let digest = hex::encode(Sha256::digest(&payload));
    let mut chunks: Vec<Vec<u8>> = payload.chunks(CHUNK_SIZE).map(<[u8]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    Ok(EncodedRecord { chunks, digest })
}

/// Joins, verifies, decompresses and parses chunks written by [`encode`], and registers the
/// values of the Secrets it holds with [`crate::redact`].
///
/// # Errors
/// [`RecordError::Incomplete`] when the digest does not match, [`RecordError::Corrupt`] when
/// the payload is not a gzip-compressed record (or decompresses past [`MAX_RECORD`]).
pub fn decode(
    revision: u32,
    chunks: &[Vec<u8>],
    digest: &str,
) -> Result<ReleaseRecord, RecordError> {
    let payload = chunks.concat();
    if hex::encode(Sha256::digest(&payload)) != digest {
        return Err(RecordError::Incomplete {
            revision,
            found: 0,
            expected: chunks.len(),
        });
    }
    let corrupt = |source| RecordError::Corrupt { revision, source };
    let mut json = Vec::new();
    GzDecoder::new(payload.as_slice())
        .take(MAX_RECORD + 1)
        .read_to_end(&mut json)
        .map_err(corrupt)?;
    if json.len() as u64 > MAX_RECORD {
        return Err(corrupt(std::io::Error::other("the record is too large")));
    }
    let record: ReleaseRecord = serde_json::from_slice(&json).map_err(|e| corrupt(e.into()))?;
    for object in &record.objects {
        crate::redact::register_object(object);
    }
    Ok(record)
}

/// The revision after the newest of `history` (sorted by revision): 1 for an empty history.
pub fn next_revision_after(history: &[RecordSummary]) -> u32 {
    history.last().map_or(1, |s| s.revision.saturating_add(1))
}

/// Who is releasing: `FERRY_USER`, else `USER` / `LOGNAME` / `USERNAME`, else the output of
/// `whoami`, else `unknown`.
pub fn current_user() -> String {
    for var in ["FERRY_USER", "USER", "LOGNAME", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v.trim().to_string();
        }
    }
    std::process::Command::new("whoami")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The release records of one application and environment in one namespace.
#[derive(Clone)]
pub struct RecordStore {
    secrets: Api<Secret>,
    namespace: String,
    app: String,
    env: String,
}

impl RecordStore {
    /// The store in `namespace` for `app` in `env`.
    pub fn new(client: Client, namespace: &str, app: &str, env: &str) -> Self {
        RecordStore {
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            app: app.to_string(),
            env: env.to_string(),
        }
    }

    /// The name of chunk `chunk` of `revision`.
    pub fn secret_name(&self, revision: u32, chunk: usize) -> String {
        let head = format!("ferry.release.{}.{}.v{revision}", self.app, self.env);
        if chunk == 0 {
            head
        } else {
            format!("{head}.{chunk}")
        }
    }

    fn api_err(&self, verb: &'static str) -> impl Fn(kube::Error) -> RecordError + '_ {
        move |e| RecordError::Api {
            verb,
            env: self.env.clone(),
            namespace: self.namespace.clone(),
            source: Box::new(ApiCause::from_kube(&e)),
        }
    }

    fn selector(&self, extra: &str) -> String {
        let mut s = format!(
            "{LABEL_RECORD}=release,{LABEL_APP}={},{LABEL_ENV}={}",
            self.app, self.env
        );
        if !extra.is_empty() {
            s.push(',');
            s.push_str(extra);
        }
        s
    }

    fn secret(&self, record: &ReleaseRecord, enc: &EncodedRecord, chunk: usize) -> Secret {
        let mut labels = BTreeMap::from([
            (
                "app.kubernetes.io/managed-by".to_string(),
                "ferry".to_string(),
            ),
            (LABEL_RECORD.to_string(), "release".to_string()),
            (LABEL_APP.to_string(), self.app.clone()),
            (LABEL_ENV.to_string(), self.env.clone()),
            (LABEL_REVISION.to_string(), record.revision.to_string()),
            (LABEL_CHUNK.to_string(), chunk.to_string()),
        ]);
        let mut annotations = BTreeMap::new();
        if chunk == 0 {
            labels.insert(LABEL_STATUS.to_string(), record.status.as_str().to_string());
            annotations.extend([
                (ANNOTATION_CHUNKS.to_string(), enc.chunks.len().to_string()),
                (ANNOTATION_DIGEST.to_string(), enc.digest.clone()),
                (ANNOTATION_BY.to_string(), record.released_by.clone()),
                (
                    ANNOTATION_STARTED.to_string(),
                    record.timings.started_at.clone(),
                ),
                (
                    ANNOTATION_CANDIDATE.to_string(),
                    record.candidate.id.clone(),
                ),
            ]);
        }
        let data = enc.chunks.get(chunk).cloned().unwrap_or_default();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name(record.revision, chunk)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), ByteString(data))])),
            ..Secret::default()
        }
    }

    /// Creates a new record (normally `pending`, before the apply). Its revision must be free.
    ///
    /// # Errors
    /// [`RecordError::RevisionTaken`] when the revision exists, [`RecordError::Api`] otherwise.
    pub async fn create(&self, record: &ReleaseRecord) -> Result<(), RecordError> {
        let enc = encode(record)?;
        // Extra chunks first, the head last: the head's existence means the record is whole.
        for chunk in (1..enc.chunks.len()).chain([0]) {
            match self
                .secrets
                .create(&PostParams::default(), &self.secret(record, &enc, chunk))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    return Err(RecordError::RevisionTaken {
                        revision: record.revision,
                    });
                }
                Err(e) => return Err(self.api_err("create")(e)),
            }
        }
        Ok(())
    }

    /// Rewrites an existing record (status, timings, figures), removing chunks it no longer
    /// needs.
    ///
    /// # Errors
    /// [`RecordError::Api`] when a write fails.
    pub async fn update(&self, record: &ReleaseRecord) -> Result<(), RecordError> {
        let enc = encode(record)?;
        let params = PatchParams::apply("ferry").force();
        for chunk in (1..enc.chunks.len()).chain([0]) {
            let secret = self.secret(record, &enc, chunk);
            let name = self.secret_name(record.revision, chunk);
            self.secrets
                .patch(&name, &params, &Patch::Apply(&secret))
                .await
                .map_err(self.api_err("apply"))?;
        }
        // Chunks the record no longer needs: they are numbered without gaps, so probe upwards
        // by name (reads by name come from etcd at once; a list may wait for the watch cache).
        for chunk in enc.chunks.len().. {
            let name = self.secret_name(record.revision, chunk);
            let found = self
                .secrets
                .get_opt(&name)
                .await
                .map_err(self.api_err("get"))?;
            if found.is_none() {
                break;
            }
            self.delete(&name).await?;
        }
        Ok(())
    }

    /// Reads a record back, reassembling its chunks.
    ///
    /// # Errors
    /// [`RecordError::NotFound`], [`RecordError::Incomplete`], [`RecordError::Corrupt`] or
    /// [`RecordError::Api`].
    pub async fn read(&self, revision: u32) -> Result<ReleaseRecord, RecordError> {
        let head = self
            .secrets
            .get_opt(&self.secret_name(revision, 0))
            .await
            .map_err(self.api_err("get"))?
            .ok_or_else(|| RecordError::NotFound {
                app: self.app.clone(),
                env: self.env.clone(),
                revision,
            })?;
        let annotations = head.metadata.annotations.clone().unwrap_or_default();
        let expected: usize = annotations
            .get(ANNOTATION_CHUNKS)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let digest = annotations
            .get(ANNOTATION_DIGEST)
            .cloned()
            .unwrap_or_default();
        let mut chunks = vec![chunk_data(&head)];
        if expected > 1 {
            let listed = self
                .secrets
                .list(
                    &ListParams::default()
                        .labels(&self.selector(&format!("{LABEL_REVISION}={revision}"))),
                )
                .await
                .map_err(self.api_err("list"))?;
            let mut by_index: BTreeMap<usize, Vec<u8>> = listed
                .items
                .iter()
                .filter_map(|s| Some((chunk_index(s)?, chunk_data(s))))
                .collect();
            for i in 1..expected {
                let Some(data) = by_index.remove(&i) else {
                    return Err(RecordError::Incomplete {
                        revision,
                        found: i,
                        expected,
                    });
                };
                chunks.push(data);
            }
        }
        decode(revision, &chunks, &digest)
    }

    /// Every record of the application and environment, oldest first, from the heads'
    /// labels and annotations (nothing is decompressed).
    ///
    /// # Errors
    /// [`RecordError::Api`] when the list fails.
    pub async fn history(&self) -> Result<Vec<RecordSummary>, RecordError> {
        let heads = self
            .secrets
            .list(&ListParams::default().labels(&self.selector(&format!("{LABEL_CHUNK}=0"))))
            .await
            .map_err(self.api_err("list"))?;
        let mut summaries: Vec<RecordSummary> = heads.items.iter().filter_map(summary).collect();
        summaries.sort_by_key(|s| s.revision);
        Ok(summaries)
    }

    /// The revision the next release gets: one more than the newest record (1 for the first).
    ///
    /// # Errors
    /// [`RecordError::Api`] when the list fails.
    pub async fn next_revision(&self) -> Result<u32, RecordError> {
        Ok(next_revision_after(&self.history().await?))
    }

    /// The newest succeeded record, read in full: what a rollback restores.
    ///
    /// # Errors
    /// As [`RecordStore::read`].
    pub async fn last_succeeded(&self) -> Result<Option<ReleaseRecord>, RecordError> {
        let history = self.history().await?;
        self.last_succeeded_in(&history).await
    }

    /// The newest succeeded record of `history` (from [`RecordStore::history`]), read in full.
    ///
    /// # Errors
    /// As [`RecordStore::read`].
    pub async fn last_succeeded_in(
        &self,
        history: &[RecordSummary],
    ) -> Result<Option<ReleaseRecord>, RecordError> {
        match history
            .iter()
            .rev()
            .find(|s| s.status == ReleaseStatus::Succeeded)
        {
            Some(s) => self.read(s.revision).await.map(Some),
            None => Ok(None),
        }
    }

    /// Keeps the newest `keep` records (at least 1) and also the newest succeeded one, so a
    /// rollback target survives a run of failures; deletes the rest. Returns the deleted
    /// revisions, oldest first.
    ///
    /// # Errors
    /// [`RecordError::Api`] when a list or delete fails.
    pub async fn prune(&self, keep: usize) -> Result<Vec<u32>, RecordError> {
        let history = self.history().await?;
        self.prune_in(&history, keep).await
    }

    /// [`RecordStore::prune`] over `history` (sorted by revision, as [`RecordStore::history`]
    /// gives it) instead of a fresh read: for a caller that holds the lock and knows the
    /// history already. Deletes by name only.
    ///
    /// # Errors
    /// [`RecordError::Api`] when a delete fails.
    pub async fn prune_in(
        &self,
        history: &[RecordSummary],
        keep: usize,
    ) -> Result<Vec<u32>, RecordError> {
        let keep = keep.max(1);
        let last_good = history
            .iter()
            .rev()
            .find(|s| s.status == ReleaseStatus::Succeeded)
            .map(|s| s.revision);
        let cut = history.len().saturating_sub(keep);
        let doomed: Vec<u32> = history[..cut]
            .iter()
            .map(|s| s.revision)
            .filter(|r| Some(*r) != last_good)
            .collect();
        for &revision in &doomed {
            // The head first: a record without its head is invisible rather than half-read.
            // Then the chunks, numbered without gaps, until the first that is not there.
            self.delete(&self.secret_name(revision, 0)).await?;
            for chunk in 1.. {
                if !self
                    .delete_found(&self.secret_name(revision, chunk))
                    .await?
                {
                    break;
                }
            }
        }
        Ok(doomed)
    }

    /// Deletes a Secret by name; `false` when it was not there.
    async fn delete_found(&self, name: &str) -> Result<bool, RecordError> {
        match self.secrets.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
            Err(e) => Err(self.api_err("delete")(e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), RecordError> {
        self.delete_found(name).await.map(drop)
    }
}

fn chunk_index(s: &Secret) -> Option<usize> {
    s.metadata.labels.as_ref()?.get(LABEL_CHUNK)?.parse().ok()
}

fn chunk_data(s: &Secret) -> Vec<u8> {
    s.data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

fn summary(head: &Secret) -> Option<RecordSummary> {
    let labels = head.metadata.labels.as_ref()?;
    let annotations = head.metadata.annotations.clone().unwrap_or_default();
    Some(RecordSummary {
        revision: labels.get(LABEL_REVISION)?.parse().ok()?,
        status: ReleaseStatus::parse(labels.get(LABEL_STATUS)?)?,
        started_at: annotations.get(ANNOTATION_STARTED).cloned(),
        released_by: annotations.get(ANNOTATION_BY).cloned(),
        candidate: annotations.get(ANNOTATION_CANDIDATE).cloned(),
    })
}

/// Compresses `bytes` the way [`encode`] does (for tests of [`decode`]).
#[cfg(test)]
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record whose objects hold `bytes` of incompressible text (hex of a SHA-256 chain), so
    /// even compressed it spans several chunks.
    pub(crate) fn big_record(bytes: usize) -> ReleaseRecord {
        let mut objects = Vec::new();
        let mut seed = Sha256::digest(b"ferry");
        let mut total = 0;
        let mut i = 0;
        while total < bytes {
            let mut text = String::new();
            for _ in 0..64 {
                seed = Sha256::digest(seed);
                text.push_str(&hex::encode(seed));
            }
            total += text.len();
            objects.push(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": format!("blob-{i}") },
                "data": { "blob": text },
            }));
            i += 1;
        }
        ReleaseRecord {
            app: "demo".into(),
            env: "staging".into(),
            revision: 7,
            status: ReleaseStatus::Pending,
            candidate: Candidate::new(
                BTreeMap::from([("web".into(), "r.example/web@sha256:00".into())]),
                "sha256:11".into(),
            ),
            objects,
            timings: Timings::starting_now(),
            availability: Vec::new(),
            checks: Vec::new(),
            released_by: "tester".into(),
            failure: None,
            rolled_back_to: None,
            source: None,
        }
    }

    #[test]
    fn a_record_hides_its_secrets_in_debug_and_registers_them_when_decoded() {
        // issue 10: a record's objects hold rendered Secrets in clear.
        let mut record = big_record(10);
        record.objects.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": base64_of("record-secret-5150")},
        }));
        let debug = format!("{record:?} {record:#?}");
        assert!(!debug.contains(&base64_of("record-secret-5150")), "{debug}");
        assert!(debug.contains("*** (2 objects)"), "{debug}");
        let enc = encode(&record).unwrap();
        let decoded = decode(7, &enc.chunks, &enc.digest).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(
            crate::redact::scrub("env: record-secret-5150"),
            "env: ***",
            "rollback prints objects from records without a secret store"
        );
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn a_large_record_round_trips_through_chunks() {
        let record = big_record(1536 * 1024);
        let raw = serde_json::to_vec(&record).unwrap().len();
        assert!(raw > 1024 * 1024, "{raw} bytes of JSON");
        let enc = encode(&record).unwrap();
        assert!(enc.chunks.len() >= 2, "{} chunks", enc.chunks.len());
        assert!(enc.chunks.iter().all(|c| c.len() <= CHUNK_SIZE));
        assert_eq!(decode(7, &enc.chunks, &enc.digest).unwrap(), record);
    }

    #[test]
    fn compression_shrinks_ordinary_records() {
        let mut record = big_record(0);
        record.objects =
            vec![serde_json::json!({ "kind": "ConfigMap", "data": { "a": "x".repeat(100_000) } })];
        let enc = encode(&record).unwrap();
        assert_eq!(enc.chunks.len(), 1);
        assert!(enc.chunks[0].len() < 10_000, "{}", enc.chunks[0].len());
    }

    #[test]
    fn chunks_out_of_order_or_missing_are_refused() {
        let record = big_record(1536 * 1024);
        let enc = encode(&record).unwrap();
        let mut swapped = enc.chunks.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            decode(7, &swapped, &enc.digest),
            Err(RecordError::Incomplete { .. })
        ));
        assert!(matches!(
            decode(7, &enc.chunks[..1], &enc.digest),
            Err(RecordError::Incomplete { .. })
        ));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let payload = gzip(b"{not json");
        let digest = hex::encode(Sha256::digest(&payload));
        assert!(matches!(
            decode(1, &[payload], &digest),
            Err(RecordError::Corrupt { .. })
        ));
        let junk = b"plainly not gzip".to_vec();
        let digest = hex::encode(Sha256::digest(&junk));
        assert!(matches!(
            decode(1, &[junk], &digest),
            Err(RecordError::Corrupt { .. })
        ));
    }

    #[test]
    fn candidate_ids_are_stable_and_sensitive() {
        let a = Candidate::new(
            BTreeMap::from([("web".into(), "x@sha256:1".into())]),
            "t1".into(),
        );
        let b = Candidate::new(
            BTreeMap::from([("web".into(), "x@sha256:1".into())]),
            "t1".into(),
        );
        let c = Candidate::new(
            BTreeMap::from([("web".into(), "x@sha256:2".into())]),
            "t1".into(),
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("sha256:"));
    }

    #[test]
    fn status_labels_round_trip() {
        for s in [
            ReleaseStatus::Pending,
            ReleaseStatus::Succeeded,
            ReleaseStatus::Failed,
            ReleaseStatus::RolledBack,
        ] {
            assert_eq!(ReleaseStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
