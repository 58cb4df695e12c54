//! The environment's HTTP checks, run after a rollout: a URL, the status that passes, an
//! optional body substring, a number of attempts with exponential backoff, and a timeout per
//! attempt. Every check yields a [`CheckResult`]; a failing check is a result, not an error.
//!
//! The checks share one reqwest client (rustls on aws-lc-rs, the same crypto provider as the
//! kube client, so the process never has two; kube-rs.md §3). Reaching a Service through the
//! API server's proxy (`service:port/path` URLs) is not done here.

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
    /// An `http://` or `https://` URL.
    pub url: reqwest::Url,
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
    /// not `http(s)://…`.
    pub fn from_config(check: &HttpCheck) -> Result<Self, CheckError> {
        let timeout =
            humantime::parse_duration(&check.timeout).map_err(|source| CheckError::Timeout {
                check: check.name.clone(),
                value: check.timeout.clone(),
                source,
            })?;
        let url = reqwest::Url::parse(&check.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| CheckError::Url {
                check: check.name.clone(),
                url: check.url.clone(),
            })?;
        Ok(CheckSpec {
            name: check.name.clone(),
            url,
            expect_status: check.expect_status,
            body_contains: check.body_contains.clone(),
            attempts: check.retries.max(1),
            timeout,
            backoff: FIRST_BACKOFF,
        })
    }
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
    /// The URL is not an `http://` or `https://` URL.
    #[error("check {check}: `{url}` is not an http or https URL")]
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
                vec!["checks need a full URL such as `https://shop.example.com/healthz`".into()]
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

/// Runs every check concurrently; results come back in the order of `checks`.
pub async fn run_checks(
    client: &reqwest::Client,
    checks: &[CheckSpec],
    reporter: &dyn RolloutReporter,
) -> Vec<CheckResult> {
    future::join_all(checks.iter().map(|c| run_check(client, c, reporter))).await
}

/// Runs one check: up to `attempts` requests, each within `timeout`, pausing with exponential
/// backoff between them, until one passes.
pub async fn run_check(
    client: &reqwest::Client,
    check: &CheckSpec,
    reporter: &dyn RolloutReporter,
) -> CheckResult {
    let start = Instant::now();
    let attempts = check.attempts.max(1);
    let mut pause = check.backoff;
    let mut last = (None, String::new());
    for attempt in 1..=attempts {
        match tokio::time::timeout(check.timeout, attempt_once(client, check)).await {
            Ok(Ok(status)) => {
                let result = CheckResult {
                    name: check.name.clone(),
                    url: check.url.to_string(),
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
        url: check.url.to_string(),
        passed: false,
        attempts,
        status: last.0,
        failure: Some(last.1),
        elapsed: start.elapsed(),
    };
    reporter.check_finished(&result);
    result
}

/// One request: `Ok(status)` when it passes, else the status (if any) and why it failed.
async fn attempt_once(
    client: &reqwest::Client,
    check: &CheckSpec,
) -> Result<u16, (Option<u16>, String)> {
    let mut response = client
        .get(check.url.clone())
        .send()
        .await
        .map_err(|e| (None, describe_error(&e)))?;
    let status = response.status().as_u16();
    if status != check.expect_status {
        return Err((
            Some(status),
            format!("status {status}, expected {}", check.expect_status),
        ));
    }
    let Some(needle) = &check.body_contains else {
        return Ok(status);
    };
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err((Some(status), describe_error(&e))),
        }
    }
    body.truncate(MAX_BODY);
    if String::from_utf8_lossy(&body).contains(needle.as_str()) {
        Ok(status)
    } else {
        Err((
            Some(status),
            format!("the body does not contain `{needle}`"),
        ))
    }
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
            CheckSpec::from_config(&config("web:8080/healthz", "2s")),
            Err(CheckError::Url { .. })
        ));
        assert!(matches!(
            CheckSpec::from_config(&config("http://127.0.0.1/", "soon")),
            Err(CheckError::Timeout { .. })
        ));
    }
}
