//! Issue 6: reproducible, hardened OCI images built and pushed by `ferry image`, checked by
//! independent tools (skopeo, umoci) and real registries (Debian's docker-registry, the
//! distribution 2.8 server): the stack's anonymous registry, plus registries this module
//! starts itself with htpasswd (basic) and token auth (a small token server below).
//!
//! Without the stack's registry the tests fail with the command that starts it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ferry::image::Layout;
use ferry::image::oci::{self, Platform};
use ferry::registry::{
    Blob, BlobAction, Client, ClientOptions, CredentialFiles, NoProgress, PushRequest,
};
use serde_json::{Value, json};

use crate::support::{cluster, unique_name};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A small project with one image built from a pretend binary and a static tree.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// Writes the project under `umask` (the files get the modes a user with that umask
    /// would get), for an image pushed to `repository`.
    fn new(repository: &str, umask: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = tempfile::tempdir().expect("tempdir");
        let t = template.path();
        std::fs::create_dir_all(t.join("bin")).expect("mkdir");
        std::fs::create_dir_all(t.join("static/css")).expect("mkdir");
        std::fs::write(
            t.join("bin/app"),
            b"\x7fELF not really, but bytes all the same\n",
        )
        .expect("write");
        std::fs::write(t.join("static/index.html"), b"<h1>hello</h1>\n").expect("write");
        std::fs::write(t.join("static/css/site.css"), b"h1 { color: teal }\n").expect("write");
        std::fs::write(
            t.join("ferry.yaml"),
            format!(
                "app: imgtest\nimages:\n  app:\n    repository: {repository}\n    tag: v1\n    files:\n      - {{source: bin/app, target: /app/app, mode: \"0555\"}}\n      - {{source: static, target: /app/static}}\n    entrypoint: [/app/app, --port, \"8080\"]\n    writable: [/tmp]\n    ports: [\"8080\"]\n    env: {{LOG: info}}\n    caBundle: true\n"
            ),
        )
        .expect("write");
        // cp without -p creates files with the umask applied, as a checkout would.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && cp -r \"$0\"/. \"$1\"/"))
            .arg(t)
            .arg(dir.path())
            .status()
            .expect("sh");
        assert!(status.success());
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn layout(&self) -> Layout {
        Layout::open(&self.path().join("target/ferry/images/app")).expect("layout")
    }
}

