//! Rules that keep a rolling release available: readiness probes, a surge-only rolling
//! update, a preStop pause inside the grace period, a PodDisruptionBudget, and no selector
//! change on a live workload (reference/release-and-dr.md §A3).
//!
//! They apply to the long-running workload kinds; Jobs and CronJobs run to completion and are
//! not rolled. The family can be raised to errors as a group (see `LintContext`).

use serde_json::Value;

use super::pod::{
    Bundle, CanonicalSelector, Pod, Which, dig, same_namespace, selector_matches, violation,
};
use super::{Check, Family, LintContext, Rule, Severity, Violation};
use crate::object::Object;

const fn rule(id: &'static str, summary: &'static str, check: Check) -> Rule {
    Rule {
        id,
        family: Family::ZeroDowntime,
        severity: Severity::Error,
        summary,
        check,
    }
}

/// A readiness probe on every serving container.
pub(super) const READINESS_PROBE: Rule = rule(
    "ZD-READINESS-PROBE",
    "every container of a long-running workload must have a readiness probe",
    Check::Pod(readiness_probe),
);

/// RollingUpdate with maxUnavailable 0 and a positive maxSurge.
pub(super) const ROLLING_UPDATE: Rule = rule(
    "ZD-ROLLING-UPDATE",
    "deployments must roll with maxUnavailable: 0 and maxSurge >= 1",
    Check::Object(rolling_update),
);

/// A preStop pause shorter than the termination grace period.
pub(super) const PRESTOP: Rule = rule(
    "ZD-PRESTOP",
    "every serving container must pause in preStop for less than terminationGracePeriodSeconds",
    Check::Pod(prestop),
);

/// A PodDisruptionBudget for replicated workloads.
pub(super) const PDB: Rule = rule(
    "ZD-PDB",
    "workloads with 2 or more replicas must be selected by a PodDisruptionBudget",
    Check::Bundle(pdb),
);

/// No change of an immutable selector.
pub(super) const SELECTOR_CHANGE: Rule = rule(
    "ZD-SELECTOR-CHANGE",
    "a live Deployment, StatefulSet or DaemonSet must keep its spec.selector",
    Check::Bundle(selector_change),
);

/// Kinds whose pods serve continuously and are replaced by rolling updates.
const SERVING_KINDS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"];

/// Kinds whose pods a PodDisruptionBudget protects (DaemonSet pods are not drained).
const REPLICATED_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "ReplicaSet"];

/// Kinds whose `spec.selector` the API server refuses to change.
const IMMUTABLE_SELECTOR_KINDS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: i64 = 30;

fn serving(object: &Object) -> bool {
    SERVING_KINDS.contains(&object.id.kind.as_str())
}

fn readiness_probe(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    if !serving(pod.object) {
        return;
    }
    for c in pod.containers(Which::Regular) {
        if c.get(&["readinessProbe"]).is_none() {
            out.push(pod.violation(
                c.at("readinessProbe"),
                format!("{} has no readiness probe, so it receives traffic before it can serve", c.label()),
                "add a readinessProbe (httpGet, grpc or tcpSocket) that reflects the ability to serve".to_string(),
            ));
        }
    }
}

/// A parsed `IntOrString` from a rolling update.
enum Amount {
    Count(i64),
    Percent(i64),
    Invalid,
}

fn amount(value: &Value) -> Amount {
    match value {
        Value::Number(n) => n.as_i64().map_or(Amount::Invalid, Amount::Count),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(Amount::Invalid, Amount::Percent),
        _ => Amount::Invalid,
    }
}

