//! An in-process fake API server for the engine's unit tests: a `tower` service behind a real
//! [`kube::Client`], so the engine runs its own requests unchanged.
//!
//! It serves aggregated discovery (captured from the test cluster, trimmed to core/v1
//! namespaces, configmaps, secrets and services, apps/v1 deployments and networking.k8s.io/v1
//! networkpolicies), keeps objects in memory (GET, LIST with an equality `labelSelector` and
//! continue tokens, server-side apply PATCH, DELETE with a uid precondition), records every
//! request, answers injected failures by [`Rule`], and measures how many requests per resource
//! were in flight at once.
//!
//! It is as small as the engine's bookkeeping allows: no validation, no field ownership beyond
//! one `managedFields` entry per manager, no watches. It never touches the network.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use super::apply::{ApplyFailure, ApplyReport, ApplyRequest, Mode};
use super::applyset::Ownership;
use super::reporter::NoopReporter;
use crate::object::Object;

/// `GET /api` with the aggregated-discovery Accept header, trimmed from kube-apiserver 1.36.
const CORE_DISCOVERY: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[
{"metadata":{},"versions":[{"version":"v1","freshness":"Current","resources":[
{"resource":"configmaps","responseKind":{"group":"","version":"","kind":"ConfigMap"},"scope":"Namespaced","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]},
{"resource":"namespaces","responseKind":{"group":"","version":"","kind":"Namespace"},"scope":"Cluster","verbs":["create","delete","get","list","patch","update","watch"]},
{"resource":"secrets","responseKind":{"group":"","version":"","kind":"Secret"},"scope":"Namespaced","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]},
{"resource":"services","responseKind":{"group":"","version":"","kind":"Service"},"scope":"Namespaced","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]}
]}]}]}"#;

/// `GET /apis` with the aggregated-discovery Accept header, trimmed from kube-apiserver 1.36.
const GROUP_DISCOVERY: &str = r#"{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[
{"metadata":{"name":"apps"},"versions":[{"version":"v1","freshness":"Current","resources":[
{"resource":"deployments","responseKind":{"group":"","version":"","kind":"Deployment"},"scope":"Namespaced","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]}
]}]},
{"metadata":{"name":"networking.k8s.io"},"versions":[{"version":"v1","freshness":"Current","resources":[
{"resource":"networkpolicies","responseKind":{"group":"","version":"","kind":"NetworkPolicy"},"scope":"Namespaced","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]}
]}]}]}"#;

/// The namespace of [`ownership`]; [`Fake::new`] creates it.
pub(crate) const NAMESPACE: &str = "demo";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The path, e.g. `/api/v1/namespaces/demo/configmaps/a`.
    pub(crate) path: String,
    /// The query, decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    /// The JSON body, when there was one.
    pub(crate) body: Option<Value>,
}

impl Recorded {
    /// The value of query parameter `key`.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True for a dry run: `dryRun=All` in the query (PATCH) or in the body (DELETE).
    pub(crate) fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
            || self
                .body
                .as_ref()
                .and_then(|b| b.get("dryRun"))
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"))
    }

    /// True for a request that changes the cluster: a PATCH or DELETE that is not a dry run.
    pub(crate) fn is_write(&self) -> bool {
        (self.method == Method::PATCH || self.method == Method::DELETE) && !self.dry_run()
    }

    /// The resource (plural), namespace and name the path addresses.
    fn location(&self) -> Option<Location> {
        Location::parse(&self.path)
    }

    /// The resource (plural) the path addresses, e.g. `configmaps`.
    pub(crate) fn resource(&self) -> Option<String> {
        self.location().map(|l| l.resource)
    }

    /// The object's name, for requests about one object.
    pub(crate) fn name(&self) -> Option<String> {
        self.location().and_then(|l| l.name)
    }

    /// The namespace in the path, if any.
    pub(crate) fn namespace(&self) -> Option<String> {
        self.location().and_then(|l| l.namespace)
    }

    /// True when this is `method` on `resource` (plural), named `name` if given.
    pub(crate) fn is(&self, method: &Method, resource: &str, name: Option<&str>) -> bool {
        self.method == *method
            && self.resource().as_deref() == Some(resource)
            && (name.is_none() || self.name().as_deref() == name)
    }
}

