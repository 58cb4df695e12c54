//! Ownership, following kubectl's ApplySet conventions (KEP-3659).
//!
//! Every object Ferry applies carries `applyset.kubernetes.io/part-of=<id>` plus
//! `app.kubernetes.io/managed-by=ferry`, `ferry.dev/app` and `ferry.dev/environment`. The id
//! belongs to a *parent* Secret in the environment's namespace, labelled
//! `applyset.kubernetes.io/id=<id>` and annotated with the tooling (`ferry/vX`) and the
//! group-kinds its members have, so pruning lists exactly those kinds, and kubectl recognises
//! the set. The parent also holds Ferry's inventory: per object, the digest of what was
//! applied, its uid and the digest of the fields the field manager owns after the apply.
//! The inventory is what lets a re-apply skip unchanged objects and `status` report drift.
//!
//! An object is *owned* (and so may be pruned) only when it carries the part-of label **and**
//! the server records an `Apply` by Ferry's field manager on it: an object labelled by hand
//! but never applied by Ferry is never deleted.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{Error, RequestError, Target, Verb};
use crate::object::ObjectRef;

/// Label on members: the id of the set they belong to.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
/// Label on the parent: its own id.
pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
/// Annotation on the parent: `<tool>/<version>`.
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
/// Annotation on the parent: the members' group-kinds, comma-separated (`Deployment.apps,Service`).
pub const GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";
/// Annotation on the parent: namespaces with members, besides the parent's own.
pub const NAMESPACES_ANNOTATION: &str = "applyset.kubernetes.io/additional-namespaces";
/// The well-known label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Ferry's label naming the application.
pub const APP_LABEL: &str = "ferry.dev/app";
/// Ferry's label naming the environment.
pub const ENVIRONMENT_LABEL: &str = "ferry.dev/environment";
/// The parent's data key holding the inventory (JSON).
pub const INVENTORY_KEY: &str = "inventory.json.gz";

/// The key of the uncompressed inventory written by earlier versions; still read.
pub const LEGACY_INVENTORY_KEY: &str = "inventory";
/// The parent Secret's type.
pub const PARENT_TYPE: &str = "ferry.dev/applyset";

/// Who owns a set of objects: the application, environment, the parent and the field manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The application's name.
    pub app: String,
    /// The environment's name.
    pub environment: String,
    /// The namespace of the parent (the environment's namespace).
    pub namespace: String,
    /// The parent Secret's name.
    pub parent: String,
    /// The field manager of the applies.
    pub field_manager: String,
}

impl Ownership {
    /// The objects of the application's bundle (`ferry apply`), parent `ferry-<app>`.
    pub fn application(app: &str, environment: &str, namespace: &str) -> Self {
        Ownership {
            app: app.to_string(),
            environment: environment.to_string(),
            namespace: namespace.to_string(),
            parent: format!("ferry-{app}"),
            field_manager: super::FIELD_MANAGER.to_string(),
        }
    }

    /// The objects of `ferry provision`, parent `ferry-<app>-provision`.
    pub fn provision(app: &str, environment: &str, namespace: &str) -> Self {
        Ownership {
            app: app.to_string(),
            environment: environment.to_string(),
            namespace: namespace.to_string(),
            parent: format!("ferry-{app}-provision"),
            field_manager: super::PROVISION_FIELD_MANAGER.to_string(),
        }
    }

    /// The ApplySet id: `applyset-<base64url(sha256(<name>.<namespace>.Secret.))>-v1`.
    pub fn id(&self) -> String {
        let gknn = format!("{}.{}.Secret.", self.parent, self.namespace);
        let hash = Sha256::digest(gknn.as_bytes());
        format!(
            "applyset-{}-v1",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
        )
    }

    /// The labels every member carries.
    pub fn member_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (PART_OF_LABEL.to_string(), self.id()),
            (MANAGED_BY_LABEL.to_string(), "ferry".to_string()),
            (APP_LABEL.to_string(), self.app.clone()),
            (ENVIRONMENT_LABEL.to_string(), self.environment.clone()),
        ])
    }

    /// The label selector of the members.
    pub fn selector(&self) -> String {
        format!("{PART_OF_LABEL}={}", self.id())
    }

    fn parent_target(&self) -> Target {
        Target {
            kind: "Secret".to_string(),
            resource: Some("secrets".to_string()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.parent.clone()),
            template: None,
        }
    }
}

/// What Ferry recorded about one applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `apiVersion` as applied.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The object's uid after the apply.
    pub uid: String,
    /// [`object_digest`] of the object as applied.
    pub digest: String,
    /// [`managed_digest`] of the field manager's fields right after the apply.
    pub managed: String,
}

