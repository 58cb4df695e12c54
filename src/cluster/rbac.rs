//! The least-privilege rules a deployer identity needs to run `ferry apply`, `diff` and
//! `status` against one environment, derived from the requests this module makes and nothing
//! else:
//!
//! | Request | Made by | RBAC |
//! |---|---|---|
//! | `GET /version`, discovery (`/api`, `/apis`) | every command | granted to all authenticated users (`system:public-info-viewer`, `system:discovery`) |
//! | server-side apply of a member, for real and `dryRun=All` | apply, diff | `patch`, and `create` for a new object |
//! | list members by label (prune, diff, status) | apply, diff, status | `list` |
//! | read a member that lacks the label (diff of an adopted object) | diff | `get` |
//! | delete a member that left the bundle | apply (`dryRun=All` for diff) | `delete` |
//! | read and apply the ApplySet parent Secret | apply, status | `get`, `patch`, `create` on that one name |
//! | wait for a CRD to be Established | apply (bundles with CRDs) | `list`, `watch` on those names |
//! | release records (Secrets, chunked), read and pruned | release, rollback, history | `create`, `delete`, `get`, `list`, `patch` on secrets |
//! | the release lock | release, rollback | `create`, `delete`, `get`, `update` on leases |
//! | watch the rollout: workloads, their ReplicaSets and pods | release, rollback | `get`, `list`, `watch` |
//! | watch the EndpointSlices in front of the workloads | release, rollback | `list`, `watch` on endpointslices |
//! | `service:port/path` checks through the API server's proxy | release, rollback | `get` on `services/proxy`, named `service:port` |
//!
//! Namespaced kinds get a Role per namespace; cluster-scoped kinds (CRDs, Namespaces,
//! ClusterRoles, …) need a ClusterRole, and only when the bundle has them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::applyset::Ownership;
use super::discovery::Resolved;

/// Verbs on every kind of the bundle.
pub const MEMBER_VERBS: &[&str] = &["create", "delete", "get", "list", "patch"];
/// Verbs on the ApplySet parent Secret.
pub const PARENT_VERBS: &[&str] = &["create", "get", "patch"];
/// Verbs on the bundle's CustomResourceDefinitions, for the Established wait.
pub const CRD_WAIT_VERBS: &[&str] = &["list", "watch"];

/// What `release`, `rollback` and `history` need in the environment's namespace beyond the
/// bundle's own kinds: (API group, resources, verbs). The secrets rule also covers the
/// ApplySet parent Secret.
pub const RELEASE_RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "",
        &["secrets"],
        &["create", "delete", "get", "list", "patch"],
    ),
    ("", &["pods"], &["get", "list", "watch"]),
    (
        "apps",
        &["daemonsets", "deployments", "replicasets", "statefulsets"],
        &["get", "list", "watch"],
    ),
    (
        "coordination.k8s.io",
        &["leases"],
        &["create", "delete", "get", "update"],
    ),
    ("discovery.k8s.io", &["endpointslices"], &["list", "watch"]),
];

/// One RBAC rule, serialised as Kubernetes writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// API groups (`""` for the core group).
    pub api_groups: Vec<String>,
    /// Resources (plural names).
    pub resources: Vec<String>,
    /// Object names, when the rule is limited to some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

/// The rules of a deployer: per namespace, and cluster-wide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeployerAccess {
    /// Rules of a Role in each namespace.
    pub namespaced: BTreeMap<String, Vec<Rule>>,
    /// Rules of a ClusterRole; empty when the bundle has no cluster-scoped objects.
    pub cluster: Vec<Rule>,
}

