//! Where objects go: which kinds are cluster-scoped (the rest get the environment's
//! namespace). The order they are applied in is the dependency plan's ([`crate::plan`]).

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
