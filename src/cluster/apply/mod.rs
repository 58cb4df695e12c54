//! The apply engine: server-side apply of a bundle along its dependency plan, then pruning.
//!
//! One run:
//!
//! 1. Resolve every object's kind with discovery (and the bundle's own CRDs); label it with
//!    the [`Ownership`] labels; place it in the [`crate::plan`] (refusing a declared
//!    dependency that is unknown or circular before anything is read or written).
//! 2. Read the ApplySet parent, list the live members of every recorded or bundled kind, and
//!    skip objects unchanged since the last apply (same applied digest, same uid, the field
//!    manager's fields untouched).
//! 3. **One server-side dry run of everything to send, in parallel, before anything is
//!    written**: one invalid object anywhere and nothing is applied. Objects the server cannot
//!    check yet, because their namespace or kind is created by the bundle itself, are checked
//!    as soon as the step that creates it is applied, before the next step starts.
//! 4. Step by step ([`crate::plan::Step`]): apply every object of the step concurrently, at most
//!    `concurrency` requests in flight and at most [`SERVICE_WRITE_CONCURRENCY`] Services;
//!    after a step with CRDs, wait for them to be Established. Before the first object of a
//!    kind the parent does not list is created, the parent records the kind, so a crash never
//!    leaves members the next run cannot find.
//! 5. Prune, workloads first, the listed members that left the bundle **and** that the field
//!    manager applied; members labelled by someone else are reported and left alone.
//! 6. Write the parent's inventory when it changed.
//!
//! # Guarantees
//! - Conflicts with other field managers fail the apply unless `force_conflicts` is set.
//! - NetworkPolicies and PodDisruptionBudgets exist before any workload is written.
//! - In [`Mode::DryRun`] nothing is written: objects are checked with `dryRun=All`, deletions
//!   too, and the parent is left as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, PatchParams, ValidationDirective};
use serde::Serialize;
use serde_json::Value;

use super::applyset::{self, Ownership, Parent, Record, object_digest};
use super::discovery::{Resolved, Resolver};
use super::error::{Error, Target};
use super::reporter::ApplyReporter;

mod dry_run;
mod inventory;
mod members;
mod prune;
mod write;

use crate::object::{Object, ObjectRef};
use crate::plan::{Entry, Plan};
use members::Live;
pub(super) use members::{Key, list_members};

/// Whether the run changes the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Apply and prune for real.
    Apply,
    /// Ask the server what would happen (`dryRun=All`); change nothing.
    DryRun,
}

/// What to apply, and how.
#[derive(Debug, Clone)]
pub struct ApplyRequest<'a> {
    /// The objects, in any order (the engine places them in the dependency plan).
    pub objects: &'a [Object],
    /// Who owns them.
    pub ownership: &'a Ownership,
    /// Apply or dry run.
    pub mode: Mode,
    /// Take over fields other managers own instead of failing on a conflict.
    pub force_conflicts: bool,
    /// Delete owned objects that left the bundle.
    pub prune: bool,
    /// Send every object, even those unchanged since the last apply.
    pub reapply: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How long to wait for each CRD to be Established.
    pub establish_timeout: Duration,
    /// Annotations for the ApplySet parent (e.g. the templates digest).
    pub parent_annotations: BTreeMap<String, String>,
    /// Keep full before/after objects in the results (for diffs).
    pub capture: bool,
    /// Whose objects these are: the set's members, or objects restored as they were.
    pub members: Members<'a>,
}

/// Whose objects a run applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Members<'a> {
    /// Members of the request's ownership: labelled with its set, recorded in its parent's
    /// inventory, pruned when they leave the bundle.
    #[default]
    Owned,
    /// Objects restored as they were (`ferry restore`): each keeps its own labels and is
    /// applied by the field manager at its index in `field_managers` (the request's own for
    /// an index past the end). No parent is read or written and nothing is pruned; the
    /// records of what was applied are returned in [`ApplyReport::records`]. A dry run
    /// compares every object that exists with what the apply would make of it.
    AsIs {
        /// The field manager of each object, by index into the request's objects.
        field_managers: &'a [String],
    },
}

