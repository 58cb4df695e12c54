//! Throttling never fails a request: a tower layer that answers the API server's
//! 429 Too Many Requests (API Priority and Fairness, max-in-flight limits) by waiting and
//! sending the same request again.
//!
//! [`ThrottleLayer`] sits in the middleware stack of every kube client Ferry builds
//! ([`super::connect`]). It owns the 429 answers only; every other status, and every transport
//! error, passes through it untouched. kube's own retry policy keeps 503 and 504, with 429
//! taken out of it ([`ServerErrorRetry`]) so no request is retried by two layers at once.
//!
//! It never looks at or logs headers or bodies: a retry's log line names the method, the path
//! and query, the attempt and the wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use kube::client::Body;
use kube::client::retry::RetryPolicy;
use tower::retry::Policy;
use tower::util::rng::{HasherRng, Rng};
use tower::{BoxError, Layer, Service, ServiceExt};

/// How long one request may wait, in total, across all its retries: past it the 429 is the
/// answer.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(120);

/// The longest single wait, whatever `Retry-After` asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The first backoff step when the answer carries no usable `Retry-After`.
pub const BACKOFF_START: Duration = Duration::from_millis(250);

/// The largest backoff step when the answer carries no usable `Retry-After`.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// How a throttled request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// The total time one request may spend waiting before its 429 is returned.
    pub budget: Duration,
    /// The cap on one wait (a huge `Retry-After` is clamped to it).
    pub max_wait: Duration,
    /// The first backoff step without `Retry-After`; it doubles per retry.
    pub backoff_start: Duration,
    /// The cap on one backoff step.
    pub backoff_cap: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            budget: DEFAULT_BUDGET,
            max_wait: MAX_WAIT,
            backoff_start: BACKOFF_START,
            backoff_cap: BACKOFF_CAP,
        }
    }
}

impl ThrottlePolicy {
    /// How long to wait before retry number `retry` (1 for the first resend) after a 429 with
    /// `headers`; `jitter` is a random number in `[0, 1)`.
    ///
    /// `Retry-After` in integer seconds is honoured exactly, clamped to [`Self::max_wait`].
    /// Without it, or when it is unparsable (an HTTP date, garbage) or `0` (which would retry
    /// in a hot loop), the wait is an exponential backoff from [`Self::backoff_start`], doubled
    /// per retry up to [`Self::backoff_cap`], of which a random half is taken off so throttled
    /// requests do not come back in step.
    pub fn wait(&self, headers: &HeaderMap, retry: u32, jitter: f64) -> Duration {
        let asked = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&secs| secs > 0);
        if let Some(secs) = asked {
            return Duration::from_secs(secs).min(self.max_wait);
        }
        let doublings = retry.saturating_sub(1).min(20);
        let step = self
            .backoff_start
            .saturating_mul(1 << doublings)
            .min(self.backoff_cap)
            .min(self.max_wait);
        let jitter = jitter.clamp(0.0, 1.0);
        step.mul_f64(1.0 - jitter / 2.0)
    }
}

/// Installs [`Throttle`] in front of a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThrottleLayer {
    policy: ThrottlePolicy,
}

impl ThrottleLayer {
    /// A layer with `policy` (tests use a small budget).
    pub fn new(policy: ThrottlePolicy) -> Self {
        ThrottleLayer { policy }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle {
            inner,
            policy: self.policy,
        }
    }
}

/// Resends requests answered 429 Too Many Requests.
///
/// # Guarantees
/// - Only a 429 is retried; any other status or error is returned at once, untouched.
/// - The resent request has the same method, URI, version, headers, extensions and body: the
///   body is buffered once (kube's request bodies are small JSON documents) and replayed.
/// - A request waits `Retry-After` seconds (at most [`ThrottlePolicy::max_wait`] per wait), or
///   a jittered exponential backoff without one, and never more than
///   [`ThrottlePolicy::budget`] in total: when the next wait would cross the budget, the last
///   429 is returned as is, so callers see the server's own answer.
/// - Watches answered 429 before they stream are retried the same way; once a response is
///   not a 429, nothing more is done to it.
/// - Every retry is logged at info level (shown with `ferry -v`) with the method, path and
///   query, the attempt about to be sent and the wait; never headers or bodies.
///
/// # Caveats
/// A request body that cannot be read whole fails the request with that read error.
#[derive(Debug, Clone)]
pub struct Throttle<S> {
    inner: S,
    policy: ThrottlePolicy,
}

impl<S, B> Service<Request<Body>> for Throttle<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The service that was polled ready takes this request; the clone stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(send(inner, self.policy, request))
    }
}

