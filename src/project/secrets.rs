//! Secrets for `{{secret "name"}}`: looked up at render time from the environment's sources
//! in order, never stored in values, and wrapped in [`Redacted`] so they cannot be printed by
//! accident. Every value handed out is registered with [`crate::redact`], so no output of the
//! process shows it, wherever it was copied to.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Error, SecretSource, YamlError};

/// A value that prints as `***` in `Display` and `Debug`; read it with [`Redacted::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// The secret itself. Call it only where the value must leave Ferry (a rendered Secret).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Looks secrets up in an ordered list of sources and remembers every value it handed out,
/// so output can be redacted.
///
/// # Guarantees
/// A missing secret is an error naming it and the sources tried, never an empty string.
/// `Debug` shows the sources and the names of the secrets used, never a value (nor the cached
/// contents of a secrets file).
pub struct SecretStore {
    root: PathBuf,
    sources: Vec<SecretSource>,
    files: Mutex<BTreeMap<PathBuf, BTreeMap<String, String>>>,
    used: Mutex<BTreeMap<String, Redacted<String>>>,
}

impl SecretStore {
    /// A store reading `sources` in order; relative paths are relative to `root`.
    pub fn new(root: PathBuf, sources: Vec<SecretSource>) -> Self {
        SecretStore {
            root,
            sources,
            files: Mutex::default(),
            used: Mutex::default(),
        }
    }

    /// The value of secret `name` from the first source that has it.
    ///
    /// # Errors
    /// [`Error::SecretMissing`] when no source has it; [`Error::SecretFile`] / [`Error::Read`]
    /// when a source file is unreadable.
    pub fn get(&self, name: &str) -> Result<Redacted<String>, Error> {
        for source in &self.sources {
            if let Some(value) = self.lookup(source, name)? {
                crate::redact::register(&value);
                let value = Redacted::new(value);
                lock(&self.used).insert(name.to_string(), value.clone());
                return Ok(value);
            }
        }
        let tried: Vec<String> = self.sources.iter().map(|s| describe(s, name)).collect();
        Err(Error::SecretMissing {
            name: name.to_string(),
            tried: tried.join(", "),
        })
    }

    /// Every secret value handed out so far, by name.
    pub fn used(&self) -> BTreeMap<String, Redacted<String>> {
        lock(&self.used).clone()
    }

    fn lookup(&self, source: &SecretSource, name: &str) -> Result<Option<String>, Error> {
        match source {
            SecretSource::Env { prefix } => {
                Ok(std::env::var(format!("{prefix}{}", env_var_suffix(name))).ok())
            }
            SecretSource::File { path } => {
                let path = self.root.join(path);
                let mut files = lock(&self.files);
                if !files.contains_key(&path) {
                    files.insert(path.clone(), read_secrets_file(&path)?);
                }
                Ok(files.get(&path).and_then(|f| f.get(name)).cloned())
            }
            SecretSource::Dir { path } => {
                let file = self.root.join(path).join(name);
                if !is_plain_name(name) || !file.is_file() {
                    return Ok(None);
                }
                let text = super::read(&file)?;
                Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_string()))
            }
        }
    }
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<(PathBuf, usize)> = lock(&self.files)
            .iter()
            .map(|(path, secrets)| (path.clone(), secrets.len()))
            .collect();
        let used: Vec<String> = lock(&self.used).keys().cloned().collect();
        f.debug_struct("SecretStore")
            .field("root", &self.root)
            .field("sources", &self.sources)
            .field("files", &FileCache(files))
            .field("used", &used)
            .finish()
    }
}

/// The file cache in `Debug`: each file and how many secrets it holds, values as `***`.
struct FileCache(Vec<(PathBuf, usize)>);

impl fmt::Debug for FileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(path, count)| (path, format!("*** ({count} secrets)"))),
            )
            .finish()
    }
}

/// `db-password` → `DB_PASSWORD`: the environment variable suffix for a secret name.
pub fn env_var_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

fn describe(source: &SecretSource, name: &str) -> String {
    match source {
        SecretSource::Env { prefix } => {
            format!("environment variable {prefix}{}", env_var_suffix(name))
        }
        SecretSource::File { path } => format!("file {}", path.display()),
        SecretSource::Dir { path } => format!("directory {}", path.display()),
    }
}

fn read_secrets_file(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = super::read(path)?;
    serde_saphyr::from_str::<Option<BTreeMap<String, String>>>(&text)
        .map(Option::unwrap_or_default)
        .map_err(|error| Error::SecretFile {
            path: path.to_path_buf(),
            source: YamlError {
                message: super::yaml_message(&error),
            },
        })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_never_prints_its_value() {
        let secret = Redacted::new("hunter2".to_string());
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn file_then_dir_sources_in_order_and_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dev.yaml"), "db-password: from-file\n").unwrap();
        std::fs::create_dir(dir.path().join("mounted")).unwrap();
        std::fs::write(dir.path().join("mounted/api-key"), "from-dir\n").unwrap();
        let store = SecretStore::new(
            dir.path().to_path_buf(),
            vec![
                SecretSource::File {
                    path: "dev.yaml".into(),
                },
                SecretSource::Dir {
                    path: "mounted".into(),
                },
            ],
        );
        assert_eq!(store.get("db-password").unwrap().expose(), "from-file");
        assert_eq!(store.get("api-key").unwrap().expose(), "from-dir");
        let err = store.get("absent").unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret `absent` not found (looked in: file dev.yaml, directory mounted)"
        );
        assert_eq!(store.used().len(), 2);
        let debug = format!("{store:?}");
        assert!(
            !debug.contains("from-file") && !debug.contains("from-dir"),
            "{debug}"
        );
        assert!(debug.contains("db-password"), "{debug}");
    }

    #[test]
    fn debug_never_shows_a_value_nor_the_file_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.yaml"),
            "used: used-value-1\nunused: unused-value-2\n",
        )
        .unwrap();
        let store = SecretStore::new(
            dir.path().to_path_buf(),
            vec![SecretSource::File {
                path: "s.yaml".into(),
            }],
        );
        assert_eq!(store.get("used").unwrap().expose(), "used-value-1");
        let debug = format!("{store:?} {store:#?}");
        assert!(!debug.contains("used-value-1"), "{debug}");
        assert!(!debug.contains("unused-value-2"), "{debug}");
        assert!(debug.contains("*** (2 secrets)"), "{debug}");
    }

    #[test]
    fn values_handed_out_are_scrubbed_from_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), "token: handed-out-7731\n").unwrap();
        let store = SecretStore::new(
            dir.path().to_path_buf(),
            vec![SecretSource::File {
                path: "s.yaml".into(),
            }],
        );
        store.get("token").unwrap();
        assert_eq!(
            crate::redact::scrub("url: https://x/?t=handed-out-7731"),
            "url: https://x/?t=***"
        );
    }

    #[test]
    fn env_source_uses_prefix_and_upper_snake_case() {
        let store = SecretStore::new(
            PathBuf::new(),
            vec![SecretSource::Env {
                prefix: "FERRY_TEST_NO_SUCH_".into(),
            }],
        );
        let err = store.get("db-password").unwrap_err();
        assert!(
            err.to_string().contains("FERRY_TEST_NO_SUCH_DB_PASSWORD"),
            "{err}"
        );
    }
}
