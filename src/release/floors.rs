//! Availability floors: for each Service of a bundle, the number of endpoints taking traffic it
//! must never fall below while the workloads behind it roll out.
//!
//! A Service's floor is the sum over the released workloads it selects (Deployments,
//! StatefulSets and DaemonSets in its namespace whose pod template labels match its selector)
//! of what each workload's controller promises to keep available during a rolling update:
//!
//! - Deployment: `replicas − maxUnavailable`, a percentage rounded **down** (default 25%), as
//!   the Deployment controller resolves it;
//! - StatefulSet: `replicas − maxUnavailable`, a percentage rounded **up**, at least 1
//!   (default 1: one pod at a time), as the StatefulSet controller resolves it;
//! - DaemonSet: `desiredNumberScheduled − maxUnavailable`, a percentage of the desired number
//!   rounded **up** (default 1), as the DaemonSet controller resolves it. The desired number
//!   is the live one: only the cluster knows its nodes.
//!
//! Each workload's floor is capped at the replicas it has ready now: a first install, a
//! workload not live yet, or a scale-up has nothing more to keep available. Services that are
//! not live yet are left out (no client can be using them). The pure parts
//! ([`manifest_floor`], [`FloorRule::floor`], [`Live`]) do no I/O; [`floors`] reads the live
//! workloads and Services. This module never changes the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client};
use serde_json::Value;

use super::availability::{ServiceFloor, availability_floor};
use crate::object::Object;
use crate::ui::{Diagnostic, ExitStatus};

/// How a workload's manifest bounds its unavailability during a rolling update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorRule {
    /// Deployment: `replicas − maxUnavailable` (a percentage rounded down, default 25%).
    Deployment {
        /// `spec.replicas` (default 1).
        replicas: i32,
        /// `spec.strategy.rollingUpdate.maxUnavailable`.
        max_unavailable: Option<IntOrString>,
    },
    /// StatefulSet: `replicas − maxUnavailable` (a percentage rounded up, at least 1, default 1).
    StatefulSet {
        /// `spec.replicas` (default 1).
        replicas: i32,
        /// `spec.updateStrategy.rollingUpdate.maxUnavailable`.
        max_unavailable: Option<IntOrString>,
    },
    /// DaemonSet: `desiredNumberScheduled − maxUnavailable` (a percentage rounded up, default 1).
    DaemonSet {
        /// `spec.updateStrategy.rollingUpdate.maxUnavailable`.
        max_unavailable: Option<IntOrString>,
    },
}

/// What the cluster says of a live workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Live {
    /// Ready pods now (`readyReplicas`, or `numberReady` for a DaemonSet).
    pub ready: i32,
    /// For a DaemonSet, `desiredNumberScheduled` (0 for other kinds).
    pub desired: i32,
}

impl FloorRule {
    /// The floor for the live workload: the rule applied, capped at what is ready now.
    pub fn floor(&self, live: Live) -> u32 {
        let rule = match self {
            FloorRule::Deployment {
                replicas,
                max_unavailable,
            } => availability_floor(*replicas, max_unavailable.as_ref()),
            FloorRule::StatefulSet {
                replicas,
                max_unavailable,
            } => rounded_up_floor(*replicas, max_unavailable.as_ref(), 1),
            FloorRule::DaemonSet { max_unavailable } => {
                rounded_up_floor(live.desired, max_unavailable.as_ref(), 0)
            }
        };
        rule.min(u32::try_from(live.ready).unwrap_or(0))
    }
}

/// `total − maxUnavailable` with a percentage of `total` rounded up (the StatefulSet and
/// DaemonSet controllers' rounding), `maxUnavailable` defaulting to 1 and never below
/// `at_least`. Never below 0.
fn rounded_up_floor(total: i32, max_unavailable: Option<&IntOrString>, at_least: i32) -> u32 {
    let total = total.max(0);
    let unavailable = match max_unavailable {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<i64>().ok())
        {
            Some(percent) => {
                let scaled = (i64::from(total) * percent + 99).div_euclid(100);
                i32::try_from(scaled).unwrap_or(total)
            }
            None => 1,
        },
    };
    let unavailable = unavailable.max(at_least).clamp(0, total);
    u32::try_from(total - unavailable).unwrap_or(0)
}

