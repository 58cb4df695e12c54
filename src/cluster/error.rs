//! Errors of the cluster adapter: which request failed (verb, kind, namespace, name), what the
//! API server or the connection said, and the hints that follow from it (a 403 names the
//! identity, verb and resource RBAC refused).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::object::ObjectRef;
use crate::ui::{Diagnostic, ExitStatus};

/// What a request did, as people and RBAC name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// Read one object.
    Get,
    /// List objects of a kind.
    List,
    /// Watch an object.
    Watch,
    /// Server-side apply (RBAC: `patch`, plus `create` for a new object).
    Apply,
    /// Server-side apply with `dryRun=All`.
    DryRun,
    /// Delete an object.
    Delete,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Apply => "apply",
            Verb::DryRun => "dry-run",
            Verb::Delete => "delete",
        })
    }
}

/// What a request was about: one object, or all objects of a resource in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The kind, e.g. `Deployment`.
    pub kind: String,
    /// The resource with its group, e.g. `deployments.apps`, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The namespace; `None` for cluster-scoped objects and cluster-wide lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name; `None` for lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The template the object was rendered from, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
}

impl Target {
    /// One object.
    pub fn object(id: &ObjectRef) -> Self {
        Target {
            kind: id.kind.clone(),
            resource: None,
            namespace: id.namespace.clone(),
            name: Some(id.name.clone()),
            template: None,
        }
    }

    /// All objects of `resource` (`plural.group`) in `namespace` (or cluster-wide).
    pub fn list(kind: &str, resource: String, namespace: Option<&str>) -> Self {
        Target {
            kind: kind.to_string(),
            resource: Some(resource),
            namespace: namespace.map(str::to_string),
            name: None,
            template: None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.namespace) {
            (Some(name), Some(ns)) => write!(f, "{} {ns}/{name}", self.kind)?,
            (Some(name), None) => write!(f, "{} {name}", self.kind)?,
            (None, ns) => {
                let what = self.resource.as_deref().unwrap_or(&self.kind);
                match ns {
                    Some(ns) => write!(f, "{what} in {ns}")?,
                    None => write!(f, "{what} (cluster-wide)")?,
                }
            }
        }
        if let Some(template) = &self.template {
            write!(f, " (from {})", template.display())?;
        }
        Ok(())
    }
}

/// What the API server or the connection said: the cause at the bottom of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiCause {
    /// The API server answered with an error status.
    #[error("{message} ({code} {reason})")]
    Status {
        /// The HTTP status code, e.g. 403.
        code: u16,
        /// The machine-readable reason, e.g. `Forbidden`.
        reason: String,
        /// The server's explanation.
        message: String,
    },
    /// The request got no answer: connection refused, TLS failure, timeout, bad response.
    #[error("{message}")]
    Transport {
        /// The chain of lower-level errors, joined.
        message: String,
    },
}

impl ApiCause {
    /// Classifies a kube client error.
    ///
    /// This is the one place a kube error becomes text for people: every module error that
    /// a request can cause holds an `ApiCause`, never a `kube::Error`, whose `Display` of an
    /// API answer includes a Rust `Debug` dump of the whole `Status`.
    pub fn from_kube(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => Self::from_status(status),
            other => ApiCause::Transport {
                message: chain_text(other),
            },
        }
    }

    /// Classifies a watch error (its `Display` embeds the kube error's, `Debug` dump and all).
    pub fn from_watcher(error: &kube::runtime::watcher::Error) -> Self {
        use kube::runtime::watcher::Error as Watch;
        match error {
            Watch::InitialListFailed(e) | Watch::WatchStartFailed(e) | Watch::WatchFailed(e) => {
                Self::from_kube(e)
            }
            Watch::WatchError(status) => Self::from_status(status),
            Watch::NoResourceVersion => ApiCause::Transport {
                message:
                    "the watch answer had no resourceVersion (does the resource support watch?)"
                        .to_string(),
            },
        }
    }

    fn from_status(status: &kube::core::Status) -> Self {
        ApiCause::Status {
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        }
    }

    /// The HTTP status code, when the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiCause::Status { code, .. } => Some(*code),
            ApiCause::Transport { .. } => None,
        }
    }

    /// The server's message, when it answered.
    pub fn message(&self) -> Option<&str> {
        match self {
            ApiCause::Status { message, .. } => Some(message),
            ApiCause::Transport { .. } => None,
        }
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// True for a 403.
    pub fn is_forbidden(&self) -> bool {
        self.code() == Some(403)
    }

    /// The namespace a 404 says is missing (`namespaces "x" not found`).
    pub fn missing_namespace(&self) -> Option<&str> {
        if !self.is_not_found() {
            return None;
        }
        let rest = self.message()?.strip_prefix("namespaces \"")?;
        let (name, tail) = rest.split_once('"')?;
        tail.contains("not found").then_some(name)
    }

    /// The exit status a failure with this cause deserves when nothing was changed: 2 when the
    /// request itself was wrong or not allowed (fix the input or the rights), 1 when the
    /// server or the network failed (retry).
    pub fn exit_status(&self) -> ExitStatus {
        match self.code() {
            Some(400 | 401 | 403 | 404 | 405 | 409 | 410 | 415 | 422) => ExitStatus::BadInput,
            _ => ExitStatus::Failure,
        }
    }
}

