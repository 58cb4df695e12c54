//! Image hardening checks, the I-rules of reference/images.md §9.1, as pure functions over
//! what an image contains: its config, its manifest annotations and its merged filesystem.
//!
//! They run on every `ferry image build` (errors stop the build) and in `ferry lint` (over
//! the layouts already built). Findings reuse [`crate::policy::Finding`], with the image as
//! a pseudo-object of kind `Image`, so people and pipelines read one format.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::plan::CA_BUNDLE_PATH;
use crate::object::ObjectRef;
use crate::policy::{Finding, Severity};

/// The pseudo `apiVersion` of image findings.
pub const IMAGE_API_VERSION: &str = "ferry.dev/v1";

/// One path of an image's merged filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// Absolute path.
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink` or another type.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Names of PAX records (xattrs).
    pub pax: Vec<String>,
    /// The first bytes of a file's content (up to 64 KiB).
    pub head: Vec<u8>,
}

/// What was declared in `ferry.yaml`, to check the image against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// Writable paths (absolute).
    pub writable: BTreeSet<String>,
    /// A CA bundle was asked for.
    pub ca_bundle: bool,
    /// tzdata was asked for.
    pub tzdata: bool,
    /// The base image reference, if any.
    pub base: Option<String>,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// The image's name in `ferry.yaml`.
    pub name: String,
    /// The image config JSON.
    pub config: Value,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The merged filesystem, by absolute path.
    pub fs: BTreeMap<String, FsEntry>,
    /// The declarations.
    pub declared: Declared,
}

/// An I-rule.
#[derive(Debug, Clone, Copy)]
pub struct ImageRule {
    /// Stable ID.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// What it requires.
    pub summary: &'static str,
    check: fn(&ImageFacts, &mut Vec<(String, String, String)>),
}

/// The catalogue, in reference order (I1…I12).
pub static RULES: [ImageRule; 10] = [
    ImageRule {
        id: "IMG-NUMERIC-USER",
        severity: Severity::Error,
        summary: "I1: config.User is numeric uid:gid, both non-zero",
        check: numeric_user,
    },
    ImageRule {
        id: "IMG-NO-SHELL",
        severity: Severity::Error,
        summary: "I2: no shell or package manager in the image",
        check: no_shell,
    },
    ImageRule {
        id: "IMG-NO-SETUID",
        severity: Severity::Error,
        summary: "I3: no setuid/setgid files; nothing world-writable except a sticky temp dir",
        check: no_setuid,
    },
    ImageRule {
        id: "IMG-OWNERSHIP",
        severity: Severity::Error,
        summary: "I4: files root-owned and not writable by the run user outside declared writable paths",
        check: ownership,
    },
    ImageRule {
        id: "IMG-EXEC-FORM",
        severity: Severity::Error,
        summary: "I5: entrypoint in exec form, an executable in the image, no shell wrapper",
        check: exec_form,
    },
    ImageRule {
        id: "IMG-RUNTIME-DATA",
        severity: Severity::Error,
        summary: "I6: a declared CA bundle is present with SSL_CERT_FILE set; declared tzdata present",
        check: runtime_data,
    },
    ImageRule {
        id: "IMG-PASSWD",
        severity: Severity::Warning,
        summary: "I7: minimal /etc/passwd and /etc/group (root and the run user), nsswitch.conf present",
        check: passwd,
    },
    ImageRule {
        id: "IMG-BASE-DIGEST",
        severity: Severity::Error,
        summary: "I8: a base image is pinned by digest and named in the base annotations",
        check: base_digest,
    },
    ImageRule {
        id: "IMG-NO-SECRETS",
        severity: Severity::Error,
        summary: "I11: no secrets in config Env or files, no .git",
        check: no_secrets,
    },
    ImageRule {
        id: "IMG-NO-CAPABILITIES",
        severity: Severity::Error,
        summary: "I12: no file capabilities (security.capability xattrs)",
        check: no_capabilities,
    },
];

/// Runs every rule.
pub fn check(facts: &ImageFacts) -> Vec<Finding> {
    let object = ObjectRef {
        api_version: IMAGE_API_VERSION.to_string(),
        kind: "Image".to_string(),
        namespace: None,
        name: facts.name.clone(),
    };
    let mut findings = Vec::new();
    for rule in &RULES {
        let mut found = Vec::new();
        (rule.check)(facts, &mut found);
        findings.extend(found.into_iter().map(|(path, message, fix)| Finding {
            rule: rule.id,
            severity: rule.severity,
            object: object.clone(),
            path,
            message,
            fix,
        }));
    }
    findings
}

type Out = Vec<(String, String, String)>;

fn push(
    out: &mut Out,
    path: impl Into<String>,
    message: impl Into<String>,
    fix: impl Into<String>,
) {
    out.push((path.into(), message.into(), fix.into()));
}

fn config_str<'a>(facts: &'a ImageFacts, key: &str) -> Option<&'a str> {
    facts.config.pointer(&format!("/config/{key}"))?.as_str()
}

fn run_ids(facts: &ImageFacts) -> Option<(u64, u64)> {
    let user = config_str(facts, "User")?;
    let (uid, gid) = user.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

fn numeric_user(facts: &ImageFacts, out: &mut Out) {
    let user = config_str(facts, "User").unwrap_or("");
    match run_ids(facts) {
        Some((uid, gid)) if uid != 0 && gid != 0 => {}
        Some(_) => push(
            out,
            "config.User",
            format!("the image runs as root (`{user}`)"),
            "set user and group in ferry.yaml to a non-zero id such as 65532",
        ),
        None => push(
            out,
            "config.User",
            format!(
                "config.User `{user}` is not numeric uid:gid; runAsNonRoot cannot verify a name"
            ),
            "set numeric user and group in ferry.yaml (default 65532)",
        ),
    }
}

/// Shells and package managers, by file name.
const SHELLS: [&str; 18] = [
    "sh", "bash", "ash", "dash", "zsh", "ksh", "csh", "tcsh", "busybox", "apk", "apt", "apt-get",
    "dpkg", "rpm", "yum", "dnf", "microdnf", "pip",
];

fn no_shell(facts: &ImageFacts, out: &mut Out) {
    for entry in facts.fs.values().filter(|e| e.kind != "dir") {
        let name = entry.path.rsplit('/').next().unwrap_or("");
        if SHELLS.contains(&name) || name == "pip3" {
            push(
                out,
                entry.path.clone(),
                format!("{} is a shell or package manager", entry.path),
                "remove it from the image's files (debug with an ephemeral container instead)",
            );
        }
    }
}

fn no_setuid(facts: &ImageFacts, out: &mut Out) {
    for entry in facts.fs.values().filter(|e| e.kind != "symlink") {
        if entry.mode & 0o6000 != 0 {
            push(
                out,
                entry.path.clone(),
                format!(
                    "{} has the setuid or setgid bit (mode {:04o})",
                    entry.path, entry.mode
                ),
                "declare a mode without 4000/2000, e.g. \"0555\"",
            );
        }
        let sticky_dir = entry.kind == "dir" && entry.mode & 0o1000 != 0;
        if entry.mode & 0o002 != 0 && !sticky_dir {
            push(
                out,
                entry.path.clone(),
                format!("{} is world-writable (mode {:04o})", entry.path, entry.mode),
                "declare a mode without the o+w bit; writable paths belong in `writable`",
            );
        }
    }
}

fn under_writable(facts: &ImageFacts, path: &str) -> bool {
    facts
        .declared
        .writable
        .iter()
        .any(|w| path == w || path.starts_with(&format!("{w}/")))
}

fn ownership(facts: &ImageFacts, out: &mut Out) {
    let run = run_ids(facts);
    for entry in facts.fs.values().filter(|e| e.kind != "symlink") {
        if under_writable(facts, &entry.path) {
            continue;
        }
        if entry.uid != 0 || entry.gid != 0 {
            push(
                out,
                entry.path.clone(),
                format!(
                    "{} is owned by {}:{}, not root",
                    entry.path, entry.uid, entry.gid
                ),
                "only declared writable paths may belong to the run user",
            );
        } else if let Some((uid, gid)) = run {
            let writable_by_run = (entry.uid == uid && entry.mode & 0o200 != 0)
                || (entry.gid == gid && entry.mode & 0o020 != 0);
            if writable_by_run {
                push(
                    out,
                    entry.path.clone(),
                    format!("{} is writable by the run user", entry.path),
                    "declare the path in `writable`, or a read-only mode",
                );
            }
        }
    }
    for path in &facts.declared.writable {
        if facts.fs.get(path).is_none_or(|e| e.kind != "dir") {
            push(
                out,
                path.clone(),
                format!("declared writable path {path} is not a directory in the image"),
                "this is a bug in ferry if the image was built by it",
            );
        }
    }
}

fn exec_form(facts: &ImageFacts, out: &mut Out) {
    let entrypoint: Vec<&str> = facts
        .config
        .pointer("/config/Entrypoint")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(program) = entrypoint.first() else {
        push(
            out,
            "config.Entrypoint",
            "the image has no entrypoint",
            "set `entrypoint: [/path/to/program, args…]` in ferry.yaml",
        );
        return;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    if SHELLS.contains(&name) || entrypoint.get(1) == Some(&"-c") {
        push(
            out,
            "config.Entrypoint",
            format!("the entrypoint runs a shell (`{}`)", entrypoint.join(" ")),
            "run the program directly: entrypoint: [/app/program, arg]",
        );
        return;
    }
    let target = resolve(facts, program);
    match target {
        Some(e) if e.kind == "file" && e.mode & 0o111 != 0 => {}
        Some(e) if e.kind == "file" => push(
            out,
            "config.Entrypoint",
            format!(
                "the entrypoint {program} is not executable (mode {:04o})",
                e.mode
            ),
            "give the file mode \"0555\"",
        ),
        _ => push(
            out,
            "config.Entrypoint",
            format!("the entrypoint {program} is not a file in the image"),
            "use the absolute target path of a file listed in `files`",
        ),
    }
}

/// Follows symlinks (up to 8) from an absolute path.
fn resolve<'a>(facts: &'a ImageFacts, path: &str) -> Option<&'a FsEntry> {
    let mut current = path.to_string();
    for _ in 0..8 {
        let entry = facts.fs.get(&current)?;
        if entry.kind != "symlink" {
            return Some(entry);
        }
        let link = String::from_utf8_lossy(&entry.head).into_owned();
        current = if link.starts_with('/') {
            link
        } else {
            let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
            format!("{dir}/{link}")
        };
    }
    None
}

fn runtime_data(facts: &ImageFacts, out: &mut Out) {
    if facts.declared.ca_bundle {
        if facts
            .fs
            .get(CA_BUNDLE_PATH)
            .is_none_or(|e| e.kind != "file")
        {
            push(
                out,
                CA_BUNDLE_PATH,
                "the declared CA bundle is missing",
                "keep caBundle: true and rebuild with ferry",
            );
        }
        let env = env_map(facts);
        match env.get("SSL_CERT_FILE") {
            Some(file) if facts.fs.contains_key(file.as_str()) => {}
            _ => push(
                out,
                "config.Env",
                "SSL_CERT_FILE does not name a file of the image",
                format!("set SSL_CERT_FILE={CA_BUNDLE_PATH} (ferry does unless env overrides it)"),
            ),
        }
    }
    if facts.declared.tzdata && !facts.fs.contains_key("/usr/share/zoneinfo/UTC") {
        push(
            out,
            "/usr/share/zoneinfo",
            "the declared time zone database is missing (no /usr/share/zoneinfo/UTC)",
            "install tzdata on the build machine and rebuild",
        );
    }
}

fn env_map(facts: &ImageFacts) -> BTreeMap<String, String> {
    facts
        .config
        .pointer("/config/Env")
        .and_then(Value::as_array)
        .map(|env| {
            env.iter()
                .filter_map(Value::as_str)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn passwd(facts: &ImageFacts, out: &mut Out) {
    let (uid, gid) = run_ids(facts).unwrap_or((0, 0));
    for (file, id) in [("/etc/passwd", uid), ("/etc/group", gid)] {
        let Some(entry) = facts.fs.get(file) else {
            push(
                out,
                file,
                format!("{file} is missing"),
                "build with ferry, which writes it",
            );
            continue;
        };
        let text = String::from_utf8_lossy(&entry.head);
        // The third field is the uid in passwd and the gid in group.
        let ids: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split(':').nth(2).and_then(|n| n.parse().ok()))
            .collect();
        if !ids.contains(&id) {
            push(
                out,
                file,
                format!("{file} has no entry for the run id {id}"),
                "build with ferry, which writes one",
            );
        }
        if ids.iter().any(|i| *i != 0 && *i != id) {
            push(
                out,
                file,
                format!("{file} lists ids other than root and the run id {id}"),
                "keep only root and the run user",
            );
        }
    }
    if !facts.fs.contains_key("/etc/nsswitch.conf") {
        push(
            out,
            "/etc/nsswitch.conf",
            "/etc/nsswitch.conf is missing (name resolution may skip /etc/hosts)",
            "build with ferry, which writes it",
        );
    }
}

fn base_digest(facts: &ImageFacts, out: &mut Out) {
    let Some(base) = &facts.declared.base else {
        return;
    };
    if !base.contains("@sha256:") {
        push(
            out,
            "base",
            format!("base `{base}` is not pinned by digest"),
            "use repository@sha256:… (see `crane digest` or `skopeo inspect`)",
        );
    }
    for key in [super::oci::BASE_NAME, super::oci::BASE_DIGEST] {
        if !facts.annotations.contains_key(key) {
            push(
                out,
                format!("manifest.annotations.{key}"),
                format!("the manifest lacks {key}"),
                "rebuild with ferry, which records the base",
            );
        }
    }
}

const SECRET_NAMES: [&str; 7] = [
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
];

/// File names that carry credentials or history.
const SECRET_FILES: [&str; 9] = [
    ".git",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ecdsa",
    "id_ed25519",
    ".git-credentials",
];

fn no_secrets(facts: &ImageFacts, out: &mut Out) {
    for (key, value) in env_map(facts) {
        let upper = key.to_ascii_uppercase();
        let named = SECRET_NAMES.iter().any(|s| upper.contains(s)) && !value.is_empty();
        if named || secret_content(value.as_bytes()) {
            push(
                out,
                format!("config.Env.{key}"),
                format!("environment variable {key} looks like a secret (value not shown)"),
                "pass secrets at run time through a Kubernetes Secret ({{secret …}} in templates)",
            );
        }
    }
    for entry in facts.fs.values() {
        let in_git = entry.path.split('/').any(|c| c == ".git");
        let name = entry.path.rsplit('/').next().unwrap_or("");
        if in_git && name == ".git" || (!in_git && SECRET_FILES.contains(&name)) {
            push(
                out,
                entry.path.clone(),
                format!(
                    "{} looks like credentials or repository history",
                    entry.path
                ),
                "do not copy it into the image",
            );
        } else if entry.kind == "file" && secret_content(&entry.head) {
            push(
                out,
                entry.path.clone(),
                format!(
                    "{} contains what looks like a private key or cloud access key",
                    entry.path
                ),
                "do not copy secrets into the image; mount them at run time",
            );
        }
    }
}

/// PEM private keys, AWS access key ids, GitHub and Slack tokens.
fn secret_content(bytes: &[u8]) -> bool {
    let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
    if let Some(at) = find(b"-----BEGIN ") {
        let rest = &bytes[at..bytes.len().min(at + 64)];
        if rest.windows(11).any(|w| w == b"PRIVATE KEY") {
            return true;
        }
    }
    let token_prefixes: [&[u8]; 5] = [b"AKIA", b"ghp_", b"github_pat_", b"xoxb-", b"xoxp-"];
    token_prefixes.iter().any(|prefix| {
        bytes.windows(prefix.len() + 16).any(|w| {
            w.starts_with(prefix)
                && w[prefix.len()..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
                && (prefix != b"AKIA"
                    || w[4..]
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        })
    })
}

fn no_capabilities(facts: &ImageFacts, out: &mut Out) {
    for entry in facts.fs.values() {
        if entry.pax.iter().any(|k| k.ends_with("security.capability")) {
            push(
                out,
                entry.path.clone(),
                format!("{} carries file capabilities", entry.path),
                "drop the capability; bind low ports with NET_BIND_SERVICE in the pod spec if needed",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, kind: &str, mode: u32, uid: u64) -> FsEntry {
        FsEntry {
            path: path.into(),
            kind: kind.into(),
            mode,
            uid,
            gid: uid,
            pax: Vec::new(),
            head: Vec::new(),
        }
    }

    fn text(path: &str, content: &str) -> FsEntry {
        FsEntry {
            head: content.as_bytes().to_vec(),
            ..entry(path, "file", 0o444, 0)
        }
    }

    /// An image that passes every rule.
    fn good() -> ImageFacts {
        let entries = vec![
            entry("/app", "dir", 0o755, 0),
            entry("/app/web", "file", 0o555, 0),
            entry("/etc", "dir", 0o755, 0),
            text(
                "/etc/passwd",
                "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/nonexistent:/sbin/nologin\n",
            ),
            text("/etc/group", "root:x:0:\nnonroot:x:65532:\n"),
            text("/etc/nsswitch.conf", "hosts: files dns\n"),
            entry("/etc/ssl", "dir", 0o755, 0),
            entry("/etc/ssl/certs", "dir", 0o755, 0),
            text(CA_BUNDLE_PATH, "-----BEGIN CERTIFICATE-----\n"),
            entry("/tmp", "dir", 0o1777, 0),
            entry("/var/cache/web", "dir", 0o755, 65532),
            text("/usr/share/zoneinfo/UTC", "TZif"),
        ];
        ImageFacts {
            name: "web".into(),
            config: json!({"config": {
                "User": "65532:65532",
                "Entrypoint": ["/app/web", "--port", "8080"],
                "Env": [format!("SSL_CERT_FILE={CA_BUNDLE_PATH}"), "LOG=info"],
            }}),
            annotations: BTreeMap::from([
                (
                    super::super::oci::BASE_NAME.to_string(),
                    "r/base@sha256:1".to_string(),
                ),
                (
                    super::super::oci::BASE_DIGEST.to_string(),
                    "sha256:1".to_string(),
                ),
            ]),
            fs: entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
            declared: Declared {
                writable: ["/tmp".to_string(), "/var/cache/web".to_string()].into(),
                ca_bundle: true,
                tzdata: true,
                base: Some("r/base@sha256:1".into()),
            },
        }
    }

    fn rules_failing(facts: &ImageFacts) -> Vec<&'static str> {
        let mut ids: Vec<&str> = check(facts).into_iter().map(|f| f.rule).collect();
        ids.dedup();
        ids
    }

    #[test]
    fn a_hardened_image_passes_every_rule() {
        assert_eq!(check(&good()), vec![]);
    }

    fn failing(mutate: impl FnOnce(&mut ImageFacts)) -> Vec<&'static str> {
        let mut facts = good();
        mutate(&mut facts);
        rules_failing(&facts)
    }

    #[test]
    fn i1_user_must_be_numeric_and_non_root() {
        assert_eq!(
            failing(|f| f.config["config"]["User"] = json!("nonroot")),
            ["IMG-NUMERIC-USER", "IMG-PASSWD"]
        );
        assert!(
            failing(|f| f.config["config"]["User"] = json!("0:0")).contains(&"IMG-NUMERIC-USER")
        );
    }

    #[test]
    fn i2_no_shell_or_package_manager() {
        assert_eq!(
            failing(|f| {
                f.fs.insert("/bin/sh".into(), entry("/bin/sh", "file", 0o555, 0));
            }),
            ["IMG-NO-SHELL"]
        );
        assert_eq!(
            failing(|f| {
                f.fs.insert(
                    "/usr/bin/apt-get".into(),
                    entry("/usr/bin/apt-get", "symlink", 0o777, 0),
                );
            }),
            ["IMG-NO-SHELL"]
        );
    }

    #[test]
    fn i3_no_setuid_and_no_world_writable_except_sticky_tmp() {
        assert_eq!(
            failing(|f| f.fs.get_mut("/app/web").unwrap().mode = 0o4555),
            ["IMG-NO-SETUID"]
        );
        assert_eq!(
            failing(|f| f.fs.get_mut("/app").unwrap().mode = 0o777),
            ["IMG-NO-SETUID"]
        );
        assert_eq!(
            failing(|f| f.fs.get_mut("/tmp").unwrap().mode = 0o777),
            ["IMG-NO-SETUID"]
        );
    }

    #[test]
    fn i4_files_are_root_owned_outside_writable_paths() {
        assert_eq!(
            failing(|f| f.fs.get_mut("/app/web").unwrap().uid = 65532),
            ["IMG-OWNERSHIP"]
        );
        assert_eq!(
            failing(|f| {
                f.declared.writable.remove("/var/cache/web");
            }),
            ["IMG-OWNERSHIP"]
        );
        assert_eq!(
            failing(|f| {
                f.declared.writable.insert("/data".into());
            }),
            ["IMG-OWNERSHIP"]
        );
    }

    #[test]
    fn i5_entrypoint_is_exec_form_and_executable() {
        assert_eq!(
            failing(|f| f.config["config"]["Entrypoint"] = json!(["/bin/sh", "-c", "/app/web"])),
            ["IMG-EXEC-FORM"]
        );
        assert_eq!(
            failing(|f| f.config["config"]["Entrypoint"] = json!(null)),
            ["IMG-EXEC-FORM"]
        );
        assert_eq!(
            failing(|f| f.config["config"]["Entrypoint"] = json!(["/app/missing"])),
            ["IMG-EXEC-FORM"]
        );
        assert_eq!(
            failing(|f| f.fs.get_mut("/app/web").unwrap().mode = 0o444),
            ["IMG-EXEC-FORM"]
        );
    }

    #[test]
    fn i6_declared_runtime_data_is_present() {
        assert_eq!(
            failing(|f| {
                f.fs.remove(CA_BUNDLE_PATH);
            }),
            ["IMG-RUNTIME-DATA"]
        );
        assert_eq!(
            failing(|f| f.config["config"]["Env"] = json!(["LOG=info"])),
            ["IMG-RUNTIME-DATA"]
        );
        assert_eq!(
            failing(|f| {
                f.fs.remove("/usr/share/zoneinfo/UTC");
            }),
            ["IMG-RUNTIME-DATA"]
        );
    }

    #[test]
    fn i7_passwd_and_group_are_minimal() {
        assert_eq!(
            failing(|f| {
                f.fs.insert(
                    "/etc/passwd".into(),
                    text(
                        "/etc/passwd",
                        "root:x:0:0::/:/x\nuser:x:1000:1000::/:/x\nnonroot:x:65532:65532::/:/x\n",
                    ),
                );
            }),
            ["IMG-PASSWD"]
        );
        assert_eq!(
            failing(|f| {
                f.fs.remove("/etc/nsswitch.conf");
            }),
            ["IMG-PASSWD"]
        );
    }

    #[test]
    fn i8_base_is_pinned_and_annotated() {
        assert_eq!(
            failing(|f| f.declared.base = Some("r/base:latest".into())),
            ["IMG-BASE-DIGEST"]
        );
        assert_eq!(failing(|f| f.annotations.clear()), ["IMG-BASE-DIGEST"]);
    }

    #[test]
    fn i11_no_secrets_in_env_or_files() {
        assert_eq!(
            failing(|f| f.config["config"]["Env"]
                .as_array_mut()
                .unwrap()
                .push(json!("DB_PASSWORD=hunter2"))),
            ["IMG-NO-SECRETS"]
        );
        assert_eq!(
            failing(|f| f.config["config"]["Env"]
                .as_array_mut()
                .unwrap()
                .push(json!("X=AKIAIOSFODNN7EXAMPLE"))),
            ["IMG-NO-SECRETS"]
        );
        assert_eq!(
            failing(|f| {
                f.fs.insert("/app/.git".into(), entry("/app/.git", "dir", 0o755, 0));
            }),
            ["IMG-NO-SECRETS"]
        );
        assert_eq!(
            failing(|f| {
                f.fs.insert(
                    "/app/key.pem".into(),
                    text("/app/key.pem", "-----BEGIN EC PRIVATE KEY-----\n"),
                );
            }),
            ["IMG-NO-SECRETS"]
        );
    }

    #[test]
    fn i12_no_file_capabilities() {
        assert_eq!(
            failing(|f| f
                .fs
                .get_mut("/app/web")
                .unwrap()
                .pax
                .push("SCHILY.xattr.security.capability".into())),
            ["IMG-NO-CAPABILITIES"]
        );
    }
}
