//! Pushing an image: HEAD-skip, cross-repository mount, monolithic upload (POST then PUT)
//! with a chunked fallback, blobs in parallel, then the manifest by digest and by tag, then
//! the referrers (SBOMs), best effort, with the tag-schema fallback when the registry does
//! not process `subject`.
//!
//! An unchanged re-push costs a ping and a few HEADs: when the manifest is already there, its
//! blobs are too (registries check them when a manifest is put).

use std::path::PathBuf;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde::Serialize;

use super::Error;
use super::client::{Client, Op};
use crate::image::canonical;
use crate::image::layout::Index;
use crate::image::oci::{self, Descriptor};

/// A blob to push, stored in a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The file holding it.
    pub path: PathBuf,
}

/// An artifact that refers to the image (an SBOM): its manifest and blobs.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The manifest bytes, exactly as pushed.
    pub manifest: Bytes,
    /// Its digest.
    pub digest: String,
    /// Its artifact type.
    pub artifact_type: String,
    /// Its blobs (config and layers).
    pub blobs: Vec<Blob>,
}

/// What to push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The repository on this client's registry.
    pub repository: String,
    /// The tag to point at the manifest, if any.
    pub tag: Option<String>,
    /// The manifest bytes, exactly as pushed.
    pub manifest: Bytes,
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Layers and config.
    pub blobs: Vec<Blob>,
    /// Repositories on the same registry that may already hold some blobs (mount sources).
    pub mount_from: Vec<String>,
    /// Artifacts referring to the image, pushed best effort.
    pub referrers: Vec<Artifact>,
}

/// What happened to one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum BlobAction {
    /// The registry had it (HEAD answered 200).
    Existed,
    /// Mounted from another repository of the registry.
    Mounted {
        /// The source repository.
        from: String,
    },
    /// Uploaded in one PUT.
    Uploaded,
    /// Uploaded in chunks.
    UploadedChunked {
        /// How many PATCH requests.
        chunks: u32,
    },
}

/// One blob's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobOutcome {
    /// The digest.
    pub digest: String,
    /// The size.
    pub size: u64,
    /// What happened.
    #[serde(flatten)]
    pub action: BlobAction,
}

/// One referrer's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferrerOutcome {
    /// The artifact type, e.g. `application/spdx+json`.
    pub artifact_type: String,
    /// The artifact manifest's digest.
    pub digest: String,
    /// `existed`, `referrers-api` (the registry indexed `subject`) or `tag-schema`
    /// (listed in the `sha256-<hex>` index tag).
    pub via: String,
}

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    /// `registry/repository@sha256:…`.
    pub reference: String,
    /// The tag pointed at it, if any.
    pub tag: Option<String>,
    /// True when the manifest was already in the repository (nothing was uploaded).
    pub manifest_existed: bool,
    /// Each blob of the image.
    pub blobs: Vec<BlobOutcome>,
    /// Bytes of blobs uploaded.
    pub bytes_uploaded: u64,
    /// The referrers pushed.
    pub referrers: Vec<ReferrerOutcome>,
    /// Problems that did not fail the push (e.g. an SBOM upload).
    pub warnings: Vec<String>,
}

/// Progress of a push, for people. Called from several tasks at once.
pub trait PushReporter: Send + Sync {
    /// A blob transfer starts.
    fn blob_started(&self, _digest: &str, _size: u64) {}
    /// A blob is done.
    fn blob_done(&self, _outcome: &BlobOutcome) {}
    /// A manifest was put (`reference` is a tag or digest).
    fn manifest_put(&self, _reference: &str) {}
}

/// A reporter that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl PushReporter for NoProgress {}

