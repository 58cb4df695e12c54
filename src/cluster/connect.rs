//! A kube client for one kubeconfig context, checked with one request before it is used.
//!
//! The kubeconfig is `--kubeconfig`, else `$KUBECONFIG` (a list of files, merged as kubectl
//! does), else `~/.kube/config`. The context comes from the environment file unless
//! `--context` overrides it. A missing file, an unknown context, an unreadable credential, an
//! unreachable server, a failed TLS handshake and rejected credentials each get their own
//! error naming the file, context or server.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::error::{ApiCause, chain_text};
use super::throttle::{ServerErrorRetry, ThrottleLayer};
use crate::ui::{Diagnostic, ExitStatus};

/// The environment variable naming the kubeconfig file(s), as for kubectl.
pub const KUBECONFIG: &str = "KUBECONFIG";

/// How long the first request may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which kubeconfig and context to use.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `--kubeconfig`; `None` for `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The context (from `--context` or the environment file).
    pub context: String,
}

/// A connected cluster: a client and what it was made from.
#[derive(Clone)]
pub struct Cluster {
    /// The client; cheap to clone. It waits out 429 Too Many Requests and resends
    /// ([`super::throttle`]), and like kube's default client retries 503 and 504 (with
    /// backoff, honouring `Retry-After`).
    pub client: Client,
    /// The same cluster without the 503 and 504 retries, for requests whose 503 is the
    /// answer (checks through the API server's service proxy); it still waits out 429.
    pub proxy_client: Client,
    /// The kubeconfig context.
    pub context: String,
    /// The API server's URL.
    pub server: String,
    /// The kubeconfig user of the context (the server may know the identity by another name).
    pub user: Option<String>,
    /// The API server's version, e.g. `v1.36.3`.
    pub server_version: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("context", &self.context)
            .field("server", &self.server)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a cluster could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `--kubeconfig` or a `$KUBECONFIG` entry names a file that does not exist.
    #[error("kubeconfig {} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Neither `--kubeconfig`, `$KUBECONFIG` nor `~/.kube/config` gives a kubeconfig.
    #[error(
        "no kubeconfig: --kubeconfig is not given, $KUBECONFIG is not set and ~/.kube/config does not exist"
    )]
    NoKubeconfig,
    /// The kubeconfig could not be read or parsed.
    #[error("failed to read kubeconfig {source_name}")]
    Read {
        /// The file(s) it was read from.
        source_name: String,
        /// Why.
        #[source]
        source: ApiCause,
    },
    /// The context is not in the kubeconfig.
    #[error("context `{context}` is not in kubeconfig {source_name}")]
    UnknownContext {
        /// The context asked for.
        context: String,
        /// The file(s) searched.
        source_name: String,
        /// The contexts that exist.
        known: Vec<String>,
    },
    /// The context's cluster or user entry is unusable (bad certificate file, bad URL, …).
    #[error("the kubeconfig entries of context `{context}` are unusable")]
    Config {
        /// The context.
        context: String,
        /// Why.
        #[source]
        source: ApiCause,
    },
    /// The API server did not answer.
    #[error("cannot reach the API server {server} (context `{context}`)")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// The context.
        context: String,
        /// What the connection said.
        #[source]
        source: ApiCause,
    },
    /// The TLS handshake failed (unknown certificate authority, wrong name, bad client cert).
    #[error("the TLS handshake with {server} failed (context `{context}`)")]
    Tls {
        /// The server's URL.
        server: String,
        /// The context.
        context: String,
        /// What the TLS layer said.
        #[source]
        source: ApiCause,
    },
    /// The API server rejected the credentials (401).
    #[error("the API server {server} rejected the credentials of context `{context}`")]
    Unauthorized {
        /// The server's URL.
        server: String,
        /// The context.
        context: String,
        /// What the server said.
        #[source]
        source: ApiCause,
    },
}