fn rolling_update(object: &Object, out: &mut Vec<Violation>) {
    if object.id.kind != "Deployment" {
        return;
    }
    let strategy = object.value.get("spec").and_then(|s| s.get("strategy"));
    let kind = strategy.and_then(|s| s.get("type")).and_then(Value::as_str);
    if let Some(kind) = kind.filter(|k| *k != "RollingUpdate") {
        out.push(violation(
            object,
            "spec.strategy.type".to_string(),
            format!("the {kind} strategy stops every old pod before new ones are ready"),
            "set spec.strategy.type: RollingUpdate with maxUnavailable: 0 and maxSurge: 1"
                .to_string(),
        ));
        return;
    }
    let rolling = strategy.and_then(|s| s.get("rollingUpdate"));
    let field = |name: &str| rolling.and_then(|r| r.get(name)).filter(|v| !v.is_null());

    let problem = match field("maxUnavailable") {
        None => Some(
            "maxUnavailable is unset and defaults to 25%, which takes ready pods out of service"
                .to_string(),
        ),
        Some(v) => match amount(v) {
            Amount::Count(0) | Amount::Percent(0) => None,
            _ => Some(format!(
                "maxUnavailable is {v}, which takes ready pods out of service during a rollout"
            )),
        },
    };
    if let Some(message) = problem {
        out.push(violation(
            object,
            "spec.strategy.rollingUpdate.maxUnavailable".to_string(),
            message,
            "set spec.strategy.rollingUpdate.maxUnavailable: 0".to_string(),
        ));
    }
    // Unset maxSurge defaults to 25%, which rounds up to at least one pod: fine.
    if let Some(surge) = field("maxSurge") {
        let ok = match amount(surge) {
            Amount::Count(n) => n >= 1,
            Amount::Percent(p) => p > 0,
            Amount::Invalid => false,
        };
        if !ok {
            out.push(violation(
                object,
                "spec.strategy.rollingUpdate.maxSurge".to_string(),
                format!("maxSurge is {surge}, so no new pod can start before an old one stops"),
                "set spec.strategy.rollingUpdate.maxSurge: 1 (or a positive percentage)"
                    .to_string(),
            ));
        }
    }
}

fn prestop(pod: &Pod<'_>, out: &mut Vec<Violation>) {
    if !serving(pod.object) {
        return;
    }
    let grace = pod
        .get(&["terminationGracePeriodSeconds"])
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    for c in pod.containers(Which::Regular) {
        let Some(hook) = c.get(&["lifecycle", "preStop"]) else {
            out.push(
                pod.violation(
                    c.at("lifecycle.preStop"),
                    format!(
                        "{} has no preStop pause, so it stops while endpoints still route to it",
                        c.label()
                    ),
                    "set lifecycle.preStop.sleep.seconds: 10 (below terminationGracePeriodSeconds)"
                        .to_string(),
                ),
            );
            continue;
        };
        if let Some(sleep) = hook.get("sleep").filter(|v| !v.is_null()) {
            let seconds = sleep.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            if seconds <= 0 {
                out.push(pod.violation(
                    c.at("lifecycle.preStop.sleep.seconds"),
                    format!("the preStop sleep of {} does not pause", c.label()),
                    "set lifecycle.preStop.sleep.seconds to 5-15".to_string(),
                ));
            } else if seconds >= grace {
                out.push(pod.violation(
                    c.at("lifecycle.preStop.sleep.seconds"),
                    format!(
                        "the preStop sleep of {} ({seconds}s) is not shorter than the termination grace period ({grace}s)",
                        c.label()
                    ),
                    "lower lifecycle.preStop.sleep.seconds or raise terminationGracePeriodSeconds above it plus the drain time".to_string(),
                ));
            }
        } else if hook.get("httpGet").is_some_and(|v| !v.is_null())
            || hook.get("exec").is_some_and(|v| !v.is_null())
        {
            if grace <= 0 {
                out.push(pod.violation(
                    pod.at("terminationGracePeriodSeconds"),
                    format!("a termination grace period of {grace}s kills {} before its preStop hook runs", c.label()),
                    "raise terminationGracePeriodSeconds above the preStop pause plus the drain time".to_string(),
                ));
            }
        } else {
            out.push(
                pod.violation(
                    c.at("lifecycle.preStop"),
                    format!(
                        "the preStop hook of {} has no sleep, httpGet or exec action",
                        c.label()
                    ),
                    "set lifecycle.preStop.sleep.seconds: 10 (below terminationGracePeriodSeconds)"
                        .to_string(),
                ),
            );
        }
    }
}

