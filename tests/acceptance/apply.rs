//! `ferry provision`, `apply`, `diff` and `status` (issue 4) against the local control plane,
//! through the real binary with a clean environment.
//!
//! Each test copies the demo project (or writes a small one) into a temporary directory with an
//! environment file `environments/t.yaml` pointing at the test's own namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::support::project::{Project, ferry};
use crate::support::{DeleteCrd, TestNamespace, cluster, unique_name};

fn resource_versions<K>(items: &[K]) -> BTreeMap<String, String>
where
    K: kube::Resource,
{
    items
        .iter()
        .map(|o| {
            (
                o.meta().name.clone().unwrap_or_default(),
                o.meta().resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

const EXTRA_CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n";

#[tokio::test]
async fn provision_twice_changes_nothing_the_second_time() {
    let ns = TestNamespace::new("provision").await;
    let project = Project::demo(
        ns.name(),
        "quota:\n  pods: 20\n  requests.cpu: \"4\"\nlimits:\n  default: {cpu: 500m, memory: 128Mi}\n  defaultRequest: {cpu: 50m, memory: 32Mi}\n",
    );
    let first = ferry(project.path(), &["provision", "t", "--output", "json"]).await;
    first.assert_code(0, "first provision");
    let actions = first.actions();
    assert!(actions.values().all(|a| a != "unchanged"), "{actions:#?}");
    for expected in [
        "Namespace/",
        "NetworkPolicy/ferry-default-deny",
        "NetworkPolicy/ferry-allow-dns",
        "NetworkPolicy/ferry-allow-demo-web",
        "ResourceQuota/ferry-quota",
        "LimitRange/ferry-limits",
        "ServiceAccount/ferry-deployer",
        "Role/ferry-deployer",
        "RoleBinding/ferry-deployer",
    ] {
        assert!(
            actions.keys().any(|k| k.starts_with(expected)),
            "{expected} missing: {actions:#?}"
        );
    }

    let second = ferry(project.path(), &["provision", "t", "--output", "json"]).await;
    second.assert_code(0, "second provision");
    let changed: Vec<_> = second
        .actions()
        .into_iter()
        .filter(|(_, a)| a != "unchanged")
        .collect();
    assert!(
        changed.is_empty(),
        "the second provision changed {changed:?}"
    );
    let finished = second.events().pop().expect("a finished event");
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["changes"], 0);

    // What was made.
    let client = ns.client.clone();
    let namespace = Api::<Namespace>::all(client.clone())
        .get(ns.name())
        .await
        .expect("namespace");
    let labels = namespace.metadata.labels.unwrap_or_default();
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str),
            Some("restricted")
        );
        assert_eq!(
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}-version"))
                .map(String::as_str),
            Some("v1.36")
        );
    }
    let deny = ns
        .api::<NetworkPolicy>()
        .get("ferry-default-deny")
        .await
        .expect("default deny");
    let spec = deny.spec.expect("spec");
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    let allow = ns
        .api::<NetworkPolicy>()
        .get("ferry-allow-demo-web")
        .await
        .expect("allowance");
    let port = serde_json::to_value(&allow.spec).expect("json")["ingress"][0]["ports"][0].clone();
    assert_eq!(port, json!({"port": 8080, "protocol": "TCP"}));
    let quota = ns
        .api::<ResourceQuota>()
        .get("ferry-quota")
        .await
        .expect("quota");
    assert_eq!(
        serde_json::to_value(quota.spec).expect("json")["hard"]["pods"],
        "20"
    );
    let limits = ns
        .api::<LimitRange>()
        .get("ferry-limits")
        .await
        .expect("limit range");
    assert_eq!(
        serde_json::to_value(limits.spec).expect("json")["limits"][0]["default"]["memory"],
        "128Mi"
    );
    let sa = ns
        .api::<ServiceAccount>()
        .get("ferry-deployer")
        .await
        .expect("deployer SA");
    assert_eq!(sa.automount_service_account_token, Some(false));
    ns.api::<Role>()
        .get("ferry-deployer")
        .await
        .expect("deployer Role");
    ns.api::<RoleBinding>()
        .get("ferry-deployer")
        .await
        .expect("deployer RoleBinding");
}

