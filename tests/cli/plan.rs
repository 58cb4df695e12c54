//! `ferry apply <env> --plan`: the dependency plan, printed without contacting a cluster, and
//! the plan errors `ferry lint` reports too.

use insta::{assert_json_snapshot, assert_snapshot};

use crate::support::Demo;

const CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

const NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: {{env.namespace}}
";

const WIDGET: &str = "\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: {{app}}-widget
  annotations:
    ferry.dev/depends-on: Deployment/{{app}}-web
spec:
  size: 3
";

/// The demo cut down to a CRD, a Namespace, a ConfigMap, NetworkPolicies, a PDB, a
/// Deployment and a Widget that declares it waits for the Deployment. No kubeconfig exists
/// in the fixture, so a run that needed a cluster would fail.
fn project() -> Demo {
    let demo = Demo::new();
    for gone in ["secret", "service", "serviceaccount"] {
        std::fs::remove_file(demo.file(&format!("templates/{gone}.yaml.hbs"))).unwrap();
    }
    demo.write("templates/crd.yaml.hbs", CRD);
    demo.write("templates/namespace.yaml.hbs", NAMESPACE);
    demo.write("templates/widget.yaml.hbs", WIDGET);
    demo
}

/// Makes the ConfigMap declare it waits for `target`.
fn config_depends_on(demo: &Demo, target: &str) {
    demo.edit(
        "templates/configmap.yaml.hbs",
        "  name: {{app}}-web-config\n",
        &format!(
            "  name: {{{{app}}}}-web-config\n  annotations:\n    ferry.dev/depends-on: {target}\n"
        ),
    );
}

#[test]
fn plan_lists_the_steps_and_when_each_object_can_be_checked() {
    let demo = project();
    let run = demo.run(&["apply", "staging", "--plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!("plan_human", run.snapshot());
}

#[test]
fn plan_as_json() {
    let demo = project();
    let run = demo.run(&["apply", "staging", "--plan", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_json_snapshot!("plan_json", doc);
}

#[test]
fn without_the_declared_dependency_the_widget_moves_up_to_step_2() {
    let demo = project();
    demo.edit(
        "templates/widget.yaml.hbs",
        "  annotations:\n    ferry.dev/depends-on: Deployment/{{app}}-web\n",
        "",
    );
    let run = demo.run(&["apply", "staging", "--plan", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    let step2: Vec<&str> = steps[1]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert!(step2.contains(&"Widget"), "{step2:?}");
}

#[test]
fn a_cycle_through_the_workload_barrier_exits_2_naming_the_objects() {
    let demo = project();
    config_depends_on(&demo, "Deployment/demo-web");
    let run = demo.run(&["apply", "staging", "--plan"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_snapshot!("plan_cycle", run.stderr);
}

#[test]
fn an_unknown_target_exits_2_naming_the_object_and_template() {
    let demo = project();
    demo.edit(
        "templates/widget.yaml.hbs",
        "Deployment/{{app}}-web",
        "Deployment/nope",
    );
    let run = demo.run(&["apply", "staging", "--plan"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_snapshot!("plan_unknown_target", run.stderr);
}

#[test]
fn lint_reports_plan_errors_as_errors() {
    let demo = project();
    let run = demo.run(&["lint", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (target, rule) in [
        ("Deployment/demo-web", "PLAN-CYCLE"),
        ("Deployment/nope", "PLAN-UNKNOWN-TARGET"),
        ("Deployment", "PLAN-ANNOTATION"),
    ] {
        let demo = project();
        config_depends_on(&demo, target);
        let run = demo.run(&["lint", "staging", "--output", "json"]);
        assert_eq!(run.code, 2, "{target}: {}", run.stderr);
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let found: Vec<&serde_json::Value> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == rule)
            .collect();
        assert_eq!(found.len(), 1, "{target}: {}", run.stdout);
        assert_eq!(found[0]["severity"], "error");
        assert_eq!(found[0]["object"]["kind"], "ConfigMap");
    }
}

#[test]
fn lint_names_the_cycle_for_people() {
    let demo = project();
    config_depends_on(&demo, "Deployment/demo-web");
    let run = demo.run(&["lint", "staging"]);
    assert_eq!(run.code, 2);
    assert_snapshot!("lint_plan_cycle", run.stderr);
}

#[test]
fn plan_honours_no_lint() {
    let demo = project();
    std::fs::remove_file(demo.file("templates/poddisruptionbudget.yaml.hbs")).unwrap();
    let run = demo.run(&["apply", "staging", "--plan"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("ZD-PDB"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let run = demo.run(&["apply", "staging", "--plan", "--no-lint"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("step 1 of 4"), "{}", run.stdout);
}

#[test]
fn flags_plan_would_ignore_are_refused() {
    let demo = project();
    for (extra, flag) in [
        (&["--dry-run"][..], "--dry-run"),
        (&["--force-conflicts"][..], "--force-conflicts"),
        (&["--no-prune"][..], "--no-prune"),
        (&["--reapply"][..], "--reapply"),
        (&["--concurrency", "4"][..], "--concurrency"),
        (&["--context", "prod"][..], "--context"),
        (&["--kubeconfig", "/nowhere"][..], "--kubeconfig"),
    ] {
        let mut args = vec!["apply", "staging", "--plan"];
        args.extend_from_slice(extra);
        let run = demo.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert_eq!(
            run.stderr,
            format!(
                "error: `ferry apply --plan` never talks to a cluster: {flag} would have no effect\nhint: drop {flag}\n"
            ),
            "{args:?}"
        );
    }
}