/// Sends `request` through `inner`, resending it after each 429 within the policy's budget.
async fn send<S, B>(
    mut inner: S,
    policy: ThrottlePolicy,
    request: Request<Body>,
) -> Result<Response<B>, BoxError>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    // Buffered once, replayed on every attempt (instant for kube's own one-chunk bodies).
    let body = body.collect_bytes().await?;
    let mut rng = HasherRng::new();
    let mut waited = Duration::ZERO;
    let mut attempt: u32 = 1;
    loop {
        let resend = Request::from_parts(parts.clone(), Body::from(body.clone()));
        let response = inner.call(resend).await.map_err(Into::into)?;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        let wait = policy.wait(response.headers(), attempt, rng.next_f64());
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), ToString::to_string);
        if waited + wait > policy.budget {
            tracing::info!(
                method = %parts.method,
                path = %path,
                attempts = attempt,
                waited_ms = waited.as_millis(),
                "still throttled by the API server (429 Too Many Requests) after the retry budget; giving up"
            );
            return Ok(response);
        }
        drop(response);
        attempt += 1;
        tracing::info!(
            method = %parts.method,
            path = %path,
            attempt,
            wait_ms = wait.as_millis(),
            "throttled by the API server (429 Too Many Requests); retrying"
        );
        tokio::time::sleep(wait).await;
        waited += wait;
        inner = inner.ready_oneshot().await.map_err(Into::into)?;
    }
}

/// kube's server retry policy (503 and 504 with backoff, honouring `Retry-After`) without 429,
/// which [`ThrottleLayer`] owns.
#[derive(Clone)]
pub struct ServerErrorRetry(RetryPolicy);

impl ServerErrorRetry {
    /// kube's [`RetryPolicy::server_retry`], minus 429.
    pub fn new() -> Self {
        ServerErrorRetry(RetryPolicy::server_retry())
    }
}

impl Default for ServerErrorRetry {
    fn default() -> Self {
        ServerErrorRetry::new()
    }
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for ServerErrorRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        if matches!(result, Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS) {
            return None;
        }
        <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::retry(
            &mut self.0,
            request,
            result,
        )
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::clone_request(
            &mut self.0,
            request,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use http::{HeaderValue, Method};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};

    use super::*;

