//! `ferry backup keygen|create|list|verify|prune`: encrypted, isolated, self-verifying
//! backups of an environment (issue 11).
//!
//! `create` reads the environment from its cluster ([`backup::capture`]), pulls the image
//! blobs its workloads run with digest verification, seals the archive
//! ([`backup::format`]) to the recipients of `ferry.yaml`, and writes everything create-only
//! to the store. `list`, `verify` and `prune` read only `ferry.yaml`, the environment file
//! and the store: no cluster. Nothing here prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::apply::ClusterOptions;
use crate::backup::format::{self, BlobRef, ClusterIdentity, Contents, ImageRecord, Manifest};
use crate::backup::index::{
    self, BlobRecord, Candidate, INDEX_FORMAT, Index, IndexBlob, Keep, Level, StoredFile,
    VerifiedRecord,
};
use crate::backup::keys::{self, Identities, NewKey, Recipients};
use crate::backup::store::{self, Lock, Put, Store};
use crate::backup::{Reporter, capture};
use crate::cluster::ConnectError;
use crate::image::Layout;
use crate::image::oci::{self, Platform};
use crate::project::{self, BackupPolicy, Project};
use crate::registry::{self, Client, ClientOptions, Reference};
use crate::release::record::LABEL_RECORD;
use crate::ui::{Diagnostic, ExitStatus};

/// The default store, relative to the project: `.ferry/backups/<app>/<env>`.
pub const DEFAULT_STORE: &str = ".ferry/backups";
/// The environment variable naming the identity file (like `--identity`).
pub const IDENTITY_VAR: &str = "FERRY_AGE_IDENTITY";
/// The platform pulled when an image is an index.
const PLATFORM: &str = "linux/amd64";

