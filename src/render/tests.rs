//! Unit tests of rendering: helpers, strict mode, ordering, errors, redaction.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::project::{ImageSpec, Project, SetOverride};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(templates: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "ferry.yaml",
            "app: shop\nimages:\n  web: {repository: reg.example/shop/web, tag: v1}\nvalues:\n  replicas: 2\n  labels: {tier: web}\n",
        );
        write(
            "environments/staging.yaml",
            "context: local\nnamespace: shop-staging\nsecrets:\n  - {from: file, path: environments/dev-secrets.yaml}\n",
        );
        write(
            "environments/dev-secrets.yaml",
            "db-password: s3cr3t-pass\n",
        );
        for (name, text) in templates {
            write(&format!("templates/{name}"), text);
        }
        Fixture { dir }
    }

    fn render(
        &self,
        pinned: &BTreeMap<String, String>,
    ) -> Result<(Bundle, BTreeMap<String, crate::project::Redacted<String>>), Error> {
        let project = Project::load(self.dir.path()).unwrap();
        let env = project.resolve("staging", &[] as &[SetOverride]).unwrap();
        let templates = Templates::load(self.dir.path())?;
        let bundle = render(&templates, &env, pinned)?;
        Ok((bundle, env.secrets.used()))
    }
}

fn one(text: &str) -> Result<Bundle, Error> {
    Fixture::new(&[("a.yaml.hbs", text)])
        .render(&BTreeMap::new())
        .map(|(b, _)| b)
}

fn cm(data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n{data}\n")
}

#[test]
fn renders_values_and_defaults_the_namespace() {
    let bundle = one(&cm(
        "  replicas: {{quote values.replicas}}\n  app: {{app}}\n  env: {{env.name}}",
    ))
    .unwrap();
    let value = &bundle.objects[0].value;
    assert_eq!(
        value["data"],
        json!({"replicas": "2", "app": "shop", "env": "staging"})
    );
    assert_eq!(value["metadata"]["namespace"], "shop-staging");
}

#[test]
fn missing_value_names_template_line_and_path() {
    let err = one(&cm("  a: x\n  b: {{values.nope}}")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to render templates/a.yaml.hbs at line 7, column 6"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(cause, "missing value `values.nope`");
}

#[test]
fn syntax_error_names_the_line() {
    let err = one("kind: {{#if x}}\n").unwrap_err();
    assert!(
        matches!(err, Error::Syntax { ref template, line: Some(_), .. } if template == "templates/a.yaml.hbs"),
        "{err:?}"
    );
}

#[test]
fn unknown_helper_is_an_error_with_a_hint() {
    let err = one(&cm("  a: {{frobnicate values.replicas}}")).unwrap_err();
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("unknown helper `frobnicate`"),
        "{err:?}"
    );
    assert!(err.hints()[0].starts_with("available helpers"));
}

