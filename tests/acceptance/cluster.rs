//! The test cluster behaves like a real one where Ferry depends on it: Deployments roll out
//! (surge, readiness, terminating pods, EndpointSlices), the kwok stages give the three pod
//! behaviours tests select (ready at once, ready after `ferry.test/ready-delay`, never ready with
//! `ferry.test/never-ready: "true"`), Pod Security admission enforces namespace labels, and
//! RBAC refuses the limited identity until it is granted rights.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::support::{TestNamespace, WAIT, cluster, rollout_state, wait_for, wait_rollout};

/// A Deployment `name` (label `app: name`) of `replicas` pods of one container, with extra pod
/// labels and annotations, rolling out with maxUnavailable 0 and maxSurge 1.
fn deployment(
    name: &str,
    replicas: i32,
    image: &str,
    labels: Value,
    annotations: Value,
) -> Deployment {
    let mut pod_labels = json!({ "app": name });
    if let (Some(all), Some(extra)) = (pod_labels.as_object_mut(), labels.as_object()) {
        all.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": {
                "metadata": { "labels": pod_labels, "annotations": annotations },
                "spec": { "containers": [{ "name": "app", "image": image, "ports": [{ "containerPort": 8080 }] }] }
            }
        }
    }))
    .expect("a valid Deployment")
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

async fn pods_of(ns: &TestNamespace, app: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
}

#[tokio::test]
async fn a_deployment_of_three_replicas_becomes_available() {
    let ns = TestNamespace::new("available").await;
    let api: Api<Deployment> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &deployment("web", 3, "registry.invalid/web:1", json!({}), json!({})),
        )
        .await
        .expect("create deployment");
    let d = wait_rollout(
        &api,
        "web",
        created.metadata.generation.expect("generation"),
        WAIT,
    )
    .await;

    let status = d.status.expect("status");
    assert_eq!(status.available_replicas, Some(3), "{status:#?}");
    assert_eq!(status.ready_replicas, Some(3), "{status:#?}");
    let available = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available")
        .expect("Available");
    assert_eq!(available.status, "True");

    let pods = pods_of(&ns, "web").await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(phase(p), Some("Running"));
        assert_eq!(condition(p, "Ready"), Some("True"));
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "scheduled on {node:?}");
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .unwrap_or_default();
        assert!(
            ip.starts_with("10.244."),
            "pod IP {ip:?} from kwok's --cidr"
        );
    }
}

/// What the EndpointSlice watch saw of one Service during a rollout.
#[derive(Debug, Default)]
struct EndpointHistory {
    slices: BTreeMap<String, EndpointSlice>,
    /// Lowest ready-endpoint count seen after the watch's initial list.
    min_ready: Option<usize>,
    /// Highest total endpoint count seen (old and new pods side by side).
    max_total: usize,
    /// Addresses seen as `terminating`.
    terminating: BTreeSet<String>,
    events: usize,
}

impl EndpointHistory {
    fn ready_addresses(&self) -> BTreeSet<String> {
        self.slices
            .values()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .flat_map(|e| e.addresses.clone())
            .collect()
    }

    fn record(&mut self) {
        let ready = self.ready_addresses().len();
        self.min_ready = Some(self.min_ready.map_or(ready, |m| m.min(ready)));
        let endpoints: Vec<_> = self
            .slices
            .values()
            .flat_map(|s| s.endpoints.iter().flatten())
            .collect();
        self.max_total = self.max_total.max(endpoints.len());
        for e in endpoints {
            if e.conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false)
            {
                self.terminating.extend(e.addresses.clone());
            }
        }
        self.events += 1;
    }
}