/// Errors of the backup commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ferry.yaml` or the environment file is missing or invalid.
    #[error(transparent)]
    Project(Box<project::Error>),
    /// A key in `ferry.yaml` or the identity file is unusable.
    #[error(transparent)]
    Keys(#[from] keys::Error),
    /// The identity file could not be read.
    #[error("failed to read the identity file {path}")]
    ReadIdentity {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// `keygen` never writes over an existing file.
    #[error("{path} exists: ferry backup keygen never writes over a file")]
    KeyExists {
        /// The file.
        path: PathBuf,
    },
    /// The new identity file could not be written.
    #[error("failed to write the identity file {path}")]
    WriteKey {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Reading the environment failed: no backup was written.
    #[error("failed to read environment {environment} from its cluster; no backup was written")]
    Capture {
        /// The environment.
        environment: String,
        /// The reason.
        #[source]
        source: Box<capture::Error>,
    },
    /// An image could not be pulled: no backup was written.
    #[error("failed to back up image {image}; no backup was written")]
    Image {
        /// The image reference.
        image: String,
        /// The registry's reason.
        #[source]
        source: Box<registry::Error>,
    },
    /// An image reference in a workload is not parseable.
    #[error("image reference `{image}` in the environment cannot be parsed")]
    BadImage {
        /// The reference.
        image: String,
    },
    /// An image blob pulled into the scratch layout could not be read back.
    #[error("failed to read pulled blob {digest}")]
    Layout {
        /// The blob.
        digest: String,
        /// The reason.
        #[source]
        source: crate::image::Error,
    },
    /// Sealing the archive failed.
    #[error("failed to seal the backup")]
    Seal(#[source] Box<format::Error>),
    /// The identity does not match the backup's recipients.
    #[error("the identity cannot decrypt backup {id}")]
    WrongIdentity {
        /// The backup.
        id: String,
        /// age's verdict.
        #[source]
        source: Box<format::Error>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A backup id that is not in the store.
    #[error("no backup {id} in {store}")]
    NoSuchBackup {
        /// The id asked for.
        id: String,
        /// The store.
        store: String,
    },
    /// The store has no backup to verify.
    #[error("no backups of {environment} in {store}")]
    NoBackups {
        /// The environment.
        environment: String,
        /// The store.
        store: String,
    },
    /// `backup.retention` with a store that cannot hold it.
    #[error("`backup.retention` needs an S3 store with Object Lock; {store} is a directory")]
    RetentionOnDirectory {
        /// The store.
        store: String,
    },
    /// `backup.retention` is not a duration.
    #[error("`backup.retention` `{value}` is not a duration (e.g. 30d, 12h)")]
    BadRetention {
        /// The text.
        value: String,
    },
    /// The bucket has no Object Lock, so retention cannot be set.
    #[error(
        "`backup.retention` is set but the bucket of {store} does not have Object Lock enabled{detail}"
    )]
    NoObjectLock {
        /// The store.
        store: String,
        /// `` or ` (the server does not implement it)`.
        detail: String,
    },
    /// A stored index could not be parsed.
    #[error("the index {key} is not a ferry backup index")]
    BadIndex {
        /// Its key.
        key: String,
        /// serde's reason.
        #[source]
        source: serde_json::Error,
    },
}

impl From<project::Error> for Error {
    fn from(error: project::Error) -> Self {
        Error::Project(Box::new(error))
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Project(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::Store(e) => e.exit_status(),
            Error::Keys(_)
            | Error::ReadIdentity { .. }
            | Error::KeyExists { .. }
            | Error::WrongIdentity { .. }
            | Error::NoSuchBackup { .. }
            | Error::RetentionOnDirectory { .. }
            | Error::BadRetention { .. }
            | Error::NoObjectLock { .. }
            | Error::BadImage { .. } => ExitStatus::BadInput,
            Error::WriteKey { .. }
            | Error::Capture { .. }
            | Error::Image { .. }
            | Error::Layout { .. }
            | Error::Seal(_)
            | Error::NoBackups { .. }
            | Error::BadIndex { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Project(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Store(e) => e.hints(),
            Error::Image { source, .. } => source.hints(),
            Error::Keys(keys::Error::NoRecipients) => vec![
                "run `ferry backup keygen --output-file KEY` and add the printed age1… recipient to `backup.recipients`".to_string(),
            ],
            Error::WrongIdentity { .. } => vec![format!(
                "pass the identity of one of the recipients in `backup.recipients` with --identity FILE or {IDENTITY_VAR}"
            )],
            Error::KeyExists { .. } => vec!["choose another --output-file".to_string()],
            Error::NoObjectLock { .. } | Error::RetentionOnDirectory { .. } => vec![
                "run `ferry backup probe` to see what the store enforces; remove `backup.retention` to write without a lock".to_string(),
            ],
            _ => Vec::new(),
        }
    }
}

/// Which environment's backups, from the project's files (no render, no secrets).
#[derive(Debug, Clone)]
pub struct BackupTarget {
    /// `--project DIR`, or `None` to search upward from `cwd`.
    pub project: Option<PathBuf>,
    /// Where the search starts.
    pub cwd: PathBuf,
    /// The environment.
    pub environment: String,
}

/// The resolved environment and its backup policy.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) app: String,
    pub(crate) environment: String,
    pub(crate) namespace: String,
    pub(crate) context: String,
    pub(crate) policy: BackupPolicy,
    pub(crate) store: Store,
}

/// The environment of `target`, its backup policy and its store.
pub(crate) fn resolve(target: &BackupTarget) -> Result<Resolved, Error> {
    let root = match &target.project {
        Some(dir) => dir.clone(),
        None => Project::find_root(&target.cwd)?,
    };
    let project = Project::load_file(&root)?;
    let env = project.resolve(&target.environment, &[])?;
    let policy = project.file.backup.clone();
    let spec = policy
        .store
        .clone()
        .unwrap_or_else(|| DEFAULT_STORE.to_string());
    let store = Store::open(&spec, &root, &format!("{}/{}", env.app, env.name))?;
    Ok(Resolved {
        app: env.app,
        environment: env.name,
        namespace: env.namespace,
        context: env.context,
        policy,
        store,
    })
}

/// Reads an identity file.
///
/// # Errors
/// [`Error::ReadIdentity`], [`Error::Keys`].
pub fn read_identity(path: &Path) -> Result<Identities, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadIdentity {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Identities::parse(&text, &path.display().to_string())?)
}

// ---------------------------------------------------------------------------------------
// keygen

/// Options of `ferry backup keygen`.
#[derive(Debug, Clone)]
pub struct KeygenOptions {
    /// Where to write the identity (mode 0600, never over a file); `None` returns it.
    pub output: Option<PathBuf>,
}

/// A new key.
#[derive(Debug, Serialize)]
pub struct KeygenOutcome {
    /// The public recipient, for `backup.recipients`.
    pub recipient: String,
    /// The file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The key, when no file was asked for (the caller writes it to stdout).
    #[serde(skip)]
    pub key: Option<NewKey>,
}

/// Generates an age identity.
///
/// # Errors
/// [`Error::KeyExists`], [`Error::WriteKey`].
pub fn keygen(opts: &KeygenOptions) -> Result<KeygenOutcome, Error> {
    let key = keys::generate();
    let Some(path) = &opts.output else {
        return Ok(KeygenOutcome {
            recipient: key.recipient.clone(),
            path: None,
            key: Some(key),
        });
    };
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyExists { path: path.clone() }
            } else {
                Error::WriteKey {
                    path: path.clone(),
                    source,
                }
            }
        })?;
    file.write_all(key.file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::WriteKey {
            path: path.clone(),
            source,
        })?;
    Ok(KeygenOutcome {
        recipient: key.recipient,
        path: Some(path.clone()),
        key: None,
    })
}

// ---------------------------------------------------------------------------------------
// create

/// Options of `ferry backup create`.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The environment.
    pub target: BackupTarget,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Pull images over plain HTTP (loopback registries only).
    pub insecure: bool,
}

/// One image backed up.
#[derive(Debug, Clone, Serialize)]
pub struct ImageOutcome {
    /// The reference as the workloads run it.
    pub reference: String,
    /// Its manifest digest.
    pub digest: String,
    /// Blobs written now.
    pub blobs_uploaded: usize,
    /// Blobs already in the store.
    pub blobs_reused: usize,
}

/// What `backup create` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct CreateOutcome {
    /// The backup's id.
    pub id: String,
    /// The store.
    pub store: String,
    /// The environment.
    pub environment: String,
    /// Objects in the archive (namespaced and cluster-scoped).
    pub objects: usize,
    /// Ferry's release records among them (Secrets).
    pub release_records: usize,
    /// Objects left out because the cluster regenerates them, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// The images.
    pub images: Vec<ImageOutcome>,
    /// Image blobs written now.
    pub blobs_uploaded: usize,
    /// Image blobs already stored (shared with earlier backups).
    pub blobs_reused: usize,
    /// Bytes written to the store (archive, index and new blobs).
    pub bytes_written: u64,
    /// The archive's size.
    pub archive_bytes: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// A backup id: UTC time to the millisecond, then 8 random hex digits (unique, and sorted
