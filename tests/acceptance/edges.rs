//! Exit codes and edges (issue 10) against the local control plane: a release into a
//! namespace that does not exist says so like `apply`, exits 2 and changes nothing; `ferry
//! diff` into a closed pipe still exits 1 when something differs.

use std::process::Stdio;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use crate::support::project::{Project, command, ferry};
use crate::support::{TestNamespace, cluster, unique_name};

/// What a message for people must never contain: Rust `Debug` output of an API `Status`.
fn assert_no_debug_dump(stderr: &str) {
    for marker in ["Status {", "ErrorResponse", "ApiError", "Some(", "None,"] {
        assert!(
            !stderr.contains(marker),
            "a Debug dump ({marker}) reached the user:\n{stderr}"
        );
    }
}

/// Issue 10: `ferry release` of an environment whose namespace does not exist printed a Rust
/// Debug dump of the API Status and exited 1.
#[tokio::test]
async fn issue_10_release_into_a_missing_namespace_says_so_and_changes_nothing() {
    let namespace = unique_name("ferry-absent");
    let project = Project::demo(&namespace, "values:\n  replicas: 2\n");

    let apply = ferry(project.path(), &["apply", "t"]).await;
    apply.assert_code(2, "apply into a missing namespace");
    let hint =
        format!("the namespace `{namespace}` does not exist: create it with `ferry provision t`");
    assert!(apply.stderr.contains(&hint), "{}", apply.stderr);

    let release = ferry(project.path(), &["release", "t"]).await;
    release.assert_code(2, "release into a missing namespace");
    assert!(release.stderr.contains("error: "), "{}", release.stderr);
    assert!(release.stderr.contains(&hint), "{}", release.stderr);
    assert_no_debug_dump(&release.stderr);
    assert_eq!(release.stdout, "");

    let json = ferry(project.path(), &["release", "t", "--output", "json"]).await;
    json.assert_code(2, "release --output json into a missing namespace");
    let finished = json.finished();
    assert_eq!(finished["exit_code"], 2, "{finished}");
    assert_no_debug_dump(&json.stdout);
    assert_no_debug_dump(&json.stderr);

    let client = cluster().client().await;
    let found = Api::<Namespace>::all(client.clone())
        .get_opt(&namespace)
        .await
        .expect("get the namespace");
    assert!(found.is_none(), "the release created namespace {namespace}");
    let leases = Api::<Lease>::namespaced(client, &namespace)
        .list(&Default::default())
        .await
        .expect("list leases");
    assert!(leases.items.is_empty(), "a lease was left behind");
}

/// Issue 10: `ferry diff | head -1` exited 0 whatever diff found. A closed stdout only stops
/// the data; the exit code is still 1 when something differs, and no error is printed.
#[tokio::test]
async fn issue_10_diff_into_a_closed_pipe_still_exits_1() {
    let ns = TestNamespace::new("diff-pipe").await;
    let project = Project::demo(ns.name(), "values:\n  replicas: 2\n");
    let home = tempfile::tempdir().expect("home");
    let mut child = command(project.path(), &["diff", "t"], home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry diff");
    drop(child.stdout.take());
    let output = child.wait_with_output().await.expect("wait for ferry diff");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("would change"), "{stderr}");
    assert!(!stderr.contains("failed to write"), "{stderr}");
}
