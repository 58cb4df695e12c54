//! `ferry provision`: prepare an environment's namespace, idempotently.
//!
//! Creates or updates, with server-side apply under the field manager `ferry-provision`:
//!
//! - the Namespace, labelled for Pod Security `restricted` (enforce, audit and warn, pinned to
//!   [`POD_SECURITY_VERSION`]);
//! - a default-deny NetworkPolicy (ingress and egress), an egress allowance for DNS, and for
//!   each workload of the rendered bundle an ingress allowance for the container ports it
//!   declares;
//! - a ResourceQuota and a LimitRange from the environment file's `quota:` and `limits:`;
//! - the ServiceAccounts the bundle's workloads run as, with
//!   `automountServiceAccountToken: false`;
//! - the deployer Role (and a ClusterRole only when the bundle has cluster-scoped objects) with
//!   exactly the rules of [`crate::cluster::rbac`], bound to the environment file's
//!   `deployers:` (default: a ServiceAccount `ferry-deployer`).
//!
//! Objects it made earlier that are no longer wanted (a quota removed from the file) are
//! pruned. With `print_rbac` it connects only to resolve kinds and returns the RBAC objects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::apply::ClusterOptions;
use super::prepare::{self, ProjectOptions, prepare};
use crate::cluster::discovery::{Resolved, Resolver};
use crate::cluster::rbac::{DeployerAccess, deployer_access};
use crate::cluster::{
    self, ApplyReporter, ApplyRequest, ConnectError, Mode, ObjectResult, Ownership,
};
use crate::object::{Object, ObjectError};
use crate::project::{self, EnvironmentFile};
use crate::release::CheckTarget;
use crate::render::object_yaml;
use crate::ui::{Diagnostic, ExitStatus};

/// The Pod Security Standards version the namespace labels pin.
pub const POD_SECURITY_VERSION: &str = "v1.36";

/// The name of the deployer Role, RoleBinding and default ServiceAccount.
pub const DEPLOYER: &str = "ferry-deployer";

/// What to provision.
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// Project, environment and `--set` overrides (the bundle is rendered to learn its
    /// workloads, ports and kinds).
    pub project: ProjectOptions,
    /// Kubeconfig and context.
    pub cluster: ClusterOptions,
    /// Only build the deployer's RBAC objects and return them; apply nothing.
    pub print_rbac: bool,
    /// Ask the server, change nothing.
    pub dry_run: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// What provisioning did.
#[derive(Debug, Serialize)]
pub struct ProvisionOutcome {
    /// The environment.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The kubeconfig context used.
    pub context: String,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// Provisioned objects, in apply order (empty with `print_rbac`).
    pub objects: Vec<ObjectResult>,
    /// Objects of an earlier provision no longer wanted, deleted.
    pub pruned: Vec<ObjectResult>,
    /// Remarks for people (what was left out and why).
    pub notes: Vec<String>,
    /// The deployer's rules.
    pub access: DeployerAccess,
    /// The deployer's RBAC objects (Role, RoleBinding, and ClusterRole and binding when needed).
    pub rbac: Vec<Value>,
}

impl ProvisionOutcome {
    /// The RBAC objects as multi-document YAML.
    pub fn rbac_yaml(&self) -> String {
        self.rbac
            .iter()
            .map(object_yaml)
            .collect::<Vec<_>>()
            .join("---\n")
    }
}

