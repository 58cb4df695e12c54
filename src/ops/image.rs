//! `ferry image build` and `ferry image push`: build each image of `ferry.yaml` into
//! `target/ferry/images/<name>` (pulling its base first when it has one), check it, optionally
//! build it a second time from copied inputs to prove it reproducible, record its digest in
//! `target/ferry/images.lock`, and push it with its SBOMs.
//!
//! A build whose hardening checks fail leaves the previous layout and lock untouched. `push`
//! builds first when the inputs changed since the last build (a cheap metadata fingerprint,
//! like cargo's freshness check), so an unchanged re-push never reads a layer.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::image::build::{BaseImage, BuiltLayer};
use crate::image::plan::HostFiles;
use crate::image::verify::{self, Difference};
use crate::image::{self, Layout, canonical, hardening, oci};
use crate::policy::{self, Finding};
use crate::project::{self, ImageSpec, Project, images_lock};
use crate::registry::{self, Client, ClientOptions, PushOutcome, PushReporter, Reference};
use crate::ui::{Diagnostic, ExitStatus};

/// Where built layouts live, relative to the project root.
pub const IMAGES_DIR: &str = "target/ferry/images";
/// Where pulled base images live (one shared layout), relative to the project root.
pub const BASE_CACHE: &str = "target/ferry/cache/oci";
/// The variable giving every timestamp of an image (reproducible-builds.org).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// Which project and images.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// `--project DIR`, or `None` to search upward from `cwd`.
    pub project: Option<PathBuf>,
    /// Where the search starts.
    pub cwd: PathBuf,
    /// One image by name, or every image Ferry builds.
    pub name: Option<String>,
    /// `SOURCE_DATE_EPOCH`: every timestamp in the images.
    pub source_date_epoch: u64,
    /// How to reach registries (base pulls and pushes).
    pub client: ClientOptions,
}

/// `ferry image build`.
#[derive(Debug, Clone)]
pub struct ImageBuildOptions {
    /// The images.
    pub images: ImageOptions,
    /// Build a second time from copies of the inputs and compare.
    pub verify: bool,
}

/// `ferry image push`.
#[derive(Debug, Clone)]
pub struct ImagePushOptions {
    /// The images.
    pub images: ImageOptions,
    /// Push to this registry host instead of the one in each repository.
    pub registry: Option<String>,
}

/// One built (or reused) image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// Its name in `ferry.yaml`.
    pub name: String,
    /// Its repository in `ferry.yaml`.
    pub repository: String,
    /// Its tag.
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The layout directory.
    pub layout: PathBuf,
    /// The config digest.
    pub config: String,
    /// Layers, bottom first.
    pub layers: Vec<BuiltLayer>,
    /// Regular files in the image.
    pub files: usize,
    /// Cargo packages listed in the SBOM.
    pub packages: usize,
    /// SBOM artifact manifests.
    pub sboms: Vec<SbomReport>,
    /// Hardening findings.
    pub findings: Vec<Finding>,
    /// True when error findings stopped the build (layout and lock left as they were).
    pub blocked: bool,
    /// True when the inputs were unchanged and the existing layout was reused (push only).
    pub reused: bool,
    /// The second build's verdict, with `--verify`.
    pub verify: Option<VerifyReport>,
}

/// An SBOM of an image.
#[derive(Debug, Clone, Serialize)]
pub struct SbomReport {
    /// `application/spdx+json` or `application/vnd.cyclonedx+json`.
    pub artifact_type: String,
    /// The artifact manifest's digest.
    pub digest: String,
}

/// The result of `--verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when both builds gave the same manifest digest.
    pub reproducible: bool,
    /// The second build's digest.
    pub second_digest: String,
    /// What differs, when not reproducible.
    pub differences: Vec<Difference>,
}

/// The outcome of `ferry image build`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageBuildOutcome {
    /// Each image.
    pub images: Vec<ImageReport>,
}

