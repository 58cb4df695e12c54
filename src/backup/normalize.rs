//! What a backup keeps of a live object, pure: objects the cluster regenerates are skipped,
//! server-set fields are stripped (as Velero does), and the images workloads run are found.
//!
//! Never touches the network or a cluster.

use std::collections::BTreeSet;

use serde_json::Value;

/// Metadata fields the server sets, stripped from every object.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
    "ownerReferences",
];

/// Why an object is left out, or `None` when it is kept.
pub fn skip_reason(object: &Value) -> Option<&'static str> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let owned_by = |owner: &str| {
        meta.and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r.get("kind").and_then(Value::as_str) == Some(owner))
            })
    };
    match (group, kind) {
        ("", "Pod") => Some("pods are recreated by their controllers"),
        ("apps", "ReplicaSet") if owned_by("Deployment") => {
            Some("replica sets owned by a Deployment are recreated by it")
        }
        ("apps", "ControllerRevision") if meta.and_then(|m| m.get("ownerReferences")).is_some() => {
            Some("controller revisions are recreated by their owners")
        }
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => {
            Some("endpoints are recreated from Services")
        }
        ("", "Event") | ("events.k8s.io", "Event") => Some("events are not state"),
        ("coordination.k8s.io", "Lease") => Some("leases are recreated by their holders"),
        ("", "Secret")
            if object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token") =>
        {
            Some("service-account tokens are minted by the cluster")
        }
        ("", "ConfigMap") if name == "kube-root-ca.crt" => {
            Some("kube-root-ca.crt is published by the cluster")
        }
        _ => None,
    }
}

/// Strips server-set fields: metadata ([`SERVER_METADATA`]), `status`, and the Namespace
/// `spec.finalizers` the server adds. A Service keeps its `clusterIP`, `clusterIPs` and node
/// ports: `ferry restore` drops them unless `--keep-cluster-ips` ([`super::remap`]).
pub fn normalize(mut object: Value) -> Value {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(obj) = object.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                meta.remove(*field);
            }
            if meta
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| a.is_empty())
            {
                meta.remove("annotations");
            }
        }
        if kind == "Namespace"
            && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.remove("finalizers");
            if spec.is_empty() {
                obj.remove("spec");
            }
        }
    }
    object
}

/// The images the object's pods run (containers, init and ephemeral containers), for the
/// workload kinds and bare pods.
pub fn images(object: &Value) -> BTreeSet<String> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let spec = match kind {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            object.pointer("/spec/template/spec")
        }
        _ => None,
    };
    let mut found = BTreeSet::new();
    let Some(spec) = spec else {
        return found;
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(image) = c.get("image").and_then(Value::as_str) {
                found.insert(image.to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn regenerated_objects_are_skipped() {
        for object in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "r", "ownerReferences": [{"kind": "Deployment"}]}}),
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e"}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e"}}),
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}}),
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}}),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "t"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}}),
        ] {
            assert!(skip_reason(&object).is_some(), "{object}");
        }
        for object in [
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "s"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
        ] {
            assert_eq!(skip_reason(&object), None, "{object}");
        }
    }

    #[test]
    fn server_fields_are_stripped() {
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "uid": "u", "resourceVersion": "1", "managedFields": [],
                         "creationTimestamp": "t", "labels": {"a": "b"}},
            "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "ports": [{"port": 80}]},
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            normalize(live),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "labels": {"a": "b"}},
                   "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
                            "ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn workload_images_are_found() {
        let d = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"image": "r/init@sha256:1"}],
            "containers": [{"image": "r/web@sha256:2"}, {"image": "r/web@sha256:2"}]}}}});
        assert_eq!(
            images(&d).into_iter().collect::<Vec<_>>(),
            vec!["r/init@sha256:1", "r/web@sha256:2"]
        );
        assert!(images(&json!({"kind": "ConfigMap"})).is_empty());
    }
}
