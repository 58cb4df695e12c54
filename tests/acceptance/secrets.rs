//! No secret value in any output (issue 10, item 1): every command that prints objects, and
//! the error paths that quote rendered text or a server's refusal, run against the local
//! control plane with a secret that is also copied into a ConfigMap (data and annotation) and
//! an env value; neither stdout nor stderr (with `-vv`, the log) shows it in any encoding.
//!
//! The secret contains `: ` (unquoted it breaks the YAML, so the YAML error quotes it) and `"`
//! (so JSON, YAML and the API server escape it).

use base64::Engine as _;

use crate::support::TestNamespace;
use crate::support::project::{Project, Run, ferry};

/// The first value of the secret (released as revision 1).
const FIRST: &str = "hunter2: correct-horse \"battery\" staple";
/// The second value (revision 2): `rollback` to revision 1 must hide [`FIRST`] with no secret
/// store knowing it.
const SECOND: &str = "swordfish: tr0ub4dor \"and\" three";

/// The forms of a value that give it away: as is, JSON-escaped, base64 (padding or not),
/// and a distinctive fragment (a value split by escaping or folding still shows it).
fn leaks_of(value: &str, fragment: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    let json = serde_json::to_string(value).expect("json");
    vec![
        value.to_string(),
        json.trim_matches('"').to_string(),
        b64.trim_end_matches('=').to_string(),
        fragment.to_string(),
    ]
}

/// Every (command, stream, form) where a value showed, for one report at the end (so a
/// regression names every command that leaks, not only the first).
type Leaks = std::sync::Mutex<Vec<String>>;

/// Records in `leaks` each form of either value that an output of `run` shows.
fn check_hidden(leaks: &Leaks, what: &str, run: &Run) {
    for form in leaks_of(FIRST, "correct-horse")
        .into_iter()
        .chain(leaks_of(SECOND, "tr0ub4dor"))
    {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            if text.contains(&form) {
                let line = text.lines().find(|l| l.contains(&form)).unwrap_or_default();
                leaks
                    .lock()
                    .expect("leaks")
                    .push(format!("`ferry {what}` {stream} shows {form:?}: {line}"));
            }
        }
    }
}

/// Writes the secrets file with `value`.
fn set_secret(project: &Project, value: &str) {
    let quoted = serde_json::to_string(value).expect("json");
    project.write("secrets.yaml", &format!("db-password: {quoted}\n"));
}

/// The demo with the secret also copied into the ConfigMap (data, base64 data, annotation)
/// and a plain env value of the Deployment.
fn leaky_demo(namespace: &str) -> Project {
    let project = Project::demo(namespace, "values:\n  replicas: 2\n");
    let edit = |path: &str, anchor: &str, with: &str| {
        let full = project.path().join(path);
        let text = std::fs::read_to_string(&full).expect("read template");
        assert!(text.contains(anchor), "{path} changed shape");
        std::fs::write(&full, text.replacen(anchor, with, 1)).expect("write template");
    };
    edit(
        "templates/configmap.yaml.hbs",
        "  name: {{app}}-web-config\n",
        "  name: {{app}}-web-config\n  annotations:\n    ferry.test/copy: {{toJson (secret \"db-password\")}}\n",
    );
    edit(
        "templates/configmap.yaml.hbs",
        "\ndata:\n",
        "\ndata:\n  COPY: {{toJson (secret \"db-password\")}}\n  COPY_B64: {{b64enc (secret \"db-password\")}}\n",
    );
    edit(
        "templates/deployment.yaml.hbs",
        "            - name: PORT\n",
        "            - name: DB_PASSWORD_COPY\n              value: {{toJson (secret \"db-password\")}}\n            - name: PORT\n",
    );
    set_secret(&project, FIRST);
    project
}

