//! The building blocks of `ferry release` (issue 5) against the local control plane: the
//! rollout watch (complete, ProgressDeadlineExceeded, delayed readiness, StatefulSet,
//! DaemonSet), the EndpointSlice availability proof, release records larger than 1 MiB, the
//! lease lock (refusal naming the holder, takeover of an expired lease) and HTTP checks
//! against a test server on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::project::HttpCheck;
use ferry::release::{
    AvailabilityWatch, Candidate, CheckSpec, LockError, LockOptions, NoopRolloutReporter, Progress,
    RecordStore, ReleaseRecord, ReleaseStatus, RolloutError, RolloutReporter, RolloutWatch,
    ServiceAvailability, ServiceFloor, ServiceProxy, Timings, WaitOptions, Workload, WorkloadKind,
    acquire, lease_name, ready_endpoints, run_checks, wait_for_rollout,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::cut::CutProxy;
use crate::support::{TestNamespace, WAIT};

/// Records what the watches reported: rollout progress and every endpoints event.
#[derive(Default)]
struct Recorder {
    progress: Mutex<Vec<(Workload, Progress)>>,
    done: Mutex<Vec<Workload>>,
    endpoints: Mutex<Vec<ServiceAvailability>>,
}

impl Recorder {
    fn endpoints(&self) -> Vec<ServiceAvailability> {
        self.endpoints.lock().expect("lock").clone()
    }
}

impl RolloutReporter for Recorder {
    fn workload_progress(&self, workload: &Workload, progress: &Progress) {
        self.progress
            .lock()
            .expect("lock")
            .push((workload.clone(), progress.clone()));
    }
    fn workload_done(&self, workload: &Workload, _: Duration) {
        self.done.lock().expect("lock").push(workload.clone());
    }
    fn endpoints(&self, figures: &ServiceAvailability) {
        self.endpoints.lock().expect("lock").push(figures.clone());
    }
}

/// A Deployment `name` of `replicas` pods rolling out with maxUnavailable 0 and maxSurge 1;
/// `extra_spec` is merged into `spec`, `pod_labels` / `pod_annotations` into the template.
fn deployment(name: &str, replicas: i32, image: &str, extra_spec: Value) -> Deployment {
    let mut spec = json!({
        "replicas": replicas,
        "selector": { "matchLabels": { "app": name } },
        "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": { "containers": [{ "name": "app", "image": image, "ports": [{ "containerPort": 8080 }] }] }
        }
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name }, "spec": spec,
    }))
    .expect("a valid Deployment")
}

fn workload(ns: &TestNamespace, kind: WorkloadKind, name: &str, generation: i64) -> Workload {
    Workload {
        kind,
        namespace: ns.name().to_string(),
        name: name.to_string(),
        generation,
    }
}

/// Creates the Deployment and waits (with the code under test) for its first rollout.
async fn create_ready(ns: &TestNamespace, d: &Deployment) -> Deployment {
    let api: Api<Deployment> = ns.api();
    let created = api
        .create(&PostParams::default(), d)
        .await
        .expect("create deployment");
    let name = created.metadata.name.clone().expect("name");
    let w = workload(
        ns,
        WorkloadKind::Deployment,
        &name,
        created.metadata.generation.expect("generation"),
    );
    wait_for_rollout(
        &ns.client,
        &[w],
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .unwrap_or_else(|e| panic!("first rollout of {name}: {e}"));
    created
}

/// Patches the pod template (strategic merge) and returns the new generation.
async fn patch_template(ns: &TestNamespace, name: &str, template: Value) -> i64 {
    let api: Api<Deployment> = ns.api();
    let patched = api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(&json!({ "spec": { "template": template } })),
        )
        .await
        .expect("patch deployment");
    patched.metadata.generation.expect("generation")
}

async fn create_service(ns: &TestNamespace, name: &str) {
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
        "spec": { "selector": { "app": name }, "ports": [{ "port": 80, "targetPort": 8080 }] }
    }))
    .expect("a valid Service");
    ns.api::<Service>()
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
}

