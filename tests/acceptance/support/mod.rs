//! Test support for the acceptance tests: the local test stack started by `tests/cluster/up`.
//!
//! [`cluster()`] reads `target/testcluster/env` once per test binary and [`Cluster::client`]
//! builds a kube client for the `ferry-local` context (admin) or [`Cluster::limited_client`] for
//! `ferry-local-limited` (a client certificate with no rights until a test grants some).
//! [`TestNamespace`] gives each test its own namespace, deleted when it drops. The registry and
//! S3 servers are reached through [`Cluster::registry`], [`Cluster::s3`] (s3s-fs) and
//! [`Cluster::moto`] (moto_server, with Object Lock).
//!
//! A missing or stopped stack makes the test **fail** with the command that starts it: the
//! tests never skip.

pub mod cut;
pub mod project;
pub mod sigv4;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Config};

/// What to run when the stack is not there.
const START_HINT: &str =
    "the local test cluster is not running: run scripts/test, or tests/cluster/up";

/// Keep test namespaces after the test (for a look with kubectl) when set to `1`.
const KEEP_NAMESPACES_VAR: &str = "FERRY_TEST_KEEP_NAMESPACES";

/// How long any single wait in the support code may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// The path of the env file written by `tests/cluster/up`.
pub fn env_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testcluster/env")
}

/// The local test stack, as described by `target/testcluster/env`.
#[derive(Debug, Clone)]
pub struct Cluster {
    vars: BTreeMap<String, String>,
}

/// The S3 endpoint and credentials of the local S3 server (s3s-fs).
#[derive(Debug, Clone)]
pub struct S3 {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// A bucket that exists when the stack starts.
    pub bucket: String,
    pub region: String,
}

/// The stack, read once per test binary. Panics with [`START_HINT`] when the env file is missing.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let path = env_file();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{START_HINT} ({} could not be read: {e})", path.display()));
        Cluster {
            vars: parse_env(&text),
        }
    })
}

/// Parses the `export NAME='value'` lines of the env file; other lines are ignored.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| {
            let v = v.strip_prefix('\'')?.strip_suffix('\'')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

impl Cluster {
    /// A variable of the env file; panics naming it when it is missing.
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "{} lacks {name}: restart the stack with tests/cluster/down && tests/cluster/up",
                env_file().display()
            )
        })
    }

    /// The kubeconfig with the `ferry-local` and `ferry-local-limited` contexts.
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// The OCI registry, as `127.0.0.1:<port>` (plain HTTP, no auth).
    pub fn registry(&self) -> &str {
        self.var("FERRY_TEST_REGISTRY")
    }

    /// The S3 server.
    pub fn s3(&self) -> S3 {
        S3 {
            endpoint: self.var("FERRY_TEST_S3_ENDPOINT").to_owned(),
            access_key: self.var("FERRY_TEST_S3_ACCESS_KEY").to_owned(),
            secret_key: self.var("FERRY_TEST_S3_SECRET_KEY").to_owned(),
            bucket: self.var("FERRY_TEST_S3_BUCKET").to_owned(),
            region: self.var("FERRY_TEST_S3_REGION").to_owned(),
        }
    }

    /// moto_server, the S3 server that enforces Object Lock, for `bucket` (created by the
    /// test). `FERRY_TEST_MOTO_ENDPOINT` in the test's own environment overrides the env
    /// file's (for a moto started by hand beside an older stack). moto accepts any credentials.
    pub fn moto(&self, bucket: &str) -> S3 {
        let endpoint = std::env::var("FERRY_TEST_MOTO_ENDPOINT")
            .ok()
            .filter(|e| e.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| self.var("FERRY_TEST_MOTO_ENDPOINT").to_owned());
        S3 {
            endpoint,
            access_key: "ferry-test".to_owned(),
            secret_key: "ferry-test-secret".to_owned(),
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
        }
    }

    /// The directory of the cached binaries (kubectl, helm, crane, …).
    pub fn bin_dir(&self) -> PathBuf {
        PathBuf::from(self.var("FERRY_TEST_BIN"))
    }

    /// An admin client (`ferry-local`, group `system:masters`), checked against the API server.
    pub async fn client(&self) -> Client {
        self.client_for(self.var("FERRY_TEST_CONTEXT")).await
    }

    /// A client for `ferry-local-limited` (user `ferry-limited`, no rights unless granted).
    pub async fn limited_client(&self) -> Client {
        self.client_for(self.var("FERRY_TEST_LIMITED_CONTEXT"))
            .await
    }

    /// A client for a context of the stack's kubeconfig. Built per call because a kube client
    /// belongs to the tokio runtime it was made on, and every `#[tokio::test]` has its own.
    pub async fn client_for(&self, context: &str) -> Client {
        let path = self.kubeconfig();
        let kubeconfig = Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("{START_HINT} (kubeconfig {}: {e})", path.display()));
        let options = KubeConfigOptions {
            context: Some(context.to_owned()),
            cluster: None,
            user: None,
        };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap_or_else(|e| panic!("kubeconfig {} context {context}: {e}", path.display()));
        let server = config.cluster_url.clone();
        let client =
            Client::try_from(config).unwrap_or_else(|e| panic!("kube client for {context}: {e}"));
        // Any answer, even 403 for the limited user, proves the API server is there.
        match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(s))) if s.is_forbidden() => {}
            Ok(Err(e)) => panic!("{START_HINT} (the API server at {server} did not answer: {e})"),
            Err(_) => {
                panic!("{START_HINT} (the API server at {server} did not answer within 10 s)")
            }
        }
        client
    }
}