/// The rule of a workload's manifest; `None` for kinds without a rolling floor.
pub fn manifest_floor(w: &Object) -> Option<FloorRule> {
    let replicas = w
        .value
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
        .unwrap_or(1);
    let int_or_string = |pointer: &str| -> Option<IntOrString> {
        w.value
            .pointer(pointer)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    };
    match w.id.kind.as_str() {
        "Deployment" => Some(FloorRule::Deployment {
            replicas,
            max_unavailable: int_or_string("/spec/strategy/rollingUpdate/maxUnavailable"),
        }),
        "StatefulSet" => Some(FloorRule::StatefulSet {
            replicas,
            max_unavailable: int_or_string("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        }),
        "DaemonSet" => Some(FloorRule::DaemonSet {
            max_unavailable: int_or_string("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        }),
        _ => None,
    }
}

/// The workloads of `objects` (in `namespace`) each Service of `objects` selects, with their
/// rules: `(service, workload, rule)`.
pub fn selected<'a>(
    objects: &'a [Object],
    namespace: &str,
) -> Vec<(&'a str, &'a Object, FloorRule)> {
    let in_namespace = |o: &&Object| o.id.namespace.as_deref().is_none_or(|n| n == namespace);
    let mut pairs = Vec::new();
    for svc in objects
        .iter()
        .filter(|o| o.id.kind == "Service")
        .filter(in_namespace)
    {
        let Some(selector) = svc
            .value
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        for w in objects.iter().filter(in_namespace) {
            let Some(labels) = w
                .value
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object)
            else {
                continue;
            };
            if selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                && let Some(rule) = manifest_floor(w)
            {
                pairs.push((svc.id.name.as_str(), w, rule));
            }
        }
    }
    pairs
}

/// Why the floors could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// A live workload or Service could not be read.
    #[error("failed to read {kind} {namespace}/{name}")]
    Live {
        /// The kind.
        kind: &'static str,
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
        /// The API's answer, in words.
        #[source]
        source: crate::cluster::ApiCause,
    },
}

impl Diagnostic for FloorError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}

/// The Services of `objects` that are live in `namespace` and in front of workloads that
/// already run, with their floors (see the module docs). Reads the live workloads and
/// Services concurrently, once each.
///
/// # Errors
/// [`FloorError::Live`] when a read fails.
pub async fn floors(
    client: &Client,
    namespace: &str,
    objects: &[Object],
) -> Result<Vec<ServiceFloor>, FloorError> {
    let pairs = selected(objects, namespace);
    let workloads: BTreeMap<(&str, &str), &Object> = pairs
        .iter()
        .map(|(_, w, _)| ((w.id.kind.as_str(), w.id.name.as_str()), *w))
        .collect();
    let services: Vec<&str> = {
        let mut s: Vec<&str> = pairs.iter().map(|(s, _, _)| *s).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let (live, services_live) = futures::future::try_join(
        futures::future::try_join_all(
            workloads
                .values()
                .map(|w| live_workload(client, namespace, &w.id.kind, &w.id.name)),
        ),
        futures::future::try_join_all(services.iter().map(|s| live_service(client, namespace, s))),
    )
    .await?;
    let live: BTreeMap<(&str, &str), Option<Live>> = workloads.into_keys().zip(live).collect();
    let services_live: BTreeMap<&str, bool> = services.into_iter().zip(services_live).collect();
    let mut floors: BTreeMap<String, u32> = BTreeMap::new();
    for (service, w, rule) in pairs {
        // A Service not live yet serves nobody; a workload not live yet keeps nothing up.
        if !services_live.get(service).copied().unwrap_or(false) {
            continue;
        }
        let Some(live) = live[&(w.id.kind.as_str(), w.id.name.as_str())] else {
            continue;
        };
        let floor = rule.floor(live);
        if floor > 0 {
            *floors.entry(service.to_string()).or_insert(0) += floor;
        }
    }
    Ok(floors
        .into_iter()
        .map(|(service, floor)| ServiceFloor { service, floor })
        .collect())
}

fn live_error<'a>(
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
) -> impl FnOnce(kube::Error) -> FloorError + 'a {
    move |source| FloorError::Live {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        source: crate::cluster::ApiCause::from_kube(&source),
    }
}

/// Whether the Service exists.
async fn live_service(client: &Client, namespace: &str, name: &str) -> Result<bool, FloorError> {
    Ok(Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(live_error("Service", namespace, name))?
        .is_some())
}

/// The live state of a Deployment, StatefulSet or DaemonSet; `None` when it does not exist.
async fn live_workload(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Live>, FloorError> {
    let live = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_error("Deployment", namespace, name))?
            .map(|d| Live {
                ready: d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
                desired: 0,
            }),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_error("StatefulSet", namespace, name))?
            .map(|s| Live {
                ready: s.status.and_then(|s| s.ready_replicas).unwrap_or(0),
                desired: 0,
            }),
        "DaemonSet" => Api::<DaemonSet>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_error("DaemonSet", namespace, name))?
            .map(|d| {
                let status = d.status.unwrap_or_default();
                Live {
                    ready: status.number_ready,
                    desired: status.desired_number_scheduled,
                }
            }),
        _ => None,
    };
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Object {
        Object::new(value, None).unwrap()
    }

    fn int(n: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }

    fn percent(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    fn ready(n: i32) -> Live {
        Live {
            ready: n,
            desired: 0,
        }
    }

    #[test]
    fn deployments_round_a_percentage_down() {
        let rule = |replicas, max_unavailable| FloorRule::Deployment {
            replicas,
            max_unavailable,
        };
        assert_eq!(rule(3, int(0)).floor(ready(3)), 3);
        assert_eq!(rule(3, int(1)).floor(ready(3)), 2);
        assert_eq!(rule(4, None).floor(ready(4)), 3);
        assert_eq!(rule(3, percent("50%")).floor(ready(3)), 2);
        // Capped at what is ready now (a scale-up keeps only what runs).
        assert_eq!(rule(5, int(0)).floor(ready(3)), 3);
        assert_eq!(rule(3, int(0)).floor(ready(0)), 0);
    }

    #[test]
    fn statefulsets_take_one_pod_at_a_time_and_round_up() {
        let rule = |replicas, max_unavailable| FloorRule::StatefulSet {
            replicas,
            max_unavailable,
        };
        assert_eq!(rule(3, None).floor(ready(3)), 2);
        assert_eq!(rule(3, int(2)).floor(ready(3)), 1);
        // 50% of 3 is 1.5, rounded up to 2; 0 is raised to 1.
        assert_eq!(rule(3, percent("50%")).floor(ready(3)), 1);
        assert_eq!(rule(3, int(0)).floor(ready(3)), 2);
        assert_eq!(rule(1, None).floor(ready(1)), 0);
    }

    #[test]
    fn daemonsets_use_the_live_desired_number_and_round_up() {
        let live = |ready, desired| Live { ready, desired };
        let rule = |max_unavailable| FloorRule::DaemonSet { max_unavailable };
        assert_eq!(rule(None).floor(live(4, 4)), 3);
        assert_eq!(rule(int(2)).floor(live(4, 4)), 2);
        // 30% of 4 is 1.2, rounded up to 2.
        assert_eq!(rule(percent("30%")).floor(live(4, 4)), 2);
        // maxUnavailable 0 with a surge keeps every node's pod.
        assert_eq!(rule(int(0)).floor(live(4, 4)), 4);
        // Capped at what is ready; nothing scheduled keeps nothing.
        assert_eq!(rule(int(0)).floor(live(2, 4)), 2);
        assert_eq!(rule(None).floor(live(0, 0)), 0);
    }

    #[test]
    fn every_workload_kind_behind_a_service_gets_a_rule() {
        let template = |app: &str| json!({ "metadata": { "labels": { "app": app, "tier": "x" } } });
        let objects = vec![
            object(
                json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web" },
                "spec": { "selector": { "app": "web" } } }),
            ),
            object(
                json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "all" },
                "spec": { "selector": { "tier": "x" } } }),
            ),
            object(
                json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "ext" },
                "spec": { "type": "ExternalName", "externalName": "example.com" } }),
            ),
            object(
                json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
                "spec": { "replicas": 3, "strategy": { "rollingUpdate": { "maxUnavailable": 0 } },
                          "template": template("web") } }),
            ),
            object(
                json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db" },
                "spec": { "replicas": 2, "template": template("db") } }),
            ),
            object(
                json!({ "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "agent" },
                "spec": { "updateStrategy": { "rollingUpdate": { "maxUnavailable": "10%" } },
                          "template": template("agent") } }),
            ),
            object(
                json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "once" },
                "spec": { "template": template("job") } }),
            ),
            object(json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "elsewhere", "namespace": "other" },
                "spec": { "template": template("web") } })),
        ];
        let found: Vec<(&str, &str, FloorRule)> = selected(&objects, "ns")
            .into_iter()
            .map(|(s, w, r)| (s, w.id.name.as_str(), r))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "web",
                    "web",
                    FloorRule::Deployment {
                        replicas: 3,
                        max_unavailable: int(0)
                    }
                ),
                (
                    "all",
                    "web",
                    FloorRule::Deployment {
                        replicas: 3,
                        max_unavailable: int(0)
                    }
                ),
                (
                    "all",
                    "db",
                    FloorRule::StatefulSet {
                        replicas: 2,
                        max_unavailable: None
                    }
                ),
                (
                    "all",
                    "agent",
                    FloorRule::DaemonSet {
                        max_unavailable: percent("10%")
                    }
                ),
            ]
        );
    }
}