/// by time).
fn new_id(now: SystemTime) -> (String, String) {
    let rfc = humantime::format_rfc3339_millis(now).to_string();
    let compact: String = rfc.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    (format!("{compact}-{}", crate::backup::random_hex(4)), rfc)
}

/// Backs up the environment.
///
/// # Errors
/// Project, key, connection, capture, image and store errors; a failure before the index is
/// written leaves no listed backup (only blobs a later backup will reuse).
pub async fn create(opts: &CreateOptions, reporter: &dyn Reporter) -> Result<CreateOutcome, Error> {
    let started = Instant::now();
    let target = resolve(&opts.target)?;
    let recipients = Recipients::parse(&target.policy.recipients)?;
    let lock = resolve_lock(&target).await?;
    let lock = lock.as_ref();
    let cluster = opts.cluster.connect(&target.context).await?;
    let captured = capture::capture(&cluster.client, &target.namespace)
        .await
        .map_err(|source| Error::Capture {
            environment: target.environment.clone(),
            source: Box::new(source),
        })?;
    reporter.objects(captured.objects.len());

    let mut entries = Vec::with_capacity(captured.objects.len());
    let mut release_records = 0;
    for object in &captured.objects {
        let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        if text("/kind") == "Secret"
            && object
                .pointer(&format!(
                    "/metadata/labels/{}",
                    LABEL_RECORD.replace('/', "~1")
                ))
                .is_some()
        {
            release_records += 1;
        }
        let path = format::object_path(text("/apiVersion"), text("/kind"), text("/metadata/name"));
        entries.push(format::json_entry(&path, object).map_err(|e| Error::Seal(Box::new(e)))?);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let mut written = 0u64;
    let mut images = Vec::new();
    let mut records = Vec::new();
    let mut index_blobs: BTreeMap<String, IndexBlob> = BTreeMap::new();
    let scratch = std::env::temp_dir().join(format!(
        "ferry-backup-{}-{}",
        std::process::id(),
        crate::backup::random_hex(4)
    ));
    let result = async {
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        for image in &captured.images {
            let (record, outcome, blobs, bytes) = backup_image(
                image,
                opts.insecure,
                &mut clients,
                &target.store,
                &recipients,
                &scratch,
                lock,
                reporter,
            )
            .await?;
            written += bytes;
            images.push(outcome);
            records.push(record);
            for b in blobs {
                index_blobs.insert(b.digest.clone(), b);
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result?;

    let now = SystemTime::now();
    let (id, created_at) = new_id(now);
    let tool = format!("ferry {}", env!("CARGO_PKG_VERSION"));
    let object_count = entries.len();
    let sealed = format::seal(
        Contents {
            manifest: Manifest {
                format: format::FORMAT.to_string(),
                id: id.clone(),
                tool: tool.clone(),
                created_at: created_at.clone(),
                app: target.app.clone(),
                environment: target.environment.clone(),
                namespace: target.namespace.clone(),
                cluster: ClusterIdentity {
                    server: cluster.server.clone(),
                    context: cluster.context.clone(),
                    uid: captured.cluster_uid.clone(),
                    version: cluster.server_version.clone(),
                },
                entries: Vec::new(),
                images: records,
            },
            entries,
        },
        &recipients,
    )
    .map_err(|e| Error::Seal(Box::new(e)))?;
    let archive = StoredFile {
        key: index::archive_key(&id),
        size: sealed.bytes.len() as u64,
        sha256: format::sha256_hex(&sealed.bytes),
    };
    target
        .store
        .put_new_locked(&archive.key, &sealed.bytes, lock)
        .await?;
    reporter.archive(archive.size);
    written += archive.size;
    let idx = Index {
        format: INDEX_FORMAT.to_string(),
        id: id.clone(),
        created_at,
        tool,
        app: target.app.clone(),
        environment: target.environment.clone(),
        objects: object_count,
        images: images.len(),
        archive: archive.clone(),
        blobs: index_blobs.into_values().collect(),
        recipients: recipients.as_text().to_vec(),
        retain_until: lock.map(|l| l.retain_until.clone()),
    };
    let idx_bytes = pretty(&idx);
    target
        .store
        .put_new_locked(&index::index_key(&id), &idx_bytes, lock)
        .await?;
    written += idx_bytes.len() as u64;
    Ok(CreateOutcome {
        id,
        store: target.store.describe(),
        environment: target.environment,
        objects: object_count,
        release_records,
        skipped: captured.skipped,
        blobs_uploaded: images.iter().map(|i| i.blobs_uploaded).sum(),
        blobs_reused: images.iter().map(|i| i.blobs_reused).sum(),
        images,
        bytes_written: written,
        archive_bytes: archive.size,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The Object Lock retention of new objects, from `backup.retention`, after reading the
/// bucket's lock configuration (never assumed).
async fn resolve_lock(target: &Resolved) -> Result<Option<Lock>, Error> {
    let Some(text) = &target.policy.retention else {
        return Ok(None);
    };
    let duration = humantime::parse_duration(text).map_err(|_| Error::BadRetention {
        value: text.clone(),
    })?;
    let Store::S3(s3) = &target.store else {
        return Err(Error::RetentionOnDirectory {
            store: target.store.describe(),
        });
    };
    let config = s3.lock_config().await?;
    if !config.enabled {
        return Err(Error::NoObjectLock {
            store: target.store.describe(),
            detail: if config.unsupported {
                " (the server does not implement the Object Lock API)".to_string()
            } else {
                String::new()
            },
        });
    }
    let until = SystemTime::now() + duration;
    Ok(Some(Lock {
        mode: "COMPLIANCE".to_string(),
        retain_until: humantime::format_rfc3339_seconds(until).to_string(),
    }))
}

/// True when UTC RFC 3339 time `a` is after `b`, to the second (`YYYY-MM-DDTHH:MM:SS`
/// compares as text; fractions and the zone suffix are ignored).
fn later(a: &str, b: &str) -> bool {
    a.get(..19).unwrap_or(a) > b.get(..19).unwrap_or(b)
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Backs up one image: its manifest, config and layers, each stored once (content-addressed).
#[allow(clippy::too_many_arguments)]
async fn backup_image(
    image: &str,
    insecure: bool,
    clients: &mut BTreeMap<String, Client>,
    store: &Store,
    recipients: &Recipients,
    scratch: &Path,
    lock: Option<&Lock>,
    reporter: &dyn Reporter,
) -> Result<(ImageRecord, ImageOutcome, Vec<IndexBlob>, u64), Error> {
    let image_err = |source| Error::Image {
        image: image.to_string(),
        source: Box::new(source),
    };
    let reference = Reference::parse(image).map_err(|_| Error::BadImage {
        image: image.to_string(),
    })?;
    let host = reference.api_host().to_string();
    if !clients.contains_key(&host) {
        let client = Client::new(
            &host,
            ClientOptions {
                insecure,
                ..ClientOptions::default()
            },
        )
        .map_err(image_err)?;
        clients.insert(host.clone(), client);
    }
    let Some(client) = clients.get(&host) else {
        return Err(Error::BadImage {
            image: image.to_string(),
        });
    };
    let repo = &reference.repository;
    let (bytes, media_type, digest) = client
        .fetch_manifest(repo, reference.reference())
        .await
        .map_err(image_err)?;
    // (digest, media type, size, bytes when already in memory)
    let mut blobs: Vec<(BlobRef, Option<Vec<u8>>)> = Vec::new();
    let mut layout: Option<Layout> = None;
    let manifest_bytes;
    if media_type == oci::INDEX || media_type == oci::DOCKER_MANIFEST_LIST {
        blobs.push((
            BlobRef {
                digest: digest.clone(),
                size: bytes.len() as u64,
                media_type: media_type.clone(),
            },
            Some(bytes.to_vec()),
        ));
        let platform = Platform::parse(PLATFORM).unwrap_or_else(|| unreachable!());
        let dir = scratch.join(digest.replace(':', "-"));
        let l = Layout::create(&dir).map_err(|source| Error::Layout {
            digest: digest.clone(),
            source,
        })?;
        let pulled = client
            .pull(repo, &digest, &platform, &l)
            .await
            .map_err(image_err)?;
        manifest_bytes = l
            .read_blob(&pulled.manifest.digest)
            .map_err(|source| Error::Layout {
                digest: pulled.manifest.digest.clone(),
                source,
            })?;
        blobs.push((
            BlobRef {
                digest: pulled.manifest.digest.clone(),
                size: pulled.manifest.size,
                media_type: pulled.manifest.media_type.clone(),
            },
            Some(manifest_bytes.clone()),
        ));
        layout = Some(l);
    } else {
        manifest_bytes = bytes.to_vec();
        blobs.push((
            BlobRef {
                digest: digest.clone(),
                size: bytes.len() as u64,
                media_type: media_type.clone(),
            },
            Some(bytes.to_vec()),
        ));
    }
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap_or(Value::Null);
    for d in manifest.get("config").into_iter().chain(
        manifest
            .get("layers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    ) {
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        blobs.push((
            BlobRef {
                digest: text("digest"),
                size: d.get("size").and_then(Value::as_u64).unwrap_or(0),
                media_type: text("mediaType"),
            },
            None,
        ));
    }

    // The image manifest (the index's chosen child, or the manifest itself).
    let manifest_digest = oci::sha256_digest(&manifest_bytes);
    let mut outcome = ImageOutcome {
        reference: image.to_string(),
        digest: digest.clone(),
        blobs_uploaded: 0,
        blobs_reused: 0,
    };
    let mut index_blobs = Vec::new();
    let mut written = 0u64;
    for (blob, in_memory) in &blobs {
        if !oci::is_sha256_digest(&blob.digest) {
            return Err(Error::BadImage {
                image: image.to_string(),
            });
        }
        let record_key = index::blob_record_key(&blob.digest);
        if store.exists(&record_key).await? {
            let record: BlobRecord = serde_json::from_slice(&store.get(&record_key).await?)
                .map_err(|source| Error::BadIndex {
                    key: record_key.clone(),
                    source,
                })?;
            if let (Some(lock), Store::S3(s3)) = (lock, store) {
                // A shared blob must stay locked as long as the newest backup using it.
                let current = s3.retention(&record.file.key).await?;
                if current
                    .as_deref()
                    .is_none_or(|c| later(&lock.retain_until, c))
                {
                    s3.set_retention(&record.file.key, &lock.mode, &lock.retain_until)
                        .await?;
                }
            }
            reporter.blob(&blob.digest, record.file.size, false);
            outcome.blobs_reused += 1;
            index_blobs.push(IndexBlob {
                digest: blob.digest.clone(),
                file: record.file,
            });
            continue;
        }
        let plain = match in_memory {
            Some(bytes) => bytes.clone(),
            None => {
                if layout.is_none() {
                    let platform = Platform::parse(PLATFORM).unwrap_or_else(|| unreachable!());
                    let dir = scratch.join(manifest_digest.replace(':', "-"));
                    let l = Layout::create(&dir).map_err(|source| Error::Layout {
                        digest: manifest_digest.clone(),
                        source,
                    })?;
                    client
                        .pull(repo, &manifest_digest, &platform, &l)
                        .await
                        .map_err(image_err)?;
                    layout = Some(l);
                }
                let Some(l) = &layout else { unreachable!() };
                l.read_blob(&blob.digest).map_err(|source| Error::Layout {
                    digest: blob.digest.clone(),
                    source,
                })?
            }
        };
        if oci::sha256_digest(&plain) != blob.digest {
            return Err(Error::Image {
                image: image.to_string(),
                source: Box::new(registry::Error::DigestMismatch {
                    registry: host.clone(),
                    repository: repo.clone(),
                    digest: blob.digest.clone(),
                    actual: oci::sha256_digest(&plain),
                }),
            });
        }
        let sealed = format::seal_blob(&plain, recipients).map_err(|e| Error::Seal(Box::new(e)))?;
        let file = StoredFile {
            key: index::blob_key(&blob.digest),
            size: sealed.len() as u64,
            sha256: format::sha256_hex(&sealed),
        };
        let put = store.put_new_locked(&file.key, &sealed, lock).await?;
        let file = match put {
            Put::Created => {
                written += file.size;
                file
            }
            // Another backup stored it first: describe the stored file.
            Put::Exists => {
                let stored = store.get(&file.key).await?;
                StoredFile {
                    key: file.key,
                    size: stored.len() as u64,
                    sha256: format::sha256_hex(&stored),
                }
            }
        };
        let record = pretty(&BlobRecord {
            digest: blob.digest.clone(),
            file: file.clone(),
        });
        if store.put_new_locked(&record_key, &record, lock).await? == Put::Created {
            written += record.len() as u64;
        }
        reporter.blob(&blob.digest, file.size, put == Put::Created);
        if put == Put::Created {
            outcome.blobs_uploaded += 1;
        } else {
            outcome.blobs_reused += 1;
        }
        index_blobs.push(IndexBlob {
            digest: blob.digest.clone(),
            file,
        });
    }
    let record = ImageRecord {
        reference: image.to_string(),
        repository: format!("{}/{}", reference.registry, reference.repository),
        blobs: blobs.into_iter().map(|(b, _)| b).collect(),
    };
    Ok((record, outcome, index_blobs, written))
}

// ---------------------------------------------------------------------------------------
// list

/// Options of `ferry backup list`.
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// The environment.
    pub target: BackupTarget,
}

/// One backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// Its id.
    pub id: String,
    /// When it was taken.
    pub created_at: String,
    /// Bytes of the archive and the blobs it references.
    pub size: u64,
    /// Objects.
    pub objects: usize,
    /// Images.
    pub images: usize,
    /// The most thorough verification that passed, if any.
    pub verified: Option<Level>,
}

/// The backups of an environment.
#[derive(Debug, Serialize)]
pub struct ListOutcome {
    /// The environment.
    pub environment: String,
    /// The store.
    pub store: String,
    /// Oldest first.
    pub backups: Vec<BackupSummary>,
}

/// Every backup's index in the store, oldest first.
pub(crate) async fn read_indexes(store: &Store) -> Result<Vec<Index>, Error> {
    let mut out = Vec::new();
    for listed in store.list("backups/").await? {
        if !listed.key.ends_with(".index.json") {
            continue;
        }
        let bytes = store.get(&listed.key).await?;
        let idx: Index = serde_json::from_slice(&bytes).map_err(|source| Error::BadIndex {
            key: listed.key.clone(),
            source,
        })?;
        out.push(idx);
    }
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

async fn verified_levels(store: &Store) -> Result<BTreeMap<String, Level>, Error> {
    let mut out: BTreeMap<String, Level> = BTreeMap::new();
    for listed in store.list("verified/").await? {
        let Ok(bytes) = store.get(&listed.key).await else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<VerifiedRecord>(&bytes) else {
            continue;
        };
        let entry = out.entry(record.id).or_insert(record.level);
        *entry = (*entry).max(record.level);
    }
    Ok(out)
}

/// Lists the backups in the store.
///
/// # Errors
/// Project and store errors; [`Error::BadIndex`].
pub async fn list(opts: &ListOptions) -> Result<ListOutcome, Error> {
    let target = resolve(&opts.target)?;
    let levels = verified_levels(&target.store).await?;
    let backups = read_indexes(&target.store)
        .await?
        .into_iter()
        .map(|i| BackupSummary {
            size: i.total_size(),
            verified: levels.get(&i.id).copied(),
            id: i.id,
            created_at: i.created_at,
            objects: i.objects,
            images: i.images,
        })
        .collect();
    Ok(ListOutcome {
        environment: target.environment,
        store: target.store.describe(),
        backups,
    })
}

// ---------------------------------------------------------------------------------------
// verify

/// Which backups `verify` checks.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The newest.
    Latest,
    /// One by id.
    Id(String),
    /// Every backup.
    All,
}

/// Options of `ferry backup verify`.
#[derive(Debug)]
pub struct VerifyOptions {
    /// The environment.
    pub target: BackupTarget,
    /// Which backups.
    pub selection: Selection,
    /// The identity: with it every file is decrypted and parsed; without, checksums only.
    pub identity: Option<Identities>,
}

/// The verdict on one backup.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The backup.
    pub id: String,
    /// How thoroughly it was checked.
    pub level: Level,
    /// Files checked.
    pub files: usize,
    /// Entries of the archive checked against the manifest (with an identity).
    pub entries: usize,
    /// What is wrong; empty when it passed.
    pub problems: Vec<format::Problem>,
    /// A passed verification was recorded in the store (false with read-only credentials:
    /// `list` then does not show it as verified, and prune does not count it).
    pub recorded: bool,
}

/// The verdicts.
#[derive(Debug, Serialize)]
pub struct VerifyOutcome {
    /// The environment.
    pub environment: String,
    /// The store.
    pub store: String,
    /// One per backup checked.
    pub backups: Vec<Verified>,
    /// Archives in the store without an index: an interrupted `create`, or a deleted index.
    pub orphans: Vec<String>,
}

impl VerifyOutcome {
    /// True when every backup passed and no archive lacks its index.
    pub fn passed(&self) -> bool {
        self.orphans.is_empty() && self.backups.iter().all(|b| b.problems.is_empty())
    }
}

/// Verifies backups: checksums of every stored file, and with an identity, decryption, the
/// authenticated manifest, every entry and every image blob. A passed verification is
/// recorded in the store (`verified/<id>/<time>.json`, a new key).
///
/// # Errors
/// Project and store errors; [`Error::WrongIdentity`] when the identity decrypts nothing;
/// [`Error::NoBackups`], [`Error::NoSuchBackup`].
pub async fn verify(opts: &VerifyOptions) -> Result<VerifyOutcome, Error> {
    let target = resolve(&opts.target)?;
    let store = &target.store;
    let indexes = read_indexes(store).await?;
    let indexed: BTreeSet<String> = indexes.iter().map(|i| i.archive.key.clone()).collect();
    let orphans: Vec<String> = store
        .list("backups/")
        .await?
        .into_iter()
        .map(|l| l.key)
        .filter(|k| k.ends_with(".tar.zst.age") && !indexed.contains(k))
        .collect();
    let chosen: Vec<Index> = match &opts.selection {
        Selection::All => indexes,
        Selection::Latest => indexes.into_iter().last().into_iter().collect(),
        Selection::Id(id) => {
            let found: Vec<Index> = indexes.into_iter().filter(|i| &i.id == id).collect();
            if found.is_empty() {
                return Err(Error::NoSuchBackup {
                    id: id.clone(),
                    store: store.describe(),
                });
            }
            found
        }
    };
    if chosen.is_empty() {
        return Err(Error::NoBackups {
            environment: target.environment.clone(),
            store: store.describe(),
        });
    }
    let mut out = Vec::new();
    for idx in chosen {
        let mut verdict = verify_one(store, &idx, opts.identity.as_ref()).await?;
        if verdict.problems.is_empty() {
            let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            let record = VerifiedRecord {
                id: idx.id.clone(),
                verified_at: at.clone(),
                level: verdict.level,
                tool: format!("ferry {}", env!("CARGO_PKG_VERSION")),
            };
            let key = format!(
                "{}{}-{}.json",
                index::verified_prefix(&idx.id),
                at.replace(':', ""),
                crate::backup::random_hex(2)
            );
            // Best effort: verifying needs only read access to the store.
            verdict.recorded = store.put_new(&key, &pretty(&record)).await.is_ok();
        }
        out.push(verdict);
    }
    Ok(VerifyOutcome {
        environment: target.environment,
        store: store.describe(),
        backups: out,
        orphans,
    })
}

async fn get_checked(
    store: &Store,
    file: &StoredFile,
    problems: &mut Vec<format::Problem>,
) -> Result<Option<Vec<u8>>, Error> {
    match store.get(&file.key).await {
        Ok(bytes) => {
            if format::sha256_hex(&bytes) != file.sha256 || bytes.len() as u64 != file.size {
                problems.push(format::Problem::Checksum {
                    entry: file.key.clone(),
                });
            }
            Ok(Some(bytes))
        }
        Err(store::Error::NotFound { .. }) => {
            problems.push(format::Problem::Missing {
                entry: file.key.clone(),
            });
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks one backup (see [`verify`]); records nothing.
pub(crate) async fn verify_one(
    store: &Store,
    idx: &Index,
    identity: Option<&Identities>,
) -> Result<Verified, Error> {
    use format::Problem;
    let mut problems = Vec::new();
    let mut files = 1;
    let archive = get_checked(store, &idx.archive, &mut problems).await?;
    let mut blobs = Vec::new();
    for blob in &idx.blobs {
        files += 1;
        blobs.push((blob, get_checked(store, &blob.file, &mut problems).await?));
    }
    let mut entries = 0;
    let level = if identity.is_some() {
        Level::Full
    } else {
        Level::Checksums
    };
    if let (Some(ids), Some(archive)) = (identity, archive) {
        match format::open(&archive, ids, &idx.archive.key) {
            Ok(opened) => {
                entries = opened.entries.len();
                problems.extend(opened.problems.iter().cloned());
                if let Some(manifest) = &opened.manifest {
                    if manifest.id != idx.id {
                        problems.push(Problem::Manifest {
                            entry: format::MANIFEST.to_string(),
                            reason: format!("belongs to backup {}, not {}", manifest.id, idx.id),
                        });
                    }
                    let listed: BTreeSet<&str> = manifest
                        .images
                        .iter()
                        .flat_map(|i| i.blobs.iter().map(|b| b.digest.as_str()))
                        .collect();
                    let indexed: BTreeSet<&str> =
                        idx.blobs.iter().map(|b| b.digest.as_str()).collect();
                    for missing in listed.difference(&indexed) {
                        problems.push(Problem::Missing {
                            entry: index::blob_key(missing),
                        });
                    }
                    for extra in indexed.difference(&listed) {
                        problems.push(Problem::Unexpected {
                            entry: index::blob_key(extra),
                        });
                    }
                }
            }
            Err(format::Error::NoMatchingIdentity { .. }) => {
                return Err(Error::WrongIdentity {
                    id: idx.id.clone(),
                    source: Box::new(format::Error::NoMatchingIdentity {
                        what: idx.archive.key.clone(),
                    }),
                });
            }
            Err(_) => problems.push(Problem::Damaged {
                entry: idx.archive.key.clone(),
            }),
        }
        for (blob, bytes) in blobs {
            let Some(bytes) = bytes else { continue };
            match format::open_blob(&bytes, ids, &blob.file.key) {
                Ok(plain) => {
                    if oci::sha256_digest(&plain) != blob.digest {
                        problems.push(Problem::Changed {
                            entry: blob.file.key.clone(),
                        });
                    }
                }
                Err(format::Error::NoMatchingIdentity { what }) => {
                    return Err(Error::WrongIdentity {
                        id: idx.id.clone(),
                        source: Box::new(format::Error::NoMatchingIdentity { what }),
                    });
                }
                Err(_) => problems.push(Problem::Damaged {
                    entry: blob.file.key.clone(),
                }),
            }
        }
    }
    Ok(Verified {
        id: idx.id.clone(),
        level,
        files,
        entries,
        problems,
        recorded: false,
    })
}

// ---------------------------------------------------------------------------------------
// prune

/// Options of `ferry backup prune`.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The environment.
    pub target: BackupTarget,
    /// Only say what would be deleted.
    pub dry_run: bool,
}

/// A backup kept, and why.
#[derive(Debug, Clone, Serialize)]
pub struct KeptBackup {
    /// Its id.
    pub id: String,
    /// The rules that keep it.
    pub reasons: Vec<Keep>,
}

/// What `prune` kept and deleted.
#[derive(Debug, Serialize)]
pub struct PruneOutcome {
    /// The environment.
    pub environment: String,
    /// The store.
    pub store: String,
    /// `backup.keepDaily`.
    pub keep_daily: u32,
    /// `backup.keepWeekly`.
    pub keep_weekly: u32,
    /// Kept, newest first.
    pub kept: Vec<KeptBackup>,
    /// Deleted (or, with `--dry-run`, to delete).
    pub deleted: Vec<String>,
    /// Image blobs no kept backup references, deleted.
    pub blobs_deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// True with `--dry-run`: nothing was deleted.
    pub dry_run: bool,
}

/// Deletes the backups retention does not keep, then the blobs no kept backup references.
///
/// # Errors
/// Project and store errors (a locked object's refusal among them).
pub async fn prune(opts: &PruneOptions) -> Result<PruneOutcome, Error> {
    let target = resolve(&opts.target)?;
    let store = &target.store;
    let indexes = read_indexes(store).await?;
    let levels = verified_levels(store).await?;
    let candidates: Vec<Candidate> = indexes
        .iter()
        .map(|i| Candidate {
            id: i.id.clone(),
            created: humantime::parse_rfc3339(&i.created_at)
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
            verified: levels.get(&i.id) == Some(&Level::Full),
            locked: i.retain_until.as_deref().is_some_and(|u| {
                later(
                    u,
                    &humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                )
            }),
        })
        .collect();
    let selected = index::select(
        &candidates,
        target.policy.keep_daily,
        target.policy.keep_weekly,
    );
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    let mut freed = 0u64;
    let mut referenced = BTreeSet::new();
    for (id, reasons) in selected {
        let Some(idx) = indexes.iter().find(|i| i.id == id) else {
            continue;
        };
        if !reasons.is_empty() {
            referenced.extend(idx.blobs.iter().map(|b| b.digest.clone()));
            kept.push(KeptBackup { id, reasons });
            continue;
        }
        freed += idx.archive.size;
        if !opts.dry_run {
            // The index first: a backup without one is no longer listed, even if the rest
            // of this deletion fails.
            store.delete(&index::index_key(&id)).await?;
            store.delete(&idx.archive.key).await?;
            for marker in store.list(&index::verified_prefix(&id)).await? {
                store.delete(&marker.key).await?;
            }
        }
        deleted.push(id);
    }
    let mut blobs_deleted = 0;
    for listed in store.list("blobs/sha256/").await? {
        let Some(name) = listed.key.strip_prefix("blobs/sha256/") else {
            continue;
        };
        let hex = name.split('.').next().unwrap_or("");
        if referenced.contains(&format!("sha256:{hex}")) {
            continue;
        }
        if name.ends_with(".age") {
            blobs_deleted += 1;
            freed += listed.size;
        }
        if !opts.dry_run {
            store.delete(&listed.key).await?;
        }
    }
    Ok(PruneOutcome {
        environment: target.environment,
        store: store.describe(),
        keep_daily: target.policy.keep_daily,
        keep_weekly: target.policy.keep_weekly,
        kept,
        deleted,
        blobs_deleted,
        bytes_freed: freed,
        dry_run: opts.dry_run,
    })
}

// ---------------------------------------------------------------------------------------
// probe

/// Options of `ferry backup probe`.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The environment.
    pub target: BackupTarget,
}

/// What the store really enforces, found by trying.
#[derive(Debug, Serialize)]
pub struct ProbeOutcome {
    /// The environment.
    pub environment: String,
    /// The store.
    pub store: String,
    /// The bucket's Object Lock configuration (S3 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock: Option<store::s3::LockConfig>,
    /// The canary written (with COMPLIANCE retention on S3).
    pub canary: String,
    /// A create-only write of the existing canary was refused.
    pub create_only_refused: bool,
    /// An overwrite left the original content readable (a new version, on a versioned bucket).
    pub overwrite_preserved: bool,
    /// Deleting the canary (its version, on a versioned bucket) was refused.
    pub delete_refused: bool,
    /// Deletes and overwrites of locked objects are really refused.
    pub enforced: bool,
    /// What was observed, for people.
    pub notes: Vec<String>,
}

/// The canary's retention: long enough for the probe, short enough to expire soon.
const PROBE_RETENTION_SECS: u64 = 120;

/// Writes a canary with retention, then tries a create-only write, an overwrite and a delete
/// of it, and reports what the store refused. Never assumes from configuration alone.
///
/// # Errors
/// Project and store errors.
pub async fn probe(opts: &ProbeOptions) -> Result<ProbeOutcome, Error> {
    let target = resolve(&opts.target)?;
    let key = format!(
        "probe/{}-{}.txt",
        humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', ""),
        crate::backup::random_hex(4)
    );
    let original = b"ferry backup probe canary\n".to_vec();
    let changed = b"ferry backup probe overwrite\n".to_vec();
    let mut notes = Vec::new();
    match &target.store {
        Store::Dir(_) => {
            target.store.put_new(&key, &original).await?;
            let create_only_refused = target.store.put_new(&key, &changed).await? == Put::Exists;
            // Anyone who can write the directory can delete in it: try, as a user would.
            let delete_refused = target.store.delete(&key).await.is_err();
            notes.push(
                "a directory store has no object lock: ferry never rewrites a file, but anyone with write access to the directory can delete or replace files".to_string(),
            );
            Ok(ProbeOutcome {
                environment: target.environment,
                store: target.store.describe(),
                lock: None,
                canary: key,
                create_only_refused,
                overwrite_preserved: false,
                delete_refused,
                enforced: false,
                notes,
            })
        }
        Store::S3(s3) => {
            let lock = s3.lock_config().await?;
            if lock.unsupported {
                notes.push(
                    "the server does not implement the Object Lock configuration API".to_string(),
                );
            } else if !lock.enabled {
                notes.push("the bucket does not have Object Lock enabled".to_string());
            }
            let until = humantime::format_rfc3339_seconds(
                SystemTime::now() + std::time::Duration::from_secs(PROBE_RETENTION_SECS),
            )
            .to_string();
            let lock_headers = Lock {
                mode: "COMPLIANCE".to_string(),
                retain_until: until,
            }
            .headers();
            let written = s3.put_raw(&key, &original, &lock_headers).await?;
            if !(200..300).contains(&written.status) {
                notes.push(format!(
                    "a write with COMPLIANCE retention was refused (HTTP {})",
                    written.status
                ));
                let written = s3.put_raw(&key, &original, &[]).await?;
                if !(200..300).contains(&written.status) {
                    return Err(Error::Store(store::Error::S3Status {
                        action: "write",
                        key,
                        status: written.status,
                        code: String::new(),
                    }));
                }
            } else {
                notes.push(format!(
                    "a write with COMPLIANCE retention was accepted ({})",
                    if written.version.is_some() {
                        "versioned"
                    } else {
                        "no version id: the bucket is not versioned"
                    }
                ));
            }
            let version = written.version.as_deref();
            let create_only_refused = target.store.put_new(&key, &changed).await? == Put::Exists;
            if !create_only_refused {
                notes.push(
                    "If-None-Match: * was ignored: a create-only write replaced the object"
                        .to_string(),
                );
            }
            s3.put_raw(&key, &changed, &[]).await?;
            let overwrite_preserved =
                s3.get_version(&key, version).await?.as_deref() == Some(original.as_slice());
            let status = s3.delete_version(&key, version).await?;
            let still_there =
                s3.get_version(&key, version).await?.as_deref() == Some(original.as_slice());
            let delete_refused = !(200..300).contains(&status) && still_there;
            notes.push(format!(
                "deleting the canary's {} answered HTTP {status}; the original is {}",
                if version.is_some() {
                    "locked version"
                } else {
                    "object"
                },
                if still_there {
                    "still readable"
                } else {
                    "gone"
                }
            ));
            Ok(ProbeOutcome {
                environment: target.environment,
                store: target.store.describe(),
                lock: Some(lock),
                canary: key,
                create_only_refused,
                overwrite_preserved,
                delete_refused,
                enforced: delete_refused && overwrite_preserved,
                notes,
            })
        }
    }
}
