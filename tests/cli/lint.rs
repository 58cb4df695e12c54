//! `ferry lint` on the demo project and on insecure variants of it.

use insta::assert_snapshot;

use crate::support::Demo;

#[test]
fn the_demo_passes_with_only_the_digest_warning() {
    let demo = Demo::new();
    let run = demo.run(&["lint", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!("lint_staging", run.snapshot());
}

#[test]
fn an_insecure_deployment_fails_naming_rule_object_and_field() {
    let demo = Demo::new();
    demo.edit(
        "templates/deployment.yaml.hbs",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
    );
    demo.edit(
        "templates/deployment.yaml.hbs",
        "maxUnavailable: 0",
        "maxUnavailable: 1",
    );
    let run = demo.run(&["lint", "staging"]);
    assert_eq!(run.code, 2);
    assert_snapshot!("lint_insecure", run.snapshot());
}

#[test]
fn json_lists_findings() {
    let demo = Demo::new();
    demo.edit(
        "templates/deployment.yaml.hbs",
        "runAsUser: 65532",
        "runAsUser: 0",
    );
    let run = demo.run(&["lint", "staging", "--output", "json"]);
    assert_eq!(run.code, 2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["failed"], true);
    let rules: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"PSS-RUN-AS-USER"), "{rules:?}");
}

#[test]
fn a_selector_change_against_a_previous_render_is_an_error() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging", "-o", "previous"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    demo.edit(
        "templates/deployment.yaml.hbs",
        "      app.kubernetes.io/component: web\n  strategy",
        "      app.kubernetes.io/component: frontend\n  strategy",
    );
    let run = demo.run(&["lint", "staging", "--previous", "previous"]);
    assert_eq!(run.code, 2, "{}", run.snapshot());
    assert!(
        run.stderr
            .contains("error[ZD-SELECTOR-CHANGE] Deployment demo-staging/demo-web"),
        "{}",
        run.stderr
    );
}