impl Record {
    /// The object's identity.
    pub fn id(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// Every object of the last apply, sorted by kind, namespace and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// The records.
    pub objects: Vec<Record>,
}

/// The parent Secret as read from the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parent {
    /// True when the Secret exists.
    pub exists: bool,
    /// Its recorded group-kinds.
    pub group_kinds: BTreeSet<String>,
    /// Its recorded additional namespaces.
    pub namespaces: BTreeSet<String>,
    /// Its inventory (empty when absent or unreadable).
    pub inventory: Inventory,
    /// All its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The tooling annotation value of this build: `ferry/v<version>`.
pub fn tooling() -> String {
    format!("ferry/v{}", env!("CARGO_PKG_VERSION"))
}

/// Reads the parent; a missing parent (or namespace) is an empty, non-existing one.
///
/// # Errors
/// A refused or failed read; [`Error::ForeignParent`] when another tool manages it.
pub async fn read_parent(client: &Client, ownership: &Ownership) -> Result<Parent, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &ownership.namespace);
    let secret = match api.get_opt(&ownership.parent).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(Parent::default()),
        Err(e) => {
            return Err(RequestError::new(Verb::Get, ownership.parent_target(), &e).into());
        }
    };
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    let tooling = annotations
        .get(TOOLING_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    if !tooling.starts_with("ferry/") {
        return Err(Error::ForeignParent {
            namespace: ownership.namespace.clone(),
            name: ownership.parent.clone(),
            tooling,
        });
    }
    let split = |key: &str| -> BTreeSet<String> {
        annotations
            .get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let inventory = secret
        .data
        .as_ref()
        .and_then(|d| match d.get(INVENTORY_KEY) {
            Some(gzipped) => decode_inventory(&gzipped.0, true),
            None => d
                .get(LEGACY_INVENTORY_KEY)
                .and_then(|plain| decode_inventory(&plain.0, false)),
        })
        .unwrap_or_default();
    Ok(Parent {
        exists: true,
        group_kinds: split(GROUP_KINDS_ANNOTATION),
        namespaces: split(NAMESPACES_ANNOTATION),
        inventory,
        annotations,
    })
}

/// What to write into the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentContent {
    /// Member group-kinds.
    pub group_kinds: BTreeSet<String>,
    /// Member namespaces other than the parent's.
    pub namespaces: BTreeSet<String>,
    /// The inventory.
    pub inventory: Inventory,
    /// Extra annotations (e.g. the templates digest).
    pub annotations: BTreeMap<String, String>,
}

impl ParentContent {
    /// True when writing this would change nothing in `parent`.
    pub fn matches(&self, parent: &Parent) -> bool {
        parent.exists
            && parent.group_kinds == self.group_kinds
            && parent.namespaces == self.namespaces
            && parent.inventory == self.inventory
            && parent.annotations.get(TOOLING_ANNOTATION) == Some(&tooling())
            && self
                .annotations
                .iter()
                .all(|(k, v)| parent.annotations.get(k) == Some(v))
    }
}

/// Writes the parent with server-side apply (forced: Ferry owns it).
///
/// # Errors
/// A refused or failed apply (e.g. the namespace does not exist).
pub async fn write_parent(
    client: &Client,
    ownership: &Ownership,
    content: &ParentContent,
) -> Result<(), Error> {
    let mut annotations = content.annotations.clone();
    annotations.insert(TOOLING_ANNOTATION.to_string(), tooling());
    annotations.insert(
        GROUP_KINDS_ANNOTATION.to_string(),
        content
            .group_kinds
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
    );
    if !content.namespaces.is_empty() {
        annotations.insert(
            NAMESPACES_ANNOTATION.to_string(),
            content
                .namespaces
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    let mut labels = ownership.member_labels();
    labels.remove(PART_OF_LABEL);
    labels.insert(ID_LABEL.to_string(), ownership.id());
    let inventory = encode_inventory(&content.inventory);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": ownership.parent,
            "namespace": ownership.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "type": PARENT_TYPE,
        "data": { INVENTORY_KEY: base64::engine::general_purpose::STANDARD.encode(inventory) },
    });
    let api: Api<Secret> = Api::namespaced(client.clone(), &ownership.namespace);
    let params = PatchParams::apply(&ownership.field_manager).force();
    api.patch(&ownership.parent, &params, &Patch::Apply(&body))
        .await
        .map_err(|e| RequestError::new(Verb::Apply, ownership.parent_target(), &e))?;
    Ok(())
}

/// The inventory as stored: gzipped JSON, so the parent stays far below the API server's
/// 1 MiB object limit (5,000 records take about 1.5 MB as plain JSON and a third of that
/// gzipped, the digests being most of it).
pub fn encode_inventory(inventory: &Inventory) -> Vec<u8> {
    use std::io::Write;
    let json = serde_json::to_vec(inventory).unwrap_or_default();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .unwrap_or_default()
}

