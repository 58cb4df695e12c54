//! A backup's images pushed back to a registry, for `ferry restore`: every image the
//! backed-up workloads run goes to the target registry by digest, from the encrypted blobs
//! stored beside the archive, so a recovery does not depend on the original registry
//! surviving.
//!
//! Per image, the target is asked first (a manifest HEAD by digest): an image it already
//! holds costs one request. Otherwise each blob (config and layers) is HEADed, and before
//! anything is uploaded every one the target lacks must be in the backup (listed in its index,
//! its file in the store), or the image fails with [`ImageError::Missing`]. Then the missing blobs are read from the store,
//! decrypted, checked against their digests and uploaded, a few at a time; then the image
//! manifest and, for an index, the index after it, each put by digest. Nothing is tagged:
//! restored objects run images by digest ([`target_reference`]).
//!
//! Composes the backup store and the registry client; prints nothing.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::backup::format::{self, BlobRef, ImageRecord};
use crate::backup::index::IndexBlob;
use crate::backup::keys::Identities;
use crate::backup::store::{self, Store};
use crate::image::oci;
use crate::registry::{self, Client, ClientOptions, Reference};
use crate::ui::{Diagnostic, ExitStatus};

/// Blobs read, decrypted and uploaded at once (each is held in memory meanwhile).
const CONCURRENCY: usize = 4;

/// Where the images go.
#[derive(Debug, Clone, Default)]
pub struct ImageTarget {
    /// `host[:port]` to push every image to, keeping its repository path (`--registry`);
    /// `None` pushes each back to the registry it was backed up from.
    pub registry: Option<String>,
    /// Plain HTTP (allowed for loopback registries only, as for `ferry image push`).
    pub insecure: bool,
}

/// One image restored.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredImage {
    /// The reference in the backed-up pod spec.
    pub from: String,
    /// `host/repository@sha256:…`: the reference the restored objects must run.
    pub to: String,
    /// True when the target already had the manifest (nothing was pushed).
    pub already_present: bool,
    /// Blobs (config and layers) uploaded from the backup.
    pub blobs_pushed: usize,
    /// Blobs the target already had.
    pub blobs_present: usize,
    /// Bytes of the blobs uploaded (manifests not counted).
    pub bytes_pushed: u64,
}

/// Errors restoring images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The backup's record of an image is unusable (no manifest, a malformed digest or
    /// repository): the backup is damaged.
    #[error("the backup's record of image {image} is unusable: {reason}")]
    BadRecord {
        /// The image reference of the record.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// `--registry` is not a registry host.
    #[error("`{registry}` is not a registry host (host[:port], e.g. registry.example.com)")]
    BadRegistry {
        /// The value given.
        registry: String,
    },
    /// A blob or manifest the target lacks is not in the backup store either.
    #[error(
        "image {image} is in neither the backup store nor registry {registry}: {digest} is missing from both"
    )]
    Missing {
        /// The image reference in the backed-up pod spec.
        image: String,
        /// The target registry.
        registry: String,
        /// The missing blob or manifest.
        digest: String,
    },
    /// The store failed to give a blob.
    #[error("failed to read blob {digest} of image {image} from the backup store")]
    Store {
        /// The image.
        image: String,
        /// The blob.
        digest: String,
        /// The store's reason.
        #[source]
        source: Box<store::Error>,
    },
    /// A stored blob could not be decrypted.
    #[error("failed to decrypt blob {digest} of image {image}")]
    Decrypt {
        /// The image.
        image: String,
        /// The blob.
        digest: String,
        /// age's reason.
        #[source]
        source: Box<format::Error>,
    },
    /// A decrypted blob does not hash to its digest.
    #[error("blob {digest} of image {image} in the backup store has digest {actual}")]
    Corrupt {
        /// The image.
        image: String,
        /// The digest it should have.
        digest: String,
        /// The digest it has.
        actual: String,
    },
    /// The target registry failed or refused.
    #[error("failed to restore image {image} to registry {registry}")]
    Registry {
        /// The image.
        image: String,
        /// The target registry.
        registry: String,
        /// The registry's reason.
        #[source]
        source: Box<registry::Error>,
    },
}

