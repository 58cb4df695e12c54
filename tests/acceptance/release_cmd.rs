//! `ferry release`, `history` and `rollback` (issue 5) through the real binary against the
//! local control plane: availability proof, automatic rollback on a never-ready rollout and
//! on a failing HTTP check, history, rollback to an older revision, the lock, and recovery
//! after `kill -9`.
//!
//! Each test copies the demo project into a temporary directory with `environments/t.yaml`
//! pointing at the test's own namespace; the kwok stages make pods slow (`ready-delay`) or
//! never ready.

use std::path::Path;
use std::time::{Duration, Instant};

use ferry::release::{LockOptions, RecordStore, ReleaseRecord, ReleaseStatus, acquire};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::TestNamespace;
use crate::support::cut::CutProxy;
use crate::support::project::{Project, Run, ferry, kill_mid_rollout, wait_applied};

/// The demo project with `environments/t.yaml` for `namespace`, 3 replicas, then `extra`.
fn demo(namespace: &str, extra: &str) -> Project {
    Project::demo(namespace, &three_replicas(extra))
}

/// Environment keys: 3 replicas, then `extra`.
fn three_replicas(extra: &str) -> String {
    format!("values:\n  replicas: 3\n{extra}")
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
    project.pod_template(None, Some("ferry.test/ready-delay: \"3s\""));
    let second = ferry(project.path(), &["release", "t"]).await;
    second.assert_code(0, "second release");
    assert!(
        second
            .stderr
            .contains("released demo to t as revision 2 in ")
            && second
                .stderr
                .contains("; service demo-web never below its floor (lowest 3 of 3"),
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

    project.pod_template(Some("ferry.test/never-ready: \"true\""), None);
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
    project.pod_template(None, Some("ferry.test/ready-delay: \"30s\""));
    kill_mid_rollout(&project, &ns, 2).await;

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
    project.pod_template(Some("tier: front"), None);

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

/// Starts `ferry args` in the background (see [`ferry`]).
fn spawn_ferry(project: &Project, args: &[&str]) -> tokio::task::JoinHandle<Run> {
    let path = project.path().to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ferry(&path, &args).await
    })
}

/// The release record of `revision` of the demo in environment `t`.
async fn record(ns: &TestNamespace, revision: u32) -> ReleaseRecord {
    RecordStore::new(ns.client.clone(), ns.name(), "demo", "t")
        .read(revision)
        .await
        .expect("read the release record")
}

/// Issue 10: during a rollout, two ready old pods are lost (deleted without a grace period,
/// as a node failure would): availability drops below 3/3 although `maxUnavailable: 0` is
/// set; the release fails naming the Service, the minimum and when, and rolls back.
#[tokio::test]
async fn losing_two_ready_pods_mid_release_rolls_back_naming_the_service_the_minimum_and_when() {
    let ns = TestNamespace::new("rel-lose").await;
    let project = demo(ns.name(), "");
    // Every pod, the replacements of lost ones too, becomes ready 3 s after it starts.
    project.pod_template(None, Some("ferry.test/ready-delay: \"3s\""));
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");
    let old = ready_pods(&ns).await;
    assert_eq!(old.len(), 3, "{old:?}");

    let run = spawn_ferry(
        &project,
        &[
            "release",
            "t",
            "--set",
            "config.greeting=second",
            "--output",
            "json",
        ],
    );
    wait_applied(&ns, 2).await;
    let pods = ns.api::<Pod>();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for p in &old[..2] {
        pods.delete(p, &now).await.expect("delete pod");
    }
    let failed = run.await.expect("ferry task");
    failed.assert_code(1, "a release that lost two pods");
    let outcome = failed.outcome();
    assert_eq!(outcome["status"], "rolled-back", "{outcome:#}");
    assert_eq!(outcome["rolled_back_to"], 1);
    let failure = outcome["failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("service demo-web fell to ")
            && failure.contains(" ready, ")
            && failure.contains("s into the rollout, below its floor of 3"),
        "{failure}"
    );
    let a = &outcome["availability"][0];
    assert_eq!(a["service"], "demo-web", "{outcome:#}");
    assert_eq!(a["held"], false);
    assert!(a["min_ready"].as_u64().is_some_and(|m| m < 3), "{a:#}");
    assert!(a["min_at"].is_string(), "{a:#}");
    assert!(
        a["draining_at_min"].is_u64() && a["draining_now"].is_u64(),
        "{a:#}"
    );
    assert_eq!(a["proven"], false);

    // The record says why.
    let r = record(&ns, 2).await;
    assert_eq!(r.status, ReleaseStatus::RolledBack);
    assert_eq!(r.failure.as_deref(), Some(failure));
    assert!(r.availability[0].min_at.is_some() && !r.availability[0].held);
}

