use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::release::record::{Candidate, ReleaseStatus, Timings};

fn mapping(to: &str) -> Mapping {
    Mapping {
        app: "demo".to_string(),
        environment: "production".to_string(),
        from_namespace: "demo-production".to_string(),
        to_namespace: to.to_string(),
        images: BTreeMap::new(),
        keep_cluster_ips: false,
    }
}

fn app_set(ns: &str) -> Ownership {
    Ownership::application("demo", "production", ns)
}

fn parent(ownership: &Ownership) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": PARENT_TYPE,
           "metadata": {"name": ownership.parent, "namespace": ownership.namespace,
                        "labels": {ID_LABEL: ownership.id()},
                        "annotations": {"applyset.kubernetes.io/tooling": "ferry/v0",
                                        "ferry.dev/templates-digest": "sha256:t"}}})
}

fn member(kind: &str, name: &str, set: &Ownership) -> Value {
    json!({"apiVersion": if kind == "Deployment" { "apps/v1" } else { "v1" }, "kind": kind,
           "metadata": {"name": name, "namespace": "demo-production",
                        "labels": {PART_OF_LABEL: set.id(), "app": "web"}},
           "spec": {}})
}

#[test]
fn members_keep_their_set_and_its_field_manager_and_parents_are_rewritten_later() {
    let old = app_set("demo-production");
    let provision = Ownership::provision("demo", "production", "demo-production");
    let objects = vec![
        parent(&old),
        parent(&provision),
        member("ConfigMap", "config", &old),
        member("ResourceQuota", "quota", &provision),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "default", "namespace": "demo-production"}}),
    ];
    let out = remap(objects, &mapping("demo-production")).unwrap();
    assert_eq!(out.objects.len(), 3, "parents are left out");
    assert_eq!(out.sets.len(), 2);
    assert_eq!(
        out.field_managers,
        ["ferry", "ferry-provision", RESTORE_FIELD_MANAGER]
    );
    assert_eq!(out.set_of, [Some(0), Some(1), None]);
    assert_eq!(out.sets[0].ownership, old);
    assert_eq!(
        out.sets[0]
            .annotations
            .get("ferry.dev/templates-digest")
            .map(String::as_str),
        Some("sha256:t")
    );
    assert!(
        !out.sets[0]
            .annotations
            .contains_key("applyset.kubernetes.io/tooling")
    );
    assert_eq!(
        out.objects[0]["metadata"]["labels"][PART_OF_LABEL],
        old.id()
    );
}

#[test]
fn another_namespace_moves_objects_the_namespace_bindings_and_the_set_ids() {
    let old = app_set("demo-production");
    let new = app_set("demo-drill-1");
    let objects = vec![
        parent(&old),
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "demo-production",
                            "labels": {"kubernetes.io/metadata.name": "demo-production",
                                       "pod-security.kubernetes.io/enforce": "restricted"}}}),
        member("ConfigMap", "config", &old),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "rb", "namespace": "demo-production"},
               "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "demo-production"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "crb"},
               "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "demo-production"}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "elsewhere"},
               "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": "other"}]}),
    ];
    let out = remap(objects, &mapping("demo-drill-1")).unwrap();
    let ns = &out.objects[0];
    assert_eq!(ns["metadata"]["name"], "demo-drill-1");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "demo-drill-1"
    );
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(out.objects[1]["metadata"]["namespace"], "demo-drill-1");
    assert_eq!(
        out.objects[1]["metadata"]["labels"][PART_OF_LABEL],
        new.id()
    );
    assert_eq!(out.sets[0].ownership, new);
    assert_eq!(out.objects[2]["subjects"][0]["namespace"], "demo-drill-1");
    assert_eq!(out.objects[3]["metadata"]["name"], "crb-demo-drill-1");
    assert_eq!(out.objects[4]["metadata"]["name"], "elsewhere");
    assert_eq!(
        out.renamed,
        [Renamed {
            kind: "ClusterRoleBinding".to_string(),
            from: "crb".to_string(),
            to: "crb-demo-drill-1".to_string()
        }]
    );
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "demo-production"},
           "spec": {"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"], "type": "NodePort",
                    "ports": [{"port": 80, "nodePort": 30080}]}})
}

