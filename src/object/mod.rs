//! A rendered Kubernetes object: its JSON value, where it came from, and who it is.
//!
//! Pure data shared by `render`, `policy` and the adapters; it never touches a cluster.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

/// Where in the project an object was rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The template file, relative to the project root (e.g. `templates/deployment.yaml.hbs`).
    pub template: PathBuf,
    /// The 1-based index of the YAML document within the template's output.
    pub document: usize,
}

/// The identity of an object in a cluster: group/kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects or before defaulting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One Kubernetes object of a bundle.
///
/// # Guarantees
/// `value` is a JSON object with non-empty string `apiVersion`, `kind` and `metadata.name`
/// (checked by [`Object::new`]). `Debug` shows who the object is, never its content (a
/// rendered Secret holds values in clear), so a bundle or a record cannot leak through `{:?}`.
#[derive(Clone, PartialEq)]
pub struct Object {
    /// Who the object is.
    pub id: ObjectRef,
    /// The full object as the server will receive it.
    pub value: Value,
    /// The template it came from, when it was rendered from one.
    pub origin: Option<Origin>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("id", &self.id)
            .field("value", &"***")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Why a document is not a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// The document is not a mapping.
    #[error("the document is not a mapping")]
    NotAMapping,
    /// A required field is missing, empty or not a string.
    #[error("`{field}` is missing or not a non-empty string")]
    MissingField {
        /// The dotted path of the field.
        field: &'static str,
    },
}

impl Object {
    /// Checks that `value` looks like a Kubernetes object and wraps it.
    ///
    /// # Errors
    /// [`ObjectError`] when `value` is not a mapping or lacks `apiVersion`, `kind` or
    /// `metadata.name`.
    pub fn new(value: Value, origin: Option<Origin>) -> Result<Self, ObjectError> {
        if !value.is_object() {
            return Err(ObjectError::NotAMapping);
        }
        // Field by field rather than by JSON pointer, which allocates per lookup: this runs
        // for every rendered object.
        let metadata = value.get("metadata");
        let text = |field_value: Option<&Value>, field: &'static str| {
            field_value
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or(ObjectError::MissingField { field })
        };
        let id = ObjectRef {
            api_version: text(value.get("apiVersion"), "apiVersion")?,
            kind: text(value.get("kind"), "kind")?,
            name: text(metadata.and_then(|m| m.get("name")), "metadata.name")?,
            namespace: metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        Ok(Object { id, value, origin })
    }

    /// The API group of the object (`""` for the core group).
    pub fn group(&self) -> &str {
        self.id
            .api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The object's `metadata.labels`, if any.
    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
    }

    /// The pod template spec of a workload (`spec.template.spec`, or
    /// `spec.jobTemplate.spec.template.spec` for CronJobs), or the spec of a bare Pod.
    pub fn pod_spec(&self) -> Option<&Value> {
        match self.id.kind.as_str() {
            "Pod" => self.value.get("spec"),
            "CronJob" => self.value.pointer("/spec/jobTemplate/spec/template/spec"),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                self.value.pointer("/spec/template/spec")
            }
            _ => None,
        }
    }

    /// The JSON pointer prefix of [`Object::pod_spec`], for reporting field paths.
    pub fn pod_spec_path(&self) -> &'static str {
        match self.id.kind.as_str() {
            "Pod" => "spec",
            "CronJob" => "spec.jobTemplate.spec.template.spec",
            _ => "spec.template.spec",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_namespaced_object() {
        let obj = Object::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "demo"}}),
            None,
        )
        .unwrap();
        assert_eq!(obj.id.to_string(), "Deployment demo/web");
        assert_eq!(obj.group(), "apps");
    }

    #[test]
    fn rejects_a_document_without_a_name() {
        let err = Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ObjectError::MissingField {
                field: "metadata.name"
            }
        );
    }

    #[test]
    fn rejects_a_scalar() {
        assert_eq!(
            Object::new(json!("hello"), None).unwrap_err(),
            ObjectError::NotAMapping
        );
    }

    #[test]
    fn debug_never_shows_the_content() {
        let obj = Object::new(
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "db"}, "stringData": {"password": "hunter2-secret"}}),
            None,
        )
        .unwrap();
        let shown = format!("{obj:?} {:?}", vec![obj.clone()]);
        assert!(shown.contains("db"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
