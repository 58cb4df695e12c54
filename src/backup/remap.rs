//! What a backup's objects become on the target of a restore, pure: the namespace they go to,
//! the registry their images are pulled from, the Service addresses the new cluster allocates,
//! and which ApplySet each belongs to (so its field manager applies it and its parent's
//! inventory is rewritten afterwards).
//!
//! Never touches the network or a cluster.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cluster::applyset::{ID_LABEL, PARENT_TYPE, PART_OF_LABEL};
use crate::cluster::{FIELD_MANAGER, Ownership};
use crate::release::record::{self, LABEL_RECORD, LABEL_REVISION, ReleaseRecord};

/// The field manager of restored objects that belong to no set of Ferry's.
pub const RESTORE_FIELD_MANAGER: &str = "ferry-restore";

/// The label `kubernetes.io/metadata.name` the API server keeps equal to a Namespace's name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The data key of a release record chunk.
const RECORD_DATA_KEY: &str = "release";

/// How the objects are mapped onto the target.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// The application (of `ferry.yaml`).
    pub app: String,
    /// The environment.
    pub environment: String,
    /// The namespace the backup was taken from.
    pub from_namespace: String,
    /// The namespace to restore into (the same, or `--namespace`).
    pub to_namespace: String,
    /// Image reference as the backed-up pods run it → the reference to run after the restore.
    pub images: BTreeMap<String, String>,
    /// Keep the Services' `clusterIP`, `clusterIPs` and node ports as they were.
    pub keep_cluster_ips: bool,
}

impl Mapping {
    /// True when the objects go to another namespace than they came from.
    pub fn moves(&self) -> bool {
        self.from_namespace != self.to_namespace
    }
}

/// An ApplySet of Ferry's found in the backup: its parent is rewritten after the restore with
/// an inventory of the members as the new cluster has them.
#[derive(Debug, Clone)]
pub struct RestoredSet {
    /// Who owns it on the target.
    pub ownership: Ownership,
    /// The parent's annotations other than the ApplySet's own (e.g. the templates digest).
    pub annotations: BTreeMap<String, String>,
}

/// A ClusterRoleBinding given a new name because its subjects moved to another namespace
/// (the original still binds the source namespace's service accounts).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Renamed {
    /// The kind.
    pub kind: String,
    /// Its name in the backup.
    pub from: String,
    /// Its name on the target.
    pub to: String,
}

/// The objects to apply, ready for the engine's [`crate::cluster::Members::AsIs`].
#[derive(Debug, Default)]
pub struct Restorable {
    /// The objects, mapped (ApplySet parents left out: see [`Restorable::sets`]).
    pub objects: Vec<Value>,
    /// The field manager of each object, same order.
    pub field_managers: Vec<String>,
    /// The index of the set (into `sets`) each object belongs to, same order.
    pub set_of: Vec<Option<usize>>,
    /// Ferry's sets, whose parents are written after the objects.
    pub sets: Vec<RestoredSet>,
    /// Objects renamed on the way.
    pub renamed: Vec<Renamed>,
    /// Release records (head Secrets) restored, by revision.
    pub revisions: BTreeSet<u32>,
}

/// Why the backup's objects cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A release record in the backup cannot be read (it is rewritten for another namespace
    /// or registry).
    #[error("release record revision {revision} in the backup cannot be rewritten")]
    Record {
        /// The revision.
        revision: u32,
        /// Why.
        #[source]
        source: Box<record::RecordError>,
    },
}

