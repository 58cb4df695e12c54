//! Which resource serves each kind: the API server's aggregated discovery (two requests), plus
//! the kinds defined by CustomResourceDefinitions of the bundle being applied, which the server
//! cannot know about before they are created.

use std::collections::BTreeMap;

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope};
use serde_json::Value;

use super::error::{ApiCause, Error};
use crate::object::Object;

/// A resolved resource: where objects of a kind live and whether they are namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Cluster or namespaced.
    pub scope: Scope,
}

impl Resolved {
    /// `plural.group`, or `plural` for the core group: the name RBAC and kubectl use.
    pub fn qualified(&self) -> String {
        qualified(&self.resource.plural, &self.resource.group)
    }

    /// True for namespaced kinds.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// `Kind.group` (or `Kind` for the core group): the ApplySet group-kind notation.
    pub fn group_kind(&self) -> String {
        group_kind(&self.resource.kind, &self.resource.group)
    }
}

/// `plural.group`, or `plural` for the core group.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// `Kind.group`, or `Kind` for the core group.
pub fn group_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// Splits an apiVersion into group and version (`v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// Resolves kinds to resources.
pub struct Resolver {
    discovery: Discovery,
    /// Kinds defined by CRDs of the bundle, keyed by (group, version, kind).
    defined: BTreeMap<(String, String, String), Resolved>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("defined", &self.defined)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Runs aggregated discovery (falling back to per-group discovery on old servers).
    ///
    /// # Errors
    /// [`Error::Discovery`] when neither works.
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let discovery = match Discovery::new(client.clone()).run_aggregated().await {
            Ok(discovery) => discovery,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 406 => {
                Discovery::new(client.clone())
                    .run()
                    .await
                    .map_err(|e| Error::Discovery {
                        source: ApiCause::from_kube(&e),
                    })?
            }
            Err(e) => {
                return Err(Error::Discovery {
                    source: ApiCause::from_kube(&e),
                });
            }
        };
        Ok(Resolver {
            discovery,
            defined: BTreeMap::new(),
        })
    }

    /// Learns the kinds that the CustomResourceDefinitions among `objects` define, so their
    /// instances can be resolved before the server serves them.
    pub fn learn_definitions(&mut self, objects: &[Object]) {
        for object in objects.iter().filter(|o| {
            o.id.kind == "CustomResourceDefinition" && o.group() == "apiextensions.k8s.io"
        }) {
            let spec = object.value.get("spec");
            let text = |ptr: &str| {
                spec.and_then(|s| s.pointer(ptr))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let (Some(group), Some(kind), Some(plural)) =
                (text("/group"), text("/names/kind"), text("/names/plural"))
            else {
                continue;
            };
            let scope = match text("/scope").as_deref() {
                Some("Cluster") => Scope::Cluster,
                _ => Scope::Namespaced,
            };
            let versions = spec
                .and_then(|s| s.get("versions"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for version in versions {
                let Some(name) = version.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if version.get("served").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let resource = ApiResource {
                    group: group.clone(),
                    version: name.to_string(),
                    api_version: format!("{group}/{name}"),
                    kind: kind.clone(),
                    plural: plural.clone(),
                };
                self.defined.insert(
                    (group.clone(), name.to_string(), kind.clone()),
                    Resolved {
                        resource,
                        scope: scope.clone(),
                    },
                );
            }
        }
    }

    /// The resource serving `kind` in `api_version`: the server's, else one defined by a CRD
    /// of the bundle.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<Resolved> {
        let (group, version) = split_api_version(api_version);
        let served = self.discovery.get(group).and_then(|g| {
            g.versioned_resources(version)
                .into_iter()
                .find(|(r, _)| r.kind == kind)
        });
        if let Some((resource, caps)) = served {
            return Some(Resolved {
                resource,
                scope: caps.scope,
            });
        }
        self.defined
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .cloned()
    }

    /// True when `kind` in `api_version` is served now (not only defined by the bundle).
    pub fn is_served(&self, api_version: &str, kind: &str) -> bool {
        let (group, version) = split_api_version(api_version);
        self.discovery.get(group).is_some_and(|g| {
            g.versioned_resources(version)
                .iter()
                .any(|(r, _)| r.kind == kind)
        })
    }

    /// The preferred resource for a group-kind (`Deployment.apps`, `ConfigMap`), as recorded in
    /// an ApplySet parent.
    pub fn resolve_group_kind(&self, group_kind: &str) -> Option<Resolved> {
        let (kind, group) = group_kind.split_once('.').unwrap_or((group_kind, ""));
        if let Some((resource, caps)) = self
            .discovery
            .get(group)
            .and_then(|g| g.recommended_kind(kind))
        {
            return Some(Resolved {
                resource,
                scope: caps.scope,
            });
        }
        self.defined
            .iter()
            .find(|((g, _, k), _)| g == group && k == kind)
            .map(|(_, r)| r.clone())
    }
}
