//! The environment's HTTP checks, run after a rollout: a URL, the status that passes, an
//! optional body substring, a number of attempts with exponential backoff, and a timeout per
//! attempt. Every check yields a [`CheckResult`]; a failing check is a result, not an error.
//!
//! A check's `url` is either an `http://` / `https://` URL, requested with one shared reqwest
//! client (rustls on aws-lc-rs, the same crypto provider as the kube client, so the process
//! never has two; kube-rs.md §3), or `service:port/path`: a Service port in the environment's
//! namespace, reached through the API server's service proxy with the cluster client, for
//! when no URL of the app is reachable from where Ferry runs.

use std::fmt;
use std::time::{Duration, Instant};

use futures::future;
use serde::{Deserialize, Serialize};

use super::reporter::RolloutReporter;
use crate::project::HttpCheck;
use crate::ui::{Diagnostic, ExitStatus};

/// The most of a response body a check reads (and searches for `body_contains`).
pub const MAX_BODY: usize = 1024 * 1024;

/// The first pause between attempts; it doubles after each failed attempt, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A check ready to run: [`HttpCheck`] with its timeout parsed and its URL checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// A short name for reports.
    pub name: String,
    /// Where the request goes.
    pub target: CheckTarget,
    /// The status code that passes.
    pub expect_status: u16,
    /// A substring the body must contain.
    pub body_contains: Option<String>,
    /// Attempts before the check fails (at least 1).
    pub attempts: u32,
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// The pause after the first failed attempt (doubling, up to [`MAX_BACKOFF`]).
    pub backoff: Duration,
}

impl CheckSpec {
    /// Resolves an environment's check.
    ///
    /// # Errors
    /// [`CheckError::Timeout`] for an unparsable timeout, [`CheckError::Url`] for a URL that is
    /// neither `http(s)://…` nor `service:port/path`.
    pub fn from_config(check: &HttpCheck) -> Result<Self, CheckError> {
        let timeout =
            humantime::parse_duration(&check.timeout).map_err(|source| CheckError::Timeout {
                check: check.name.clone(),
                value: check.timeout.clone(),
                source,
            })?;
        let target = CheckTarget::parse(&check.url).ok_or_else(|| CheckError::Url {
            check: check.name.clone(),
            url: check.url.clone(),
        })?;
        Ok(CheckSpec {
            name: check.name.clone(),
            target,
            expect_status: check.expect_status,
            body_contains: check.body_contains.clone(),
            attempts: check.retries.max(1),
            timeout,
            backoff: FIRST_BACKOFF,
        })
    }
}

/// Where a check sends its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// An `http://` or `https://` URL, requested directly.
    Url(reqwest::Url),
    /// A port of a Service in the environment's namespace, reached through the API server:
    /// `GET /api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}`.
    Service {
        /// The Service's name.
        service: String,
        /// The port's number or name.
        port: String,
        /// The path (and query), starting with `/`.
        path: String,
    },
}