fn pdb(bundle: &Bundle<'_>, _ctx: &LintContext<'_>, out: &mut Vec<Violation>) {
    let budgets: Vec<&Object> = bundle
        .objects
        .iter()
        .filter(|o| o.id.kind == "PodDisruptionBudget" && o.group() == "policy")
        .collect();
    let replicated = |p: &&Pod<'_>| REPLICATED_KINDS.contains(&p.object.id.kind.as_str());
    for pod in bundle.pods().filter(replicated) {
        let workload = pod.object;
        let replicas = dig(Some(&workload.value), &["spec", "replicas"])
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if replicas < 2 {
            continue;
        }
        let empty = serde_json::Map::new();
        let labels = pod.labels().unwrap_or(&empty);
        let covered = budgets.iter().any(|b| {
            same_namespace(b, workload)
                && selector_matches(dig(Some(&b.value), &["spec", "selector"]), labels)
        });
        if !covered {
            out.push(violation(
                workload,
                "spec.replicas".to_string(),
                format!("{replicas} replicas run but no PodDisruptionBudget selects their pods"),
                "add a policy/v1 PodDisruptionBudget with maxUnavailable: 1 whose selector matches the pod template labels".to_string(),
            ));
        }
    }
}

fn selector_change(bundle: &Bundle<'_>, ctx: &LintContext<'_>, out: &mut Vec<Violation>) {
    let immutable = |o: &&Object| IMMUTABLE_SELECTOR_KINDS.contains(&o.id.kind.as_str());
    for object in bundle.objects.iter().filter(immutable) {
        let previous = ctx.previous.iter().filter(immutable).find(|p| {
            p.id.kind == object.id.kind && p.id.name == object.id.name && same_namespace(p, object)
        });
        let Some(previous) = previous else { continue };
        let before = CanonicalSelector::of(dig(Some(&previous.value), &["spec", "selector"]));
        let after = CanonicalSelector::of(dig(Some(&object.value), &["spec", "selector"]));
        if before != after {
            out.push(violation(
                object,
                "spec.selector".to_string(),
                "spec.selector differs from the live workload's, and the API server refuses to change it".to_string(),
                "keep the previous spec.selector, or rename the workload to replace it".to_string(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::LintContext;
    use super::super::testing::{
        POD, WEB, bundle_with, check, check_with, deployment, hardened_bundle, object, paths,
        paths_after, pdb, pod_spec, remove, set,
    };

    const ALL: [&str; 5] = [
        "ZD-READINESS-PROBE",
        "ZD-ROLLING-UPDATE",
        "ZD-PRESTOP",
        "ZD-PDB",
        "ZD-SELECTOR-CHANGE",
    ];

    #[test]
    fn the_hardened_bundle_passes_every_zero_downtime_rule() {
        let previous = hardened_bundle();
        let ctx = LintContext {
            previous: &previous,
            strict_zero_downtime: true,
        };
        for id in ALL {
            assert_eq!(check_with(id, &hardened_bundle(), &ctx), vec![], "{id}");
        }
    }

    #[test]
    fn readiness_probe_fails_when_missing() {
        let found = check(
            "ZD-READINESS-PROBE",
            &bundle_with(|d| remove(d, &format!("{WEB}/readinessProbe"))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].readinessProbe"
        );
    }

    #[test]
    fn readiness_probe_is_not_required_of_jobs_or_init_containers() {
        let mut spec = pod_spec();
        remove(&mut spec, "/containers/0/readinessProbe");
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                         "spec": {"template": {"spec": spec}}});
        assert_eq!(check("ZD-READINESS-PROBE", &[object(job)]), vec![]);
    }

    #[test]
    fn rolling_update_fails_when_max_unavailable_is_unset() {
        let found = check(
            "ZD-ROLLING-UPDATE",
            &bundle_with(|d| remove(d, "/spec/strategy")),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.strategy.rollingUpdate.maxUnavailable");
        assert_eq!(
            found[0].message,
            "maxUnavailable is unset and defaults to 25%, which takes ready pods out of service"
        );
        assert_eq!(
            found[0].fix,
            "set spec.strategy.rollingUpdate.maxUnavailable: 0"
        );
    }

    #[test]
    fn rolling_update_fails_on_recreate() {
        let found = paths_after("ZD-ROLLING-UPDATE", |d| {
            set(d, "/spec/strategy", json!({"type": "Recreate"}));
        });
        assert_eq!(found, ["spec.strategy.type"]);
    }

    #[test]
    fn rolling_update_fails_on_positive_unavailable_and_zero_surge() {
        for (unavailable, surge) in [(json!(1), json!(0)), (json!("25%"), json!("0%"))] {
            let found = paths_after("ZD-ROLLING-UPDATE", |d| {
                set(
                    d,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    unavailable.clone(),
                );
                set(d, "/spec/strategy/rollingUpdate/maxSurge", surge.clone());
            });
            assert_eq!(
                found,
                [
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "spec.strategy.rollingUpdate.maxSurge",
                ]
            );
        }
    }

    #[test]
    fn rolling_update_fails_on_a_percentage_without_percent_sign() {
        let found = paths_after("ZD-ROLLING-UPDATE", |d| {
            set(d, "/spec/strategy/rollingUpdate/maxUnavailable", json!("0"));
        });
        assert_eq!(found, ["spec.strategy.rollingUpdate.maxUnavailable"]);
    }

    #[test]
    fn rolling_update_passes_on_percentages_and_a_defaulted_surge() {
        let found = paths_after("ZD-ROLLING-UPDATE", |d| {
            set(
                d,
                "/spec/strategy/rollingUpdate",
                json!({"maxUnavailable": "0%", "maxSurge": "50%"}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
        let found = paths_after("ZD-ROLLING-UPDATE", |d| {
            set(
                d,
                "/spec/strategy",
                json!({"rollingUpdate": {"maxUnavailable": 0}}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn prestop_fails_when_missing() {
        let found = check(
            "ZD-PRESTOP",
            &bundle_with(|d| remove(d, &format!("{WEB}/lifecycle"))),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].lifecycle.preStop"
        );
    }

    #[test]
    fn prestop_fails_when_not_shorter_than_the_default_grace_period() {
        let found = check(
            "ZD-PRESTOP",
            &bundle_with(|d| {
                remove(d, &format!("{POD}/terminationGracePeriodSeconds"));
                set(
                    d,
                    &format!("{WEB}/lifecycle/preStop/sleep/seconds"),
                    json!(30),
                );
            }),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].path,
            "spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds"
        );
        assert_eq!(
            found[0].message,
            "the preStop sleep of container \"web\" (30s) is not shorter than the termination grace period (30s)"
        );
    }

    #[test]
    fn prestop_fails_on_a_zero_sleep_and_an_empty_hook() {
        let found = paths_after("ZD-PRESTOP", |d| {
            set(
                d,
                &format!("{WEB}/lifecycle/preStop/sleep/seconds"),
                json!(0),
            );
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds"]
        );
        let found = paths_after("ZD-PRESTOP", |d| {
            set(d, &format!("{WEB}/lifecycle/preStop"), json!({}));
        });
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].lifecycle.preStop"]
        );
    }

    #[test]
    fn prestop_passes_with_a_longer_grace_period_or_an_http_hook() {
        let found = paths_after("ZD-PRESTOP", |d| {
            set(
                d,
                &format!("{POD}/terminationGracePeriodSeconds"),
                json!(60),
            );
            set(
                d,
                &format!("{WEB}/lifecycle/preStop/sleep/seconds"),
                json!(45),
            );
        });
        assert_eq!(found, Vec::<String>::new());
        let found = paths_after("ZD-PRESTOP", |d| {
            set(
                d,
                &format!("{WEB}/lifecycle/preStop"),
                json!({"httpGet": {"path": "/drain", "port": "http"}}),
            );
        });
        assert_eq!(found, Vec::<String>::new());
    }

    #[test]
    fn prestop_fails_on_an_exec_hook_with_no_grace_period() {
        let found = paths_after("ZD-PRESTOP", |d| {
            set(d, &format!("{POD}/terminationGracePeriodSeconds"), json!(0));
            set(
                d,
                &format!("{WEB}/lifecycle/preStop"),
                json!({"exec": {"command": ["/app", "drain"]}}),
            );
        });
        assert_eq!(found, ["spec.template.spec.terminationGracePeriodSeconds"]);
    }

    #[test]
    fn pdb_fails_without_a_budget() {
        let bundle = vec![object(deployment())];
        let found = check("ZD-PDB", &bundle);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "spec.replicas");
        assert_eq!(
            found[0].message,
            "3 replicas run but no PodDisruptionBudget selects their pods"
        );
    }

    #[test]
    fn pdb_fails_when_the_budget_selects_other_pods() {
        let mut budget = pdb();
        budget["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
        assert_eq!(
            paths("ZD-PDB", &[object(deployment()), object(budget)]),
            ["spec.replicas"]
        );
        let mut budget = pdb();
        budget["metadata"]["namespace"] = json!("other");
        assert_eq!(
            paths("ZD-PDB", &[object(deployment()), object(budget)]),
            ["spec.replicas"]
        );
    }

    #[test]
    fn pdb_passes_with_match_expressions() {
        let mut budget = pdb();
        budget["spec"]["selector"] = json!({"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web", "api"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "version", "operator": "NotIn", "values": ["0"]},
            {"key": "version", "operator": "Exists"}
        ]});
        assert_eq!(
            check("ZD-PDB", &[object(deployment()), object(budget)]),
            vec![]
        );
    }

    #[test]
    fn pdb_is_not_required_for_a_single_replica() {
        let mut single = deployment();
        remove(&mut single, "/spec/replicas");
        assert_eq!(check("ZD-PDB", &[object(single.clone())]), vec![]);
        single["spec"]["replicas"] = json!(1);
        assert_eq!(check("ZD-PDB", &[object(single)]), vec![]);
    }

    #[test]
    fn selector_change_fails_when_the_live_selector_differs() {
        let previous = vec![object(deployment())];
        let bundle = bundle_with(|d| {
            set(
                d,
                "/spec/selector",
                json!({"matchLabels": {"app": "web", "version": "1"}}),
            );
        });
        let ctx = LintContext {
            previous: &previous,
            strict_zero_downtime: false,
        };
        let found = check_with("ZD-SELECTOR-CHANGE", &bundle, &ctx);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object, bundle[0].id);
        assert_eq!(found[0].path, "spec.selector");
    }

    #[test]
    fn selector_change_ignores_order_and_new_workloads() {
        let mut live = deployment();
        live["spec"]["selector"] =
            json!({"matchLabels": {"tier": "front", "app": "web"}, "matchExpressions": []});
        let previous = vec![object(live)];
        let ctx = LintContext {
            previous: &previous,
            strict_zero_downtime: false,
        };
        let bundle = bundle_with(|d| {
            set(
                d,
                "/spec/selector",
                json!({"matchLabels": {"app": "web", "tier": "front"}}),
            );
        });
        assert_eq!(check_with("ZD-SELECTOR-CHANGE", &bundle, &ctx), vec![]);
        let renamed = bundle_with(|d| {
            set(d, "/metadata/name", json!("web2"));
            set(d, "/spec/selector", json!({"matchLabels": {"app": "web2"}}));
        });
        assert_eq!(check_with("ZD-SELECTOR-CHANGE", &renamed, &ctx), vec![]);
    }
}