impl Members<'_> {
    /// True for [`Members::AsIs`].
    pub fn as_is(&self) -> bool {
        matches!(self, Members::AsIs { .. })
    }
}

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed without Ferry's labels and now carries them.
    Adopted,
    /// It existed and changed.
    Configured,
    /// It existed and nothing changed.
    Unchanged,
    /// It left the bundle and was deleted.
    Pruned,
}

impl Action {
    /// True when the cluster changed (or, in a dry run, would change).
    pub fn is_change(self) -> bool {
        self != Action::Unchanged
    }

    /// The past-tense verb people read (`created`, `configured`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Pruned => "pruned",
        }
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectResult {
    /// Who it is (namespace filled in, or removed for cluster-scoped kinds).
    pub id: ObjectRef,
    /// The plan step it was applied in (1-based, as `ferry apply --plan` numbers them); none
    /// for pruned objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// What happened (in a dry run: what would happen).
    pub action: Action,
    /// The template it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
    /// `metadata.generation` after the apply (for rollout waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Dry run only: the server could not check it because its kind or namespace is created
    /// by this same bundle.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchecked: bool,
    /// With `capture`: the live object before (server fields included).
    #[serde(skip)]
    pub before: Option<Value>,
    /// With `capture`: the object after (the server's dry-run answer, or the bundle's object
    /// when unchecked).
    #[serde(skip)]
    pub after: Option<Value>,
}

/// Everything a run did, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// True for a dry run.
    pub dry_run: bool,
    /// The bundle's objects, in apply order.
    pub objects: Vec<ObjectResult>,
    /// Objects deleted because they left the bundle, in deletion order.
    pub pruned: Vec<ObjectResult>,
    /// Objects that carry the set's label but were never applied by Ferry: left alone.
    pub kept: Vec<ObjectRef>,
    /// [`Members::AsIs`]: the inventory record of every object applied (its uid and the
    /// digests of what was applied and of its field manager's fields), in no order.
    #[serde(skip)]
    pub records: Vec<Record>,
}

impl ApplyReport {
    /// How many objects changed (or would change): created, adopted, configured or pruned.
    pub fn changes(&self) -> usize {
        self.objects
            .iter()
            .chain(&self.pruned)
            .filter(|r| r.action.is_change())
            .count()
    }
}

/// A run that stopped: what it did before, where it stopped, and why.
#[derive(Debug)]
pub struct ApplyFailure {
    /// What was done before the failure.
    pub report: ApplyReport,
    /// Where it stopped; `None` before the dry run (discovery, planning, listing).
    pub stage: Option<Stage>,
    /// Why.
    pub error: Error,
}

/// Where in a run an apply stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "stage")]
pub enum Stage {
    /// The server dry run of the whole bundle, before anything was written.
    DryRun,
    /// Step `number` (1-based) of `of`.
    Step {
        /// The step, from 1.
        number: usize,
        /// How many steps the plan has.
        of: usize,
    },
    /// Pruning, after every step was applied.
    Prune,
    /// Writing the ApplySet parent's inventory, after every step and the pruning.
    Inventory,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::DryRun => f.write_str("at the server dry run"),
            Stage::Step { number, of } => write!(f, "at step {number} of {of}"),
            Stage::Prune => f.write_str("while pruning"),
            Stage::Inventory => f.write_str("while recording the inventory"),
        }
    }
}

/// An object of the bundle, resolved and labelled.
#[derive(Debug, Clone)]
struct Desired {
    id: ObjectRef,
    key: Key,
    resolved: Resolved,
    body: Value,
    digest: String,
    template: Option<PathBuf>,
    /// False when the kind is only defined by a CRD of this bundle.
    served: bool,
    /// The field manager that applies it.
    field_manager: String,
}