/// Reads a stored inventory (`gzipped` or plain JSON); an unreadable one is ignored with a
/// warning (the next apply then sends every object and writes a fresh one).
fn decode_inventory(bytes: &[u8], gzipped: bool) -> Option<Inventory> {
    use std::io::Read;
    let mut json = Vec::new();
    let bytes = if gzipped {
        if let Err(error) = flate2::read::GzDecoder::new(bytes).read_to_end(&mut json) {
            tracing::warn!(%error, "ignoring an unreadable inventory in the applyset parent");
            return None;
        }
        json.as_slice()
    } else {
        bytes
    };
    match serde_json::from_slice::<Inventory>(bytes) {
        Ok(inventory) => Some(inventory),
        Err(error) => {
            tracing::warn!(%error, "ignoring an unreadable inventory in the applyset parent");
            None
        }
    }
}

/// The hex SHA-256 of an object's JSON as applied.
pub fn object_digest(value: &Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The `Apply` entry of `manager` in an object's managed fields (main resource only).
fn apply_entry<'a>(
    meta: &'a ObjectMeta,
    manager: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> {
    meta.managed_fields.as_ref()?.iter().find(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().unwrap_or_default().is_empty()
    })
}

/// True when `manager` has applied the object (so Ferry may prune it).
pub fn applied_by(meta: &ObjectMeta, manager: &str) -> bool {
    apply_entry(meta, manager).is_some()
}

/// The hex SHA-256 of the fields `manager` owns by `Apply`; `None` when it owns none.
pub fn managed_digest(meta: &ObjectMeta, manager: &str) -> Option<String> {
    let entry = apply_entry(meta, manager)?;
    let fields = entry
        .fields_v1
        .as_ref()
        .map(|f| serde_json::to_vec(&f.0).unwrap_or_default())
        .unwrap_or_default();
    let mut hash = Sha256::new();
    hash.update(entry.api_version.as_deref().unwrap_or_default().as_bytes());
    hash.update(b"\0");
    hash.update(&fields);
    Some(hex::encode(hash.finalize()))
}

/// Other managers that changed the object after `manager`'s last apply (through the main
/// resource or a subresource other than `status`), by name: who drifted it, e.g. `kubectl
/// (scale)`.
pub fn later_managers(meta: &ObjectMeta, manager: &str) -> Vec<String> {
    let ours = apply_entry(meta, manager).and_then(|e| e.time.as_ref());
    let mut names: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() != Some(manager))
        .filter(|e| e.subresource.as_deref() != Some("status"))
        .filter(|e| match (ours, e.time.as_ref()) {
            (Some(ours), Some(time)) => time.0 >= ours.0,
            _ => true,
        })
        .filter_map(|e| {
            let name = e.manager.clone()?;
            Some(match e.subresource.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => format!("{name} ({sub})"),
                None => name,
            })
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {

    #[test]
    fn five_thousand_records_fit_the_parent_and_read_back() {
        let objects: Vec<Record> = (0..5000)
            .map(|i| Record {
                api_version: "v1".to_string(),
                kind: "ConfigMap".to_string(),
                namespace: Some("bench-apply-1234-1".to_string()),
                name: format!("cm-{i:04}"),
                uid: format!("{:08x}-1111-2222-3333-{:012x}", i * 7919, i * 104_729),
                digest: hex::encode(Sha256::digest(format!("d{i}"))),
                managed: hex::encode(Sha256::digest(format!("m{i}"))),
            })
            .collect();
        let inventory = Inventory { objects };
        let stored = encode_inventory(&inventory);
        let in_secret = base64::engine::general_purpose::STANDARD.encode(&stored);
        assert!(
            in_secret.len() < 700 * 1024,
            "{} bytes in the Secret",
            in_secret.len()
        );
        assert_eq!(decode_inventory(&stored, true), Some(inventory.clone()));
        let plain = serde_json::to_vec(&inventory).unwrap();
        assert!(plain.len() > 1024 * 1024, "plain JSON would not fit");
        assert_eq!(decode_inventory(&plain, false), Some(inventory));
        assert_eq!(decode_inventory(b"not gzip", true), None);
    }

    use super::*;

    #[test]
    fn the_id_follows_the_applyset_formula() {
        let ownership = Ownership::application("demo", "staging", "demo-staging");
        let id = ownership.id();
        assert!(id.starts_with("applyset-") && id.ends_with("-v1"), "{id}");
        // base64url of a 32-byte hash without padding is 43 characters.
        assert_eq!(id.len(), "applyset-".len() + 43 + "-v1".len());
        assert!(id.len() <= 63, "a label value has at most 63 characters");
        assert_ne!(
            id,
            Ownership::provision("demo", "staging", "demo-staging").id()
        );
    }

    #[test]
    fn content_matches_only_an_identical_parent() {
        let content = ParentContent {
            group_kinds: BTreeSet::from(["ConfigMap".to_string()]),
            namespaces: BTreeSet::new(),
            inventory: Inventory::default(),
            annotations: BTreeMap::new(),
        };
        let mut parent = Parent {
            exists: true,
            group_kinds: content.group_kinds.clone(),
            annotations: BTreeMap::from([(TOOLING_ANNOTATION.to_string(), tooling())]),
            ..Parent::default()
        };
        assert!(content.matches(&parent));
        parent.group_kinds.insert("Service".to_string());
        assert!(!content.matches(&parent));
    }
}
