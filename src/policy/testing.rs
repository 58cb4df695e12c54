//! Test fixtures for the rules: a fully hardened bundle that passes every rule, and small
//! helpers to break one field of it and run one rule.

use serde_json::{Value, json};

use super::pod::Bundle;
use super::{LintContext, Violation, rule};
use crate::object::Object;

/// A digest-pinned image reference.
pub(super) const IMAGE: &str = "registry.example/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A container that passes every container-level rule.
pub(super) fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": IMAGE,
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "128Mi"}
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]
    })
}

/// A pod spec that passes every rule.
pub(super) fn pod_spec() -> Value {
    let mut init = container("migrate");
    for field in ["ports", "readinessProbe", "livenessProbe", "lifecycle"] {
        init.as_object_mut().unwrap().remove(field);
    }
    json!({
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        },
        "initContainers": [init],
        "containers": [container("web")],
        "volumes": [{"name": "tmp", "emptyDir": {}}]
    })
}

/// A Deployment that passes every rule.
pub(super) fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}
            },
            "template": {
                "metadata": {"labels": {"app": "web", "version": "1"}},
                "spec": pod_spec()
            }
        }
    })
}

/// A PodDisruptionBudget selecting the Deployment's pods.
pub(super) fn pdb() -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    })
}

/// A default-deny NetworkPolicy.
pub(super) fn default_deny() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    })
}

/// Wraps a JSON value as an object.
pub(super) fn object(value: Value) -> Object {
    Object::new(value, None).unwrap()
}

/// The hardened bundle: Deployment, PodDisruptionBudget, default-deny NetworkPolicy.
pub(super) fn hardened_bundle() -> Vec<Object> {
    vec![object(deployment()), object(pdb()), object(default_deny())]
}

/// The hardened bundle after `change` has edited the Deployment.
pub(super) fn bundle_with(change: impl FnOnce(&mut Value)) -> Vec<Object> {
    let mut value = deployment();
    change(&mut value);
    vec![object(value), object(pdb()), object(default_deny())]
}

/// Sets the value at JSON pointer `pointer`, creating missing objects along the way.
pub(super) fn set(value: &mut Value, pointer: &str, new: Value) {
    let mut current = value;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let (last, parents) = parts.split_last().unwrap();
    for part in parents {
        current = match current {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            Value::Object(map) => map.entry(part.to_string()).or_insert_with(|| json!({})),
            other => panic!("cannot descend into {other}"),
        };
    }
    match current {
        Value::Array(items) => items[last.parse::<usize>().unwrap()] = new,
        Value::Object(map) => {
            map.insert(last.to_string(), new);
        }
        other => panic!("cannot set a field of {other}"),
    }
}

/// Removes the value at JSON pointer `pointer`.
pub(super) fn remove(value: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    match value.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.remove(last).unwrap();
        }
        Value::Array(items) => {
            items.remove(last.parse::<usize>().unwrap());
        }
        other => panic!("cannot remove from {other}"),
    }
}

/// Runs the rule `id` over `bundle` with no previous objects.
pub(super) fn check(id: &str, bundle: &[Object]) -> Vec<Violation> {
    check_with(id, bundle, &LintContext::default())
}

/// Runs the rule `id` over `bundle` under `ctx`.
pub(super) fn check_with(id: &str, bundle: &[Object], ctx: &LintContext<'_>) -> Vec<Violation> {
    let rule = rule(id).unwrap_or_else(|| panic!("no rule {id}"));
    let view = Bundle::new(bundle);
    let mut out = Vec::new();
    for (object, pod) in view.entries() {
        rule.check.one(object, pod, &mut out);
    }
    rule.check.whole(&view, ctx, &mut out);
    out
}

/// The paths the rule `id` reports on `bundle`.
pub(super) fn paths(id: &str, bundle: &[Object]) -> Vec<String> {
    check(id, bundle).into_iter().map(|v| v.path).collect()
}

/// The paths the rule `id` reports after `change` edits the hardened Deployment.
pub(super) fn paths_after(id: &str, change: impl FnOnce(&mut Value)) -> Vec<String> {
    paths(id, &bundle_with(change))
}

/// The pointer of the hardened Deployment's pod spec.
pub(super) const POD: &str = "/spec/template/spec";

/// The pointer of the hardened Deployment's serving container.
pub(super) const WEB: &str = "/spec/template/spec/containers/0";

/// The pointer of the hardened Deployment's init container.
pub(super) const MIGRATE: &str = "/spec/template/spec/initContainers/0";