/// Watches the EndpointSlices of `service` into `history`; signals `synced` after the first
/// complete list, so nothing after that is missed.
fn watch_endpoints(
    ns: &TestNamespace,
    service: &str,
    history: Arc<Mutex<EndpointHistory>>,
    synced: tokio::sync::oneshot::Sender<()>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<EndpointSlice> = ns.api();
    let cfg = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    tokio::spawn(async move {
        let mut synced = Some(synced);
        let mut initial = BTreeMap::new();
        let mut stream = watcher(api, cfg).boxed();
        while let Some(event) = stream.next().await {
            let event = event.expect("EndpointSlice watch");
            let mut h = history.lock().expect("lock");
            match event {
                watcher::Event::Init => initial.clear(),
                watcher::Event::InitApply(s) => {
                    initial.insert(s.metadata.name.clone().unwrap_or_default(), s);
                }
                watcher::Event::InitDone => {
                    h.slices = std::mem::take(&mut initial);
                    h.record();
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
                watcher::Event::Apply(s) => {
                    h.slices
                        .insert(s.metadata.name.clone().unwrap_or_default(), s);
                    h.record();
                }
                watcher::Event::Delete(s) => {
                    h.slices
                        .remove(&s.metadata.name.clone().unwrap_or_default());
                    h.record();
                }
            }
        }
    })
}

/// Watches the pods of `app`, collecting the names of those seen Terminating.
fn watch_terminating_pods(
    ns: &TestNamespace,
    app: &str,
    seen: Arc<Mutex<BTreeSet<String>>>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = ns.api();
    let cfg = watcher::Config::default().labels(&format!("app={app}"));
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).boxed();
        while let Some(event) = stream.next().await {
            let pods = match event.expect("pod watch") {
                watcher::Event::Apply(p)
                | watcher::Event::InitApply(p)
                | watcher::Event::Delete(p) => vec![p],
                _ => vec![],
            };
            for p in pods {
                if p.metadata.deletion_timestamp.is_some() {
                    seen.lock()
                        .expect("lock")
                        .insert(p.metadata.name.clone().unwrap_or_default());
                }
            }
        }
    })
}

#[tokio::test]
async fn an_image_change_rolls_out_with_ready_endpoints_throughout() {
    let ns = TestNamespace::new("rolling").await;
    let services: Api<Service> = ns.api();
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] }
    }))
    .expect("a valid Service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");

    let api: Api<Deployment> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &deployment("web", 3, "registry.invalid/web:1", json!({}), json!({})),
        )
        .await
        .expect("create deployment");
    wait_rollout(
        &api,
        "web",
        created.metadata.generation.expect("generation"),
        WAIT,
    )
    .await;
    let old_pods: BTreeSet<String> = pods_of(&ns, "web")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(old_pods.len(), 3);

    // The Service must list the three pods before the update starts.
    let history = Arc::new(Mutex::new(EndpointHistory::default()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let endpoint_watch = watch_endpoints(&ns, "web", history.clone(), tx);
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("EndpointSlice watch synced")
        .expect("watch task alive");
    let deadline = Instant::now() + WAIT;
    while history.lock().expect("lock").ready_addresses().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "service never listed 3 ready endpoints: {history:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_addresses = history.lock().expect("lock").ready_addresses();
    {
        let mut h = history.lock().expect("lock");
        h.min_ready = None;
        h.max_total = 0;
        h.events = 0;
        h.record();
    }
    let terminating = Arc::new(Mutex::new(BTreeSet::new()));
    let pod_watch = watch_terminating_pods(&ns, "web", terminating.clone());

    let patch = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "app", "image": "registry.invalid/web:2" }
    ] } } } });
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("patch image");
    let generation = patched.metadata.generation.expect("generation");
    assert!(generation > created.metadata.generation.expect("generation"));
    wait_rollout(&api, "web", generation, WAIT).await;

    // A new ReplicaSet took over; the old one is scaled to zero.
    let replica_sets = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(replica_sets.items.len(), 2, "old and new ReplicaSet");
    let image_of = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .map(|s| s.containers[0].image.clone())
    };
    for rs in &replica_sets.items {
        let replicas = rs.status.as_ref().map(|s| s.replicas).unwrap_or(-1);
        match image_of(rs).flatten().as_deref() {
            Some("registry.invalid/web:2") => assert_eq!(replicas, 3, "new ReplicaSet"),
            Some("registry.invalid/web:1") => assert_eq!(replicas, 0, "old ReplicaSet"),
            other => panic!("unexpected ReplicaSet image {other:?}"),
        }
    }

    // Wait until the Service lists exactly the three new pods.
    let deadline = Instant::now() + WAIT;
    loop {
        let new_pods: Vec<Pod> = pods_of(&ns, "web").await;
        let new_ips: BTreeSet<String> = new_pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        let (settled, seen) = {
            let h = history.lock().expect("lock");
            let total: usize = h
                .slices
                .values()
                .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
                .sum();
            let settled = new_pods.len() == 3 && h.ready_addresses() == new_ips && total == 3;
            (settled, format!("{h:#?}"))
        };
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service never settled on the new pods: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    endpoint_watch.abort();
    pod_watch.abort();

    let h = history.lock().expect("lock");
    assert!(
        h.events > 3,
        "the EndpointSlice watch saw the rollout: {h:#?}"
    );
    assert!(
        h.min_ready.expect("recorded") >= 3,
        "ready endpoints fell below 3 (maxUnavailable 0): {h:#?}"
    );
    assert!(
        h.max_total >= 4,
        "a surge pod was listed beside the old ones: {h:#?}"
    );
    assert!(
        !h.terminating.is_empty(),
        "old endpoints were seen terminating: {h:#?}"
    );
    assert!(
        h.terminating.is_subset(&old_addresses),
        "only old endpoints terminate: {h:#?}"
    );
    let terminating = terminating.lock().expect("lock");
    assert_eq!(*terminating, old_pods, "every old pod was seen Terminating");
}