#[test]
fn services_lose_their_addresses_unless_kept() {
    let out = remap(vec![service()], &mapping("demo-production")).unwrap();
    assert_eq!(
        out.objects[0]["spec"],
        json!({"type": "NodePort", "ports": [{"port": 80}]})
    );
    let mut keep = mapping("demo-production");
    keep.keep_cluster_ips = true;
    let out = remap(vec![service()], &keep).unwrap();
    assert_eq!(out.objects[0]["spec"], service()["spec"]);
    let headless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
                          "spec": {"clusterIP": "None"}});
    let out = remap(vec![headless], &mapping("demo-production")).unwrap();
    assert_eq!(out.objects[0]["spec"]["clusterIP"], "None");
}

fn deployment(image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "demo-production"},
           "spec": {"template": {"spec": {
               "initContainers": [{"name": "i", "image": image}],
               "containers": [{"name": "c", "image": image}, {"name": "s", "image": "other"}]}}}})
}

#[test]
fn images_are_rewritten_where_mapped() {
    let mut m = mapping("demo-production");
    m.images.insert(
        "localhost:5000/demo/web@sha256:1".to_string(),
        "registry.new/demo/web@sha256:1".to_string(),
    );
    let out = remap(vec![deployment("localhost:5000/demo/web@sha256:1")], &m).unwrap();
    let spec = &out.objects[0]["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["image"],
        "registry.new/demo/web@sha256:1"
    );
    assert_eq!(
        spec["containers"][0]["image"],
        "registry.new/demo/web@sha256:1"
    );
    assert_eq!(spec["containers"][1]["image"], "other");
}

fn record_secrets(namespace: &str) -> Vec<Value> {
    let record = ReleaseRecord {
        app: "demo".to_string(),
        env: "production".to_string(),
        revision: 3,
        status: ReleaseStatus::Succeeded,
        candidate: Candidate::new(
            BTreeMap::from([(
                "web".to_string(),
                "localhost:5000/demo/web@sha256:1".to_string(),
            )]),
            "sha256:t".to_string(),
        ),
        objects: vec![deployment("localhost:5000/demo/web@sha256:1")],
        timings: Timings::starting_now(),
        availability: Vec::new(),
        checks: Vec::new(),
        released_by: "me".to_string(),
        failure: None,
        rolled_back_to: None,
        source: None,
    };
    let encoded = record::encode(&record).unwrap();
    vec![
        json!({"apiVersion": "v1", "kind": "Secret", "type": record::SECRET_TYPE,
        "metadata": {"name": "ferry.release.demo.production.v3", "namespace": namespace,
                     "labels": {LABEL_RECORD: "release", LABEL_REVISION: "3", "ferry.dev/chunk": "0",
                                "ferry.dev/status": "succeeded"},
                     "annotations": {"ferry.dev/sha256": encoded.digest, "ferry.dev/chunks": "1"}},
        "data": {"release": base64::engine::general_purpose::STANDARD.encode(&encoded.chunks[0])}}),
    ]
}

fn decoded(secret: &Value) -> ReleaseRecord {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["release"].as_str().unwrap())
        .unwrap();
    let digest = secret["metadata"]["annotations"]["ferry.dev/sha256"]
        .as_str()
        .unwrap();
    record::decode(3, &[bytes], digest).unwrap()
}

#[test]
fn release_records_are_verbatim_in_place_and_rewritten_when_moved() {
    let input = record_secrets("demo-production");
    let same = remap(input.clone(), &mapping("demo-production")).unwrap();
    assert_eq!(
        same.objects, input,
        "in place, records are restored byte for byte"
    );
    assert_eq!(same.field_managers, ["ferry"]);
    assert_eq!(same.revisions.iter().copied().collect::<Vec<_>>(), [3]);

    let mut m = mapping("demo-drill-1");
    m.images.insert(
        "localhost:5000/demo/web@sha256:1".to_string(),
        "registry.new/demo/web@sha256:1".to_string(),
    );
    let moved = remap(record_secrets("demo-production"), &m).unwrap();
    assert_eq!(moved.objects[0]["metadata"]["namespace"], "demo-drill-1");
    let rec = decoded(&moved.objects[0]);
    assert_eq!(rec.objects[0]["metadata"]["namespace"], "demo-drill-1");
    assert_eq!(
        rec.objects[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.new/demo/web@sha256:1"
    );
    assert_eq!(
        rec.candidate.images["web"],
        "registry.new/demo/web@sha256:1"
    );
}
