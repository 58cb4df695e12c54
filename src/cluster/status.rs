//! What Ferry manages in an environment: every object of the last apply (from the ApplySet
//! parent's inventory), whether it is still as applied (drift), and the readiness of each
//! workload, decided like `kubectl rollout status`.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::apply::{Key, list_members};
use super::applyset::{self, Ownership};
use super::discovery::Resolver;
use super::error::Error;
use crate::object::ObjectRef;

/// How a recorded object compares with what Ferry applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Drift {
    /// As applied.
    InSync,
    /// Someone changed fields Ferry set (their field managers are named).
    Modified {
        /// The field managers that wrote after Ferry.
        by: Vec<String>,
    },
    /// Deleted and created again by someone else (another uid).
    Replaced,
    /// Gone.
    Missing,
}

/// A workload's readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// True when the rollout is complete and every replica is available.
    pub ready: bool,
    /// For people: `3/3 available`, `1 old replica pending termination`, …
    pub message: String,
}

/// One managed object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    /// Who.
    pub id: ObjectRef,
    /// Compared with the last apply.
    pub drift: Drift,
    /// For Deployments, StatefulSets, DaemonSets and Jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

/// The environment as Ferry sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    /// False when Ferry never applied anything here (no ApplySet parent).
    pub applied: bool,
    /// The parent's annotations Ferry set (e.g. `ferry.dev/templates-digest`).
    pub annotations: BTreeMap<String, String>,
    /// Every object of the last apply, in inventory order.
    pub objects: Vec<ObjectStatus>,
    /// Members labelled with the set's id that the last apply did not record (left by an
    /// apply with pruning off, or labelled by hand).
    pub unrecorded: Vec<ObjectRef>,
}

impl StatusReport {
    /// True when every object is in sync and every workload ready.
    pub fn healthy(&self) -> bool {
        self.applied
            && self
                .objects
                .iter()
                .all(|o| o.drift == Drift::InSync && o.readiness.as_ref().is_none_or(|r| r.ready))
    }
}

