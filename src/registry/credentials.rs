//! Registry credentials from the places Docker, Podman and CI systems put them:
//! `$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`):
//! `credHelpers.<host>`, `auths.<host>` (`auth`, `username`/`password`, `identitytoken`),
//! then `credsStore`. Helpers run as `docker-credential-<name> get` with the host on stdin.
//!
//! The source of the credentials is always recorded, so a 401 can say where they came from.
//! Passwords and tokens are registered with [`crate::redact`] as they are found, and no type
//! here shows one in `Debug`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::Error;
use crate::project::Redacted;

/// The variable naming a Podman-style auth file, checked first.
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
/// The variable naming Docker's configuration directory.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";

/// What to authenticate with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Nothing: anonymous access.
    Anonymous,
    /// A user name and password (or personal access token).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Redacted<String>,
    },
    /// An OAuth2 refresh token (`identitytoken`).
    IdentityToken(Redacted<String>),
}

/// Credentials for one registry and where they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The secret.
    pub secret: Secret,
    /// A description of the source, e.g. `~/.docker/config.json (auths)`.
    pub source: String,
}

impl Credentials {
    /// Anonymous access.
    pub fn anonymous() -> Credentials {
        Credentials {
            secret: Secret::Anonymous,
            source: "none (anonymous)".to_string(),
        }
    }
}

/// Where to look, resolved once from the environment.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    /// Files in search order.
    pub files: Vec<PathBuf>,
}

impl CredentialFiles {
    /// The default search list: `$REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` or
    /// `$HOME/.docker/config.json`.
    pub fn from_env() -> CredentialFiles {
        let mut files = Vec::new();
        if let Some(file) = std::env::var_os(REGISTRY_AUTH_FILE) {
            files.push(PathBuf::from(file));
        }
        if let Some(dir) = std::env::var_os(DOCKER_CONFIG) {
            files.push(PathBuf::from(dir).join("config.json"));
        } else if let Some(home) = std::env::var_os("HOME") {
            files.push(PathBuf::from(home).join(".docker/config.json"));
        }
        CredentialFiles { files }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

/// One `auths` entry; `Debug` shows which fields are set, never their values.
#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// A credential helper's answer; `Debug` shows the user name only.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// `Some("***")` for a set secret field, for `Debug`.
fn hidden(field: &Option<String>) -> Option<&'static str> {
    field.as_ref().map(|_| "***")
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("auth", &hidden(&self.auth))
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("identitytoken", &hidden(&self.identitytoken))
            .finish()
    }
}

impl std::fmt::Debug for HelperAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperAnswer")
            .field("username", &self.username)
            .field("secret", &"***")
            .finish()
    }
}

/// Registers the secret of `credentials` with [`crate::redact`] (and, for Basic, the
/// `user:password` pair whose base64 is the `Authorization` header and the `auth` field).
fn registered(credentials: Credentials) -> Credentials {
    match &credentials.secret {
        Secret::Anonymous => {}
        Secret::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            crate::redact::register_all([password.expose().as_str(), pair.as_str()]);
        }
        Secret::IdentityToken(token) => crate::redact::register(token.expose()),
    }
    credentials
}

/// Finds credentials for `registry` (`host[:port]`).
///
/// # Errors
/// [`Error::Credentials`] when a file exists but is malformed, [`Error::Helper`] when a
/// configured helper cannot be run or fails for another reason than "not found".
pub fn lookup(registry: &str, files: &CredentialFiles) -> Result<Credentials, Error> {
    lookup_unregistered(registry, files).map(registered)
}

fn lookup_unregistered(registry: &str, files: &CredentialFiles) -> Result<Credentials, Error> {
    for file in &files.files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Credentials {
                    path: file.clone(),
                    source: Box::new(e),
                });
            }
        };
        let config: ConfigFile = serde_json::from_str(&text).map_err(|e| Error::Credentials {
            path: file.clone(),
            source: Box::new(e),
        })?;
        if let Some(helper) = config.cred_helpers.get(registry) {
            if let Some(c) = run_helper(helper, registry)? {
                return Ok(c);
            }
            continue;
        }
        if let Some((key, entry)) = config.auths.iter().find(|(k, _)| host_of(k) == registry) {
            let source = format!("{} (auths.{key})", display(file));
            return entry_credentials(entry, source, file);
        }
        if let Some(store) = &config.creds_store
            && let Some(c) = run_helper(store, registry)?
        {
            return Ok(c);
        }
    }
    Ok(Credentials::anonymous())
}

