//! The user's side of Ferry: `ferry.yaml`, `environments/<env>.yaml`, values and secrets.
//!
//! Loads and validates files, merges values (defaults → environment → `--set`) once into a
//! [`ResolvedEnvironment`], and resolves `{{secret}}` lookups. Reads local files and the
//! process environment only; never the network or a cluster.

pub mod images_lock;
mod model;
pub mod secrets;
pub mod values;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

pub use model::{
    BackupPolicy, DEFAULT_SECRET_PREFIX, EnvironmentFile, FileMode, Gates, HttpCheck, ImageFile,
    ImageSpec, ProjectFile, ReleasePolicy, SecretSource,
};
pub use secrets::{Redacted, SecretStore};
pub use values::SetOverride;

use crate::ui::{Diagnostic, ExitStatus};

/// The project file's name.
pub const PROJECT_FILE: &str = "ferry.yaml";
/// The directory of environment files, relative to the project root.
pub const ENVIRONMENTS_DIR: &str = "environments";
/// The directory of templates, relative to the project root.
pub const TEMPLATES_DIR: &str = "templates";

/// Errors from finding, reading and validating a project.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `ferry.yaml` in the directory or any parent.
    #[error("no {PROJECT_FILE} found in {} or any parent directory", start.display())]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// A file could not be read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A YAML file is malformed or does not match its schema.
    #[error("invalid {}{}", path.display(), line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<u64>,
        /// The parser's explanation.
        #[source]
        source: YamlError,
    },
    /// The environment has no file.
    #[error("unknown environment `{name}`")]
    UnknownEnvironment {
        /// The requested name.
        name: String,
        /// The environments that exist.
        known: Vec<String>,
    },
    /// A name (app, environment, namespace) is not a DNS label.
    #[error("invalid {what} `{value}` in {}: must be a DNS label (lowercase letters, digits and `-`, at most 63 characters)", path.display())]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The offending value.
        value: String,
        /// The file it was read from.
        path: PathBuf,
    },
    /// The pipeline names an environment that has no file.
    #[error(
        "pipeline in {PROJECT_FILE} names environment `{name}`, which has no file {ENVIRONMENTS_DIR}/{name}.yaml"
    )]
    PipelineUnknown {
        /// The missing environment.
        name: String,
    },
    /// `values` in a file is not a mapping.
    #[error("`values` in {} must be a mapping", path.display())]
    ValuesNotMapping {
        /// The file.
        path: PathBuf,
    },
    /// A `--set` argument is malformed.
    #[error("invalid --set `{text}`: {reason}")]
    BadSet {
        /// The argument as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--set` path goes through a value that is not a mapping.
    #[error("--set cannot descend into `{path}`: it is not a mapping")]
    SetThroughScalar {
        /// The path up to the non-mapping value.
        path: String,
    },
    /// A secret was asked for and no source has it.
    #[error("secret `{name}` not found (looked in: {tried})")]
    SecretMissing {
        /// The secret's name.
        name: String,
        /// The sources tried, described.
        tried: String,
    },
    /// A secret source file is malformed.
    #[error("invalid secrets file {}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: YamlError,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::NotFound { .. } => {
                vec!["run ferry inside a project, or pass --project DIR".to_string()]
            }
            Error::UnknownEnvironment { known, .. } if known.is_empty() => {
                vec![format!("create {ENVIRONMENTS_DIR}/<name>.yaml")]
            }
            Error::UnknownEnvironment { known, .. } => {
                vec![format!("known environments: {}", known.join(", "))]
            }
            Error::SecretMissing { name, .. } => vec![format!(
                "set {DEFAULT_SECRET_PREFIX}{} or add it to a secrets source of the environment",
                secrets::env_var_suffix(name)
            )],
            _ => Vec::new(),
        }
    }
}

/// A YAML parser's explanation, kept as text so errors stay `Send + Sync + 'static`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// The message, with its location.
    pub message: String,
}

impl YamlError {
    fn from_saphyr(error: &serde_saphyr::Error) -> (Option<u64>, Self) {
        let line = error.location().map(|l| l.line()).filter(|l| *l > 0);
        (
            line,
            YamlError {
                message: yaml_message(error),
            },
        )
    }
}

/// serde-saphyr's explanation of `error`, with its location and without a snippet: the one
/// way Ferry words a YAML error of a user's file.
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    error.without_snippet().render_with_formatter(&Messages)
}

/// serde-saphyr's default wording, except for its resource limits, which it prints as a Rust
/// `Debug` struct (`budget breached: Depth { depth: 65 }`).
struct Messages;

impl serde_saphyr::MessageFormatter for Messages {
    fn format_message<'a>(&self, error: &'a serde_saphyr::Error) -> Cow<'a, str> {
        match error {
            serde_saphyr::Error::Budget { breach, .. } => Cow::Owned(budget_text(breach)),
            other => serde_saphyr::DefaultMessageFormatter.format_message(other),
        }
    }
}

