//! The shapes of `ferry.yaml` and `environments/<env>.yaml`, exactly as users write them.
//!
//! Every struct denies unknown keys, so a typo is an error with its line, not a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `ferry.yaml`: the application and its policies.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectFile {
    /// The application's name; used in labels, lock and record names. DNS-label form.
    pub app: String,
    /// Images the application runs, by logical name (what `{{image "web"}}` refers to).
    #[serde(default)]
    pub images: BTreeMap<String, ImageSpec>,
    /// The order environments are promoted through, e.g. `[staging, production]`.
    #[serde(default)]
    pub pipeline: Vec<String>,
    /// How releases behave.
    #[serde(default)]
    pub release: ReleasePolicy,
    /// How backups are kept.
    #[serde(default)]
    pub backup: BackupPolicy,
    /// Value defaults, overridden by each environment's `values` and then by `--set`.
    #[serde(default = "empty_mapping")]
    pub values: Value,
}

/// An image the application runs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageSpec {
    /// Repository without tag or digest, e.g. `registry.example.com/shop/web`.
    pub repository: String,
    /// Tag used until a digest is known (after a build or push the digest wins).
    #[serde(default)]
    pub tag: Option<String>,
    /// A digest to pin to (`sha256:…`), when known without a build.
    #[serde(default)]
    pub digest: Option<String>,
}

/// Release behaviour shared by every environment.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleasePolicy {
    /// How many release records to keep per environment.
    #[serde(default = "default_history_limit")]
    pub history_limit: u32,
    /// How long a rollout may take before it fails and rolls back, e.g. `5m`.
    #[serde(default = "default_rollout_timeout")]
    pub timeout: String,
}

impl Default for ReleasePolicy {
    fn default() -> Self {
        ReleasePolicy {
            history_limit: default_history_limit(),
            timeout: default_rollout_timeout(),
        }
    }
}

/// Backup retention and store.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupPolicy {
    /// Daily restore points to keep.
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    /// Weekly restore points to keep.
    #[serde(default = "default_keep_weekly")]
    pub keep_weekly: u32,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            keep_daily: default_keep_daily(),
            keep_weekly: default_keep_weekly(),
        }
    }
}

/// `environments/<env>.yaml`: where and how one environment runs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentFile {
    /// The kubeconfig context to use (overridable with `--context`).
    pub context: String,
    /// The namespace the application lives in.
    pub namespace: String,
    /// Values for this environment, merged over the project defaults.
    #[serde(default = "empty_mapping")]
    pub values: Value,
    /// Where `{{secret "name"}}` looks, in order. Default: environment variables
    /// `FERRY_SECRET_<NAME>`.
    #[serde(default)]
    pub secrets: Vec<SecretSource>,
    /// What must hold before and after a release to this environment.
    #[serde(default)]
    pub gates: Gates,
}

/// One place secrets are read from at render time.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, tag = "from", rename_all = "lowercase")]
pub enum SecretSource {
    /// Environment variables `<prefix><NAME>` (name upper-cased, `-` and `.` become `_`).
    Env {
        /// The variable prefix; default `FERRY_SECRET_`.
        #[serde(default = "default_secret_prefix")]
        prefix: String,
    },
    /// A YAML file mapping secret names to string values, relative to the project root.
    File {
        /// The file's path.
        path: PathBuf,
    },
    /// A directory with one file per secret (the file name is the secret name), as mounted
    /// Kubernetes secrets are laid out.
    Dir {
        /// The directory's path.
        path: PathBuf,
    },
}

/// Promotion and release gates of an environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gates {
    /// How long a release must have been live and healthy here before it may be promoted
    /// onward, e.g. `10m`.
    #[serde(default)]
    pub soak: Option<String>,
    /// Whether a promotion into this environment needs an explicit approval.
    #[serde(default)]
    pub approval: bool,
    /// HTTP checks run after each rollout.
    #[serde(default)]
    pub checks: Vec<HttpCheck>,
}

/// An HTTP check run after a rollout.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCheck {
    /// A short name for reports.
    pub name: String,
    /// The URL to request, or a `service:port/path` reached through the API server's proxy.
    pub url: String,
    /// The status code that passes.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// A substring the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Attempts before the check fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Timeout of each attempt, e.g. `5s`.
    #[serde(default = "default_check_timeout")]
    pub timeout: String,
}

fn empty_mapping() -> Value {
    Value::Object(serde_json::Map::new())
}
fn default_history_limit() -> u32 {
    10
}
fn default_rollout_timeout() -> String {
    "5m".to_string()
}
fn default_keep_daily() -> u32 {
    7
}
fn default_keep_weekly() -> u32 {
    4
}
/// The default prefix of secret environment variables.
pub const DEFAULT_SECRET_PREFIX: &str = "FERRY_SECRET_";
fn default_secret_prefix() -> String {
    DEFAULT_SECRET_PREFIX.to_string()
}
fn default_expect_status() -> u16 {
    200
}
fn default_retries() -> u32 {
    3
}
fn default_check_timeout() -> String {
    "5s".to_string()
}