impl Diagnostic for ConnectError {
    fn exit_status(&self) -> ExitStatus {
        // Nothing was changed, and each of these is fixed in the configuration or the
        // environment (start the cluster, fix the kubeconfig), not by retrying blindly.
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        match self {
            ConnectError::Missing { .. } | ConnectError::NoKubeconfig => vec![format!(
                "pass --kubeconfig FILE or set ${KUBECONFIG}"
            )],
            ConnectError::Read { .. } | ConnectError::Config { .. } => {
                vec!["check the file with `kubectl config view`".to_string()]
            }
            ConnectError::UnknownContext { known, .. } if known.is_empty() => {
                vec!["the kubeconfig has no contexts".to_string()]
            }
            ConnectError::UnknownContext { known, .. } => vec![
                format!("known contexts: {}", known.join(", ")),
                "set `context:` in the environment file or pass --context NAME".to_string(),
            ],
            ConnectError::Unreachable { context, .. } => vec![format!(
                "is the cluster running, and is this the right context? Try `kubectl cluster-info --context {context}`"
            )],
            ConnectError::Tls { .. } => vec![
                "the kubeconfig's certificate-authority must have signed the server's certificate, and the server's address must be in it"
                    .to_string(),
            ],
            ConnectError::Unauthorized { .. } => {
                vec!["renew the context's credentials (certificate or token)".to_string()]
            }
        }
    }
}

/// Loads the kubeconfig, selects the context, builds a client and checks that the API server
/// answers (`GET /version`).
///
/// # Errors
/// One [`ConnectError`] per way of failing; nothing is sent beyond `GET /version`.
pub async fn connect(opts: &ConnectOptions) -> Result<Cluster, ConnectError> {
    let (kubeconfig, source_name) = load_kubeconfig(opts.kubeconfig.as_ref())?;
    let context = opts.context.clone();
    let Some(entry) = kubeconfig.contexts.iter().find(|c| c.name == context) else {
        let mut known: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
        known.sort();
        return Err(ConnectError::UnknownContext {
            context,
            source_name,
            known,
        });
    };
    let user = entry.context.as_ref().and_then(|c| c.user.clone());
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        cluster: None,
        user: None,
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| ConnectError::Config {
            context: context.clone(),
            source: ApiCause::Transport {
                message: e.to_string(),
            },
        })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client_error = |e: kube::Error| ConnectError::Config {
        context: context.clone(),
        source: ApiCause::Transport {
            message: chain_text(&e),
        },
    };
    let client = http2_client(&config, config.default_retry).map_err(client_error)?;
    let proxy_client = http2_client(&config, false).map_err(client_error)?;
    let version = tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await;
    let server_version = match version {
        Ok(Ok(info)) => info.git_version,
        // The server answered: it is there, even if a policy hides its version.
        Ok(Err(kube::Error::Api(status))) if status.code != 401 => "unknown".to_string(),
        Ok(Err(error)) => return Err(classify(&error, server, context)),
        Err(_) => {
            return Err(ConnectError::Unreachable {
                server,
                context,
                source: ApiCause::Transport {
                    message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                },
            });
        }
    };
    Ok(Cluster {
        client,
        proxy_client,
        context,
        server,
        user,
        server_version,
    })
}

