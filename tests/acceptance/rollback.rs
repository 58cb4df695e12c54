//! Issue 10, item 2: the way back needs only the cluster. `ferry rollback` and the recovery of
//! a release killed mid-rollout apply the recorded objects as they were: they work with a broken
//! template and without the secrets file, from a directory holding only `ferry.yaml` and the
//! environment file, and with no project at all given `--app`, `--namespace` and `--context`.

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::support::TestNamespace;
use crate::support::project::{Project, ferry, ferry_in, kill_mid_rollout};

/// The demo project for `namespace` with 3 replicas.
fn demo(namespace: &str) -> Project {
    Project::demo(namespace, "values:\n  replicas: 3\n")
}

/// Breaks the project the way an SRE meets it after a bad merge on the releasing machine: a
/// template that does not parse and a secrets file that is gone.
fn break_project(project: &Project) {
    project.write(
        "templates/broken.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{#if values.replicas}}broken\n",
    );
    project.remove("secrets.yaml");
}

/// Undoes [`break_project`].
fn mend_project(project: &Project) {
    project.remove("templates/broken.yaml.hbs");
    project.write("secrets.yaml", "db-password: acceptance-only\n");
}

/// The greeting the live ConfigMap serves.
async fn live_greeting(ns: &TestNamespace) -> String {
    let config = ns
        .api::<ConfigMap>()
        .get("demo-web-config")
        .await
        .expect("config map");
    serde_json::to_string(&config.data).expect("json")
}

/// Releases revision 1 (as the project is) and revision 2 (`config.greeting=second`).
async fn two_revisions(project: &Project) {
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release 1");
    ferry(
        project.path(),
        &["release", "t", "--set", "config.greeting=second"],
    )
    .await
    .assert_code(0, "release 2");
}

#[tokio::test]
async fn rollback_works_with_a_broken_template_and_no_secrets_file() {
    let ns = TestNamespace::new("rb-broken").await;
    let project = demo(ns.name());
    two_revisions(&project).await;
    assert!(live_greeting(&ns).await.contains("second"));

    break_project(&project);
    // The project really is broken: a release cannot render it.
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(2, "release of the broken project");
    let rolled = ferry(
        project.path(),
        &["rollback", "t", "--to", "1", "--output", "json"],
    )
    .await;
    rolled.assert_code(0, "rollback --to 1 of a broken project");
    let outcome = rolled.outcome();
    assert_eq!(outcome["revision"], 3, "{outcome:#}");
    assert_eq!(outcome["status"], "succeeded");
    assert_eq!(outcome["source"], "rollback to revision 1");
    assert!(!live_greeting(&ns).await.contains("second"));

    // What runs is revision 1's objects: the project as revision 1 rendered it diffs clean.
    mend_project(&project);
    ferry(project.path(), &["diff", "t"])
        .await
        .assert_code(0, "diff against revision 1's objects");
}

#[tokio::test]
async fn rollback_refuses_set_overrides() {
    let project = demo("unused-namespace");
    let refused = ferry(
        project.path(),
        &["rollback", "t", "--set", "config.greeting=x"],
    )
    .await;
    refused.assert_code(2, "rollback --set");
    assert!(refused.stderr.contains("--set"), "{}", refused.stderr);
}

#[tokio::test]
async fn rollback_and_history_need_only_ferry_yaml_and_the_environment_file_or_flags() {
    let ns = TestNamespace::new("rb-files").await;
    let project = demo(ns.name());
    two_revisions(&project).await;

    // Only ferry.yaml (whose pipeline names environments that have no file here) and t.yaml.
    let bare = tempfile::tempdir().expect("dir");
    std::fs::copy(
        project.path().join("ferry.yaml"),
        bare.path().join("ferry.yaml"),
    )
    .expect("copy ferry.yaml");
    std::fs::create_dir(bare.path().join("environments")).expect("mkdir");
    std::fs::copy(
        project.path().join("environments/t.yaml"),
        bare.path().join("environments/t.yaml"),
    )
    .expect("copy t.yaml");
    let rolled = ferry_in(bare.path(), &["rollback", "t", "--to", "1"]).await;
    rolled.assert_code(0, "rollback from ferry.yaml and t.yaml alone");
    assert!(rolled.stderr.contains("as revision 3"), "{}", rolled.stderr);
    assert!(!live_greeting(&ns).await.contains("second"));

    // No project at all: flags name the environment.
    let empty = tempfile::tempdir().expect("dir");
    let flags = [
        "--app",
        "demo",
        "--namespace",
        ns.name(),
        "--context",
        "ferry-local",
    ];
    let mut args = vec!["rollback", "t", "--to", "2", "--output", "json"];
    args.extend(flags);
    let rolled = ferry_in(empty.path(), &args).await;
    rolled.assert_code(0, "rollback with --app, --namespace and --context");
    assert_eq!(rolled.outcome()["revision"], 4);
    assert!(live_greeting(&ns).await.contains("second"));

    let mut args = vec!["history", "t", "--output", "json"];
    args.extend(flags);
    let history = ferry_in(empty.path(), &args).await;
    history.assert_code(0, "history with flags");
    let doc: Value = serde_json::from_str(&history.stdout).expect("one JSON document");
    assert_eq!(doc["releases"].as_array().map(Vec::len), Some(4), "{doc:#}");

    // --app without --context is bad input, and so is no project without flags.
    ferry_in(
        empty.path(),
        &["rollback", "t", "--app", "demo", "--namespace", ns.name()],
    )
    .await
    .assert_code(2, "--app without --context");
    let lost = ferry_in(empty.path(), &["rollback", "t"]).await;
    lost.assert_code(2, "no project and no flags");
    assert!(lost.stderr.contains("--app"), "{}", lost.stderr);
}

#[tokio::test]
async fn a_release_killed_mid_rollout_is_recovered_by_a_rollback_of_a_broken_project() {
    let ns = TestNamespace::new("rb-kill").await;
    let project = demo(ns.name());
    two_revisions(&project).await;

    // A slow rollout of revision 3, killed with SIGKILL once it is under way.
    project.pod_template(None, Some("ferry.test/ready-delay: \"30s\""));
    kill_mid_rollout(&project, &ns, 3).await;

    // The machine that recovers has a broken checkout and no secrets.
    break_project(&project);
    let rolled = ferry(
        project.path(),
        &[
            "rollback",
            "t",
            "--to",
            "1",
            "--wait-lock",
            "90s",
            "--output",
            "json",
        ],
    )
    .await;
    rolled.assert_code(0, "rollback after kill -9, broken project");
    let outcome = rolled.outcome();
    assert_eq!(outcome["recovered"]["revision"], 3, "{outcome:#}");
    assert_eq!(outcome["recovered"]["status"], "rolled-back");
    assert_eq!(outcome["recovered"]["restored"], 2);
    assert_eq!(outcome["revision"], 4);
    assert_eq!(outcome["status"], "succeeded");
    assert!(!live_greeting(&ns).await.contains("second"));

    // Revision 1's objects run: the project at revision 1 diffs clean.
    mend_project(&project);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/deployment.yaml.hbs"),
        project.path().join("templates/deployment.yaml.hbs"),
    )
    .expect("restore the template");
    ferry(project.path(), &["diff", "t"])
        .await
        .assert_code(0, "diff against revision 1's objects");
}