/// An injected failure: requests that match answer `code` with a `Status` instead of being
/// served.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Method,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    dry_run: Option<bool>,
    nth: Option<usize>,
    delay: Option<Duration>,
    status: Value,
    /// How many requests matched so far.
    seen: usize,
}

impl Rule {
    fn new(method: Method, resource: &str, name: Option<&str>) -> Self {
        Rule {
            method,
            resource: resource.to_string(),
            namespace: None,
            name: name.map(str::to_string),
            dry_run: None,
            nth: None,
            delay: None,
            status: status(500, "InternalError", "injected failure"),
            seen: 0,
        }
    }

    /// A server-side apply (dry run or not) of `resource` (plural) `name`.
    pub(crate) fn patch(resource: &str, name: &str) -> Self {
        Rule::new(Method::PATCH, resource, Some(name))
    }

    /// A DELETE of `resource` (plural) `name`.
    pub(crate) fn delete(resource: &str, name: &str) -> Self {
        Rule::new(Method::DELETE, resource, Some(name))
    }

    /// A LIST of `resource` (plural), any page.
    pub(crate) fn list(resource: &str) -> Self {
        Rule::new(Method::GET, resource, None)
    }

    /// Only requests in `namespace`.
    pub(crate) fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Only dry runs.
    pub(crate) fn dry_run_only(mut self) -> Self {
        self.dry_run = Some(true);
        self
    }

    /// Only requests that are not dry runs.
    pub(crate) fn writes_only(mut self) -> Self {
        self.dry_run = Some(false);
        self
    }

    /// Only the `n`th matching request (1-based); the others are served.
    pub(crate) fn nth(mut self, n: usize) -> Self {
        self.nth = Some(n);
        self
    }

    /// Answers after `delay` instead of the fake's delay.
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Answers with this `Status`.
    pub(crate) fn answer(mut self, code: u16, reason: &str, message: &str) -> Self {
        self.status = status(code, reason, message);
        self
    }

    /// Answers 422 as kube-apiserver does for an invalid Service port (captured).
    pub(crate) fn invalid(self, kind: &str, name: &str) -> Self {
        let message = format!(
            "{kind} \"{name}\" is invalid: spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535, inclusive"
        );
        self.answer(422, "Invalid", &message)
    }

    /// Counts `request` if it matches; true when it must fail.
    fn fires(&mut self, request: &Recorded, location: &Location) -> bool {
        let matches = request.method == self.method
            && location.resource == self.resource
            && (self.name.is_none() || location.name == self.name)
            && (self.namespace.is_none() || location.namespace == self.namespace)
            && (self.method != Method::GET || location.name.is_none())
            && self.dry_run.is_none_or(|d| d == request.dry_run());
        if !matches {
            return false;
        }
        self.seen += 1;
        self.nth.is_none_or(|n| n == self.seen)
    }
}

/// A `Status` body, as the API server sends with an error.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

/// What a path addresses: `/api/v1/namespaces/demo/configmaps/a`, `/apis/apps/v1/deployments`,
/// `/api/v1/namespaces/extra` (the Namespace itself).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Location {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let rest = match segments.as_slice() {
            ["api", _version, rest @ ..] | ["apis", _, _version, rest @ ..] => rest,
            _ => return None,
        };
        let owned = |s: Option<&&str>| s.map(|s| (*s).to_string());
        match rest {
            ["namespaces", namespace, resource, name @ ..] => Some(Location {
                resource: (*resource).to_string(),
                namespace: Some((*namespace).to_string()),
                name: owned(name.first()),
            }),
            [resource, name @ ..] if !resource.is_empty() => Some(Location {
                resource: (*resource).to_string(),
                namespace: None,
                name: owned(name.first()),
            }),
            _ => None,
        }
    }

    fn key(&self) -> Key {
        (
            self.resource.clone(),
            self.namespace.clone(),
            self.name.clone().unwrap_or_default(),
        )
    }
}

/// Objects are stored by resource (plural), namespace and name.
type Key = (String, Option<String>, String);

/// The fake's state, behind one lock never held across an await.
#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    requests: Vec<Recorded>,
    rules: Vec<Rule>,
    delay: Duration,
    page_size: Option<usize>,
    /// Requests in flight now and at most, by resource and dry run.
    in_flight: BTreeMap<(String, bool), usize>,
    max_in_flight: BTreeMap<(String, bool), usize>,
    /// The last resourceVersion and uid handed out.
    counter: u64,
}

