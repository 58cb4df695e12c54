//! Building an image into an OCI layout: plan the layers, write them (in parallel, each in
//! one streaming pass), write the config and manifest as canonical JSON, the SBOMs as
//! artifacts referring to the image, `index.json`, and run the hardening checks.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use super::hardening::{self, Declared, FsEntry, ImageFacts};
use super::layer::{self, FileRecord, WrittenLayer};
use super::layout::{Index, Layout};
use super::oci::{self, Descriptor};
use super::plan::{self, EntryKind, HostFiles, Plan, Source};
use super::sbom::{self, SbomInput};
use super::{Error, canonical};
use crate::policy::Finding;
use crate::project::ImageSpec;

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct BuildInput<'a> {
    /// The image's name in `ferry.yaml`.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a ImageSpec,
    /// The project root (sources are relative to it).
    pub root: &'a Path,
    /// Where the CA bundle and tzdata come from.
    pub host: &'a HostFiles,
    /// Every timestamp of the image (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// The base image, already pulled into a local layout.
    pub base: Option<&'a BaseImage>,
}

/// A base image available locally.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The reference as declared (`repository@sha256:…`).
    pub reference: String,
    /// The layout holding its blobs.
    pub layout: Layout,
    /// Its image manifest (already resolved to the build's platform).
    pub manifest: Descriptor,
}

/// One layer of a built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BuiltLayer {
    /// `base`, `os`, `ca-bundle`, `tzdata` or `app`.
    pub name: String,
    /// The blob digest.
    pub digest: String,
    /// The uncompressed digest.
    pub diff_id: String,
    /// The blob size.
    pub size: u64,
}

/// A built image in its layout.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    /// The image's name.
    pub name: String,
    /// The tag recorded in `index.json`.
    pub tag: String,
    /// The image manifest.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<BuiltLayer>,
    /// Every regular file with its layer.
    pub files: Vec<(String, FileRecord)>,
    /// The SBOM artifact manifests (SPDX, CycloneDX).
    pub sboms: Vec<Descriptor>,
    /// Packages listed in the SBOM from `Cargo.lock` files.
    pub packages: usize,
    /// Hardening findings.
    pub findings: Vec<Finding>,
}