/// The messages of an error's sources, joined with `: `, skipping kube's own wrapper (its
/// message repeats its source).
pub(crate) fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = if error.source().is_some() {
        error.source()
    } else {
        Some(error)
    };
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A request about one object or kind that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("failed to {verb} {target}")]
pub struct RequestError {
    /// What the request did.
    pub verb: Verb,
    /// What it was about.
    pub target: Box<Target>,
    /// What the server or the connection said.
    #[source]
    pub source: ApiCause,
}

impl RequestError {
    /// Wraps a kube client error.
    pub fn new(verb: Verb, target: Target, error: &kube::Error) -> Self {
        RequestError {
            verb,
            target: Box::new(target),
            source: ApiCause::from_kube(error),
        }
    }

    /// The RBAC refusal, when the server answered 403 with its usual message.
    pub fn forbidden(&self) -> Option<Forbidden> {
        match &self.source {
            ApiCause::Status {
                code: 403, message, ..
            } => Some(Forbidden::parse(message).unwrap_or_else(|| {
                Forbidden {
                    identity: None,
                    verb: self.verb.to_string(),
                    resource: self
                        .target
                        .resource
                        .clone()
                        .unwrap_or_else(|| self.target.kind.clone()),
                    namespace: self.target.namespace.clone(),
                }
            })),
            _ => None,
        }
    }

    /// The namespace a 404 says is missing (`namespaces "x" not found`).
    pub fn missing_namespace(&self) -> Option<&str> {
        self.source.missing_namespace()
    }
}

/// The hint for a request into a namespace that does not exist, the same from every command.
/// `environment` is the environment's name, or `<env>` where the error does not know it (the
/// operations then replace `<env>` in its hints).
pub fn missing_namespace_hint(namespace: &str, environment: &str) -> String {
    format!(
        "the namespace `{namespace}` does not exist: create it with `ferry provision {environment}`"
    )
}

impl Diagnostic for RequestError {
    fn exit_status(&self) -> ExitStatus {
        self.source.exit_status()
    }

    fn hints(&self) -> Vec<String> {
        let mut hints = Vec::new();
        if let Some(forbidden) = self.forbidden() {
            hints.push(forbidden.to_string());
            hints.push(
                "an administrator can grant exactly what ferry needs: `ferry provision <env> --print-rbac`"
                    .to_string(),
            );
            return hints;
        }
        if let Some(namespace) = self.missing_namespace() {
            hints.push(missing_namespace_hint(namespace, "<env>"));
            return hints;
        }
        match self.source.code() {
            Some(409) if matches!(self.verb, Verb::Apply | Verb::DryRun) => hints.push(
                "another field manager owns fields ferry sets (listed above): pass --force-conflicts to take them over, or stop setting them in the template"
                    .to_string(),
            ),
            Some(400 | 422) => hints.push(match &self.target.template {
                Some(template) => format!(
                    "the server rejected the object as rendered: fix {}",
                    template.display()
                ),
                None => "the server rejected the object as rendered".to_string(),
            }),
            Some(401) => hints.push(
                "the credentials of the kubeconfig context were rejected: renew them".to_string(),
            ),
            Some(404) if self.verb == Verb::Apply || self.verb == Verb::DryRun => hints.push(
                "the resource type is not served: install its CustomResourceDefinition first"
                    .to_string(),
            ),
            Some(429 | 500..) | None => hints.push(
                "the API server is unreachable or overloaded; nothing is wrong with the request: retry"
                    .to_string(),
            ),
            _ => {}
        }
        hints
    }
}