impl Desired {
    fn target(&self) -> Target {
        Target {
            kind: self.id.kind.clone(),
            resource: Some(self.resolved.qualified()),
            namespace: self.id.namespace.clone(),
            name: Some(self.id.name.clone()),
            template: self.template.clone(),
        }
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        let api = Api::dynamic(
            client.clone(),
            &self.resolved.resource,
            &self.resolved.scope,
        );
        match &self.id.namespace {
            Some(ns) => api.constrain(ns),
            None => api,
        }
    }

    fn is(&self, group: &str, kind: &str) -> bool {
        self.id.kind == kind && self.resolved.resource.group == group
    }

    /// True for the objects other objects may be created in or of: Namespaces and CRDs.
    fn creates_scope(&self) -> bool {
        self.is("", "Namespace") || self.is("apiextensions.k8s.io", "CustomResourceDefinition")
    }

    fn result(&self, action: Action, step: usize) -> ObjectResult {
        ObjectResult {
            id: self.id.clone(),
            step: Some(step + 1),
            action,
            template: self.template.clone(),
            generation: None,
            unchecked: false,
            before: None,
            after: None,
        }
    }
}

/// Services in flight at once when applying for real. The API server allocates ClusterIPs
/// one at a time, so more only adds contention: on the test cluster, 60 Service creates take
/// 6.6 ms each with 8 in flight and 13.5 ms each with 32 (dry runs allocate nothing and keep
/// the full concurrency).
pub const SERVICE_WRITE_CONCURRENCY: usize = 8;

/// Runs the engine. See the module documentation for the steps. The same as [`prepare`]
/// followed by [`PreparedApply::run`].
///
/// # Errors
/// An [`ApplyFailure`] with what was done before the failure.
pub async fn apply(
    client: &Client,
    request: &ApplyRequest<'_>,
    reporter: &dyn ApplyReporter,
) -> Result<ApplyReport, ApplyFailure> {
    match prepare(client, request).await {
        Ok(prepared) => prepared.run(reporter).await,
        Err(failure) => {
            reporter.finished();
            Err(failure)
        }
    }
}

/// The reads an apply starts with (discovery, the ApplySet parent, the live members), done
/// and kept: [`PreparedApply::run`] then changes the cluster. Preparing changes nothing, so
/// it may run concurrently with other work; what it read is as of the call.
pub struct PreparedApply<'a> {
    engine: Engine<'a>,
}

/// Reads what an apply of `request` needs, changing nothing.
///
/// # Errors
/// An [`ApplyFailure`] (empty report, no stage) when discovery, an object's kind or a read
/// fails.
pub async fn prepare<'a>(
    client: &'a Client,
    request: &'a ApplyRequest<'a>,
) -> Result<PreparedApply<'a>, ApplyFailure> {
    match Engine::start(client, request).await {
        Ok(engine) => Ok(PreparedApply { engine }),
        Err(error) => Err(ApplyFailure {
            report: ApplyReport {
                dry_run: request.mode == Mode::DryRun,
                ..ApplyReport::default()
            },
            stage: None,
            error,
        }),
    }
}

impl PreparedApply<'_> {
    /// Checks the bundle, applies the steps, prunes and writes the inventory.
    ///
    /// # Errors
    /// An [`ApplyFailure`] with what was done before the failure.
    pub async fn run(mut self, reporter: &dyn ApplyReporter) -> Result<ApplyReport, ApplyFailure> {
        let mut report = ApplyReport {
            dry_run: self.engine.request.mode == Mode::DryRun,
            ..ApplyReport::default()
        };
        let result = self.engine.run(&mut report, reporter).await;
        reporter.finished();
        match result {
            Ok(()) => Ok(report),
            Err((stage, error)) => Err(ApplyFailure {
                report,
                stage: Some(stage),
                error,
            }),
        }
    }
}