/// Reads the parent, lists the members in full and compares.
///
/// # Errors
/// Discovery, a refused read or list.
pub async fn inspect(
    client: &Client,
    ownership: &Ownership,
    concurrency: usize,
) -> Result<StatusReport, Error> {
    let parent = applyset::read_parent(client, ownership).await?;
    if !parent.exists || parent.inventory.objects.is_empty() {
        return Ok(StatusReport::default());
    }
    let resolver = Resolver::discover(client).await?;
    let mut namespaces: BTreeSet<String> = parent.namespaces.clone();
    namespaces.insert(ownership.namespace.clone());
    let live = list_members(
        client,
        &resolver,
        ownership,
        concurrency,
        &parent.group_kinds,
        &namespaces,
        true,
    )
    .await?;
    let mut recorded = BTreeSet::new();
    let mut objects = Vec::new();
    for record in &parent.inventory.objects {
        let key = Key::of_id(&record.id());
        recorded.insert(key.clone());
        let member = live.get(&key);
        let drift = match member {
            None => Drift::Missing,
            Some(m) if m.uid != record.uid => Drift::Replaced,
            Some(m) if m.managed.as_deref() != Some(record.managed.as_str()) => Drift::Modified {
                by: m.later_managers.clone(),
            },
            Some(_) => Drift::InSync,
        };
        let readiness = member.and_then(|m| m.value.as_ref()).and_then(readiness);
        objects.push(ObjectStatus {
            id: record.id(),
            drift,
            readiness,
        });
    }
    let unrecorded = live
        .iter()
        .filter(|(key, _)| !recorded.contains(*key))
        .map(|(_, m)| m.id.clone())
        .collect();
    let annotations = parent
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with("ferry.dev/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(StatusReport {
        applied: true,
        annotations,
        objects,
        unrecorded,
    })
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn condition<'a>(value: &'a Value, type_: &str) -> Option<&'a Value> {
    value
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// The readiness of a workload, or `None` for other kinds.
pub fn readiness(value: &Value) -> Option<Readiness> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    let generation = int(value, "/metadata/generation").unwrap_or(0);
    let observed = int(value, "/status/observedGeneration").unwrap_or(0);
    let ready = |message: String| Readiness {
        ready: true,
        message,
    };
    let waiting = |message: String| Readiness {
        ready: false,
        message,
    };
    Some(match kind {
        "Deployment" => {
            if value.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                return Some(waiting("paused".to_string()));
            }
            if observed < generation {
                return Some(waiting(
                    "waiting for the controller to observe the spec".to_string(),
                ));
            }
            if let Some(c) = condition(value, "Progressing")
                && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            {
                return Some(waiting("progress deadline exceeded".to_string()));
            }
            let want = int(value, "/spec/replicas").unwrap_or(1);
            let updated = int(value, "/status/updatedReplicas").unwrap_or(0);
            let total = int(value, "/status/replicas").unwrap_or(0);
            let available = int(value, "/status/availableReplicas").unwrap_or(0);
            if updated < want {
                waiting(format!("{updated} of {want} replicas updated"))
            } else if total > updated {
                waiting(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < updated {
                waiting(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else {
                ready(format!("{available}/{want} available"))
            }
        }
        "StatefulSet" => {
            if observed < generation {
                return Some(waiting(
                    "waiting for the controller to observe the spec".to_string(),
                ));
            }
            let want = int(value, "/spec/replicas").unwrap_or(1);
            let ready_replicas = int(value, "/status/readyReplicas").unwrap_or(0);
            let partition = int(value, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
            let updated = int(value, "/status/updatedReplicas").unwrap_or(0);
            let current = value.pointer("/status/currentRevision");
            let update = value.pointer("/status/updateRevision");
            if ready_replicas < want {
                waiting(format!("{ready_replicas} of {want} replicas ready"))
            } else if updated < want - partition {
                waiting(format!(
                    "{updated} of {} replicas updated",
                    want - partition
                ))
            } else if partition == 0 && current != update {
                waiting("revision update in progress".to_string())
            } else {
                ready(format!("{ready_replicas}/{want} ready"))
            }
        }
        "DaemonSet" => {
            if observed < generation {
                return Some(waiting(
                    "waiting for the controller to observe the spec".to_string(),
                ));
            }
            let desired = int(value, "/status/desiredNumberScheduled").unwrap_or(0);
            let updated = int(value, "/status/updatedNumberScheduled").unwrap_or(0);
            let available = int(value, "/status/numberAvailable").unwrap_or(0);
            if updated < desired {
                waiting(format!("{updated} of {desired} pods updated"))
            } else if available < desired {
                waiting(format!("{available} of {desired} pods available"))
            } else {
                ready(format!("{available}/{desired} available"))
            }
        }
        "Job" => {
            let is_true = |t: &str| {
                condition(value, t)
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    == Some("True")
            };
            if is_true("Complete") {
                ready("complete".to_string())
            } else if is_true("Failed") {
                waiting("failed".to_string())
            } else {
                waiting("running".to_string())
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stale_status_is_not_ready() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 3},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2}});
        assert!(!readiness(&d).unwrap().ready);
    }

    #[test]
    fn a_complete_rollout_is_ready() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 3},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2}});
        assert_eq!(
            readiness(&d).unwrap(),
            Readiness {
                ready: true,
                message: "2/2 available".to_string()
            }
        );
    }

    #[test]
    fn old_replicas_keep_it_waiting() {
        let d = json!({"kind": "Deployment", "metadata": {"generation": 1},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 2,
                       "availableReplicas": 2}});
        let r = readiness(&d).unwrap();
        assert!(!r.ready);
        assert_eq!(r.message, "1 old replicas pending termination");
    }
}