impl ImageBuildOutcome {
    /// The exit status: 2 when a build was blocked, 1 when a verification failed.
    pub fn status(&self) -> ExitStatus {
        if self.images.iter().any(|i| i.blocked) {
            ExitStatus::BadInput
        } else if self
            .images
            .iter()
            .any(|i| i.verify.as_ref().is_some_and(|v| !v.reproducible))
        {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }
}

/// One pushed image.
#[derive(Debug, Clone, Serialize)]
pub struct PushedImage {
    /// The build (or reuse) of the image.
    pub build: ImageReport,
    /// The push; `None` when the build was blocked.
    pub push: Option<PushOutcome>,
}

/// The outcome of `ferry image push`.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePushOutcome {
    /// Each image.
    pub images: Vec<PushedImage>,
}

impl ImagePushOutcome {
    /// The exit status: 2 when a build was blocked.
    pub fn status(&self) -> ExitStatus {
        if self.images.iter().any(|i| i.build.blocked) {
            ExitStatus::BadInput
        } else {
            ExitStatus::Success
        }
    }
}

/// Errors of `ferry image`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project is invalid.
    #[error(transparent)]
    Project(#[from] project::Error),
    /// No image of that name.
    #[error("unknown image `{name}`")]
    UnknownImage {
        /// The name asked for.
        name: String,
        /// The images Ferry builds.
        known: Vec<String>,
    },
    /// The image has no build spec.
    #[error("image `{name}` declares no files in ferry.yaml, so ferry does not build it")]
    NotBuilt {
        /// The image.
        name: String,
    },
    /// No image declares files.
    #[error("no image in ferry.yaml declares files to build")]
    NoImages,
    /// Building or reading an image failed.
    #[error("image `{name}` failed")]
    Image {
        /// The image.
        name: String,
        /// Why.
        #[source]
        source: image::Error,
    },
    /// A registry operation failed.
    #[error("pushing or pulling image `{name}` failed")]
    Registry {
        /// The image.
        name: String,
        /// Why (boxed: registry errors are large).
        #[source]
        source: Box<registry::Error>,
    },
    /// The lock file could not be written.
    #[error("failed to write {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Project(e) => e.exit_status(),
            Error::Registry { source, .. } => source.exit_status(),
            Error::Image {
                source: image::Error::Spec { .. },
                ..
            }
            | Error::UnknownImage { .. }
            | Error::NotBuilt { .. }
            | Error::NoImages => ExitStatus::BadInput,
            Error::Image { .. } | Error::Lock { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Project(e) => e.hints(),
            Error::Registry { source, .. } => source.hints(),
            Error::UnknownImage { known, .. } => {
                vec![format!("images ferry builds: {}", known.join(", "))]
            }
            Error::NoImages | Error::NotBuilt { .. } => vec![
                "add `files:` (source, target) and `entrypoint:` to the image in ferry.yaml"
                    .to_string(),
            ],
            Error::Image {
                source: image::Error::SourceChanged { .. },
                ..
            } => vec!["run the build again once the file stopped changing".to_string()],
            _ => Vec::new(),
        }
    }
}

/// Builds the selected images.
///
/// # Errors
/// Project errors, unknown images, build, pull and lock errors.
pub async fn build_images(opts: &ImageBuildOptions) -> Result<ImageBuildOutcome, Error> {
    let (project, names) = select(&opts.images)?;
    let mut images = Vec::new();
    for name in names {
        let spec = &project.file.images[&name];
        let mut report = build_one(&project, &name, spec, &opts.images).await?;
        if opts.verify && !report.blocked {
            report.verify = Some(verify_one(&project, &name, spec, &opts.images, &report).await?);
        }
        images.push(report);
    }
    Ok(ImageBuildOutcome { images })
}