/// The rules for a bundle whose objects resolve to `resources` (each with its namespace; `None`
/// for cluster-scoped ones), owned by `ownership`; `proxied` names the `service:port`s the
/// environment's checks reach through the API server's proxy.
pub fn deployer_access(
    resources: &[(Resolved, Option<String>)],
    ownership: &Ownership,
    crd_names: &[String],
    proxied: &[String],
) -> DeployerAccess {
    // namespace (None = cluster) → group → resources
    let mut grouped: BTreeMap<Option<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (resolved, namespace) in resources {
        let scope = if resolved.namespaced() {
            Some(
                namespace
                    .clone()
                    .unwrap_or_else(|| ownership.namespace.clone()),
            )
        } else {
            None
        };
        grouped
            .entry(scope)
            .or_default()
            .entry(resolved.resource.group.clone())
            .or_default()
            .insert(resolved.resource.plural.clone());
    }
    grouped
        .entry(Some(ownership.namespace.clone()))
        .or_default();
    let verbs = |list: &[&str]| list.iter().map(|v| (*v).to_string()).collect::<Vec<_>>();
    let mut access = DeployerAccess::default();
    for (scope, groups) in grouped {
        let mut rules: Vec<Rule> = groups
            .iter()
            .map(|(group, plurals)| Rule {
                api_groups: vec![group.clone()],
                resources: plurals.iter().cloned().collect(),
                resource_names: Vec::new(),
                verbs: verbs(MEMBER_VERBS),
            })
            .collect();
        match &scope {
            Some(namespace) => {
                if *namespace == ownership.namespace {
                    rules.extend(RELEASE_RULES.iter().map(|(group, resources, list)| Rule {
                        api_groups: vec![(*group).to_string()],
                        resources: resources.iter().map(|r| (*r).to_string()).collect(),
                        resource_names: Vec::new(),
                        verbs: verbs(list),
                    }));
                    if !proxied.is_empty() {
                        let mut names = proxied.to_vec();
                        names.sort();
                        names.dedup();
                        rules.push(Rule {
                            api_groups: vec![String::new()],
                            resources: vec!["services/proxy".to_string()],
                            resource_names: names,
                            verbs: verbs(&["get"]),
                        });
                    }
                }
                rules.sort();
                access.namespaced.insert(namespace.clone(), rules);
            }
            None => {
                if !crd_names.is_empty() {
                    let mut names = crd_names.to_vec();
                    names.sort();
                    names.dedup();
                    rules.push(Rule {
                        api_groups: vec!["apiextensions.k8s.io".to_string()],
                        resources: vec!["customresourcedefinitions".to_string()],
                        resource_names: names,
                        verbs: verbs(CRD_WAIT_VERBS),
                    });
                }
                rules.sort();
                access.cluster = rules;
            }
        }
    }
    access
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::discovery::{ApiResource, Scope};

    fn resolved(group: &str, version: &str, kind: &str, plural: &str, scope: Scope) -> Resolved {
        Resolved {
            resource: ApiResource {
                group: group.to_string(),
                version: version.to_string(),
                api_version: if group.is_empty() {
                    version.to_string()
                } else {
                    format!("{group}/{version}")
                },
                kind: kind.to_string(),
                plural: plural.to_string(),
            },
            scope,
        }
    }

    #[test]
    fn a_namespaced_bundle_needs_only_a_role() {
        let ownership = Ownership::application("demo", "staging", "demo-staging");
        let ns = Some("demo-staging".to_string());
        let access = deployer_access(
            &[
                (
                    resolved("apps", "v1", "Deployment", "deployments", Scope::Namespaced),
                    ns.clone(),
                ),
                (
                    resolved("", "v1", "ConfigMap", "configmaps", Scope::Namespaced),
                    ns.clone(),
                ),
            ],
            &ownership,
            &[],
            &["web:8080".into()],
        );
        assert!(access.cluster.is_empty());
        let rules = &access.namespaced["demo-staging"];
        assert_eq!(rules.len(), 3 + RELEASE_RULES.len(), "{rules:#?}");
        let proxy = rules
            .iter()
            .find(|r| r.resources == ["services/proxy"])
            .unwrap();
        assert_eq!(
            (&proxy.resource_names, &proxy.verbs),
            (&vec!["web:8080".to_string()], &vec!["get".to_string()])
        );
        let secrets = rules.iter().find(|r| r.resources == ["secrets"]).unwrap();
        assert!(
            PARENT_VERBS
                .iter()
                .all(|v| secrets.verbs.iter().any(|s| s == v)),
            "{secrets:?}"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.resources == ["leases"] && r.verbs.contains(&"update".to_string()))
        );
    }

    #[test]
    fn cluster_scoped_kinds_need_a_cluster_role() {
        let ownership = Ownership::application("demo", "staging", "demo-staging");
        let crd = resolved(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            Scope::Cluster,
        );
        let access = deployer_access(
            &[(crd, None)],
            &ownership,
            &["widgets.example.com".into()],
            &[],
        );
        assert_eq!(access.cluster.len(), 2, "{:#?}", access.cluster);
        assert!(
            access
                .cluster
                .iter()
                .any(|r| r.verbs == vec!["list", "watch"])
        );
    }
}