/// Errors of `ferry provision`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The environment file could not be read again for its provisioning fields.
    #[error(transparent)]
    Project(#[from] project::Error),
    /// A provisioning field of the environment file is invalid.
    #[error("invalid `{field}` in {file}: {reason}")]
    Invalid {
        /// The environment file.
        file: String,
        /// The field, e.g. `quota.pods`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A built object is malformed (a bug).
    #[error("ferry built an invalid object")]
    Build {
        /// Why.
        #[source]
        source: ObjectError,
    },
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Discovery failed, or a kind of the bundle is unknown.
    #[error("failed to resolve the kinds of `{environment}`")]
    Resolve {
        /// The environment.
        environment: String,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
    /// The engine stopped.
    #[error("{}", if *changes == 0 { format!("failed to provision `{environment}`; nothing was changed") } else { format!("provisioning of `{environment}` stopped after changing {changes} objects") })]
    Apply {
        /// The environment.
        environment: String,
        /// Objects changed before the failure.
        changes: usize,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Project(e) => e.exit_status(),
            Error::Invalid { .. } => ExitStatus::BadInput,
            Error::Build { .. } => ExitStatus::Failure,
            Error::Connect(e) => e.exit_status(),
            Error::Resolve { source, .. } => source.exit_status(),
            Error::Apply { changes, .. } if *changes > 0 => ExitStatus::Partial,
            Error::Apply { source, .. } => source.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Project(e) => e.hints(),
            Error::Invalid { .. } => vec![
                "quantities are strings or numbers (`4`, `500m`, `8Gi`); deployer kinds are User, Group or ServiceAccount"
                    .to_string(),
            ],
            Error::Build { .. } => vec!["this is a bug in ferry".to_string()],
            Error::Connect(e) => e.hints(),
            Error::Resolve { environment, source } | Error::Apply { environment, source, .. } => {
                let mut hints: Vec<String> = source
                    .hints()
                    .into_iter()
                    .map(|h| h.replace("<env>", environment))
                    .collect();
                if source.exit_status() == ExitStatus::BadInput
                    && matches!(source.as_ref(), cluster::Error::Request(r) if r.forbidden().is_some())
                {
                    hints.push("provisioning needs an administrator's rights (it creates the namespace and RBAC)".to_string());
                }
                hints
            }
        }
    }
}

/// Provisions the environment (or, with `print_rbac`, only builds the deployer's RBAC).
///
/// # Errors
/// Project and connection errors change nothing; [`Error::Apply`] says how far it got.
pub async fn provision(
    opts: &ProvisionOptions,
    reporter: &dyn ApplyReporter,
) -> Result<ProvisionOutcome, Error> {
    let prepared = prepare(&opts.project)?;
    let env = &prepared.env;
    let path = prepared.project.environment_path(&env.name);
    let file: EnvironmentFile = project::parse_yaml(&path, &project::read(&path)?)?;
    let file_name = path.display().to_string();
    let cluster = opts.cluster.connect(&env.context).await?;
    let app_ownership = Ownership::application(&env.app, &env.name, &env.namespace);

    // The deployer's rules follow from the kinds of the app's bundle.
    let resolve_error = |source| Error::Resolve {
        environment: env.name.clone(),
        source: Box::new(source),
    };
    let mut resolver = Resolver::discover(&cluster.client)
        .await
        .map_err(resolve_error)?;
    resolver.learn_definitions(&prepared.bundle.objects);
    let mut resources: Vec<(Resolved, Option<String>)> = Vec::new();
    for object in &prepared.bundle.objects {
        let Some(resolved) = resolver.resolve(&object.id.api_version, &object.id.kind) else {
            return Err(resolve_error(cluster::Error::UnknownKind {
                object: object.id.clone(),
            }));
        };
        resources.push((resolved, object.id.namespace.clone()));
    }
    let crd_names: Vec<String> = prepared
        .bundle
        .objects
        .iter()
        .filter(|o| o.id.kind == "CustomResourceDefinition")
        .map(|o| o.id.name.clone())
        .collect();
    let proxied: Vec<String> = env
        .gates
        .checks
        .iter()
        .filter_map(|c| match CheckTarget::parse(&c.url) {
            Some(CheckTarget::Service { service, port, .. }) => Some(format!("{service}:{port}")),
            _ => None,
        })
        .collect();
    let access = deployer_access(&resources, &app_ownership, &crd_names, &proxied);
    let subjects = subjects(&file, &env.namespace, &file_name)?;
    let rbac = rbac_objects(&access, &subjects, &env.namespace, &env.app);

    let mut notes = Vec::new();
    if opts.print_rbac {
        return Ok(ProvisionOutcome {
            environment: env.name.clone(),
            namespace: env.namespace.clone(),
            context: cluster.context.clone(),
            dry_run: opts.dry_run,
            objects: Vec::new(),
            pruned: Vec::new(),
            notes,
            access,
            rbac,
        });
    }

    let mut values: Vec<Value> = vec![namespace(&env.namespace)];
    values.extend(network_policies(&prepared.bundle.objects));
    match quota(&file, &file_name)? {
        Some(q) => values.push(q),
        None => notes.push(format!("no ResourceQuota: set `quota:` in {file_name}")),
    }
    match limit_range(&file, &file_name)? {
        Some(l) => values.push(l),
        None => notes.push(format!("no LimitRange: set `limits:` in {file_name}")),
    }
    values.extend(service_accounts(&prepared.bundle.objects, &env.app));
    if file.deployers.is_empty() {
        values.push(service_account(DEPLOYER));
    }
    // Roles in other namespaces than the environment's are printed, not created.
    let others: Vec<&str> = access
        .namespaced
        .keys()
        .filter(|ns| **ns != env.namespace)
        .map(String::as_str)
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "the bundle also has objects in {}: create the deployer's Role there from `ferry provision {} --print-rbac`",
            others.join(", "),
            env.name
        ));
    }
    values.extend(
        rbac.iter()
            .filter(|v| {
                v.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .is_none_or(|ns| ns == env.namespace)
            })
            .cloned(),
    );
    let objects = values
        .into_iter()
        .map(|v| Object::new(v, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Build { source })?;
    // An object the application's bundle has (its ServiceAccount, say) belongs to the
    // bundle's set: one object can be a member of one set only.
    let in_bundle: BTreeSet<(String, String, String)> = prepared
        .bundle
        .objects
        .iter()
        .map(|o| identity(o, &env.namespace))
        .collect();
    let (objects, skipped): (Vec<Object>, Vec<Object>) = objects
        .into_iter()
        .partition(|o| !in_bundle.contains(&identity(o, &env.namespace)));
    for object in &skipped {
        notes.push(format!(
            "{} {} is left to the application's templates, which define it",
            object.id.kind, object.id.name
        ));
    }

    let ownership = Ownership::provision(&env.app, &env.name, &env.namespace);
    let request = ApplyRequest {
        objects: &objects,
        ownership: &ownership,
        mode: if opts.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        },
        force_conflicts: false,
        prune: true,
        reapply: false,
        concurrency: opts.concurrency,
        establish_timeout: Duration::from_secs(60),
        parent_annotations: BTreeMap::new(),
        capture: false,
        members: Default::default(),
    };
    let report = cluster::apply::apply(&cluster.client, &request, reporter)
        .await
        .map_err(|failure| Error::Apply {
            environment: env.name.clone(),
            changes: if opts.dry_run {
                0
            } else {
                failure.report.changes()
            },
            source: Box::new(failure.error),
        })?;
    Ok(ProvisionOutcome {
        environment: env.name.clone(),
        namespace: env.namespace.clone(),
        context: cluster.context.clone(),
        dry_run: opts.dry_run,
        objects: report.objects,
        pruned: report.pruned,
        notes,
        access,
        rbac,
    })
}