/// Builds the image into a new layout at `out` (which should be empty or absent).
///
/// # Errors
/// Spec, read and write errors; a malformed base layout.
pub fn build(input: &BuildInput<'_>, out: &Path) -> Result<BuiltImage, Error> {
    let plan = plan::plan(input.name, input.spec, input.root, input.host)?;
    let layout = Layout::create(out)?;
    let created = rfc3339(input.source_date_epoch);

    let base = input.base.map(|b| read_base(b, &layout)).transpose()?;
    let written: Vec<WrittenLayer> = plan
        .layers
        .par_iter()
        .map(|l| {
            let label = out.join(format!("<{} layer>", l.name));
            layout
                .write_blob_with(|file| {
                    let (w, _) = layer::write_layer(
                        &l.entries,
                        input.source_date_epoch,
                        BufWriter::with_capacity(1 << 20, file),
                        &label,
                    )?;
                    Ok::<_, Error>((w.digest.clone(), w))
                })
                .map(|(_, w)| w)
        })
        .collect::<Result<_, _>>()?;

    let mut layers = Vec::new();
    let mut descriptors = Vec::new();
    let mut files = Vec::new();
    let mut fs = BTreeMap::new();
    if let Some(base) = &base {
        for (i, (d, diff_id, entries)) in base.layers.iter().enumerate() {
            layers.push(BuiltLayer {
                name: "base".into(),
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                size: d.size,
            });
            descriptors.push(d.clone());
            for e in entries {
                if let (Some(sha256), Some(sha1)) = (&e.sha256, &e.sha1) {
                    files.push((
                        format!("base-{i}"),
                        FileRecord {
                            path: format!("/{}", e.path),
                            size: e.size,
                            sha256: sha256.clone(),
                            sha1: sha1.clone(),
                        },
                    ));
                }
            }
            merge(&mut fs, entries.iter().map(fs_entry_of_read));
        }
    }
    for (planned, w) in plan.layers.iter().zip(&written) {
        layers.push(BuiltLayer {
            name: planned.name.to_string(),
            digest: w.digest.clone(),
            diff_id: w.diff_id.clone(),
            size: w.size,
        });
        descriptors.push(Descriptor {
            media_type: oci::LAYER_GZIP.into(),
            digest: w.digest.clone(),
            size: w.size,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        });
        files.extend(
            w.files
                .iter()
                .map(|f| (planned.name.to_string(), f.clone())),
        );
        let entries = planned
            .entries
            .iter()
            .map(fs_entry_of_plan)
            .collect::<Result<Vec<_>, _>>()?;
        merge(&mut fs, entries.into_iter());
    }

    let config_json = config(&plan, input.spec, base.as_ref(), &layers, &created);
    let config = layout.write_blob(oci::CONFIG, &canonical::to_vec(&config_json))?;
    let mut annotations = BTreeMap::from([
        (oci::CREATED.to_string(), created.clone()),
        (oci::COMPRESSION.to_string(), layer::COMPRESSOR.to_string()),
    ]);
    if let Some(base) = &base {
        let name = base.reference.split('@').next().unwrap_or_default();
        annotations.insert(oci::BASE_NAME.into(), name.to_string());
        annotations.insert(oci::BASE_DIGEST.into(), base.manifest_digest.clone());
    }
    let manifest_json = json!({
        "schemaVersion": 2,
        "mediaType": oci::MANIFEST,
        "config": config,
        "layers": descriptors,
        "annotations": annotations,
    });
    let mut manifest = layout.write_blob(oci::MANIFEST, &canonical::to_vec(&manifest_json))?;
    let tag = input.spec.tag.clone().unwrap_or_else(|| "latest".into());

    let mut packages = Vec::new();
    for lock in &plan.cargo_locks {
        let text = std::fs::read_to_string(lock).map_err(Error::read(lock))?;
        packages.extend(sbom::parse_cargo_lock(&text));
    }
    packages.sort();
    packages.dedup();
    let sboms = write_sboms(
        &layout,
        &SbomInput {
            image: input.name,
            repository: &input.spec.repository,
            tag: &tag,
            manifest_digest: &manifest.digest,
            created: &created,
            files: &files,
            packages: &packages,
        },
        &manifest,
    )?;

    manifest.platform = Some(plan.platform.clone());
    manifest
        .annotations
        .insert(oci::REF_NAME.into(), tag.clone());
    let mut index = vec![manifest.clone()];
    index.extend(sboms.iter().cloned());
    layout.write_index(&Index::new(index))?;
    manifest.platform = None;
    manifest.annotations.clear();

    let facts = ImageFacts {
        name: input.name.to_string(),
        config: config_json,
        annotations: manifest_json["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
        fs,
        declared: declared(input.spec),
    };
    Ok(BuiltImage {
        name: input.name.to_string(),
        tag,
        manifest,
        config,
        layers,
        files,
        sboms,
        packages: packages.len(),
        findings: hardening::check(&facts),
    })
}

/// The declarations of `spec` the hardening checks compare against.
pub fn declared(spec: &ImageSpec) -> Declared {
    Declared {
        writable: spec
            .writable
            .iter()
            .map(|w| format!("/{}", w.trim_matches('/')))
            .collect(),
        ca_bundle: spec.ca_bundle,
        tzdata: spec.tzdata,
        base: spec.base.clone(),
    }
}

/// `SOURCE_DATE_EPOCH` as RFC 3339 (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

/// A base image's parts, with its blobs imported into the new layout.
struct Base {
    reference: String,
    manifest_digest: String,
    config: Value,
    /// Descriptor (OCI media type), diff_id, entries.
    layers: Vec<(Descriptor, String, Vec<layer::ReadEntry>)>,
}

fn read_base(base: &BaseImage, layout: &Layout) -> Result<Base, Error> {
    let bad = |reason: String| Error::Layout {
        path: base.layout.root().to_path_buf(),
        reason,
    };
    let manifest = base.layout.read_json(&base.manifest.digest)?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("base manifest has no config".into()))?;
    let config = base.layout.read_json(config_digest)?;
    let diff_ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let descriptors: Vec<Descriptor> = serde_json::from_value(
        manifest
            .get("layers")
            .cloned()
            .unwrap_or(Value::Array(Vec::new())),
    )
    .map_err(|e| bad(format!("base manifest layers: {e}")))?;
    if descriptors.len() != diff_ids.len() {
        return Err(bad("base config diff_ids do not match its layers".into()));
    }
    let mut layers = Vec::new();
    for (mut d, diff_id) in descriptors.into_iter().zip(diff_ids) {
        let gzipped = match d.media_type.as_str() {
            oci::LAYER_GZIP | oci::DOCKER_LAYER_GZIP => true,
            oci::LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => false,
            other => return Err(bad(format!("unsupported base layer type {other}"))),
        };
        d.media_type = if gzipped {
            oci::LAYER_GZIP
        } else {
            oci::LAYER_TAR
        }
        .to_string();
        layout.import_blob(&base.layout, &d.digest)?;
        let blob = base.layout.open_blob(&d.digest)?;
        let entries = layer::read_entries(blob, gzipped).map_err(|e| Error::Read {
            path: base.layout.blob_path(&d.digest),
            source: e,
        })?;
        d.annotations.clear();
        layers.push((d, diff_id, entries));
    }
    Ok(Base {
        reference: base.reference.clone(),
        manifest_digest: base.manifest.digest.clone(),
        config,
        layers,
    })
}