fn entry_credentials(entry: &AuthEntry, source: String, file: &Path) -> Result<Credentials, Error> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials {
            secret: Secret::IdentityToken(Redacted::new(token.clone())),
            source,
        });
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let Some((username, password)) = decoded else {
            return Err(Error::Credentials {
                path: file.to_path_buf(),
                source: "the `auth` value is not base64 of user:password".into(),
            });
        };
        return Ok(Credentials {
            secret: Secret::Basic {
                username,
                password: Redacted::new(password),
            },
            source,
        });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Credentials {
            secret: Secret::Basic {
                username: u.clone(),
                password: Redacted::new(p.clone()),
            },
            source,
        }),
        _ => Ok(Credentials {
            secret: Secret::Anonymous,
            source: format!("{source}: empty entry, anonymous"),
        }),
    }
}

/// Runs `docker-credential-<helper> get`; `Ok(None)` when it knows no credentials.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, Error> {
    let program = format!("docker-credential-{helper}");
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Helper {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(Box::new(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| failed(Box::new(e)))?;
    }
    let output = child.wait_with_output().map_err(|e| failed(Box::new(e)))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(failed(
            format!("{} exited with {}", program, output.status).into(),
        ));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| failed(Box::new(e)))?;
    let source = format!("credential helper {program}");
    Ok(Some(Credentials {
        secret: if answer.username == "<token>" {
            Secret::IdentityToken(Redacted::new(answer.secret))
        } else {
            Secret::Basic {
                username: answer.username,
                password: Redacted::new(answer.secret),
            }
        },
        source,
    }))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:port` stays.
fn host_of(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// A path with `$HOME` shown as `~`.
fn display(path: &Path) -> String {
    match std::env::var_os("HOME") {
        Some(home) if path.starts_with(&home) => {
            format!("~/{}", path.strip_prefix(&home).unwrap_or(path).display())
        }
        _ => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, config: &str) -> CredentialFiles {
        let path = dir.join("config.json");
        std::fs::write(&path, config).unwrap();
        CredentialFiles { files: vec![path] }
    }

    #[test]
    fn auths_entries_decode_basic_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let f = files(
            dir.path(),
            &format!(r#"{{"auths": {{"http://127.0.0.1:5000/v2/": {{"auth": "{auth}"}}}}}}"#),
        );
        let c = lookup("127.0.0.1:5000", &f).unwrap();
        assert_eq!(
            c.secret,
            Secret::Basic {
                username: "alice".into(),
                password: Redacted::new("s3cret".into())
            }
        );
        assert!(
            c.source.contains("auths.http://127.0.0.1:5000/v2/"),
            "{}",
            c.source
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(crate::redact::scrub("sent s3cret"), "sent ***");
        assert_eq!(crate::redact::scrub(&format!("Basic {auth}")), "Basic ***");
        assert_eq!(lookup("other:1", &f).unwrap().secret, Secret::Anonymous);
    }

    #[test]
    fn entries_and_helper_answers_hide_secrets_in_debug() {
        let entry: ConfigFile = serde_json::from_str(
            r#"{"auths": {"r": {"auth": "YWxpY2U6ZW50cnktcGFzcw==", "username": "alice",
                "password": "entry-pass", "identitytoken": "entry-token"}}}"#,
        )
        .unwrap();
        let debug = format!("{entry:?}");
        for value in ["YWxpY2U6ZW50cnktcGFzcw", "entry-pass", "entry-token"] {
            assert!(!debug.contains(value), "{debug}");
        }
        assert!(debug.contains("alice"), "{debug}");
        let answer: HelperAnswer =
            serde_json::from_str(r#"{"Username": "bob", "Secret": "helper-secret"}"#).unwrap();
        let debug = format!("{answer:?}");
        assert!(
            !debug.contains("helper-secret") && debug.contains("bob"),
            "{debug}"
        );
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            r#"{"credHelpers": {"r.example": "ferry-test-missing"}}"#,
        );
        let err = lookup("r.example", &f).unwrap_err();
        assert!(
            err.to_string()
                .contains("docker-credential-ferry-test-missing"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), r#"{"auths": {"r": {"auth": "not base64!"}}}"#);
        assert!(lookup("r", &f).is_err());
        let f = files(dir.path(), "{");
        assert!(lookup("r", &f).is_err());
    }
}
