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
    /// Files to put in the image; an image with none is not built by Ferry (it is pulled
    /// as it is, by `tag` or `digest`).
    #[serde(default)]
    pub files: Vec<ImageFile>,
    /// The program and its arguments, exec form (a JSON/YAML list; never a shell string).
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Default arguments appended to the entrypoint.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The numeric user the container runs as (never a name, so `runAsNonRoot` can check it).
    #[serde(default = "default_image_id")]
    pub user: u32,
    /// The numeric group the container runs as.
    #[serde(default = "default_image_id")]
    pub group: u32,
    /// Absolute paths the program writes to; created owned by `user` (and expected to be
    /// `emptyDir` mounts, since the root filesystem is read-only). `/tmp` becomes a sticky
    /// root-owned 1777 directory.
    #[serde(default)]
    pub writable: Vec<String>,
    /// Exposed ports, e.g. `8080` or `8080/tcp`, `53/udp`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Environment variables of the image (sorted by name in the image config).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels of the image config.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The working directory (absolute); default `/`.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Add the build machine's CA bundle (`/etc/ssl/certs/ca-certificates.crt`) as its own
    /// layer and set `SSL_CERT_FILE`.
    #[serde(default)]
    pub ca_bundle: bool,
    /// Add the build machine's time zone database (`/usr/share/zoneinfo`) as its own layer.
    #[serde(default)]
    pub tzdata: bool,
    /// A base image by digest (`registry/repo@sha256:…`); default: none (from scratch).
    #[serde(default)]
    pub base: Option<String>,
    /// The platform, `os/architecture[/variant]`; default `linux/amd64`.
    #[serde(default = "default_platform")]
    pub platform: String,
}

impl Default for ImageSpec {
    /// An external image with no build spec, and the defaults `ferry.yaml` gets.
    fn default() -> Self {
        ImageSpec {
            repository: String::new(),
            tag: None,
            digest: None,
            files: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            user: default_image_id(),
            group: default_image_id(),
            writable: Vec::new(),
            ports: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            workdir: None,
            ca_bundle: false,
            tzdata: false,
            base: None,
            platform: default_platform(),
        }
    }
}

impl ImageSpec {
    /// True when Ferry builds this image (it declares files to include).
    pub fn is_built(&self) -> bool {
        !self.files.is_empty()
    }
}

/// One file or directory tree copied into an image.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageFile {
    /// The file or directory on the build machine, relative to the project root.
    pub source: PathBuf,
    /// The absolute path inside the image (for a directory: where its contents go).
    pub target: String,
    /// Permission bits as an octal string, e.g. `"0555"`; default `0555` for files the owner
    /// may execute, else `0444` (directories are always `0755`).
    #[serde(default)]
    pub mode: Option<FileMode>,
    /// The `Cargo.lock` this binary was built from: its packages go into the SBOM.
    #[serde(default)]
    pub cargo_lock: Option<PathBuf>,
}

/// Unix permission bits, written in YAML as an octal string (`"0555"`), so YAML 1.1 and 1.2
/// readers cannot disagree about `0555`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = text.strip_prefix("0o").unwrap_or(&text);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if !digits.is_empty() && bits <= 0o7777 => Ok(FileMode(bits)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid mode `{text}`: expected octal permission bits such as \"0555\""
            ))),
        }
    }
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

/// Backup encryption, store and retention.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackupPolicy {
    /// Daily restore points `ferry backup prune` keeps.
    #[serde(default = "default_keep_daily")]
    pub keep_daily: u32,
    /// Weekly restore points `ferry backup prune` keeps.
    #[serde(default = "default_keep_weekly")]
    pub keep_weekly: u32,
    /// age recipients (`age1…`) every backup is encrypted to, e.g. an online key and an
    /// offline break-glass key. Public keys only: the machine writing backups cannot read them.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Where backups go: a directory (relative to the project) or `s3://bucket/prefix`.
    /// Default `.ferry/backups/<app>/<env>`.
    #[serde(default)]
    pub store: Option<String>,
    /// Object Lock retention set on every object `backup create` writes (COMPLIANCE mode),
    /// e.g. `30d`. Only for an S3 store whose bucket has Object Lock enabled; refused otherwise.
    #[serde(default)]
    pub retention: Option<String>,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            keep_daily: default_keep_daily(),
            keep_weekly: default_keep_weekly(),
            recipients: Vec::new(),
            store: None,
            retention: None,
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
    /// `ferry provision`: the namespace's ResourceQuota, as `spec.hard` (resource → quantity,
    /// e.g. `pods: 20`, `requests.cpu: "4"`, `limits.memory: 8Gi`). Empty: no quota.
    #[serde(default)]
    pub quota: BTreeMap<String, Value>,
    /// `ferry provision`: the namespace's LimitRange for containers. Absent: no LimitRange.
    #[serde(default)]
    pub limits: Option<ContainerLimits>,
    /// `ferry provision`: the identities bound to the deployer Role (a CI service account, a
    /// user, a group). Empty: a ServiceAccount `ferry-deployer` in the namespace.
    #[serde(default)]
    pub deployers: Vec<Deployer>,
}

/// A LimitRange for the containers of a namespace (`ferry provision`); each field maps a
/// resource (`cpu`, `memory`, `ephemeral-storage`) to a quantity.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerLimits {
    /// Limits given to containers that set none.
    #[serde(default)]
    pub default: BTreeMap<String, Value>,
    /// Requests given to containers that set none.
    #[serde(default)]
    pub default_request: BTreeMap<String, Value>,
    /// The most a container may ask for.
    #[serde(default)]
    pub max: BTreeMap<String, Value>,
    /// The least a container may ask for.
    #[serde(default)]
    pub min: BTreeMap<String, Value>,
}

/// An identity that deploys to the environment (`ferry provision` binds it to the deployer
/// Role), written like an RBAC subject.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Deployer {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// The user, group or service account name.
    pub name: String,
    /// A ServiceAccount's namespace (default: the environment's namespace).
    #[serde(default)]
    pub namespace: Option<String>,
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

fn default_image_id() -> u32 {
    65532
}
fn default_platform() -> String {
    "linux/amd64".to_string()
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