/// An RBAC refusal as the API server words it: `User "u" cannot patch resource "deployments"
/// in API group "apps" in the namespace "ns"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forbidden {
    /// The user name the server authenticated (`None` when its message did not say).
    pub identity: Option<String>,
    /// The RBAC verb refused, e.g. `patch`.
    pub verb: String,
    /// The resource with its group, e.g. `deployments.apps`.
    pub resource: String,
    /// The namespace; `None` for a cluster-wide request.
    pub namespace: Option<String>,
}

impl Forbidden {
    /// Parses the API server's 403 message; `None` when it has another shape.
    pub fn parse(message: &str) -> Option<Self> {
        let quoted = |text: &str, after: &str| -> Option<String> {
            let start = text.find(after)? + after.len();
            let rest = &text[start..];
            rest.split_once('"').map(|(value, _)| value.to_string())
        };
        let identity = quoted(message, "User \"")?;
        let after_user = &message[message.find(" cannot ")? + " cannot ".len()..];
        let verb = after_user.split_whitespace().next()?.to_string();
        let resource = quoted(after_user, "resource \"")?;
        let group = quoted(after_user, "in API group \"").filter(|g| !g.is_empty());
        let namespace = quoted(after_user, "in the namespace \"");
        Some(Forbidden {
            identity: Some(identity),
            verb,
            resource: match group {
                Some(group) => format!("{resource}.{group}"),
                None => resource,
            },
            namespace,
        })
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity {
            Some(identity) => write!(f, "the identity `{identity}` lacks `{}`", self.verb)?,
            None => write!(f, "the identity lacks `{}`", self.verb)?,
        }
        write!(f, " on {}", self.resource)?;
        match &self.namespace {
            Some(ns) => write!(f, " in `{ns}`"),
            None => f.write_str(" cluster-wide"),
        }
    }
}

/// Errors of the engine ([`super::apply`], [`super::diff`], [`super::status`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The API server's resource types could not be listed.
    #[error("failed to discover the resource types the API server serves")]
    Discovery {
        /// What the server or the connection said.
        #[source]
        source: ApiCause,
    },
    /// No resource type on the server serves an object's apiVersion and kind.
    #[error("the cluster serves no `{}` in `{}` (needed by {object})", object.kind, object.api_version)]
    UnknownKind {
        /// The object that needs it.
        object: ObjectRef,
    },
    /// A declared dependency is unknown or circular: nothing was read or written.
    #[error(transparent)]
    Plan(Box<crate::plan::PlanError>),
    /// Some objects failed the server's dry run (or, after passing it, their apply).
    #[error("{}", rejected_headline(*at, *count))]
    Rejected {
        /// Where: the dry run up front, a deferred dry run, or a step's writes.
        at: Checkpoint,
        /// How many objects failed.
        count: usize,
        /// The first failure, in apply order.
        #[source]
        first: RequestError,
        /// The other failures.
        others: Vec<RequestError>,
    },
    /// A CustomResourceDefinition was applied but did not become Established in time.
    #[error("CustomResourceDefinition {name} was not established within {}s", waited.as_secs())]
    NotEstablished {
        /// The CRD's name.
        name: String,
        /// How long Ferry waited.
        waited: Duration,
    },
    /// The ApplySet parent exists but another tool manages it.
    #[error("the applyset parent Secret {namespace}/{name} is managed by `{tooling}`, not ferry")]
    ForeignParent {
        /// The parent's namespace.
        namespace: String,
        /// The parent's name.
        name: String,
        /// Its `applyset.kubernetes.io/tooling` annotation.
        tooling: String,
    },
    /// A run of restored objects (no set) was asked to prune: there is nothing it owns.
    #[error("objects applied as they are belong to no set, so nothing can be pruned")]
    PruneAsIs,
}

/// Where objects were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// The server dry run of the whole bundle, before anything was written.
    UpFront,
    /// The dry run of objects that had to wait for step `n` (1-based) to create their
    /// namespace or kind.
    After(usize),
    /// The writes of step `n` (1-based), after the dry run had passed.
    Step(usize),
}