/// Kind, namespace (defaulted) and name.
fn identity(object: &Object, namespace: &str) -> (String, String, String) {
    let ns = if crate::render::order::is_cluster_scoped(&object.id.kind) {
        String::new()
    } else {
        object
            .id
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string())
    };
    (object.id.kind.clone(), ns, object.id.name.clone())
}

/// The Namespace, with Pod Security labels.
fn namespace(name: &str) -> Value {
    let mut labels = serde_json::Map::new();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            json!("restricted"),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            json!(POD_SECURITY_VERSION),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}

/// Default deny, DNS egress, and per workload an ingress allowance for its container ports.
fn network_policies(bundle: &[Object]) -> Vec<Value> {
    let mut policies = vec![
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "ferry-default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "ferry-allow-dns"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [
                    {"port": 53, "protocol": "UDP"},
                    {"port": 53, "protocol": "TCP"},
                ]}],
            },
        }),
    ];
    for object in bundle {
        let Some(pod) = object.pod_spec() else {
            continue;
        };
        let selector = object
            .value
            .pointer("/spec/selector/matchLabels")
            .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
            .or_else(|| {
                object
                    .value
                    .pointer("/spec/template/metadata/labels")
                    .or_else(|| object.value.pointer("/metadata/labels"))
            })
            .cloned();
        let Some(selector) = selector else {
            continue;
        };
        let mut ports: BTreeSet<(i64, String)> = BTreeSet::new();
        for container in pod
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for port in container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(number) = port.get("containerPort").and_then(Value::as_i64) {
                    let protocol = port
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("TCP")
                        .to_string();
                    ports.insert((number, protocol));
                }
            }
        }
        if ports.is_empty() {
            continue;
        }
        let ports: Vec<Value> = ports
            .into_iter()
            .map(|(port, protocol)| json!({"port": port, "protocol": protocol}))
            .collect();
        policies.push(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": format!("ferry-allow-{}", object.id.name)},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": ports}],
            },
        }));
    }
    policies
}

/// A quantity written as a string or a number.
fn quantity(value: &Value, file: &str, field: String) -> Result<Value, Error> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(Value::String(s.clone())),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        _ => Err(Error::Invalid {
            file: file.to_string(),
            field,
            reason: "not a quantity".to_string(),
        }),
    }
}

fn quantities(
    map: &BTreeMap<String, Value>,
    file: &str,
    prefix: &str,
) -> Result<serde_json::Map<String, Value>, Error> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), quantity(v, file, format!("{prefix}.{k}"))?)))
        .collect()
}

fn quota(file: &EnvironmentFile, name: &str) -> Result<Option<Value>, Error> {
    if file.quota.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "ferry-quota"},
        "spec": {"hard": quantities(&file.quota, name, "quota")?},
    })))
}