fn budget_text(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let what = match breach {
        B::Depth { depth } => format!("collections nested {depth} deep"),
        B::Nodes { nodes } => format!("{nodes} values with aliases expanded"),
        B::Aliases { aliases } => format!("{aliases} aliases"),
        B::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases of {anchors} anchors")
        }
        B::Anchors { anchors } => format!("{anchors} anchors"),
        B::Documents { documents } => format!("{documents} documents"),
        B::Events { events } => format!("{events} YAML events"),
        B::ScalarBytes { total_scalar_bytes } => format!("{total_scalar_bytes} bytes of text"),
        B::MergeKeys { merge_keys } => format!("{merge_keys} merge keys"),
        B::SequenceUnbalanced => return "a collection closed that was never opened".to_string(),
        _ => return "too large or too complex to read".to_string(),
    };
    format!("too large or too complex to read ({what})")
}

/// Parses `text` (read from `path`) as `T`, with the line of any error.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, Error> {
    serde_saphyr::from_str(text).map_err(|error| {
        let (line, source) = YamlError::from_saphyr(&error);
        Error::Parse {
            path: path.to_path_buf(),
            line,
            source,
        }
    })
}

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A loaded project: its root directory and `ferry.yaml`.
#[derive(Debug, Clone)]
pub struct Project {
    /// The directory holding `ferry.yaml`.
    pub root: PathBuf,
    /// The parsed `ferry.yaml`.
    pub file: ProjectFile,
}

impl Project {
    /// Finds `ferry.yaml` in `start` or the nearest parent, like cargo finds `Cargo.toml`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no directory up to the root has one.
    pub fn discover(start: &Path) -> Result<Self, Error> {
        Self::load(&Self::find_root(start)?)
    }

    /// The nearest directory, from `start` up, that holds a `ferry.yaml`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no directory up to the root has one.
    pub fn find_root(start: &Path) -> Result<PathBuf, Error> {
        let mut dir = Some(start);
        while let Some(candidate) = dir {
            if candidate.join(PROJECT_FILE).is_file() {
                return Ok(candidate.to_path_buf());
            }
            dir = candidate.parent();
        }
        Err(Error::NotFound {
            start: start.to_path_buf(),
        })
    }

    /// Loads the project whose root is `root`, checking that every pipeline stage has an
    /// environment file.
    ///
    /// # Errors
    /// Read, parse and validation errors of `ferry.yaml`.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let project = Self::load_file(root)?;
        for name in &project.file.pipeline {
            if !project.environment_path(name).is_file() {
                return Err(Error::PipelineUnknown { name: name.clone() });
            }
        }
        Ok(project)
    }

    /// Loads `ferry.yaml` alone: what commands that act from release records (`rollback`,
    /// `history`) need. Other environments' files, templates and secrets may be missing.
    ///
    /// # Errors
    /// Read, parse and validation errors of `ferry.yaml`.
    pub fn load_file(root: &Path) -> Result<Self, Error> {
        let path = root.join(PROJECT_FILE);
        let file: ProjectFile = parse_yaml(&path, &read(&path)?)?;
        check_dns_label("app name", &file.app, &path)?;
        if !file.values.is_object() {
            return Err(Error::ValuesNotMapping { path });
        }
        Ok(Project {
            root: root.to_path_buf(),
            file,
        })
    }

    /// The path of an environment's file (which may not exist).
    pub fn environment_path(&self, name: &str) -> PathBuf {
        self.root
            .join(ENVIRONMENTS_DIR)
            .join(format!("{name}.yaml"))
    }

    /// The names of the environments that have a file, sorted.
    pub fn environment_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join(ENVIRONMENTS_DIR)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".yaml"))
                    .map(str::to_string)
            })
            .filter(|n| !n.contains('.'))
            .collect();
        names.sort();
        names
    }

    /// Loads environment `name` and merges its values: defaults, the environment file, then
    /// `sets` in order.
    ///
    /// # Errors
    /// [`Error::UnknownEnvironment`], parse and validation errors, bad `--set` arguments.
    pub fn resolve(&self, name: &str, sets: &[SetOverride]) -> Result<ResolvedEnvironment, Error> {
        let path = self.environment_path(name);
        if !is_dns_label(name) || !path.is_file() {
            return Err(Error::UnknownEnvironment {
                name: name.to_string(),
                known: self.environment_names(),
            });
        }
        let file: EnvironmentFile = parse_yaml(&path, &read(&path)?)?;
        check_dns_label("namespace", &file.namespace, &path)?;
        if !file.values.is_object() {
            return Err(Error::ValuesNotMapping { path });
        }
        let mut values = self.file.values.clone();
        values::merge(&mut values, file.values.clone());
        for set in sets {
            set.apply(&mut values)?;
        }
        let secrets = if file.secrets.is_empty() {
            vec![SecretSource::Env {
                prefix: DEFAULT_SECRET_PREFIX.to_string(),
            }]
        } else {
            file.secrets.clone()
        };
        Ok(ResolvedEnvironment {
            app: self.file.app.clone(),
            name: name.to_string(),
            context: file.context,
            namespace: file.namespace,
            values,
            images: self.file.images.clone(),
            secrets: SecretStore::new(self.root.clone(), secrets),
            gates: file.gates,
            release: self.file.release.clone(),
        })
    }
}