impl CheckTarget {
    /// An `http(s)://` URL, or `service:port[/path]` with a DNS label for the Service and a
    /// number or name for the port; `None` for anything else.
    pub fn parse(text: &str) -> Option<CheckTarget> {
        if let Ok(url) = reqwest::Url::parse(text)
            && matches!(url.scheme(), "http" | "https")
        {
            return Some(CheckTarget::Url(url));
        }
        let (authority, path) = match text.find('/') {
            Some(i) => (&text[..i], &text[i..]),
            None => (text, "/"),
        };
        let (service, port) = authority.split_once(':')?;
        let label = |s: &str, max: usize| {
            !s.is_empty()
                && s.len() <= max
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && !s.ends_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0) || label(port, 15);
        let path_ok = path.chars().all(|c| c.is_ascii_graphic());
        (label(service, 63) && port_ok && path_ok).then(|| CheckTarget::Service {
            service: service.to_string(),
            port: port.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for CheckTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckTarget::Url(url) => write!(f, "{url}"),
            CheckTarget::Service {
                service,
                port,
                path,
            } => write!(f, "{service}:{port}{path} (through the API server)"),
        }
    }
}

/// The cluster a `service:port/path` check is proxied through: the client and the
/// environment's namespace.
#[derive(Clone)]
pub struct ServiceProxy {
    /// The cluster client.
    pub client: kube::Client,
    /// The namespace of the Services.
    pub namespace: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// The URL requested.
    pub url: String,
    /// Whether it passed.
    pub passed: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The status of the last response, if any arrived.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Why the last attempt failed (`None` when it passed).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<String>,
    /// Time from the first request to the verdict.
    #[serde(rename = "elapsed_ms", with = "super::millis")]
    pub elapsed: Duration,
}

/// Why a check could not even be set up.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The timeout is not a duration like `5s`.
    #[error("check {check}: timeout `{value}` is not a duration")]
    Timeout {
        /// The check's name.
        check: String,
        /// The value given.
        value: String,
        /// The parse error.
        #[source]
        source: humantime::DurationError,
    },
    /// The URL is neither an `http://` or `https://` URL nor `service:port/path`.
    #[error("check {check}: `{url}` is neither an http or https URL nor service:port/path")]
    Url {
        /// The check's name.
        check: String,
        /// The value given.
        url: String,
    },
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client for checks")]
    Client {
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
}

impl Diagnostic for CheckError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            CheckError::Timeout { .. } | CheckError::Url { .. } => ExitStatus::BadInput,
            CheckError::Client { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            CheckError::Url { .. } => {
                vec![
                    "checks need a full URL such as `https://shop.example.com/healthz`, or `web:8080/healthz` for port 8080 of Service `web` through the API server".into(),
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// The HTTP client for checks: no redirects followed silently beyond 5, a user agent naming
/// Ferry, proxies from the environment.
///
/// # Errors
/// [`CheckError::Client`] when reqwest cannot build its TLS configuration.
pub fn http_client() -> Result<reqwest::Client, CheckError> {
    reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|source| CheckError::Client { source })
}

/// Runs every check concurrently; results come back in the order of `checks`. `proxy` is the
/// cluster `service:port/path` checks go through (they fail without one).
pub async fn run_checks(
    client: &reqwest::Client,
    proxy: Option<&ServiceProxy>,
    checks: &[CheckSpec],
    reporter: &dyn RolloutReporter,
) -> Vec<CheckResult> {
    future::join_all(checks.iter().map(|c| run_check(client, proxy, c, reporter))).await
}

/// Runs one check: up to `attempts` requests, each within `timeout`, pausing with exponential
/// backoff between them, until one passes.
pub async fn run_check(
    client: &reqwest::Client,
    proxy: Option<&ServiceProxy>,
    check: &CheckSpec,
    reporter: &dyn RolloutReporter,
) -> CheckResult {
    let start = Instant::now();
    let attempts = check.attempts.max(1);
    let mut pause = check.backoff;
    let mut last = (None, String::new());
    for attempt in 1..=attempts {
        let attempt_once = async {
            match &check.target {
                CheckTarget::Url(url) => attempt_url(client, url, check).await,
                CheckTarget::Service {
                    service,
                    port,
                    path,
                } => attempt_proxy(proxy, service, port, path, check).await,
            }
        };
        match tokio::time::timeout(check.timeout, attempt_once).await {
            Ok(Ok(status)) => {
                let result = CheckResult {
                    name: check.name.clone(),
                    url: check.target.to_string(),
                    passed: true,
                    attempts: attempt,
                    status: Some(status),
                    failure: None,
                    elapsed: start.elapsed(),
                };
                reporter.check_finished(&result);
                return result;
            }
            Ok(Err((status, why))) => last = (status, why),
            Err(_) => {
                last = (
                    None,
                    format!(
                        "no answer within {}",
                        humantime::format_duration(check.timeout)
                    ),
                );
            }
        }
        if attempt < attempts {
            reporter.check_retry(&check.name, attempt, &last.1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }
    let result = CheckResult {
        name: check.name.clone(),
        url: check.target.to_string(),
        passed: false,
        attempts,
        status: last.0,
        failure: Some(last.1),
        elapsed: start.elapsed(),
    };
    reporter.check_finished(&result);
    result
}

/// One request to a URL: `Ok(status)` when it passes, else the status (if any) and why it
/// failed.
async fn attempt_url(
    client: &reqwest::Client,
    url: &reqwest::Url,
    check: &CheckSpec,
) -> Result<u16, (Option<u16>, String)> {
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| (None, describe_error(&e)))?;
    let status = response.status().as_u16();
    if status != check.expect_status || check.body_contains.is_none() {
        return verdict(check, status, &[]);
    }
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err((Some(status), describe_error(&e))),
        }
    }
    verdict(check, status, &body)
}

/// One request through the API server's service proxy.
async fn attempt_proxy(
    proxy: Option<&ServiceProxy>,
    service: &str,
    port: &str,
    path: &str,
    check: &CheckSpec,
) -> Result<u16, (Option<u16>, String)> {
    let Some(proxy) = proxy else {
        return Err((None, "no cluster to reach the Service through".to_string()));
    };
    let uri = format!(
        "/api/v1/namespaces/{}/services/{service}:{port}/proxy{path}",
        proxy.namespace
    );
    let request = http::Request::get(uri)
        .body(kube::client::Body::from(Vec::new()))
        .map_err(|e| (None, format!("invalid proxy request: {e}")))?;
    let response = proxy
        .client
        .send(request)
        .await
        .map_err(|e| (None, crate::cluster::ApiCause::from_kube(&e).to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| (Some(status), e.to_string()))?;
    verdict(check, status, &body)
}

/// Whether a response passes: the expected status and, when asked, the body substring
/// (searched in the first [`MAX_BODY`] bytes). A failing answer that is a Kubernetes `Status`
/// (the API server's proxy speaking) adds its message.
fn verdict(check: &CheckSpec, status: u16, body: &[u8]) -> Result<u16, (Option<u16>, String)> {
    let body = &body[..body.len().min(MAX_BODY)];
    if status != check.expect_status {
        let mut why = format!("status {status}, expected {}", check.expect_status);
        if let Some(message) = status_message(body) {
            why.push_str(": ");
            why.push_str(&message);
        }
        return Err((Some(status), why));
    }
    match &check.body_contains {
        Some(needle) if !String::from_utf8_lossy(body).contains(needle.as_str()) => Err((
            Some(status),
            format!("the body does not contain `{needle}`"),
        )),
        _ => Ok(status),
    }
}

/// The message of a Kubernetes `Status` body.
fn status_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if value.get("kind")?.as_str()? != "Status" {
        return None;
    }
    value.get("message")?.as_str().map(str::to_string)
}

/// A reqwest error with its causes, on one line.
fn describe_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, timeout: &str) -> HttpCheck {
        HttpCheck {
            name: "health".into(),
            url: url.into(),
            expect_status: 200,
            body_contains: None,
            retries: 0,
            timeout: timeout.into(),
        }
    }