/// Maps the backup's objects onto the target.
///
/// # Errors
/// [`Error::Record`] when a release record must be rewritten (another namespace or registry)
/// and cannot be decoded.
pub fn remap(objects: Vec<Value>, mapping: &Mapping) -> Result<Restorable, Error> {
    let (parents, objects): (Vec<Value>, Vec<Value>) = objects.into_iter().partition(is_parent);
    let sets = sets_of(&parents, mapping);
    let old_ids: BTreeMap<String, usize> = sets
        .iter()
        .enumerate()
        .map(|(i, (old, _))| (old.clone(), i))
        .collect();
    let (records, objects): (Vec<Value>, Vec<Value>) = objects.into_iter().partition(is_record);
    let rewrite_records = mapping.moves() || !mapping.images.is_empty();
    let records = if rewrite_records {
        rewrite_release_records(records, mapping)?
    } else {
        records
    };

    let mut out = Restorable {
        sets: sets.iter().map(|(_, set)| set.clone()).collect(),
        ..Restorable::default()
    };
    for mut object in objects.into_iter().chain(records) {
        let set = text(&object, "/metadata/labels/applyset.kubernetes.io~1part-of")
            .and_then(|id| old_ids.get(id).copied());
        if let Some(index) = set {
            set_label(&mut object, PART_OF_LABEL, &out.sets[index].ownership.id());
        }
        map_object(&mut object, mapping, &mut out.renamed);
        if let Some(revision) = head_revision(&object) {
            out.revisions.insert(revision);
        }
        let manager = match set {
            Some(index) => out.sets[index].ownership.field_manager.clone(),
            None if is_record(&object) => FIELD_MANAGER.to_string(),
            None => RESTORE_FIELD_MANAGER.to_string(),
        };
        out.objects.push(object);
        out.field_managers.push(manager);
        out.set_of.push(set);
    }
    Ok(out)
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn is_core(object: &Value, kind: &str) -> bool {
    text(object, "/kind") == Some(kind) && text(object, "/apiVersion") == Some("v1")
}

/// True for an ApplySet parent Secret of Ferry's.
fn is_parent(object: &Value) -> bool {
    is_core(object, "Secret") && text(object, "/type") == Some(PARENT_TYPE)
}

/// True for a chunk of a release record.
fn is_record(object: &Value) -> bool {
    is_core(object, "Secret") && text(object, "/type") == Some(record::SECRET_TYPE)
}

/// The revision of a release record's head chunk.
fn head_revision(object: &Value) -> Option<u32> {
    if !is_record(object) || text(object, "/metadata/labels/ferry.dev~1chunk") != Some("0") {
        return None;
    }
    text(
        object,
        &format!("/metadata/labels/{}", LABEL_REVISION.replace('/', "~1")),
    )?
    .parse()
    .ok()
}

/// The sets of the parents found, each with its id in the backup.
fn sets_of(parents: &[Value], mapping: &Mapping) -> Vec<(String, RestoredSet)> {
    let mut sets = Vec::new();
    for parent in parents {
        let Some(name) = text(parent, "/metadata/name") else {
            continue;
        };
        let Some(old_id) = text(
            parent,
            &format!("/metadata/labels/{}", ID_LABEL.replace('/', "~1")),
        ) else {
            continue;
        };
        let (app, env, ns) = (&mapping.app, &mapping.environment, &mapping.to_namespace);
        let mut ownership = if name.ends_with("-provision") {
            Ownership::provision(app, env, ns)
        } else {
            Ownership::application(app, env, ns)
        };
        // A set of another application sharing the namespace keeps its own parent.
        ownership.parent = name.to_string();
        let annotations = parent
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| !k.starts_with("applyset.kubernetes.io/"))
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        sets.push((
            old_id.to_string(),
            RestoredSet {
                ownership,
                annotations,
            },
        ));
    }
    sets
}

fn set_label(object: &mut Value, key: &str, value: &str) {
    if let Some(labels) = object
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Maps one object: namespace, Namespace name, service-account subjects, images, Service
/// addresses.
fn map_object(object: &mut Value, mapping: &Mapping, renamed: &mut Vec<Renamed>) {
    if mapping.moves() {
        move_namespace(object, mapping, renamed);
    }
    map_images(object, &mapping.images);
    if is_core(object, "Service") && !mapping.keep_cluster_ips {
        strip_addresses(object);
    }
}

fn move_namespace(object: &mut Value, mapping: &Mapping, renamed: &mut Vec<Renamed>) {
    let (from, to) = (&mapping.from_namespace, &mapping.to_namespace);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.get("namespace").and_then(Value::as_str) == Some(from.as_str())
    {
        meta.insert("namespace".to_string(), Value::String(to.clone()));
    }
    if is_core(object, "Namespace") && text(object, "/metadata/name") == Some(from.as_str()) {
        object["metadata"]["name"] = Value::String(to.clone());
        if object.pointer("/metadata/labels").is_some() {
            set_label(object, NAMESPACE_NAME_LABEL, to);
        }
    }
    let kind = text(object, "/kind").unwrap_or("").to_string();
    if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
        return;
    }
    let mut moved = false;
    for subject in object
        .get_mut("subjects")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
            && subject.get("namespace").and_then(Value::as_str) == Some(from.as_str())
        {
            subject["namespace"] = Value::String(to.clone());
            moved = true;
        }
    }
    if moved && kind == "ClusterRoleBinding" {
        let name = text(object, "/metadata/name").unwrap_or("").to_string();
        let new = format!("{name}-{to}");
        object["metadata"]["name"] = Value::String(new.clone());
        renamed.push(Renamed {
            kind,
            from: name,
            to: new,
        });
    }
}