fn rejected_headline(at: Checkpoint, count: usize) -> String {
    let objects = format!("{count} object{}", if count == 1 { "" } else { "s" });
    match at {
        Checkpoint::UpFront => {
            format!("{objects} failed the server's dry run; nothing was applied")
        }
        Checkpoint::After(n) => format!(
            "{objects} failed the server's dry run once step {n} had created their namespace or kind; nothing after step {n} was applied"
        ),
        Checkpoint::Step(n) => {
            format!("the server refused {objects} of step {n}; nothing after step {n} was applied")
        }
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Request(e) => e.exit_status(),
            Error::Discovery { source } => source.exit_status(),
            Error::UnknownKind { .. } | Error::ForeignParent { .. } | Error::PruneAsIs => {
                ExitStatus::BadInput
            }
            Error::Plan(e) => e.exit_status(),
            Error::Rejected { first, .. } => first.exit_status(),
            Error::NotEstablished { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Request(e) => e.hints(),
            Error::Discovery { .. } => {
                vec!["check that the API server is healthy, then retry".to_string()]
            }
            Error::UnknownKind { .. } => vec![
                "check the apiVersion and kind, or add the kind's CustomResourceDefinition to the bundle"
                    .to_string(),
            ],
            Error::Plan(e) => e.hints(),
            Error::Rejected { first, others, .. } => {
                let mut hints = first.hints();
                for other in others {
                    let why = other.source.message().unwrap_or("refused");
                    hints.push(format!("also refused: {}: {why}", other.target));
                }
                hints
            }
            Error::NotEstablished { .. } => vec![
                "look at the CRD's conditions (`kubectl describe crd <name>`) and retry".to_string(),
            ],
            Error::ForeignParent { .. } => vec![
                "use another environment namespace, or delete the parent if that tool no longer manages it"
                    .to_string(),
            ],
            Error::PruneAsIs => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_rbac_refusal() {
        let message = "deployments.apps \"web\" is forbidden: User \"ferry-limited\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"demo\"";
        let forbidden = Forbidden::parse(message).unwrap();
        assert_eq!(
            forbidden.to_string(),
            "the identity `ferry-limited` lacks `patch` on deployments.apps in `demo`"
        );
    }

    #[test]
    fn parses_a_core_cluster_wide_refusal() {
        let message = "namespaces is forbidden: User \"system:serviceaccount:ci:deployer\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope";
        let forbidden = Forbidden::parse(message).unwrap();
        assert_eq!(forbidden.resource, "namespaces");
        assert_eq!(forbidden.namespace, None);
        assert_eq!(
            forbidden.identity.as_deref(),
            Some("system:serviceaccount:ci:deployer")
        );
    }

    #[test]
    fn names_a_missing_namespace() {
        let error = RequestError {
            verb: Verb::Apply,
            target: Box::new(Target::object(&ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("gone".into()),
                name: "x".into(),
            })),
            source: ApiCause::Status {
                code: 404,
                reason: "NotFound".into(),
                message: "namespaces \"gone\" not found".into(),
            },
        };
        assert_eq!(error.missing_namespace(), Some("gone"));
        assert_eq!(error.to_string(), "failed to apply ConfigMap gone/x");
        assert_eq!(error.exit_status(), ExitStatus::BadInput);
    }

    fn not_found_status() -> Box<kube::core::Status> {
        Box::new(
            kube::core::Status::failure("namespaces \"gone\" not found", "NotFound").with_code(404),
        )
    }

    /// Issue 10: kube's own `Display` of an API answer ends in a `Debug` dump of the Status;
    /// the cause Ferry keeps reads like the server's message.
    #[test]
    fn an_api_answer_reads_without_a_debug_dump() {
        let error = kube::Error::Api(not_found_status());
        assert!(
            error.to_string().contains("Status {"),
            "kube changed: {error}"
        );
        let cause = ApiCause::from_kube(&error);
        assert_eq!(
            cause.to_string(),
            "namespaces \"gone\" not found (404 NotFound)"
        );
        assert_eq!(cause.missing_namespace(), Some("gone"));

        use kube::runtime::watcher::Error as Watch;
        for watch in [
            Watch::InitialListFailed(kube::Error::Api(not_found_status())),
            Watch::WatchStartFailed(kube::Error::Api(not_found_status())),
            Watch::WatchFailed(kube::Error::Api(not_found_status())),
            Watch::WatchError(not_found_status()),
        ] {
            assert_eq!(ApiCause::from_watcher(&watch), cause, "{watch}");
        }
    }
}
