//! The HTTP side: one [`Client`] per registry host, with its credentials, the auth scheme
//! learnt from the first challenge, a token cache per scope, and retries with exponential
//! backoff on 5xx, 429 and broken connections.
//!
//! Credentials and tokens go only to the registry host itself and to the token realm it
//! named ([`super::auth::check_realm`]): a request to another host (an upload `Location`
//! elsewhere) is sent without `Authorization`, and its challenges are not followed. Tokens and
//! passwords are registered with [`crate::redact`] and print as `***` in `Debug`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};

use super::auth::{Challenge, TokenAnswer, check_realm, form_escape};
use super::credentials::{self, CredentialFiles, Credentials, Secret};
use super::{Error, ServerMessage};

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Use plain HTTP (allowed for loopback registries only).
    pub insecure: bool,
    /// Where to look for credentials.
    pub credentials: CredentialFiles,
    /// Blob transfers in flight at once.
    pub concurrency: usize,
    /// Blobs up to this size are uploaded in one PUT; larger ones in chunks.
    pub monolithic_limit: u64,
    /// The chunk size of chunked uploads (raised to the registry's `OCI-Chunk-Min-Length`).
    pub chunk_size: u64,
    /// Retries of a request on 5xx, 429 or a broken connection.
    pub retries: u32,
    /// The first backoff; it doubles on each retry.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            credentials: CredentialFiles::from_env(),
            concurrency: 4,
            monolithic_limit: 512 << 20,
            chunk_size: 16 << 20,
            retries: 4,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A client of one registry.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    registry: String,
    base: String,
    credentials: Credentials,
    state: Mutex<AuthState>,
    pub(super) options: ClientOptions,
}

/// `Debug` shows the scopes of the cached tokens, never a token.
#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope list, with their expiry.
    tokens: BTreeMap<String, (String, Instant)>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: BTreeMap<&String, &str> = self.tokens.keys().map(|k| (k, "***")).collect();
        f.debug_struct("AuthState")
            .field("challenge", &self.challenge)
            .field("tokens", &tokens)
            .finish()
    }
}

/// What a request is for: its repository and the scopes it needs.
#[derive(Debug, Clone)]
pub(super) struct Op {
    /// A short description for errors, e.g. `blob upload`.
    pub what: String,
    /// The repository.
    pub repository: String,
    /// Token scopes, e.g. `repository:demo/web:pull,push`.
    pub scopes: Vec<String>,
}

impl Op {
    pub(super) fn new(what: impl Into<String>, repository: &str, push: bool) -> Op {
        let actions = if push { "pull,push" } else { "pull" };
        Op {
            what: what.into(),
            repository: repository.to_string(),
            scopes: vec![format!("repository:{repository}:{actions}")],
        }
    }
}

impl Client {
    /// A client for `registry` (`host[:port]`), with credentials looked up once.
    ///
    /// # Errors
    /// [`Error::InsecureNotLoopback`], credential lookup errors, TLS setup errors.
    pub fn new(registry: &str, options: ClientOptions) -> Result<Client, Error> {
        if options.insecure && !is_loopback(registry) {
            return Err(Error::InsecureNotLoopback {
                registry: registry.to_string(),
            });
        }
        let credentials = credentials::lookup(registry, &options.credentials)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(Error::Http)?;
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(Client {
            http,
            base: format!("{scheme}://{registry}"),
            registry: registry.to_string(),
            credentials,
            state: Mutex::new(AuthState::default()),
            options,
        })
    }

    /// The registry host.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Where the credentials came from (for messages).
    pub fn credentials_source(&self) -> &str {
        &self.credentials.source
    }