/// Runs ferry in `project` with a clean environment (its own HOME, no docker config unless
/// `docker_config` is given), under `umask`.
fn ferry(project: &Path, umask: &str, docker_config: Option<&Path>, args: &[&str]) -> Output {
    let home = project.join(".home");
    std::fs::create_dir_all(&home).expect("home");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(project)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home);
    if let Some(dir) = docker_config {
        cmd.env("DOCKER_CONFIG", dir);
    }
    cmd.output().expect("run ferry")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "ferry failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn tool(name: &str, args: &[&str]) -> Output {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name} is missing ({e}): run tests/cluster/build, which installs it")
    });
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn two_builds_in_different_directories_and_umasks_give_one_digest_accepted_by_skopeo_and_umoci() {
    let repo = format!(
        "{}/ferry-test/{}",
        cluster().registry(),
        unique_name("repro")
    );
    let (a, b) = (Project::new(&repo, "022"), Project::new(&repo, "077"));
    let mode = |p: &Project| std::fs::metadata(p.path().join("static/index.html")).expect("stat");
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        mode(&a).permissions().mode(),
        mode(&b).permissions().mode(),
        "the umasks differ"
    );

    let first = json_of(&ferry(
        a.path(),
        "022",
        None,
        &["image", "build", "--output", "json"],
    ));
    let second = json_of(&ferry(
        b.path(),
        "077",
        None,
        &["image", "build", "--verify", "--output", "json"],
    ));
    let digest = first["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(second["images"][0]["digest"], digest.as_str());
    assert_eq!(second["images"][0]["verify"]["reproducible"], true);
    assert_eq!(first["images"][0]["findings"], json!([]));

    // The lock pins render/release to this digest, in ferry.yaml's repository (a build
    // pushes nothing).
    let lock: Value = serde_json::from_slice(
        &std::fs::read(a.path().join("target/ferry/images.lock")).expect("lock"),
    )
    .expect("lock JSON");
    assert_eq!(
        lock["app"],
        json!({"repository": repo, "pushed": repo, "digest": digest})
    );

    // Independent checkers accept the layout and agree on the digest.
    let layout = a.path().join("target/ferry/images/app");
    let stat = tool(
        "umoci",
        &["stat", "--image", &format!("{}:v1", layout.display())],
    );
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(stat.contains("ferry: application files"), "{stat}");
    let inspect: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &["inspect", &format!("oci:{}:v1", layout.display())],
        )
        .stdout,
    )
    .expect("skopeo JSON");
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Created"], "1970-01-01T00:00:00Z");
    let config: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}:v1", layout.display()),
            ],
        )
        .stdout,
    )
    .expect("skopeo config JSON");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/app/app", "--port", "8080"])
    );

    // umoci unpacks it as a rootfs with the declared ownership and modes.
    let bundle = tempfile::tempdir().expect("tempdir");
    let unpacked = bundle.path().join("bundle");
    tool(
        "umoci",
        &[
            "raw",
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:v1", layout.display()),
            &unpacked.display().to_string(),
        ],
    );
    let app = std::fs::metadata(unpacked.join("app/app")).expect("unpacked app");
    assert_eq!(app.permissions().mode() & 0o7777, 0o555);
    let tmp = std::fs::metadata(unpacked.join("tmp")).expect("unpacked tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert!(unpacked.join("etc/ssl/certs/ca-certificates.crt").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_round_trips_byte_identical_and_a_second_push_uploads_nothing() {
    let registry = cluster().registry().to_string();
    let repo = format!("ferry-test/{}", unique_name("roundtrip"));
    let project = Project::new(&format!("{registry}/{repo}"), "022");
    let push = |p: &Path| {
        ferry(
            p,
            "022",
            None,
            &["image", "push", "--insecure", "--output", "json"],
        )
    };

    let first = json_of(&push(project.path()));
    let image = &first["images"][0];
    let digest = image["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    assert_eq!(
        image["push"]["reference"],
        format!("{registry}/{repo}@{digest}").as_str()
    );
    assert_eq!(image["push"]["manifest_existed"], false);
    assert!(
        image["push"]["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .all(|b| b["action"] == "uploaded")
    );
    let vias: Vec<&str> = image["push"]["referrers"]
        .as_array()
        .expect("referrers")
        .iter()
        .filter_map(|r| r["via"].as_str())
        .collect();
    assert_eq!(
        vias,
        ["tag-schema", "tag-schema"],
        "distribution 2.8 has no referrers API"
    );
    assert_eq!(image["push"]["warnings"], json!([]));

    // Pull it back through the library into a fresh layout: every blob is byte-identical.
    let pulled_dir = tempfile::tempdir().expect("tempdir");
    let pulled = Layout::create(pulled_dir.path()).expect("layout");
    let client = Client::new(
        &registry,
        ClientOptions {
            insecure: true,
            credentials: CredentialFiles::default(),
            ..ClientOptions::default()
        },
    )
    .expect("client");
    let result = client
        .pull(
            &repo,
            "v1",
            &Platform::parse("linux/amd64").expect("platform"),
            &pulled,
        )
        .await
        .expect("pull");
    assert_eq!(result.manifest.digest, digest);
    let original = project.layout();
    let mut digests = vec![digest.clone(), result.config.clone()];
    digests.extend(result.layers.iter().map(|l| l.digest.clone()));
    for d in &digests {
        assert_eq!(
            std::fs::read(pulled.blob_path(d)).expect("pulled blob"),
            std::fs::read(original.blob_path(d)).expect("original blob"),
            "blob {d}"
        );
    }

    // skopeo sees the same digest, and the SBOMs hang off the tag-schema fallback tag.
    let inspect: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{registry}/{repo}:v1"),
            ],
        )
        .stdout,
    )
    .expect("skopeo JSON");
    assert_eq!(inspect["Digest"], digest.as_str());
    let (index, _, _) = client
        .fetch_manifest(&repo, &format!("sha256-{}", oci::digest_hex(&digest)))
        .await
        .expect("referrers index");
    let index: Value = serde_json::from_slice(&index).expect("index JSON");
    let types: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["artifactType"].as_str())
        .collect();
    assert_eq!(types, [oci::SPDX_JSON, oci::CYCLONEDX_JSON]);

    // A second push of the unchanged image uploads no blob and does not rebuild.
    let second = json_of(&push(project.path()));
    let again = &second["images"][0];
    assert_eq!(again["build"]["reused"], true);
    assert_eq!(again["push"]["manifest_existed"], true);
    assert_eq!(again["push"]["bytes_uploaded"], 0);
    assert!(
        again["push"]["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .all(|b| b["action"] == "existed")
    );
    assert!(
        again["push"]["referrers"]
            .as_array()
            .expect("referrers")
            .iter()
            .all(|r| r["via"] == "existed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_uploads_and_cross_repository_mounts_work_against_distribution() {
    let registry = cluster().registry().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::create(dir.path()).expect("layout");
    let blob_bytes: Vec<u8> = (0..(3 << 20) + 12345)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let blob = layout
        .write_blob(oci::LAYER_TAR, &blob_bytes)
        .expect("blob");
    let config = layout
        .write_blob(
            oci::CONFIG,
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .expect("config");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": oci::MANIFEST, "config": config, "layers": [blob],
    }))
    .expect("manifest");
    let blobs = vec![
        Blob {
            digest: blob.digest.clone(),
            size: blob.size,
            path: layout.blob_path(&blob.digest),
        },
        Blob {
            digest: config.digest.clone(),
            size: config.size,
            path: layout.blob_path(&config.digest),
        },
    ];
    let request = |repository: &str, mount_from: Vec<String>| PushRequest {
        repository: repository.to_string(),
        tag: Some("v1".into()),
        manifest: manifest.clone().into(),
        media_type: oci::MANIFEST.into(),
        digest: oci::sha256_digest(&manifest),
        blobs: blobs.clone(),
        mount_from,
        referrers: Vec::new(),
    };
    let chunked = Client::new(
        &registry,
        ClientOptions {
            insecure: true,
            credentials: CredentialFiles::default(),
            monolithic_limit: 1 << 20,
            chunk_size: 1 << 20,
            ..ClientOptions::default()
        },
    )
    .expect("client");
    let first = unique_name("ferry-test/chunked");
    let outcome = chunked
        .push(&request(&first, Vec::new()), &NoProgress)
        .await
        .expect("chunked push");
    assert_eq!(
        outcome.blobs[0].action,
        BlobAction::UploadedChunked { chunks: 4 }
    );
    assert_eq!(outcome.blobs[1].action, BlobAction::Uploaded);

    let second = unique_name("ferry-test/mounted");
    let outcome = chunked
        .push(&request(&second, vec![first.clone()]), &NoProgress)
        .await
        .expect("mounted push");
    assert!(
        outcome.blobs.iter().all(|b| b.action
            == BlobAction::Mounted {
                from: first.clone()
            }),
        "{:?}",
        outcome.blobs
    );
    assert_eq!(outcome.bytes_uploaded, 0);

    let pulled_dir = tempfile::tempdir().expect("tempdir");
    let pulled = Layout::create(pulled_dir.path()).expect("layout");
    chunked
        .pull(
            &second,
            "v1",
            &Platform::parse("linux/amd64").expect("platform"),
            &pulled,
        )
        .await
        .expect("pull");
    assert_eq!(
        std::fs::read(pulled.blob_path(&blob.digest)).expect("pulled"),
        blob_bytes
    );
}