#[test]
fn a_document_that_is_not_an_object_is_refused() {
    let err = one("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
    assert!(
        matches!(err, Error::NotAnObject { document: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn invalid_yaml_output_names_the_template_and_line() {
    let err = one("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n").unwrap_err();
    assert!(
        matches!(err, Error::Yaml { ref template, line: Some(_), .. } if template == "templates/a.yaml.hbs"),
        "{err:?}"
    );
}

#[test]
fn helpers_produce_expected_text() {
    let text = cm(concat!(
        "  b64: {{b64enc \"hi\"}}\n",
        "  sha: {{sha256 \"hi\"}}\n",
        "  json: {{quote (toJson values.labels)}}\n",
        "  dflt: {{default \"fb\" values.absent}}\n",
        "  kept: {{quote (default \"fb\" values.replicas)}}\n",
        "  req: {{quote (required \"need replicas\" values.replicas)}}\n",
        "  img: {{image \"web\"}}\n",
        "  yaml: |\n{{indent 4 (toYaml values.labels)}}",
    ));
    let bundle = one(&text).unwrap();
    assert_eq!(
        bundle.objects[0].value["data"],
        json!({
            "b64": "aGk=",
            "sha": "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4",
            "json": "{\"tier\":\"web\"}",
            "dflt": "fb",
            "kept": "2",
            "req": "2",
            "img": "reg.example/shop/web:v1",
            "yaml": "tier: web\n",
        })
    );
}

#[test]
fn image_uses_the_pinned_reference() {
    let fixture = Fixture::new(&[("a.yaml.hbs", &cm("  img: {{image \"web\"}}"))]);
    let digest = format!("sha256:{}", "a".repeat(64));
    // Pushed with `--registry mirror.example`: the lock names the registry that holds it.
    let pinned = BTreeMap::from([(
        "web".to_string(),
        format!("mirror.example/shop/web@{digest}"),
    )]);
    let (bundle, _) = fixture.render(&pinned).unwrap();
    assert_eq!(
        bundle.objects[0].value["data"]["img"],
        format!("mirror.example/shop/web@{digest}")
    );
}

#[test]
fn required_fails_with_its_message() {
    let err = one(&cm("  a: {{required \"set values.db.host\" values.db}}")).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("set values.db.host"), "{cause}");
}

#[test]
fn unknown_image_lists_known_images() {
    let err = one(&cm("  a: {{image \"api\"}}")).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.contains("unknown image `api` (images in ferry.yaml: web)"),
        "{cause}"
    );
}

#[test]
fn missing_secret_is_an_error_naming_it() {
    let err = one(&cm("  a: {{secret \"api-key\"}}")).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("secret `api-key` not found"), "{cause}");
}

#[test]
fn objects_are_sorted_by_plan_category_and_rendering_is_deterministic() {
    let fixture = Fixture::new(&[
        (
            "z.yaml.hbs",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        ),
        ("a.yaml.hbs", &cm("  k: v")),
    ]);
    let (first, _) = fixture.render(&BTreeMap::new()).unwrap();
    let kinds: Vec<&str> = first.objects.iter().map(|o| o.id.kind.as_str()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "Service"]);
    assert!(
        first.objects[0].value["metadata"]
            .get("namespace")
            .is_none()
    );
    let (second, _) = fixture.render(&BTreeMap::new()).unwrap();
    assert_eq!(first.to_yaml(), second.to_yaml());
    assert_eq!(first.templates_digest, second.templates_digest);
}

#[test]
fn duplicate_objects_are_refused() {
    let fixture = Fixture::new(&[("a.yaml.hbs", &cm("  k: v")), ("b.yaml.hbs", &cm("  k: w"))]);
    let err = fixture.render(&BTreeMap::new()).unwrap_err();
    assert!(matches!(err, Error::Duplicate { .. }), "{err:?}");
}

#[test]
fn partials_are_available() {
    let fixture = Fixture::new(&[
        ("_labels.hbs", "tier: web"),
        ("a.yaml.hbs", &cm("  {{> labels}}")),
    ]);
    let (bundle, _) = fixture.render(&BTreeMap::new()).unwrap();
    assert_eq!(bundle.objects[0].value["data"], json!({"tier": "web"}));
}

#[test]
fn redaction_hides_secret_data_and_leaked_copies() {
    let fixture = Fixture::new(&[(
        "a.yaml.hbs",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: {{quote (secret \"db-password\")}}\ndata:\n  b64: {{b64enc (secret \"db-password\")}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: leak}\ndata:\n  url: \"postgres://u:{{secret \"db-password\"}}@db\"\n",
    )]);
    let (bundle, _) = fixture.render(&BTreeMap::new()).unwrap();
    let mut shown = bundle.clone();
    redact_bundle(&mut shown);
    let shown = shown.to_yaml();
    assert!(!shown.contains("s3cr3t-pass"), "{shown}");
    assert!(!shown.contains("czNjcjN0LXBhc3M="), "{shown}");
    assert!(shown.contains("postgres://u:***@db"), "{shown}");
    assert!(bundle.to_yaml().contains("s3cr3t-pass"));
}

#[test]
fn image_spec_defaults_to_latest_without_tag() {
    let images = BTreeMap::from([(
        "w".to_string(),
        ImageSpec {
            repository: "r/w".into(),
            tag: None,
            digest: None,
            ..ImageSpec::default()
        },
    )]);
    assert_eq!(
        helpers::image_reference("w", &images, &BTreeMap::new()).unwrap(),
        "r/w:latest"
    );
}