/// Waits until the Service's EndpointSlices list `n` ready endpoints.
async fn wait_ready_endpoints(ns: &TestNamespace, service: &str, n: u32) {
    let api: Api<EndpointSlice> = ns.api();
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let slices = api.list(&lp).await.expect("list EndpointSlices");
        let ready = ready_endpoints(&slices.items);
        if ready >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "service {service} has {ready} ready endpoints, never {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_image_change_completes_with_ready_endpoints_never_below_three() {
    let ns = TestNamespace::new("rel-rollout").await;
    create_service(&ns, "web").await;
    create_ready(
        &ns,
        &deployment("web", 3, "registry.invalid/web:1", json!({})),
    )
    .await;
    wait_ready_endpoints(&ns, "web", 3).await;

    let reporter = Arc::new(Recorder::default());
    let floors = [ServiceFloor {
        service: "web".into(),
        floor: 3,
    }];
    let endpoints = AvailabilityWatch::start(&ns.client, ns.name(), &floors, reporter.clone())
        .await
        .expect("start availability watch");
    let generation = patch_template(
        &ns,
        "web",
        json!({ "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:2" }] } }),
    )
    .await;
    let w = workload(&ns, WorkloadKind::Deployment, "web", generation);
    let outcome = wait_for_rollout(
        &ns.client,
        std::slice::from_ref(&w),
        WAIT,
        WaitOptions::default(),
        reporter.as_ref(),
    )
    .await
    .unwrap_or_else(|e| panic!("rollout: {e}"));
    assert_eq!(outcome.workloads.len(), 1);
    assert_eq!(outcome.workloads[0].workload, w);

    // Completion was decided on the new generation: every replica runs the new image.
    let d = ns.api::<Deployment>().get("web").await.expect("get");
    let st = d.status.expect("status");
    assert!(st.observed_generation.unwrap_or(0) >= generation, "{st:?}");
    assert_eq!(
        (st.updated_replicas, st.replicas, st.available_replicas),
        (Some(3), Some(3), Some(3)),
        "{st:?}"
    );
    assert!(
        !reporter.progress.lock().expect("lock").is_empty(),
        "progress was reported"
    );
    assert_eq!(reporter.done.lock().expect("lock").as_slice(), [w]);

    // Let the last old pod's endpoint leave, then close the proof.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let figures = endpoints.finish().await.expect("availability figures");
    assert_eq!(figures.len(), 1, "{figures:?}");
    assert!(
        figures[0].min_ready >= 3 && figures[0].held,
        "ready endpoints fell below 3: {figures:?}"
    );
    assert!(
        figures[0].proven && figures[0].unproven.is_none(),
        "{figures:?}"
    );
    // The watch saw the rollout: the surge pod joined, old pods drained, all reported.
    let seen = reporter.endpoints();
    assert!(
        seen.iter().any(|f| f.ready_now >= 4 || f.draining_now >= 1),
        "no endpoints event showed the rollout: {seen:?}"
    );
    assert!(
        seen.iter().all(|f| f.service == "web" && f.min_ready >= 3),
        "{seen:?}"
    );
}

/// Names of the Ready, not terminating pods with label `app=<app>`.
async fn ready_pods(ns: &TestNamespace, app: &str) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods");
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// Deletes `pods` at once, without a grace period (as a node failure would lose them).
async fn lose_pods(ns: &TestNamespace, pods: &[String]) {
    let api: Api<Pod> = ns.api();
    let now = kube::api::DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for p in pods {
        api.delete(p, &now).await.expect("delete pod");
    }
}