impl Diagnostic for ImageError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            ImageError::BadRegistry { .. } => ExitStatus::BadInput,
            ImageError::Decrypt { source, .. }
                if matches!(**source, format::Error::NoMatchingIdentity { .. }) =>
            {
                ExitStatus::BadInput
            }
            ImageError::Store { source, .. } => source.exit_status(),
            ImageError::Registry { source, .. } => source.exit_status(),
            ImageError::BadRecord { .. }
            | ImageError::Missing { .. }
            | ImageError::Decrypt { .. }
            | ImageError::Corrupt { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            ImageError::Missing {
                image, registry, ..
            } => vec![format!(
                "push {image} to {registry} first, or restore with --registry naming a registry that holds it"
            )],
            ImageError::Decrypt { source, .. }
                if matches!(**source, format::Error::NoMatchingIdentity { .. }) =>
            {
                vec![format!(
                    "pass the identity of one of the backup's recipients with --identity FILE or {}",
                    crate::ops::backup::IDENTITY_VAR
                )]
            }
            ImageError::Corrupt { .. } | ImageError::Decrypt { .. } => vec![
                "run `ferry backup verify` with the identity to check the backup's files"
                    .to_string(),
            ],
            ImageError::Store { source, .. } => source.hints(),
            ImageError::Registry { source, .. } => source.hints(),
            ImageError::BadRecord { .. } | ImageError::BadRegistry { .. } => Vec::new(),
        }
    }
}

/// The reference an image will have after restore: `--registry` replaces the host (keeping
/// the repository path), always by digest (the manifest digest the backup recorded: for an
/// index the reference's own digest). Pure.
///
/// # Errors
/// [`ImageError::BadRecord`] when the record has no sha256 manifest digest or its repository
/// does not parse; [`ImageError::BadRegistry`] when `registry` is not a host.
pub fn target_reference(
    record: &ImageRecord,
    registry: Option<&str>,
) -> Result<String, ImageError> {
    Ok(format!(
        "{}@{}",
        target_repository(record, registry)?.name(),
        manifest_of(record)?.digest
    ))
}

/// The record's top manifest (an image manifest or an index): its first blob.
fn manifest_of(record: &ImageRecord) -> Result<&BlobRef, ImageError> {
    let top = record.blobs.first().ok_or_else(|| ImageError::BadRecord {
        image: record.reference.clone(),
        reason: "it lists no manifest".to_string(),
    })?;
    if let Some(bad) = record
        .blobs
        .iter()
        .find(|b| !oci::is_sha256_digest(&b.digest))
    {
        return Err(ImageError::BadRecord {
            image: record.reference.clone(),
            reason: format!("`{}` is not a sha256 digest", bad.digest),
        });
    }
    Ok(top)
}

/// The repository the image goes to: the recorded one, on `registry` when given.
fn target_repository(
    record: &ImageRecord,
    registry: Option<&str>,
) -> Result<Reference, ImageError> {
    let source = Reference::parse(&record.repository).map_err(|_| ImageError::BadRecord {
        image: record.reference.clone(),
        reason: format!("its repository `{}` does not parse", record.repository),
    })?;
    let Some(host) = registry else {
        return Ok(source);
    };
    let bad = || ImageError::BadRegistry {
        registry: host.to_string(),
    };
    let host_char = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if host.is_empty() || !host.chars().all(host_char) {
        return Err(bad());
    }
    // A host the reference grammar would read as a path component (no `.`, no `:`, not
    // localhost) would make the pod spec name a Docker Hub image instead.
    match Reference::parse(&format!("{host}/{}", source.repository)) {
        Ok(target) if target.registry == host => Ok(target),
        _ => Err(bad()),
    }
}

fn is_manifest(media_type: &str) -> bool {
    oci::MANIFEST_TYPES.contains(&media_type)
}