/// Builds (when stale) and pushes the selected images.
///
/// # Errors
/// Project, build and registry errors. SBOM upload failures are warnings in the outcome.
pub async fn push_images(
    opts: &ImagePushOptions,
    reporter: &dyn PushReporter,
) -> Result<ImagePushOutcome, Error> {
    let (project, names) = select(&opts.images)?;
    let mut clients: BTreeMap<String, Client> = BTreeMap::new();
    let mut images = Vec::new();
    for name in &names {
        let spec = &project.file.images[name];
        let build = match fresh(&project, name, spec, &opts.images)? {
            Some(report) => report,
            None => build_one(&project, name, spec, &opts.images).await?,
        };
        if build.blocked {
            images.push(PushedImage { build, push: None });
            continue;
        }
        let registry_err = |source| Error::Registry {
            name: name.clone(),
            source: Box::new(source),
        };
        let mut target = Reference::parse(&spec.repository).map_err(registry_err)?;
        if let Some(host) = &opts.registry {
            target = target.with_registry(host);
        }
        let host = target.api_host().to_string();
        if !clients.contains_key(&host) {
            let client = Client::new(&host, opts.images.client.clone()).map_err(registry_err)?;
            clients.insert(host.clone(), client);
        }
        let Some(client) = clients.get(&host) else {
            continue;
        };
        let layout = Layout::open(&build.layout).map_err(|source| Error::Image {
            name: name.clone(),
            source,
        })?;
        let request =
            push_request(&layout, &build, &target, &project, &names, opts).map_err(|source| {
                Error::Image {
                    name: name.clone(),
                    source,
                }
            })?;
        let outcome = client
            .push(&request, reporter)
            .await
            .map_err(registry_err)?;
        // Where the image now is: ferry.yaml's repository as written, or on `--registry`.
        let pushed = match &opts.registry {
            Some(_) => target.name(),
            None => spec.repository.clone(),
        };
        record_lock(&project.root, name, spec, &build.digest, Some(&pushed))?;
        images.push(PushedImage {
            build,
            push: Some(outcome),
        });
    }
    Ok(ImagePushOutcome { images })
}

/// The hardening findings of every image already built (for `ferry lint`). Images without a
/// layout are skipped; unreadable layouts are reported as findings.
pub fn lint_images(root: &Path, images: &BTreeMap<String, ImageSpec>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, spec) in images.iter().filter(|(_, s)| s.is_built()) {
        let dir = root.join(IMAGES_DIR).join(name);
        if !dir.is_dir() {
            continue;
        }
        let tag = spec.tag.clone().unwrap_or_else(|| "latest".into());
        let facts = Layout::open(&dir).and_then(|l| {
            image::build::facts_from_layout(name, &l, &tag, image::build::declared(spec))
        });
        match facts {
            Ok(facts) => findings.extend(hardening::check(&facts)),
            Err(e) => tracing::warn!(image = %name, error = %e, "cannot read the built layout"),
        }
    }
    findings
}

fn select(opts: &ImageOptions) -> Result<(Project, Vec<String>), Error> {
    let project = match &opts.project {
        Some(dir) => Project::load(dir)?,
        None => Project::discover(&opts.cwd)?,
    };
    let built: Vec<String> = project
        .file
        .images
        .iter()
        .filter(|(_, s)| s.is_built())
        .map(|(n, _)| n.clone())
        .collect();
    let names = match &opts.name {
        Some(name) => match project.file.images.get(name) {
            None => {
                return Err(Error::UnknownImage {
                    name: name.clone(),
                    known: built,
                });
            }
            Some(spec) if !spec.is_built() => return Err(Error::NotBuilt { name: name.clone() }),
            Some(_) => vec![name.clone()],
        },
        None if built.is_empty() => return Err(Error::NoImages),
        None => built,
    };
    Ok((project, names))
}