impl Client {
    /// Pushes an image and its referrers.
    ///
    /// # Errors
    /// Any failure pushing the image's blobs or manifest. Referrer failures are warnings.
    pub async fn push(
        &self,
        req: &PushRequest,
        reporter: &dyn PushReporter,
    ) -> Result<PushOutcome, Error> {
        self.ping().await?;
        let repo = &req.repository;
        let op = Op::new("manifest check", repo, true);
        let manifest_existed = self.manifest_exists(&op, &req.digest).await?.is_some();
        let blobs = if manifest_existed {
            req.blobs
                .iter()
                .map(|b| BlobOutcome {
                    digest: b.digest.clone(),
                    size: b.size,
                    action: BlobAction::Existed,
                })
                .collect()
        } else {
            let blobs = self
                .push_blobs(repo, &req.blobs, &req.mount_from, reporter)
                .await?;
            self.put_manifest(repo, &req.digest, &req.media_type, &req.manifest)
                .await?;
            reporter.manifest_put(&req.digest);
            blobs
        };
        if let Some(tag) = &req.tag {
            let current = if manifest_existed {
                self.manifest_exists(&op, tag).await?
            } else {
                None
            };
            if current.as_deref() != Some(req.digest.as_str()) {
                self.put_manifest(repo, tag, &req.media_type, &req.manifest)
                    .await?;
                reporter.manifest_put(tag);
            }
        }
        let (referrers, warnings) = self.push_referrers(req, reporter).await;
        let bytes_uploaded = blobs
            .iter()
            .filter(|b| {
                matches!(
                    b.action,
                    BlobAction::Uploaded | BlobAction::UploadedChunked { .. }
                )
            })
            .map(|b| b.size)
            .sum();
        Ok(PushOutcome {
            reference: format!("{}/{}@{}", self.registry(), repo, req.digest),
            tag: req.tag.clone(),
            manifest_existed,
            blobs,
            bytes_uploaded,
            referrers,
            warnings,
        })
    }

    /// `HEAD /v2/<repository>/manifests/<reference>` (a tag or digest): the manifest's
    /// digest when the repository has it, `None` when not.
    ///
    /// # Errors
    /// Transport, auth and status errors.
    pub async fn has_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<String>, Error> {
        self.manifest_exists(&Op::new("manifest check", repository, false), reference)
            .await
    }

    /// `PUT /v2/<repository>/manifests/<digest>`: puts a manifest or index by its own digest
    /// (no tag), after the blobs (or child manifests) it references. Returns the digest.
    ///
    /// # Errors
    /// Transport, auth and status errors (e.g. `MANIFEST_BLOB_UNKNOWN`);
    /// [`Error::DigestMismatch`] when the registry acknowledges another digest.
    pub async fn put_manifest_by_digest(
        &self,
        repository: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, Error> {
        let digest = oci::sha256_digest(&bytes);
        self.put_manifest(repository, &digest, media_type, &bytes)
            .await?;
        Ok(digest)
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest when present.
    async fn manifest_exists(&self, op: &Op, reference: &str) -> Result<Option<String>, Error> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", op.repository));
        let accept = oci::MANIFEST_TYPES.join(", ");
        let resp = self
            .send(op, || self.http().head(&url).header("accept", &accept))
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(
                resp.headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(reference)
                    .to_string(),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(self
                .status_error(&op.repository, "manifest HEAD", status, resp)
                .await),
        }
    }

    async fn push_blobs(
        &self,
        repo: &str,
        blobs: &[Blob],
        mount_from: &[String],
        reporter: &dyn PushReporter,
    ) -> Result<Vec<BlobOutcome>, Error> {
        stream::iter(blobs)
            .map(|blob| async move {
                reporter.blob_started(&blob.digest, blob.size);
                let action = self.push_blob(repo, blob, mount_from).await?;
                let outcome = BlobOutcome {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    action,
                };
                reporter.blob_done(&outcome);
                Ok::<_, Error>(outcome)
            })
            .buffered(self.options.concurrency.max(1))
            .try_collect()
            .await
    }

    /// One blob: HEAD, else mount, else upload.
    async fn push_blob(
        &self,
        repo: &str,
        blob: &Blob,
        mount_from: &[String],
    ) -> Result<BlobAction, Error> {
        let op = Op::new("blob upload", repo, true);
        if self.blob_exists(&op, &blob.digest).await? {
            return Ok(BlobAction::Existed);
        }
        let mut location = None;
        for from in mount_from.iter().filter(|f| f.as_str() != repo).take(3) {
            let mut mount_op = op.clone();
            mount_op.scopes.push(format!("repository:{from}:pull"));
            let url = self.url(&format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                blob.digest
            ));
            let resp = self
                .send(&mount_op, || {
                    self.http().post(&url).header(CONTENT_LENGTH, 0)
                })
                .await?;
            match resp.status() {
                StatusCode::CREATED => return Ok(BlobAction::Mounted { from: from.clone() }),
                StatusCode::ACCEPTED => {
                    location = Some(self.location(&resp, "blob mount")?);
                    break;
                }
                _ => {}
            }
        }
        let bytes = read_blob(blob).await?;
        self.upload(&op, &blob.digest, bytes, location).await
    }

    /// `HEAD /v2/<repository>/blobs/<digest>`: true when the repository has the blob.
    ///
    /// # Errors
    /// Transport and auth errors.
    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, Error> {
        self.blob_exists(&Op::new("blob check", repository, false), digest)
            .await
    }

