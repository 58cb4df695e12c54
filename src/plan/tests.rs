use serde_json::json;

use super::*;
use crate::object::Origin;
use crate::ui::{Diagnostic, ExitStatus};

/// An entry of `api_version`/`kind`, `namespace/name` or cluster-scoped `name`.
fn entry(api_version: &str, kind: &str, at: &str) -> Entry {
    let (namespace, name) = match at.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, at.to_string()),
    };
    Entry {
        group: api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string(),
        id: ObjectRef {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace,
            name,
        },
        depends_on: None,
        defines: None,
        template: Some(PathBuf::from(format!(
            "templates/{}.yaml.hbs",
            kind.to_lowercase()
        ))),
    }
}

fn depends(mut e: Entry, value: &str) -> Entry {
    e.depends_on = Some(value.to_string());
    e
}

fn crd(group: &str, kind: &str) -> Entry {
    let mut e = entry(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &format!("{}s.{group}", kind.to_lowercase()),
    );
    e.defines = Some(GroupKind {
        group: group.to_string(),
        kind: kind.to_string(),
    });
    e
}

fn namespace(name: &str) -> Entry {
    entry("v1", "Namespace", name)
}

/// The names of each step's objects, in order.
fn names(entries: &[Entry], plan: &Plan) -> Vec<Vec<String>> {
    plan.steps
        .iter()
        .map(|s| {
            s.objects
                .iter()
                .map(|&i| entries[i].id.to_string())
                .collect()
        })
        .collect()
}

fn error(entries: &[Entry]) -> PlanError {
    plan(entries).unwrap_err()
}