#[tokio::test]
async fn a_deployer_bound_by_provision_can_apply_and_is_refused_elsewhere() {
    let ns = TestNamespace::new("deployer").await;
    let elsewhere = TestNamespace::new("elsewhere").await;
    let limited = cluster().var("FERRY_TEST_LIMITED_CONTEXT").to_string();
    let project = Project::demo(
        ns.name(),
        "deployers:\n  - {kind: User, name: ferry-limited}\n",
    );

    // The printed RBAC is exactly what provision creates.
    let printed = ferry(
        project.path(),
        &["provision", "t", "--print-rbac", "--output", "json"],
    )
    .await;
    printed.assert_code(0, "print-rbac");
    let docs: Vec<Value> = serde_json::from_str(printed.stdout.trim()).expect("a JSON list");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["Role", "RoleBinding"],
        "a namespaced bundle needs no ClusterRole"
    );
    let rules = docs[0]["rules"].as_array().expect("rules");
    for rule in rules {
        let verbs = rule["verbs"].as_array().expect("verbs");
        assert!(
            !verbs
                .iter()
                .any(|v| *v == "*" || *v == "escalate" || *v == "bind"),
            "{rules:#?}"
        );
        // `update` only where a read-modify-write is needed: renewing the release Lease.
        if verbs.iter().any(|v| *v == "update") {
            assert_eq!(
                rule["resources"],
                serde_json::json!(["leases"]),
                "{rules:#?}"
            );
        }
    }

    ferry(project.path(), &["provision", "t"])
        .await
        .assert_code(0, "provision");
    let role = ns.api::<Role>().get("ferry-deployer").await.expect("role");
    assert_eq!(
        serde_json::to_value(&role.rules).expect("json"),
        docs[0]["rules"]
    );

    // The limited user applies the demo in its namespace.
    let applied = ferry(
        project.path(),
        &["apply", "t", "--context", &limited, "--output", "json"],
    )
    .await;
    applied.assert_code(0, "apply as the deployer");
    assert_eq!(
        applied
            .actions()
            .get("Deployment/demo-web")
            .map(String::as_str),
        Some("created")
    );
    ferry(project.path(), &["diff", "t", "--context", &limited])
        .await
        .assert_code(0, "diff as the deployer");
    ferry(project.path(), &["status", "t", "--context", &limited]).await;
    // The same rules are enough to release: lock, records, rollout and endpoint watches.
    ferry(
        project.path(),
        &[
            "release",
            "t",
            "--context",
            &limited,
            "--set",
            "config.greeting=released",
        ],
    )
    .await
    .assert_code(0, "release as the deployer");
    ferry(project.path(), &["history", "t", "--context", &limited])
        .await
        .assert_code(0, "history as the deployer");

    // ... and nowhere else.
    project.environment(elsewhere.name(), "");
    let refused = ferry(project.path(), &["apply", "t", "--context", &limited]).await;
    refused.assert_code(2, "apply outside the deployer's namespace");
    assert!(
        refused
            .stderr
            .contains("the identity `ferry-limited` lacks `get` on secrets"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(elsewhere.name()),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn the_limited_identity_gets_a_clear_refusal() {
    let ns = TestNamespace::new("refused").await;
    let limited = cluster().var("FERRY_TEST_LIMITED_CONTEXT").to_string();
    let project = Project::demo(ns.name(), "");
    for command in ["apply", "diff", "status"] {
        let run = ferry(project.path(), &[command, "t", "--context", &limited]).await;
        run.assert_code(2, command);
        assert!(run.stderr.contains("error: "), "{}", run.stderr);
        assert!(
            run.stderr.contains("(403 Forbidden)"),
            "{command}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "hint: the identity `ferry-limited` lacks `get` on secrets in `{}`",
                ns.name()
            )),
            "{command}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("ferry provision t --print-rbac"),
            "{command}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn apply_the_demo_change_one_value_and_prune_what_left() {
    let ns = TestNamespace::new("apply").await;
    let project = Project::demo(ns.name(), "values:\n  replicas: 2\n");
    project.write("templates/extra.yaml.hbs", EXTRA_CONFIGMAP);

    let first = ferry(project.path(), &["apply", "t", "--output", "json"]).await;
    first.assert_code(0, "first apply");
    let actions = first.actions();
    assert_eq!(actions.len(), 9, "{actions:#?}");
    assert!(actions.values().all(|a| a == "created"), "{actions:#?}");
    let deployment = ns
        .api::<Deployment>()
        .get("demo-web")
        .await
        .expect("deployment");
    let labels = deployment.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("ferry")
    );
    assert!(
        labels
            .get("applyset.kubernetes.io/part-of")
            .is_some_and(|id| id.starts_with("applyset-"))
    );
    let parent =
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(ns.client.clone(), ns.name())
            .get("ferry-demo")
            .await
            .expect("applyset parent");
    let annotations = parent.metadata.annotations.unwrap_or_default();
    assert!(annotations["applyset.kubernetes.io/tooling"].starts_with("ferry/v"));
    assert!(annotations["applyset.kubernetes.io/contains-group-kinds"].contains("Deployment.apps"));

    // Again: nothing changes.
    let again = ferry(project.path(), &["apply", "t", "--output", "json"]).await;
    again.assert_code(0, "second apply");
    assert!(
        again.actions().values().all(|a| a == "unchanged"),
        "{:#?}",
        again.actions()
    );

    // One value that only the Deployment uses: exactly that object changes.
    let before_cm = resource_versions(
        &ns.api::<ConfigMap>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    let before_svc = resource_versions(
        &ns.api::<Service>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items,
    );
    let changed = ferry(
        project.path(),
        &["apply", "t", "--set", "replicas=3", "--output", "json"],
    )
    .await;
    changed.assert_code(0, "apply with a changed value");
    let actions = changed.actions();
    let moved: Vec<_> = actions.iter().filter(|(_, a)| *a != "unchanged").collect();
    assert_eq!(
        moved,
        vec![(
            &"Deployment/demo-web".to_string(),
            &"configured".to_string()
        )],
        "{actions:#?}"
    );
    let replicas = ns
        .api::<Deployment>()
        .get("demo-web")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(3));
    assert_eq!(
        before_cm,
        resource_versions(
            &ns.api::<ConfigMap>()
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
        )
    );
    assert_eq!(
        before_svc,
        resource_versions(
            &ns.api::<Service>()
                .list(&ListParams::default())
                .await
                .expect("list")
                .items
        )
    );

    // A hand-made object with the same labels, not applied by ferry.
    let mut handmade_labels = labels.clone();
    handmade_labels.retain(|k, _| {
        k.starts_with("applyset.")
            || k.starts_with("ferry.dev/")
            || k.starts_with("app.kubernetes.io/managed-by")
    });
    let handmade = ConfigMap {
        metadata: ObjectMeta {
            name: Some("handmade".to_string()),
            labels: Some(handmade_labels),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("x".to_string(), "y".to_string())])),
        ..ConfigMap::default()
    };
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &handmade)
        .await
        .expect("create handmade");

    // Remove a template: its object is pruned, the hand-made one stays.
    project.remove("templates/extra.yaml.hbs");
    let pruned = ferry(
        project.path(),
        &["apply", "t", "--set", "replicas=3", "--output", "json"],
    )
    .await;
    pruned.assert_code(0, "apply after removing a template");
    let actions = pruned.actions();
    assert_eq!(
        actions.get("ConfigMap/extra").map(String::as_str),
        Some("pruned"),
        "{actions:#?}"
    );
    assert!(!actions.contains_key("ConfigMap/handmade"), "{actions:#?}");
    assert_eq!(
        actions.values().filter(|a| *a != "unchanged").count(),
        1,
        "{actions:#?}"
    );
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("extra")
            .await
            .expect("get")
            .is_none(),
        "extra was not deleted"
    );
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("handmade")
            .await
            .expect("get")
            .is_some(),
        "handmade was deleted"
    );

    // Status: everything in sync; a scale by someone else shows as drift.
    let mut healthy = false;
    for _ in 0..60 {
        let status = ferry(project.path(), &["status", "t", "--output", "json"]).await;
        if status.code == 0 {
            let doc: Value = serde_json::from_str(&status.stdout).expect("JSON");
            assert_eq!(doc["healthy"], true);
            assert_eq!(doc["objects"].as_array().map(Vec::len), Some(8), "{doc:#}");
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(healthy, "the demo never became healthy in `ferry status`");
    ns.api::<Deployment>()
        .patch(
            "demo-web",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 1}
            })),
        )
        .await
        .expect("scale by another manager");
    let drifted = ferry(project.path(), &["status", "t", "--output", "json"]).await;
    drifted.assert_code(1, "status after drift");
    let doc: Value = serde_json::from_str(&drifted.stdout).expect("JSON");
    let deployment = doc["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["id"]["kind"] == "Deployment")
        .expect("deployment");
    assert_eq!(deployment["drift"]["state"], "modified", "{deployment:#}");
    assert!(
        deployment["drift"]["by"]
            .as_array()
            .is_some_and(|b| b.iter().any(|m| m == "someone-else")),
        "{deployment:#}"
    );

    // Applying again meets the other manager's field: a clear conflict, nothing changed ...
    let conflict = ferry(project.path(), &["apply", "t", "--set", "replicas=3"]).await;
    conflict.assert_code(2, "apply over another manager's field");
    assert!(
        conflict.stderr.contains("conflict with \"someone-else\"")
            && conflict.stderr.contains(".spec.replicas"),
        "{}",
        conflict.stderr
    );
    assert!(
        conflict.stderr.contains("--force-conflicts"),
        "{}",
        conflict.stderr
    );
    // ... until ferry is told to take the field over.
    let forced = ferry(
        project.path(),
        &[
            "apply",
            "t",
            "--set",
            "replicas=3",
            "--force-conflicts",
            "--output",
            "json",
        ],
    )
    .await;
    forced.assert_code(0, "apply --force-conflicts");
    assert_eq!(
        forced
            .actions()
            .get("Deployment/demo-web")
            .map(String::as_str),
        Some("configured")
    );
    let replicas = ns
        .api::<Deployment>()
        .get("demo-web")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(replicas, Some(3));
}