// ---------------------------------------------------------------------------------------------
// Registries with authentication, started by the tests.
// ---------------------------------------------------------------------------------------------

/// A docker-registry process of one test, stopped when dropped.
struct OwnRegistry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl OwnRegistry {
    /// Starts a registry with `auth` (a YAML `auth:` mapping body) on 127.0.0.1.
    fn start(auth: &str, dir: tempfile::TempDir) -> OwnRegistry {
        let config = dir.path().join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:0, secret: test-only}}\nauth:\n{auth}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "docker-registry is missing ({e}): run tests/cluster/build, which installs it"
                )
            });
        let mut registry = OwnRegistry {
            child,
            addr: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(registry.dir.path().join("registry.log"))
                .unwrap_or_default();
            if let Some(port) = log.split("listening on 127.0.0.1:").nth(1) {
                let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                registry.addr = format!("127.0.0.1:{port}");
                return registry;
            }
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Lines of the registry's log that record requests with `method` to `path_part`.
    fn requests(&self, method: &str, path_part: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains(&format!("http.request.method={method}"))
                    && l.contains(path_part)
                    && l.contains("response completed")
            })
            .count()
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A docker config dir with `auths` for `registry`.
fn docker_config(registry: &str, user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = B64.encode(format!("{user}:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {registry: {"auth": auth}}}).to_string(),
    )
    .expect("config.json");
    dir
}

fn htpasswd_registry() -> OwnRegistry {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = bcrypt::hash("right-password", 4).expect("bcrypt");
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).expect("htpasswd");
    let auth = format!(
        "  htpasswd: {{realm: test-realm, path: {}}}",
        dir.path().join("htpasswd").display()
    );
    OwnRegistry::start(&auth, dir)
}

