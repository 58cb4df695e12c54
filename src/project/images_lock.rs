//! `target/ferry/images.lock`: the digests of the images last built or pushed, so `render`
//! and `release` pin every workload to exactly that image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, ImageSpec, YamlError};

/// The lock file's path relative to the project root.
pub const IMAGES_LOCK: &str = "target/ferry/images.lock";

/// One locked image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The repository it was pushed to (or would be).
    pub repository: String,
    /// Its manifest digest, `sha256:…`.
    pub digest: String,
}

/// The lock file's path for the project at `root`.
pub fn images_lock_path(root: &Path) -> PathBuf {
    root.join(IMAGES_LOCK)
}

/// The digests to pin, by image name: entries of the lock whose repository still matches
/// `ferry.yaml` (a changed repository makes the old digest meaningless). A missing lock file
/// pins nothing.
///
/// # Errors
/// [`Error::Read`] or [`Error::Parse`] when the lock exists but cannot be read.
pub fn pinned_digests(
    root: &Path,
    images: &BTreeMap<String, ImageSpec>,
) -> Result<BTreeMap<String, String>, Error> {
    let path = images_lock_path(root);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = super::read(&path)?;
    let lock: BTreeMap<String, LockedImage> =
        serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            line: u64::try_from(e.line()).ok(),
            source: YamlError {
                message: e.to_string(),
            },
        })?;
    Ok(lock
        .into_iter()
        .filter(|(name, locked)| {
            images
                .get(name)
                .is_some_and(|spec| spec.repository == locked.repository)
        })
        .map(|(name, locked)| (name, locked.digest))
        .collect())
}