/// Issue 10: a watch cut during the rollout (every connection to the API server closed, as an
/// API server restart would, through a proxy of this test's own) is not reported as a proof:
/// the release fails and rolls back, and the outcome says why.
#[tokio::test]
async fn a_watch_cut_mid_release_is_not_a_proof_and_rolls_back() {
    let ns = TestNamespace::new("rel-cut").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");
    project.pod_template(None, Some("ferry.test/ready-delay: \"5s\""));

    let proxy = CutProxy::start().await;
    let kubeconfig = proxy.write_kubeconfig(project.path());
    let kubeconfig = kubeconfig.to_str().expect("utf-8 path").to_string();
    let run = spawn_ferry(
        &project,
        &[
            "release",
            "t",
            "--kubeconfig",
            &kubeconfig,
            "--output",
            "json",
        ],
    );
    wait_applied(&ns, 2).await;
    // Past the apply and its prune, well inside the 5 s readiness delay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    let failed = run.await.expect("ferry task");
    failed.assert_code(1, "a release whose watch was cut");
    let outcome = failed.outcome();
    assert_eq!(outcome["status"], "rolled-back", "{outcome:#}");
    assert_eq!(outcome["rolled_back_to"], 1);
    let failure = outcome["failure"].as_str().unwrap_or_default();
    assert!(
        failure.starts_with("availability of service demo-web not proven: the EndpointSlice watch"),
        "{failure}"
    );
    let a = &outcome["availability"][0];
    assert_eq!(a["proven"], false, "{a:#}");
    assert_eq!(a["held"], true, "nothing fell: {a:#}");
    assert!(a["unproven"].is_string(), "{a:#}");
    let r = record(&ns, 2).await;
    assert_eq!(r.failure.as_deref(), Some(failure));
    assert!(!r.availability[0].proven);
}

/// Issue 10: a Lease taken by someone else mid-rollout stops the release at once (at the next
/// renewal, not after the rollout), restores nothing, and exits 3.
#[tokio::test]
async fn a_lease_taken_mid_rollout_stops_the_release_at_once() {
    let ns = TestNamespace::new("rel-lost").await;
    let project = demo(ns.name(), "");
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "first release");
    project.pod_template(None, Some("ferry.test/ready-delay: \"40s\""));
    let run = spawn_ferry(&project, &["release", "t"]);
    wait_applied(&ns, 2).await;

    let leases = ns.api::<Lease>();
    let name = ferry::release::lease_name("demo", "t");
    let mut lease = leases.get(&name).await.expect("the release's lease");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("mallory@elsewhere".into());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }
    leases
        .replace(&name, &PostParams::default(), &lease)
        .await
        .expect("take the lease");
    let stolen = Instant::now();
    let stopped = run.await.expect("ferry task");
    // One renewal period (a third of the 30 s lease), far short of the 40 s rollout.
    assert!(
        stolen.elapsed() < Duration::from_secs(20),
        "stopped {:?} after the lease was taken",
        stolen.elapsed()
    );
    stopped.assert_code(3, "a release that lost its lock");
    assert!(
        stopped
            .stderr
            .contains("lost the release lock of demo in t"),
        "{}",
        stopped.stderr
    );
    let r = record(&ns, 2).await;
    assert_eq!(r.status, ReleaseStatus::Failed);
    assert!(
        r.failure.as_deref().is_some_and(
            |f| f.contains("lost the release lock") && f.contains("during the rollout")
        ),
        "{:?}",
        r.failure
    );
    // Nothing was restored: the new template stays applied.
    let d = ns
        .api::<Deployment>()
        .get("demo-web")
        .await
        .expect("deployment");
    let annotations = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(
        annotations.contains_key("ferry.test/ready-delay"),
        "{annotations:?}"
    );
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
    project.pod_template(None, Some("ferry.test/ready-delay: \"2s\""));
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
    project.pod_template(None, Some("ferry.test/again: \"yes\""));
    let quiet = release_on_a_terminal(&project, "--no-progress").await;
    assert!(!quiet.contains("Rolling out"), "{quiet}");
    assert!(!quiet.contains("service demo-web:"), "{quiet}");
    assert!(
        quiet.contains("released demo to t as revision 3"),
        "{quiet}"
    );
}