fn limit_range(file: &EnvironmentFile, name: &str) -> Result<Option<Value>, Error> {
    let Some(limits) = &file.limits else {
        return Ok(None);
    };
    let mut item = serde_json::Map::new();
    item.insert("type".to_string(), json!("Container"));
    for (key, map) in [
        ("default", &limits.default),
        ("defaultRequest", &limits.default_request),
        ("max", &limits.max),
        ("min", &limits.min),
    ] {
        if !map.is_empty() {
            item.insert(
                key.to_string(),
                Value::Object(quantities(map, name, &format!("limits.{key}"))?),
            );
        }
    }
    Ok(Some(json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "ferry-limits"},
        "spec": {"limits": [item]},
    })))
}

fn service_account(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name},
        "automountServiceAccountToken": false,
    })
}

/// The ServiceAccounts the workloads run as (`<app>` when none names one).
fn service_accounts(bundle: &[Object], app: &str) -> Vec<Value> {
    let mut names: BTreeSet<String> = bundle
        .iter()
        .filter_map(Object::pod_spec)
        .filter_map(|pod| {
            pod.get("serviceAccountName")
                .or_else(|| pod.get("serviceAccount"))
                .and_then(Value::as_str)
        })
        .filter(|n| !n.is_empty() && *n != "default")
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        names.insert(app.to_string());
    }
    names.iter().map(|n| service_account(n)).collect()
}

/// The RBAC subjects of the deployer.
fn subjects(file: &EnvironmentFile, namespace: &str, name: &str) -> Result<Vec<Value>, Error> {
    if file.deployers.is_empty() {
        return Ok(vec![json!({
            "kind": "ServiceAccount", "name": DEPLOYER, "namespace": namespace,
        })]);
    }
    file.deployers
        .iter()
        .enumerate()
        .map(|(index, d)| match d.kind.as_str() {
            "ServiceAccount" => Ok(json!({
                "kind": "ServiceAccount",
                "name": d.name,
                "namespace": d.namespace.as_deref().unwrap_or(namespace),
            })),
            "User" | "Group" => Ok(json!({
                "kind": d.kind, "name": d.name, "apiGroup": "rbac.authorization.k8s.io",
            })),
            other => Err(Error::Invalid {
                file: name.to_string(),
                field: format!("deployers[{index}].kind"),
                reason: format!("`{other}` is not User, Group or ServiceAccount"),
            }),
        })
        .collect()
}

/// The Role and RoleBinding per namespace, and the ClusterRole and binding when needed.
fn rbac_objects(
    access: &DeployerAccess,
    subjects: &[Value],
    namespace: &str,
    app: &str,
) -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/managed-by": "ferry", "ferry.dev/app": app});
    let mut objects = Vec::new();
    for (ns, rules) in &access.namespaced {
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": DEPLOYER, "namespace": ns, "labels": labels},
            "rules": rules,
        }));
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": DEPLOYER, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEPLOYER},
            "subjects": subjects,
        }));
    }
    if !access.cluster.is_empty() {
        let name = format!("{DEPLOYER}-{namespace}");
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": access.cluster,
        }));
        objects.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        }));
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Object {
        Object::new(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"serviceAccountName": "web-sa", "containers": [
                            {"name": "c", "ports": [{"containerPort": 8080}, {"containerPort": 9090, "protocol": "TCP"}]}
                        ]}}}}),
            None,
        )
        .unwrap()
    }

    #[test]
    fn the_namespace_is_restricted_and_pinned() {
        let ns = namespace("shop");
        let labels = ns.pointer("/metadata/labels").unwrap();
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(
            labels["pod-security.kubernetes.io/warn-version"],
            POD_SECURITY_VERSION
        );
    }

    #[test]
    fn workloads_get_their_ports_allowed() {
        let policies = network_policies(&[deployment()]);
        assert_eq!(policies.len(), 3);
        let allow = &policies[2];
        assert_eq!(allow.pointer("/metadata/name").unwrap(), "ferry-allow-web");
        assert_eq!(
            allow.pointer("/spec/ingress/0/ports").unwrap(),
            &json!([{"port": 8080, "protocol": "TCP"}, {"port": 9090, "protocol": "TCP"}])
        );
    }

    #[test]
    fn service_accounts_come_from_the_workloads() {
        let sas = service_accounts(&[deployment()], "shop");
        assert_eq!(sas.len(), 1);
        assert_eq!(sas[0].pointer("/metadata/name").unwrap(), "web-sa");
        assert_eq!(sas[0]["automountServiceAccountToken"], false);
    }
}