/// The fake API server. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fake {
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Runs the engine on `objects` with [`request`]'s settings against this fake.
    pub(crate) async fn apply(
        &self,
        objects: &[Object],
        mode: Mode,
    ) -> Result<ApplyReport, ApplyFailure> {
        let ownership = ownership();
        let request = request(objects, &ownership, mode);
        super::apply::apply(&self.client(), &request, &NoopReporter).await
    }

    /// A fake serving the Namespaces `default` and [`NAMESPACE`], with no delay.
    pub(crate) fn new() -> Self {
        let fake = Fake::default();
        fake.add_namespace("default");
        fake.add_namespace(NAMESPACE);
        fake
    }

    /// A client whose every request this fake answers.
    pub(crate) fn client(&self) -> Client {
        let fake = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, Infallible>(fake.handle(request).await) }
        });
        Client::new(service, "default")
    }

    /// Creates a Namespace (without the set's labels: not a member).
    pub(crate) fn add_namespace(&self, name: &str) {
        let mut state = self.lock();
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let stored = state.stamp(namespace, None, "kube-apiserver");
        state
            .objects
            .insert(("namespaces".to_string(), None, name.to_string()), stored);
    }

    /// Makes every answer wait `delay` (so concurrent requests overlap).
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Answers LISTs with at most `n` items per page.
    pub(crate) fn set_page_size(&self, n: usize) {
        self.lock().page_size = Some(n);
    }

    /// Adds an injected failure; the first rule that fires answers.
    pub(crate) fn fail(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Every request so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Forgets the requests so far.
    pub(crate) fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// The most requests about `resource` (plural) that were in flight at once, dry runs or
    /// not.
    pub(crate) fn max_in_flight(&self, resource: &str, dry_run: bool) -> usize {
        self.lock()
            .max_in_flight
            .get(&(resource.to_string(), dry_run))
            .copied()
            .unwrap_or(0)
    }

    /// The stored object.
    pub(crate) fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&key(resource, namespace, name))
            .cloned()
    }

    /// Deletes the stored object behind the engine's back.
    pub(crate) fn remove(&self, resource: &str, namespace: Option<&str>, name: &str) {
        self.lock().objects.remove(&key(resource, namespace, name));
    }

    /// Replaces the stored object by a new one of the same name (a new uid), as when someone
    /// deletes and recreates it.
    pub(crate) fn recreate(&self, resource: &str, namespace: Option<&str>, name: &str) {
        let mut state = self.lock();
        state.counter += 1;
        let uid = format!("uid-{}", state.counter);
        if let Some(object) = state.objects.get_mut(&key(resource, namespace, name)) {
            object["metadata"]["uid"] = Value::String(uid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let url = reqwest::Url::parse(&format!("http://fake{}", parts.uri)).unwrap();
        let recorded = Recorded {
            method: parts.method,
            path: url.path().to_string(),
            query: url
                .query_pairs()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            body: serde_json::from_slice(&bytes).ok(),
        };
        let location = recorded.location();
        let class = (
            location
                .as_ref()
                .map(|l| l.resource.clone())
                .unwrap_or_default(),
            recorded.dry_run(),
        );
        let (injected, delay) = {
            let mut state = self.lock();
            state.requests.push(recorded.clone());
            let now = state.in_flight.entry(class.clone()).or_default();
            *now += 1;
            let now = *now;
            let max = state.max_in_flight.entry(class.clone()).or_default();
            *max = (*max).max(now);
            let delay = state.delay;
            let fired = location.as_ref().and_then(|l| {
                state
                    .rules
                    .iter_mut()
                    .find_map(|r| r.fires(&recorded, l).then(|| (r.status.clone(), r.delay)))
            });
            match fired {
                Some((status, rule_delay)) => (Some(status), rule_delay.unwrap_or(delay)),
                None => (None, delay),
            }
        };
        tokio::time::sleep(delay).await;
        let (code, answer) = {
            let mut state = self.lock();
            if let Some(count) = state.in_flight.get_mut(&class) {
                *count -= 1;
            }
            match injected {
                Some(status) => (status["code"].as_u64().unwrap_or(500) as u16, status),
                None => state.serve(&recorded, location.as_ref()),
            }
        };
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap()
    }
}

fn key(resource: &str, namespace: Option<&str>, name: &str) -> Key {
    (
        resource.to_string(),
        namespace.map(str::to_string),
        name.to_string(),
    )
}

impl State {
    fn serve(&mut self, request: &Recorded, location: Option<&Location>) -> (u16, Value) {
        match (request.path.as_str(), &request.method) {
            ("/api", &Method::GET) => return (200, serde_json::from_str(CORE_DISCOVERY).unwrap()),
            ("/apis", &Method::GET) => {
                return (200, serde_json::from_str(GROUP_DISCOVERY).unwrap());
            }
            _ => {}
        }
        let Some(location) = location else {
            return (
                404,
                status(404, "NotFound", "the server could not find the path"),
            );
        };
        match (&request.method, location.name.is_some()) {
            (&Method::GET, true) => match self.objects.get(&location.key()) {
                Some(object) => (200, object.clone()),
                None => not_found(location),
            },
            (&Method::GET, false) => self.list(request, location),
            (&Method::PATCH, true) => self.apply(request, location),
            (&Method::DELETE, true) => self.delete(request, location),
            _ => (
                405,
                status(405, "MethodNotAllowed", "not served by the fake"),
            ),
        }
    }

    /// A LIST: the objects of the resource (in the namespace, if any) whose labels match the
    /// selector's `key=value` terms, a page at a time (the continue token is the offset).
    fn list(&self, request: &Recorded, location: &Location) -> (u16, Value) {
        let terms: Vec<(&str, &str)> = request
            .param("labelSelector")
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| t.split_once('=').unwrap_or((t, "")))
            .collect();
        let matching: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((resource, namespace, _), _)| {
                *resource == location.resource
                    && (location.namespace.is_none() || *namespace == location.namespace)
            })
            .map(|(_, object)| object)
            .filter(|object| {
                terms
                    .iter()
                    .all(|(k, v)| object["metadata"]["labels"][*k].as_str() == Some(*v))
            })
            .collect();
        let offset: usize = request
            .param("continue")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let limit = request.param("limit").and_then(|l| l.parse().ok());
        let size = match (limit, self.page_size) {
            (Some(l), Some(p)) => l.min(p),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => usize::MAX,
        };
        let page: Vec<&Value> = matching.iter().skip(offset).take(size).copied().collect();
        let next = offset + page.len();
        let mut metadata = json!({"resourceVersion": self.counter.to_string()});
        if next < matching.len() {
            metadata["continue"] = Value::String(next.to_string());
        }
        (
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page}),
        )
    }

    /// A server-side apply: the body replaces the stored object (a dry run stores nothing);
    /// uid, resourceVersion and generation are kept when nothing changed.
    fn apply(&mut self, request: &Recorded, location: &Location) -> (u16, Value) {
        let Some(body) = request.body.clone() else {
            return (400, status(400, "BadRequest", "no body"));
        };
        if let Some(namespace) = &location.namespace
            && !self
                .objects
                .contains_key(&key("namespaces", None, namespace))
        {
            let message = format!("namespaces \"{namespace}\" not found");
            return (404, status(404, "NotFound", &message));
        }
        let manager = request.param("fieldManager").unwrap_or("unknown");
        let key = location.key();
        let previous = self.objects.get(&key).cloned();
        if let Some(previous) = &previous
            && content(previous) == content(&body)
        {
            return (200, previous.clone());
        }
        let stored = self.stamp(body, previous.as_ref(), manager);
        if !request.dry_run() {
            self.objects.insert(key, stored.clone());
        }
        (if previous.is_some() { 200 } else { 201 }, stored)
    }

    /// A DELETE: 404 when absent, 409 when the uid precondition names another object.
    fn delete(&mut self, request: &Recorded, location: &Location) -> (u16, Value) {
        let key = location.key();
        let Some(object) = self.objects.get(&key).cloned() else {
            return not_found(location);
        };
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        let wanted = request
            .body
            .as_ref()
            .and_then(|b| b.pointer("/preconditions/uid"))
            .and_then(Value::as_str);
        if let Some(wanted) = wanted
            && wanted != uid
        {
            let message = format!(
                "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in precondition: {wanted}, UID in object meta: {uid}",
                location.resource, key.2
            );
            return (409, status(409, "Conflict", &message));
        }
        if !request.dry_run() {
            self.objects.remove(&key);
        }
        (200, object)
    }

    /// `object` with the server's metadata: `previous`'s uid (or a new one), a new
    /// resourceVersion, a generation bumped when the spec changed, and one `Apply` entry of
    /// `manager` in managedFields listing the top-level fields it set.
    fn stamp(&mut self, mut object: Value, previous: Option<&Value>, manager: &str) -> Value {
        self.counter += 1;
        let counter = self.counter;
        let old = |field: &str| previous.map(|p| p["metadata"][field].clone());
        let uid = old("uid").unwrap_or_else(|| Value::String(format!("uid-{counter}")));
        let generation = match (old("generation"), previous) {
            (Some(g), Some(p)) if p.get("spec") == object.get("spec") => g,
            (Some(g), Some(_)) => json!(g.as_i64().unwrap_or(0) + 1),
            _ => json!(1),
        };
        let fields: serde_json::Map<String, Value> = object
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "apiVersion" && *k != "kind")
            .map(|(k, _)| (format!("f:{k}"), json!({})))
            .collect();
        let api_version = object["apiVersion"].clone();
        let metadata = &mut object["metadata"];
        metadata["uid"] = uid;
        metadata["resourceVersion"] = Value::String(counter.to_string());
        metadata["generation"] = generation;
        metadata["managedFields"] = json!([{
            "manager": manager, "operation": "Apply", "apiVersion": api_version,
            "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields,
        }]);
        object
    }
}