/// Issue 10: with `maxUnavailable: 0` Kubernetes itself keeps 3/3, so losing two ready old
/// pods mid-rollout is what makes availability drop: the watch must see it at once, with the
/// minimum, its split and when.
#[tokio::test]
async fn losing_two_ready_pods_mid_rollout_fails_the_watch_at_once_with_the_minimum_and_when() {
    let ns = TestNamespace::new("rel-lose").await;
    create_service(&ns, "web").await;
    // Replacements of the old pods take 3 s to become ready, so the loss shows.
    let mut d = deployment("web", 3, "registry.invalid/web:1", json!({}));
    if let Some(t) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
        t.annotations = Some([("ferry.test/ready-delay".to_string(), "3s".to_string())].into());
    }
    create_ready(&ns, &d).await;
    wait_ready_endpoints(&ns, "web", 3).await;
    let old = ready_pods(&ns, "web").await;
    assert_eq!(old.len(), 3, "{old:?}");

    let reporter = Arc::new(Recorder::default());
    let floors = [ServiceFloor {
        service: "web".into(),
        floor: 3,
    }];
    let mut endpoints = AvailabilityWatch::start(&ns.client, ns.name(), &floors, reporter.clone())
        .await
        .expect("start availability watch");
    let started = Timestamp::now();
    patch_template(
        &ns,
        "web",
        json!({ "metadata": { "annotations": { "ferry.test/ready-delay": "10s" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:2" }] } }),
    )
    .await;
    lose_pods(&ns, &old[..2]).await;
    let failed = tokio::time::timeout(Duration::from_secs(10), endpoints.failed())
        .await
        .expect("the watch reports the fall within 10 s");
    assert_eq!(failed.service, "web");
    assert!(!failed.held && failed.min_ready < 3, "{failed:?}");
    assert!(failed.unproven.is_none(), "{failed:?}");
    let min_at: Timestamp = failed
        .min_at
        .as_deref()
        .expect("when the minimum was reached")
        .parse()
        .expect("RFC 3339");
    assert!(min_at >= started, "{failed:?}");
    let line = failed.failure(Some(started)).expect("a failure line");
    assert!(
        line.starts_with(&format!(
            "service web fell to {} endpoint",
            failed.min_ready
        )) && line.contains("s into the rollout, below its floor of 3"),
        "{line}"
    );
    assert!(
        reporter.endpoints().iter().any(|f| !f.held),
        "the reporter saw the fall"
    );
    let figures = endpoints.finish().await.expect("figures");
    assert!(!figures[0].held, "{figures:?}");
}

/// Issue 10: a watch cut during the rollout (here: every connection to the API server closed,
/// as a restart would) is not reported as a proof, even though the floor held as far as it saw.
#[tokio::test]
async fn a_watch_cut_during_the_rollout_is_not_a_proof() {
    let ns = TestNamespace::new("rel-cut").await;
    create_service(&ns, "web").await;
    create_ready(
        &ns,
        &deployment("web", 3, "registry.invalid/web:1", json!({})),
    )
    .await;
    wait_ready_endpoints(&ns, "web", 3).await;

    let proxy = CutProxy::start().await;
    let through = proxy.client().await;
    let floors = [ServiceFloor {
        service: "web".into(),
        floor: 3,
    }];
    let mut endpoints =
        AvailabilityWatch::start(&through, ns.name(), &floors, Arc::new(NoopRolloutReporter))
            .await
            .expect("start availability watch");
    patch_template(
        &ns,
        "web",
        json!({ "metadata": { "annotations": { "ferry.test/ready-delay": "2s" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:2" }] } }),
    )
    .await;
    let accepted = proxy.accepted();
    proxy.cut();
    let failed = tokio::time::timeout(Duration::from_secs(20), endpoints.failed())
        .await
        .expect("the cut watch is reported within 20 s");
    assert!(failed.held, "nothing fell: {failed:?}");
    let why = failed.unproven.clone().expect("a reason");
    assert!(why.contains("EndpointSlice watch"), "{why}");
    assert!(
        failed
            .failure(None)
            .is_some_and(|l| l.starts_with("availability of service web not proven")),
        "{failed:?}"
    );
    let figures = endpoints.finish().await.expect("figures");
    assert!(!figures[0].proven, "{figures:?}");
    assert_eq!(figures[0].unproven.as_ref(), Some(&why));
    assert!(proxy.accepted() > accepted, "the watch reconnected");
}

/// Issue 10: a Lease taken by someone else is noticed by the next renewal, at once.
#[tokio::test]
async fn a_stolen_lease_is_reported_lost_by_the_next_renewal() {
    let ns = TestNamespace::new("rel-lock-lost").await;
    let mut opts = lock_options(&ns, "erin@ci pid 5", None);
    opts.duration = Duration::from_secs(3);
    let guard = acquire(&ns.client, &opts).await.expect("acquire");
    let api: Api<Lease> = ns.api();
    let mut lease = api.get(guard.name()).await.expect("lease");
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = Some("mallory@elsewhere".into());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
    }
    api.replace(guard.name(), &PostParams::default(), &lease)
        .await
        .expect("steal the lease");
    let lost = tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("lost within one renewal period");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost:?}");
    assert!(guard.check().is_err());
}

#[tokio::test]
async fn a_never_ready_update_fails_with_progress_deadline_exceeded() {
    let ns = TestNamespace::new("rel-deadline").await;
    create_ready(
        &ns,
        &deployment(
            "web",
            2,
            "registry.invalid/web:1",
            json!({ "progressDeadlineSeconds": 3 }),
        ),
    )
    .await;
    let generation = patch_template(
        &ns,
        "web",
        json!({ "metadata": { "labels": { "ferry.test/never-ready": "true" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:broken" }] } }),
    )
    .await;
    let started = Instant::now();
    let err = wait_for_rollout(
        &ns.client,
        &[workload(&ns, WorkloadKind::Deployment, "web", generation)],
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .expect_err("a never-ready rollout must fail");
    assert!(
        matches!(err, RolloutError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("ProgressDeadlineExceeded")
            && text.contains("Deployment")
            && text.contains("/web"),
        "{text}"
    );
    assert!(started.elapsed() < WAIT, "failed fast, not by timeout");
}

#[tokio::test]
async fn a_new_pod_that_cannot_pull_its_image_fails_the_rollout_at_once_naming_it() {
    let ns = TestNamespace::new("rel-pull").await;
    create_ready(
        &ns,
        &deployment("web", 1, "registry.invalid/web:1", json!({})),
    )
    .await;
    let generation = patch_template(
        &ns,
        "web",
        json!({ "metadata": { "labels": { "ferry.test/never-ready": "true" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:missing" }] } }),
    )
    .await;
    let client = ns.client.clone();
    let w = workload(&ns, WorkloadKind::Deployment, "web", generation);
    let started = Instant::now();
    let wait = tokio::spawn(async move {
        wait_for_rollout(
            &client,
            &[w],
            WAIT,
            WaitOptions::default(),
            &NoopRolloutReporter,
        )
        .await
    });

    // kwok pulls no images: play the kubelet and report the pull failure on the new pod.
    let pods: Api<Pod> = ns.api();
    let lp = ListParams::default().labels("app=web,ferry.test/never-ready=true");
    let deadline = Instant::now() + WAIT;
    let pod = loop {
        let running = pods
            .list(&lp)
            .await
            .expect("list pods")
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if let Some(p) = running {
            break p.metadata.name.expect("pod name");
        }
        assert!(Instant::now() < deadline, "the new pod never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !wait.is_finished(),
        "the rollout must wait for a never-ready pod"
    );
    let status = json!({ "status": { "containerStatuses": [{
        "name": "app", "image": "registry.invalid/web:missing", "imageID": "", "ready": false,
        "restartCount": 0,
        "state": { "waiting": { "reason": "ImagePullBackOff",
                                "message": "Back-off pulling image \"registry.invalid/web:missing\"" } }
    }] } });
    pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch pod status");

    let err = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the rollout failed within 10 s of the signal")
        .expect("task")
        .expect_err("an unpullable image fails the rollout");
    let RolloutError::PodFailed { failure, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(failure.pod, pod);
    assert_eq!(failure.container.as_deref(), Some("app"));
    assert_eq!(failure.reason, "ImagePullBackOff");
    let text = err.to_string();
    assert!(
        text.contains(&pod) && text.contains("ImagePullBackOff"),
        "{text}"
    );
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn a_delayed_readiness_rollout_takes_at_least_the_delay() {
    let ns = TestNamespace::new("rel-delay").await;
    create_ready(
        &ns,
        &deployment("web", 2, "registry.invalid/web:1", json!({})),
    )
    .await;
    let started = Instant::now();
    let generation = patch_template(
        &ns,
        "web",
        json!({ "metadata": { "annotations": { "ferry.test/ready-delay": "3s" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:2" }] } }),
    )
    .await;
    let outcome = wait_for_rollout(
        &ns.client,
        &[workload(&ns, WorkloadKind::Deployment, "web", generation)],
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .unwrap_or_else(|e| panic!("rollout: {e}"));
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "completed after {:?}, before the 3 s readiness delay",
        started.elapsed()
    );
    assert!(outcome.workloads[0].elapsed >= Duration::from_secs(3));
}

#[tokio::test]
async fn a_rollout_that_cannot_finish_times_out_naming_what_it_waits_for() {
    let ns = TestNamespace::new("rel-timeout").await;
    create_ready(
        &ns,
        &deployment("web", 1, "registry.invalid/web:1", json!({})),
    )
    .await;
    let generation = patch_template(
        &ns,
        "web",
        json!({ "metadata": { "labels": { "ferry.test/never-ready": "true" } } }),
    )
    .await;
    let err = wait_for_rollout(
        &ns.client,
        &[workload(&ns, WorkloadKind::Deployment, "web", generation)],
        Duration::from_secs(3),
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .expect_err("times out");
    let RolloutError::Timeout { pending, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(pending.len(), 1, "{err}");
    assert!(err.to_string().contains("Deployment"), "{err}");
}

#[tokio::test]
async fn statefulset_and_daemonset_rollouts_complete() {
    let ns = TestNamespace::new("rel-sts-ds").await;
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db" },
        "spec": { "replicas": 2, "serviceName": "db",
                  "selector": { "matchLabels": { "app": "db" } },
                  "template": { "metadata": { "labels": { "app": "db" } },
                                "spec": { "containers": [{ "name": "db", "image": "registry.invalid/db:1" }] } } }
    }))
    .expect("a valid StatefulSet");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } },
                  "template": { "metadata": { "labels": { "app": "agent" } },
                                "spec": { "containers": [{ "name": "a", "image": "registry.invalid/agent:1" }] } } }
    }))
    .expect("a valid DaemonSet");
    let sts = ns
        .api::<StatefulSet>()
        .create(&PostParams::default(), &sts)
        .await
        .expect("create statefulset");
    let ds = ns
        .api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .expect("create daemonset");
    let workloads = [
        workload(
            &ns,
            WorkloadKind::StatefulSet,
            "db",
            sts.metadata.generation.expect("generation"),
        ),
        workload(
            &ns,
            WorkloadKind::DaemonSet,
            "agent",
            ds.metadata.generation.expect("generation"),
        ),
    ];
    wait_for_rollout(
        &ns.client,
        &workloads,
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .unwrap_or_else(|e| panic!("first rollout: {e}"));

    // An image change of both rolls every pod.
    let image = |c: &str, img: &str| json!({ "spec": { "template": { "spec": { "containers": [{ "name": c, "image": img }] } } } });
    let sts = ns
        .api::<StatefulSet>()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Strategic(&image("db", "registry.invalid/db:2")),
        )
        .await
        .expect("patch statefulset");
    let ds = ns
        .api::<DaemonSet>()
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Strategic(&image("a", "registry.invalid/agent:2")),
        )
        .await
        .expect("patch daemonset");
    let workloads = [
        workload(
            &ns,
            WorkloadKind::StatefulSet,
            "db",
            sts.metadata.generation.expect("generation"),
        ),
        workload(
            &ns,
            WorkloadKind::DaemonSet,
            "agent",
            ds.metadata.generation.expect("generation"),
        ),
    ];
    wait_for_rollout(
        &ns.client,
        &workloads,
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .unwrap_or_else(|e| panic!("update rollout: {e}"));
    let st = ns
        .api::<StatefulSet>()
        .get("db")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(st.current_revision, st.update_revision, "{st:?}");
    assert_eq!(st.updated_replicas, Some(2), "{st:?}");
    let st = ns
        .api::<DaemonSet>()
        .get("agent")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        st.updated_number_scheduled,
        Some(st.desired_number_scheduled),
        "{st:?}"
    );
    assert!(st.desired_number_scheduled > 0, "{st:?}");
}

fn big_record(revision: u32, bytes: usize) -> ReleaseRecord {
    // Incompressible text (hex of a SHA-256 chain) so the compressed record spans chunks.
    use sha2::{Digest, Sha256};
    let mut seed = Sha256::digest(b"record");
    let mut objects = Vec::new();
    let mut total = 0;
    while total < bytes {
        let mut text = String::new();
        for _ in 0..256 {
            seed = Sha256::digest(seed);
            text.push_str(&hex::encode(seed));
        }
        total += text.len();
        objects.push(json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("blob-{}", objects.len()) }, "data": { "blob": text } }));
    }
    ReleaseRecord {
        app: "demo".into(),
        env: "staging".into(),
        revision,
        status: ReleaseStatus::Pending,
        candidate: Candidate::new(
            BTreeMap::from([("web".into(), "127.0.0.1:5000/web@sha256:ab".into())]),
            "sha256:cd".into(),
        ),
        objects,
        timings: Timings::starting_now(),
        availability: Vec::new(),
        checks: Vec::new(),
        released_by: "tester".into(),
        failure: None,
        rolled_back_to: None,
        source: None,
    }
}

#[tokio::test]
async fn a_record_larger_than_one_mib_is_written_and_read_back() {
    let ns = TestNamespace::new("rel-record").await;
    let store = RecordStore::new(ns.client.clone(), ns.name(), "demo", "staging");
    assert_eq!(store.next_revision().await.expect("next"), 1);

    let mut record = big_record(1, 1536 * 1024);
    assert!(serde_json::to_vec(&record).unwrap().len() > 1024 * 1024);
    store.create(&record).await.expect("create record");
    let chunks = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("ferry.dev/revision=1"))
        .await
        .expect("list");
    assert!(chunks.items.len() >= 2, "{} secrets", chunks.items.len());
    assert!(
        chunks
            .items
            .iter()
            .all(|s| s.type_.as_deref() == Some("ferry.dev/release.v1"))
    );
    assert_eq!(store.read(1).await.expect("read back"), record);

    // The same revision cannot be created twice.
    assert!(store.create(&record).await.is_err());

    // Finishing the record rewrites it; a smaller record drops its surplus chunks.
    record.status = ReleaseStatus::Succeeded;
    record.objects.truncate(1);
    record.timings.finish();
    store.update(&record).await.expect("update");
    assert_eq!(store.read(1).await.expect("read updated"), record);
    let left = ns
        .api::<Secret>()
        .list(&ListParams::default().labels("ferry.dev/revision=1"))
        .await
        .expect("list");
    assert_eq!(left.items.len(), 1, "surplus chunks removed");

    // History, the last good revision, and pruning that keeps it.
    for revision in 2..=4 {
        let mut r = big_record(revision, 10);
        r.status = ReleaseStatus::Failed;
        store.create(&r).await.expect("create");
    }
    let history = store.history().await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|s| (s.revision, s.status))
            .collect::<Vec<_>>(),
        [
            (1, ReleaseStatus::Succeeded),
            (2, ReleaseStatus::Failed),
            (3, ReleaseStatus::Failed),
            (4, ReleaseStatus::Failed)
        ]
    );
    assert_eq!(history[0].released_by.as_deref(), Some("tester"));
    assert_eq!(store.next_revision().await.expect("next"), 5);
    let pruned = store.prune(2).await.expect("prune");
    assert_eq!(pruned, [2]);
    let left: Vec<u32> = store
        .history()
        .await
        .expect("history")
        .iter()
        .map(|s| s.revision)
        .collect();
    assert_eq!(left, [1, 3, 4]);
    assert_eq!(
        store
            .last_succeeded()
            .await
            .expect("last good")
            .map(|r| r.revision),
        Some(1)
    );
}

fn lock_options(ns: &TestNamespace, holder: &str, wait: Option<Duration>) -> LockOptions {
    LockOptions {
        namespace: ns.name().to_string(),
        app: "demo".into(),
        env: "staging".into(),
        holder: holder.into(),
        duration: Duration::from_secs(15),
        wait,
    }
}

#[tokio::test]
async fn a_second_lock_is_refused_naming_the_holder() {
    let ns = TestNamespace::new("rel-lock").await;
    let first = acquire(&ns.client, &lock_options(&ns, "alice@ci pid 1", None))
        .await
        .expect("first acquisition");
    assert!(first.took_over().is_none());

    let err = acquire(&ns.client, &lock_options(&ns, "bob@laptop pid 2", None))
        .await
        .err()
        .expect("second acquisition refused");
    assert!(
        matches!(err, LockError::Held { ref holder, .. } if holder == "alice@ci pid 1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("alice@ci pid 1"), "{err}");

    // A waiting acquisition gets the lock as soon as the first is released.
    let waiter = {
        let client = ns.client.clone();
        let opts = lock_options(&ns, "bob@laptop pid 2", Some(WAIT));
        tokio::spawn(async move { acquire(&client, &opts).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the waiter must wait");
    first.check().expect("still held");
    first.release().await.expect("release");
    let second = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("waiter woke up")
        .expect("task")
        .expect("second acquisition after release");
    let lease = ns
        .api::<Lease>()
        .get(&lease_name("demo", "staging"))
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("bob@laptop pid 2")
    );
    second.release().await.expect("release");
    assert!(
        ns.api::<Lease>()
            .get_opt(&lease_name("demo", "staging"))
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn an_expired_lock_is_taken_over_and_renewed() {
    let ns = TestNamespace::new("rel-lock-expired").await;
    let long_ago = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(120))
        .expect("time");
    let ghost = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name("demo", "staging")),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("killed@host pid 9".into()),
            acquire_time: Some(MicroTime(long_ago)),
            renew_time: Some(MicroTime(long_ago)),
            lease_duration_seconds: Some(30),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    ns.api::<Lease>()
        .create(&PostParams::default(), &ghost)
        .await
        .expect("create expired lease");

    let mut opts = lock_options(&ns, "carol@ci pid 3", None);
    opts.duration = Duration::from_secs(3);
    let guard = acquire(&ns.client, &opts).await.expect("takeover");
    let previous = guard.took_over().expect("took over");
    assert_eq!(previous.holder, "killed@host pid 9");

    // Renewals keep it alive past its 3 s duration: a second process is still refused.
    let renew_before = ns
        .api::<Lease>()
        .get(guard.name())
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.renew_time);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let lease = ns.api::<Lease>().get(guard.name()).await.expect("lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.lease_transitions, Some(1));
    assert!(spec.renew_time > renew_before, "renewed");
    let err = acquire(&ns.client, &lock_options(&ns, "dave@ci pid 4", None))
        .await
        .err()
        .expect("refused while renewed");
    assert!(err.to_string().contains("carol@ci pid 3"), "{err}");
    guard.check().expect("still held");
    guard.release().await.expect("release");
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `/ok` 200 "all systems go", `/fail` 500, `/flaky`
/// 503 twice then 200, `/slow` answers after 2 s. Returns the base URL.
async fn test_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("addr");
    let flaky = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let flaky = flaky.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.as_str() {
                    "/ok" => ("200 OK", "all systems go"),
                    "/fail" => ("500 Internal Server Error", "broken"),
                    "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) < 2 => {
                        ("503 Service Unavailable", "warming up")
                    }
                    "/flaky" => ("200 OK", "ready now"),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        ("200 OK", "late")
                    }
                    _ => ("404 Not Found", "no"),
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
async fn http_checks_pass_and_fail_as_expected() {
    let base = test_server().await;
    let check =
        |name: &str, path: &str, status: u16, body: Option<&str>, retries: u32, timeout: &str| {
            let mut spec = CheckSpec::from_config(&HttpCheck {
                name: name.into(),
                url: format!("{base}{path}"),
                expect_status: status,
                body_contains: body.map(str::to_string),
                retries,
                timeout: timeout.into(),
            })
            .expect("valid check");
            spec.backoff = Duration::from_millis(20);
            spec
        };
    let checks = [
        check("ok", "/ok", 200, Some("systems go"), 3, "2s"),
        check("wrong-body", "/ok", 200, Some("maintenance"), 2, "2s"),
        check("server-error", "/fail", 200, None, 3, "2s"),
        check("expects-500", "/fail", 500, None, 1, "2s"),
        check("flaky", "/flaky", 200, None, 5, "2s"),
        check("slow", "/slow", 200, None, 2, "200ms"),
    ];
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let results = run_checks(&client, None, &checks, &NoopRolloutReporter).await;
    let summary: Vec<(&str, bool, u32, Option<u16>)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.passed, r.attempts, r.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("ok", true, 1, Some(200)),
            ("wrong-body", false, 2, Some(200)),
            ("server-error", false, 3, Some(500)),
            ("expects-500", true, 1, Some(500)),
            ("flaky", true, 3, Some(200)),
            ("slow", false, 2, None),
        ],
        "{results:#?}"
    );
    assert!(
        results[1]
            .failure
            .as_deref()
            .unwrap_or_default()
            .contains("maintenance")
    );
    assert!(
        results[5]
            .failure
            .as_deref()
            .unwrap_or_default()
            .contains("no answer")
    );
}

#[tokio::test]
async fn a_watch_started_before_the_workload_exists_sees_its_rollout_through() {
    let ns = TestNamespace::new("rel-early").await;
    let watch = RolloutWatch::start(
        &ns.client,
        [ns.name().to_string()],
        &BTreeSet::from([WorkloadKind::Deployment]),
    );
    let api: Api<Deployment> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &deployment(
                "web",
                2,
                "registry.invalid/web:1",
                json!({ "template": { "metadata": { "labels": { "app": "web" },
                        "annotations": { "ferry.test/ready-delay": "1s" } },
                        "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:1" }] } } }),
            ),
        )
        .await
        .expect("create deployment");
    let started = Instant::now();
    let w = workload(
        &ns,
        WorkloadKind::Deployment,
        "web",
        created.metadata.generation.expect("generation"),
    );
    let recorder = Recorder::default();
    watch
        .wait(
            std::slice::from_ref(&w),
            WAIT,
            WaitOptions::default(),
            &recorder,
        )
        .await
        .unwrap_or_else(|e| panic!("rollout: {e}"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "completed after {:?}, before the 1 s readiness delay",
        started.elapsed()
    );
    assert_eq!(*recorder.done.lock().expect("lock"), vec![w.clone()]);
    // The live object is complete at the pinned generation: a second wait returns at once.
    let again = Instant::now();
    watch
        .wait(&[w], WAIT, WaitOptions::default(), &NoopRolloutReporter)
        .await
        .unwrap_or_else(|e| panic!("second wait: {e}"));
    assert!(
        again.elapsed() < Duration::from_secs(1),
        "took {:?}",
        again.elapsed()
    );
}

#[tokio::test]
async fn a_workload_deleted_during_the_wait_fails_it() {
    let ns = TestNamespace::new("rel-deleted").await;
    let api: Api<Deployment> = ns.api();
    let created = api
        .create(
            &PostParams::default(),
            &deployment(
                "web",
                1,
                "registry.invalid/web:1",
                json!({ "template": { "metadata": { "labels": { "app": "web", "ferry.test/never-ready": "true" } },
                        "spec": { "containers": [{ "name": "app", "image": "registry.invalid/web:1" }] } } }),
            ),
        )
        .await
        .expect("create deployment");
    let w = workload(
        &ns,
        WorkloadKind::Deployment,
        "web",
        created.metadata.generation.expect("generation"),
    );
    let wait = wait_for_rollout(
        &ns.client,
        std::slice::from_ref(&w),
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    );
    let delete = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        api.delete("web", &Default::default())
            .await
            .expect("delete deployment");
        std::future::pending::<()>().await;
    };
    let err = tokio::select! {
        r = wait => r.expect_err("a deleted workload cannot complete"),
        () = delete => unreachable!(),
    };
    assert!(
        matches!(&err, RolloutError::Deleted { workload } if *workload == w),
        "{err}"
    );
}

#[tokio::test]
async fn a_service_check_goes_through_the_api_server_proxy() {
    let ns = TestNamespace::new("rel-proxy").await;
    // A Service that selects no pod: once the endpoints controller has written its (empty)
    // endpoints, the proxy finds the Service and answers 503.
    let services: Api<Service> = ns.api();
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web" },
                "spec": { "selector": { "app": "nothing" },
                          "ports": [{ "name": "http", "port": 8080 }] }
            }))
            .expect("a valid Service"),
        )
        .await
        .expect("create service");
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = ns.api();
    tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(endpoints, "web", |e: Option<&_>| e.is_some()),
    )
    .await
    .expect("the endpoints controller writes the Service's endpoints")
    .expect("watch endpoints");
    let check = |name: &str, url: &str| {
        let mut spec = CheckSpec::from_config(&HttpCheck {
            name: name.into(),
            url: url.into(),
            expect_status: 200,
            body_contains: None,
            retries: 2,
            timeout: "5s".into(),
        })
        .expect("valid check");
        spec.backoff = Duration::from_millis(20);
        spec
    };
    let checks = [
        check("no-endpoints", "web:8080/healthz"),
        check("no-service", "absent:8080/healthz"),
    ];
    // The client ferry makes: the default kube client would retry the 503 for a minute.
    let cluster = ferry::cluster::connect(&ferry::cluster::ConnectOptions {
        kubeconfig: Some(crate::support::cluster().kubeconfig()),
        context: "ferry-local".to_string(),
    })
    .await
    .expect("connect as ferry does");
    let proxy = ServiceProxy {
        client: cluster.proxy_client.clone(),
        namespace: ns.name().to_string(),
    };
    let client = reqwest::Client::new();
    let results = run_checks(&client, Some(&proxy), &checks, &NoopRolloutReporter).await;
    let summary: Vec<(&str, bool, u32, Option<u16>)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.passed, r.attempts, r.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("no-endpoints", false, 2, Some(503)),
            ("no-service", false, 2, Some(404)),
        ]
    );
    let why = results[0].failure.as_deref().unwrap_or_default();
    assert!(
        why.contains("no endpoints available for service") && why.contains("web"),
        "{why}"
    );
    let why = results[1].failure.as_deref().unwrap_or_default();
    assert!(why.contains("\"absent\" not found"), "{why}");
    // Without a cluster to go through, a Service check fails and says why.
    let alone = run_checks(&client, None, &checks[..1], &NoopRolloutReporter).await;
    assert_eq!(
        alone[0].failure.as_deref(),
        Some("no cluster to reach the Service through")
    );
}

