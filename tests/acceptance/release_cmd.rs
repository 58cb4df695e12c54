//! `ferry release`, `history` and `rollback` (issue 5) through the real binary against the
//! local control plane: availability proof, automatic rollback on a never-ready rollout and
//! on a failing HTTP check, history, rollback to an older revision, the lock, and recovery
//! after `kill -9`.
//!
//! Each test copies the demo project into a temporary directory with `environments/t.yaml`
//! pointing at the test's own namespace; the kwok stages make pods slow (`ready-delay`) or
//! never ready.

use std::path::Path;
use std::time::Duration;

use ferry::release::{LockOptions, acquire};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::TestNamespace;
use crate::support::project::{Project, command, ferry};

/// The demo project with `environments/t.yaml` for `namespace`, 3 replicas, then `extra`.
fn demo(namespace: &str, extra: &str) -> Project {
    Project::demo(namespace, &three_replicas(extra))
}

/// Environment keys: 3 replicas, then `extra`.
fn three_replicas(extra: &str) -> String {
    format!("values:\n  replicas: 3\n{extra}")
}

/// Edits the pod template of the demo Deployment: adds `label` and `annotation` lines
/// (already indented YAML `key: value`).
fn pod_template(project: &Project, label: Option<&str>, annotation: Option<&str>) {
    let path = project.path().join("templates/deployment.yaml.hbs");
    let text = std::fs::read_to_string(&path).expect("read deployment template");
    let anchor = "      labels:\n        {{> labels}}\n      annotations:\n";
    assert!(
        text.contains(anchor),
        "the demo Deployment template changed shape"
    );
    let mut with = String::from("      labels:\n        {{> labels}}\n");
    if let Some(l) = label {
        with.push_str(&format!("        {l}\n"));
    }
    with.push_str("      annotations:\n");
    if let Some(a) = annotation {
        with.push_str(&format!("        {a}\n"));
    }
    std::fs::write(&path, text.replacen(anchor, &with, 1)).expect("write template");
}

/// Names of the Ready pods of the demo.
async fn ready_pods(ns: &TestNamespace) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=demo"))
        .await
        .expect("list pods");
    let mut names: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// An HTTP server on 127.0.0.1: `/ok` answers 200, everything else 500. Returns the base URL.