    /// `GET /v2/`: checks the registry speaks the API and learns its auth scheme.
    ///
    /// # Errors
    /// [`Error::Connect`] or an unexpected status.
    pub async fn ping(&self) -> Result<(), Error> {
        let url = self.url("/v2/");
        let resp = self.retrying("ping", || self.http.get(&url)).await?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => {
                if let Some(c) = challenge_of(resp.headers()) {
                    self.lock().challenge = Some(c);
                }
                Ok(())
            }
            status => Err(self.status_error("", "ping", status, resp).await),
        }
    }

    /// `https://host` + `path`.
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An upload `Location`, absolute.
    pub(super) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            self.url(location)
        }
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends the request `build` makes, authenticating and retrying as needed. Returns any
    /// response other than 401/403 (those become errors).
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Unauthorized`], [`Error::Forbidden`], [`Error::Token`].
    pub(super) async fn send(
        &self,
        op: &Op,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut scopes = op.scopes.clone();
        let mut auth_rounds = 0;
        if !self.is_registry_url(&build) {
            // Another host (e.g. an upload Location elsewhere): no credentials, and its
            // challenges are not ours to follow.
            return self.retrying(&op.what, build).await;
        }
        loop {
            let header = self.authorization(&scopes).await?;
            let resp = self
                .retrying(&op.what, || match &header {
                    Some(h) => build().header(AUTHORIZATION, h.as_str()),
                    None => build(),
                })
                .await?;
            match resp.status() {
                StatusCode::UNAUTHORIZED if auth_rounds < 2 => {
                    auth_rounds += 1;
                    let Some(challenge) = challenge_of(resp.headers()) else {
                        return Err(self.unauthorized(op, &scopes));
                    };
                    let scopes_before = scopes.clone();
                    if let Challenge::Bearer {
                        scope: Some(scope),
                        error,
                        ..
                    } = &challenge
                    {
                        let insufficient = error.as_deref() == Some("insufficient_scope");
                        if insufficient && header.is_some() && scopes.contains(scope) {
                            return Err(self.forbidden(op, &scopes));
                        }
                        if !scopes.contains(scope) {
                            scopes.push(scope.clone());
                        }
                    }
                    let anonymous = matches!(self.credentials.secret, Secret::Anonymous);
                    if challenge == Challenge::Basic && anonymous {
                        return Err(self.unauthorized(op, &scopes));
                    }
                    let mut state = self.lock();
                    let same = state
                        .challenge
                        .as_ref()
                        .is_some_and(|c| same_scheme(c, &challenge));
                    if header.is_some() && same && scopes == scopes_before {
                        // What we sent was refused as it was: wrong credentials.
                        return Err(self.unauthorized(op, &scopes));
                    }
                    state.challenge = Some(challenge);
                    state.tokens.remove(&scopes.join(" "));
                }
                StatusCode::UNAUTHORIZED => return Err(self.unauthorized(op, &scopes)),
                StatusCode::FORBIDDEN => return Err(self.forbidden(op, &scopes)),
                _ => return Ok(resp),
            }
        }
    }

    /// True when the request `build` makes goes to this registry's scheme, host and port (the
    /// only place, with the realm it names, that credentials are sent to).
    fn is_registry_url(&self, build: impl Fn() -> reqwest::RequestBuilder) -> bool {
        let Ok(base) = reqwest::Url::parse(&self.base) else {
            return false;
        };
        build().build().is_ok_and(|request| {
            let url = request.url();
            url.scheme() == base.scheme()
                && url.host_str() == base.host_str()
                && url.port_or_known_default() == base.port_or_known_default()
        })
    }

    /// Sends with retries on transport errors, 5xx and 429, with exponential backoff.
    async fn retrying(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let mut attempt = 0;
        loop {
            let delay = self.options.backoff * 2u32.saturating_pow(attempt);
            match build().send().await {
                Ok(resp)
                    if (resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.options.retries =>
                {
                    tracing::debug!(status = %resp.status(), what, attempt, "registry busy; retrying");
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retriable(&e) && attempt < self.options.retries => {
                    tracing::debug!(error = %e, what, attempt, "registry request failed; retrying");
                }
                Err(source) => {
                    return Err(Error::Connect {
                        registry: self.registry.clone(),
                        operation: what.to_string(),
                        source,
                    });
                }
            }
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// The `Authorization` header for `scopes` under the known challenge, fetching a token
    /// when needed.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<String>, Error> {
        let challenge = self.lock().challenge.clone();
        match (challenge, &self.credentials.secret) {
            (None, _) => Ok(None),
            (Some(Challenge::Basic), Secret::Basic { username, password }) => {
                let raw = format!("{username}:{}", password.expose());
                Ok(Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )))
            }
            (Some(Challenge::Basic), _) => Ok(None),
            (Some(Challenge::Bearer { realm, service, .. }), _) => {
                check_realm(&realm, self.options.insecure).map_err(|refusal| {
                    Error::InsecureRealm {
                        registry: self.registry.clone(),
                        realm: realm.clone(),
                        reason: refusal.reason(),
                    }
                })?;
                let key = scopes.join(" ");
                if let Some((token, expiry)) = self.lock().tokens.get(&key)
                    && Instant::now() < *expiry
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                let expiry = Instant::now()
                    + ttl
                        .saturating_sub(Duration::from_secs(10))
                        .max(Duration::from_secs(1));
                self.lock().tokens.insert(key, (token.clone(), expiry));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Asks the token endpoint for a token: GET with Basic credentials (or none), or the
    /// OAuth2 POST with a refresh token.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), Error> {
        let scope_text = scopes.join(" ");
        let fail = |source: super::Cause| Error::Token {
            realm: realm.to_string(),
            scope: scope_text.clone(),
            source,
        };
        let resp = match &self.credentials.secret {
            Secret::IdentityToken(token) => {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=ferry&refresh_token={}",
                    form_escape(token.expose())
                );
                if let Some(service) = service {
                    form.push_str(&format!("&service={}", form_escape(service)));
                }
                for scope in scopes {
                    form.push_str(&format!("&scope={}", form_escape(scope)));
                }
                self.retrying("token request", || {
                    self.http
                        .post(realm)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form.clone())
                })
                .await?
            }
            secret => {
                let mut url = realm.to_string();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(service) = service {
                    url.push_str(&format!("{sep}service={}", form_escape(service)));
                    sep = '&';
                }
                for scope in scopes {
                    url.push_str(&format!("{sep}scope={}", form_escape(scope)));
                    sep = '&';
                }
                self.retrying("token request", || {
                    let req = self.http.get(&url);
                    match secret {
                        Secret::Basic { username, password } => {
                            req.basic_auth(username, Some(password.expose()))
                        }
                        _ => req,
                    }
                })
                .await?
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let repository = scopes
                .first()
                .and_then(|s| s.split(':').nth(1))
                .unwrap_or_default()
                .to_string();
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                repository,
                scope: scope_text,
                anonymous: matches!(self.credentials.secret, Secret::Anonymous),
                credentials: self.credentials.source.clone(),
            });
        }
        let body = resp.bytes().await.map_err(|e| fail(Box::new(e)))?;
        if !status.is_success() {
            return Err(fail(Box::new(ServerMessage::parse(&body))));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| fail(Box::new(e)))?;
        let token = answer
            .token()
            .ok_or_else(|| fail("the answer has no token".into()))?
            .to_string();
        crate::redact::register(&token);
        Ok((token, Duration::from_secs(answer.expires_in.unwrap_or(60))))
    }

    fn unauthorized(&self, op: &Op, scopes: &[String]) -> Error {
        Error::Unauthorized {
            registry: self.registry.clone(),
            repository: op.repository.clone(),
            scope: scopes.join(" "),
            anonymous: matches!(self.credentials.secret, Secret::Anonymous),
            credentials: self.credentials.source.clone(),
        }
    }

    fn forbidden(&self, op: &Op, scopes: &[String]) -> Error {
        Error::Forbidden {
            registry: self.registry.clone(),
            repository: op.repository.clone(),
            scope: scopes.join(" "),
            credentials: self.credentials.source.clone(),
        }
    }

    /// An [`Error::Status`] for an unexpected answer, with the registry's error body.
    pub(super) async fn status_error(
        &self,
        repository: &str,
        operation: &str,
        status: StatusCode,
        resp: reqwest::Response,
    ) -> Error {
        let body = resp.bytes().await.unwrap_or_default();
        Error::Status {
            registry: self.registry.clone(),
            repository: repository.to_string(),
            operation: operation.to_string(),
            status: status.as_u16(),
            source: ServerMessage::parse(&body),
        }
    }

    pub(super) fn protocol(&self, operation: &str, what: impl Into<String>) -> Error {
        Error::Protocol {
            registry: self.registry.clone(),
            operation: operation.to_string(),
            what: what.into(),
        }
    }
}

fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(Challenge::parse)
}

fn same_scheme(a: &Challenge, b: &Challenge) -> bool {
    matches!(
        (a, b),
        (Challenge::Basic, Challenge::Basic) | (Challenge::Bearer { .. }, Challenge::Bearer { .. })
    )
}

fn retriable(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// True for `127.x.x.x[:port]`, `localhost[:port]` and `[::1][:port]`.
pub(super) fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves HTTP/1.1 on 127.0.0.1: answers each request with `answer(head)` and records
    /// every request head (lowercased). Returns the port and the record.
    async fn serve(
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (record, answer) = (Arc::clone(&record), Arc::clone(&answer));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let response = answer(&head);
                    record.lock().unwrap().push(head);
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        (port, seen)
    }

    fn response(status: &str, headers: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n")
    }

    /// Options for a loopback registry at `registry` with basic credentials `alice:<password>`.
    fn options_with_password(
        dir: &std::path::Path,
        registry: &str,
        password: &str,
    ) -> ClientOptions {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        ClientOptions {
            insecure: true,
            credentials: CredentialFiles { files: vec![path] },
            retries: 0,
            backoff: Duration::from_millis(1),
            ..ClientOptions::default()
        }
    }

    #[tokio::test]
    async fn an_http_realm_on_another_host_is_refused_and_gets_no_credentials() {
        // issue 10: a registry whose bearer realm is plain http on another host.
        let (port, seen) = serve(|_| {
            response(
                "401 Unauthorized",
                "www-authenticate: Bearer realm=\"http://ferry-realm.invalid/token\",service=\"r\"\r\n",
            )
        })
        .await;
        let registry = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(
            &registry,
            options_with_password(dir.path(), &registry, "realm-pass-1"),
        )
        .unwrap();
        let url = client.url("/v2/demo/app/manifests/latest");
        let op = Op::new("manifest fetch", "demo/app", false);
        let err = client
            .send(&op, || client.http().get(&url))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InsecureRealm { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "registry {registry} names the token realm http://ferry-realm.invalid/token, \
                 which ferry refuses: it is plain http to a host that is not loopback, so \
                 credentials and tokens would cross the network in clear"
            )
        );
        assert!(!crate::ui::Diagnostic::hints(&err).is_empty());
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|head| !head.contains("authorization:")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn credentials_go_only_to_the_registry_host() {
        // issue 10: an upload Location on another host must not receive the credentials.
        let (port, seen) = serve(|head| {
            if head.contains("authorization:") {
                response("200 OK", "")
            } else {
                response(
                    "401 Unauthorized",
                    "www-authenticate: Basic realm=\"r\"\r\n",
                )
            }
        })
        .await;
        let (other_port, other_seen) = serve(|_| response("202 Accepted", "")).await;
        let registry = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(
            &registry,
            options_with_password(dir.path(), &registry, "host-pass-2"),
        )
        .unwrap();
        client.ping().await.unwrap();
        let op = Op::new("blob upload", "demo/app", true);
        let own = client.url("/v2/demo/app/blobs/uploads/");
        let resp = client.send(&op, || client.http().get(&own)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .any(|h| h.contains("authorization: basic"))
        );
        let elsewhere = format!("http://localhost:{other_port}/upload/1");
        let resp = client
            .send(&op, || client.http().get(&elsewhere))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let other_seen = other_seen.lock().unwrap();
        assert_eq!(other_seen.len(), 1);
        assert!(!other_seen[0].contains("authorization:"), "{other_seen:?}");
    }

    #[test]
    fn cached_tokens_never_show_in_debug() {
        let mut state = AuthState::default();
        state.tokens.insert(
            "repository:a:pull".into(),
            ("cached-token-8080".into(), Instant::now()),
        );
        let debug = format!("{state:?}");
        assert!(!debug.contains("cached-token-8080"), "{debug}");
        assert!(debug.contains("repository:a:pull"), "{debug}");
    }

    #[test]
    fn only_loopback_registries_may_be_insecure() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("registry.example.com"));
        let options = ClientOptions {
            insecure: true,
            credentials: CredentialFiles::default(),
            ..ClientOptions::default()
        };
        assert!(matches!(
            Client::new("registry.example.com", options),
            Err(Error::InsecureNotLoopback { .. })
        ));
    }
}
