//! Read-only views over the pod templates of a bundle, shared by the rule families.
//!
//! A [`Pod`] is the pod spec of any pod-bearing object (Pod, Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, Job, CronJob) together with its dotted path, and a [`Container`] is
//! one entry of its `initContainers`, `containers` or `ephemeralContainers`. A [`Bundle`] locates
//! every pod spec, its security context, template metadata and containers once, so the rules
//! share one walk of the JSON instead of each looking everything up again. The views only
//! borrow the rendered JSON; they never change it and never fail: a field of the wrong type
//! reads as absent and is left to the API server's validation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Violation;
use crate::object::Object;

/// Which container lists of a pod a rule inspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    /// `initContainers`, `containers` and `ephemeralContainers`, as Pod Security visits them.
    All,
    /// `initContainers` and `containers` (ephemeral containers may not set resources).
    InitAndRegular,
    /// `containers` only: the ones that serve traffic.
    Regular,
}

impl Which {
    /// Whether the container list at `list` (an index into [`LISTS`]) is selected.
    fn selects(self, list: usize) -> bool {
        match self {
            Which::All => true,
            Which::InitAndRegular => list < 2,
            Which::Regular => list == 1,
        }
    }
}

/// The container lists of a pod spec, with how a finding names their entries.
const LISTS: [(&str, &str); 3] = [
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
];

/// A bundle as the rules see it: every object, and the pod spec of each pod-bearing one,
/// located once.
#[derive(Debug)]
pub(super) struct Bundle<'a> {
    /// The objects, in bundle order.
    pub objects: &'a [Object],
    /// The pod of each object (`None` when it carries none), index-aligned with `objects`.
    pods: Vec<Option<Pod<'a>>>,
}

impl<'a> Bundle<'a> {
    /// Locates the pod spec (and its containers) of every object of `objects`.
    pub fn new(objects: &'a [Object]) -> Self {
        Bundle {
            objects,
            pods: objects.iter().map(Pod::of).collect(),
        }
    }

    /// Every object with its pod, if it carries one, in bundle order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a Object, Option<&Pod<'a>>)> {
        self.objects
            .iter()
            .zip(self.pods.iter().map(Option::as_ref))
    }

    /// Every pod spec, in bundle order.
    pub fn pods(&self) -> impl Iterator<Item = &Pod<'a>> {
        self.pods.iter().flatten()
    }
}

/// The pod spec of one pod-bearing object, with what the rules read from it located once.
#[derive(Debug, Clone)]
pub(super) struct Pod<'a> {
    /// The object that carries the pod spec.
    pub object: &'a Object,
    /// The pod spec itself (a JSON object).
    pub spec: &'a Value,
    /// The dotted path of the pod spec inside the object, e.g. `spec.template.spec`.
    pub path: &'static str,
    /// The pod's `securityContext`, unless absent or null.
    security: Option<&'a Value>,
    /// The pod template's metadata (the object's own for a bare Pod), unless absent or null.
    metadata: Option<&'a Value>,
    /// Every container, in Pod Security's visiting order (init, regular, ephemeral).
    containers: Vec<Container<'a>>,
}

/// One container of a pod spec. Its path and label are built only when a rule reports it,
/// so a clean bundle allocates nothing per container.
#[derive(Debug, Clone)]
pub(super) struct Container<'a> {
    /// The container as rendered.
    pub value: &'a Value,
    /// Its `securityContext`, unless absent or null.
    security: Option<&'a Value>,
    /// The pod spec's dotted path.
    pod_path: &'static str,
    /// The list it is in, as an index into [`LISTS`].
    list: usize,
    /// Its index in the list.
    index: usize,
    /// Its `name`.
    name: &'a str,
}

/// The pod template (the object carrying `metadata` and `spec`) of a pod-bearing object: the
/// object itself for a bare Pod.
fn template(object: &Object) -> Option<&Value> {
    let value = &object.value;
    match object.id.kind.as_str() {
        "Pod" => Some(value),
        "CronJob" => value
            .get("spec")?
            .get("jobTemplate")?
            .get("spec")?
            .get("template"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            value.get("spec")?.get("template")
        }
        _ => None,
    }
}