/// The image config: the base's, overridden by the spec; diff_ids and history appended.
fn config(
    plan: &Plan,
    spec: &ImageSpec,
    base: Option<&Base>,
    layers: &[BuiltLayer],
    created: &str,
) -> Value {
    let empty = json!({});
    let base_cfg = base.map_or(&empty, |b| b.config.get("config").unwrap_or(&empty));
    let mut env: BTreeMap<String, String> = base_cfg
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    env.extend(plan.env.clone());
    let mut labels: BTreeMap<String, Value> = base_cfg
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), json!(v))));
    let mut ports: BTreeMap<String, Value> = base_cfg
        .get("ExposedPorts")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(|k| (k.clone(), json!({}))).collect())
        .unwrap_or_default();
    ports.extend(plan.ports.iter().map(|p| (p.clone(), json!({}))));

    let mut c = serde_json::Map::new();
    c.insert("User".into(), json!(plan.user));
    let (entrypoint, cmd) = if spec.entrypoint.is_empty() {
        (
            base_cfg.get("Entrypoint").cloned().unwrap_or(Value::Null),
            if spec.cmd.is_empty() {
                base_cfg.get("Cmd").cloned().unwrap_or(Value::Null)
            } else {
                json!(spec.cmd)
            },
        )
    } else {
        (json!(spec.entrypoint), json!(spec.cmd))
    };
    if entrypoint.as_array().is_some_and(|a| !a.is_empty()) {
        c.insert("Entrypoint".into(), entrypoint);
    }
    if cmd.as_array().is_some_and(|a| !a.is_empty()) {
        c.insert("Cmd".into(), cmd);
    }
    if !env.is_empty() {
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        c.insert("Env".into(), json!(env));
    }
    if !labels.is_empty() {
        c.insert("Labels".into(), json!(labels));
    }
    if !ports.is_empty() {
        c.insert("ExposedPorts".into(), json!(ports));
    }
    let workdir = spec
        .workdir
        .clone()
        .or_else(|| {
            base_cfg
                .get("WorkingDir")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".to_string());
    c.insert("WorkingDir".into(), json!(workdir));

    let mut history: Vec<Value> = base
        .and_then(|b| b.config.get("history").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    history.extend(
        plan.layers
            .iter()
            .map(|l| json!({"created": created, "created_by": l.created_by})),
    );
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let mut config = json!({
        "architecture": plan.platform.architecture,
        "os": plan.platform.os,
        "created": created,
        "config": c,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(variant) = &plan.platform.variant {
        config["variant"] = json!(variant);
    }
    config
}

fn write_sboms(
    layout: &Layout,
    input: &SbomInput<'_>,
    subject: &Descriptor,
) -> Result<Vec<Descriptor>, Error> {
    let empty = layout.write_blob(oci::EMPTY, b"{}")?;
    let mut out = Vec::new();
    for (media_type, doc) in [
        (oci::SPDX_JSON, sbom::spdx(input)),
        (oci::CYCLONEDX_JSON, sbom::cyclonedx(input)),
    ] {
        let blob = layout.write_blob(media_type, &canonical::to_vec(&doc))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::MANIFEST,
            "artifactType": media_type,
            "config": empty,
            "layers": [blob],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": {oci::CREATED: input.created},
        });
        let mut d = layout.write_blob(oci::MANIFEST, &canonical::to_vec(&manifest))?;
        d.artifact_type = Some(media_type.to_string());
        out.push(d);
    }
    Ok(out)
}

fn fs_entry_of_read(e: &layer::ReadEntry) -> FsEntry {
    FsEntry {
        path: format!(
            "/{}",
            e.path.trim_start_matches("./").trim_start_matches('/')
        ),
        kind: e.kind.clone(),
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        pax: e.pax.clone(),
        head: if e.kind == "symlink" {
            e.link.clone().unwrap_or_default().into_bytes()
        } else {
            e.head.clone()
        },
    }
}

fn fs_entry_of_plan(e: &plan::Entry) -> Result<FsEntry, Error> {
    let (kind, head) = match &e.kind {
        EntryKind::Dir => ("dir", Vec::new()),
        EntryKind::Symlink { target } => ("symlink", target.clone().into_bytes()),
        EntryKind::File {
            source: Source::Bytes(b),
            ..
        } => ("file", b.iter().copied().take(64 * 1024).collect()),
        EntryKind::File {
            source: Source::Path(p),
            ..
        } => {
            let mut head = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
                .map_err(Error::read(p))?;
            ("file", head)
        }
    };
    Ok(FsEntry {
        path: format!("/{}", e.path),
        kind: kind.to_string(),
        mode: e.mode,
        uid: u64::from(e.uid),
        gid: u64::from(e.gid),
        pax: Vec::new(),
        head,
    })
}

/// The facts the hardening checks need, read back from a built layout (for `ferry lint`).
///
/// # Errors
/// Read and parse errors of the layout.
pub fn facts_from_layout(
    name: &str,
    layout: &Layout,
    tag: &str,
    declared: Declared,
) -> Result<ImageFacts, Error> {
    let descriptor = layout.image(Some(tag))?;
    let manifest = layout.read_json(&descriptor.digest)?;
    let config_digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let config = layout.read_json(config_digest)?;
    let mut fs = BTreeMap::new();
    for d in manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let digest = d.get("digest").and_then(Value::as_str).unwrap_or_default();
        let gzipped = d
            .get("mediaType")
            .and_then(Value::as_str)
            .is_some_and(|m| m.ends_with("gzip"));
        let entries = layer::read_entries(layout.open_blob(digest)?, gzipped)
            .map_err(Error::read(layout.blob_path(digest)))?;
        merge(&mut fs, entries.iter().map(fs_entry_of_read));
    }
    let annotations = manifest
        .get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(ImageFacts {
        name: name.to_string(),
        config,
        annotations,
        fs,
        declared,
    })
}

/// Applies one layer to the merged filesystem, honouring whiteouts (`.wh.<name>`,
/// `.wh..wh..opq`).
fn merge(fs: &mut BTreeMap<String, FsEntry>, entries: impl Iterator<Item = FsEntry>) {
    for entry in entries {
        let (dir, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
        if name == ".wh..wh..opq" {
            let prefix = format!("{dir}/");
            fs.retain(|p, _| !p.starts_with(&prefix));
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = format!("{dir}/{hidden}");
            let prefix = format!("{target}/");
            fs.retain(|p, _| *p != target && !p.starts_with(&prefix));
        } else {
            fs.insert(entry.path.clone(), entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::image::verify;
    use crate::project::ImageFile;

    /// A project with a binary and a static tree, files written with `file_mode` / `exec_mode`
    /// (as different umasks would leave them) and a given mtime.
    fn project(dir: &Path, file_mode: u32, exec_mode: u32, mtime: u64) {
        std::fs::create_dir_all(dir.join("static/css")).unwrap();
        let files = [
            ("web", b"\x7fELF pretend binary".as_slice(), exec_mode),
            ("static/index.html", b"<h1>hi</h1>".as_slice(), file_mode),
            ("static/css/site.css", b"h1{}".as_slice(), file_mode),
            (
                "Cargo.lock",
                b"[[package]]\nname = \"web\"\nversion = \"0.1.0\"\n".as_slice(),
                file_mode,
            ),
        ];
        for (name, bytes, mode) in files {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let t = std::fs::File::options().write(true).open(&p).unwrap();
            t.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
                .unwrap();
        }
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            repository: "registry.test/demo/web".into(),
            tag: Some("dev".into()),
            files: vec![
                ImageFile {
                    source: "web".into(),
                    target: "/app/web".into(),
                    mode: None,
                    cargo_lock: Some("Cargo.lock".into()),
                },
                ImageFile {
                    source: "static".into(),
                    target: "/app/static".into(),
                    mode: None,
                    cargo_lock: None,
                },
            ],
            entrypoint: vec!["/app/web".into()],
            writable: vec!["/tmp".into()],
            ports: vec!["8080".into()],
            env: BTreeMap::from([("LOG".into(), "info".into())]),
            labels: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
            ..ImageSpec::default()
        }
    }

    fn build_in(dir: &Path, epoch: u64, spec: &ImageSpec) -> BuiltImage {
        let host = HostFiles::default();
        let input = BuildInput {
            name: "web",
            spec,
            root: dir,
            host: &host,
            source_date_epoch: epoch,
            base: None,
        };
        build(&input, &dir.join("out")).unwrap()
    }

    #[test]
    fn same_inputs_give_the_same_digest_in_any_directory_with_any_permissions_and_mtimes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        project(a.path(), 0o644, 0o755, 1_000);
        project(b.path(), 0o600, 0o700, 2_000_000);
        let (x, y) = (
            build_in(a.path(), 0, &spec()),
            build_in(b.path(), 0, &spec()),
        );
        assert_eq!(x.manifest.digest, y.manifest.digest);
        assert_eq!(x.sboms, y.sboms);
        assert_eq!(x.findings, vec![], "the demo-like image is hardened");
        let layout = Layout::open(&a.path().join("out")).unwrap();
        let config = layout.read_json(&x.config.digest).unwrap();
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
        let index = layout.index().unwrap();
        assert_eq!(index.manifests.len(), 3, "image + SPDX + CycloneDX");
        assert_eq!(index.manifests[0].annotations[oci::REF_NAME], "dev");
    }

    #[test]
    fn every_file_is_in_both_sboms_with_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), 0o644, 0o755, 0);
        let built = build_in(dir.path(), 0, &spec());
        let layout = Layout::open(&dir.path().join("out")).unwrap();
        let paths: Vec<&str> = built.files.iter().map(|(_, f)| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/group",
                "/etc/nsswitch.conf",
                "/etc/passwd",
                "/app/static/css/site.css",
                "/app/static/index.html",
                "/app/web"
            ]
        );
        for sbom in &built.sboms {
            let manifest = layout.read_json(&sbom.digest).unwrap();
            assert_eq!(
                manifest["subject"]["digest"],
                built.manifest.digest.as_str()
            );
            let blob = manifest["layers"][0]["digest"].as_str().unwrap();
            let text = String::from_utf8(layout.read_blob(blob).unwrap()).unwrap();
            for (_, file) in &built.files {
                assert!(
                    text.contains(&file.sha256),
                    "{} missing from {:?}",
                    file.path,
                    sbom.artifact_type
                );
                assert!(
                    text.contains(file.path.trim_start_matches('/')),
                    "{}",
                    file.path
                );
            }
            assert!(text.contains("\"web\""), "the Cargo.lock package is listed");
        }
    }

    #[test]
    fn compare_names_the_entry_and_field_that_differ() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        project(a.path(), 0o644, 0o755, 0);
        project(b.path(), 0o644, 0o755, 0);
        let x = build_in(a.path(), 0, &spec());
        let mut other = spec();
        other.files[1].mode = Some(crate::project::FileMode(0o440));
        let y = build_in(b.path(), 0, &other);
        assert_ne!(x.manifest.digest, y.manifest.digest);
        let diffs = verify::compare(
            &Layout::open(&a.path().join("out")).unwrap(),
            &Layout::open(&b.path().join("out")).unwrap(),
            "dev",
        )
        .unwrap();
        assert!(
            diffs
                .iter()
                .any(|d| d.location.ends_with("entry app/static/css/site.css")
                    && d.field == "mode"
                    && d.first == "0444"
                    && d.second == "0440"),
            "{diffs:#?}"
        );
        let z = build_in(b.path(), 86_400, &spec());
        let diffs = verify::compare(
            &Layout::open(&a.path().join("out")).unwrap(),
            &Layout::open(&b.path().join("out")).unwrap(),
            "dev",
        )
        .unwrap();
        assert_ne!(x.manifest.digest, z.manifest.digest);
        assert!(
            diffs
                .iter()
                .any(|d| d.location == "config" && d.field == "created"),
            "{diffs:#?}"
        );
        assert!(
            diffs
                .iter()
                .any(|d| d.field == "mtime" && d.second == "86400"),
            "{diffs:#?}"
        );
    }

    #[test]
    fn hardening_failures_are_reported_by_the_build() {
        let dir = tempfile::tempdir().unwrap();
        project(dir.path(), 0o644, 0o755, 0);
        let mut bad = spec();
        bad.user = 0;
        bad.files[0].mode = Some(crate::project::FileMode(0o4755));
        bad.env.insert("API_TOKEN".into(), "abc".into());
        let built = build_in(dir.path(), 0, &bad);
        let rules: Vec<&str> = built.findings.iter().map(|f| f.rule).collect();
        for rule in ["IMG-NUMERIC-USER", "IMG-NO-SETUID", "IMG-NO-SECRETS"] {
            assert!(rules.contains(&rule), "{rules:?}");
        }
    }
}