/// The pod specs of a workload or pod, mutable.
fn pod_spec_mut(object: &mut Value) -> Option<&mut Value> {
    let pointer = match text(object, "/kind")? {
        "Pod" => "/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => "/spec/template/spec",
        _ => return None,
    };
    object.pointer_mut(pointer)
}

/// Rewrites the images of the object's pod spec found in `images`.
pub fn map_images(object: &mut Value, images: &BTreeMap<String, String>) {
    if images.is_empty() {
        return;
    }
    let Some(spec) = pod_spec_mut(object) else {
        return;
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(image) = container.get("image").and_then(Value::as_str) else {
                continue;
            };
            if let Some(to) = images.get(image) {
                container["image"] = Value::String(to.clone());
            }
        }
    }
}

/// Removes what the new cluster allocates: `clusterIP`/`clusterIPs` (unless headless), node
/// ports and the health-check node port.
fn strip_addresses(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(port) = port.as_object_mut() {
            port.remove("nodePort");
        }
    }
}

/// Rewrites the release records for the target: their objects go to the new namespace and run
/// the mapped images, so `rollback` and `history` carry on there. The chunks are re-encoded.
fn rewrite_release_records(records: Vec<Value>, mapping: &Mapping) -> Result<Vec<Value>, Error> {
    let mut by_revision: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    let mut others = Vec::new();
    for secret in records {
        let revision = text(
            &secret,
            &format!("/metadata/labels/{}", LABEL_REVISION.replace('/', "~1")),
        )
        .and_then(|r| r.parse().ok());
        match revision {
            Some(revision) => by_revision.entry(revision).or_default().push(secret),
            None => others.push(secret),
        }
    }
    let mut out = others;
    for (revision, mut chunks) in by_revision {
        chunks.sort_by_key(|c| {
            text(c, "/metadata/labels/ferry.dev~1chunk")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        let Some(head) = chunks.first().cloned() else {
            continue;
        };
        let err = |source| Error::Record {
            revision,
            source: Box::new(source),
        };
        let payloads: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| {
                text(c, &format!("/data/{RECORD_DATA_KEY}"))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .unwrap_or_default()
            })
            .collect();
        let digest = text(&head, "/metadata/annotations/ferry.dev~1sha256").unwrap_or("");
        let mut rec: ReleaseRecord = record::decode(revision, &payloads, digest).map_err(err)?;
        let mut ignored = Vec::new();
        for object in &mut rec.objects {
            if mapping.moves() {
                move_namespace(object, mapping, &mut ignored);
            }
            map_images(object, &mapping.images);
        }
        for image in rec.candidate.images.values_mut() {
            if let Some(to) = mapping.images.get(image.as_str()) {
                *image = to.clone();
            }
        }
        let encoded = record::encode(&rec).map_err(err)?;
        for (chunk, bytes) in encoded.chunks.iter().enumerate() {
            let mut secret = match chunks.get(chunk) {
                Some(original) => original.clone(),
                None => chunk_like(&head, revision, chunk),
            };
            if let Some(meta) = secret.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert(
                    "namespace".to_string(),
                    Value::String(mapping.to_namespace.clone()),
                );
            }
            secret["data"] = json!({
                RECORD_DATA_KEY: base64::engine::general_purpose::STANDARD.encode(bytes)
            });
            if chunk == 0 {
                secret["metadata"]["annotations"]["ferry.dev/sha256"] =
                    Value::String(encoded.digest.clone());
                secret["metadata"]["annotations"]["ferry.dev/chunks"] =
                    Value::String(encoded.chunks.len().to_string());
            }
            out.push(secret);
        }
    }
    Ok(out)
}

/// A chunk Secret modelled on the head (a re-encoded record needing one more chunk).
fn chunk_like(head: &Value, revision: u32, chunk: usize) -> Value {
    let name = text(head, "/metadata/name").unwrap_or("");
    let mut labels = head
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(map) = labels.as_object_mut() {
        map.remove(record::LABEL_STATUS);
        map.insert(
            record::LABEL_CHUNK.to_string(),
            Value::String(chunk.to_string()),
        );
        map.insert(
            LABEL_REVISION.to_string(),
            Value::String(revision.to_string()),
        );
        map.insert(
            LABEL_RECORD.to_string(),
            Value::String("release".to_string()),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": record::SECRET_TYPE,
        "metadata": { "name": format!("{name}.{chunk}"), "labels": labels },
    })
}

#[cfg(test)]
mod tests;
