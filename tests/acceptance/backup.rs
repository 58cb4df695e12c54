//! Issue 11: encrypted, isolated, self-verifying backups of an environment, against the local
//! cluster, registry and S3 server. The demo is released to a test namespace running a small
//! image pushed to the local registry by digest; backups of it go to the directory store and
//! to S3, and are opened with the `age`, `zstd` and `tar` command-line tools as well as ferry.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

use crate::support::project::{Project, Run, command, ferry};
use crate::support::{TestNamespace, cluster, unique_name};

/// The demo's secret value (`secrets.yaml` of [`Project::demo`]) and its base64.
const SECRET: &str = "acceptance-only";
const SECRET_B64: &str = "YWNjZXB0YW5jZS1vbmx5";

/// Runs a tool, panicking with its stderr unless it succeeds; returns stdout.
fn tool(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/cluster/build installs age and zstd)"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pushes a one-layer image (`layer_bytes` random bytes) with crane; returns `repo@digest`.
fn push_image(dir: &Path, layer_bytes: usize) -> String {
    let payload: Vec<u8> = (0..layer_bytes)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1])
        .collect();
    std::fs::write(dir.join("payload.bin"), payload).expect("payload");
    tool(
        "tar",
        &[
            "-C",
            &dir.display().to_string(),
            "-cf",
            &dir.join("layer.tar").display().to_string(),
            "payload.bin",
        ],
        None,
    );
    let repo = format!("{}/backup/{}", cluster().registry(), unique_name("img"));
    let crane = cluster().bin_dir().join("crane");
    let out = tool(
        &crane.display().to_string(),
        &[
            "append",
            "--insecure",
            "-f",
            &dir.join("layer.tar").display().to_string(),
            "-t",
            &format!("{repo}:v1"),
        ],
        None,
    );
    let pushed = String::from_utf8(out).expect("utf-8").trim().to_string();
    assert!(pushed.contains("@sha256:"), "crane append printed {pushed}");
    pushed
}

