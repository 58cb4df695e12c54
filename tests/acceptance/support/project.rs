//! A Ferry project in a temporary directory, and the ferry binary run on it with a clean
//! environment, for the tests that drive the real command line.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use k8s_openapi::api::apps::v1::Deployment;

use super::{TestNamespace, cluster};

/// How long one ferry command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// A copy of a project in a temporary directory, removed when dropped.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// The demo project of the repository, with `environments/t.yaml` for `namespace` (see
    /// [`Project::environment`]) and its secret in `secrets.yaml`.
    pub fn demo(namespace: &str, extra_env: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(root.join("ferry.yaml"), dir.path().join("ferry.yaml"))
            .expect("copy ferry.yaml");
        copy_dir(&root.join("templates"), &dir.path().join("templates"));
        // The pipeline names the demo's environments: bring them along.
        copy_dir(&root.join("environments"), &dir.path().join("environments"));
        let project = Project { dir };
        project.write("secrets.yaml", "db-password: acceptance-only\n");
        project.environment(namespace, extra_env);
        project
    }

    /// A project of its own templates: `ferry.yaml` with `app`, and `environments/t.yaml`.
    pub fn custom(app: &str, namespace: &str, templates: &[(&str, &str)]) -> Project {
        let project = Project {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        project.write("ferry.yaml", &format!("app: {app}\n"));
        for (name, text) in templates {
            project.write(&format!("templates/{name}"), text);
        }
        project.environment(namespace, "");
        project
    }

    /// Writes `environments/t.yaml`: context ferry-local, `namespace`, secrets from
    /// `secrets.yaml`, then `extra` (more top-level keys).
    pub fn environment(&self, namespace: &str, extra: &str) {
        self.write(
            "environments/t.yaml",
            &format!(
                "context: ferry-local\nnamespace: {namespace}\nsecrets:\n  - from: file\n    path: secrets.yaml\n{extra}"
            ),
        );
        if !self.path().join("secrets.yaml").exists() {
            self.write("secrets.yaml", "{}\n");
        }
    }

    /// Writes `text` to `path` (relative to the project), creating directories.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Removes `path` (relative to the project).
    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join(path)).expect("remove file");
    }

    /// Edits the pod template of the demo Deployment: adds `label` and `annotation` lines
    /// (already indented YAML `key: value`).
    pub fn pod_template(&self, label: Option<&str>, annotation: Option<&str>) {
        let path = self.path().join("templates/deployment.yaml.hbs");
        let text = std::fs::read_to_string(&path).expect("read deployment template");
        let anchor = "      labels:\n        {{> labels}}\n      annotations:\n";
        assert!(
            text.contains(anchor),
            "the demo Deployment template changed shape"
        );
        let mut with = String::from("      labels:\n        {{> labels}}\n");
        if let Some(l) = label {
            with.push_str(&format!("        {l}\n"));
        }
        with.push_str("      annotations:\n");
        if let Some(a) = annotation {
            with.push_str(&format!("        {a}\n"));
        }
        std::fs::write(&path, text.replacen(anchor, &with, 1)).expect("write template");
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
        }
    }
}

/// What a ferry run gave.
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The JSON lines of stdout.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    /// `kind/name → action` of the `applied` and `pruned` events.
    pub fn actions(&self) -> BTreeMap<String, String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "applied" || e["event"] == "pruned")
            .map(|e| {
                (
                    format!(
                        "{}/{}",
                        e["id"]["kind"].as_str().unwrap_or("?"),
                        e["id"]["name"].as_str().unwrap_or("?")
                    ),
                    e["action"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect()
    }

    /// The `release` event (the outcome).
    pub fn outcome(&self) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "release")
            .unwrap_or_else(|| {
                panic!(
                    "no release event\nstdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }

    /// The last event, which must be `finished`.
    pub fn finished(&self) -> Value {
        let last = self.events().pop().expect("at least one event");
        assert_eq!(last["event"], "finished", "{}", self.stdout);
        last
    }

    /// Fails the test, showing both outputs, unless the exit code is `code`.
    pub fn assert_code(&self, code: i32, what: &str) {
        assert_eq!(
            self.code, code,
            "{what}: exit {} (want {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
    }
}

/// The ferry binary for `args` in `project` with a clean environment: only `KUBECONFIG` (the
/// test stack's), `HOME`, `NO_COLOR` and `FERRY_USER=acceptance`.
pub fn command(project: &Path, args: &[&str], home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .arg("--project")
        .arg(project)
        .current_dir(project)
        .env_clear()
        .env("KUBECONFIG", cluster().kubeconfig())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("FERRY_USER", "acceptance")
        .kill_on_drop(true);
    command
}

/// Runs [`command`] with a temporary `HOME`, within [`COMMAND_TIMEOUT`].
pub async fn ferry(project: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let mut command = command(project, args, home.path());
    run(&mut command, args).await
}

/// Runs ferry in `dir` without `--project` (ferry searches upward from `dir`, or needs no
/// project at all), with the clean environment of [`command`].
pub async fn ferry_in(dir: &Path, args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("KUBECONFIG", cluster().kubeconfig())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("FERRY_USER", "acceptance")
        .kill_on_drop(true);
    run(&mut command, args).await
}

async fn run(command: &mut tokio::process::Command, args: &[&str]) -> Run {
    let output: Output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("ferry {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .expect("run ferry");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until the demo Deployment (`demo-web`) in `ns` is at `generation`: the apply of a
/// release reached it.
pub async fn wait_applied(ns: &TestNamespace, generation: i64) {
    let deployments = ns.api::<Deployment>();
    let started = std::time::Instant::now();
    loop {
        let d = deployments.get("demo-web").await.expect("deployment");
        if d.metadata.generation.unwrap_or(0) >= generation {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the release never applied generation {generation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `ferry release t --output json` in `project` and kills it with SIGKILL once its
/// apply brought the demo Deployment in `ns` to `generation` (and half a second later, so the
/// rollout is under way): a Ferry that dies mid-release.
pub async fn kill_mid_rollout(project: &Project, ns: &TestNamespace, generation: i64) {
    let home = tempfile::tempdir().expect("home");
    let mut child = command(
        project.path(),
        &["release", "t", "--output", "json"],
        home.path(),
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("start ferry");
    wait_applied(ns, generation).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.start_kill().expect("kill -9");
    let _ = child.wait().await;
}