/// Deletes a (cluster-scoped) CRD when dropped, from its own thread and runtime like
/// [`TestNamespace`].
#[tokio::test]
async fn a_crd_and_an_instance_apply_in_one_run() {
    let ns = TestNamespace::new("crd").await;
    let group = format!("{}.ferry.test", unique_name("g"));
    let crd_name = format!("widgets.{group}");
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
"#
    );
    let widget =
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n");
    let project = Project::custom(
        "crdtest",
        ns.name(),
        &[("crd.yaml.hbs", &crd), ("widget.yaml.hbs", &widget)],
    );
    let _cleanup = DeleteCrd(crd_name.clone());
    let run = ferry(project.path(), &["apply", "t", "--output", "json"]).await;
    run.assert_code(0, "apply of a CRD and its instance");
    let client = ns.client.clone();
    let actions = run.actions();
    assert_eq!(
        actions
            .get(&format!("CustomResourceDefinition/{crd_name}"))
            .map(String::as_str),
        Some("created"),
        "{actions:#?}"
    );
    assert_eq!(
        actions.get("Widget/w1").map(String::as_str),
        Some("created"),
        "{actions:#?}"
    );
    let resource = ApiResource {
        group: group.clone(),
        version: "v1".to_string(),
        api_version: format!("{group}/v1"),
        kind: "Widget".to_string(),
        plural: "widgets".to_string(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &resource);
    let w = widgets.get("w1").await.expect("the widget exists");
    assert_eq!(w.data["spec"]["size"], 3);
    let again = ferry(project.path(), &["apply", "t", "--output", "json"]).await;
    again.assert_code(0, "re-apply of a CRD and its instance");
    assert!(
        again.actions().values().all(|a| a == "unchanged"),
        "{:#?}",
        again.actions()
    );
}

