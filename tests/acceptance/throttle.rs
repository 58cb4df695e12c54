//! Throttling never fails an apply (issue: "honour 429 with Retry-After and API Priority and
//! Fairness by backing off and retrying … report retries at `-v`").
//!
//! A proxy on 127.0.0.1 in front of the test API server (`support/throttle_proxy.py`) answers
//! every fifth write 429 Too Many Requests with `Retry-After: 1` and a metav1.Status body, as
//! API Priority and Fairness does; `ferry apply` through it must still apply everything.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::project::{Project, command};
use crate::support::{TestNamespace, cluster};

/// How many ConfigMaps and Services the project holds (plus one Deployment).
const CONFIGMAPS: usize = 12;
const SERVICES: usize = 6;

/// The throttling proxy, killed when dropped.
struct ThrottleProxy {
    child: tokio::process::Child,
    port: u16,
    stats: PathBuf,
}

impl ThrottleProxy {
    /// Starts the proxy in front of the stack's API server; `dir` holds its stats file.
    async fn start(dir: &Path) -> ThrottleProxy {
        let stack = cluster();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/acceptance/support/throttle_proxy.py");
        let stats = dir.join("throttled");
        let mut child = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(stack.var("FERRY_TEST_APISERVER"))
            .arg(pki())
            .arg(&stats)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start python3 {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("proxy stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the proxy did not start within 20 s")
            .expect("read the proxy's stdout")
            .expect("the proxy exited before listening");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the proxy: {line}"));
        ThrottleProxy { child, port, stats }
    }

    /// How many requests the proxy answered 429 so far.
    fn throttled(&self) -> u32 {
        std::fs::read_to_string(&self.stats)
            .expect("the proxy's stats file")
            .trim()
            .parse()
            .expect("a count")
    }

    /// A kubeconfig whose `ferry-local` context goes through the proxy, as the stack's admin.
    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let pki = pki();
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: throttled\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {pki}/ca.crt\nusers:\n- name: admin\n  user:\n    client-certificate: {pki}/admin.crt\n    client-key: {pki}/admin.key\ncontexts:\n- name: ferry-local\n  context:\n    cluster: throttled\n    user: admin\ncurrent-context: ferry-local\n",
            port = self.port,
            pki = pki.display(),
        );
        std::fs::write(&path, text).expect("write the proxy kubeconfig");
        path
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The stack's PKI directory (CA, apiserver serving cert, admin client cert).
fn pki() -> PathBuf {
    PathBuf::from(cluster().var("FERRY_TEST_STATE")).join("pki")
}

/// ConfigMaps, Services and a Deployment: about twenty objects.
fn templates() -> Vec<(&'static str, String)> {
    let configmaps = (0..CONFIGMAPS)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\ndata:\n  index: \"{i}\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let services = (0..SERVICES)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-{i}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: registry.invalid/web:1}]\n".to_string();
    vec![
        ("configmaps.yaml.hbs", configmaps),
        ("services.yaml.hbs", services),
        ("deployment.yaml.hbs", deployment),
    ]
}

#[tokio::test]
async fn throttling_never_fails_an_apply() {
    let ns = TestNamespace::new("throttle").await;
    let templates = templates();
    let borrowed: Vec<(&str, &str)> = templates.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let project = Project::custom("throttled", ns.name(), &borrowed);
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy = ThrottleProxy::start(dir.path()).await;
    let kubeconfig = proxy.kubeconfig(dir.path());

    let home = tempfile::tempdir().expect("home");
    let args = ["-v", "apply", "t", "--no-lint"];
    let mut ferry = command(project.path(), &args, home.path());
    ferry.env("KUBECONFIG", &kubeconfig);
    let output = tokio::time::timeout(Duration::from_secs(240), ferry.output())
        .await
        .expect("ferry apply through the throttling proxy did not finish within 240 s")
        .expect("run ferry");
    let throttled = proxy.throttled();
    proxy.stop().await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().unwrap_or(-1);
    assert_eq!(
        code, 0,
        "apply through the throttling proxy ({throttled} answered 429)\nstderr:\n{stderr}"
    );
    assert!(
        throttled >= 3,
        "the proxy answered only {throttled} requests 429: the test proves nothing\n{stderr}"
    );
    assert!(
        stderr.contains("throttled by the API server (429 Too Many Requests); retrying"),
        "-v reports the retries:\n{stderr}"
    );
    assert!(stderr.contains("attempt=2"), "{stderr}");

    // Read back through the real API server, not the proxy.
    let configmaps = ns.api::<ConfigMap>();
    for i in 0..CONFIGMAPS {
        let name = format!("settings-{i}");
        let cm = configmaps.get_opt(&name).await.expect("get ConfigMap");
        let cm = cm.unwrap_or_else(|| panic!("ConfigMap {name} was not applied\n{stderr}"));
        let index = cm.data.and_then(|d| d.get("index").cloned());
        assert_eq!(index.as_deref(), Some(i.to_string().as_str()));
    }
    let services = ns.api::<Service>();
    for i in 0..SERVICES {
        let name = format!("web-{i}");
        assert!(
            services
                .get_opt(&name)
                .await
                .expect("get Service")
                .is_some(),
            "Service {name} was not applied\n{stderr}"
        );
    }
    assert!(
        ns.api::<Deployment>()
            .get_opt("web")
            .await
            .expect("get Deployment")
            .is_some(),
        "Deployment web was not applied\n{stderr}"
    );
}
