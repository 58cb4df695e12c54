//! The directory store: one file per key under a root directory. Files are written to a
//! temporary name, then hard-linked to their key, which fails when the key exists: a file is
//! never rewritten and never seen half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Error, Listed, Put};

/// A directory store.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on the first write).
    pub fn new(root: PathBuf) -> DirStore {
        DirStore { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub(super) fn put_new(&self, key: &str, bytes: &[u8]) -> Result<Put, Error> {
        let path = self.path(key);
        if path.exists() {
            return Ok(Put::Exists);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            crate::backup::random_hex(8)
        ));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            file.write_all(bytes).map_err(io("write", &tmp))?;
            file.sync_all().map_err(io("write", &tmp))?;
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(Put::Created),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::Exists),
                Err(e) => Err(io("write", &path)(e)),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        result
    }

    pub(super) fn exists(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    pub(super) fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        let path = self.path(key);
        std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    key: key.to_string(),
                    store: self.root.display().to_string(),
                }
            } else {
                io("read", &path)(source)
            }
        })
    }

    pub(super) fn list(&self, prefix: &str) -> Result<Vec<Listed>, Error> {
        let mut out = Vec::new();
        let start = self.path(prefix.trim_end_matches('/'));
        if !start.is_dir() {
            return Ok(out);
        }
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
                let entry = entry.map_err(io("read", &dir))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(io("read", &path))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                out.push(Listed {
                    key: rel.to_string_lossy().replace('\\', "/"),
                    size: meta.len(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub(super) fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete", &path)(e)),
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_once_and_never_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::new(dir.path().join("s"));
        assert_eq!(store.put_new("a/b.txt", b"one").unwrap(), Put::Created);
        assert_eq!(store.put_new("a/b.txt", b"two").unwrap(), Put::Exists);
        assert_eq!(store.get("a/b.txt").unwrap(), b"one");
        let listed = store.list("a/").unwrap();
        assert_eq!(
            listed,
            vec![Listed {
                key: "a/b.txt".into(),
                size: 3
            }]
        );
        store.delete("a/b.txt").unwrap();
        assert!(!store.exists("a/b.txt"));
    }
}