/// Builds one image into a staging directory, then (unless blocked) swaps it into place,
/// writes the freshness stamp and the lock.
async fn build_one(
    project: &Project,
    name: &str,
    spec: &ImageSpec,
    opts: &ImageOptions,
) -> Result<ImageReport, Error> {
    let images_dir = project.root.join(IMAGES_DIR);
    let final_dir = images_dir.join(name);
    let stage = images_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let base = pull_base(project, name, spec, opts).await?;
    let host = HostFiles::default();
    let fail = |source| Error::Image {
        name: name.to_string(),
        source,
    };
    let _ = std::fs::remove_dir_all(&stage);
    let stamp = fingerprint(project, spec, opts.source_date_epoch, &host).map_err(fail)?;
    let input = image::BuildInput {
        name,
        spec,
        root: &project.root,
        host: &host,
        source_date_epoch: opts.source_date_epoch,
        base: base.as_ref(),
    };
    let built = match image::build(&input, &stage) {
        Ok(built) => built,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(fail(e));
        }
    };
    let blocked = policy::has_errors(&built.findings);
    if blocked {
        let _ = std::fs::remove_dir_all(&stage);
    } else {
        let old = images_dir.join(format!(".{name}.old-{}", std::process::id()));
        if final_dir.exists() {
            std::fs::rename(&final_dir, &old).map_err(|e| {
                fail(image::Error::Write {
                    path: final_dir.clone(),
                    source: e,
                })
            })?;
        }
        std::fs::rename(&stage, &final_dir).map_err(|e| {
            fail(image::Error::Write {
                path: final_dir.clone(),
                source: e,
            })
        })?;
        let _ = std::fs::remove_dir_all(&old);
        let stamp = Stamp {
            fingerprint: stamp,
            config: built.config.digest.clone(),
            layers: built.layers.clone(),
            files: built.files.len(),
            packages: built.packages,
        };
        let stamp_path = stamp_path(&project.root, name);
        let text = serde_json::to_vec_pretty(&stamp).unwrap_or_default();
        std::fs::write(&stamp_path, text).map_err(|e| {
            fail(image::Error::Write {
                path: stamp_path.clone(),
                source: e,
            })
        })?;
        record_lock(&project.root, name, spec, &built.manifest.digest, None)?;
    }
    Ok(ImageReport {
        name: name.to_string(),
        repository: spec.repository.clone(),
        tag: built.tag.clone(),
        digest: built.manifest.digest.clone(),
        layout: final_dir,
        config: built.config.digest.clone(),
        layers: built.layers.clone(),
        files: built.files.len(),
        packages: built.packages,
        sboms: built
            .sboms
            .iter()
            .map(|d| SbomReport {
                artifact_type: d.artifact_type.clone().unwrap_or_default(),
                digest: d.digest.clone(),
            })
            .collect(),
        findings: built.findings,
        blocked,
        reused: false,
        verify: None,
    })
}

