//! The set's live members: listing every member of the recorded and bundled kinds, and the
//! version-independent [`Key`] objects are matched by.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::super::applyset::{self, Ownership, managed_digest};
use super::super::discovery::{Resolved, Resolver};
use super::super::error::{Error, RequestError, Target, Verb};
use crate::object::ObjectRef;

/// An object's identity independent of its API version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::cluster) struct Key {
    group: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

impl Key {
    pub(super) fn new(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        Key {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    pub(in crate::cluster) fn of_id(id: &ObjectRef) -> Self {
        let (group, _) = super::super::discovery::split_api_version(&id.api_version);
        Key::new(group, &id.kind, id.namespace.as_deref(), &id.name)
    }
}

/// A member found on the cluster.
#[derive(Debug, Clone)]
pub(in crate::cluster) struct Live {
    /// Who it is (at the preferred version of its kind).
    pub(in crate::cluster) id: ObjectRef,
    /// Its resource.
    pub(in crate::cluster) resolved: Resolved,
    /// Its uid.
    pub(in crate::cluster) uid: String,
    /// Its resourceVersion.
    pub(in crate::cluster) resource_version: String,
    /// Applied by the field manager (so it may be pruned).
    pub(in crate::cluster) owned: bool,
    /// [`managed_digest`] of the field manager's fields.
    pub(in crate::cluster) managed: Option<String>,
    /// Managers that changed it after the field manager's last apply.
    pub(in crate::cluster) later_managers: Vec<String>,
    /// The full object, when listed in full.
    pub(in crate::cluster) value: Option<Value>,
}

/// Lists the set's members of every group-kind, in every namespace concerned.
pub(in crate::cluster) async fn list_members(
    client: &Client,
    resolver: &Resolver,
    ownership: &Ownership,
    concurrency: usize,
    group_kinds: &BTreeSet<String>,
    namespaces: &BTreeSet<String>,
    full: bool,
) -> Result<BTreeMap<Key, Live>, Error> {
    let mut lists: Vec<(Resolved, Option<String>)> = Vec::new();
    for group_kind in group_kinds {
        let Some(resolved) = resolver.resolve_group_kind(group_kind) else {
            tracing::debug!(%group_kind, "kind no longer served; its members are gone");
            continue;
        };
        // Kinds only defined by this bundle's CRDs have no members yet.
        if !resolver.is_served(&resolved.resource.api_version, &resolved.resource.kind) {
            continue;
        }
        if resolved.namespaced() {
            for ns in namespaces {
                lists.push((resolved.clone(), Some(ns.clone())));
            }
        } else {
            lists.push((resolved, None));
        }
    }
    let selector = ownership.selector();
    let manager = ownership.field_manager.as_str();
    let selector = selector.as_str();
    let pages: Vec<Result<Vec<Live>, RequestError>> = stream::iter(lists)
        .map(|(resolved, namespace)| async move {
            list_one(
                client,
                &resolved,
                namespace.as_deref(),
                selector,
                manager,
                full,
            )
            .await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut live = BTreeMap::new();
    for page in pages {
        for member in page? {
            let key = Key::new(
                &member.resolved.resource.group,
                &member.id.kind,
                member.id.namespace.as_deref(),
                &member.id.name,
            );
            live.insert(key, member);
        }
    }
    Ok(live)
}

/// Lists one kind in one namespace (or cluster-wide), following continue tokens.
async fn list_one(
    client: &Client,
    resolved: &Resolved,
    namespace: Option<&str>,
    selector: &str,
    manager: &str,
    full: bool,
) -> Result<Vec<Live>, RequestError> {
    let api = Api::<DynamicObject>::dynamic(client.clone(), &resolved.resource, &resolved.scope);
    let api = match namespace {
        Some(ns) => api.constrain(ns),
        None => api,
    };
    let target = || Target::list(&resolved.resource.kind, resolved.qualified(), namespace);
    let mut members = Vec::new();
    let mut params = ListParams::default().labels(selector).limit(500);
    loop {
        let continue_token = if full {
            let page = api
                .list(&params)
                .await
                .map_err(|e| RequestError::new(Verb::List, target(), &e))?;
            for object in page.items {
                let value = serde_json::to_value(&object)
                    .ok()
                    .map(|v| with_type(v, &resolved.resource.api_version, &resolved.resource.kind));
                members.push(live_member(resolved, &object.metadata, manager, value));
            }
            page.metadata.continue_
        } else {
            let page = api
                .list_metadata(&params)
                .await
                .map_err(|e| RequestError::new(Verb::List, target(), &e))?;
            for object in page.items {
                members.push(live_member(resolved, &object.metadata, manager, None));
            }
            page.metadata.continue_
        };
        match continue_token.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(members)
}

/// `value` with `apiVersion` and `kind` first (list items come without them).
pub(super) fn with_type(value: Value, api_version: &str, kind: &str) -> Value {
    let Value::Object(fields) = value else {
        return value;
    };
    let mut typed = serde_json::Map::new();
    typed.insert(
        "apiVersion".to_string(),
        Value::String(api_version.to_string()),
    );
    typed.insert("kind".to_string(), Value::String(kind.to_string()));
    for (key, field) in fields {
        if key != "apiVersion" && key != "kind" {
            typed.insert(key, field);
        }
    }
    Value::Object(typed)
}

fn live_member(
    resolved: &Resolved,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    manager: &str,
    value: Option<Value>,
) -> Live {
    if let Some(value) = &value {
        crate::redact::register_object(value);
    }
    Live {
        id: ObjectRef {
            api_version: resolved.resource.api_version.clone(),
            kind: resolved.resource.kind.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        },
        resolved: resolved.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        owned: applyset::applied_by(meta, manager),
        managed: managed_digest(meta, manager),
        later_managers: applyset::later_managers(meta, manager),
        value,
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use crate::cluster::apply::apply;
    use crate::cluster::error::{Error, Verb};
    use crate::cluster::fake::{self, Fake, NAMESPACE, Recorded, Rule, object, objects};
    use crate::cluster::{Mode, NoopReporter};

    /// The LISTs of ConfigMaps in the set's namespace.
    fn config_map_lists(fake: &Fake) -> Vec<Recorded> {
        fake.requests()
            .into_iter()
            .filter(|r| r.is(&Method::GET, "configmaps", None) && r.name().is_none())
            .filter(|r| r.namespace().as_deref() == Some(NAMESPACE))
            .collect()
    }

    #[tokio::test]
    async fn members_on_every_page_are_listed() {
        let fake = Fake::new();
        fake.set_page_size(2);
        let ownership = fake::ownership();
        let client = fake.client();
        let first = objects("ConfigMap", "config", 5);
        apply(
            &client,
            &fake::request(&first, &ownership, Mode::Apply),
            &NoopReporter,
        )
        .await
        .unwrap();
        fake.clear_requests();

        // Every listed ConfigMap left the bundle: all are pruned only if all were listed.
        let bundle = vec![object("Deployment", None, "web")];
        let report = apply(
            &client,
            &fake::request(&bundle, &ownership, Mode::Apply),
            &NoopReporter,
        )
        .await
        .unwrap();
        assert_eq!(report.pruned.len(), 5, "{:?}", report.pruned);
        let tokens: Vec<Option<String>> = config_map_lists(&fake)
            .iter()
            .map(|r| r.param("continue").map(str::to_string))
            .collect();
        assert_eq!(
            tokens,
            [None, Some("2".to_string()), Some("4".to_string())],
            "three pages"
        );
    }

    #[tokio::test]
    async fn a_failed_list_names_the_kind_and_namespace() {
        let fake = Fake::new();
        fake.set_page_size(2);
        let ownership = fake::ownership();
        let client = fake.client();
        let bundle = objects("ConfigMap", "config", 5);
        let request = fake::request(&bundle, &ownership, Mode::Apply);
        apply(&client, &request, &NoopReporter).await.unwrap();
        fake.clear_requests();
        fake.fail(
            Rule::list("configmaps")
                .in_namespace(NAMESPACE)
                .nth(2)
                .answer(500, "InternalError", "etcdserver: request timed out"),
        );

        let failure = apply(&client, &request, &NoopReporter).await.unwrap_err();
        assert_eq!(failure.stage, None);
        let Error::Request(error) = &failure.error else {
            panic!("not a request error: {:?}", failure.error);
        };
        assert_eq!(error.verb, Verb::List);
        assert_eq!(error.target.kind, "ConfigMap");
        assert_eq!(error.target.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(error.to_string(), "failed to list configmaps in demo");
        let lists = config_map_lists(&fake);
        assert_eq!(lists.len(), 2);
        assert_eq!(
            lists[1].param("continue"),
            Some("2"),
            "the second page failed"
        );
        assert!(!fake.requests().iter().any(Recorded::is_write));
    }
}
