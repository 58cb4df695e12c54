//! The order objects are applied in: dependencies first, policies last.

use serde::Serialize;

/// A group of objects that can be applied together once the previous groups exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wave {
    /// CustomResourceDefinitions (and waiting for them to be Established).
    Definitions,
    /// Namespaces.
    Namespaces,
    /// Cluster and namespace guard rails: quotas, limit ranges, priority and storage classes.
    Guardrails,
    /// ServiceAccounts, Roles, RoleBindings and their cluster-wide counterparts.
    Rbac,
    /// ConfigMaps, Secrets, volumes.
    Config,
    /// Services.
    Services,
    /// Deployments, StatefulSets, DaemonSets, Jobs, Pods.
    Workloads,
    /// Instances of custom and other kinds not listed elsewhere.
    Other,
    /// PodDisruptionBudgets, NetworkPolicies, autoscalers, ingress.
    Policies,
}

/// The wave an object of `kind` belongs to.
pub fn wave(kind: &str) -> Wave {
    match kind {
        "CustomResourceDefinition" => Wave::Definitions,
        "Namespace" => Wave::Namespaces,
        "ResourceQuota" | "LimitRange" | "PriorityClass" | "StorageClass" | "RuntimeClass" => {
            Wave::Guardrails
        }
        "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            Wave::Rbac
        }
        "ConfigMap" | "Secret" | "PersistentVolume" | "PersistentVolumeClaim" => Wave::Config,
        "Service" => Wave::Services,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => {
            Wave::Workloads
        }
        "PodDisruptionBudget" | "NetworkPolicy" | "HorizontalPodAutoscaler" | "Ingress" => {
            Wave::Policies
        }
        _ => Wave::Other,
    }
}

/// Kinds known to be cluster-scoped; everything else gets the environment's namespace when
/// its template leaves it out.
pub fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "PersistentVolume"
            | "StorageClass"
            | "PriorityClass"
            | "RuntimeClass"
            | "IngressClass"
            | "ValidatingWebhookConfiguration"
            | "MutatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "APIService"
            | "Node"
    )
}