impl<'a> Pod<'a> {
    /// The pod of `object`, when it is pod-bearing and its pod spec is a JSON object.
    fn of(object: &'a Object) -> Option<Self> {
        let template = template(object)?;
        let spec = template.get("spec").filter(|spec| spec.is_object())?;
        let path = object.pod_spec_path();
        Some(Pod {
            object,
            spec,
            path,
            security: present(spec.get("securityContext")),
            metadata: present(template.get("metadata")),
            containers: containers_of(spec, path),
        })
    }

    /// The dotted path of `rest` inside the pod spec.
    pub fn at(&self, rest: &str) -> String {
        format!("{}.{rest}", self.path)
    }

    /// The non-null value at `keys` inside the pod spec.
    pub fn get(&self, keys: &[&str]) -> Option<&'a Value> {
        dig(Some(self.spec), keys)
    }

    /// The non-null value at `keys` inside the pod's `securityContext`.
    pub fn security(&self, keys: &[&str]) -> Option<&'a Value> {
        dig(self.security, keys)
    }

    /// The containers of the lists `which` selects, in Pod Security's visiting order.
    pub fn containers(&self, which: Which) -> impl Iterator<Item = &Container<'a>> {
        self.containers
            .iter()
            .filter(move |c| which.selects(c.list))
    }

    /// The pod's volumes with their index and name.
    pub fn volumes(&self) -> impl Iterator<Item = (usize, &'a str, &'a Value)> {
        let volumes = self.spec.get("volumes").and_then(Value::as_array);
        volumes
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, volume)| {
                let name = volume.get("name").and_then(Value::as_str).unwrap_or("");
                (index, name, volume)
            })
    }

    /// Whether the pod declares `spec.os.name: windows` (exempt from some restricted checks).
    pub fn is_windows(&self) -> bool {
        self.spec
            .get("os")
            .and_then(|os| os.get("name"))
            .and_then(Value::as_str)
            == Some("windows")
    }

    /// Whether the pod runs in a user namespace (`hostUsers: false`).
    pub fn in_user_namespace(&self) -> bool {
        self.spec.get("hostUsers") == Some(&Value::Bool(false))
    }

    /// The dotted path of the pod template's metadata (`metadata` for a bare Pod).
    pub fn metadata_path(&self) -> String {
        match self.path.strip_suffix(".spec") {
            Some(template) => format!("{template}.metadata"),
            None => "metadata".to_string(),
        }
    }

    /// The pod template's metadata (the object's own metadata for a bare Pod).
    pub fn metadata(&self) -> Option<&'a Value> {
        self.metadata
    }

    /// The labels of the pod template.
    pub fn labels(&self) -> Option<&'a serde_json::Map<String, Value>> {
        self.metadata
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
    }

    /// A violation of this pod's object.
    pub fn violation(&self, path: String, message: String, fix: String) -> Violation {
        violation(self.object, path, message, fix)
    }
}

/// Every container of the pod spec `spec` (at dotted path `pod_path`), in list order.
fn containers_of<'a>(spec: &'a Value, pod_path: &'static str) -> Vec<Container<'a>> {
    let mut out = Vec::new();
    for (list, (field, _)) in LISTS.iter().enumerate() {
        let Some(items) = spec.get(*field).and_then(Value::as_array) else {
            continue;
        };
        out.extend(items.iter().enumerate().map(|(index, value)| Container {
            value,
            security: present(value.get("securityContext")),
            pod_path,
            list,
            index,
            name: value.get("name").and_then(Value::as_str).unwrap_or(""),
        }));
    }
    out
}

impl<'a> Container<'a> {
    /// Its dotted path, e.g. `spec.template.spec.containers[0]`.
    pub fn path(&self) -> String {
        format!("{}.{}[{}]", self.pod_path, LISTS[self.list].0, self.index)
    }

    /// How a message names it, e.g. `init container "migrate"`.
    pub fn label(&self) -> String {
        format!("{} \"{}\"", LISTS[self.list].1, self.name)
    }