    /// Uploads a blob held in memory (no HEAD first: see [`Client::has_blob`]), in one PUT
    /// up to [`super::ClientOptions::monolithic_limit`], else in chunks. The caller has
    /// checked that `bytes` hash to `digest`; the registry checks it again.
    ///
    /// # Errors
    /// Transport, auth and status errors; [`Error::DigestMismatch`] when the registry
    /// acknowledges another digest.
    pub async fn upload_blob(
        &self,
        repository: &str,
        digest: &str,
        bytes: Bytes,
    ) -> Result<BlobAction, Error> {
        let op = Op::new("blob upload", repository, true);
        self.upload(&op, digest, bytes, None).await
    }

    async fn blob_exists(&self, op: &Op, digest: &str) -> Result<bool, Error> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", op.repository));
        let head = self.send(op, || self.http().head(&url)).await?;
        Ok(head.status() == StatusCode::OK)
    }

    /// Uploads `bytes` at `location` (a new upload when `None`): one PUT, or chunks above the
    /// monolithic limit or when the registry refuses the single PUT.
    async fn upload(
        &self,
        op: &Op,
        digest: &str,
        bytes: Bytes,
        location: Option<String>,
    ) -> Result<BlobAction, Error> {
        if bytes.len() as u64 > self.options.monolithic_limit {
            return self.upload_chunked(op, digest, bytes, location).await;
        }
        let location = match location {
            Some(l) => l,
            None => self.start_upload(op).await?.0,
        };
        let url = with_digest(&location, digest);
        let resp = self
            .send(op, || {
                self.http()
                    .put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => {
                self.check_digest(&resp, &op.repository, digest)?;
                Ok(BlobAction::Uploaded)
            }
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::RANGE_NOT_SATISFIABLE => {
                tracing::debug!(%digest, "monolithic upload refused; falling back to chunks");
                self.upload_chunked(op, digest, bytes, None).await
            }
            status => Err(self
                .status_error(&op.repository, "blob upload", status, resp)
                .await),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/`: the upload's location and the registry's minimum
    /// chunk length (`OCI-Chunk-Min-Length`).
    async fn start_upload(&self, op: &Op) -> Result<(String, u64), Error> {
        let url = self.url(&format!("/v2/{}/blobs/uploads/", op.repository));
        let resp = self
            .send(op, || self.http().post(&url).header(CONTENT_LENGTH, 0))
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            let status = resp.status();
            return Err(self
                .status_error(&op.repository, "upload start", status, resp)
                .await);
        }
        let min = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.location(&resp, "upload start")?, min))
    }

    /// Chunked upload: PATCH with `Content-Range` per chunk, then PUT with the digest.
    async fn upload_chunked(
        &self,
        op: &Op,
        digest: &str,
        bytes: Bytes,
        location: Option<String>,
    ) -> Result<BlobAction, Error> {
        let (mut location, min) = match location {
            Some(l) => (l, 0),
            None => self.start_upload(op).await?,
        };
        let chunk = self.options.chunk_size.max(min).max(1);
        let mut start = 0u64;
        let mut chunks = 0;
        while start < bytes.len() as u64 {
            let end = (start + chunk).min(bytes.len() as u64);
            let part =
                bytes.slice(usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0));
            let url = location.clone();
            let resp = self
                .send(op, || {
                    self.http()
                        .patch(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("content-range", format!("{start}-{}", end - 1))
                        .header(CONTENT_LENGTH, part.len())
                        .body(part.clone())
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                let status = resp.status();
                return Err(self
                    .status_error(&op.repository, "chunk upload", status, resp)
                    .await);
            }
            location = self.location(&resp, "chunk upload")?;
            start = end;
            chunks += 1;
        }
        let url = with_digest(&location, digest);
        let resp = self
            .send(op, || self.http().put(&url).header(CONTENT_LENGTH, 0))
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => {
                self.check_digest(&resp, &op.repository, digest)?;
                Ok(BlobAction::UploadedChunked { chunks })
            }
            status => Err(self
                .status_error(&op.repository, "upload commit", status, resp)
                .await),
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; returns whether the registry processed a
    /// `subject` (`OCI-Subject` header).
    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Result<bool, Error> {
        let op = Op::new("manifest upload", repo, true);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(&op, || {
                self.http()
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED => {
                self.check_digest(&resp, repo, &oci::sha256_digest(bytes))?;
                Ok(resp.headers().contains_key("oci-subject"))
            }
            status => Err(self
                .status_error(repo, "manifest upload", status, resp)
                .await),
        }
    }

    /// Pushes the referrers; every failure becomes a warning.
    async fn push_referrers(
        &self,
        req: &PushRequest,
        reporter: &dyn PushReporter,
    ) -> (Vec<ReferrerOutcome>, Vec<String>) {
        let mut outcomes = Vec::new();
        let mut warnings = Vec::new();
        let mut need_fallback = Vec::new();
        let repo = &req.repository;
        for artifact in &req.referrers {
            let op = Op::new("referrer check", repo, true);
            let result = async {
                if self.manifest_exists(&op, &artifact.digest).await?.is_some() {
                    return Ok::<_, Error>("existed");
                }
                self.push_blobs(repo, &artifact.blobs, &[], reporter)
                    .await?;
                let indexed = self
                    .put_manifest(repo, &artifact.digest, oci::MANIFEST, &artifact.manifest)
                    .await?;
                Ok(if indexed {
                    "referrers-api"
                } else {
                    "tag-schema"
                })
            }
            .await;
            match result {
                Ok(via) => {
                    if via == "tag-schema" {
                        need_fallback.push(artifact);
                    }
                    outcomes.push(ReferrerOutcome {
                        artifact_type: artifact.artifact_type.clone(),
                        digest: artifact.digest.clone(),
                        via: via.to_string(),
                    });
                }
                Err(e) => warnings.push(format!(
                    "failed to push the {} artifact {}: {}",
                    artifact.artifact_type,
                    artifact.digest,
                    crate::ui::one_line(&e)
                )),
            }
        }
        if !need_fallback.is_empty()
            && let Err(e) = self.update_referrers_tag(req, &need_fallback).await
        {
            warnings.push(format!(
                "failed to update the referrers tag sha256-{}: {}",
                oci::digest_hex(&req.digest),
                crate::ui::one_line(&e)
            ));
        }
        (outcomes, warnings)
    }

    /// The tag-schema fallback: tag `sha256-<hex>` holds an index of the referrers.
    async fn update_referrers_tag(
        &self,
        req: &PushRequest,
        artifacts: &[&Artifact],
    ) -> Result<(), Error> {
        let repo = &req.repository;
        let tag = format!("sha256-{}", oci::digest_hex(&req.digest));
        let op = Op::new("referrers index", repo, true);
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let resp = self
            .send(&op, || self.http().get(&url).header("accept", oci::INDEX))
            .await?;
        let mut index = match resp.status() {
            StatusCode::OK => {
                let body = resp.bytes().await.map_err(|e| Error::Connect {
                    registry: self.registry().to_string(),
                    operation: "referrers index".into(),
                    source: e,
                })?;
                serde_json::from_slice::<Index>(&body).map_err(|e| {
                    self.protocol("referrers index", format!("tag {tag} is not an index: {e}"))
                })?
            }
            StatusCode::NOT_FOUND => Index::new(Vec::new()),
            status => {
                return Err(self
                    .status_error(repo, "referrers index", status, resp)
                    .await);
            }
        };
        let before = index.manifests.len();
        for artifact in artifacts {
            if index.manifests.iter().any(|d| d.digest == artifact.digest) {
                continue;
            }
            let mut d = Descriptor::of(oci::MANIFEST, &artifact.manifest);
            d.artifact_type = Some(artifact.artifact_type.clone());
            index.manifests.push(d);
        }
        if index.manifests.len() == before {
            return Ok(());
        }
        index.media_type = Some(oci::INDEX.to_string());
        let bytes = canonical::to_vec_of(&index)
            .map_err(|e| self.protocol("referrers index", e.to_string()))?;
        self.put_manifest(repo, &tag, oci::INDEX, &Bytes::from(bytes))
            .await?;
        Ok(())
    }

    fn location(&self, resp: &reqwest::Response, operation: &str) -> Result<String, Error> {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| self.protocol(operation, "no Location header"))
    }

    fn check_digest(
        &self,
        resp: &reqwest::Response,
        repo: &str,
        digest: &str,
    ) -> Result<(), Error> {
        match resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(actual) if actual != digest => Err(Error::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                digest: digest.to_string(),
                actual: actual.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

async fn read_blob(blob: &Blob) -> Result<Bytes, Error> {
    let bytes = tokio::fs::read(&blob.path).await.map_err(|source| {
        Error::Layout(crate::image::Error::Read {
            path: blob.path.clone(),
            source,
        })
    })?;
    Ok(Bytes::from(bytes))
}

/// Appends `digest=` to an upload location (which may already have a query).
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