#[test]
fn a_basic_auth_registry_takes_docker_config_credentials_and_refuses_a_wrong_password_clearly() {
    let registry = htpasswd_registry();
    let project = Project::new(&format!("{}/team/app", registry.addr), "022");
    let good = docker_config(&registry.addr, "alice", "right-password");
    let out = json_of(&ferry(
        project.path(),
        "022",
        Some(good.path()),
        &["image", "push", "--insecure", "--output", "json"],
    ));
    assert_eq!(out["images"][0]["push"]["manifest_existed"], false);
    let uploads = registry.requests("PUT", "/v2/team/app/blobs/uploads/");
    assert!(uploads >= 4, "the blobs went up ({uploads} PUTs)");

    // Unchanged: nothing is uploaded the second time (the registry's own log says so).
    let again = json_of(&ferry(
        project.path(),
        "022",
        Some(good.path()),
        &["image", "push", "--insecure", "--output", "json"],
    ));
    assert_eq!(again["images"][0]["push"]["bytes_uploaded"], 0);
    assert_eq!(
        registry.requests("PUT", "/v2/team/app/blobs/uploads/"),
        uploads
    );
    assert_eq!(
        registry.requests("POST", "/v2/team/app/blobs/uploads/"),
        uploads
    );

    let bad = docker_config(&registry.addr, "alice", "wrong-password");
    let out = ferry(
        project.path(),
        "022",
        Some(bad.path()),
        &["image", "push", "--insecure"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("registry {} refused access to team/app (scope repository:team/app:pull,push): credentials rejected", registry.addr)),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the credentials came from"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-password"),
        "the password never shows: {stderr}"
    );

    let none = tempfile::tempdir().expect("tempdir");
    let out = ferry(
        project.path(),
        "022",
        Some(none.path()),
        &["image", "push", "--insecure"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("authentication required and no credentials found"),
        "{stderr}"
    );
}

