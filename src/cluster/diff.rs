//! What an apply would change, per object, as unified diffs between the live object and the
//! server's dry-run answer.
//!
//! Server-managed fields (`managedFields`, `resourceVersion`, `generation`, `uid`,
//! `creationTimestamp`, `selfLink`, `status`) are stripped from both sides, so only what
//! the bundle changes shows. Secret values never appear: `data` and `stringData` entries read
//! `***`, or `*** (before)` / `*** (after)` when the value changes, as `kubectl diff` does; the
//! values of both sides' Secrets are registered with [`crate::redact`] and every diff is
//! scrubbed of them (and of every other secret value the process has seen), so a copy in a
//! ConfigMap, an env value or an annotation reads `***` too, before and after.

use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use super::apply::{Action, ApplyReport};
use crate::object::ObjectRef;
use crate::render::object_yaml;

/// Metadata fields the server sets and the bundle never does.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// The annotation where client-side kubectl keeps a copy of the object (Secret values included).
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How an object would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// It would be created.
    Create,
    /// It would be modified (or adopted).
    Update,
    /// It would be pruned.
    Delete,
}

/// One object's change.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    /// Who.
    pub id: ObjectRef,
    /// How.
    pub change: Change,
    /// True when the server could not check the object (its kind or namespace is created by the
    /// bundle): the diff shows the bundle's object as rendered.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchecked: bool,
    /// A unified diff, `live/…` against `bundle/…`, Secret values redacted.
    pub diff: String,
}

/// `value` without the fields the server manages.
pub fn comparable(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                metadata.remove(*field);
            }
            let empty = metadata
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(serde_json::Map::is_empty);
            if empty {
                metadata.remove("annotations");
            }
        }
    }
    value
}

/// True when two objects differ only in server-managed fields.
pub fn same(before: &Value, after: &Value) -> bool {
    comparable(before) == comparable(after)
}

/// Replaces Secret values in both sides with markers that show whether they changed, after
/// registering them ([`crate::redact::register_object`]) so their copies elsewhere are hidden.
pub fn redact_pair(before: Option<&mut Value>, after: Option<&mut Value>) {
    for side in [before.as_deref(), after.as_deref()].into_iter().flatten() {
        crate::redact::register_object(side);
    }
    let is_secret = |v: &Option<&mut Value>| {
        v.as_ref()
            .is_some_and(|v| v.get("kind").and_then(Value::as_str) == Some("Secret"))
    };
    if !is_secret(&before) && !is_secret(&after) {
        return;
    }
    let mut before = before;
    let mut after = after;
    for field in ["data", "stringData"] {
        let old = before
            .as_deref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new = after
            .as_deref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mark = |side: &mut Option<&mut Value>, key: &str, text: &str| {
            if let Some(map) = side
                .as_deref_mut()
                .and_then(|v| v.get_mut(field))
                .and_then(Value::as_object_mut)
            {
                map.insert(key.to_string(), Value::String(text.to_string()));
            }
        };
        for (key, value) in &old {
            match new.get(key) {
                Some(other) if other == value => {
                    mark(&mut before, key, "***");
                    mark(&mut after, key, "***");
                }
                Some(_) => {
                    mark(&mut before, key, "*** (before)");
                    mark(&mut after, key, "*** (after)");
                }
                None => mark(&mut before, key, "***"),
            }
        }
        for key in new.keys().filter(|k| !old.contains_key(*k)) {
            mark(&mut after, key, "***");
        }
    }
    for side in [before, after].into_iter().flatten() {
        if let Some(annotations) = side
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && annotations.contains_key(LAST_APPLIED)
        {
            annotations.insert(LAST_APPLIED.to_string(), Value::String("***".to_string()));
        }
    }
}

