//! `ferry render` on the demo project and on broken copies of it.

use insta::assert_snapshot;

use crate::support::Demo;

#[test]
fn renders_the_demo_with_secrets_redacted() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("local-cluster-only-not-a-secret"));
    assert_snapshot!("render_staging", run.snapshot());
}

#[test]
fn show_secrets_prints_the_value() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging", "--show-secrets"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("password: local-cluster-only-not-a-secret"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let demo = Demo::new();
    let first = demo.run(&["render", "staging"]);
    let second = demo.run(&["render", "staging"]);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn set_overrides_values() {
    let demo = Demo::new();
    let run = demo.run(&[
        "render",
        "staging",
        "--set",
        "replicas=7",
        "--set",
        "config.greeting=hi",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("replicas: 7"), "{}", run.stdout);
    assert!(run.stdout.contains("GREETING: hi"), "{}", run.stdout);
}

#[test]
fn output_dir_gets_one_file_per_object_in_apply_order() {
    let demo = Demo::new();
    let out = demo.file("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("001-stale-object.yaml"), "stale").unwrap();
    std::fs::write(out.join("notes.txt"), "kept").unwrap();
    let run = demo.run(&["render", "staging", "-o", "out"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_snapshot!("render_output_dir_files", names.join("\n"));
    let secret = std::fs::read_to_string(out.join("005-secret-demo-staging-demo-db.yaml")).unwrap();
    assert!(
        secret.contains("password: '***'") || secret.contains("password: \"***\""),
        "{secret}"
    );
}

#[test]
fn json_output_is_one_document() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging", "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["environment"], "staging");
    assert_eq!(doc["objects"].as_array().unwrap().len(), 8);
    assert_eq!(doc["findings"][0]["rule"], "HARD-IMAGE-DIGEST");
    assert!(!run.stdout.contains("local-cluster-only-not-a-secret"));
}

#[test]
fn a_missing_production_secret_names_it() {
    let demo = Demo::new();
    let run = demo.run(&["render", "production"]);
    assert_eq!(run.code, 2);
    assert_snapshot!("render_missing_secret", run.snapshot());
}

#[test]
fn production_renders_with_the_secret_from_the_environment() {
    let demo = Demo::new();
    let run = super::support::run(
        demo.ferry()
            .args(["render", "production"])
            .env("FERRY_SECRET_DB_PASSWORD", "from-env"),
        demo.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("replicas: 4"));
    assert!(!run.stdout.contains("from-env"));
}

/// Each broken copy exits 2 with one message naming the file and line, and writes nothing.
fn assert_bad_input(name: &str, demo: &Demo, env: &str) {
    let run = demo.run(&["render", env, "-o", "out"]);
    assert_eq!(run.code, 2, "{name}: {}", run.snapshot());
    assert_eq!(run.stdout, "", "{name}");
    assert!(!demo.file("out").exists(), "{name}: output was written");
    assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
    assert_snapshot!(name, run.stderr);
}

#[test]
fn malformed_environment_yaml() {
    let demo = Demo::new();
    demo.edit(
        "environments/staging.yaml",
        "namespace: demo-staging",
        "namespace: [demo-staging",
    );
    assert_bad_input("bad_environment_yaml", &demo, "staging");
}

#[test]
fn unknown_key_in_ferry_yaml() {
    let demo = Demo::new();
    demo.edit("ferry.yaml", "pipeline:", "pipelines:");
    assert_bad_input("bad_unknown_key", &demo, "staging");
}

#[test]
fn wrongly_typed_value_in_ferry_yaml() {
    let demo = Demo::new();
    demo.edit("ferry.yaml", "historyLimit: 10", "historyLimit: ten");
    assert_bad_input("bad_wrong_type", &demo, "staging");
}

#[test]
fn unknown_environment() {
    let demo = Demo::new();
    assert_bad_input("bad_unknown_environment", &demo, "qa");
}

#[test]
fn template_syntax_error() {
    let demo = Demo::new();
    demo.edit(
        "templates/service.yaml.hbs",
        "name: {{app}}-web",
        "name: {{#if app}}-web",
    );
    assert_bad_input("bad_template_syntax", &demo, "staging");
}

#[test]
fn missing_value() {
    let demo = Demo::new();
    demo.edit(
        "templates/deployment.yaml.hbs",
        "{{values.replicas}}",
        "{{values.replicaCount}}",
    );
    assert_bad_input("bad_missing_value", &demo, "staging");
}

#[test]
fn unknown_helper() {
    let demo = Demo::new();
    demo.edit(
        "templates/configmap.yaml.hbs",
        "{{quote env.name}}",
        "{{upper env.name}}",
    );
    assert_bad_input("bad_unknown_helper", &demo, "staging");
}

#[test]
fn rendered_document_is_not_an_object() {
    let demo = Demo::new();
    demo.write(
        "templates/extra.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n",
    );
    assert_bad_input("bad_not_an_object", &demo, "staging");
}

#[test]
fn rendered_output_is_not_yaml() {
    let demo = Demo::new();
    demo.write(
        "templates/extra.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{app}}: x\n",
    );
    assert_bad_input("bad_not_yaml", &demo, "staging");
}

#[test]
fn lint_errors_block_the_output_unless_no_lint() {
    let demo = Demo::new();
    demo.edit(
        "templates/deployment.yaml.hbs",
        "allowPrivilegeEscalation: false",
        "allowPrivilegeEscalation: true",
    );
    assert_bad_input("bad_lint_error", &demo, "staging");
    let run = demo.run(&["render", "staging", "--no-lint"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("allowPrivilegeEscalation: true"));
}

#[test]
fn bad_set_argument() {
    let demo = Demo::new();
    let run = demo.run(&["render", "staging", "--set", "replicas"]);
    assert_eq!(run.code, 2);
    assert_snapshot!("bad_set", run.stderr);
}

#[test]
fn outside_a_project() {
    let demo = Demo::new();
    let empty = tempfile::tempdir().unwrap();
    let run = super::support::run(
        demo.ferry()
            .current_dir(empty.path())
            .args(["render", "staging"]),
        empty.path(),
    );
    assert_eq!(run.code, 2);
    assert_snapshot!("bad_no_project", run.stderr);
}

#[test]
fn project_flag_finds_the_project_from_elsewhere() {
    let demo = Demo::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let project = demo.path().display().to_string();
    let run = super::support::run(
        demo.ferry().current_dir(elsewhere.path()).args([
            "render",
            "staging",
            "--project",
            &project,
        ]),
        demo.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_closed_stdout_exits_zero() {
    use std::io::Read;
    use std::process::Stdio;
    let demo = Demo::new();
    let mut child = demo
        .ferry()
        .args(["render", "staging"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    let _ = stdout.read(&mut first);
    drop(stdout);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// The secret of the issue 10 tests: it contains `: ` (so unquoted it breaks the YAML) and a
/// `"` (so JSON and YAML escape it).
const LEAKY: &str = "hunter2: correct-horse \"battery\" staple";

/// Every form of [`LEAKY`] that would give it away.
fn assert_no_leak(label: &str, text: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(LEAKY);
    for form in [
        LEAKY.to_string(),
        serde_json::to_string(LEAKY).unwrap(),
        b64.trim_end_matches('=').to_string(),
        "correct-horse".to_string(),
    ] {
        assert!(!text.contains(&form), "{label} shows {form:?}:\n{text}");
    }
}

#[test]
fn a_rendered_yaml_error_never_quotes_a_secret() {
    // issue 10: the YAML error quotes the offending line, which holds the secret.
    let demo = Demo::new();
    demo.write(
        "templates/extra.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  dsn: {{secret \"db-password\"}}\n",
    );
    for output in ["human", "json"] {
        let run = super::support::run(
            demo.ferry()
                .args(["render", "staging", "-vv", "--output", output])
                .env("FERRY_SECRET_DB_PASSWORD", LEAKY),
            demo.path(),
        );
        assert_eq!(run.code, 2, "{}", run.snapshot());
        assert!(
            run.stderr.contains("rendered invalid YAML"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("(the line reads `dsn: ***`)"),
            "{}",
            run.stderr
        );
        assert_no_leak(output, &run.snapshot());
    }
}

#[test]
fn copies_of_a_secret_are_hidden_in_every_encoding() {
    // issue 10: a secret copied into a ConfigMap, an env value and an annotation, plain and
    // base64, in YAML and JSON output.
    let demo = Demo::new();
    demo.write(
        "templates/extra.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  annotations:\n    copy: {{toJson (secret \"db-password\")}}\ndata:\n  dsn: {{toJson (secret \"db-password\")}}\n  b64: {{b64enc (secret \"db-password\")}}\n  env: |\n    - name: PASSWORD\n      value: {{toJson (secret \"db-password\")}}\n",
    );
    for output in ["human", "json"] {
        let run = super::support::run(
            demo.ferry()
                .args(["render", "staging", "-vv", "--output", output])
                .env("FERRY_SECRET_DB_PASSWORD", LEAKY),
            demo.path(),
        );
        assert_eq!(run.code, 0, "{}", run.snapshot());
        assert!(run.stdout.contains("***"), "{}", run.stdout);
        assert_no_leak(output, &run.snapshot());
    }
    let shown = super::support::run(
        demo.ferry()
            .args(["render", "staging", "--show-secrets"])
            .env("FERRY_SECRET_DB_PASSWORD", LEAKY),
        demo.path(),
    );
    assert!(shown.stdout.contains("correct-horse"), "{}", shown.stdout);
}

#[test]
fn the_lock_pins_the_image_on_the_registry_it_was_pushed_to() {
    let demo = Demo::new();
    let digest = format!("sha256:{}", "4".repeat(64));
    std::fs::create_dir_all(demo.file("target/ferry")).unwrap();
    // A lock written before `pushed` existed: the image is in ferry.yaml's repository.
    demo.write(
        "target/ferry/images.lock",
        &format!(
            "{{\"web\": {{\"repository\": \"localhost:5000/demo/web\", \"digest\": \"{digest}\"}}}}\n"
        ),
    );
    let run = demo.run(&["render", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("image: localhost:5000/demo/web@{digest}")),
        "{}",
        run.stdout
    );
    // After `image push web --registry 127.0.0.1:5999`: the image is there.
    demo.write(
        "target/ferry/images.lock",
        &format!(
            "{{\"web\": {{\"repository\": \"localhost:5000/demo/web\", \"pushed\": \"127.0.0.1:5999/demo/web\", \"digest\": \"{digest}\"}}}}\n"
        ),
    );
    let run = demo.run(&["render", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("image: 127.0.0.1:5999/demo/web@{digest}")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("localhost:5000"), "{}", run.stdout);
    // A changed repository in ferry.yaml makes the entry meaningless.
    demo.edit(
        "ferry.yaml",
        "repository: localhost:5000/demo/web",
        "repository: localhost:5000/demo/other",
    );
    let run = demo.run(&["render", "staging"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("image: localhost:5000/demo/other:dev"),
        "{}",
        run.stdout
    );
}