    #[test]
    fn specs_are_checked() {
        let spec = CheckSpec::from_config(&config("http://127.0.0.1:1/healthz", "2s")).unwrap();
        assert_eq!((spec.attempts, spec.timeout), (1, Duration::from_secs(2)));
        assert!(matches!(
            CheckSpec::from_config(&config("ftp://example.com/", "2s")),
            Err(CheckError::Url { .. })
        ));
        assert!(matches!(
            CheckSpec::from_config(&config("http://127.0.0.1/", "soon")),
            Err(CheckError::Timeout { .. })
        ));
    }

    #[test]
    fn service_targets_name_a_service_and_a_port() {
        let service = |s: &str, p: &str, path: &str| {
            Some(CheckTarget::Service {
                service: s.into(),
                port: p.into(),
                path: path.into(),
            })
        };
        assert_eq!(
            CheckTarget::parse("web:8080/healthz?full=1"),
            service("web", "8080", "/healthz?full=1")
        );
        assert_eq!(CheckTarget::parse("web:http"), service("web", "http", "/"));
        for bad in [
            "web/healthz",
            "Web:8080/",
            "web:0/",
            "web:70000/",
            "-web:80/",
            "web:80/a b",
            ":80/",
            "web:/",
        ] {
            assert_eq!(CheckTarget::parse(bad), None, "{bad}");
        }
        assert!(matches!(
            CheckTarget::parse("https://shop.example.com/healthz"),
            Some(CheckTarget::Url(_))
        ));
    }

    #[test]
    fn a_status_answer_explains_the_failure() {
        let check = CheckSpec::from_config(&config("web:8080/healthz", "2s")).unwrap();
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"no endpoints available for service \"web\"","code":503}"#;
        assert_eq!(
            verdict(&check, 503, body),
            Err((
                Some(503),
                "status 503, expected 200: no endpoints available for service \"web\"".into()
            ))
        );
        assert_eq!(verdict(&check, 200, b"ok"), Ok(200));
    }
}
