//! Pulling an image into a local OCI layout: the manifest (resolved through an index to one
//! platform), the config and the layers, each verified against its digest while it streams
//! to disk. Used for base images and for backups.

use std::io::Write;

use futures::{StreamExt, TryStreamExt, stream};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Error;
use super::client::{Client, Op};
use crate::image::Layout;
use crate::image::oci::{self, Descriptor, Platform};

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PulledImage {
    /// The image manifest (its own media type, OCI or Docker).
    pub manifest: Descriptor,
    /// The config's digest.
    pub config: String,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Bytes downloaded (blobs already in the layout are not fetched again).
    pub bytes_downloaded: u64,
}

impl Client {
    /// Pulls `repository` at `reference` (tag or digest) for `platform` into `layout`.
    ///
    /// # Errors
    /// Transport, auth and status errors; [`Error::DigestMismatch`] when any content does not
    /// match its digest; [`Error::NoPlatform`].
    pub async fn pull(
        &self,
        repository: &str,
        reference: &str,
        platform: &Platform,
        layout: &Layout,
    ) -> Result<PulledImage, Error> {
        let (mut bytes, mut media_type, mut digest) =
            self.fetch_manifest(repository, reference).await?;
        if media_type == oci::INDEX || media_type == oci::DOCKER_MANIFEST_LIST {
            let index: Value = serde_json::from_slice(&bytes)
                .map_err(|e| self.protocol("manifest pull", format!("index is not JSON: {e}")))?;
            let chosen = index
                .get("manifests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|m| {
                    let p = m.get("platform");
                    let field = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
                    field("os") == Some(platform.os.as_str())
                        && field("architecture") == Some(platform.architecture.as_str())
                        && (platform.variant.is_none()
                            || field("variant") == platform.variant.as_deref())
                })
                .and_then(|m| m.get("digest").and_then(Value::as_str))
                .ok_or_else(|| Error::NoPlatform {
                    reference: format!("{}/{repository}@{reference}", self.registry()),
                    platform: platform.to_string(),
                })?
                .to_string();
            (bytes, media_type, digest) = self.fetch_manifest(repository, &chosen).await?;
        }
        layout
            .write_blob(&media_type, &bytes)
            .map_err(Error::Layout)?;
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.protocol("manifest pull", format!("manifest is not JSON: {e}")))?;
        let config: Descriptor =
            serde_json::from_value(manifest.get("config").cloned().unwrap_or(Value::Null))
                .map_err(|e| {
                    self.protocol("manifest pull", format!("bad config descriptor: {e}"))
                })?;
        let layers: Vec<Descriptor> = serde_json::from_value(
            manifest
                .get("layers")
                .cloned()
                .unwrap_or(Value::Array(Vec::new())),
        )
        .map_err(|e| self.protocol("manifest pull", format!("bad layer descriptors: {e}")))?;
        let wanted: Vec<&Descriptor> = std::iter::once(&config).chain(&layers).collect();
        let sizes: Vec<u64> = stream::iter(wanted)
            .map(|d| self.fetch_blob(repository, d, layout))
            .buffered(self.options.concurrency.max(1))
            .try_collect()
            .await?;
        Ok(PulledImage {
            manifest: Descriptor {
                media_type,
                digest,
                size: bytes.len() as u64,
                artifact_type: None,
                platform: Some(platform.clone()),
                annotations: Default::default(),
            },
            config: config.digest,
            layers,
            bytes_downloaded: sizes.iter().sum(),
        })
    }

    /// Gets a manifest; its digest is computed locally and, when `reference` is a digest,
    /// checked against it.
    ///
    /// # Errors
    /// Transport, auth and status errors; [`Error::DigestMismatch`].
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(bytes::Bytes, String, String), Error> {
        let op = Op::new("manifest pull", repository, false);
        let url = self.url(&format!("/v2/{repository}/manifests/{reference}"));
        let accept = oci::MANIFEST_TYPES.join(", ");
        let resp = self
            .send(&op, || self.http().get(&url).header("accept", &accept))
            .await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            return Err(self
                .status_error(repository, "manifest pull", status, resp)
                .await);
        }
        let header_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = resp.bytes().await.map_err(|source| Error::Connect {
            registry: self.registry().to_string(),
            operation: "manifest pull".into(),
            source,
        })?;
        let digest = oci::sha256_digest(&bytes);
        if oci::is_sha256_digest(reference) && digest != reference {
            return Err(Error::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                digest: reference.to_string(),
                actual: digest,
            });
        }
        let media_type = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or(header_type)
            .unwrap_or_else(|| oci::MANIFEST.to_string());
        Ok((bytes, media_type, digest))
    }

    /// Downloads a blob into `layout` unless present, hashing as it streams; a mismatch
    /// leaves nothing behind. Returns the bytes downloaded.
    async fn fetch_blob(
        &self,
        repository: &str,
        d: &Descriptor,
        layout: &Layout,
    ) -> Result<u64, Error> {
        if layout.has_blob(&d.digest) {
            layout.verify_blob(&d.digest).map_err(Error::Layout)?;
            return Ok(0);
        }
        let op = Op::new("blob pull", repository, false);
        let url = self.url(&format!("/v2/{repository}/blobs/{}", d.digest));
        let mut resp = self.send(&op, || self.http().get(&url)).await?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            return Err(self
                .status_error(repository, "blob pull", status, resp)
                .await);
        }
        let tmp = layout.temp_blob_path();
        let io = |source| {
            Error::Layout(crate::image::Error::Write {
                path: tmp.clone(),
                source,
            })
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result = async {
            while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Connect {
                registry: self.registry().to_string(),
                operation: "blob pull".into(),
                source,
            })? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).map_err(io)?;
            }
            file.flush().map_err(io)?;
            Ok::<_, Error>(())
        }
        .await;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if actual != d.digest {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::DigestMismatch {
                registry: self.registry().to_string(),
                repository: repository.to_string(),
                digest: d.digest.clone(),
                actual,
            });
        }
        layout.commit_blob(&tmp, &d.digest).map_err(Error::Layout)?;
        Ok(size)
    }
}