/// The state of one run.
struct Engine<'a> {
    client: &'a Client,
    request: &'a ApplyRequest<'a>,
    desired: Vec<Desired>,
    /// The steps, by index into `desired`.
    plan: Plan,
    parent: Parent,
    /// The parent's inventory, by key.
    previous: BTreeMap<Key, Record>,
    live: BTreeMap<Key, Live>,
    /// Records of the new inventory, by key.
    records: BTreeMap<Key, Record>,
    /// Namespaces the bundle creates (for dry runs).
    bundle_namespaces: BTreeSet<String>,
    parent_ready: bool,
}

impl<'a> Engine<'a> {
    async fn start(client: &'a Client, request: &'a ApplyRequest<'a>) -> Result<Self, Error> {
        let started = std::time::Instant::now();
        let mut resolver = Resolver::discover(client).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "discovered resource types");
        resolver.learn_definitions(request.objects);
        let (desired, entries) = resolve_all(&resolver, request)?;
        let plan = crate::plan::plan(&entries).map_err(|e| Error::Plan(Box::new(e)))?;
        if request.members.as_is() {
            if request.prune {
                return Err(Error::PruneAsIs);
            }
            return Ok(Engine {
                client,
                request,
                bundle_namespaces: bundle_namespaces(&desired),
                desired,
                plan,
                previous: BTreeMap::new(),
                parent: Parent::default(),
                live: BTreeMap::new(),
                records: BTreeMap::new(),
                parent_ready: true,
            });
        }
        let parent = applyset::read_parent(client, request.ownership).await?;
        tracing::debug!(
            elapsed = ?started.elapsed(),
            exists = parent.exists,
            records = parent.inventory.objects.len(),
            "read the applyset parent"
        );

        let mut group_kinds: BTreeSet<String> = parent.group_kinds.clone();
        group_kinds.extend(desired.iter().map(|d| d.resolved.group_kind()));
        let mut namespaces: BTreeSet<String> = parent.namespaces.clone();
        namespaces.insert(request.ownership.namespace.clone());
        namespaces.extend(desired.iter().filter_map(|d| d.id.namespace.clone()));
        // Full objects, not metadata: telling "configured" from "unchanged" after an apply
        // needs the content when a controller bumped the resourceVersion meanwhile.
        let live = list_members(
            client,
            &resolver,
            request.ownership,
            request.concurrency,
            &group_kinds,
            &namespaces,
            true,
        )
        .await?;
        tracing::debug!(elapsed = ?started.elapsed(), members = live.len(), "listed the live members");
        let bundle_namespaces = bundle_namespaces(&desired);
        let previous = parent
            .inventory
            .objects
            .iter()
            .map(|r| (Key::of_id(&r.id()), r.clone()))
            .collect();
        Ok(Engine {
            client,
            request,
            desired,
            plan,
            previous,
            parent,
            live,
            records: BTreeMap::new(),
            bundle_namespaces,
            parent_ready: false,
        })
    }

    /// True when the object is as Ferry last applied it: nothing to send.
    fn unchanged_since_last_apply(&self, d: &Desired) -> bool {
        if self.request.reapply || self.request.force_conflicts {
            return false;
        }
        let (Some(live), Some(record)) = (self.live.get(&d.key), self.previous_record(&d.key))
        else {
            return false;
        };
        live.owned
            && record.digest == d.digest
            && record.uid == live.uid
            && live.managed.as_deref() == Some(record.managed.as_str())
    }

    fn previous_record(&self, key: &Key) -> Option<&Record> {
        self.previous.get(key)
    }

    async fn run(
        &mut self,
        report: &mut ApplyReport,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), (Stage, Error)> {
        let (to_send, unchanged): (Vec<usize>, Vec<usize>) = (0..self.desired.len())
            .partition(|&i| !self.unchanged_since_last_apply(&self.desired[i]));
        let checked = self
            .check_up_front(&to_send, reporter)
            .await
            .map_err(|e| (Stage::DryRun, e))?;
        if self.request.mode == Mode::DryRun {
            let results = self
                .dry_run_results(&unchanged, checked, reporter)
                .await
                .map_err(|e| (Stage::DryRun, e))?;
            report.objects.extend(results);
        } else {
            self.apply_steps(&to_send, &checked.deferred, report, reporter)
                .await?;
        }
        if self.request.prune {
            self.prune(report, reporter)
                .await
                .map_err(|e| (Stage::Prune, e))?;
        }
        if self.request.members.as_is() {
            report.records = self.records.values().cloned().collect();
            return Ok(());
        }
        self.write_inventory()
            .await
            .map_err(|e| (Stage::Inventory, e))?;
        Ok(())
    }

    fn patch_params(&self, dry_run: bool) -> PatchParams {
        PatchParams {
            dry_run,
            force: self.request.force_conflicts,
            field_manager: Some(self.request.ownership.field_manager.clone()),
            field_validation: Some(ValidationDirective::Strict),
        }
    }
}