/// One environment with everything merged: what templates see and what commands act on.
#[derive(Debug, Serialize)]
pub struct ResolvedEnvironment {
    /// The application's name.
    pub app: String,
    /// The environment's name.
    pub name: String,
    /// The kubeconfig context.
    pub context: String,
    /// The namespace.
    pub namespace: String,
    /// The merged values.
    pub values: Value,
    /// The images of the project.
    pub images: std::collections::BTreeMap<String, ImageSpec>,
    /// Where secrets come from.
    #[serde(skip)]
    pub secrets: SecretStore,
    /// The environment's gates.
    pub gates: Gates,
    /// The project's release policy.
    pub release: ReleasePolicy,
}

impl ResolvedEnvironment {
    /// The root context templates render against: `app`, `env.{name,namespace,context}`,
    /// `values`.
    pub fn template_context(&self) -> Value {
        json!({
            "app": self.app,
            "env": {"name": self.name, "namespace": self.namespace, "context": self.context},
            "values": self.values,
        })
    }
}

/// True when `name` is a DNS label (RFC 1123): what app, environment and namespace names must be.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_dns_label(what: &'static str, value: &str, path: &Path) -> Result<(), Error> {
    if is_dns_label(value) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            value: value.to_string(),
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    const PROJECT: &str =
        "app: shop\npipeline: [staging]\nvalues:\n  replicas: 1\n  web: {port: 8080, name: web}\n";
    const STAGING: &str =
        "context: local\nnamespace: shop-staging\nvalues:\n  replicas: 2\n  web: {port: 9090}\n";

    #[test]
    fn values_merge_defaults_then_environment_then_set() {
        let dir = project(&[
            ("ferry.yaml", PROJECT),
            ("environments/staging.yaml", STAGING),
        ]);
        let project = Project::load(dir.path()).unwrap();
        let sets = [SetOverride::parse("replicas=5").unwrap()];
        let env = project.resolve("staging", &sets).unwrap();
        assert_eq!(
            env.values,
            json!({"replicas": 5, "web": {"port": 9090, "name": "web"}})
        );
        assert_eq!(env.namespace, "shop-staging");
    }

    #[test]
    fn discover_walks_up_from_a_subdirectory() {
        let dir = project(&[
            ("ferry.yaml", PROJECT),
            ("environments/staging.yaml", STAGING),
            ("templates/x/.keep", ""),
        ]);
        let found = Project::discover(&dir.path().join("templates/x")).unwrap();
        assert_eq!(found.root, dir.path());
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let dir = project(&[("ferry.yaml", "app: shop\nimgaes: {}\n")]);
        let err = Project::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Parse { line: Some(2), .. }), "{err:?}");
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let dir = project(&[
            ("ferry.yaml", PROJECT),
            ("environments/staging.yaml", STAGING),
        ]);
        let err = Project::load(dir.path())
            .unwrap()
            .resolve("prod", &[])
            .unwrap_err();
        assert!(
            matches!(err, Error::UnknownEnvironment { ref known, .. } if known == &["staging"])
        );
        assert_eq!(err.hints(), vec!["known environments: staging".to_string()]);
    }

    #[test]
    fn pipeline_must_name_existing_environments() {
        let dir = project(&[
            ("ferry.yaml", "app: shop\npipeline: [staging, production]\n"),
            ("environments/staging.yaml", STAGING),
        ]);
        assert!(
            matches!(Project::load(dir.path()), Err(Error::PipelineUnknown { ref name }) if name == "production")
        );
    }

    #[test]
    fn app_name_must_be_a_dns_label() {
        let dir = project(&[("ferry.yaml", "app: Shop_1\n")]);
        assert!(matches!(
            Project::load(dir.path()),
            Err(Error::InvalidName {
                what: "app name",
                ..
            })
        ));
    }

    #[test]
    fn a_wrongly_typed_field_is_an_error() {
        let dir = project(&[("ferry.yaml", "app: shop\nrelease: {historyLimit: many}\n")]);
        assert!(matches!(
            Project::load(dir.path()),
            Err(Error::Parse { line: Some(2), .. })
        ));
    }
}
