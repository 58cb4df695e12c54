//! Where backups are written: a directory or S3-compatible object storage. Adapters: they move
//! bytes under keys (`backups/<id>.tar.zst.age`, `blobs/sha256/<hex>.age`, …) and nothing else.
//!
//! # Guarantees
//! Every write is create-only: an existing key is never rewritten ([`Put::Exists`]).

pub mod dir;
pub mod s3;

use std::path::PathBuf;

use crate::ui::{Diagnostic, ExitStatus};

/// How a create-only write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was written.
    Created,
    /// The key existed; nothing was written.
    Exists,
}

/// An object in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of a directory store could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A key is not in the store.
    #[error("{key} is not in the store {store}")]
    NotFound {
        /// The key.
        key: String,
        /// The store.
        store: String,
    },
    /// The S3 server could not be reached.
    #[error("failed to {action} {key} on {endpoint}")]
    S3Connect {
        /// What was being done.
        action: &'static str,
        /// The key.
        key: String,
        /// The endpoint.
        endpoint: String,
        /// The transport's reason.
        #[source]
        source: reqwest::Error,
    },
    /// The S3 server refused a request.
    #[error("the S3 server refused to {action} {key}: HTTP {status}{code}")]
    S3Status {
        /// What was being done.
        action: &'static str,
        /// The key.
        key: String,
        /// The HTTP status.
        status: u16,
        /// `: <Code>` from the error document, or empty.
        code: String,
    },
    /// The S3 configuration is incomplete.
    #[error("the S3 store {url} needs {variable}")]
    S3Config {
        /// The store URL.
        url: String,
        /// The missing variable.
        variable: &'static str,
    },
    /// `backup.store` is neither a path nor `s3://bucket/prefix`.
    #[error("`backup.store` `{store}` is not a directory path or s3://bucket[/prefix]")]
    BadUrl {
        /// The text.
        store: String,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::S3Config { .. } | Error::BadUrl { .. } => ExitStatus::BadInput,
            _ => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::S3Config { .. } => vec![format!(
                "set {}, {}, {} and {} (path-style requests)",
                s3::ENDPOINT_VAR,
                s3::REGION_VAR,
                s3::ACCESS_KEY_VAR,
                s3::SECRET_KEY_VAR
            )],
            Error::S3Status { status: 403, .. } => {
                vec!["check the S3 credentials and the bucket policy".to_string()]
            }
            _ => Vec::new(),
        }
    }
}

/// Object Lock retention for new objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// RFC 3339, UTC.
    pub retain_until: String,
}

impl Lock {
    /// The PUT headers that set it.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-amz-object-lock-mode", self.mode.clone()),
            (
                "x-amz-object-lock-retain-until-date",
                self.retain_until.clone(),
            ),
        ]
    }
}

/// A backup store.
#[derive(Debug)]
pub enum Store {
    /// A directory.
    Dir(dir::DirStore),
    /// S3-compatible object storage.
    S3(s3::S3Store),
}

impl Store {
    /// Opens the store named by `backup.store` (`s3://bucket/prefix`, or a directory relative
    /// to `base`), scoped to `scope` (`<app>/<env>`) inside it.
    ///
    /// # Errors
    /// [`Error::BadUrl`], [`Error::S3Config`].
    pub fn open(spec: &str, base: &std::path::Path, scope: &str) -> Result<Store, Error> {
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::BadUrl {
                    store: spec.to_string(),
                });
            }
            let prefix = format!("{}/{scope}", prefix.trim_matches('/'));
            let url = format!("s3://{bucket}/{}", prefix.trim_start_matches('/'));
            return Ok(Store::S3(s3::S3Store::from_env(&url, bucket, &prefix)?));
        }
        if spec.contains("://") || spec.is_empty() {
            return Err(Error::BadUrl {
                store: spec.to_string(),
            });
        }
        Ok(Store::Dir(dir::DirStore::new(base.join(spec).join(scope))))
    }

    /// The store, for messages (a path or `s3://…`).
    pub fn describe(&self) -> String {
        match self {
            Store::Dir(d) => d.root().display().to_string(),
            Store::S3(s) => s.url().to_string(),
        }
    }

    /// Writes `bytes` at `key` unless the key exists.
    ///
    /// # Errors
    /// I/O and server errors.
    pub async fn put_new(&self, key: &str, bytes: &[u8]) -> Result<Put, Error> {
        match self {
            Store::Dir(d) => d.put_new(key, bytes),
            Store::S3(s) => s.put_new(key, bytes).await,
        }
    }

    /// Writes `bytes` at `key` unless the key exists, under Object Lock retention when
    /// `lock` is given (S3 only; callers refuse retention on a directory store first).
    ///
    /// # Errors
    /// I/O and server errors.
    pub async fn put_new_locked(
        &self,
        key: &str,
        bytes: &[u8],
        lock: Option<&Lock>,
    ) -> Result<Put, Error> {
        match (self, lock) {
            (Store::S3(s), Some(lock)) => s.put_with(key, bytes, &lock.headers()).await,
            _ => self.put_new(key, bytes).await,
        }
    }

    /// True when `key` exists.
    ///
    /// # Errors
    /// I/O and server errors.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        match self {
            Store::Dir(d) => Ok(d.exists(key)),
            Store::S3(s) => s.exists(key).await,
        }
    }

    /// Reads `key`.
    ///
    /// # Errors
    /// [`Error::NotFound`], I/O and server errors.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        match self {
            Store::Dir(d) => d.get(key),
            Store::S3(s) => s.get(key).await,
        }
    }

    /// Every key under `prefix`, sorted.
    ///
    /// # Errors
    /// I/O and server errors.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, Error> {
        match self {
            Store::Dir(d) => d.list(prefix),
            Store::S3(s) => s.list(prefix).await,
        }
    }

    /// Deletes `key` (prune only).
    ///
    /// # Errors
    /// I/O and server errors (a locked object's refusal among them).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self {
            Store::Dir(d) => d.delete(key),
            Store::S3(s) => s.delete(key).await,
        }
    }
}