/// The namespaces the bundle creates.
fn bundle_namespaces(desired: &[Desired]) -> BTreeSet<String> {
    desired
        .iter()
        .filter(|d| d.id.kind == "Namespace" && d.resolved.resource.group.is_empty())
        .map(|d| d.id.name.clone())
        .collect()
}

/// Resolves, namespaces and labels every object of the request; with each, its entry for the
/// dependency plan (same order).
fn resolve_all(
    resolver: &Resolver,
    request: &ApplyRequest<'_>,
) -> Result<(Vec<Desired>, Vec<Entry>), Error> {
    let mut cache: BTreeMap<(String, String), Option<(Resolved, bool)>> = BTreeMap::new();
    let labels = match request.members {
        Members::Owned => request.ownership.member_labels(),
        Members::AsIs { .. } => BTreeMap::new(),
    };
    let field_manager = |index: usize| {
        match request.members {
            Members::AsIs { field_managers } => field_managers.get(index).cloned(),
            Members::Owned => None,
        }
        .unwrap_or_else(|| request.ownership.field_manager.clone())
    };
    let mut desired = Vec::with_capacity(request.objects.len());
    let mut entries = Vec::with_capacity(request.objects.len());
    for (index, object) in request.objects.iter().enumerate() {
        let lookup = cache
            .entry((object.id.api_version.clone(), object.id.kind.clone()))
            .or_insert_with(|| {
                resolver
                    .resolve(&object.id.api_version, &object.id.kind)
                    .map(|r| {
                        let served = resolver.is_served(&object.id.api_version, &object.id.kind);
                        (r, served)
                    })
            })
            .clone();
        let Some((resolved, served)) = lookup else {
            return Err(Error::UnknownKind {
                object: object.id.clone(),
            });
        };
        let mut body = object.value.clone();
        let mut id = object.id.clone();
        let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) else {
            // Object::new guarantees metadata.name, so metadata is a mapping.
            continue;
        };
        if resolved.namespaced() {
            let namespace = id
                .namespace
                .clone()
                .unwrap_or_else(|| request.ownership.namespace.clone());
            metadata.insert("namespace".to_string(), Value::String(namespace.clone()));
            id.namespace = Some(namespace);
        } else {
            metadata.remove("namespace");
            id.namespace = None;
        }
        if !labels.is_empty() {
            let entry = metadata
                .entry("labels")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(serde_json::Map::new());
            }
            if let Some(map) = entry.as_object_mut() {
                for (key, value) in &labels {
                    map.insert(key.clone(), Value::String(value.clone()));
                }
            }
        }
        let key = Key::new(
            &resolved.resource.group,
            &id.kind,
            id.namespace.as_deref(),
            &id.name,
        );
        let mut entry = Entry::of(object, id.namespace.clone());
        entry.id = id.clone();
        entry.group = resolved.resource.group.clone();
        entries.push(entry);
        desired.push(Desired {
            digest: object_digest(&body),
            template: object.origin.as_ref().map(|o| o.template.clone()),
            id,
            key,
            resolved,
            body,
            served,
            field_manager: field_manager(index),
        });
    }
    Ok((desired, entries))
}
