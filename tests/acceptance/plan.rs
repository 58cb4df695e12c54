//! The apply follows the dependency plan (issue 12) on the local control plane: the
//! default-deny NetworkPolicy exists before any pod, CRDs before their instances, declared
//! dependencies are honoured, and cycles or unknown targets are refused before anything is
//! written.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::discovery::ApiResource;

use crate::support::project::{Project, ferry};
use crate::support::{DeleteCrd, TestNamespace, unique_name};

/// A Deployment that passes Pod Security "restricted" and ferry's lint.
fn deployment(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: app
          image: registry.example/app@sha256:{digest}
          resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 100m, memory: 32Mi}}}}
          securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
"#,
        digest = "0".repeat(64)
    )
}

const DEFAULT_DENY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";

/// The numeric value of a resourceVersion (etcd's revision on this single-etcd cluster), so
/// creations can be ordered across kinds.
fn revision(rv: Option<&String>) -> u64 {
    rv.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("resourceVersion {rv:?} is not a revision"))
}

#[tokio::test]
async fn the_default_deny_policy_exists_before_any_pod_of_a_first_install() {
    let ns = TestNamespace::new("deny-first").await;
    let templates = [
        ("web.yaml.hbs", deployment("web", 3)),
        ("api.yaml.hbs", deployment("api", 2)),
        ("policy.yaml.hbs", DEFAULT_DENY.to_string()),
    ];
    let templates: Vec<(&str, &str)> = templates.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let project = Project::custom("denyfirst", ns.name(), &templates);

    // Watch the namespace's pods and Deployments from before the apply: the revision at
    // which each was created.
    let pods = creations(ns.api::<Pod>(), 5).await;
    let deployments = creations(ns.api::<Deployment>(), 2).await;

    let run = ferry(
        project.path(),
        &["apply", "t", "--output", "json", "--no-lint"],
    )
    .await;
    run.assert_code(0, "first install without provision");
    let created = collect(pods, "the 5 pods").await;
    let deployments_created = collect(deployments, "the 2 Deployments").await;
    assert_eq!(created.len(), 5, "every pod seen: {created:?}");
    assert_eq!(deployments_created.len(), 2, "{deployments_created:?}");
    let policy = ns
        .api::<NetworkPolicy>()
        .get("default-deny")
        .await
        .expect("the default-deny policy exists");
    let policy_at = revision(policy.metadata.resource_version.as_ref());
    let first_pod = created.values().min().copied().unwrap_or(0);
    assert!(
        policy_at < first_pod,
        "the NetworkPolicy (revision {policy_at}) was created before the first pod (revision {first_pod}): {created:?}"
    );
    let first_deployment = deployments_created.values().min().copied().unwrap_or(0);
    assert!(
        policy_at < first_deployment,
        "the NetworkPolicy (revision {policy_at}) was created before the first Deployment (revision {first_deployment}): {deployments_created:?}"
    );
    // And the plan put it in an earlier step than both Deployments.
    let steps = steps_of(&run);
    let policy_step = steps["NetworkPolicy/default-deny"];
    assert!(
        policy_step < steps["Deployment/web"] && policy_step < steps["Deployment/api"],
        "{steps:?}"
    );
}

/// A watch of `api` from now until `count` objects were created: name → creation revision.
async fn creations<K>(api: Api<K>, count: usize) -> tokio::task::JoinHandle<BTreeMap<String, u64>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let listed = api.list(&ListParams::default()).await.expect("list");
    assert!(listed.items.is_empty(), "a fresh namespace has none");
    let from = listed
        .metadata
        .resource_version
        .clone()
        .expect("list revision");
    let stream = api
        .watch(&WatchParams::default().timeout(60), &from)
        .await
        .expect("watch");
    tokio::spawn(async move {
        let mut created: BTreeMap<String, u64> = BTreeMap::new();
        let mut stream = stream.boxed();
        while created.len() < count {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(object))) => {
                    let meta = object.meta();
                    let name = meta.name.clone().unwrap_or_default();
                    let at = revision(meta.resource_version.as_ref());
                    created.entry(name).or_insert(at);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        created
    })
}

/// The result of a [`creations`] watch, failing the test when it saw too few.
async fn collect(
    watch: tokio::task::JoinHandle<BTreeMap<String, u64>>,
    what: &str,
) -> BTreeMap<String, u64> {
    tokio::time::timeout(Duration::from_secs(90), watch)
        .await
        .unwrap_or_else(|_| panic!("{what} were not all created within 90 s"))
        .expect("watch task")
}

