//! The OCI distribution client (distribution-spec v1.1) on reqwest: ping, HEAD-skip of
//! existing blobs, cross-repository mounts, monolithic uploads with a chunked fallback,
//! parallel blob transfers, manifest PUT by digest and tag, referrers (with the tag-schema
//! fallback), pulls verified against their digests, and anonymous, basic and bearer-token
//! auth with credentials from the Docker config and credential helpers.
//!
//! An adapter: it does network I/O and nothing else. It reads blobs from (or is handed them
//! in memory), and writes pulled blobs into, an [`crate::image::Layout`]; what to push is
//! decided by `ops::image` and `ops::restore::images`.
//! Plain HTTP is allowed only for loopback registries (`--insecure`).

pub mod auth;
mod client;
pub mod credentials;
mod pull;
mod push;
pub mod reference;

pub use client::{Client, ClientOptions};
pub use credentials::{CredentialFiles, Credentials, Secret};
pub use pull::PulledImage;
pub use push::{
    Artifact, Blob, BlobAction, BlobOutcome, NoProgress, PushOutcome, PushReporter, PushRequest,
    ReferrerOutcome,
};
pub use reference::Reference;

use std::path::PathBuf;

use crate::ui::{Diagnostic, ExitStatus};

/// A boxed cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference is malformed.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Plain HTTP was asked for a registry that is not on loopback.
    #[error("--insecure (plain HTTP) is only allowed for loopback registries, not {registry}")]
    InsecureNotLoopback {
        /// The registry host.
        registry: String,
    },
    /// A registry named a token realm that may not receive credentials (plain http to another
    /// host, or not a URL); nothing was sent to it.
    #[error("registry {registry} names the token realm {realm}, which ferry refuses: {reason}")]
    InsecureRealm {
        /// The registry host.
        registry: String,
        /// The realm of its `WWW-Authenticate: Bearer` challenge.
        realm: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry} ({operation})")]
    Connect {
        /// The registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the credentials, or wants some and none were found (401).
    #[error(
        "registry {registry} refused access to {repository} (scope {scope}): {}",
        if *anonymous { "authentication required and no credentials found" } else { "credentials rejected" }
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The scope requested.
        scope: String,
        /// True when no credentials were sent.
        anonymous: bool,
        /// Where the credentials came from.
        credentials: String,
    },
    /// The credentials are valid but lack the rights (403, or a token without the scope).
    #[error("registry {registry} denied {scope} on {repository}")]
    Forbidden {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The scope requested.
        scope: String,
        /// Where the credentials came from.
        credentials: String,
    },
    /// The token endpoint failed.
    #[error("failed to get a token for {scope} from {realm}")]
    Token {
        /// The token endpoint.
        realm: String,
        /// The scope requested.
        scope: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The registry answered an unexpected status.
    #[error("registry {registry} answered {status} to {operation} in {repository}")]
    Status {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages.
        #[source]
        source: ServerMessage,
    },
    /// The registry answered something the protocol does not allow.
    #[error("registry {registry} broke the protocol during {operation}: {what}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What was being done.
        operation: String,
        /// What was wrong.
        what: String,
    },
    /// Downloaded (or acknowledged) content does not match the digest asked for.
    #[error("content of {digest} from {registry}/{repository} has digest {actual}")]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest asked for.
        digest: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// No manifest for the wanted platform in an index.
    #[error("{reference} has no image for platform {platform}")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform wanted.
        platform: String,
    },
    /// A credentials file is unreadable or malformed.
    #[error("failed to read registry credentials from {}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Cause,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper {program} failed")]
    Helper {
        /// The helper program.
        program: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// A local blob or layout could not be read or written.
    #[error("local image layout failed")]
    Layout(#[source] crate::image::Error),
    /// Building the HTTP client failed (TLS setup).
    #[error("failed to set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// A registry's error body (`{"errors":[{"code","message"}]}`), as text.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct ServerMessage {
    /// `CODE: message; …`, or the start of a non-JSON body.
    pub text: String,
    /// The error codes, e.g. `BLOB_UPLOAD_INVALID`.
    pub codes: Vec<String>,
}

impl ServerMessage {
    /// Parses a registry error body.
    pub fn parse(body: &[u8]) -> ServerMessage {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) if !b.errors.is_empty() => ServerMessage {
                text: b
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                codes: b.errors.into_iter().map(|e| e.code).collect(),
            },
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                    .trim()
                    .to_string();
                ServerMessage {
                    text: if text.is_empty() {
                        "(empty body)".to_string()
                    } else {
                        text
                    },
                    codes: Vec::new(),
                }
            }
        }
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::InvalidReference { .. }
            | Error::InsecureNotLoopback { .. }
            | Error::InsecureRealm { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::Credentials { .. }
            | Error::Helper { .. }
            | Error::NoPlatform { .. } => ExitStatus::BadInput,
            _ => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Unauthorized {
                registry,
                anonymous: true,
                ..
            } => vec![format!(
                "log in with `docker login {registry}`, or add credentials for {registry} to \
                 $DOCKER_CONFIG/config.json (default ~/.docker/config.json) or $REGISTRY_AUTH_FILE"
            )],
            Error::Unauthorized {
                registry,
                credentials,
                ..
            } => vec![format!(
                "the credentials came from {credentials}; check them with `docker login {registry}`"
            )],
            Error::Forbidden {
                repository,
                credentials,
                ..
            } => vec![format!(
                "the credentials from {credentials} lack push or pull rights on {repository}"
            )],
            Error::InsecureRealm { registry, .. } => vec![
                format!(
                    "no credentials or tokens were sent; configure {registry}'s token service \
                     with an https realm (for distribution: `auth.token.realm`)"
                ),
                "plain http is accepted only for a token service on 127.0.0.1, localhost or \
                 [::1], with --insecure"
                    .to_string(),
            ],
            Error::Helper { program, .. } => vec![format!(
                "is {program} installed and on PATH? it is named by credHelpers/credsStore in the docker config"
            )],
            Error::Connect { registry, .. } => vec![format!(
                "is {registry} up? for a plain-HTTP registry on 127.0.0.1 pass --insecure"
            )],
            _ => Vec::new(),
        }
    }
}
