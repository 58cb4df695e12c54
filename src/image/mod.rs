//! OCI images built without a daemon: layers, config, manifest, OCI image layout, SBOMs and
//! the image hardening checks (I-rules).
//!
//! Pure and deterministic: the same inputs give the same bytes on any machine, in any
//! directory, under any umask. Layers are tar streams with sorted entries, fixed mtimes
//! (`SOURCE_DATE_EPOCH`), root-owned files with declared modes and one pinned gzip
//! implementation and level; the diff_id and the blob digest are computed while streaming.
//! JSON documents are written canonically (sorted keys, no whitespace), so no map order can
//! leak into a digest.
//!
//! This module reads the build inputs and writes the layout on the local disk; it never
//! touches the network or a cluster (pulling a base image is the registry adapter's job,
//! orchestrated by `ops::image`).

pub mod build;
pub mod canonical;
pub mod hardening;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod plan;
pub mod sbom;
pub mod verify;

use std::path::PathBuf;

pub use build::{BuildInput, BuiltImage, build};
pub use layout::Layout;

/// Errors from planning, writing and reading images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A build input (a file, directory or lock file) could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A layout file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The image's build spec in `ferry.yaml` is inconsistent.
    #[error("invalid build spec of image `{image}`: {reason}")]
    Spec {
        /// The image's name.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A source file changed while it was being added to a layer.
    #[error("{} changed while it was being read; build again", path.display())]
    SourceChanged {
        /// The file.
        path: PathBuf,
    },
    /// An OCI layout on disk is malformed or incomplete.
    #[error("invalid OCI layout {}: {reason}", path.display())]
    Layout {
        /// The layout directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document of a layout could not be parsed.
    #[error("invalid JSON in {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read { path, source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Write { path, source }
    }
}