#[test]
fn without_definitions_or_namespaces_foundation_is_step_0_and_workloads_step_1() {
    let entries = vec![
        entry("apps/v1", "Deployment", "shop/web"),
        entry("v1", "ConfigMap", "shop/config"),
        entry("networking.k8s.io/v1", "Ingress", "shop/web"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(
        names(&entries, &plan),
        vec![
            vec!["ConfigMap shop/config", "Ingress shop/web"],
            vec!["Deployment shop/web"],
        ]
    );
    assert_eq!(plan.step_of(0), 1);
    assert!((0..3).all(|i| *plan.check(i) == Check::UpFront));
    assert!(plan.steps.iter().all(|s| s.establishes.is_empty()));
}

#[test]
fn workloads_alone_are_step_0() {
    let entries = vec![entry("apps/v1", "Deployment", "shop/web")];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.step_of(0), 0);
}

#[test]
fn an_empty_bundle_has_no_steps() {
    assert!(plan(&[]).unwrap().steps.is_empty());
}

#[test]
fn a_crd_comes_before_its_instances_which_check_after_it() {
    let entries = vec![
        entry("example.com/v1", "Widget", "shop/w"),
        crd("example.com", "Widget"),
        entry("other.com/v1", "Widget", "shop/unrelated"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(plan.step_of(1), 0);
    assert_eq!(plan.step_of(0), 1);
    assert_eq!(plan.step_of(2), 0, "another group's Widget does not wait");
    assert_eq!(plan.steps[0].establishes, vec![1]);
    assert_eq!(
        *plan.check(0),
        Check::After {
            step: 0,
            because: Because::Kind(GroupKind {
                group: "example.com".into(),
                kind: "Widget".into()
            })
        }
    );
    assert_eq!(*plan.check(2), Check::UpFront);
}

#[test]
fn objects_wait_for_their_namespace() {
    let entries = vec![
        entry("v1", "ConfigMap", "shop/config"),
        namespace("shop"),
        entry("v1", "ConfigMap", "other/config"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(
        names(&entries, &plan),
        vec![
            vec!["Namespace shop", "ConfigMap other/config"],
            vec!["ConfigMap shop/config"]
        ]
    );
    assert_eq!(
        *plan.check(0),
        Check::After {
            step: 0,
            because: Because::Namespace("shop".into())
        }
    );
    assert_eq!(*plan.check(1), Check::UpFront);
    assert_eq!(*plan.check(2), Check::UpFront);
}

#[test]
fn steps_are_longest_paths_and_the_barrier_adds_none() {
    // Namespace (0) → ConfigMap (1) → barrier → Deployment (2), not 3; CRD (0) → Widget,
    // which also declares it waits for the Deployment → step 3.
    let entries = vec![
        crd("example.com", "Widget"),
        namespace("shop"),
        entry("v1", "ConfigMap", "shop/config"),
        entry("apps/v1", "Deployment", "shop/web"),
        depends(
            entry("example.com/v1", "Widget", "shop/w"),
            "Deployment/web",
        ),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(
        (0..5).map(|i| plan.step_of(i)).collect::<Vec<_>>(),
        vec![0, 0, 1, 2, 3]
    );
    assert_eq!(plan.steps.len(), 4);
}

#[test]
fn the_later_of_namespace_and_kind_decides_the_check_and_kind_wins_ties() {
    // Tie: Namespace and CRD both at step 0.
    let entries = vec![
        crd("example.com", "Widget"),
        namespace("shop"),
        entry("example.com/v1", "Widget", "shop/w"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert!(matches!(
        plan.check(2),
        Check::After {
            step: 0,
            because: Because::Kind(_)
        }
    ));
    // The namespace is later: it waits for a ConfigMap elsewhere.
    let entries = vec![
        crd("example.com", "Widget"),
        depends(namespace("shop"), "ConfigMap/base/seed"),
        entry("v1", "ConfigMap", "base/seed"),
        entry("example.com/v1", "Widget", "shop/w"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(
        *plan.check(3),
        Check::After {
            step: 1,
            because: Because::Namespace("shop".into())
        }
    );
    assert_eq!(plan.step_of(3), 2);
}

#[test]
fn network_policies_and_pdbs_always_come_before_every_workload() {
    // A Job that must run early (declared before a Secret) drags every workload after it.
    let entries = vec![
        entry("apps/v1", "Deployment", "shop/web"),
        entry("batch/v1", "Job", "shop/migrate"),
        entry("networking.k8s.io/v1", "NetworkPolicy", "shop/default-deny"),
        entry("policy/v1", "PodDisruptionBudget", "shop/web"),
        depends(entry("v1", "Secret", "shop/db"), "ServiceAccount/runner"),
        entry("v1", "ServiceAccount", "shop/runner"),
        entry("apps/v1", "DaemonSet", "shop/agent"),
        entry("v1", "Pod", "shop/debug"),
    ];
    let plan = super::plan(&entries).unwrap();
    let workloads = [0, 1, 6, 7];
    for guard in [2, 3, 4, 5] {
        for w in workloads {
            assert!(
                plan.step_of(guard) < plan.step_of(w),
                "{} must come before {}",
                entries[guard].id,
                entries[w].id
            );
        }
    }
    assert_eq!(plan.step_of(0), 2, "after the Secret at step 1");
}

#[test]
fn declared_dependencies_resolve_namespace_cluster_scope_other_namespaces_and_groups() {
    let entries = vec![
        depends(
            entry("example.com/v1", "Widget", "shop/w"),
            " ConfigMap/settings ,ClusterRole/reader, Secret/base/token,Gadget.b.io/g",
        ),
        entry("v1", "ConfigMap", "shop/settings"),
        entry("v1", "ConfigMap", "other/settings"),
        entry("rbac.authorization.k8s.io/v1", "ClusterRole", "reader"),
        entry("v1", "Secret", "base/token"),
        entry("a.io/v1", "Gadget", "shop/g"),
        depends(entry("b.io/v1", "Gadget", "shop/g"), "Service.core/api"),
        entry("v1", "Service", "shop/api"),
    ];
    let plan = super::plan(&entries).unwrap();
    for target in [1, 3, 4, 6] {
        assert!(
            plan.step_of(target) < plan.step_of(0),
            "{}",
            entries[target].id
        );
    }
    assert_eq!(plan.step_of(2), 0);
    assert_eq!(plan.step_of(5), 0, "a.io's Gadget is not the one named");
    assert_eq!(plan.step_of(6), 1);
    assert_eq!(plan.step_of(0), 2);
}

#[test]
fn the_declarers_namespace_wins_over_a_cluster_scoped_object_of_that_name() {
    let entries = vec![
        depends(entry("v1", "ConfigMap", "shop/a"), "Thing/x"),
        entry("example.com/v1", "Thing", "shop/x"),
        depends(entry("example.com/v1", "Thing", "x"), "ConfigMap/shop/b"),
        entry("v1", "ConfigMap", "shop/b"),
    ];
    let plan = super::plan(&entries).unwrap();
    assert_eq!(plan.step_of(1), 0);
    assert_eq!(plan.step_of(0), 1);
    assert_eq!(
        plan.step_of(2),
        1,
        "the cluster-scoped Thing waits for shop/b"
    );
}

#[test]
fn malformed_annotations_are_refused() {
    for value in [
        "",
        "  ",
        "ConfigMap",
        "ConfigMap/",
        "ConfigMap/a,",
        "ConfigMap/a,,Secret/b",
        "a/b/c/d",
        "/name",
        "ConfigMap//name",
        "ConfigMap./name",
    ] {
        let entries = vec![
            depends(entry("v1", "ConfigMap", "shop/x"), value),
            entry("v1", "ConfigMap", "shop/a"),
        ];
        match error(&entries) {
            PlanError::BadAnnotation {
                object,
                template,
                value: v,
                ..
            } => {
                assert_eq!(object.name, "x", "{value:?}");
                assert_eq!(v, value);
                assert_eq!(
                    template.as_deref(),
                    Some(std::path::Path::new("templates/configmap.yaml.hbs"))
                );
            }
            other => panic!("{value:?}: {other}"),
        }
    }
}

#[test]
fn an_unknown_target_names_the_declarer_its_template_and_what_was_looked_for() {
    let entries = vec![depends(
        entry("apps/v1", "Deployment", "shop/web"),
        "ConfigMap/missing",
    )];
    let err = error(&entries);
    assert!(matches!(err, PlanError::UnknownTarget { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "Deployment shop/web (in templates/deployment.yaml.hbs) depends on `ConfigMap/missing`, \
         which is not in the bundle (looked for ConfigMap shop/missing or a cluster-scoped ConfigMap missing)"
    );
    assert_eq!(err.exit_status(), ExitStatus::BadInput);
    assert!(err.hints()[0].contains("templates/deployment.yaml.hbs"));
    // A namespaced object of another namespace is not found without naming it.
    let entries = vec![
        depends(entry("v1", "ConfigMap", "shop/a"), "Secret/token"),
        entry("v1", "Secret", "base/token"),
    ];
    assert!(matches!(error(&entries), PlanError::UnknownTarget { .. }));
    // Nor is another group's kind when the group is named.
    let entries = vec![
        depends(entry("v1", "ConfigMap", "shop/a"), "Widget.b.io/w"),
        entry("a.io/v1", "Widget", "shop/w"),
    ];
    assert!(matches!(error(&entries), PlanError::UnknownTarget { .. }));
}

#[test]
fn a_target_of_two_groups_is_ambiguous_until_the_group_is_named() {
    let mut entries = vec![
        depends(entry("v1", "ConfigMap", "shop/a"), "Widget/w"),
        entry("b.io/v1", "Widget", "shop/w"),
        entry("a.io/v1", "Widget", "shop/w"),
    ];
    let err = error(&entries);
    match &err {
        PlanError::Ambiguous { matches, .. } => {
            assert_eq!(matches[0].api_version, "a.io/v1");
            assert_eq!(matches[1].api_version, "b.io/v1");
        }
        other => panic!("{other}"),
    }
    assert!(
        err.hints()[0].contains("Kind.group/name"),
        "{:?}",
        err.hints()
    );
    entries[0].depends_on = Some("Widget.a.io/w".to_string());
    let plan = super::plan(&entries).unwrap();
    assert_eq!(plan.step_of(0), 1);
    assert_eq!(plan.step_of(1), 0);
}

#[test]
fn a_self_dependency_is_a_cycle() {
    let entries = vec![depends(entry("v1", "ConfigMap", "shop/a"), "ConfigMap/a")];
    let err = error(&entries);
    assert_eq!(
        err.to_string(),
        "dependency cycle: ConfigMap shop/a (in templates/configmap.yaml.hbs) waits for \
         ConfigMap shop/a (declared in ferry.dev/depends-on)"
    );
    assert_eq!(err.exit_status(), ExitStatus::BadInput);
}

#[test]
fn a_cycle_through_the_workload_barrier_names_the_implicit_edge() {
    let entries = vec![
        entry("apps/v1", "Deployment", "shop/web"),
        depends(entry("v1", "ConfigMap", "shop/a"), "Deployment/web"),
        entry("v1", "Secret", "shop/unrelated"),
    ];
    let err = error(&entries);
    assert_eq!(
        err.to_string(),
        "dependency cycle: ConfigMap shop/a (in templates/configmap.yaml.hbs) waits for \
         Deployment shop/web (declared in ferry.dev/depends-on), which waits for ConfigMap shop/a \
         (workloads wait for config, RBAC, services and policies)"
    );
    assert_eq!(
        err.hints(),
        vec![
            "remove Deployment web from the ferry.dev/depends-on of ConfigMap shop/a in templates/configmap.yaml.hbs"
        ]
    );
}

#[test]
fn a_longer_cycle_through_a_namespace_and_a_crd_lists_every_object_in_order() {
    let entries = vec![
        depends(namespace("shop"), "Widget/shop/w"),
        crd("example.com", "Widget"),
        entry("example.com/v1", "Widget", "shop/w"),
        entry("v1", "ConfigMap", "shop/downstream"),
    ];
    let err = error(&entries);
    let text = err.to_string();
    assert_eq!(
        text,
        "dependency cycle: Namespace shop (in templates/namespace.yaml.hbs) waits for \
         Widget shop/w (declared in ferry.dev/depends-on), which waits for Namespace shop \
         (objects wait for their namespace)"
    );
    let entries = vec![
        depends(crd("example.com", "Widget"), "Widget/w"),
        entry("example.com/v1", "Widget", "w"),
    ];
    assert!(
        error(&entries)
            .to_string()
            .contains("(instances wait for their CRD)")
    );
}

#[test]
fn the_cycle_reads_the_same_whatever_the_entry_order() {
    let a = depends(entry("v1", "ConfigMap", "shop/a"), "Secret/b");
    let b = depends(entry("v1", "Secret", "shop/b"), "Service/c");
    let c = depends(entry("v1", "Service", "shop/c"), "ConfigMap/a");
    let one = error(&[a.clone(), b.clone(), c.clone()]).to_string();
    let two = error(&[c, b, a]).to_string();
    assert_eq!(one, two);
    assert!(
        one.starts_with("dependency cycle: ConfigMap shop/a"),
        "{one}"
    );
    assert!(one.contains("waits for Secret shop/b"), "{one}");
    assert!(one.contains("which waits for Service shop/c"), "{one}");
}

#[test]
fn output_is_deterministic_and_sorted_within_steps() {
    let entries = vec![
        entry("v1", "Service", "shop/b"),
        entry("v1", "ConfigMap", "shop/b"),
        entry("v1", "ConfigMap", "shop/a"),
        entry("v1", "ConfigMap", "a/z"),
        crd("example.com", "Widget"),
        namespace("zzz"),
    ];
    let forward = names(&entries, &plan(&entries).unwrap());
    let mut reversed = entries.clone();
    reversed.reverse();
    let backward = names(&reversed, &plan(&reversed).unwrap());
    assert_eq!(forward, backward);
    assert_eq!(
        forward,
        vec![vec![
            "CustomResourceDefinition widgets.example.com",
            "Namespace zzz",
            "ConfigMap a/z",
            "ConfigMap shop/a",
            "ConfigMap shop/b",
            "Service shop/b",
        ]]
    );
}

#[test]
fn categories_match_kinds_with_their_groups() {
    assert_eq!(
        category("apiextensions.k8s.io", "CustomResourceDefinition"),
        Category::Definitions
    );
    assert_eq!(category("", "Namespace"), Category::Namespaces);
    for (group, kind) in [
        ("", "ConfigMap"),
        ("", "Service"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("policy", "PodDisruptionBudget"),
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding",
        ),
        ("scheduling.k8s.io", "PriorityClass"),
    ] {
        assert_eq!(category(group, kind), Category::Foundation, "{kind}");
    }
    for (group, kind) in [("apps", "StatefulSet"), ("batch", "CronJob"), ("", "Pod")] {
        assert_eq!(category(group, kind), Category::Workloads, "{kind}");
    }
    for (group, kind) in [
        ("networking.k8s.io", "Ingress"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
        ("serving.knative.dev", "Service"),
        ("example.com", "Widget"),
    ] {
        assert_eq!(category(group, kind), Category::Extensions, "{kind}");
    }
}

#[test]
fn entry_of_reads_the_annotation_the_definition_and_the_template() {
    let crd_object = Object::new(
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com",
                            "annotations": {"ferry.dev/depends-on": "Namespace/shop"}},
               "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"}}}),
        Some(Origin {
            template: PathBuf::from("templates/crd.yaml.hbs"),
            document: 1,
        }),
    )
    .unwrap();
    let e = Entry::of(&crd_object, None);
    assert_eq!(e.group, "apiextensions.k8s.io");
    assert_eq!(e.depends_on.as_deref(), Some("Namespace/shop"));
    assert_eq!(
        e.defines,
        Some(GroupKind {
            group: "example.com".into(),
            kind: "Widget".into()
        })
    );
    assert_eq!(e.template, Some(PathBuf::from("templates/crd.yaml.hbs")));
    let widget = Object::new(
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w", "annotations": {"ferry.dev/depends-on": 5}}}),
        None,
    )
    .unwrap();
    let e = Entry::of(&widget, Some("shop".into()));
    assert_eq!(e.id.namespace.as_deref(), Some("shop"));
    assert_eq!(e.defines, None);
    assert_eq!(e.depends_on.as_deref(), Some("5"));
    assert!(matches!(
        plan(&[e]).unwrap_err(),
        PlanError::BadAnnotation { .. }
    ));
}

/// 5,000 objects: many namespaces, CRDs and declared dependencies. Checks the result, not the
/// time (speed is measured by benchmarks); a quadratic F×W edge set would still pass here but
/// is ruled out by construction (one barrier node).
#[test]
fn five_thousand_entries_are_planned_correctly() {
    let mut entries = Vec::new();
    for n in 0..50 {
        let ns = format!("ns{n:02}");
        entries.push(namespace(&ns));
        entries.push(crd(&format!("g{n:02}.io"), "Widget"));
        for k in 0..24 {
            entries.push(entry("v1", "ConfigMap", &format!("{ns}/config{k:02}")));
            entries.push(entry(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                &format!("{ns}/np{k:02}"),
            ));
            entries.push(entry("apps/v1", "Deployment", &format!("{ns}/web{k:02}")));
            entries.push(depends(
                entry(
                    &format!("g{n:02}.io/v1"),
                    "Widget",
                    &format!("{ns}/w{k:02}"),
                ),
                &format!("Deployment/web{k:02}"),
            ));
        }
    }
    assert_eq!(entries.len(), 50 * (2 + 24 * 4));
    while entries.len() < 5_000 {
        let k = entries.len();
        entries.push(entry("v1", "Secret", &format!("ns00/extra{k}")));
    }
    let plan = super::plan(&entries).unwrap();
    let step = |kind: &str| -> Vec<usize> {
        let mut steps: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].id.kind == kind)
            .map(|i| plan.step_of(i))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    };
    assert_eq!(step("Namespace"), vec![0]);
    assert_eq!(step("CustomResourceDefinition"), vec![0]);
    assert_eq!(step("ConfigMap"), vec![1]);
    assert_eq!(step("NetworkPolicy"), vec![1]);
    assert_eq!(step("Secret"), vec![1]);
    assert_eq!(step("Deployment"), vec![2]);
    assert_eq!(step("Widget"), vec![3]);
    assert_eq!(plan.steps.len(), 4);
    assert_eq!(
        plan.steps.iter().map(|s| s.objects.len()).sum::<usize>(),
        5_000
    );
    assert_eq!(plan.steps[0].establishes.len(), 50);
    let widget = entries.iter().position(|e| e.id.kind == "Widget").unwrap();
    assert!(matches!(
        plan.check(widget),
        Check::After {
            step: 0,
            because: Because::Kind(_)
        }
    ));
}