/// For every image: HEAD the manifest at the target; when present, nothing to do. Otherwise
/// read its blobs from the store (the index's [`IndexBlob`] gives the store file), decrypt
/// them with `identities`, check each plaintext's sha256 against its digest, push config and
/// layers (HEAD-skip per blob), then the manifest (and an index after its child manifest),
/// by digest.
///
/// # Errors
/// [`ImageError::Missing`] for an image whose blobs are not all in the store and that the
/// target lacks (checked before any of its blobs is uploaded); [`ImageError::Corrupt`],
/// [`ImageError::Decrypt`], [`ImageError::Store`] for unreadable backup files;
/// [`ImageError::Registry`] when the target fails; record and `--registry` errors of
/// [`target_reference`]. Images restored before the error stay restored (pushes by digest
/// are idempotent, so running again is safe).
pub async fn restore_images(
    store: &Store,
    identities: &Identities,
    images: &[ImageRecord],
    blobs: &[IndexBlob],
    target: &ImageTarget,
) -> Result<Vec<RestoredImage>, ImageError> {
    let stored: BTreeMap<&str, &IndexBlob> = blobs.iter().map(|b| (b.digest.as_str(), b)).collect();
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut restored = Vec::with_capacity(images.len());
    for record in images {
        let to = target_reference(record, target.registry.as_deref())?;
        let repository = target_repository(record, target.registry.as_deref())?;
        let job = Job {
            store,
            identities,
            stored: &stored,
            image: &record.reference,
            registry: &repository.registry,
        };
        let client = match clients.entry(repository.api_host().to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let client = Client::new(
                    e.key(),
                    ClientOptions {
                        insecure: target.insecure,
                        ..ClientOptions::default()
                    },
                )
                .map_err(|s| job.registry_error(s))?;
                client.ping().await.map_err(|s| job.registry_error(s))?;
                e.insert(client)
            }
        };
        let outcome = job
            .restore(client, record, &repository.repository, to)
            .await?;
        tracing::debug!(
            image = %outcome.from,
            to = %outcome.to,
            already_present = outcome.already_present,
            blobs_pushed = outcome.blobs_pushed,
            "image restored"
        );
        restored.push(outcome);
    }
    Ok(restored)
}

/// One image's restore: where its blobs are stored and where it goes.
struct Job<'a> {
    store: &'a Store,
    identities: &'a Identities,
    stored: &'a BTreeMap<&'a str, &'a IndexBlob>,
    image: &'a str,
    registry: &'a str,
}