/// `object` without the fields the server sets.
fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["uid", "resourceVersion", "generation", "managedFields"] {
            metadata.remove(field);
        }
    }
    object
}

fn not_found(location: &Location) -> (u16, Value) {
    let name = location.name.as_deref().unwrap_or_default();
    let message = format!("{} \"{name}\" not found", location.resource);
    (404, status(404, "NotFound", &message))
}

/// The ownership the tests apply with: app `demo`, environment `staging`, parent
/// `ferry-demo` in [`NAMESPACE`].
pub(crate) fn ownership() -> Ownership {
    Ownership::application("demo", "staging", NAMESPACE)
}

/// A request to apply `objects` for real (or as `mode` says), pruning, 32 requests in flight.
pub(crate) fn request<'a>(
    objects: &'a [Object],
    ownership: &'a Ownership,
    mode: Mode,
) -> ApplyRequest<'a> {
    ApplyRequest {
        objects,
        ownership,
        mode,
        force_conflicts: false,
        prune: true,
        reapply: false,
        concurrency: super::DEFAULT_CONCURRENCY,
        establish_timeout: Duration::from_secs(5),
        parent_annotations: BTreeMap::new(),
        capture: false,
        members: Default::default(),
    }
}

/// An object of `kind` (ConfigMap, Service, Namespace, Deployment, NetworkPolicy) named
/// `name`, in `namespace` or the request's default.
pub(crate) fn object(kind: &str, namespace: Option<&str>, name: &str) -> Object {
    let api_version = match kind {
        "Deployment" => "apps/v1",
        "NetworkPolicy" => "networking.k8s.io/v1",
        _ => "v1",
    };
    let mut value = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    if let Some(namespace) = namespace {
        value["metadata"]["namespace"] = Value::String(namespace.to_string());
    }
    match kind {
        "ConfigMap" => value["data"] = json!({"name": name}),
        "Namespace" => {}
        _ => value["spec"] = json!({"name": name}),
    }
    Object::new(value, None).unwrap()
}

/// `n` objects of `kind` named `<prefix>-0`… in the request's default namespace.
pub(crate) fn objects(kind: &str, prefix: &str, n: usize) -> Vec<Object> {
    (0..n)
        .map(|i| object(kind, None, &format!("{prefix}-{i}")))
        .collect()
}

/// The positions in `requests` of those that match `pick`.
pub(crate) fn positions(requests: &[Recorded], pick: impl Fn(&Recorded) -> bool) -> Vec<usize> {
    requests
        .iter()
        .enumerate()
        .filter(|(_, r)| pick(r))
        .map(|(i, _)| i)
        .collect()
}
