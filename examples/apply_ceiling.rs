//! The API server's own ceiling for server-side apply, for `scripts/bench apply`: a bare
//! parallel client that sends only the writes. It reads a rendered directory (`ferry render
//! -o DIR`, one object per `*.yaml` file), then PATCHes every object as an apply patch
//! (field manager `bench`, `force=true`) into one namespace, N requests in flight, over one
//! HTTP/2 connection (or HTTP/1.1 connections with `--http1`). No discovery, no list, no dry
//! run, no retries: the URL comes from apiVersion and kind (namespaced kinds only, plural =
//! the kind in lower case plus `s`, `es` or `ies`), and any failed write fails the run.
//!
//! It uses nothing of ferry's own code, so the figure stays the server's whatever ferry's
//! engine becomes.
//!
//! ```text
//! apply_ceiling DIR NAMESPACE [--parallel N] [--context NAME] [--http1]
//! ```
//!
//! Prints one line on stdout: `objects writes_ms` (the time from the first write sent to the
//! last answer, after a `GET /version` that opens the connection); a summary on stderr.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};

type BoxError = Box<dyn Error + Send + Sync>;

struct Args {
    dir: PathBuf,
    namespace: String,
    parallel: usize,
    context: Option<String>,
    http1: bool,
}

/// One write: where it goes and what it sends.
struct Write1 {
    path: String,
    body: Vec<u8>,
}

fn parse_args() -> Result<Args, BoxError> {
    let usage = "usage: apply_ceiling DIR NAMESPACE [--parallel N] [--context NAME] [--http1]";
    let mut positional = Vec::new();
    let mut parallel = 32;
    let mut context = None;
    let mut http1 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--parallel" => parallel = args.next().ok_or(usage)?.parse()?,
            "--context" => context = Some(args.next().ok_or(usage)?),
            "--http1" => http1 = true,
            _ if arg.starts_with("--") => return Err(format!("unknown flag {arg}\n{usage}").into()),
            _ => positional.push(arg),
        }
    }
    let [dir, namespace] = <[String; 2]>::try_from(positional).map_err(|_| usage)?;
    if parallel == 0 {
        return Err("--parallel must be at least 1".into());
    }
    Ok(Args {
        dir: dir.into(),
        namespace,
        parallel,
        context,
        http1,
    })
}

/// The plural resource name of `kind`, as the API server names the common kinds.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// The writes of every `*.yaml` file of `dir` (sorted by name), into `namespace`.
fn read_writes(dir: &Path, namespace: &str) -> Result<Vec<Write1>, BoxError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut writes = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let mut object: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let field = |name: &str| -> Result<String, BoxError> {
            Ok(object
                .pointer(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{}: no {name}", file.display()))?
                .to_string())
        };
        let (api_version, kind, name) = (
            field("/apiVersion")?,
            field("/kind")?,
            field("/metadata/name")?,
        );
        let prefix = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        if let Some(metadata) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            metadata.insert("namespace".into(), namespace.into());
        }
        writes.push(Write1 {
            path: format!(
                "{prefix}/namespaces/{namespace}/{}/{name}?fieldManager=bench&force=true",
                plural(&kind)
            ),
            body: serde_json::to_vec(&object)?,
        });
    }
    Ok(writes)
}

/// A client of `config` that negotiates HTTP/2 (falling back to HTTP/1.1): one connection
/// carries every request in flight.
fn http2_client(config: &Config) -> Result<Client, BoxError> {
    use kube::client::ConfigExt;

    let tls = config.rustls_client_config()?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let transport =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, kube::client::Body>(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .map_err(|e: hyper_util::client::legacy::Error| Box::new(e) as BoxError)
        .service(transport);
    Ok(Client::new(service, config.default_namespace.clone()))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let writes = read_writes(&args.dir, &args.namespace)?;
    if writes.is_empty() {
        return Err(format!("no *.yaml files in {}", args.dir.display()).into());
    }
    let config = Config::from_kubeconfig(&KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    })
    .await?;
    let client = if args.http1 {
        Client::try_from(config)?
    } else {
        http2_client(&config)?
    };
    // Opens the connection (TLS handshake) before the timing, as any client would have.
    client.apiserver_version().await?;

    let started = Instant::now();
    let client = &client;
    futures::stream::iter(&writes)
        .map(|w| async move {
            let request = http::Request::patch(w.path.as_str())
                .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
                .body(w.body.clone())?;
            client
                .request_text(request)
                .await
                .map_err(|e| -> BoxError { format!("PATCH {}: {e}", w.path).into() })?;
            Ok::<(), BoxError>(())
        })
        .buffer_unordered(args.parallel)
        .try_collect::<()>()
        .await?;
    let elapsed = started.elapsed();

    let ms = elapsed.as_secs_f64() * 1000.0;
    let n = writes.len();
    writeln!(std::io::stdout(), "{n} {ms:.0}")?;
    writeln!(
        std::io::stderr(),
        "apply_ceiling: {n} objects in {ms:.0} ms ({:.0} objects/s), {} in flight, {}",
        n as f64 / elapsed.as_secs_f64(),
        args.parallel,
        if args.http1 { "HTTP/1.1" } else { "HTTP/2" },
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "apply_ceiling: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