impl Job<'_> {
    async fn restore(
        &self,
        client: &Client,
        record: &ImageRecord,
        repo: &str,
        to: String,
    ) -> Result<RestoredImage, ImageError> {
        let reg = |s| self.registry_error(s);
        let top = manifest_of(record)?;
        let mut outcome = RestoredImage {
            from: record.reference.clone(),
            to,
            already_present: false,
            blobs_pushed: 0,
            blobs_present: 0,
            bytes_pushed: 0,
        };
        if client
            .has_manifest(repo, &top.digest)
            .await
            .map_err(reg)?
            .is_some()
        {
            outcome.already_present = true;
            return Ok(outcome);
        }

        // What the target lacks; every one of them must be in the backup before anything
        // is uploaded.
        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        for (i, blob) in record.blobs.iter().enumerate() {
            let lacking = if i == 0 {
                true
            } else if is_manifest(&blob.media_type) {
                client
                    .has_manifest(repo, &blob.digest)
                    .await
                    .map_err(reg)?
                    .is_none()
            } else {
                !client.has_blob(repo, &blob.digest).await.map_err(reg)?
            };
            if !lacking {
                outcome.blobs_present += usize::from(!is_manifest(&blob.media_type));
                continue;
            }
            self.check_stored(&blob.digest).await?;
            if i == 0 || is_manifest(&blob.media_type) {
                manifests.push(blob);
            } else {
                blobs.push(blob);
            }
        }

        let sizes: Vec<u64> = stream::iter(blobs)
            .map(|blob| async move {
                let bytes = self.read(blob).await?;
                let size = bytes.len() as u64;
                client
                    .upload_blob(repo, &blob.digest, bytes)
                    .await
                    .map_err(|s| self.registry_error(s))?;
                Ok::<_, ImageError>(size)
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        outcome.blobs_pushed = sizes.len();
        outcome.bytes_pushed = sizes.iter().sum();

        // Child manifests before the index that lists them: the reverse of record order.
        for manifest in manifests.into_iter().rev() {
            let bytes = self.read(manifest).await?;
            client
                .put_manifest_by_digest(repo, &manifest.media_type, bytes)
                .await
                .map_err(reg)?;
        }
        Ok(outcome)
    }

    /// Fails with [`ImageError::Missing`] unless the backup's index lists the blob and its
    /// file is in the store.
    async fn check_stored(&self, digest: &str) -> Result<(), ImageError> {
        let Some(indexed) = self.stored.get(digest) else {
            return Err(self.missing(digest));
        };
        match self.store.exists(&indexed.file.key).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.missing(digest)),
            Err(e) => Err(ImageError::Store {
                image: self.image.to_string(),
                digest: digest.to_string(),
                source: Box::new(e),
            }),
        }
    }

    /// A blob from the store, decrypted and checked against its digest.
    async fn read(&self, blob: &BlobRef) -> Result<Bytes, ImageError> {
        let Some(indexed) = self.stored.get(blob.digest.as_str()) else {
            return Err(self.missing(&blob.digest));
        };
        let sealed = match self.store.get(&indexed.file.key).await {
            Ok(bytes) => bytes,
            Err(store::Error::NotFound { .. }) => return Err(self.missing(&blob.digest)),
            Err(e) => {
                return Err(ImageError::Store {
                    image: self.image.to_string(),
                    digest: blob.digest.clone(),
                    source: Box::new(e),
                });
            }
        };
        let plain =
            format::open_blob(&sealed, self.identities, &indexed.file.key).map_err(|source| {
                ImageError::Decrypt {
                    image: self.image.to_string(),
                    digest: blob.digest.clone(),
                    source: Box::new(source),
                }
            })?;
        let actual = oci::sha256_digest(&plain);
        if actual != blob.digest {
            return Err(ImageError::Corrupt {
                image: self.image.to_string(),
                digest: blob.digest.clone(),
                actual,
            });
        }
        Ok(Bytes::from(plain))
    }

    fn missing(&self, digest: &str) -> ImageError {
        ImageError::Missing {
            image: self.image.to_string(),
            registry: self.registry.to_string(),
            digest: digest.to_string(),
        }
    }

    fn registry_error(&self, source: registry::Error) -> ImageError {
        ImageError::Registry {
            image: self.image.to_string(),
            registry: self.registry.to_string(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn blob(c: char, media_type: &str) -> BlobRef {
        BlobRef {
            digest: digest(c),
            size: 1,
            media_type: media_type.to_string(),
        }
    }

    fn record(repository: &str, blobs: Vec<BlobRef>) -> ImageRecord {
        ImageRecord {
            reference: format!("{repository}:v1"),
            repository: repository.to_string(),
            blobs,
        }
    }

    fn image(repository: &str) -> ImageRecord {
        record(
            repository,
            vec![
                blob('a', oci::MANIFEST),
                blob('b', oci::CONFIG),
                blob('c', oci::LAYER_GZIP),
            ],
        )
    }

    #[test]
    fn the_target_is_the_recorded_repository_by_manifest_digest() {
        assert_eq!(
            target_reference(&image("127.0.0.1:5000/shop/web"), None).unwrap(),
            format!("127.0.0.1:5000/shop/web@{}", digest('a'))
        );
        assert_eq!(
            target_reference(&image("docker.io/library/alpine"), None).unwrap(),
            format!("docker.io/library/alpine@{}", digest('a'))
        );
    }

    #[test]
    fn registry_replaces_the_host_and_keeps_the_path() {
        let r = image("registry.example.com/team/shop/web");
        for host in ["10.0.0.5:5000", "localhost", "mirror.example"] {
            assert_eq!(
                target_reference(&r, Some(host)).unwrap(),
                format!("{host}/team/shop/web@{}", digest('a'))
            );
        }
    }

    #[test]
    fn an_index_is_restored_by_its_own_digest() {
        let r = record(
            "r.example/web",
            vec![
                blob('e', oci::INDEX),
                blob('f', oci::MANIFEST),
                blob('b', oci::CONFIG),
                blob('c', oci::LAYER_GZIP),
            ],
        );
        assert_eq!(
            target_reference(&r, Some("127.0.0.1:5000")).unwrap(),
            format!("127.0.0.1:5000/web@{}", digest('e'))
        );
    }

    #[test]
    fn a_registry_that_is_not_a_host_is_refused() {
        let r = image("r.example/web");
        for bad in ["", "mirror", "a.example/path", "Upper Case:1", "x@y.z"] {
            assert!(
                matches!(
                    target_reference(&r, Some(bad)),
                    Err(ImageError::BadRegistry { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        assert!(matches!(
            target_reference(&record("r.example/web", Vec::new()), None),
            Err(ImageError::BadRecord { .. })
        ));
        let mut r = image("r.example/web");
        r.blobs[2].digest = "sha256:../../etc".to_string();
        assert!(matches!(
            target_reference(&r, None),
            Err(ImageError::BadRecord { .. })
        ));
        assert!(matches!(
            target_reference(&image("Not A Repo"), None),
            Err(ImageError::BadRecord { .. })
        ));
    }

    #[test]
    fn a_missing_image_is_a_failure_naming_image_and_digest() {
        let e = ImageError::Missing {
            image: "r.example/web:v1".into(),
            registry: "127.0.0.1:5000".into(),
            digest: digest('c'),
        };
        assert_eq!(e.exit_status(), ExitStatus::Failure);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "image r.example/web:v1 is in neither the backup store nor registry 127.0.0.1:5000"
            ),
            "{text}"
        );
        assert!(text.contains(&digest('c')), "{text}");
    }
}
