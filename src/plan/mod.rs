//! The dependency plan of a bundle: which objects wait for which, grouped into steps.
//!
//! Objects depend on each other implicitly (an instance waits for the CRD defining its kind,
//! an object for its namespace, every workload for every Foundation object: config, RBAC,
//! Services, NetworkPolicies, PDBs) and explicitly, through the
//! [`DEPENDS_ON_ANNOTATION`]. [`plan`] turns those edges into steps (step = longest path from
//! the roots) and says when the server can dry-run each object. Apply and restore both
//! follow it.
//!
//! Pure: no I/O, no cluster. Linear in objects plus edges: Foundation → workload edges go
//! through one virtual barrier node, so they never multiply.

mod annotation;
mod error;
mod graph;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Serialize;

pub use error::{CycleLink, Malformed, PlanError};

use crate::object::{Object, ObjectRef};

/// The annotation objects declare extra dependencies with.
pub const DEPENDS_ON_ANNOTATION: &str = "ferry.dev/depends-on";

/// The API group of CustomResourceDefinitions.
const CRD_GROUP: &str = "apiextensions.k8s.io";

/// A kind with its API group (`""` for the core group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKind {
    /// The API group, `""` for core.
    pub group: String,
    /// The kind, e.g. `Widget`.
    pub kind: String,
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// One object to place.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Who it is; `namespace` is `Some` iff it is namespaced, as it will be applied.
    pub id: ObjectRef,
    /// The API group of its kind (`""` for core), from `id.api_version`.
    pub group: String,
    /// The raw value of its [`DEPENDS_ON_ANNOTATION`], if any.
    pub depends_on: Option<String>,
    /// For a CustomResourceDefinition: the kind it defines (`spec.group`, `spec.names.kind`).
    pub defines: Option<GroupKind>,
    /// The template it came from, for errors.
    pub template: Option<PathBuf>,
}

impl Entry {
    /// Reads the annotation and (for CRDs) what it defines from `object`.
    ///
    /// # Guarantees
    /// `id` is `object.id` with `namespace` replaced by the given one (as applied); a
    /// non-string annotation value is kept as its JSON text, so [`plan`] reports it as
    /// malformed rather than silently dropping it; `defines` is `Some` only for an
    /// `apiextensions.k8s.io` CustomResourceDefinition with a string `spec.group` and
    /// `spec.names.kind`.
    pub fn of(object: &Object, namespace: Option<String>) -> Entry {
        let group = object.group().to_string();
        let depends_on = object
            .value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DEPENDS_ON_ANNOTATION))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        let defines = if group == CRD_GROUP && object.id.kind == "CustomResourceDefinition" {
            let text = |pointer: &str| object.value.pointer(pointer).and_then(|v| v.as_str());
            match (text("/spec/group"), text("/spec/names/kind")) {
                (Some(group), Some(kind)) => Some(GroupKind {
                    group: group.to_string(),
                    kind: kind.to_string(),
                }),
                _ => None,
            }
        } else {
            None
        };
        Entry {
            id: ObjectRef {
                namespace,
                ..object.id.clone()
            },
            group,
            depends_on,
            defines,
            template: object.origin.as_ref().map(|o| o.template.clone()),
        }
    }

    /// Whether this entry is a CustomResourceDefinition.
    fn is_crd(&self) -> bool {
        category(&self.group, &self.id.kind) == Category::Definitions
    }

    /// The key entries of a step are sorted by: category, kind, namespace, name, then the
    /// API version so two versions of one object still sort the same way every time.
    fn sort_key(&self) -> (Category, &str, Option<&str>, &str, &str) {
        (
            category(&self.group, &self.id.kind),
            &self.id.kind,
            self.id.namespace.as_deref(),
            &self.id.name,
            &self.id.api_version,
        )
    }
}

/// The category an object's kind puts it in (implicit dependencies come from these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// CustomResourceDefinitions.
    Definitions,
    /// Namespaces.
    Namespaces,
    /// Guard rails, RBAC, config, volumes, Services, NetworkPolicies, PDBs, admission
    /// policies: everything workloads wait for.
    Foundation,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs,
    /// CronJobs, Pods.
    Workloads,
    /// Everything else: Ingress, autoscalers, webhook configurations, custom instances.
    Extensions,
}

