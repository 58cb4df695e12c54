//! Hardening beyond Pod Security: read-only root filesystems, resources, service account
//! tokens, images by digest, a default-deny NetworkPolicy and no `default` namespace.
//!
//! These follow the NSA/CISA guidance and the CIS Kubernetes Benchmark (reference/images.md
//! §9.3). They are opinions Ferry enforces, not what an admission controller would reject.

use std::collections::BTreeSet;

use serde_json::Value;

use super::pod::{Bundle, Pod, Which, dig, present, same_namespace, violation};
use super::{Check, Family, LintContext, Rule, Severity, Violation};
use crate::object::Object;

const fn rule(id: &'static str, severity: Severity, summary: &'static str, check: Check) -> Rule {
    Rule {
        id,
        family: Family::Hardening,
        severity,
        summary,
        check,
    }
}

/// `readOnlyRootFilesystem: true` on every container.
pub(super) const READONLY_ROOT: Rule = rule(
    "HARD-READONLY-ROOT",
    Severity::Error,
    "every container must set readOnlyRootFilesystem: true (writable paths as emptyDir)",
    Check::Pod(readonly_root),
);

/// CPU and memory requests and a memory limit on every container.
pub(super) const RESOURCES: Rule = rule(
    "HARD-RESOURCES",
    Severity::Error,
    "every container must request cpu and memory and limit memory",
    Check::Pod(resources),
);

/// No service account token mounted.
pub(super) const SA_TOKEN: Rule = rule(
    "HARD-SA-TOKEN",
    Severity::Error,
    "pods and the default service account must set automountServiceAccountToken: false",
    Check::Bundle(sa_token),
);

/// Images referenced by digest.
pub(super) const IMAGE_DIGEST: Rule = rule(
    "HARD-IMAGE-DIGEST",
    Severity::Warning,
    "every container image must be referenced by digest (name@sha256:…)",
    Check::Pod(image_digest),
);

/// A default-deny NetworkPolicy next to every workload.
pub(super) const DEFAULT_DENY: Rule = rule(
    "HARD-DEFAULT-DENY",
    Severity::Error,
    "a bundle with workloads must contain a default-deny NetworkPolicy (podSelector {}, Ingress and Egress)",
    Check::Bundle(default_deny),
);

/// Nothing in the `default` namespace.
pub(super) const DEFAULT_NAMESPACE: Rule = rule(
    "HARD-DEFAULT-NAMESPACE",
    Severity::Error,
    "objects must not live in the default namespace",
    Check::Object(default_namespace),
);

fn readonly_root(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for c in pod.containers(Which::All) {
        if c.security(&["readOnlyRootFilesystem"]) != Some(&Value::Bool(true)) {
            out.push(pod.violation(
                c.at("securityContext.readOnlyRootFilesystem"),
                format!("{} has a writable root filesystem", c.label()),
                "set securityContext.readOnlyRootFilesystem: true and mount writable paths as emptyDir".to_string(),
            ));
        }
    }
}

fn resources(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    // Kubernetes defaults a missing request to the limit, so a limit also counts as a request.
    // (path, what `resources` must set one of as [section, resource] pairs, what is wrong).
    const NEEDED: [(&str, &[[&str; 2]], &str); 3] = [
        (
            "resources.requests.cpu",
            &[["requests", "cpu"], ["limits", "cpu"]],
            "requests no cpu",
        ),
        (
            "resources.requests.memory",
            &[["requests", "memory"], ["limits", "memory"]],
            "requests no memory",
        ),
        (
            "resources.limits.memory",
            &[["limits", "memory"]],
            "sets no memory limit",
        ),
    ];
    for c in pod.containers(Which::InitAndRegular) {
        let resources = c.get(&["resources"]);
        for (path, fields, what) in NEEDED {
            if fields.iter().all(|keys| dig(resources, keys).is_none()) {
                out.push(pod.violation(
                    c.at(path),
                    format!("{} {what}", c.label()),
                    format!("set {path}"),
                ));
            }
        }
    }
}

