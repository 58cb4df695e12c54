//! The apply engine: server-side apply of a bundle in dependency waves, then pruning.
//!
//! One run:
//!
//! 1. Resolve every object's kind with discovery (and the bundle's own CRDs); label it with
//!    the [`Ownership`] labels.
//! 2. Read the ApplySet parent, list the live members of every recorded or bundled kind
//!    (metadata only; full objects for a dry run), and record any new kinds in the parent
//!    before creating objects of them (so a crash never leaves members the next run cannot
//!    find).
//! 3. Wave by wave ([`Wave`]: definitions, namespaces, guard rails, RBAC, config, services,
//!    workloads, other kinds, policies): skip objects unchanged since the last apply (same
//!    applied digest, same uid, the field manager's fields untouched), **dry-run the rest on
//!    the server, and apply them only when every one passed**, so a wave with an invalid object
//!    applies nothing, and no later wave starts. Requests within a wave run concurrently, at
//!    most `concurrency` at a time. After the definitions wave, wait for each CRD to be
//!    Established.
//! 4. Prune, in reverse wave order, the listed members that left the bundle **and** that the
//!    field manager applied; members labelled by someone else are reported and left alone.
//! 5. Write the parent's inventory when it changed.
//!
//! # Guarantees
//! - Conflicts with other field managers fail the apply unless `force_conflicts` is set.
//! - In [`Mode::DryRun`] nothing is written: objects are checked with `dryRun=All`, deletions
//!   too, and the parent is left as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::Either;
use futures::{StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::runtime::wait::{await_condition, conditions};
use serde::Serialize;
use serde_json::Value;

use super::applyset::{
    self, Inventory, Ownership, Parent, ParentContent, Record, managed_digest, object_digest,
};
use super::discovery::{Resolved, Resolver};
use super::error::{ApiCause, Error, RequestError, Target, Verb, WaveName};
use super::reporter::ApplyReporter;

mod members;
mod prune;

use crate::object::{Object, ObjectRef};
use crate::render::{Wave, wave};
pub(super) use members::{Key, list_members};
use members::{Live, with_type};

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
    /// The objects, in any order (the engine groups them into waves).
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
    /// Its wave.
    pub wave: Wave,
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
    /// The wave that failed; `None` before the waves (discovery, listing) or while pruning.
    pub wave: Option<Wave>,
    /// Why.
    pub error: Error,
}

/// An object of the bundle, resolved and labelled.
#[derive(Debug, Clone)]
struct Desired {
    id: ObjectRef,
    key: Key,
    resolved: Resolved,
    body: Value,
    digest: String,
    wave: Wave,
    template: Option<PathBuf>,
    /// False when the kind is only defined by a CRD of this bundle.
    served: bool,
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

    fn result(&self, action: Action) -> ObjectResult {
        ObjectResult {
            id: self.id.clone(),
            wave: self.wave,
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
/// An [`ApplyFailure`] (empty report, no wave) when discovery, an object's kind or a read
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
            wave: None,
            error,
        }),
    }
}

