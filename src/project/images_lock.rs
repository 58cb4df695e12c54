//! `target/ferry/images.lock`: the digests of the images last built or pushed, and where each
//! one is, so `render` and `release` pin every workload to exactly that image on the registry
//! that holds it.
//!
//! An entry keeps two names: `repository`, the one of `ferry.yaml` when it was recorded (a
//! changed `ferry.yaml` invalidates the entry), and `pushed`, the `host/repository` the image
//! was really pushed to (`ferry image push --registry` changes the host). Lock files written
//! before `pushed` existed are read as if it were `repository`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, ImageSpec, YamlError};

/// The lock file's path relative to the project root.
pub const IMAGES_LOCK: &str = "target/ferry/images.lock";

/// The lock: image name → entry.
pub type Lock = BTreeMap<String, LockedImage>;

/// One locked image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The repository of `ferry.yaml` when the entry was recorded.
    pub repository: String,
    /// Where the image is: the `host/repository` it was pushed to, or for a build that was
    /// not pushed, `ferry.yaml`'s repository. `None` in lock files older than this field
    /// (then [`LockedImage::location`] is `repository`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
    /// Its manifest digest, `sha256:…`.
    pub digest: String,
}

impl LockedImage {
    /// The repository that holds the image: `pushed`, else `repository`.
    pub fn location(&self) -> &str {
        self.pushed.as_deref().unwrap_or(&self.repository)
    }

    /// The reference workloads run: `<location>@<digest>`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.location(), self.digest)
    }
}

/// The lock file's path for the project at `root`.
pub fn images_lock_path(root: &Path) -> PathBuf {
    root.join(IMAGES_LOCK)
}

/// Parses the text of a lock file (`path` names it in errors).
///
/// # Errors
/// [`Error::Parse`] when it is not a lock.
pub fn parse(text: &str, path: &Path) -> Result<Lock, Error> {
    serde_json::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: u64::try_from(e.line()).ok(),
        source: YamlError {
            message: e.to_string(),
        },
    })
}

/// Records image `name` of `ferry.yaml` repository `repository` at `digest`: pushed to
/// `pushed` (`host/repository`), or with `None`, built and not pushed. A build of the digest
/// already recorded for the same repository keeps the entry's location (that image is still
/// where it was pushed); any other build points at `repository`.
pub fn record(lock: &mut Lock, name: &str, repository: &str, digest: &str, pushed: Option<&str>) {
    let location = match pushed {
        Some(pushed) => pushed.to_string(),
        None => lock
            .get(name)
            .filter(|old| old.repository == repository && old.digest == digest)
            .map_or_else(|| repository.to_string(), |old| old.location().to_string()),
    };
    lock.insert(
        name.to_string(),
        LockedImage {
            repository: repository.to_string(),
            pushed: Some(location),
            digest: digest.to_string(),
        },
    );
}

/// The references to pin, by image name (`host/repository@sha256:…`, on the registry that
/// holds the image): entries of the lock whose repository still matches `ferry.yaml` (a
/// changed repository makes the old digest meaningless). A missing lock file pins nothing.
///
/// # Errors
/// [`Error::Read`] or [`Error::Parse`] when the lock exists but cannot be read.
pub fn pinned_references(
    root: &Path,
    images: &BTreeMap<String, ImageSpec>,
) -> Result<BTreeMap<String, String>, Error> {
    let path = images_lock_path(root);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let lock = parse(&super::read(&path)?, &path)?;
    Ok(pinned(&lock, images))
}

/// The references of [`pinned_references`], from a parsed lock.
pub fn pinned(lock: &Lock, images: &BTreeMap<String, ImageSpec>) -> BTreeMap<String, String> {
    lock.iter()
        .filter(|(name, locked)| {
            images
                .get(*name)
                .is_some_and(|spec| spec.repository == locked.repository)
        })
        .map(|(name, locked)| (name.clone(), locked.reference()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn images(repository: &str) -> BTreeMap<String, ImageSpec> {
        BTreeMap::from([(
            "web".to_string(),
            ImageSpec {
                repository: repository.into(),
                ..ImageSpec::default()
            },
        )])
    }

    #[test]
    fn an_old_lock_without_pushed_is_read_and_pins_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let path = images_lock_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(
                "{{\n  \"web\": {{\n    \"repository\": \"localhost:5000/demo/web\",\n    \"digest\": \"{}\"\n  }}\n}}\n",
                digest('a')
            ),
        )
        .unwrap();
        let pinned = pinned_references(dir.path(), &images("localhost:5000/demo/web")).unwrap();
        assert_eq!(
            pinned["web"],
            format!("localhost:5000/demo/web@{}", digest('a'))
        );
        let lock = parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(lock["web"].pushed, None);
    }

    #[test]
    fn a_push_to_another_registry_is_recorded_and_pinned_there() {
        let mut lock = Lock::new();
        record(
            &mut lock,
            "web",
            "localhost:5000/demo/web",
            &digest('b'),
            Some("127.0.0.1:5000/demo/web"),
        );
        let text = serde_json::to_string_pretty(&lock).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\n  \"web\": {{\n    \"repository\": \"localhost:5000/demo/web\",\n    \"pushed\": \"127.0.0.1:5000/demo/web\",\n    \"digest\": \"{}\"\n  }}\n}}",
                digest('b')
            )
        );
        let read = parse(&text, Path::new("images.lock")).unwrap();
        assert_eq!(
            pinned(&read, &images("localhost:5000/demo/web"))["web"],
            format!("127.0.0.1:5000/demo/web@{}", digest('b'))
        );
    }

    #[test]
    fn a_changed_repository_in_ferry_yaml_unpins_the_entry() {
        let mut lock = Lock::new();
        record(
            &mut lock,
            "web",
            "localhost:5000/demo/web",
            &digest('c'),
            Some("127.0.0.1:5000/demo/web"),
        );
        assert!(pinned(&lock, &images("localhost:5000/other/web")).is_empty());
    }

    #[test]
    fn a_build_points_at_ferry_yaml_unless_it_rebuilt_the_pushed_digest() {
        let repo = "localhost:5000/demo/web";
        let mut lock = Lock::new();
        record(&mut lock, "web", repo, &digest('d'), None);
        assert_eq!(lock["web"].pushed.as_deref(), Some(repo));
        record(
            &mut lock,
            "web",
            repo,
            &digest('d'),
            Some("127.0.0.1:5000/demo/web"),
        );
        // The same image built again is still on the registry it was pushed to.
        record(&mut lock, "web", repo, &digest('d'), None);
        assert_eq!(lock["web"].location(), "127.0.0.1:5000/demo/web");
        // A new digest is pushed nowhere yet.
        record(&mut lock, "web", repo, &digest('e'), None);
        assert_eq!(lock["web"].reference(), format!("{repo}@{}", digest('e')));
    }
}