    /// The dotted path of `rest` inside the container.
    pub fn at(&self, rest: &str) -> String {
        format!("{}.{rest}", self.path())
    }

    /// The non-null value at `keys` inside the container.
    pub fn get(&self, keys: &[&str]) -> Option<&'a Value> {
        dig(Some(self.value), keys)
    }

    /// The non-null value at `keys` inside the container's `securityContext`.
    pub fn security(&self, keys: &[&str]) -> Option<&'a Value> {
        dig(self.security, keys)
    }
}

/// The non-null value reached from `value` through the object fields `keys` in turn (what
/// the JSON pointer `/k1/k2/…` finds, without building the pointer).
pub(super) fn dig<'v>(value: Option<&'v Value>, keys: &[&str]) -> Option<&'v Value> {
    let mut current = value?;
    for key in keys {
        current = current.get(*key)?;
    }
    present(Some(current))
}

/// A violation of `object` at `path`.
pub(super) fn violation(object: &Object, path: String, message: String, fix: String) -> Violation {
    Violation {
        object: object.id.clone(),
        path,
        message,
        fix,
    }
}

/// `value` unless it is absent or JSON `null` (which the API server treats as unset).
pub(super) fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Whether an optional boolean-ish field is set to anything but `false` (or null).
pub(super) fn truthy(value: Option<&Value>) -> bool {
    present(value).is_some_and(|v| v != &Value::Bool(false))
}

/// Whether two objects are in the same namespace; an unset namespace (defaulted by the
/// environment at apply time) matches any.
pub(super) fn same_namespace(a: &Object, b: &Object) -> bool {
    match (&a.id.namespace, &b.id.namespace) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Whether a `metav1.LabelSelector` selects a pod with `labels`.
///
/// A null or absent selector selects nothing; `{}` selects everything (policy/v1 semantics).
/// An unknown operator or a malformed selector selects nothing.
pub(super) fn selector_matches(
    selector: Option<&Value>,
    labels: &serde_json::Map<String, Value>,
) -> bool {
    let Some(selector) = present(selector).and_then(Value::as_object) else {
        return false;
    };
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    if let Some(match_labels) = present(selector.get("matchLabels")) {
        let Some(match_labels) = match_labels.as_object() else {
            return false;
        };
        for (key, want) in match_labels {
            if want.as_str().is_none() || label(key) != want.as_str() {
                return false;
            }
        }
    }
    if let Some(expressions) = present(selector.get("matchExpressions")) {
        let Some(expressions) = expressions.as_array() else {
            return false;
        };
        for expression in expressions {
            let Some(key) = expression.get("key").and_then(Value::as_str) else {
                return false;
            };
            let values: BTreeSet<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let have = label(key);
            let ok = match expression.get("operator").and_then(Value::as_str) {
                Some("In") => have.is_some_and(|v| values.contains(v)),
                Some("NotIn") => have.is_none_or(|v| !values.contains(v)),
                Some("Exists") => have.is_some(),
                Some("DoesNotExist") => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// A label selector in a canonical form, so that two selectors compare equal exactly when
/// they select the same pods by construction (order of labels and values ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct CanonicalSelector {
    labels: BTreeMap<String, String>,
    expressions: BTreeSet<(String, String, BTreeSet<String>)>,
}

impl CanonicalSelector {
    /// Builds the canonical form of a (possibly absent) `metav1.LabelSelector`.
    pub fn of(selector: Option<&Value>) -> Self {
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
        let mut out = CanonicalSelector::default();
        let Some(selector) = present(selector) else {
            return out;
        };
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (key, value) in labels {
                out.labels.insert(key.clone(), text(value));
            }
        }
        if let Some(expressions) = selector.get("matchExpressions").and_then(Value::as_array) {
            for expression in expressions {
                let field = |name: &str| expression.get(name).map(text).unwrap_or_default();
                let values = expression
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().map(text).collect())
                    .unwrap_or_default();
                out.expressions
                    .insert((field("key"), field("operator"), values));
            }
        }
        out
    }
}
