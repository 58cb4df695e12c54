//! Reading an environment from its cluster (an adapter): every namespaced object that
//! discovery lists in the namespace, then the cluster-scoped objects it depends on (its
//! Namespace, the CRDs of the kinds it uses, the ClusterRoles and ClusterRoleBindings that
//! bind its ServiceAccounts). What to keep and how to strip it is [`super::normalize`]'s.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use serde_json::Value;

use super::normalize;
use crate::cluster::ApiCause;

/// Requests in flight at once while listing.
const CONCURRENCY: usize = 16;

/// Errors of reading the environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Discovery failed.
    #[error("failed to discover the API server's resources")]
    Discovery(#[source] ApiCause),
    /// A list or get failed.
    #[error("failed to read {resource} in {scope}")]
    Read {
        /// `plural.group`.
        resource: String,
        /// The namespace, or `the cluster`.
        scope: String,
        /// The API's reason.
        #[source]
        source: ApiCause,
    },
}

/// What was read.
#[derive(Debug, Default)]
pub struct Captured {
    /// Normalised objects, namespaced and cluster-scoped.
    pub objects: Vec<Value>,
    /// Objects left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Images the workloads run.
    pub images: BTreeSet<String>,
    /// The uid of `kube-system`, when readable.
    pub cluster_uid: Option<String>,
}

/// Reads the environment in `namespace`.
///
/// # Errors
/// [`Error::Discovery`], [`Error::Read`] (a namespaced list that fails is an error, never a
/// silent partial backup).
pub async fn capture(client: &kube::Client, namespace: &str) -> Result<Captured, Error> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(|e| Error::Discovery(ApiCause::from_kube(&e)))?;
    let mut namespaced = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope == Scope::Namespaced && caps.supports_operation(verbs::LIST) {
                namespaced.push(resource);
            }
        }
    }
    let lists: Vec<Vec<Value>> = stream::iter(namespaced)
        .map(|resource| list(client, resource, Some(namespace)))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = Captured::default();
    let mut groups_used = BTreeSet::new();
    let mut service_accounts = BTreeSet::new();
    let mut cluster_roles = BTreeSet::new();
    for object in lists.into_iter().flatten() {
        out.images.extend(normalize::images(&object));
        if let Some(reason) = normalize::skip_reason(&object) {
            *out.skipped.entry(reason.to_string()).or_default() += 1;
            continue;
        }
        let kind = text(&object, "/kind");
        let api_version = text(&object, "/apiVersion");
        if let Some((group, _)) = api_version.rsplit_once('/') {
            groups_used.insert((group.to_string(), kind.clone()));
        }
        if kind == "ServiceAccount" {
            service_accounts.insert(text(&object, "/metadata/name"));
        }
        if kind == "RoleBinding" && text(&object, "/roleRef/kind") == "ClusterRole" {
            cluster_roles.insert(text(&object, "/roleRef/name"));
        }
        out.objects.push(normalize::normalize(object));
    }

    // The Namespace, with its labels (Pod Security among them).
    let ns_resource = ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&());
    if let Some(ns) = get(client, &ns_resource, namespace).await? {
        out.objects.push(normalize::normalize(ns));
    }
    out.cluster_uid = get(client, &ns_resource, "kube-system")
        .await
        .ok()
        .flatten()
        .map(|ns| text(&ns, "/metadata/uid"))
        .filter(|u| !u.is_empty());

    // CRDs of the custom kinds in use.
    let crd_resource = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    for (group, kind) in &groups_used {
        let Some(api_group) = discovery.get(group) else {
            continue;
        };
        let Some((resource, _)) = api_group.recommended_kind(kind) else {
            continue;
        };
        if let Some(crd) = get(
            client,
            &crd_resource,
            &format!("{}.{}", resource.plural, group),
        )
        .await?
        {
            out.objects.push(normalize::normalize(crd));
        }
    }

    // ClusterRoleBindings whose subjects include the namespace's ServiceAccounts, and the
    // ClusterRoles they and the namespace's RoleBindings refer to.
    let crb_resource = ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&());
    for binding in list(client, crb_resource, None).await? {
        let binds_ours = binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| {
                s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && s.get("namespace").and_then(Value::as_str) == Some(namespace)
                    && s.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| service_accounts.contains(n))
            });
        if binds_ours {
            cluster_roles.insert(text(&binding, "/roleRef/name"));
            out.objects.push(normalize::normalize(binding));
        }
    }
    let cr_resource = ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&());
    for name in cluster_roles {
        if let Some(role) = get(client, &cr_resource, &name).await? {
            out.objects.push(normalize::normalize(role));
        }
    }
    Ok(out)
}

fn text(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn scope_name(namespace: Option<&str>) -> String {
    namespace.map_or_else(|| "the cluster".to_string(), str::to_string)
}

async fn list(
    client: &kube::Client,
    resource: ApiResource,
    namespace: Option<&str>,
) -> Result<Vec<Value>, Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.map_err(|e| Error::Read {
            resource: crate::cluster::discovery::qualified(&resource.plural, &resource.group),
            scope: scope_name(namespace),
            source: ApiCause::from_kube(&e),
        })?;
        for mut item in page.items {
            // Lists leave apiVersion and kind out of items; restore them.
            item.types = Some(kube::api::TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            if let Ok(value) = serde_json::to_value(&item) {
                out.push(value);
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(out)
}

async fn get(
    client: &kube::Client,
    resource: &ApiResource,
    name: &str,
) -> Result<Option<Value>, Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let found = api.get_opt(name).await.map_err(|e| Error::Read {
        resource: crate::cluster::discovery::qualified(&resource.plural, &resource.group),
        scope: "the cluster".to_string(),
        source: ApiCause::from_kube(&e),
    })?;
    Ok(found.map(|mut item| {
        item.types = Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        });
        serde_json::to_value(&item).unwrap_or(Value::Null)
    }))
}