/// The report of the existing layout when its stamp matches the inputs, else `None`.
fn fresh(
    project: &Project,
    name: &str,
    spec: &ImageSpec,
    opts: &ImageOptions,
) -> Result<Option<ImageReport>, Error> {
    let fail = |source| Error::Image {
        name: name.to_string(),
        source,
    };
    let dir = project.root.join(IMAGES_DIR).join(name);
    let previous: Option<Stamp> = std::fs::read(stamp_path(&project.root, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(previous) = previous else {
        return Ok(None);
    };
    let Ok(fingerprint) = fingerprint(project, spec, opts.source_date_epoch, &HostFiles::default())
    else {
        return Ok(None);
    };
    if previous.fingerprint != fingerprint {
        return Ok(None);
    }
    let Ok(layout) = Layout::open(&dir) else {
        return Ok(None);
    };
    let tag = spec.tag.clone().unwrap_or_else(|| "latest".into());
    let Ok(manifest) = layout.image(Some(&tag)) else {
        return Ok(None);
    };
    let sboms = layout
        .artifacts()
        .map_err(fail)?
        .into_iter()
        .map(|d| SbomReport {
            artifact_type: d.artifact_type.unwrap_or_default(),
            digest: d.digest,
        })
        .collect();
    Ok(Some(ImageReport {
        name: name.to_string(),
        repository: spec.repository.clone(),
        tag,
        digest: manifest.digest,
        layout: dir,
        config: previous.config,
        layers: previous.layers,
        files: previous.files,
        packages: previous.packages,
        sboms,
        findings: Vec::new(),
        blocked: false,
        reused: true,
        verify: None,
    }))
}

/// Builds again from copies of the inputs (another directory, permissions as a 077 umask
/// leaves them, fresh mtimes) into a temporary layout and compares.
async fn verify_one(
    project: &Project,
    name: &str,
    spec: &ImageSpec,
    opts: &ImageOptions,
    first: &ImageReport,
) -> Result<VerifyReport, Error> {
    let fail = |source| Error::Image {
        name: name.to_string(),
        source,
    };
    let scratch = project
        .root
        .join(IMAGES_DIR)
        .join(format!(".{name}.verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let copy_root = scratch.join("inputs");
    let result = async {
        for file in &spec.files {
            copy_restrictive(
                &project.root.join(&file.source),
                &copy_root.join(&file.source),
            )?;
            if let Some(lock) = &file.cargo_lock {
                copy_restrictive(&project.root.join(lock), &copy_root.join(lock))?;
            }
        }
        let base = pull_base(project, name, spec, opts)
            .await
            .map_err(|e| match e {
                Error::Image { source, .. } => source,
                other => image::Error::Layout {
                    path: scratch.clone(),
                    reason: other.to_string(),
                },
            })?;
        let host = HostFiles::default();
        let input = image::BuildInput {
            name,
            spec,
            root: &copy_root,
            host: &host,
            source_date_epoch: opts.source_date_epoch,
            base: base.as_ref(),
        };
        let second = image::build(&input, &scratch.join("layout"))?;
        let differences = if second.manifest.digest == first.digest {
            Vec::new()
        } else {
            verify::compare(
                &Layout::open(&first.layout)?,
                &Layout::open(&scratch.join("layout"))?,
                &first.tag,
            )?
        };
        Ok::<_, image::Error>(VerifyReport {
            reproducible: second.manifest.digest == first.digest,
            second_digest: second.manifest.digest,
            differences,
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result.map_err(fail)
}

/// Copies a file or tree, giving copies owner-only permissions (keeping the owner's
/// execute bit) and new mtimes; symlinks stay links.
fn copy_restrictive(from: &Path, to: &Path) -> Result<(), image::Error> {
    let meta = std::fs::symlink_metadata(from).map_err(image::Error::read(from))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(image::Error::write(parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(image::Error::read(from))?;
        std::os::unix::fs::symlink(&target, to).map_err(image::Error::write(to))?;
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(image::Error::write(to))?;
        for entry in std::fs::read_dir(from).map_err(image::Error::read(from))? {
            let entry = entry.map_err(image::Error::read(from))?;
            copy_restrictive(&entry.path(), &to.join(entry.file_name()))?;
        }
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
            .map_err(image::Error::write(to))?;
    } else {
        std::fs::copy(from, to).map_err(image::Error::write(to))?;
        let mode = if meta.permissions().mode() & 0o100 != 0 {
            0o700
        } else {
            0o600
        };
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
            .map_err(image::Error::write(to))?;
    }
    Ok(())
}

/// Pulls the base image (by digest) into the shared base cache.
async fn pull_base(
    project: &Project,
    name: &str,
    spec: &ImageSpec,
    opts: &ImageOptions,
) -> Result<Option<BaseImage>, Error> {
    let Some(base) = &spec.base else {
        return Ok(None);
    };
    let registry_err = |source| Error::Registry {
        name: name.to_string(),
        source: Box::new(source),
    };
    let reference = Reference::parse(base).map_err(registry_err)?;
    let platform = oci::Platform::parse(&spec.platform).ok_or_else(|| Error::Image {
        name: name.to_string(),
        source: image::Error::Spec {
            image: name.to_string(),
            reason: format!(
                "platform `{}` is not os/architecture[/variant]",
                spec.platform
            ),
        },
    })?;
    let layout = Layout::create(&project.root.join(BASE_CACHE)).map_err(|source| Error::Image {
        name: name.to_string(),
        source,
    })?;
    let client = Client::new(reference.api_host(), opts.client.clone()).map_err(registry_err)?;
    let pulled = client
        .pull(
            &reference.repository,
            reference.reference(),
            &platform,
            &layout,
        )
        .await
        .map_err(registry_err)?;
    Ok(Some(BaseImage {
        reference: base.clone(),
        layout,
        manifest: pulled.manifest,
    }))
}

fn push_request(
    layout: &Layout,
    build: &ImageReport,
    target: &Reference,
    project: &Project,
    names: &[String],
    opts: &ImagePushOptions,
) -> Result<registry::PushRequest, image::Error> {
    let manifest = layout.read_blob(&build.digest)?;
    let blobs = blobs_of(layout, &manifest)?;
    let mut referrers = Vec::new();
    for artifact in layout.artifacts()? {
        let bytes = layout.read_blob(&artifact.digest)?;
        referrers.push(registry::Artifact {
            blobs: blobs_of(layout, &bytes)?,
            manifest: Bytes::from(bytes),
            digest: artifact.digest,
            artifact_type: artifact.artifact_type.unwrap_or_default(),
        });
    }
    // Other images of the project on the same registry may hold the shared layers (users,
    // CA bundle, tzdata): try mounting from them before uploading.
    let mount_from = names
        .iter()
        .filter(|n| *n != &build.name)
        .filter_map(|n| Reference::parse(&project.file.images[n].repository).ok())
        .map(|r| match &opts.registry {
            Some(host) => r.with_registry(host),
            None => r,
        })
        .filter(|r| r.api_host() == target.api_host())
        .map(|r| r.repository)
        .collect();
    Ok(registry::PushRequest {
        repository: target.repository.clone(),
        tag: Some(build.tag.clone()),
        manifest: Bytes::from(manifest),
        media_type: oci::MANIFEST.to_string(),
        digest: build.digest.clone(),
        blobs,
        mount_from,
        referrers,
    })
}

/// The config and layer blobs of a manifest, as files of the layout.
fn blobs_of(layout: &Layout, manifest: &[u8]) -> Result<Vec<registry::Blob>, image::Error> {
    let json: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|source| image::Error::Json {
            path: layout.root().join("index.json"),
            source,
        })?;
    let config = json.get("config").into_iter();
    let layers = json
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten();
    config
        .chain(layers)
        .map(|d| {
            let digest = d
                .get("digest")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let path = layout.blob_path(&digest);
            let size = std::fs::metadata(&path)
                .map_err(image::Error::read(&path))?
                .len();
            Ok(registry::Blob { digest, size, path })
        })
        .collect()
}

/// What `target/ferry/images/<name>.inputs` records of a build: the fingerprint of its
/// inputs, and what a report of the build needs that the layout does not say.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Stamp {
    fingerprint: String,
    config: String,
    layers: Vec<BuiltLayer>,
    files: usize,
    packages: usize,
}

fn stamp_path(root: &Path, name: &str) -> PathBuf {
    root.join(IMAGES_DIR).join(format!("{name}.inputs"))
}

/// A fingerprint of everything a build reads: the spec, the epoch, ferry's version, and the
/// size, mtime and mode of every source file (and the runtime data files used).
fn fingerprint(
    project: &Project,
    spec: &ImageSpec,
    epoch: u64,
    host: &HostFiles,
) -> Result<String, image::Error> {
    let mut files = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    for file in &spec.files {
        paths.push(project.root.join(&file.source));
        if let Some(lock) = &file.cargo_lock {
            paths.push(project.root.join(lock));
        }
    }
    if spec.ca_bundle {
        paths.push(host.ca_bundle.clone());
    }
    if spec.tzdata {
        paths.push(host.zoneinfo.clone());
    }
    for path in paths {
        stat_tree(&path, &mut files)?;
    }
    let doc = json!({
        "ferry": env!("CARGO_PKG_VERSION"),
        "spec": spec,
        "epoch": epoch,
        "files": files,
    });
    Ok(oci::sha256_digest(&canonical::to_vec(&doc)))
}

fn stat_tree(path: &Path, out: &mut Vec<serde_json::Value>) -> Result<(), image::Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(image::Error::read(path))?;
    out.push(json!([
        path.to_string_lossy(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.mode()
    ]));
    if meta.is_dir() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(image::Error::read(path))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            stat_tree(&child, out)?;
        }
    }
    Ok(())
}

/// Records `name → (repository, where it is, digest)` in `target/ferry/images.lock`, keeping
/// other entries: `pushed` is the `host/repository` a push put it in, `None` for a build
/// (see [`images_lock::record`]), so `render` pins to the registry that holds the image.
fn record_lock(
    root: &Path,
    name: &str,
    spec: &ImageSpec,
    digest: &str,
    pushed: Option<&str>,
) -> Result<(), Error> {
    let path = images_lock::images_lock_path(root);
    let mut lock: images_lock::Lock = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| images_lock::parse(&t, &path).ok())
        .unwrap_or_default();
    images_lock::record(&mut lock, name, &spec.repository, digest, pushed);
    let io = |source| Error::Lock {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(&lock).unwrap_or_default();
    text.push('\n');
    let tmp = path.with_extension("lock.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}