/// Runs ferry with extra environment variables (the S3 credentials, an identity).
async fn ferry_env(project: &Path, args: &[&str], envs: &[(&str, String)]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = command(project, args, home.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.output())
        .await
        .expect("ferry within 180 s")
        .expect("ferry runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The demo released to a fresh namespace, running a pushed image by digest, with an age
/// identity whose recipient is in `backup.recipients`.
pub(crate) struct Released {
    pub(crate) ns: TestNamespace,
    pub(crate) project: Project,
    pub(crate) identity: PathBuf,
    pub(crate) recipient: String,
    pub(crate) image: String,
}

pub(crate) async fn released(prefix: &str, backup_extra: &str, layer_bytes: usize) -> Released {
    let ns = TestNamespace::new(prefix).await;
    let project = Project::demo(ns.name(), "");
    let image = push_image(project.path(), layer_bytes);
    let (repository, digest) = image.split_once('@').expect("digest");

    let identity = project.path().join("backup-key.txt");
    let keygen = ferry(
        project.path(),
        &[
            "backup",
            "keygen",
            "--output-file",
            &identity.display().to_string(),
        ],
    )
    .await;
    keygen.assert_code(0, "keygen");
    let recipient = keygen.stdout.trim().to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");

    let yaml = std::fs::read_to_string(project.path().join("ferry.yaml")).expect("ferry.yaml");
    let yaml = yaml
        .replace(
            "repository: localhost:5000/demo/web\n    tag: dev",
            &format!("repository: {repository}\n    digest: {digest}"),
        )
        .replace(
            "backup:\n  keepDaily: 7\n  keepWeekly: 4\n",
            &format!("backup:\n  recipients: [{recipient}]\n{backup_extra}"),
        );
    assert!(yaml.contains(&recipient) && yaml.contains(digest), "{yaml}");
    project.write("ferry.yaml", &yaml);
    ferry(project.path(), &["release", "t"])
        .await
        .assert_code(0, "release");
    Released {
        ns,
        project,
        identity,
        recipient,
        image,
    }
}

/// The `backup` event of a `backup create --output json`.
pub(crate) fn created(run: &Run) -> Value {
    run.assert_code(0, "backup create");
    let events = run.events();
    assert_eq!(events.last().expect("events")["event"], "finished");
    events
        .into_iter()
        .find(|e| e["event"] == "backup")
        .map(|e| e["backup"].clone())
        .expect("a backup event")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_plaintext_secret(dir: &Path) {
    let all = files(dir);
    assert!(!all.is_empty(), "nothing in {}", dir.display());
    for file in all {
        let bytes = std::fs::read(&file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET) && !text.contains(SECRET_B64),
            "{} holds the secret in plaintext",
            file.display()
        );
    }
}

/// Decrypts and lists an archive with the age, zstd and tar tools alone: returns the tar.
fn open_with_tools(archive: &Path, identity: &Path) -> Vec<u8> {
    let tar = tool(
        "age",
        &[
            "-d",
            "-i",
            &identity.display().to_string(),
            &archive.display().to_string(),
        ],
        None,
    );
    tool("zstd", &["-d", "-c"], Some(&tar))
}

/// Re-seals a tar with the age and zstd tools to `recipient`.
fn seal_with_tools(tar: &[u8], recipient: &str) -> Vec<u8> {
    let z = tool("zstd", &["-c", "-q"], Some(tar));
    tool("age", &["-r", recipient], Some(&z))
}

#[tokio::test]
async fn directory_backups_are_encrypted_shared_verified_tamper_evident_and_pruned() {
    let env = released("bk-dir", "  keepDaily: 1\n  keepWeekly: 0\n", 64 * 1024).await;
    let dir = env.project.path();

    // The first backup stores the image's manifest, config and layer; the second none.
    let first = created(
        &ferry(
            dir,
            &["backup", "create", "t", "--insecure", "--output", "json"],
        )
        .await,
    );
    assert!(first["objects"].as_u64().unwrap() >= 8, "{first}");
    assert!(first["release_records"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(first["blobs_uploaded"], 3, "{first}");
    assert_eq!(first["images"][0]["reference"], env.image.as_str());
    let second = created(
        &ferry(
            dir,
            &["backup", "create", "t", "--insecure", "--output", "json"],
        )
        .await,
    );
    assert_eq!(second["blobs_uploaded"], 0, "{second}");
    assert_eq!(second["blobs_reused"], 3, "{second}");
    let (id1, id2) = (
        first["id"].as_str().unwrap().to_string(),
        second["id"].as_str().unwrap().to_string(),
    );

    let store = dir.join(".ferry/backups/demo/t");
    assert_no_plaintext_secret(&store);
    let blobs: Vec<PathBuf> = files(&store.join("blobs/sha256"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    assert_eq!(blobs.len(), 3, "content-addressed, stored once: {blobs:?}");

    // The archive opens with age, zstd and tar alone; objects are plain JSON, the Namespace
    // and a release record among them.
    let archive = store.join(format!("backups/{id2}.tar.zst.age"));
    let tar = open_with_tools(&archive, &env.identity);
    let listing = String::from_utf8(tool("tar", &["-t"], Some(&tar))).unwrap();
    let ns_entry = format!("objects/core/Namespace/{}.json", env.ns.name());
    for wanted in [
        ns_entry.as_str(),
        "objects/apps/Deployment/demo-web.json",
        "objects/core/Secret/ferry.release.demo.t.v1.json",
        "manifest.json",
        "manifest.mac.json",
    ] {
        assert!(
            listing.lines().any(|l| l == wanted),
            "{wanted} in\n{listing}"
        );
    }
    assert!(
        !listing.contains("/Pod/") && !listing.contains("EndpointSlice"),
        "{listing}"
    );
    let deployment: Value = serde_json::from_slice(&tool(
        "tar",
        &["-xO", "objects/apps/Deployment/demo-web.json"],
        Some(&tar),
    ))
    .unwrap();
    assert!(deployment["metadata"].get("uid").is_none(), "{deployment}");
    assert!(deployment.get("status").is_none(), "{deployment}");

    // list: both, unverified; verify with the identity passes and is recorded.
    let list = ferry(dir, &["backup", "list", "t", "--output", "json"]).await;
    list.assert_code(0, "list");
    let listed: Value = serde_json::from_str(&list.stdout).unwrap();
    let rows = listed["backups"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0]["id"], id1.as_str());
    assert_eq!(rows[0]["verified"], Value::Null);
    assert_eq!(rows[0]["images"], 1);
    let identity = env.identity.display().to_string();
    ferry(
        dir,
        &[
            "backup",
            "verify",
            "t",
            "--id",
            &id1,
            "--identity",
            &identity,
        ],
    )
    .await
    .assert_code(0, "verify with identity");
    let checksums = ferry(dir, &["backup", "verify", "t"]).await;
    checksums.assert_code(0, "verify checksums only");
    assert!(
        checksums.stderr.contains("no identity"),
        "{}",
        checksums.stderr
    );

    // A wrong identity is a clear error, exit 2.
    let other = dir.join("other-key.txt");
    ferry(
        dir,
        &["backup", "keygen", "-o", &other.display().to_string()],
    )
    .await
    .assert_code(0, "second keygen");
    let wrong = ferry(
        dir,
        &[
            "backup",
            "verify",
            "t",
            "--identity",
            &other.display().to_string(),
        ],
    )
    .await;
    wrong.assert_code(2, "wrong identity");
    assert!(
        wrong.stderr.contains("the identity cannot decrypt backup")
            && wrong.stderr.contains("encrypted to other recipients"),
        "{}",
        wrong.stderr
    );

    // Tampering, each detected by verify with exit 1, naming the entry. Done with the
    // identity (a stronger attacker than the threat model's) and the command-line tools.
    let original = std::fs::read(&archive).unwrap();
    let entries: Vec<String> = listing.lines().map(str::to_string).collect();
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    tool(
        "tar",
        &["-x", "-C", &unpacked.display().to_string()],
        Some(&tar),
    );
    let retar = |names: &[String]| {
        let mut args = vec![
            "-c".to_string(),
            "-C".to_string(),
            unpacked.display().to_string(),
        ];
        args.extend(names.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool("tar", &args, None)
    };
    let verify_named = |label: &'static str, bytes: Vec<u8>, entry: String| {
        let archive = archive.clone();
        let identity = identity.clone();
        let id2 = id2.clone();
        async move {
            std::fs::remove_file(&archive).unwrap();
            std::fs::write(&archive, bytes).unwrap();
            let run = ferry(
                dir,
                &[
                    "backup",
                    "verify",
                    "t",
                    "--id",
                    &id2,
                    "--identity",
                    &identity,
                ],
            )
            .await;
            run.assert_code(1, label);
            assert!(
                run.stderr.contains(&entry),
                "{label}: {entry} not named in\n{}",
                run.stderr
            );
        }
    };
    // 1. One byte of one object flipped.
    let victim = unpacked.join("objects/apps/Deployment/demo-web.json");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    verify_named(
        "flipped byte",
        seal_with_tools(&retar(&entries), &env.recipient),
        "objects/apps/Deployment/demo-web.json: content does not match the manifest".into(),
    )
    .await;
    bytes[3] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    // 2. One entry deleted.
    let without: Vec<String> = entries
        .iter()
        .filter(|e| !e.ends_with("ConfigMap/demo-web-config.json"))
        .cloned()
        .collect();
    verify_named(
        "deleted entry",
        seal_with_tools(&retar(&without), &env.recipient),
        "objects/core/ConfigMap/demo-web-config.json: listed in the manifest but missing".into(),
    )
    .await;
    // 3. One entry appended.
    std::fs::create_dir_all(unpacked.join("objects/core/Secret")).unwrap();
    std::fs::write(unpacked.join("objects/core/Secret/planted.json"), "{}").unwrap();
    let mut with = entries.clone();
    with.push("objects/core/Secret/planted.json".into());
    verify_named(
        "appended entry",
        seal_with_tools(&retar(&with), &env.recipient),
        "objects/core/Secret/planted.json: not listed in the manifest".into(),
    )
    .await;
    // 4. One byte of the ciphertext flipped: checksum and decryption both fail, by name.
    let mut flipped = original.clone();
    let n = flipped.len();
    flipped[n - 30] ^= 0x20;
    verify_named(
        "flipped ciphertext byte",
        flipped,
        format!("backups/{id2}.tar.zst.age: failed to decrypt"),
    )
    .await;
    std::fs::remove_file(&archive).unwrap();
    std::fs::write(&archive, &original).unwrap();
    ferry(
        dir,
        &[
            "backup",
            "verify",
            "t",
            "--id",
            &id2,
            "--identity",
            &identity,
        ],
    )
    .await
    .assert_code(0, "restored archive verifies");

    // Prune with keepDaily 1, keepWeekly 0, after a third, unverified backup.
    let third = created(
        &ferry(
            dir,
            &["backup", "create", "t", "--insecure", "--output", "json"],
        )
        .await,
    );
    let id3 = third["id"].as_str().unwrap().to_string();
    let pruned = ferry(dir, &["backup", "prune", "t", "--output", "json"]).await;
    pruned.assert_code(0, "prune");
    let pruned: Value = serde_json::from_str(&pruned.stdout).unwrap();
    let kept: Vec<&str> = pruned["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    // id2 was the last verified with the identity (after the restore): kept as the newest
    // verified; id3 is the newest (and today's daily); id1 goes.
    assert_eq!(kept, vec![id3.as_str(), id2.as_str()], "{pruned}");
    assert_eq!(pruned["deleted"], serde_json::json!([id1]), "{pruned}");
    assert_eq!(
        pruned["blobs_deleted"], 0,
        "blobs still referenced: {pruned}"
    );
    assert!(!store.join(format!("backups/{id1}.tar.zst.age")).exists());
    assert_eq!(
        files(&store.join("blobs/sha256"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "age"))
            .count(),
        3
    );
    let list = ferry(dir, &["backup", "list", "t", "--output", "json"]).await;
    let listed: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2, "{listed}");

    // A dropped backup (its index deleted) does not go unnoticed either.
    let index = store.join(format!("backups/{id3}.index.json"));
    let saved = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    let run = ferry(
        dir,
        &["backup", "verify", "t", "--all", "--identity", &identity],
    )
    .await;
    run.assert_code(1, "dropped index");
    assert!(
        run.stderr
            .contains(&format!("backups/{id3}.tar.zst.age has no index")),
        "{}",
        run.stderr
    );
    std::fs::write(&index, saved).unwrap();
}

#[tokio::test]
async fn s3_backups_are_written_once_listed_verified_and_hold_no_plaintext() {
    let s3 = cluster().s3();
    let prefix = unique_name("bk");
    let env = released(
        "bk-s3",
        &format!("  store: s3://{}/{prefix}\n", s3.bucket),
        32 * 1024,
    )
    .await;
    let dir = env.project.path();
    let envs = vec![
        ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("FERRY_AGE_IDENTITY", env.identity.display().to_string()),
    ];
    let args = ["backup", "create", "t", "--insecure", "--output", "json"];
    let first = created(&ferry_env(dir, &args, &envs).await);
    assert_eq!(first["blobs_uploaded"], 3, "{first}");
    assert!(
        first["store"].as_str().unwrap().starts_with("s3://"),
        "{first}"
    );
    let second = created(&ferry_env(dir, &args, &envs).await);
    assert_eq!(
        second["blobs_uploaded"], 0,
        "no blob uploaded again: {second}"
    );

    let list = ferry_env(dir, &["backup", "list", "t", "--output", "json"], &envs).await;
    list.assert_code(0, "list");
    let listed: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2, "{listed}");
    // FERRY_AGE_IDENTITY stands for --identity.
    let verify = ferry_env(dir, &["backup", "verify", "t", "--all"], &envs).await;
    verify.assert_code(0, "verify");
    assert!(
        verify.stderr.contains("manifest authenticated"),
        "{}",
        verify.stderr
    );

    // s3s-fs keeps objects as files under its root: none holds the secret in plaintext.
    let root = Path::new(cluster().var("FERRY_TEST_STATE"))
        .join("s3")
        .join(&s3.bucket)
        .join(&prefix);
    assert_no_plaintext_secret(&root);

    // Without credentials: a clear configuration error, exit 2.
    let bare = ferry(dir, &["backup", "list", "t"]).await;
    bare.assert_code(2, "no S3 credentials");
    assert!(bare.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", bare.stderr);
}

#[tokio::test]
async fn create_without_recipients_refuses_before_touching_anything() {
    let ns = TestNamespace::new("bk-norcpt").await;
    let project = Project::demo(ns.name(), "");
    let run = ferry(project.path(), &["backup", "create", "t"]).await;
    run.assert_code(2, "no recipients");
    assert!(
        run.stderr
            .contains("`backup.recipients` in ferry.yaml lists no age recipient")
            && run.stderr.contains("ferry backup keygen"),
        "{}",
        run.stderr
    );
    assert!(!project.path().join(".ferry").exists());
}

/// Creates a bucket on moto, with Object Lock (and so versioning) when `locked`.
async fn moto_bucket(s3: &crate::support::S3, locked: bool) {
    let (url, headers) = crate::support::sigv4::sign(s3, "PUT", "", &[], b"");
    let mut req = reqwest::Client::new().put(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if locked {
        req = req.header("x-amz-bucket-object-lock-enabled", "true");
    }
    let resp = req
        .send()
        .await
        .expect("moto_server (tests/cluster/up starts it)");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
}

fn s3_env(s3: &crate::support::S3) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", s3.endpoint.clone()),
        ("AWS_REGION", s3.region.clone()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
    ]
}

fn probe_json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("probe JSON: {e}\n{}\n{}", run.stdout, run.stderr))
}

#[tokio::test]
async fn object_lock_is_probed_never_assumed_and_set_on_every_backup_file() {
    let locked = cluster().moto(&unique_name("locked"));
    let plain = cluster().moto(&unique_name("plain"));
    moto_bucket(&locked, true).await;
    moto_bucket(&plain, false).await;
    let env = released(
        "bk-lock",
        &format!("  store: s3://{}/p\n  retention: 1d\n", locked.bucket),
        16 * 1024,
    )
    .await;
    let dir = env.project.path();

    // moto enforces the lock: the probe says so (exit 0).
    let probe = ferry_env(
        dir,
        &["backup", "probe", "t", "--output", "json"],
        &s3_env(&locked),
    )
    .await;
    probe.assert_code(0, "probe of a locked bucket");
    let p = probe_json(&probe);
    assert_eq!(p["enforced"], true, "{p}");
    assert_eq!(p["delete_refused"], true, "{p}");
    assert_eq!(p["overwrite_preserved"], true, "{p}");
    assert_eq!(p["lock"]["enabled"], true, "{p}");

    // Every file of a backup carries COMPLIANCE retention; prune keeps locked backups.
    let backup = created(
        &ferry_env(
            dir,
            &["backup", "create", "t", "--insecure", "--output", "json"],
            &s3_env(&locked),
        )
        .await,
    );
    let id = backup["id"].as_str().unwrap();
    for key in [
        format!("p/demo/t/backups/{id}.tar.zst.age"),
        format!("p/demo/t/backups/{id}.index.json"),
    ] {
        let (url, headers) = crate::support::sigv4::sign(&locked, "HEAD", &key, &[], b"");
        let mut req = reqwest::Client::new().head(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("x-amz-object-lock-mode")
                .map(|v| v.to_str().unwrap()),
            Some("COMPLIANCE"),
            "{key}: {:?}",
            resp.headers()
        );
        assert!(
            resp.headers()
                .contains_key("x-amz-object-lock-retain-until-date")
        );
    }
    let pruned = ferry_env(
        dir,
        &["backup", "prune", "t", "--output", "json"],
        &s3_env(&locked),
    )
    .await;
    pruned.assert_code(0, "prune");
    let pruned: Value = serde_json::from_str(&pruned.stdout).unwrap();
    assert_eq!(pruned["deleted"], serde_json::json!([]), "{pruned}");
    assert!(
        pruned["kept"][0]["reasons"]
            .as_array()
            .unwrap()
            .contains(&"locked".into()),
        "{pruned}"
    );

    // A bucket without Object Lock: the probe says not enforced (exit 1), and a backup with
    // `backup.retention` is refused before anything is written (exit 2).
    let yaml = std::fs::read_to_string(dir.join("ferry.yaml")).unwrap();
    env.project.write(
        "ferry.yaml",
        &yaml.replace(
            &format!("s3://{}/p", locked.bucket),
            &format!("s3://{}/p", plain.bucket),
        ),
    );
    let probe = ferry_env(
        dir,
        &["backup", "probe", "t", "--output", "json"],
        &s3_env(&plain),
    )
    .await;
    probe.assert_code(1, "probe of a plain bucket");
    let p = probe_json(&probe);
    assert_eq!(p["enforced"], false, "{p}");
    assert_eq!(p["delete_refused"], false, "{p}");
    let refused = ferry_env(
        dir,
        &["backup", "create", "t", "--insecure"],
        &s3_env(&plain),
    )
    .await;
    refused.assert_code(2, "retention without a lock");
    assert!(
        refused.stderr.contains("does not have Object Lock enabled"),
        "{}",
        refused.stderr
    );

    // s3s-fs, the stack's fast S3 server: accepts lock headers silently, enforces nothing.
    let s3 = cluster().s3();
    let yaml = std::fs::read_to_string(dir.join("ferry.yaml")).unwrap();
    env.project.write(
        "ferry.yaml",
        &yaml.replace(
            &format!("s3://{}/p", plain.bucket),
            &format!("s3://{}/{}", s3.bucket, unique_name("probe")),
        ),
    );
    let probe = ferry_env(
        dir,
        &["backup", "probe", "t", "--output", "json"],
        &s3_env(&s3),
    )
    .await;
    probe.assert_code(1, "probe of s3s-fs");
    let p = probe_json(&probe);
    assert_eq!(p["enforced"], false, "{p}");
    assert_eq!(p["lock"]["unsupported"], true, "{p}");

    // The directory store: never enforced.
    env.project.write(
        "ferry.yaml",
        &yaml.replace(
            &format!("  store: s3://{}/p\n  retention: 1d\n", plain.bucket),
            "",
        ),
    );
    let probe = ferry(dir, &["backup", "probe", "t"]).await;
    probe.assert_code(1, "probe of a directory");
    assert!(
        probe.stderr.contains("object lock not enforced"),
        "{}",
        probe.stderr
    );
}
