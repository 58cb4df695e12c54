//! The availability floors of a release: which Services stand in front of the bundle's
//! workloads, and how many endpoints each must keep while they roll out.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client};
use serde_json::Value;

use super::Error;
use crate::object::Object;
use crate::release::{ServiceFloor, availability_floor};

/// The Services in front of workloads that already run, with their floors: `replicas −
/// maxUnavailable` of the new spec, never above what is ready now (a first install or a
/// scale-up has nothing more to keep available).
pub(super) async fn floors(
    client: &Client,
    namespace: &str,
    objects: &[Object],
) -> Result<Vec<ServiceFloor>, Error> {
    // Which workload each Service selects, and the floor its manifest asks for.
    let mut pairs: Vec<(&str, &Object, u32)> = Vec::new();
    for svc in objects.iter().filter(|o| o.id.kind == "Service") {
        let Some(selector) = svc
            .value
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        for w in objects {
            let Some(labels) = w
                .value
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object)
            else {
                continue;
            };
            if selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                && let Some(floor) = manifest_floor(w)
            {
                pairs.push((svc.id.name.as_str(), w, floor));
            }
        }
    }
    // The live ready replicas of each workload concerned (once each), read concurrently.
    let workloads: BTreeMap<(&str, &str), &Object> = pairs
        .iter()
        .map(|(_, w, _)| ((w.id.kind.as_str(), w.id.name.as_str()), *w))
        .collect();
    let ready: Vec<Option<i32>> = futures::future::try_join_all(
        workloads
            .values()
            .map(|w| live_ready(client, namespace, &w.id.kind, &w.id.name)),
    )
    .await?;
    let ready: BTreeMap<(&str, &str), Option<i32>> = workloads.into_keys().zip(ready).collect();
    let mut floors: BTreeMap<String, u32> = BTreeMap::new();
    for (service, w, floor) in pairs {
        // A workload not live yet has nothing to keep available.
        let Some(ready) = ready[&(w.id.kind.as_str(), w.id.name.as_str())] else {
            continue;
        };
        let floor = floor.min(u32::try_from(ready).unwrap_or(0));
        if floor > 0 {
            *floors.entry(service.to_string()).or_insert(0) += floor;
        }
    }
    Ok(floors
        .into_iter()
        .map(|(service, floor)| ServiceFloor { service, floor })
        .collect())
}

/// The availability floor a Deployment's or StatefulSet's manifest asks for (replicas minus
/// maxUnavailable); `None` for other kinds.
fn manifest_floor(w: &Object) -> Option<u32> {
    let replicas = w
        .value
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
        .unwrap_or(1);
    match w.id.kind.as_str() {
        "Deployment" => {
            let max: Option<IntOrString> = w
                .value
                .pointer("/spec/strategy/rollingUpdate/maxUnavailable")
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            Some(availability_floor(replicas, max.as_ref()))
        }
        "StatefulSet" => {
            let max: IntOrString = w
                .value
                .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(IntOrString::Int(1));
            Some(availability_floor(replicas, Some(&max)))
        }
        _ => None,
    }
}

/// The ready replicas of a live Deployment or StatefulSet; `None` when it does not exist.
async fn live_ready(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<i32>, Error> {
    let live_err = |kind: &'static str| {
        move |source: kube::Error| Error::Live {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        }
    };
    let ready = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_err("Deployment"))?
            .map(|d| d.status.and_then(|s| s.ready_replicas).unwrap_or(0)),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(live_err("StatefulSet"))?
            .map(|s| s.status.and_then(|s| s.ready_replicas).unwrap_or(0)),
        _ => None,
    };
    Ok(ready)
}