/// Issue 10: every workload kind behind a Service gets a floor; a DaemonSet's comes from its
/// live desiredNumberScheduled (two kwok nodes), and a Service not live yet has none.
#[tokio::test]
async fn statefulsets_and_daemonsets_behind_services_get_floors() {
    let ns = TestNamespace::new("rel-floors").await;
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db" },
        "spec": { "replicas": 3, "serviceName": "db",
                  "selector": { "matchLabels": { "app": "db" } },
                  "template": { "metadata": { "labels": { "app": "db" } },
                                "spec": { "containers": [{ "name": "db", "image": "registry.invalid/db:1" }] } } }
    });
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } },
                  "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
                  "template": { "metadata": { "labels": { "app": "agent" } },
                                "spec": { "containers": [{ "name": "a", "image": "registry.invalid/agent:1" }] } } }
    });
    let service = |name: &str, app: &str| {
        json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
                "spec": { "selector": { "app": app }, "ports": [{ "port": 80 }] } })
    };
    let sts_created = ns
        .api::<StatefulSet>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(sts.clone()).expect("sts"),
        )
        .await
        .expect("create statefulset");
    let ds_created = ns
        .api::<DaemonSet>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(ds.clone()).expect("ds"),
        )
        .await
        .expect("create daemonset");
    create_service(&ns, "db").await;
    create_service(&ns, "agent").await;
    wait_for_rollout(
        &ns.client,
        &[
            workload(
                &ns,
                WorkloadKind::StatefulSet,
                "db",
                sts_created.metadata.generation.expect("generation"),
            ),
            workload(
                &ns,
                WorkloadKind::DaemonSet,
                "agent",
                ds_created.metadata.generation.expect("generation"),
            ),
        ],
        WAIT,
        WaitOptions::default(),
        &NoopRolloutReporter,
    )
    .await
    .unwrap_or_else(|e| panic!("first rollout: {e}"));

    let objects: Vec<ferry::object::Object> = [
        sts,
        ds,
        service("db", "db"),
        service("agent", "agent"),
        service("new", "agent"),
    ]
    .into_iter()
    .map(|v| ferry::object::Object::new(v, None).expect("object"))
    .collect();
    let floors = ferry::release::floors(&ns.client, ns.name(), &objects)
        .await
        .expect("floors");
    assert_eq!(
        floors,
        [
            // Two nodes, maxUnavailable 0: both pods.
            ServiceFloor {
                service: "agent".into(),
                floor: 2
            },
            // Three replicas, one pod at a time.
            ServiceFloor {
                service: "db".into(),
                floor: 2
            },
        ]
    );
}