/// A token server for distribution's token auth: checks Basic credentials, answers an ES256
/// JWT for the scopes asked, signed by a key whose self-signed certificate the registry trusts.
struct TokenServer {
    addr: String,
}

impl TokenServer {
    fn start(dir: &Path, user: &'static str, password: &'static str) -> (TokenServer, PathBuf) {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let status = Command::new("sh")
            .arg("-c")
            .arg("openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out \"$0\" && openssl req -x509 -new -key \"$0\" -subj /CN=ferry-test-token -days 2 -out \"$1\" 2>/dev/null")
            .arg(&key)
            .arg(&cert)
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl failed");
        let pem = std::fs::read_to_string(&key).expect("key");
        use p256::pkcs8::DecodePrivateKey;
        let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).expect("EC key");
        let cert_pem = std::fs::read_to_string(&cert).expect("cert");
        let der_b64: String = cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &signing, &der_b64, user, password);
            }
        });
        (TokenServer { addr }, cert)
    }
}

fn answer(
    mut stream: std::net::TcpStream,
    key: &p256::ecdsa::SigningKey,
    x5c: &str,
    user: &str,
    password: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut authorization = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = v.trim().to_string();
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            } else {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(("scope", v)) = pair.split_once('=') {
            scopes.push(decode(v));
        }
    }
    let expected = format!("Basic {}", B64.encode(format!("{user}:{password}")));
    if authorization != expected {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        return write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    let access: Vec<Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [x5c]});
    let claims = json!({
        "iss": "test-issuer", "sub": user, "aud": "test-registry", "exp": now + 300, "nbf": now - 10,
        "iat": now, "jti": unique_name("jti"), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    use p256::ecdsa::signature::Signer;
    let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", B64URL.encode(signature.to_bytes()));
    let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    Ok(())
}

#[test]
fn a_token_auth_registry_works_with_a_credential_helper_and_refuses_a_wrong_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (token, cert) = TokenServer::start(dir.path(), "bob", "token-password");
    let auth = format!(
        "  token: {{realm: \"http://{}/token\", service: test-registry, issuer: test-issuer, rootcertbundle: {}}}",
        token.addr,
        cert.display()
    );
    let registry = OwnRegistry::start(&auth, dir);
    let project = Project::new(&format!("{}/team/tokened", registry.addr), "022");

    // Credentials from a credential helper on PATH, named by credHelpers.
    let helpers = tempfile::tempdir().expect("tempdir");
    let helper = helpers.path().join("docker-credential-ferrytest");
    std::fs::write(&helper, "#!/bin/sh\nread host\necho '{\"ServerURL\":\"'\"$host\"'\",\"Username\":\"bob\",\"Secret\":\"token-password\"}'\n").expect("helper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        config.path().join("config.json"),
        json!({"credHelpers": {registry.addr.clone(): "ferrytest"}}).to_string(),
    )
    .expect("config");
    let path = format!(
        "{}:{}",
        helpers.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |config: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.args(["image", "push", "--insecure", "--output", "json"])
            .current_dir(project.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", project.path())
            .env("DOCKER_CONFIG", config);
        cmd.output().expect("ferry")
    };
    let out = json_of(&run(config.path()));
    let digest = out["images"][0]["build"]["digest"]
        .as_str()
        .expect("digest");
    assert_eq!(out["images"][0]["push"]["manifest_existed"], false);
    let inspect: Value = serde_json::from_slice(
        &tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--creds",
                "bob:token-password",
                &format!("docker://{}/team/tokened:v1", registry.addr),
            ],
        )
        .stdout,
    )
    .expect("skopeo JSON");
    assert_eq!(inspect["Digest"], digest);

    let wrong = docker_config(&registry.addr, "bob", "not-the-password");
    let out = run(wrong.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("registry {} refused access to team/tokened (scope repository:team/tokened:pull,push): credentials rejected", registry.addr)),
        "{stderr}"
    );
}