/// A unified diff of two objects (either may be absent), server fields stripped, Secret
/// values redacted, every registered secret value scrubbed.
pub fn unified(id: &ObjectRef, before: Option<&Value>, after: Option<&Value>) -> String {
    let mut old = before.map(comparable);
    let mut new = after.map(comparable);
    redact_pair(old.as_mut(), new.as_mut());
    for side in [old.as_mut(), new.as_mut()].into_iter().flatten() {
        crate::redact::scrub_value(side);
    }
    let text = |v: &Option<Value>| v.as_ref().map(object_yaml).unwrap_or_default();
    let (old_text, new_text) = (text(&old), text(&new));
    let path = match &id.namespace {
        Some(ns) => format!("{}/{ns}/{}", id.kind, id.name),
        None => format!("{}/{}", id.kind, id.name),
    };
    if old_text == new_text && before.map(comparable) != after.map(comparable) {
        // Only a hidden value differs: say so rather than print an empty diff.
        return format!(
            "--- live/{path}\n+++ bundle/{path}\n# only secret values differ (hidden)\n"
        );
    }
    TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{path}"), &format!("bundle/{path}"))
        .to_string()
}

/// The diffs of every object a dry-run report (with `capture`) says would change.
pub fn object_diffs(report: &ApplyReport) -> Vec<ObjectDiff> {
    report
        .objects
        .iter()
        .chain(&report.pruned)
        .filter(|r| r.action.is_change())
        .map(|r| {
            let change = match r.action {
                Action::Created => Change::Create,
                Action::Pruned => Change::Delete,
                _ => Change::Update,
            };
            let before = if change == Change::Create {
                None
            } else {
                r.before.as_ref()
            };
            ObjectDiff {
                id: r.id.clone(),
                change,
                unchecked: r.unchecked,
                diff: unified(&r.id, before, r.after.as_ref()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("ns".into()),
            name: "db".into(),
        }
    }

    #[test]
    fn server_fields_do_not_count() {
        let live = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "1",
            "managedFields": [{}], "uid": "x"}, "data": {"k": "v"}});
        let dry = json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "2"},
            "data": {"k": "v"}});
        assert!(same(&live, &dry));
    }

    #[test]
    fn secret_values_never_show() {
        let live = json!({"kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "b2xk", "user": "YWRtaW4="}});
        let new = json!({"kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "bmV3", "user": "YWRtaW4="}});
        let diff = unified(&id(), Some(&live), Some(&new));
        assert!(!diff.contains("b2xk") && !diff.contains("bmV3") && !diff.contains("YWRtaW4"));
        assert!(
            diff.contains("-  password: '*** (before)'") || diff.contains("*** (before)"),
            "{diff}"
        );
        assert!(diff.contains("*** (after)"), "{diff}");
    }

    #[test]
    fn copies_of_secret_values_in_other_objects_never_show() {
        // issue 10: a live Secret's old value copied into a ConfigMap, and the new value
        // copied into an env value and an annotation, are hidden on both sides of the diff.
        let old_secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "b2xkLXBhc3N3b3JkLTQy"}});
        let new_secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"password": "new-password-43"}});
        unified(&id(), Some(&old_secret), Some(&new_secret));
        let cm = |v: &str, rev: u32| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "annotations": {"x": format!("p={v}")}},
                "data": {"url": format!("postgres://u:{v}@db"), "env": [{"value": v}],
                    "rev": rev}})
        };
        let config = ObjectRef {
            kind: "ConfigMap".into(),
            ..id()
        };
        let diff = unified(
            &config,
            Some(&cm("old-password-42", 1)),
            Some(&cm("new-password-43", 2)),
        );
        assert!(!diff.contains("old-password-42"), "{diff}");
        assert!(!diff.contains("new-password-43"), "{diff}");
        assert!(diff.contains(" postgres://u:***@db"), "{diff}");
        assert!(diff.contains("-  rev: 1\n+  rev: 2"), "{diff}");
        let only_secret = unified(
            &config,
            Some(&cm("old-password-42", 1)),
            Some(&cm("new-password-43", 1)),
        );
        assert!(
            only_secret.ends_with("# only secret values differ (hidden)\n"),
            "{only_secret}"
        );
    }

    #[test]
    fn a_new_object_is_all_additions() {
        let new =
            json!({"kind": "Secret", "metadata": {"name": "db"}, "stringData": {"p": "s3cret"}});
        let diff = unified(&id(), None, Some(&new));
        assert!(diff.contains("+kind: Secret"), "{diff}");
        assert!(!diff.contains("s3cret"), "{diff}");
    }
}