async fn check_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = if path == "/ok" {
                    ("200 OK", "fine")
                } else {
                    ("500 Internal Server Error", "broken")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_release_with_delayed_readiness_keeps_three_of_three_endpoints() {
    let ns = TestNamespace::new("rel-avail").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");

    // Slow pods: every new pod becomes ready only after 3 s.
    pod_template(&project, None, Some("ferry.test/ready-delay: \"3s\""));
    let second = ferry(project.path(), &["release", "t"]).await;
    second.assert_code(0, "second release");
    assert!(
        second
            .stderr
            .contains("released demo to t as revision 2 in ")
            && second
                .stderr
                .contains("; service demo-web never below its floor (lowest 3 of 3)"),
        "{}",
        second.stderr
    );
    // Off a terminal nothing is drawn: no progress lines, no cursor movement.
    assert!(
        !second.stderr.contains("Rolling out") && !second.stderr.contains('\x1b'),
        "{}",
        second.stderr
    );
    let table = ferry(project.path(), &["history", "t"]).await;
    table.assert_code(0, "history table");
    assert!(table.stdout.contains("demo-web 3/3"), "{}", table.stdout);

    let history = ferry(project.path(), &["history", "t", "--output", "json"]).await;
    history.assert_code(0, "history");
    let doc: Value = serde_json::from_str(&history.stdout).expect("one JSON document");
    let releases = doc["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 2, "{doc:#}");
    assert_eq!(releases[1]["status"], "succeeded");
    assert_eq!(releases[1]["released_by"], "acceptance");
    let availability = &releases[1]["availability"][0];
    assert_eq!(availability["service"], "demo-web");
    assert_eq!(availability["floor"], 3);
    assert_eq!(availability["min_ready"], 3);
    assert_eq!(availability["held"], true);
}

#[tokio::test]
async fn a_never_ready_release_rolls_back_and_the_old_pods_keep_serving() {
    let ns = TestNamespace::new("rel-never").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");
    let before = ready_pods(&ns).await;
    assert_eq!(before.len(), 3, "{before:?}");

    pod_template(&project, Some("ferry.test/never-ready: \"true\""), None);
    let failed = ferry(
        project.path(),
        &[
            "release",
            "t",
            "--set",
            "progressDeadlineSeconds=5",
            "--output",
            "json",
        ],
    )
    .await;
    failed.assert_code(1, "never-ready release");
    let outcome = failed.outcome();
    assert_eq!(outcome["status"], "rolled-back", "{outcome:#}");
    assert_eq!(outcome["rolled_back_to"], 1);
    assert!(
        outcome["failure"]
            .as_str()
            .is_some_and(|f| f.contains("demo-web")),
        "{outcome:#}"
    );
    assert_eq!(outcome["availability"][0]["min_ready"], 3, "{outcome:#}");
    let finished = failed.finished();
    assert_eq!(finished["exit_code"], 1);

    // The old pods never stopped serving, and the template is the old one again.
    assert_eq!(ready_pods(&ns).await, before);
    let deployment = ns
        .api::<Deployment>()
        .get("demo-web")
        .await
        .expect("deployment");
    let labels = deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(!labels.contains_key("ferry.test/never-ready"), "{labels:?}");

    let history = ferry(project.path(), &["history", "t"]).await;
    history.assert_code(0, "history");
    assert!(history.stdout.contains("rolled-back"), "{}", history.stdout);
}

#[tokio::test]
async fn a_failing_http_check_rolls_back() {
    let ns = TestNamespace::new("rel-check").await;
    let base = check_server().await;
    let checks = |path: &str| {
        format!(
            "gates:\n  checks:\n    - name: health\n      url: {base}{path}\n      retries: 2\n      timeout: 2s\n"
        )
    };
    let project = demo(ns.name(), &checks("/ok"));
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release with a passing check");

    project.environment(ns.name(), &three_replicas(&checks("/fail")));
    let failed = ferry(
        project.path(),
        &[
            "release",
            "t",
            "--set",
            "config.greeting=changed",
            "--output",
            "json",
        ],
    )
    .await;
    failed.assert_code(1, "release with a failing check");
    let outcome = failed.outcome();
    assert_eq!(outcome["status"], "rolled-back", "{outcome:#}");
    assert_eq!(outcome["rolled_back_to"], 1);
    assert_eq!(outcome["checks"][0]["passed"], false);
    assert!(
        outcome["failure"]
            .as_str()
            .is_some_and(|f| f.contains("check health failed")),
        "{outcome:#}"
    );
    let config = ns
        .api::<ConfigMap>()
        .get("demo-web-config")
        .await
        .expect("config map");
    let data = serde_json::to_string(&config.data).expect("json");
    assert!(
        !data.contains("changed"),
        "the config was not restored: {data}"
    );
}

#[tokio::test]
async fn history_lists_revisions_and_rollback_to_one_restores_it() {
    let ns = TestNamespace::new("rel-rollback").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release 1");
    ferry(
        project.path(),
        &["release", "t", "--set", "config.greeting=second"],
    )
    .await
    .assert_code(0, "release 2");
    let config = ns
        .api::<ConfigMap>()
        .get("demo-web-config")
        .await
        .expect("config map");
    assert!(
        serde_json::to_string(&config.data)
            .expect("json")
            .contains("second")
    );

    let rolled = ferry(
        project.path(),
        &["rollback", "t", "--to", "1", "--output", "json"],
    )
    .await;
    rolled.assert_code(0, "rollback --to 1");
    let outcome = rolled.outcome();
    assert_eq!(outcome["revision"], 3);
    assert_eq!(outcome["status"], "succeeded");
    assert_eq!(outcome["source"], "rollback to revision 1");
    let config = ns
        .api::<ConfigMap>()
        .get("demo-web-config")
        .await
        .expect("config map");
    assert!(
        !serde_json::to_string(&config.data)
            .expect("json")
            .contains("second")
    );

    let history = ferry(project.path(), &["history", "t", "--output", "json"]).await;
    history.assert_code(0, "history");
    let doc: Value = serde_json::from_str(&history.stdout).expect("one JSON document");
    let revisions: Vec<(u64, String)> = doc["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().unwrap_or(0),
                r["status"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(
        revisions,
        vec![
            (1, "succeeded".into()),
            (2, "succeeded".into()),
            (3, "succeeded".into())
        ]
    );
    // The first and the third release carry the same candidate.
    assert_eq!(
        doc["releases"][0]["candidate"],
        doc["releases"][2]["candidate"]
    );

    // A revision that does not exist is bad input.
    ferry(project.path(), &["rollback", "t", "--to", "9"])
        .await
        .assert_code(2, "rollback to a missing revision");
}

#[tokio::test]
async fn a_held_lock_makes_a_release_refuse_naming_the_holder() {
    let ns = TestNamespace::new("rel-lock").await;
    let project = demo(ns.name(), "");
    let guard = acquire(
        &ns.client,
        &LockOptions {
            namespace: ns.name().to_string(),
            app: "demo".to_string(),
            env: "t".to_string(),
            holder: "alice@ci-runner".to_string(),
            duration: Duration::from_secs(60),
            wait: None,
        },
    )
    .await
    .expect("take the lock");
    let refused = ferry(project.path(), &["release", "t"]).await;
    refused.assert_code(1, "release under a held lock");
    assert!(
        refused.stderr.contains("held by alice@ci-runner"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--wait-lock"), "{}", refused.stderr);
    // Nothing was recorded or applied.
    assert!(
        ns.api::<Deployment>()
            .get_opt("demo-web")
            .await
            .expect("get")
            .is_none()
    );

    guard.release().await.expect("let the lock go");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release after the lock is free");
}

#[tokio::test]
async fn a_release_killed_mid_rollout_is_recovered_by_the_next_one() {
    let ns = TestNamespace::new("rel-kill").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release 1");

    // A slow rollout, killed with SIGKILL once it is under way.
    pod_template(&project, None, Some("ferry.test/ready-delay: \"30s\""));
    let home = tempfile::tempdir().expect("home");
    let mut child = command(
        project.path(),
        &["release", "t", "--output", "json"],
        home.path(),
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("start ferry");
    let deployments = ns.api::<Deployment>();
    let started = std::time::Instant::now();
    loop {
        let d = deployments.get("demo-web").await.expect("deployment");
        if d.metadata.generation.unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second release never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;

    // The next release waits for the dead holder's lease, finds revision 2 pending, restores
    // revision 1, then releases.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/deployment.yaml.hbs"),
        project.path().join("templates/deployment.yaml.hbs"),
    )
    .expect("restore the template");
    let next = ferry(
        project.path(),
        &["release", "t", "--wait-lock", "90s", "--output", "json"],
    )
    .await;
    next.assert_code(0, "the release after kill -9");
    let outcome = next.outcome();
    assert_eq!(outcome["recovered"]["revision"], 2, "{outcome:#}");
    assert_eq!(outcome["recovered"]["status"], "rolled-back");
    assert_eq!(outcome["recovered"]["restored"], 1);
    assert_eq!(outcome["revision"], 3);
    assert_eq!(outcome["status"], "succeeded");

    let history = ferry(project.path(), &["history", "t", "--output", "json"]).await;
    let doc: Value = serde_json::from_str(&history.stdout).expect("one JSON document");
    assert_eq!(doc["releases"][1]["status"], "rolled-back", "{doc:#}");
}

#[tokio::test]
async fn a_changed_selector_is_refused_before_anything_is_applied() {
    let ns = TestNamespace::new("rel-selector").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release 1");

    let path = project.path().join("templates/deployment.yaml.hbs");
    let text = std::fs::read_to_string(&path).expect("read template");
    let anchor = "      app.kubernetes.io/component: web\n  strategy:";
    assert!(
        text.contains(anchor),
        "the demo Deployment template changed shape"
    );
    std::fs::write(
        &path,
        text.replacen(
            anchor,
            "      app.kubernetes.io/component: web\n      tier: front\n  strategy:",
            1,
        ),
    )
    .expect("write template");
    pod_template(&project, Some("tier: front"), None);

    let refused = ferry(project.path(), &["release", "t"]).await;
    refused.assert_code(2, "release with a changed selector");
    assert!(
        refused.stderr.contains("ZD-SELECTOR-CHANGE"),
        "{}",
        refused.stderr
    );
    let history = ferry(project.path(), &["history", "t", "--output", "json"]).await;
    let doc: Value = serde_json::from_str(&history.stdout).expect("one JSON document");
    assert_eq!(doc["releases"].as_array().map(Vec::len), Some(1), "{doc:#}");
}

/// Runs `ferry release t <extra>` in `project` on a pseudo-terminal (util-linux `script`),
/// returning everything the terminal showed.
async fn release_on_a_terminal(project: &Project, extra: &str) -> String {
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let line = format!(
        "{ferry} release t --project '{}' {extra}",
        project.path().display()
    );
    let home = tempfile::tempdir().expect("home");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .current_dir(project.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", crate::support::cluster().kubeconfig())
            .env("HOME", home.path())
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env("FERRY_USER", "acceptance")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the release on a terminal finished in time")
    .expect("run script (util-linux)");
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "release on a terminal failed:\n{shown}"
    );
    shown
}

#[tokio::test]
async fn a_release_on_a_terminal_shows_live_progress_unless_no_progress() {
    let ns = TestNamespace::new("rel-tty").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");
    // New pods become ready after 2 s: the rollout takes long enough to be drawn.
    pod_template(&project, None, Some("ferry.test/ready-delay: \"2s\""));
    let shown = release_on_a_terminal(&project, "").await;
    assert!(shown.contains("Rolling out"), "{shown}");
    assert!(shown.contains("Deployment demo-web"), "{shown}");
    assert!(shown.contains("service demo-web:"), "{shown}");
    assert!(shown.contains("floor 3"), "{shown}");
    assert!(
        shown.contains("released demo to t as revision 2"),
        "{shown}"
    );

    // Another change (the 2 s readiness delay stays).
    pod_template(&project, None, Some("ferry.test/again: \"yes\""));
    let quiet = release_on_a_terminal(&project, "--no-progress").await;
    assert!(!quiet.contains("Rolling out"), "{quiet}");
    assert!(!quiet.contains("service demo-web:"), "{quiet}");
    assert!(
        quiet.contains("released demo to t as revision 3"),
        "{quiet}"
    );
}