/// Waits for `cond` on the named object, failing the test after `timeout` with `what`.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    cond: impl Condition<K>,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{what}: {name} was deleted while waiting"),
        Ok(Err(e)) => panic!("{what}: watch on {name} failed: {e}"),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            panic!("{what}: not reached within {timeout:?}; {name} is now:\n{now:#?}")
        }
    }
}

/// A namespace of one test: unique name, created, with its `default` ServiceAccount present
/// (pods are refused before that). Deleted when dropped, unless `FERRY_TEST_KEEP_NAMESPACES=1`.
pub struct TestNamespace {
    name: String,
    /// Admin client for this test's runtime.
    pub client: Client,
}

impl TestNamespace {
    /// Creates `ferry-<prefix>-<unique>`.
    pub async fn new(prefix: &str) -> TestNamespace {
        TestNamespace::with_labels(prefix, &[]).await
    }

    /// Creates the namespace with labels, e.g. `pod-security.kubernetes.io/enforce=restricted`.
    pub async fn with_labels(prefix: &str, labels: &[(&str, &str)]) -> TestNamespace {
        let client = cluster().client().await;
        let name = unique_name(&format!("ferry-{prefix}"));
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_for(
            &sas,
            "default",
            WAIT,
            "default ServiceAccount of the test namespace",
            conditions::is_created(),
        )
        .await;
        TestNamespace { name, client }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A typed API for this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var(KEEP_NAMESPACES_VAR).as_deref() == Ok("1") {
            return;
        }
        // Namespace deletion then finishes in the background (the namespace controller
        // removes the contents).
        delete_cluster_scoped::<Namespace>(self.name.clone());
    }
}

/// Deletes the cluster-scoped object `name` of kind `K`, for `Drop` impls: Drop cannot
/// await and the test's runtime may be single-threaded, so this deletes from a fresh thread
/// with its own runtime and client. A failed delete must not hide the test's own outcome, so
/// errors are ignored.
pub fn delete_cluster_scoped<K>(name: String)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = cluster().client().await;
            let _ = Api::<K>::all(client)
                .delete(&name, &DeleteParams::background())
                .await;
        });
        Ok::<_, std::io::Error>(())
    });
    let _ = done.join();
}

/// Deletes the named CustomResourceDefinition when dropped (at the end of a test, passed or
/// failed).
pub struct DeleteCrd(pub String);

impl Drop for DeleteCrd {
    fn drop(&mut self) {
        delete_cluster_scoped::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(self.0.clone());
    }
}

/// A DNS-1123 name unique within this test run: prefix, process id, counter.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xfff)
}

/// Rollout state of a Deployment, like `kubectl rollout status`, pinned to `generation`
/// (the one returned by the write that started the rollout): `Ok(true)` done, `Ok(false)` in
/// progress, `Err(message)` when the progress deadline was exceeded.
pub fn rollout_state(d: &Deployment, generation: i64) -> Result<bool, String> {
    let Some(st) = &d.status else {
        return Ok(false);
    };
    if st.observed_generation.unwrap_or(0) < generation {
        return Ok(false);
    }
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return Err(c.message.clone().unwrap_or_default());
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    Ok(updated >= want
        && st.replicas.unwrap_or(0) <= updated
        && st.available_replicas.unwrap_or(0) >= updated)
}

/// Waits until the Deployment's rollout to `generation` completes; panics if it fails or stalls.
pub async fn wait_rollout(
    api: &Api<Deployment>,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> Deployment {
    let cond =
        move |d: Option<&Deployment>| d.is_some_and(|d| rollout_state(d, generation) != Ok(false));
    let d = wait_for(api, name, timeout, "deployment rollout", cond).await;
    if let Err(msg) = rollout_state(&d, generation) {
        panic!("deployment {name} failed to roll out: {msg}");
    }
    d
}