/// How often an HTTP/2 connection to the API server is pinged.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection counts as dead.
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for `config` that negotiates HTTP/2 with the API server (falling back to
/// HTTP/1.1), as kubectl does: one TLS connection carries every concurrent request and watch,
/// where kube's default HTTP/1.1 client opens (and handshakes) one connection per request in
/// flight. Same TLS verification, credentials and headers as kube's default client; 429
/// answers are always waited out and resent ([`ThrottleLayer`]), 503 and 504 retried like
/// kube's default client does when `retry`.
///
/// # Errors
/// The kubeconfig's TLS material or credentials are unusable.
fn http2_client(config: &Config, retry: bool) -> Result<Client, kube::Error> {
    use kube::client::ConfigExt;

    // kube's own client refuses a kubeconfig `proxy-url` without its proxy features; so does
    // this one, rather than silently connecting around the proxy.
    if let Some(proxy_url) = &config.proxy_url {
        return Err(kube::Error::ProxyProtocolDisabled {
            proxy_url: Box::new(proxy_url.clone()),
            protocol_feature: "kube/http-proxy",
        });
    }
    let tls = config.rustls_client_config()?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // Requests with a body go out as several writes (HTTP/2 HEADERS then DATA): without
    // TCP_NODELAY, Nagle holds the second until the server acks the first (delayed ACK, ~40 ms).
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                kube::Error::Service(format!("invalid tls-server-name {name:?}: {e}").into())
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let https = builder.enable_http1().enable_http2().wrap_connector(http);
    // Pings find a dead connection (and fail its requests and watches) instead of leaving
    // them waiting on it forever.
    let transport =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(HTTP2_PING_INTERVAL)
            .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build::<_, kube::client::Body>(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        // 429 is throttle's alone (both clients): kube's server retry keeps 503 and 504.
        .layer(ThrottleLayer::default())
        .option_layer(retry.then(|| tower::retry::RetryLayer::new(ServerErrorRetry::new())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e: hyper_util::client::legacy::Error| {
            Box::new(e) as Box<dyn std::error::Error + Send + Sync>
        })
        .service(transport);
    Ok(Client::new(service, config.default_namespace.clone()))
}

/// The kubeconfig and a description of where it came from.
fn load_kubeconfig(explicit: Option<&PathBuf>) -> Result<(Kubeconfig, String), ConnectError> {
    let read = |path: &PathBuf| -> Result<Kubeconfig, ConnectError> {
        if !path.exists() {
            return Err(ConnectError::Missing { path: path.clone() });
        }
        Kubeconfig::read_from(path).map_err(|e| ConnectError::Read {
            source_name: path.display().to_string(),
            source: kubeconfig_cause(&e),
        })
    };
    if let Some(path) = explicit {
        return Ok((read(path)?, path.display().to_string()));
    }
    if let Some(value) = std::env::var_os(KUBECONFIG).filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let mut merged: Option<Kubeconfig> = None;
        for path in &paths {
            let config = read(path)?;
            merged = Some(match merged {
                None => config,
                Some(m) => m.merge(config).map_err(|e| ConnectError::Read {
                    source_name: path.display().to_string(),
                    source: kubeconfig_cause(&e),
                })?,
            });
        }
        let name = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        return merged.map(|m| (m, name)).ok_or(ConnectError::NoKubeconfig);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let default = home.map(|h| h.join(".kube").join("config"));
    match default {
        Some(path) if path.exists() => Ok((read(&path)?, path.display().to_string())),
        _ => Err(ConnectError::NoKubeconfig),
    }
}

fn kubeconfig_cause(error: &KubeconfigError) -> ApiCause {
    ApiCause::Transport {
        message: error.to_string(),
    }
}

/// Sorts the first request's failure into unreachable, TLS and credential errors.
fn classify(error: &kube::Error, server: String, context: String) -> ConnectError {
    let source = ApiCause::from_kube(error);
    match &source {
        ApiCause::Status { code: 401, .. } => ConnectError::Unauthorized {
            server,
            context,
            source,
        },
        ApiCause::Status { .. } => ConnectError::Unreachable {
            server,
            context,
            source,
        },
        ApiCause::Transport { message } => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                ConnectError::Tls {
                    server,
                    context,
                    source,
                }
            } else {
                ConnectError::Unreachable {
                    server,
                    context,
                    source,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kubeconfig_proxy_is_refused_not_bypassed() {
        let mut config = Config::new("https://127.0.0.1:6443".parse().expect("uri"));
        config.proxy_url = Some("http://proxy.example:3128".parse().expect("uri"));
        let Err(err) = http2_client(&config, true) else {
            panic!("a proxy-url is not supported");
        };
        assert!(
            matches!(err, kube::Error::ProxyProtocolDisabled { .. }),
            "{err}"
        );
        config.proxy_url = None;
        assert!(http2_client(&config, true).is_ok());
    }
}