/// Runs `ferry args… -vv` (and again with `--output json` when `json`), checks the exit code
/// and records what shows a secret; returns the human run.
async fn run(leaks: &Leaks, project: &Project, args: &[&str], code: i32, json: bool) -> Run {
    let mut runs = Vec::new();
    for output in ["human", "json"].into_iter().take(if json { 2 } else { 1 }) {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-vv", "--output", output]);
        let what = full.join(" ");
        let run = ferry(project.path(), &full).await;
        run.assert_code(code, &what);
        check_hidden(leaks, &what, &run);
        runs.push(run);
    }
    runs.swap_remove(0)
}

#[tokio::test]
async fn no_command_and_no_error_shows_a_secret_value() {
    let ns = TestNamespace::new("secrets").await;
    let project = leaky_demo(ns.name());
    let leaks = Leaks::default();
    let leaks = &leaks;

    let render = run(leaks, &project, &["render", "t"], 0, true).await;
    run(leaks, &project, &["lint", "t"], 0, true).await;
    run(leaks, &project, &["diff", "t"], 1, true).await;
    run(leaks, &project, &["release", "t"], 0, false).await;

    // Revision 2 with another value: the diff shows the live (old) copies, hidden too.
    set_secret(&project, SECOND);
    let diff = run(leaks, &project, &["diff", "t"], 1, true).await;
    assert!(diff.stdout.contains("ConfigMap"), "{}", diff.stdout);
    let release = ferry(project.path(), &["release", "t", "-vv", "--output", "json"]).await;
    release.assert_code(0, "release t --output json");
    check_hidden(leaks, "release t --output json", &release);
    run(leaks, &project, &["status", "t"], 0, true).await;
    run(leaks, &project, &["history", "t"], 0, true).await;
    // Back to revision 1 (FIRST), then forward to 2: rollback reads records, renders nothing.
    run(leaks, &project, &["rollback", "t", "--to", "1"], 0, false).await;
    let back = ferry(
        project.path(),
        &["rollback", "t", "--to", "2", "-vv", "--output", "json"],
    )
    .await;
    back.assert_code(0, "rollback t --to 2 --output json");
    check_hidden(leaks, "rollback t --to 2 --output json", &back);

    // Error paths. A template error whose message is the secret (`required`'s message).
    project.write(
        "templates/zz-broken.yaml.hbs",
        "{{required (secret \"db-password\") \"\"}}\n",
    );
    let failed = run(leaks, &project, &["render", "t"], 2, true).await;
    assert!(
        failed.stderr.contains("failed to render"),
        "{}",
        failed.stderr
    );
    // A rendered-YAML error, which quotes the offending line.
    project.write(
        "templates/zz-broken.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  dsn: {{secret \"db-password\"}}\n",
    );
    let yaml_error = run(leaks, &project, &["render", "t"], 2, true).await;
    run(leaks, &project, &["diff", "t"], 2, true).await;
    // An API refusal that quotes the value: a label may not hold it.
    project.write(
        "templates/zz-broken.yaml.hbs",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  labels:\n    leak: {{toJson (secret \"db-password\")}}\ndata: {}\n",
    );
    let refused = run(leaks, &project, &["diff", "t"], 2, true).await;
    assert!(
        refused.stderr.contains("Invalid value"),
        "{}",
        refused.stderr
    );
    let refused = run(leaks, &project, &["release", "t"], 1, false).await;

    let leaks = leaks.lock().expect("leaks");
    assert!(
        leaks.is_empty(),
        "secret values shown:\n{}",
        leaks.join("\n")
    );
    // What shows instead.
    let render = &render.stdout;
    assert!(
        render.contains("COPY: \"***\"") || render.contains("COPY: '***'"),
        "{render}"
    );
    assert!(
        render.contains("value: \"***\"") || render.contains("value: '***'"),
        "{render}"
    );
    let yaml_error = &yaml_error.stderr;
    assert!(
        yaml_error.contains("the line reads `dsn: ***`"),
        "{yaml_error}"
    );
    let refused = &refused.stderr;
    assert!(refused.contains("Invalid value: \"***\""), "{refused}");
}