/// `Kind/name` → the plan step (1-based) of each applied object, from the JSON events.
fn steps_of(run: &crate::support::project::Run) -> BTreeMap<String, u64> {
    run.events()
        .iter()
        .filter(|e| e["event"] == "applied")
        .map(|e| {
            (
                format!(
                    "{}/{}",
                    e["id"]["kind"].as_str().unwrap_or("?"),
                    e["id"]["name"].as_str().unwrap_or("?")
                ),
                e["step"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no step in {e}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_crd_its_instances_and_a_declared_dependency_apply_in_order() {
    let ns = TestNamespace::new("plan-crd").await;
    let group = format!("{}.ferry.test", unique_name("p"));
    let crd_name = format!("gadgets.{group}");
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {{type: object, properties: {{size: {{type: integer}}}}}}
"#
    );
    let gadgets = format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  size: 1\n---\napiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g2\nspec:\n  size: 2\n"
    );
    // The ConfigMap waits for a Gadget, so it lands after the CRD's instances.
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-gadget\n  annotations:\n    ferry.dev/depends-on: Gadget/g1\ndata:\n  a: b\n";
    let project = Project::custom(
        "plancrd",
        ns.name(),
        &[
            ("crd.yaml.hbs", &crd),
            ("gadgets.yaml.hbs", &gadgets),
            ("config.yaml.hbs", config),
        ],
    );
    let _cleanup = DeleteCrd(crd_name.clone());

    let plan = ferry(project.path(), &["apply", "t", "--plan"]).await;
    plan.assert_code(0, "apply --plan");

    let run = ferry(project.path(), &["apply", "t", "--output", "json"]).await;
    run.assert_code(0, "apply of a CRD, its instances and a dependent ConfigMap");
    let steps = steps_of(&run);
    let crd_step = steps[&format!("CustomResourceDefinition/{crd_name}")];
    assert!(crd_step < steps["Gadget/g1"], "{steps:?}");
    assert_eq!(steps["Gadget/g1"], steps["Gadget/g2"], "{steps:?}");
    assert!(
        steps["Gadget/g1"] < steps["ConfigMap/after-gadget"],
        "{steps:?}"
    );
    let resource = ApiResource {
        group: group.clone(),
        version: "v1".to_string(),
        api_version: format!("{group}/v1"),
        kind: "Gadget".to_string(),
        plural: "gadgets".to_string(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), ns.name(), &resource);
    assert_eq!(
        api.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    let config: Api<ConfigMap> = ns.api();
    assert!(config.get_opt("after-gadget").await.expect("get").is_some());
}

#[tokio::test]
async fn a_cycle_or_an_unknown_dependency_is_refused_before_anything_is_written() {
    let ns = TestNamespace::new("plan-cycle").await;
    let cycle = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations: {ferry.dev/depends-on: ConfigMap/b}\ndata: {x: y}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations: {ferry.dev/depends-on: ConfigMap/a}\ndata: {x: y}\n";
    let project = Project::custom("cycle", ns.name(), &[("config.yaml.hbs", cycle)]);
    for lint in [&[][..], &["--no-lint"][..]] {
        let mut args = vec!["apply", "t"];
        args.extend_from_slice(lint);
        let run = ferry(project.path(), &args).await;
        run.assert_code(2, "apply of a dependency cycle");
        assert!(run.stderr.contains("cycle"), "{}", run.stderr);
        let a = format!("ConfigMap {}/a", ns.name());
        let b = format!("ConfigMap {}/b", ns.name());
        assert!(
            run.stderr.contains(&a) && run.stderr.contains(&b),
            "the cycle names its objects: {}",
            run.stderr
        );
    }

    // A release refuses it too, before taking the lock or writing a record.
    let run = ferry(project.path(), &["release", "t"]).await;
    run.assert_code(2, "release of a dependency cycle");
    assert!(run.stderr.contains("PLAN-CYCLE"), "{}", run.stderr);
    let secrets: Api<Secret> = ns.api();
    assert!(
        secrets
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "no release record, no parent"
    );

    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lonely\n  annotations: {ferry.dev/depends-on: Secret/missing}\ndata: {x: y}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata: {x: y}\n";
    let project = Project::custom("unknown", ns.name(), &[("config.yaml.hbs", unknown)]);
    let run = ferry(project.path(), &["apply", "t"]).await;
    run.assert_code(2, "apply with an unknown dependency");
    assert!(run.stderr.contains("Secret/missing"), "{}", run.stderr);

    let config: Api<ConfigMap> = ns.api();
    for name in ["a", "b", "lonely", "fine"] {
        assert!(
            config.get_opt(name).await.expect("get").is_none(),
            "{name} was not written"
        );
    }
}