#[tokio::test]
async fn a_never_ready_deployment_exceeds_its_progress_deadline() {
    let ns = TestNamespace::new("never-ready").await;
    let api: Api<Deployment> = ns.api();
    let mut d = deployment(
        "stuck",
        2,
        "registry.invalid/stuck:1",
        json!({ "ferry.test/never-ready": "true" }),
        json!({}),
    );
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(5);
    let created = api
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let generation = created.metadata.generation.expect("generation");

    let cond = |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            })
    };
    let d = wait_for(&api, "stuck", WAIT, "ProgressDeadlineExceeded", cond).await;
    assert!(
        rollout_state(&d, generation).is_err(),
        "rollout status reports the failure"
    );
    let status = d.status.expect("status");
    assert_eq!(status.available_replicas.unwrap_or(0), 0, "{status:#?}");
    assert_eq!(status.ready_replicas.unwrap_or(0), 0, "{status:#?}");

    let pods = pods_of(&ns, "stuck").await;
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(phase(p), Some("Running"), "{p:#?}");
        assert_eq!(condition(p, "Ready"), Some("False"), "{p:#?}");
        assert_eq!(condition(p, "ContainersReady"), Some("False"), "{p:#?}");
        assert!(
            p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some(),
            "a running pod has an IP"
        );
    }
}

fn pod(name: &str, annotations: Value, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": name }, "annotations": annotations },
        "spec": spec
    }))
    .expect("a valid Pod")
}