#[test]
fn hardening_errors_stop_the_build_and_keep_the_previous_layout() {
    let project = Project::new("registry.invalid/x/app", "022");
    let first = json_of(&ferry(
        project.path(),
        "022",
        None,
        &["image", "build", "--output", "json"],
    ));
    let good = first["images"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let yaml = std::fs::read_to_string(project.path().join("ferry.yaml")).expect("yaml");
    std::fs::write(
        project.path().join("ferry.yaml"),
        yaml.replace("mode: \"0555\"", "mode: \"4755\"") + "    user: 0\n",
    )
    .expect("yaml");
    let out = ferry(project.path(), "022", None, &["image", "build"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error[IMG-NO-SETUID] Image app: /app/app has the setuid or setgid bit (mode 4755)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("error[IMG-NUMERIC-USER]"), "{stderr}");
    assert_eq!(
        project.layout().image(Some("v1")).expect("image").digest,
        good,
        "layout untouched"
    );
}

/// `ferry image push web --registry R` records where the image really went, and `ferry render`
/// pins the workload to it on R, by digest (not to ferry.yaml's `localhost:5000`).
#[tokio::test]
async fn render_pins_the_image_to_the_registry_it_was_pushed_to() {
    use crate::support::project::{Project as Demo, ferry as ferry_cmd};
    let registry = cluster().registry().to_string();
    let path = format!("ferry-test/{}/web", unique_name("pushed"));
    let demo = Demo::demo("render-only", "");
    let yaml = std::fs::read_to_string(demo.path().join("ferry.yaml")).expect("ferry.yaml");
    let from = "repository: localhost:5000/demo/web\n";
    assert!(yaml.contains(from), "the demo's image moved");
    demo.write(
        "ferry.yaml",
        &yaml.replace(from, &format!("repository: localhost:5000/{path}\n")),
    );
    // The demo's binary (demo/web/build makes the real one): any bytes pack into an image.
    demo.write("demo/web/dist/web", "\x7fELF a pretend demo server\n");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    demo.write(
        "demo/web/Cargo.lock",
        &std::fs::read_to_string(root.join("demo/web/Cargo.lock")).expect("demo Cargo.lock"),
    );

    let push = ferry_cmd(
        demo.path(),
        &[
            "image",
            "push",
            "web",
            "--registry",
            &registry,
            "--insecure",
            "--output",
            "json",
        ],
    )
    .await;
    push.assert_code(0, "image push");
    let pushed: Value = serde_json::from_str(&push.stdout).expect("push JSON");
    let digest = pushed["images"][0]["build"]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let pinned = format!("{registry}/{path}@{digest}");
    assert_eq!(pushed["images"][0]["push"]["reference"], pinned.as_str());
    let lock: Value = serde_json::from_slice(
        &std::fs::read(demo.path().join("target/ferry/images.lock")).expect("lock"),
    )
    .expect("lock JSON");
    assert_eq!(
        lock["web"],
        json!({
            "repository": format!("localhost:5000/{path}"),
            "pushed": format!("{registry}/{path}"),
            "digest": digest,
        })
    );

    let render = ferry_cmd(demo.path(), &["render", "staging"]).await;
    render.assert_code(0, "render");
    assert!(
        render.stdout.contains(&format!("image: {pinned}\n")),
        "{}",
        render.stdout
    );
    assert!(
        !render.stdout.contains("localhost:5000"),
        "{}",
        render.stdout
    );

    // The registry render names holds that manifest.
    let client = Client::new(
        &registry,
        ClientOptions {
            insecure: true,
            credentials: CredentialFiles::default(),
            ..ClientOptions::default()
        },
    )
    .expect("client");
    let (_, _, fetched) = client
        .fetch_manifest(&path, &digest)
        .await
        .expect("the pinned manifest is on the registry");
    assert_eq!(fetched, digest);
}