    /// What the fake API server saw of one request.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        method: Method,
        uri: String,
        content_type: Option<HeaderValue>,
        body: Vec<u8>,
    }

    /// One scripted answer.
    enum Answer {
        Status(u16, Option<&'static str>),
        Json(serde_json::Value),
        Fail,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    type FakeServer = tower::util::BoxCloneService<Request<Body>, Response<Body>, BoxError>;

    const STATUS_429: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429,"message":"slow down","details":{"retryAfterSeconds":1}}"#;

    /// An in-process API server answering from `script` (its last answer repeats), recording
    /// every request.
    fn fake(script: Vec<Answer>) -> (FakeServer, Log) {
        let log: Log = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let seen = log.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let seen = seen.clone();
            let script = script.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await?.to_vec();
                seen.lock().unwrap().push(Seen {
                    method: parts.method,
                    uri: parts.uri.to_string(),
                    content_type: parts.headers.get(http::header::CONTENT_TYPE).cloned(),
                    body,
                });
                let answer = {
                    let mut script = script.lock().unwrap();
                    if script.len() > 1 {
                        script.pop_front()
                    } else {
                        script.front().map(|a| match a {
                            Answer::Status(code, after) => Answer::Status(*code, *after),
                            Answer::Json(v) => Answer::Json(v.clone()),
                            Answer::Fail => Answer::Fail,
                        })
                    }
                };
                match answer.expect("a scripted answer") {
                    Answer::Status(code, retry_after) => {
                        let mut builder = Response::builder()
                            .status(code)
                            .header(http::header::CONTENT_TYPE, "application/json");
                        if let Some(after) = retry_after {
                            builder = builder.header(http::header::RETRY_AFTER, after);
                        }
                        Ok(builder.body(Body::from(STATUS_429.as_bytes().to_vec()))?)
                    }
                    Answer::Json(value) => Ok(Response::builder()
                        .status(200)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(&value)?))?),
                    Answer::Fail => Err::<Response<Body>, BoxError>("connection reset".into()),
                }
            }
        });
        (FakeServer::new(service), log)
    }

    /// A policy with short backoff steps, so tests without `Retry-After` run in milliseconds.
    fn fast(budget_ms: u64) -> ThrottlePolicy {
        ThrottlePolicy {
            budget: Duration::from_millis(budget_ms),
            max_wait: MAX_WAIT,
            backoff_start: Duration::from_millis(20),
            backoff_cap: Duration::from_millis(40),
        }
    }

    fn patch_request() -> Request<Body> {
        Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/namespaces/shop/configmaps/settings?fieldManager=ferry&force=true")
            .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
            .body(Body::from(
                br#"{"kind":"ConfigMap","data":{"a":"1"}}"#.to_vec(),
            ))
            .unwrap()
    }

    async fn call<S>(policy: ThrottlePolicy, service: S) -> Result<Response<Body>, BoxError>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        ThrottleLayer::new(policy)
            .layer(service)
            .oneshot(patch_request())
            .await
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_waited_out_and_resent_unchanged() {
        let (service, log) = fake(vec![
            Answer::Status(429, Some("1")),
            Answer::Json(serde_json::json!({})),
        ]);
        let started = Instant::now();
        let response = call(ThrottlePolicy::default(), service).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "one retry: {seen:#?}");
        assert_eq!(seen[0], seen[1], "the resent request is the same");
        assert_eq!(seen[1].method, Method::PATCH);
        assert_eq!(
            seen[1].uri,
            "/api/v1/namespaces/shop/configmaps/settings?fieldManager=ferry&force=true"
        );
        assert_eq!(seen[1].body, br#"{"kind":"ConfigMap","data":{"a":"1"}}"#);
    }

    #[tokio::test]
    async fn without_a_usable_retry_after_it_backs_off() {
        let (service, log) = fake(vec![
            Answer::Status(429, None),
            Answer::Status(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Answer::Status(429, Some("0")),
            Answer::Json(serde_json::json!({})),
        ]);
        let started = Instant::now();
        let response = call(fast(10_000), service).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 200);
        assert_eq!(log.lock().unwrap().len(), 4);
        // Steps of 20, 40 and 40 ms, each at least half of it after jitter.
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    }

    #[tokio::test]
    async fn past_the_budget_the_429_comes_back_as_is() {
        let (service, log) = fake(vec![Answer::Status(429, None)]);
        let started = Instant::now();
        let response = call(fast(150), service).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let body = response.into_body().collect_bytes().await.unwrap();
        assert_eq!(&body[..], STATUS_429.as_bytes(), "the server's own answer");
        let calls = log.lock().unwrap().len();
        // Waits of 10–40 ms each within 150 ms: at least 4 retries, at most 15.
        assert!((5..=16).contains(&calls), "{calls} calls");
        assert!(elapsed <= Duration::from_millis(500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_budget_is_not_waited() {
        let (service, log) = fake(vec![Answer::Status(429, Some("60"))]);
        let started = Instant::now();
        let response = call(fast(10_000), service).await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(log.lock().unwrap().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn other_statuses_and_errors_pass_through_untouched() {
        for code in [200, 409, 500, 503, 504] {
            let (service, log) = fake(vec![Answer::Status(code, Some("1"))]);
            let response = call(fast(10_000), service).await.unwrap();
            assert_eq!(response.status().as_u16(), code);
            assert_eq!(log.lock().unwrap().len(), 1, "status {code} is not retried");
        }
        let (service, log) = fake(vec![Answer::Fail]);
        let error = call(fast(10_000), service).await.unwrap_err();
        assert_eq!(error.to_string(), "connection reset");
        assert_eq!(log.lock().unwrap().len(), 1, "errors are not retried");
    }

    #[tokio::test]
    async fn a_kube_apply_is_resent_through_the_client() {
        let applied = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"a": "1"}
        });
        let (service, log) = fake(vec![Answer::Status(429, None), Answer::Json(applied)]);
        let client = kube::Client::new(ThrottleLayer::new(fast(10_000)).layer(service), "shop");
        let api: Api<ConfigMap> = Api::default_namespaced(client);
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("settings".into());
        cm.data = Some([("a".to_string(), "1".to_string())].into());
        let got = api
            .patch("settings", &PatchParams::apply("ferry"), &Patch::Apply(&cm))
            .await
            .unwrap();
        assert_eq!(got.data.unwrap()["a"], "1");
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], seen[1]);
        assert!(!seen[1].body.is_empty());
    }

    #[test]
    fn waits_follow_retry_after_clamped_else_a_capped_jittered_backoff() {
        let policy = ThrottlePolicy::default();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
            headers
        };
        assert_eq!(policy.wait(&with("3"), 1, 0.5), Duration::from_secs(3));
        assert_eq!(policy.wait(&with(" 2 "), 7, 0.5), Duration::from_secs(2));
        assert_eq!(policy.wait(&with("100000"), 1, 0.0), MAX_WAIT, "clamped");
        let none = HeaderMap::new();
        assert_eq!(policy.wait(&none, 1, 0.0), Duration::from_millis(250));
        assert_eq!(policy.wait(&none, 2, 0.0), Duration::from_millis(500));
        assert_eq!(policy.wait(&none, 3, 0.0), Duration::from_secs(1));
        assert_eq!(policy.wait(&none, 6, 0.0), BACKOFF_CAP);
        assert_eq!(policy.wait(&none, u32::MAX, 0.0), BACKOFF_CAP);
        assert_eq!(policy.wait(&none, 1, 1.0), Duration::from_millis(125));
        assert_eq!(policy.wait(&with("0"), 1, 0.0), Duration::from_millis(250));
        assert_eq!(
            policy.wait(&with("soon"), 2, 0.0),
            Duration::from_millis(500)
        );
    }

    #[tokio::test]
    async fn kubes_server_retry_keeps_503_and_504_but_not_429() {
        let mut policy = ServerErrorRetry::new();
        let mut request = patch_request();
        for (code, retried) in [(429, false), (503, true), (504, true), (500, false)] {
            let mut result: Result<Response<()>, BoxError> =
                Ok(Response::builder().status(code).body(()).unwrap());
            let retry = policy.retry(&mut request, &mut result);
            assert_eq!(retry.is_some(), retried, "status {code}");
        }
    }
}