fn plain_spec() -> Value {
    json!({ "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] })
}

#[tokio::test]
async fn a_pod_with_a_ready_delay_becomes_ready_only_after_it() {
    let ns = TestNamespace::new("ready-delay").await;
    let pods: Api<Pod> = ns.api();
    let started = Instant::now();
    pods.create(
        &PostParams::default(),
        &pod(
            "slow",
            json!({ "ferry.test/ready-delay": "4s" }),
            plain_spec(),
        ),
    )
    .await
    .expect("create pod");
    pods.create(
        &PostParams::default(),
        &pod("fast", json!({}), plain_spec()),
    )
    .await
    .expect("create pod");

    // Both start; the plain pod is ready at once, the delayed one is Running but not Ready.
    let is_running = |p: Option<&Pod>| p.is_some_and(|p| phase(p) == Some("Running"));
    let slow = wait_for(&pods, "slow", WAIT, "delayed pod running", is_running).await;
    let is_ready = |p: Option<&Pod>| p.is_some_and(|p| condition(p, "Ready") == Some("True"));
    wait_for(&pods, "fast", WAIT, "plain pod ready", is_ready).await;
    let fast_ready_after = started.elapsed();
    let slow_now = pods.get("slow").await.expect("get pod");
    assert!(
        fast_ready_after < Duration::from_secs(4),
        "plain pod ready in {fast_ready_after:?}"
    );
    assert_eq!(condition(&slow, "Ready"), Some("False"), "{slow:#?}");
    assert_eq!(
        condition(&slow_now, "Ready"),
        Some("False"),
        "still waiting: {slow_now:#?}"
    );
    assert!(
        slow.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_some(),
        "a running pod has an IP"
    );

    wait_for(&pods, "slow", WAIT, "delayed pod ready", is_ready).await;
    let slow_ready_after = started.elapsed();
    assert!(
        slow_ready_after >= Duration::from_secs(4),
        "ready after {slow_ready_after:?}, before its delay"
    );
    assert!(
        slow_ready_after < Duration::from_secs(20),
        "ready after {slow_ready_after:?}"
    );
}

fn restricted_spec() -> Value {
    json!({
        "securityContext": { "runAsNonRoot": true, "runAsUser": 10001, "seccompProfile": { "type": "RuntimeDefault" } },
        "containers": [{
            "name": "app",
            "image": "registry.invalid/app:1",
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": ["ALL"] },
                "readOnlyRootFilesystem": true
            }
        }]
    })
}

#[tokio::test]
async fn pod_security_restricted_rejects_a_violating_pod_and_accepts_a_compliant_one() {
    let ns = TestNamespace::with_labels(
        "restricted",
        &[
            ("pod-security.kubernetes.io/enforce", "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "latest"),
        ],
    )
    .await;
    let pods: Api<Pod> = ns.api();

    let err = pods
        .create(
            &PostParams::default(),
            &pod("loose", json!({}), plain_spec()),
        )
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert!(s.is_forbidden(), "{s:?}");
            assert!(
                s.message
                    .contains("violates PodSecurity \"restricted:latest\""),
                "{}",
                s.message
            );
            assert!(
                s.message.contains("allowPrivilegeEscalation"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a Pod Security refusal, got {other:?}"),
    }

    pods.create(
        &PostParams::default(),
        &pod("hardened", json!({}), restricted_spec()),
    )
    .await
    .expect("compliant pod");
    let is_ready = |p: Option<&Pod>| p.is_some_and(|p| condition(p, "Ready") == Some("True"));
    wait_for(&pods, "hardened", WAIT, "compliant pod ready", is_ready).await;

    // The same loose pod is fine where the namespace does not enforce "restricted".
    let open = TestNamespace::new("unrestricted").await;
    open.api::<Pod>()
        .create(
            &PostParams::default(),
            &pod("loose", json!({}), plain_spec()),
        )
        .await
        .expect("accepted");
}

#[tokio::test]
async fn rbac_refuses_the_limited_identity_until_granted() {
    let ns = TestNamespace::new("rbac").await;
    let limited = cluster().limited_client().await;
    let pods: Api<Pod> = Api::namespaced(limited.clone(), ns.name());

    let err = pods.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_forbidden() && s.message.contains("ferry-limited")),
        "{err:?}"
    );

    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": { "name": "pod-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] }]
    }))
    .expect("a valid Role");
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": "pod-reader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ferry-limited" }]
    }))
    .expect("a valid RoleBinding");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");

    // The RBAC authorizer sees the binding through its informer: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.is_forbidden() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the granted list still fails: {e}"),
        }
    }
    // Only in that namespace, and only reading.
    let elsewhere: Api<Pod> = Api::namespaced(limited.clone(), "default");
    assert!(
        matches!(elsewhere.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.is_forbidden())
    );
    let err = pods
        .create(
            &PostParams::default(),
            &pod("nope", json!({}), plain_spec()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.is_forbidden()),
        "{err:?}"
    );
}

/// The pinned Kubernetes version of `tests/cluster/versions`.
fn pinned_kubernetes_version() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/versions");
    let text = std::fs::read_to_string(&path).expect("tests/cluster/versions");
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .expect("K8S_VERSION in tests/cluster/versions");
    format!("v{}", v.trim())
}

#[tokio::test]
async fn the_stack_runs_the_pinned_version_stamped_and_two_ready_nodes() {
    let client = cluster().client().await;
    let want = pinned_kubernetes_version();
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(
        info.git_version, want,
        "the apiserver binary is version-stamped"
    );

    let out = std::process::Command::new(cluster().bin_dir().join("kubectl"))
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("run the cached kubectl");
    let json: Value = serde_json::from_slice(&out.stdout).expect("kubectl version JSON");
    assert_eq!(json["clientVersion"]["gitVersion"], json!(want));

    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client)
        .list(&ListParams::default())
        .await
        .expect("nodes");
    let ready: BTreeSet<String> = nodes
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(
        ready,
        BTreeSet::from(["kwok-node-0".to_owned(), "kwok-node-1".to_owned()])
    );
    for n in &nodes.items {
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        assert!(
            !tainted,
            "node {:?} has no taints, so plain manifests schedule",
            n.metadata.name
        );
    }
}