fn sa_token(bundle: &Bundle<'_>, _ctx: &LintContext<'_>, out: &mut Vec<Violation>) {
    const FIX: &str = "set automountServiceAccountToken: false";
    for pod in bundle.pods() {
        if pod.spec.get("automountServiceAccountToken") != Some(&Value::Bool(false)) {
            out.push(pod.violation(
                pod.at("automountServiceAccountToken"),
                "the pod mounts a service account token".to_string(),
                format!("{FIX} in the pod spec"),
            ));
        }
    }
    for object in bundle.objects {
        if object.id.kind == "ServiceAccount"
            && object.id.name == "default"
            && object.value.get("automountServiceAccountToken") != Some(&Value::Bool(false))
        {
            out.push(violation(
                object,
                "automountServiceAccountToken".to_string(),
                "the default service account hands its token to every pod".to_string(),
                FIX.to_string(),
            ));
        }
    }
}

/// Whether `image` names its content by a sha256 or sha512 digest.
fn pinned_by_digest(image: &str) -> bool {
    let Some((name, digest)) = image.rsplit_once('@') else {
        return false;
    };
    let hex = |h: &str, len: usize| {
        h.len() == len
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    !name.is_empty()
        && (digest.strip_prefix("sha256:").is_some_and(|h| hex(h, 64))
            || digest.strip_prefix("sha512:").is_some_and(|h| hex(h, 128)))
}

fn image_digest(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    for c in pod.containers(Which::All) {
        let image = c.get(&["image"]).and_then(Value::as_str).unwrap_or("");
        if !pinned_by_digest(image) {
            out.push(
                pod.violation(
                    c.at("image"),
                    format!("{} image \"{image}\" is not pinned by digest", c.label()),
                    "reference the image as name@sha256:<digest> (ferry image build prints it)"
                        .to_string(),
                ),
            );
        }
    }
}

/// Whether `object` is a NetworkPolicy that denies all ingress and egress of every pod.
fn is_default_deny(object: &Object) -> bool {
    if object.id.kind != "NetworkPolicy" || object.group() != "networking.k8s.io" {
        return false;
    }
    let spec = &object.value["spec"];
    let empty = |v: Option<&Value>| match present(v) {
        None => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    // An omitted podSelector decodes to the empty selector, which selects every pod.
    let selects_all = match present(spec.get("podSelector")) {
        None => true,
        Some(Value::Object(s)) => empty(s.get("matchLabels")) && empty(s.get("matchExpressions")),
        Some(_) => false,
    };
    let types: BTreeSet<&str> = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    selects_all
        && types.contains("Ingress")
        && types.contains("Egress")
        && empty(spec.get("ingress"))
        && empty(spec.get("egress"))
}

fn default_deny(bundle: &Bundle<'_>, _ctx: &LintContext<'_>, out: &mut Vec<Violation>) {
    let policies: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| is_default_deny(o))
        .collect();
    let mut seen = BTreeSet::new();
    for pod in bundle.pods() {
        let workload = pod.object;
        // Report once per namespace, against its first workload.
        if !seen.insert(workload.id.namespace.as_deref()) {
            continue;
        }
        if policies.iter().any(|p| same_namespace(p, workload)) {
            continue;
        }
        let message = match &workload.id.namespace {
            Some(ns) => format!("no default-deny NetworkPolicy covers namespace \"{ns}\""),
            None => "the bundle has workloads but no default-deny NetworkPolicy".to_string(),
        };
        out.push(violation(
            workload,
            "metadata.namespace".to_string(),
            message,
            "add a NetworkPolicy with podSelector: {} and policyTypes: [Ingress, Egress], then explicit allows".to_string(),
        ));
    }
}

fn default_namespace(object: &Object, out: &mut Vec<Violation>) {
    if object.id.namespace.as_deref() == Some("default") {
        out.push(violation(
            object,
            "metadata.namespace".to_string(),
            "the object is in the default namespace".to_string(),
            "set metadata.namespace to the application's own namespace".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{
        MIGRATE, POD, WEB, bundle_with, check, default_deny, deployment, hardened_bundle, object,
        paths, paths_after, pdb, remove, set,
    };
    use super::pinned_by_digest;

    const ALL: [&str; 6] = [
        "HARD-READONLY-ROOT",
        "HARD-RESOURCES",
        "HARD-SA-TOKEN",
        "HARD-IMAGE-DIGEST",
        "HARD-DEFAULT-DENY",
        "HARD-DEFAULT-NAMESPACE",
    ];

    #[test]
    fn the_hardened_bundle_passes_every_hardening_rule() {
        for id in ALL {
            assert_eq!(check(id, &hardened_bundle()), vec![], "{id}");
        }
    }

    #[test]
    fn readonly_root_fails_when_unset() {
        let found = check(
            "HARD-READONLY-ROOT",
            &bundle_with(|d| remove(d, &format!("{WEB}/securityContext/readOnlyRootFilesystem"))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem"
        );
        assert_eq!(
            found[0].message,
            "container \"web\" has a writable root filesystem"
        );
    }

    #[test]
    fn readonly_root_fails_when_false_on_an_init_container() {
        let found = paths_after("HARD-READONLY-ROOT", |d| {
            set(
                d,
                &format!("{MIGRATE}/securityContext/readOnlyRootFilesystem"),
                json!(false),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.initContainers[0].securityContext.readOnlyRootFilesystem"]
        );
    }

    #[test]
    fn resources_fails_without_requests_and_limits() {
        let found = paths_after("HARD-RESOURCES", |d| remove(d, &format!("{WEB}/resources")));
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].resources.requests.cpu",
                "spec.template.spec.containers[0].resources.requests.memory",
                "spec.template.spec.containers[0].resources.limits.memory",
            ]
        );
    }

    #[test]
    fn resources_fails_without_a_memory_limit() {
        let found = check(
            "HARD-RESOURCES",
            &bundle_with(|d| remove(d, &format!("{MIGRATE}/resources/limits"))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.initContainers[0].resources.limits.memory"
        );
        assert_eq!(
            found[0].message,
            "init container \"migrate\" sets no memory limit"
        );
        assert_eq!(found[0].fix, "set resources.limits.memory");
    }

    #[test]
    fn resources_passes_when_limits_stand_in_for_requests() {
        let found = paths_after("HARD-RESOURCES", |d| {
            set(
                d,
                &format!("{WEB}/resources"),
                json!({"limits": {"cpu": "1", "memory": "256Mi"}}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn sa_token_fails_when_the_pod_does_not_opt_out() {
        let found = check(
            "HARD-SA-TOKEN",
            &bundle_with(|d| remove(d, &format!("{POD}/automountServiceAccountToken"))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.automountServiceAccountToken"
        );
        assert_eq!(found[0].message, "the pod mounts a service account token");
    }

    #[test]
    fn sa_token_checks_the_default_service_account() {
        let account = |automount: serde_json::Value| {
            object(json!({"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "default", "namespace": "shop"},
                          "automountServiceAccountToken": automount}))
        };
        let mut bundle = hardened_bundle();
        bundle.push(account(json!(true)));
        assert_eq!(
            paths("HARD-SA-TOKEN", &bundle),
            ["automountServiceAccountToken"]
        );
        bundle.pop();
        bundle.push(account(json!(false)));
        assert_eq!(check("HARD-SA-TOKEN", &bundle), vec![]);
    }

    #[test]
    fn image_digest_fails_on_a_tag() {
        let found = check(
            "HARD-IMAGE-DIGEST",
            &bundle_with(|d| {
                set(
                    d,
                    &format!("{WEB}/image"),
                    json!("registry.example/web:1.2"),
                )
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.template.spec.containers[0].image");
        assert_eq!(
            found[0].message,
            "container \"web\" image \"registry.example/web:1.2\" is not pinned by digest"
        );
    }

    #[test]
    fn image_digest_accepts_tag_and_digest_together() {
        let found = paths_after("HARD-IMAGE-DIGEST", |d| {
            set(
                d,
                &format!("{WEB}/image"),
                json!(format!("web:1.2@sha256:{}", "a".repeat(64))),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn digests_must_be_well_formed() {
        assert!(pinned_by_digest(&format!("web@sha256:{}", "0".repeat(64))));
        assert!(pinned_by_digest(&format!("web@sha512:{}", "f".repeat(128))));
        assert!(!pinned_by_digest(&format!("web@sha256:{}", "0".repeat(63))));
        assert!(!pinned_by_digest(&format!("web@sha256:{}", "A".repeat(64))));
        assert!(!pinned_by_digest(&format!("@sha256:{}", "0".repeat(64))));
        assert!(!pinned_by_digest("web:latest"));
        assert!(!pinned_by_digest(""));
    }

    #[test]
    fn image_digest_is_a_warning() {
        assert_eq!(super::IMAGE_DIGEST.severity, super::Severity::Warning);
    }

    #[test]
    fn default_deny_fails_without_a_network_policy() {
        let bundle = vec![object(deployment()), object(pdb())];
        let found = check("HARD-DEFAULT-DENY", &bundle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object, bundle[0].id);
        assert_eq!(found[0].path, "metadata.namespace");
        assert_eq!(
            found[0].message,
            "no default-deny NetworkPolicy covers namespace \"shop\""
        );
    }

    #[test]
    fn default_deny_fails_on_a_policy_that_is_not_a_default_deny() {
        let not_deny = [
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}),
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}),
        ];
        for spec in not_deny {
            let mut policy = default_deny();
            policy["spec"] = spec;
            let bundle = vec![object(deployment()), object(policy)];
            assert_eq!(paths("HARD-DEFAULT-DENY", &bundle), ["metadata.namespace"]);
        }
    }

    #[test]
    fn default_deny_reports_once_per_namespace_and_not_for_namespace_less_bundles_with_one() {
        let mut second = deployment();
        second["metadata"]["name"] = json!("worker");
        let bundle = vec![object(deployment()), object(second)];
        assert_eq!(check("HARD-DEFAULT-DENY", &bundle).len(), 1);

        let mut bare = deployment();
        remove(&mut bare, "/metadata/namespace");
        let mut policy = default_deny();
        remove(&mut policy, "/metadata/namespace");
        assert_eq!(
            check("HARD-DEFAULT-DENY", &[object(bare.clone()), object(policy)]),
            vec![]
        );
        let found = check("HARD-DEFAULT-DENY", &[object(bare)]);
        assert_eq!(
            found[0].message,
            "the bundle has workloads but no default-deny NetworkPolicy"
        );
    }

    #[test]
    fn default_deny_passes_a_bundle_without_workloads() {
        let bundle = vec![object(pdb())];
        assert_eq!(check("HARD-DEFAULT-DENY", &bundle), vec![]);
    }

    #[test]
    fn default_deny_ignores_a_policy_in_another_namespace() {
        let mut policy = default_deny();
        policy["metadata"]["namespace"] = json!("other");
        let bundle = vec![object(deployment()), object(policy)];
        assert_eq!(check("HARD-DEFAULT-DENY", &bundle).len(), 1);
    }

    #[test]
    fn default_namespace_fails_on_any_object_in_default() {
        let mut policy = default_deny();
        policy["metadata"]["namespace"] = json!("default");
        let bundle = vec![object(deployment()), object(policy)];
        let found = check("HARD-DEFAULT-NAMESPACE", &bundle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object, bundle[1].id);
        assert_eq!(found[0].path, "metadata.namespace");
    }

    #[test]
    fn default_namespace_passes_when_namespace_is_left_to_the_environment() {
        let found = paths_after("HARD-DEFAULT-NAMESPACE", |d| {
            remove(d, "/metadata/namespace")
        });
        assert_eq!(found, Vec::<String>::new());
    }
}