#[tokio::test]
async fn diff_exits_0_without_changes_and_1_with_them() {
    let ns = TestNamespace::new("diff").await;
    let project = Project::demo(ns.name(), "values:\n  replicas: 2\n");
    let before = ferry(project.path(), &["diff", "t"]).await;
    before.assert_code(1, "diff before the first apply");
    assert!(
        before.stdout.contains("+kind: Deployment"),
        "{}",
        before.stdout
    );
    assert!(
        !before.stdout.contains("acceptance-only"),
        "a secret value leaked:\n{}",
        before.stdout
    );

    ferry(project.path(), &["apply", "t"])
        .await
        .assert_code(0, "apply");
    let same = ferry(project.path(), &["diff", "t"]).await;
    same.assert_code(0, "diff right after the apply");
    assert_eq!(same.stdout, "", "no diff expected");

    let changed = ferry(project.path(), &["diff", "t", "--set", "replicas=3"]).await;
    changed.assert_code(1, "diff with a changed value");
    assert!(
        changed.stdout.contains("--- live/Deployment/"),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("-  replicas: 2") && changed.stdout.contains("+  replicas: 3"),
        "{}",
        changed.stdout
    );
    assert!(
        !changed.stdout.contains("resourceVersion") && !changed.stdout.contains("managedFields"),
        "{}",
        changed.stdout
    );

    project.write("secrets.yaml", "db-password: another-value\n");
    let secret = ferry(project.path(), &["diff", "t", "--output", "json"]).await;
    secret.assert_code(1, "diff with a changed secret");
    let doc: Value = serde_json::from_str(&secret.stdout).expect("one JSON document");
    assert_eq!(doc["changed"], true);
    let objects = doc["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 1, "{doc:#}");
    let diff = objects[0]["diff"].as_str().expect("diff text");
    assert!(
        diff.contains("*** (before)") && diff.contains("*** (after)"),
        "{diff}"
    );
    assert!(
        !secret.stdout.contains("another-value") && !secret.stdout.contains("YW5vdGhlci12YWx1ZQ"),
        "{diff}"
    );
}

#[tokio::test]
async fn an_invalid_object_in_the_last_step_means_nothing_is_written() {
    let ns = TestNamespace::new("invalid").await;
    let templates = [
        (
            "config.yaml.hbs",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
        ),
        (
            "services.yaml.hbs",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: good\nspec:\n  ports: [{port: 80}]\n",
        ),
        (
            "policy.yaml.hbs",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n",
        ),
        // The workloads come last in the plan; this one is invalid (negative replicas).
        (
            "deployment.yaml.hbs",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: -3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: registry.invalid/web:1}]\n",
        ),
    ];
    let project = Project::custom("broken", ns.name(), &templates);
    let run = ferry(project.path(), &["apply", "t", "--no-lint"]).await;
    run.assert_code(2, "apply with an invalid Deployment in the last step");
    assert!(
        run.stderr
            .contains("failed the server's dry run; nothing was applied"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "failed to dry-run Deployment {}/web (from templates/deployment.yaml.hbs)",
            ns.name()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("replicas"),
        "the server's reason is shown: {}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("settings")
            .await
            .expect("get")
            .is_none(),
        "nothing of the first step"
    );
    assert!(
        ns.api::<Service>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "no Service"
    );
    assert!(
        ns.api::<NetworkPolicy>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "no NetworkPolicy"
    );
    assert!(
        ns.api::<Secret>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "not even the ApplySet parent"
    );
}