/// The category of `kind` in API group `group`.
///
/// # Guarantees
/// Built-in kinds are matched with their group, so a custom kind that shares a built-in's
/// name (Knative's `serving.knative.dev` Service) is an [`Category::Extensions`].
pub fn category(group: &str, kind: &str) -> Category {
    match (group, kind) {
        (CRD_GROUP, "CustomResourceDefinition") => Category::Definitions,
        ("", "Namespace") => Category::Namespaces,
        (
            "",
            "ResourceQuota"
            | "LimitRange"
            | "ServiceAccount"
            | "ConfigMap"
            | "Secret"
            | "PersistentVolume"
            | "PersistentVolumeClaim"
            | "Service",
        )
        | ("scheduling.k8s.io", "PriorityClass")
        | ("storage.k8s.io", "StorageClass")
        | ("node.k8s.io", "RuntimeClass")
        | (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        )
        | ("networking.k8s.io" | "extensions", "NetworkPolicy")
        | ("policy", "PodDisruptionBudget")
        | (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding",
        ) => Category::Foundation,
        ("", "ReplicationController" | "Pod")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("extensions", "Deployment" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob") => Category::Workloads,
        _ => Category::Extensions,
    }
}

/// The plan of a bundle: steps in order, and when each entry can be dry-run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The steps, first to last; every entry is in exactly one.
    pub steps: Vec<Step>,
    /// The step of each entry, by entry index.
    #[serde(skip)]
    step_of: Vec<usize>,
    /// The check of each entry, by entry index.
    #[serde(skip)]
    checks: Vec<Check>,
}

/// Objects that can be applied together once every earlier step exists.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Indices into the entries, sorted by (category, kind, namespace, name).
    pub objects: Vec<usize>,
    /// The CRDs of this step (same order): wait for them to be Established before the next
    /// step.
    pub establishes: Vec<usize>,
}

/// When the server can dry-run an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Check {
    /// Now, with the rest of the bundle: its namespace and kind exist or are not the
    /// bundle's to create.
    UpFront,
    /// Only once `step` (0-based) has been applied, since that step creates what it needs.
    After {
        /// The step that creates its namespace or kind.
        step: usize,
        /// What that step creates.
        because: Because,
    },
}

/// What a step creates that an entry's dry run needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Because {
    /// Its namespace is a Namespace of the bundle.
    Namespace(String),
    /// Its kind is defined by a CRD of the bundle.
    Kind(GroupKind),
}

impl Plan {
    /// The step (0-based index into [`Plan::steps`]) of the entry at `index`.
    ///
    /// # Panics
    /// When `index` is not the index of an entry given to [`plan`].
    pub fn step_of(&self, index: usize) -> usize {
        self.step_of[index]
    }

    /// When the server can dry-run the entry at `index`: up front, or only once a step
    /// created its namespace or kind.
    ///
    /// # Panics
    /// When `index` is not the index of an entry given to [`plan`].
    pub fn check(&self, index: usize) -> &Check {
        &self.checks[index]
    }
}

/// Plans `entries`.
///
/// # Guarantees
/// Every entry is in exactly one step, after every entry it depends on (implicitly or by
/// annotation); step 0 holds the entries with no dependency and every later step holds at
/// least one entry that waits for the step before it; every Foundation entry is in a step
/// before every workload. The result depends only on the entries, and steps are sorted.
/// Runs in O(n log n + edges).
///
/// # Errors
/// [`PlanError`] for a malformed annotation, a target that is not in the bundle or matches
/// two entries, and a dependency cycle (naming the objects around it).
pub fn plan(entries: &[Entry]) -> Result<Plan, PlanError> {
    let graph = graph::Graph::build(entries)?;
    let step_of = graph.steps(entries)?;
    let checks = graph.checks(entries, &step_of);
    Ok(Plan {
        steps: group_steps(entries, &step_of),
        step_of,
        checks,
    })
}

/// Groups entries by step, each step sorted, with its CRDs.
fn group_steps(entries: &[Entry], step_of: &[usize]) -> Vec<Step> {
    let count = step_of.iter().max().map_or(0, |last| last + 1);
    let mut steps: Vec<Step> = (0..count)
        .map(|_| Step {
            objects: Vec::new(),
            establishes: Vec::new(),
        })
        .collect();
    for (index, &step) in step_of.iter().enumerate() {
        steps[step].objects.push(index);
    }
    for step in &mut steps {
        step.objects.sort_by(|&a, &b| {
            entries[a]
                .sort_key()
                .cmp(&entries[b].sort_key())
                .then(a.cmp(&b))
        });
        step.establishes = step
            .objects
            .iter()
            .copied()
            .filter(|&i| entries[i].is_crd())
            .collect();
    }
    steps
}
