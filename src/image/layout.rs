//! The OCI image layout on disk (image-spec v1.1 `image-layout.md`): `oci-layout`,
//! `index.json` and `blobs/sha256/<hex>`. Tags are `org.opencontainers.image.ref.name`
//! annotations of the index's descriptors.
//!
//! Blobs are written to a temporary name and renamed to their digest once complete, so a
//! crash never leaves a blob whose name lies about its content.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::oci::{self, Descriptor};
use super::{Error, canonical};

/// The content of `oci-layout`.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An image index (`index.json`, or a pushed index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// An index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(oci::INDEX.to_string()),
            manifests,
        }
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Creates (or reuses) a layout at `root`: the directory, `oci-layout` and `blobs/sha256`.
    ///
    /// # Errors
    /// [`Error::Write`] when the directories or `oci-layout` cannot be written.
    pub fn create(root: &Path) -> Result<Layout, Error> {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(Error::write(&blobs))?;
        let marker = root.join("oci-layout");
        std::fs::write(&marker, OCI_LAYOUT).map_err(Error::write(&marker))?;
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing layout.
    ///
    /// # Errors
    /// [`Error::Layout`] when `root` has no `oci-layout` file.
    pub fn open(root: &Path) -> Result<Layout, Error> {
        if !root.join("oci-layout").is_file() {
            return Err(Error::Layout {
                path: root.to_path_buf(),
                reason: "no oci-layout file (not an OCI image layout)".to_string(),
            });
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the blob with `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(oci::digest_hex(digest))
    }

    /// True when the blob is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Writes `bytes` as a blob (unless present) and returns its descriptor.
    ///
    /// # Errors
    /// [`Error::Write`] on I/O failure.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, Error> {
        let descriptor = Descriptor::of(media_type, bytes);
        if !self.has_blob(&descriptor.digest) {
            let path = self.blob_path(&descriptor.digest);
            self.write_blob_with(|file| {
                file.write_all(bytes).map_err(Error::write(&path))?;
                Ok::<_, Error>((descriptor.digest.clone(), ()))
            })?;
        }
        Ok(descriptor)
    }

    /// Streams a blob: `fill` writes into a temporary file and returns the digest of what it
    /// wrote plus any value; the file is then renamed to that digest.
    ///
    /// # Errors
    /// [`Error::Write`] on I/O failure, or the error `fill` returns.
    pub fn write_blob_with<T, E>(
        &self,
        fill: impl FnOnce(&mut std::fs::File) -> Result<(String, T), E>,
    ) -> Result<(String, T), Error>
    where
        Error: From<E>,
    {
        let tmp = self.temp_blob_path();
        let mut file = std::fs::File::create(&tmp).map_err(Error::write(&tmp))?;
        let result = fill(&mut file);
        let (digest, value) = match result {
            Ok(ok) => ok,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        drop(file);
        let path = self.blob_path(&digest);
        std::fs::rename(&tmp, &path).map_err(Error::write(&path))?;
        Ok((digest, value))
    }

    /// A fresh temporary path inside the blob directory, for a blob being written.
    pub fn temp_blob_path(&self) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("blobs/sha256")
            .join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Renames a completed temporary blob to its digest (the caller has verified it).
    ///
    /// # Errors
    /// [`Error::Write`] when the rename fails.
    pub fn commit_blob(&self, tmp: &Path, digest: &str) -> Result<(), Error> {
        let path = self.blob_path(digest);
        std::fs::rename(tmp, &path).map_err(Error::write(&path))
    }

    /// Copies (hard-links when possible) a blob from another layout.
    ///
    /// # Errors
    /// [`Error::Read`] / [`Error::Write`] on I/O failure.
    pub fn import_blob(&self, from: &Layout, digest: &str) -> Result<(), Error> {
        let target = self.blob_path(digest);
        if target.is_file() {
            return Ok(());
        }
        let source = from.blob_path(digest);
        if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).map_err(Error::read(&source))?;
        }
        Ok(())
    }

    /// Reads a blob and checks it against its digest.
    ///
    /// # Errors
    /// [`Error::Read`] when missing, [`Error::Layout`] when its content does not match.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(Error::read(&path))?;
        if oci::sha256_digest(&bytes) != digest {
            return Err(Error::Layout {
                path,
                reason: format!("blob content does not match its digest {digest}"),
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming (not verified; see [`Layout::verify_blob`]).
    ///
    /// # Errors
    /// [`Error::Read`] when missing.
    pub fn open_blob(&self, digest: &str) -> Result<std::fs::File, Error> {
        let path = self.blob_path(digest);
        std::fs::File::open(&path).map_err(Error::read(&path))
    }

    /// Streams a blob through sha256 and checks it against its digest.
    ///
    /// # Errors
    /// [`Error::Read`] when unreadable, [`Error::Layout`] when its content does not match.
    pub fn verify_blob(&self, digest: &str) -> Result<u64, Error> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob(digest)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(Error::read(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        if format!("sha256:{}", hex::encode(hasher.finalize())) != digest {
            return Err(Error::Layout {
                path,
                reason: format!("blob content does not match its digest {digest}"),
            });
        }
        Ok(size)
    }

    /// Reads a JSON blob.
    ///
    /// # Errors
    /// Read and digest errors; [`Error::Json`] when it is not JSON.
    pub fn read_json(&self, digest: &str) -> Result<serde_json::Value, Error> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: self.blob_path(digest),
            source,
        })
    }

    /// Writes `index.json` (canonical JSON).
    ///
    /// # Errors
    /// [`Error::Write`] on I/O failure.
    pub fn write_index(&self, index: &Index) -> Result<(), Error> {
        let path = self.root.join("index.json");
        let bytes = canonical::to_vec_of(index).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, bytes).map_err(Error::write(&path))
    }

    /// Reads `index.json`.
    ///
    /// # Errors
    /// [`Error::Read`] / [`Error::Json`].
    pub fn index(&self) -> Result<Index, Error> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(Error::read(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })
    }

    /// The image manifest tagged `tag` (the only untyped-artifact image when `tag` is `None`).
    ///
    /// # Errors
    /// [`Error::Layout`] when there is no such manifest.
    pub fn image(&self, tag: Option<&str>) -> Result<Descriptor, Error> {
        let index = self.index()?;
        let mut images = index.manifests.into_iter().filter(|d| {
            d.artifact_type.is_none()
                && tag
                    .is_none_or(|t| d.annotations.get(oci::REF_NAME).map(String::as_str) == Some(t))
        });
        let found = images.next();
        match (found, tag, images.next()) {
            (Some(d), Some(_), _) | (Some(d), None, None) => Ok(d),
            _ => Err(Error::Layout {
                path: self.root.join("index.json"),
                reason: match tag {
                    Some(t) => format!("no image tagged `{t}`"),
                    None => "not exactly one image".to_string(),
                },
            }),
        }
    }

    /// The artifact manifests of the index (SBOMs), which refer to an image by `subject`.
    ///
    /// # Errors
    /// Read errors of `index.json`.
    pub fn artifacts(&self) -> Result<Vec<Descriptor>, Error> {
        Ok(self
            .index()?
            .manifests
            .into_iter()
            .filter(|d| d.artifact_type.is_some())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_digest_and_checked_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let d = layout.write_blob(oci::CONFIG, b"{}").unwrap();
        assert_eq!(d.digest, oci::EMPTY_DIGEST);
        assert_eq!(layout.read_blob(&d.digest).unwrap(), b"{}");
        std::fs::write(layout.blob_path(&d.digest), b"{ }").unwrap();
        assert!(matches!(
            layout.read_blob(&d.digest),
            Err(Error::Layout { .. })
        ));
        assert!(matches!(
            layout.verify_blob(&d.digest),
            Err(Error::Layout { .. })
        ));
    }

    #[test]
    fn tags_are_found_through_index_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut image = Descriptor::of(oci::MANIFEST, b"m");
        image.annotations.insert(oci::REF_NAME.into(), "v1".into());
        let mut sbom = Descriptor::of(oci::MANIFEST, b"s");
        sbom.artifact_type = Some(oci::SPDX_JSON.into());
        layout
            .write_index(&Index::new(vec![image.clone(), sbom.clone()]))
            .unwrap();
        assert_eq!(layout.image(Some("v1")).unwrap(), image);
        assert_eq!(layout.image(None).unwrap(), image);
        assert!(layout.image(Some("v2")).is_err());
        assert_eq!(layout.artifacts().unwrap(), vec![sbom]);
        let reopened = Layout::open(dir.path()).unwrap();
        assert_eq!(reopened.index().unwrap().manifests.len(), 2);
    }
}