impl PreparedApply<'_> {
    /// Applies the waves, prunes and writes the inventory.
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
            Err((wave, error)) => Err(ApplyFailure {
                report,
                wave,
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
        let desired = resolve_all(&resolver, request)?;
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
        let bundle_namespaces = desired
            .iter()
            .filter(|d| d.id.kind == "Namespace" && d.resolved.resource.group.is_empty())
            .map(|d| d.id.name.clone())
            .collect();
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
            previous,
            parent,
            live,
            records: BTreeMap::new(),
            bundle_namespaces,
            parent_ready: false,
        })
    }

    async fn run(
        &mut self,
        report: &mut ApplyReport,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), (Option<Wave>, Error)> {
        let mut grouped: BTreeMap<Wave, Vec<Desired>> = BTreeMap::new();
        for d in &self.desired {
            grouped.entry(d.wave).or_default().push(d.clone());
        }
        let plans: Vec<WavePlan> = grouped
            .into_iter()
            .map(|(wave, objects)| {
                let (to_send, unchanged) = (0..objects.len())
                    .partition(|i| !self.unchanged_since_last_apply(&objects[*i]));
                WavePlan {
                    wave,
                    objects,
                    to_send,
                    unchanged,
                }
            })
            .collect();
        if self.request.mode == Mode::DryRun {
            for plan in &plans {
                reporter.wave_started(plan.wave, plan.objects.len());
                let outcome = self.dry_run_wave(plan, reporter).await;
                reporter.wave_finished(plan.wave);
                match outcome {
                    Ok(results) => report.objects.extend(results),
                    Err(error) => return Err((Some(plan.wave), error)),
                }
            }
        } else {
            self.apply_waves(&plans, report, reporter).await?;
        }
        if self.request.prune {
            self.prune(report, reporter).await.map_err(|e| (None, e))?;
        }
        self.write_inventory().await.map_err(|e| (None, e))?;
        Ok(())
    }

    /// Applies the waves in order, each after its server dry run passed. The dry runs of
    /// later waves run ahead, concurrently with the applies of earlier ones, once the waves
    /// that change what the server accepts (definitions, namespaces, guard rails) are applied.
    async fn apply_waves(
        &mut self,
        plans: &[WavePlan],
        report: &mut ApplyReport,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), (Option<Wave>, Error)> {
        // The last wave whose objects change what later dry runs see.
        let gate = plans
            .iter()
            .filter(|p| p.wave <= Wave::Guardrails && !p.to_send.is_empty())
            .map(|p| p.wave)
            .max();
        let ahead = |p: &WavePlan| gate.is_none_or(|g| p.wave > g) && p.to_send.len() > 1;
        let (gate_tx, gate_rx) = oneshot::channel::<()>();
        let mut checks_tx = Vec::new();
        let mut checks_rx = Vec::new();
        for plan in plans {
            if ahead(plan) {
                let (tx, rx) = oneshot::channel::<Vec<(usize, RequestError)>>();
                checks_tx.push(Some(tx));
                checks_rx.push(Some(rx));
            } else {
                checks_tx.push(None);
                checks_rx.push(None);
            }
        }
        let client = self.client;
        let params = self.patch_params(true);
        let concurrency = self.request.concurrency;
        let checker = async move {
            if gate.is_some() && gate_rx.await.is_err() {
                return;
            }
            for (plan, tx) in plans.iter().zip(checks_tx) {
                let Some(tx) = tx else {
                    continue;
                };
                let failures = check(client, plan, &params, concurrency).await;
                if tx.send(failures).is_err() {
                    return;
                }
            }
        };
        let mut gate_tx = Some(gate_tx);
        let applier = async {
            for (plan, rx) in plans.iter().zip(checks_rx) {
                reporter.wave_started(plan.wave, plan.objects.len());
                let started = std::time::Instant::now();
                let outcome = self.apply_wave(plan, rx, reporter).await;
                reporter.wave_finished(plan.wave);
                match outcome {
                    Ok(results) => {
                        tracing::debug!(
                            wave = super::error::wave_name(plan.wave),
                            objects = results.len(),
                            sent = plan.to_send.len(),
                            elapsed = ?started.elapsed(),
                            "wave done"
                        );
                        report.objects.extend(results);
                    }
                    Err((done, error)) => {
                        report.objects.extend(done);
                        return Err((Some(plan.wave), error));
                    }
                }
                if Some(plan.wave) == gate
                    && let Some(tx) = gate_tx.take()
                {
                    let _ = tx.send(());
                }
            }
            Ok(())
        };
        let applier = std::pin::pin!(applier);
        let checker = std::pin::pin!(checker);
        match futures::future::select(applier, checker).await {
            // The applier is done (or failed): dry runs still running are of no use.
            Either::Left((outcome, _)) => outcome,
            Either::Right(((), applier)) => applier.await,
        }
    }

    /// Before the first object of a kind the parent does not list is created, add the kind
    /// (and namespace) to the parent, as `kubectl apply --applyset` does.
    async fn record_kinds_before_creating(&mut self) -> Result<(), Error> {
        if self.parent_ready || self.request.mode == Mode::DryRun {
            return Ok(());
        }
        self.parent_ready = true;
        let mut content = self.content(self.parent.inventory.clone());
        content
            .group_kinds
            .extend(self.parent.group_kinds.iter().cloned());
        content
            .namespaces
            .extend(self.parent.namespaces.iter().cloned());
        let covered = self.parent.exists
            && content.group_kinds.is_subset(&self.parent.group_kinds)
            && content.namespaces.is_subset(&self.parent.namespaces);
        if covered {
            return Ok(());
        }
        content.annotations = self
            .parent
            .annotations
            .iter()
            .filter(|(k, _)| self.request.parent_annotations.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        applyset::write_parent(self.client, self.request.ownership, &content).await?;
        self.parent.exists = true;
        self.parent.group_kinds = content.group_kinds;
        self.parent.namespaces = content.namespaces;
        Ok(())
    }

    fn content(&self, inventory: Inventory) -> ParentContent {
        let own = &self.request.ownership.namespace;
        ParentContent {
            group_kinds: self
                .desired
                .iter()
                .map(|d| d.resolved.group_kind())
                .collect(),
            namespaces: self
                .desired
                .iter()
                .filter_map(|d| d.id.namespace.clone())
                .filter(|ns| ns != own)
                .collect(),
            inventory,
            annotations: self.request.parent_annotations.clone(),
        }
    }

    /// The final write: the new inventory, and only the bundle's kinds (unless pruning is off,
    /// in which case members of other kinds may remain).
    async fn write_inventory(&mut self) -> Result<(), Error> {
        if self.request.mode == Mode::DryRun {
            return Ok(());
        }
        let objects: Vec<Record> = self.records.values().cloned().collect();
        let mut content = self.content(Inventory { objects });
        if !self.request.prune {
            content
                .group_kinds
                .extend(self.parent.group_kinds.iter().cloned());
            content
                .namespaces
                .extend(self.parent.namespaces.iter().cloned());
        }
        if content.matches(&self.parent) {
            return Ok(());
        }
        applyset::write_parent(self.client, self.request.ownership, &content).await
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

    fn patch_params(&self, dry_run: bool) -> PatchParams {
        PatchParams {
            dry_run,
            force: self.request.force_conflicts,
            field_manager: Some(self.request.ownership.field_manager.clone()),
            field_validation: Some(ValidationDirective::Strict),
        }
    }

    /// Applies one wave whose dry run is `checked` (or checks it here when `None`). On
    /// failure, returns what was done in the wave before it.
    async fn apply_wave(
        &mut self,
        plan: &WavePlan,
        checked: Option<oneshot::Receiver<Vec<(usize, RequestError)>>>,
        reporter: &dyn ApplyReporter,
    ) -> Result<Vec<ObjectResult>, (Vec<ObjectResult>, Error)> {
        let wave = plan.wave;
        let objects = &plan.objects;
        let mut results: Vec<Option<ObjectResult>> = vec![None; objects.len()];
        for &index in &plan.unchanged {
            let d = &objects[index];
            if let Some(record) = self.previous_record(&d.key).cloned() {
                self.records.insert(d.key.clone(), record);
            }
            let result = d.result(Action::Unchanged);
            reporter.object_done(&result);
            results[index] = Some(result);
        }
        let done = |results: Vec<Option<ObjectResult>>| results.into_iter().flatten().collect();
        // A lone object needs no separate check: its apply fails or succeeds whole.
        if plan.to_send.len() > 1 {
            reporter.checking(wave, plan.to_send.len());
            let started = std::time::Instant::now();
            let ahead = match checked {
                Some(rx) => rx.await.ok(),
                None => None,
            };
            let failures = match ahead {
                Some(failures) => failures,
                None => {
                    let params = self.patch_params(true);
                    check(self.client, plan, &params, self.request.concurrency).await
                }
            };
            tracing::debug!(
                wave = super::error::wave_name(wave),
                objects = plan.to_send.len(),
                waited = ?started.elapsed(),
                "dry run of the wave done"
            );
            if !failures.is_empty() {
                return Err((Vec::new(), rejected(wave, failures)));
            }
        }
        if wave > Wave::Namespaces
            && !plan.to_send.is_empty()
            && let Err(error) = self.record_kinds_before_creating().await
        {
            return Err((Vec::new(), error));
        }
        let mut applied = Vec::new();
        let mut failures = Vec::new();
        let params = self.patch_params(false);
        send(
            self.client,
            objects,
            &plan.to_send,
            &params,
            write_concurrency(objects, &plan.to_send, self.request.concurrency),
            |index, outcome| match outcome {
                Ok(response) => {
                    let (result, record) = self.applied(&objects[index], &response);
                    reporter.object_done(&result);
                    applied.push((index, result, record));
                }
                Err(error) => failures.push((index, error)),
            },
        )
        .await;
        for (index, result, record) in applied {
            self.records.insert(objects[index].key.clone(), record);
            results[index] = Some(result);
        }
        if !failures.is_empty() {
            // Only a race (the object changed between the check and the apply) gets here.
            let done: Vec<ObjectResult> = done(results);
            return Err((done, rejected(wave, failures)));
        }
        if wave == Wave::Definitions
            && let Err(error) = self.wait_established(objects, reporter).await
        {
            return Err((done(results), error));
        }
        Ok(done(results))
    }

    /// The result of a real apply, and its inventory record.
    fn applied(&self, d: &Desired, response: &DynamicObject) -> (ObjectResult, Record) {
        let manager = &self.request.ownership.field_manager;
        let meta = &response.metadata;
        let action = match self.live.get(&d.key) {
            Some(live) if meta.resource_version.as_deref() == Some(&live.resource_version) => {
                Action::Unchanged
            }
            // The resourceVersion also moves when a controller writes the status between the
            // list and the apply: compare what the apply is about.
            Some(live) => match (&live.value, serde_json::to_value(response)) {
                (Some(before), Ok(after)) if super::diff::same(before, &after) => Action::Unchanged,
                _ => Action::Configured,
            },
            None => {
                let others = meta
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|e| e.manager.as_deref() != Some(manager.as_str()));
                if others {
                    Action::Adopted
                } else {
                    Action::Created
                }
            }
        };
        let record = Record {
            api_version: d.id.api_version.clone(),
            kind: d.id.kind.clone(),
            namespace: d.id.namespace.clone(),
            name: d.id.name.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            digest: d.digest.clone(),
            managed: managed_digest(meta, manager).unwrap_or_default(),
        };
        let mut result = d.result(action);
        result.generation = meta.generation;
        if self.request.capture {
            result.before = self.live.get(&d.key).and_then(|l| l.value.clone());
            result.after = serde_json::to_value(response)
                .ok()
                .map(|v| with_type(v, &d.id.api_version, &d.id.kind));
        }
        (result, record)
    }

    async fn dry_run_wave(
        &mut self,
        plan: &WavePlan,
        reporter: &dyn ApplyReporter,
    ) -> Result<Vec<ObjectResult>, Error> {
        let wave = plan.wave;
        let objects = &plan.objects;
        let to_send = &plan.to_send;
        let mut results: Vec<Option<ObjectResult>> = vec![None; objects.len()];
        for &index in &plan.unchanged {
            let result = objects[index].result(Action::Unchanged);
            reporter.object_done(&result);
            results[index] = Some(result);
        }
        // Objects whose kind the server does not serve yet cannot be checked.
        let (checkable, unchecked): (Vec<usize>, Vec<usize>) =
            to_send.iter().partition(|i| objects[**i].served);
        for index in unchecked {
            results[index] = Some(self.unchecked(&objects[index]));
        }
        let mut answers = Vec::new();
        let params = self.patch_params(true);
        send(
            self.client,
            objects,
            &checkable,
            &params,
            self.request.concurrency,
            |index, outcome| answers.push((index, outcome)),
        )
        .await;
        answers.sort_by_key(|(index, _)| *index);
        let mut failures = Vec::new();
        let mut missing_before = Vec::new();
        for (index, outcome) in answers {
            let d = &objects[index];
            match outcome {
                Ok(response) => {
                    if !self.live.contains_key(&d.key) {
                        missing_before.push(index);
                    }
                    let after = serde_json::to_value(&response).ok();
                    let before = self.live.get(&d.key).and_then(|l| l.value.clone());
                    let mut result = d.result(Action::Unchanged);
                    result.generation = response.metadata.generation;
                    result.before = before;
                    result.after = after;
                    results[index] = Some(result);
                }
                Err(error)
                    if error
                        .missing_namespace()
                        .is_some_and(|ns| self.bundle_namespaces.contains(ns)) =>
                {
                    results[index] = Some(self.unchecked(d));
                }
                Err(error) => failures.push((index, error)),
            }
        }
        if !failures.is_empty() {
            return Err(rejected(wave, failures));
        }
        // Objects not among the labelled members may still exist (unlabelled): look.
        let found = self.get_unlabelled(objects, &missing_before).await?;
        for index in to_send {
            let Some(result) = results[*index].as_mut() else {
                continue;
            };
            if result.unchecked {
                reporter.object_done(result);
                continue;
            }
            let labelled = self.live.contains_key(&objects[*index].key);
            if !labelled {
                result.before = found.get(index).cloned();
            }
            result.action = match (&result.before, labelled) {
                (None, _) => Action::Created,
                (Some(_), false) => Action::Adopted,
                (Some(before), true) => match &result.after {
                    Some(after) if super::diff::same(before, after) => Action::Unchanged,
                    _ => Action::Configured,
                },
            };
            reporter.object_done(result);
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn unchecked(&self, d: &Desired) -> ObjectResult {
        let mut result = d.result(Action::Created);
        result.unchecked = true;
        result.after = Some(d.body.clone());
        result
    }

    /// Reads objects that exist without the set's label, for dry runs.
    async fn get_unlabelled(
        &self,
        objects: &[Desired],
        indices: &[usize],
    ) -> Result<BTreeMap<usize, Value>, Error> {
        let client = self.client;
        let answers: Vec<(usize, Result<Option<DynamicObject>, RequestError>)> =
            stream::iter(indices.iter().copied())
                .map(|index| {
                    let d = &objects[index];
                    async move {
                        let outcome = d
                            .api(client)
                            .get_opt(&d.id.name)
                            .await
                            .map_err(|e| RequestError::new(Verb::Get, d.target(), &e));
                        (index, outcome)
                    }
                })
                .buffer_unordered(self.request.concurrency.max(1))
                .collect()
                .await;
        let mut found = BTreeMap::new();
        for (index, outcome) in answers {
            if let Some(object) = outcome?
                && let Ok(value) = serde_json::to_value(&object)
            {
                found.insert(index, value);
            }
        }
        Ok(found)
    }

    /// Waits for every CRD of the definitions wave to be Established.
    async fn wait_established(
        &self,
        objects: &[Desired],
        reporter: &dyn ApplyReporter,
    ) -> Result<(), Error> {
        let names: Vec<&str> = objects
            .iter()
            .filter(|d| {
                d.id.kind == "CustomResourceDefinition"
                    && d.resolved.resource.group == "apiextensions.k8s.io"
            })
            .map(|d| d.id.name.as_str())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        reporter.waiting(&format!(
            "{} CustomResourceDefinition{} to be established",
            names.len(),
            if names.len() == 1 { "" } else { "s" }
        ));
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let timeout = self.request.establish_timeout;
        let waits = names.iter().map(|name| {
            let api = api.clone();
            async move {
                let wait = await_condition(api, name, conditions::is_crd_established());
                match tokio::time::timeout(timeout, wait).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(Error::Request(RequestError {
                        verb: Verb::Watch,
                        target: Box::new(Target {
                            kind: "CustomResourceDefinition".to_string(),
                            resource: Some(
                                "customresourcedefinitions.apiextensions.k8s.io".to_string(),
                            ),
                            namespace: None,
                            name: Some((*name).to_string()),
                            template: None,
                        }),
                        source: ApiCause::Transport {
                            message: super::error::chain_text(&error),
                        },
                    })),
                    Err(_) => Err(Error::NotEstablished {
                        name: (*name).to_string(),
                        waited: timeout,
                    }),
                }
            }
        });
        for outcome in futures::future::join_all(waits).await {
            outcome?;
        }
        Ok(())
    }
}

/// The objects of one wave and what to do with them.
#[derive(Debug)]
struct WavePlan {
    wave: Wave,
    objects: Vec<Desired>,
    /// Indices of the objects to send.
    to_send: Vec<usize>,
    /// Indices of the objects unchanged since the last apply (not sent).
    unchanged: Vec<usize>,
}

/// How many writes of a wave to keep in flight: `concurrency`, but at most
/// [`SERVICE_WRITE_CONCURRENCY`] when the wave writes Services.
fn write_concurrency(objects: &[Desired], indices: &[usize], concurrency: usize) -> usize {
    let writes_services = indices.iter().any(|&i| {
        let d = &objects[i];
        d.id.kind == "Service" && d.resolved.resource.group.is_empty()
    });
    if writes_services {
        concurrency.min(SERVICE_WRITE_CONCURRENCY)
    } else {
        concurrency
    }
}

/// Sends the objects at `indices` with server-side apply (`params` says whether as a dry run),
/// at most `concurrency` at a time, calling `each` as each answer arrives.
async fn send(
    client: &Client,
    objects: &[Desired],
    indices: &[usize],
    params: &PatchParams,
    concurrency: usize,
    mut each: impl FnMut(usize, Result<DynamicObject, RequestError>),
) {
    let verb = if params.dry_run {
        Verb::DryRun
    } else {
        Verb::Apply
    };
    let mut answers = stream::iter(indices.iter().copied())
        .map(|index| {
            let d = &objects[index];
            async move {
                let outcome = d
                    .api(client)
                    .patch(&d.id.name, params, &Patch::Apply(&d.body))
                    .await
                    .map_err(|e| RequestError::new(verb, d.target(), &e));
                (index, outcome)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((index, outcome)) = answers.next().await {
        each(index, outcome);
    }
}

/// The server's dry run of the objects a wave sends: the failures, by index.
async fn check(
    client: &Client,
    plan: &WavePlan,
    params: &PatchParams,
    concurrency: usize,
) -> Vec<(usize, RequestError)> {
    let mut failures = Vec::new();
    send(
        client,
        &plan.objects,
        &plan.to_send,
        params,
        concurrency,
        |index, outcome| {
            if let Err(error) = outcome {
                failures.push((index, error));
            }
        },
    )
    .await;
    failures
}

/// The wave's failures as one error, the first in apply order as the cause.
fn rejected(wave: Wave, mut failures: Vec<(usize, RequestError)>) -> Error {
    failures.sort_by_key(|(index, _)| *index);
    let mut failures: Vec<RequestError> = failures.into_iter().map(|(_, e)| e).collect();
    let first = failures.remove(0);
    Error::Rejected {
        wave: WaveName(wave),
        count: failures.len() + 1,
        first,
        others: failures,
    }
}

/// Resolves, namespaces and labels every object of the request.
fn resolve_all(resolver: &Resolver, request: &ApplyRequest<'_>) -> Result<Vec<Desired>, Error> {
    let mut cache: BTreeMap<(String, String), Option<(Resolved, bool)>> = BTreeMap::new();
    let labels = request.ownership.member_labels();
    let mut desired = Vec::with_capacity(request.objects.len());
    for object in request.objects {
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
        let key = Key::new(
            &resolved.resource.group,
            &id.kind,
            id.namespace.as_deref(),
            &id.name,
        );
        desired.push(Desired {
            digest: object_digest(&body),
            wave: wave(&id.kind),
            template: object.origin.as_ref().map(|o| o.template.clone()),
            id,
            key,
            resolved,
            body,
            served,
        });
    }
    Ok(desired)
}
