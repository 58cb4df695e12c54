//! TEMPORARY STUB (replaced by the images branch): pushing a backup's images.

use serde::Serialize;

use crate::backup::format::ImageRecord;
use crate::backup::index::IndexBlob;
use crate::backup::keys::Identities;
use crate::backup::store::Store;
use crate::ui::{Diagnostic, ExitStatus};

/// Where the images go.
#[derive(Debug, Clone, Default)]
pub struct ImageTarget {
    /// `--registry`.
    pub registry: Option<String>,
    /// Plain HTTP to a loopback registry.
    pub insecure: bool,
}

/// One image restored.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredImage {
    /// Reference in the backup.
    pub from: String,
    /// Reference after the restore.
    pub to: String,
    /// The target had it.
    pub already_present: bool,
    /// Blobs pushed.
    pub blobs_pushed: usize,
    /// Blobs present.
    pub blobs_present: usize,
    /// Bytes pushed.
    pub bytes_pushed: u64,
}

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Stub.
    #[error("image {image} is missing")]
    Missing {
        /// The image.
        image: String,
    },
}

impl Diagnostic for ImageError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}

/// The reference after restore.
///
/// # Errors
/// Never in the stub.
pub fn target_reference(
    record: &ImageRecord,
    registry: Option<&str>,
) -> Result<String, ImageError> {
    let digest = record
        .blobs
        .first()
        .map(|b| b.digest.clone())
        .unwrap_or_default();
    let repo = match registry {
        Some(r) => format!(
            "{r}/{}",
            record.repository.split_once('/').map_or("", |x| x.1)
        ),
        None => record.repository.clone(),
    };
    Ok(format!("{repo}@{digest}"))
}

/// Pushes.
///
/// # Errors
/// Never in the stub.
pub async fn restore_images(
    _store: &Store,
    _identities: &Identities,
    images: &[ImageRecord],
    _blobs: &[IndexBlob],
    target: &ImageTarget,
) -> Result<Vec<RestoredImage>, ImageError> {
    images
        .iter()
        .map(|i| {
            Ok(RestoredImage {
                from: i.reference.clone(),
                to: target_reference(i, target.registry.as_deref())?,
                already_present: true,
                blobs_pushed: 0,
                blobs_present: 0,
                bytes_pushed: 0,
            })
        })
        .collect()
}
