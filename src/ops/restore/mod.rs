//! `ferry restore`: recreate an environment from a backup, onto its cluster, another cluster
//! (`--to-context`) or another namespace (`--namespace`).
//!
//! One run:
//!
//! 1. Fetch the backup from the store and verify it with the identity (every checksum, the
//!    authenticated manifest, every entry and image blob): a damaged or altered backup stops
//!    here, before the cluster is contacted.
//! 2. Map its objects onto the target ([`crate::backup::remap`]): namespace, image references
//!    (`--registry`, always by digest), Service addresses, the ApplySets they belong to.
//! 3. Ask the target: kinds it does not serve, and a server dry run of every object, forced,
//!    comparing each object that exists with what the restore would make of it. An object
//!    that exists with other content is a conflict: without `--overwrite` nothing is written.
//! 4. Push the images the objects run to the target registry, where it lacks them.
//! 5. Apply along the dependency plan with the engine of [`crate::cluster::apply`]
//!    ([`Members::AsIs`]: each object keeps its labels and is applied by the field manager
//!    of its set), rewrite the ApplySet parents' inventories for the new uids, and wait until
//!    every workload's rollout is complete.
//! 6. Record the restore in the store (`restores/<time>-<rand>.json`).
//!
//! Nothing here prints.

pub mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use self::images::{ImageError, ImageTarget, RestoredImage, restore_images, target_reference};
use super::apply::ClusterOptions;
use super::backup::{self as backup_ops, BackupTarget, read_indexes, resolve, verify_one};
use crate::backup::format::{self, Manifest};
use crate::backup::index::Index;
use crate::backup::keys::Identities;
use crate::backup::remap::{self, Mapping, Renamed, Restorable};
use crate::backup::store::{self, Store};
use crate::cluster::applyset::{self, Inventory, ParentContent, Record};
use crate::cluster::discovery::{Resolver, group_kind, split_api_version};
use crate::cluster::{
    self, Action, ApplyReporter, ApplyRequest, Cluster, ConnectError, Members, Mode, ObjectResult,
};
use crate::object::{Object, ObjectRef};
use crate::release::{NoopRolloutReporter, RolloutError, WaitOptions, wait_for_rollout};
use crate::ui::{Diagnostic, ExitStatus};

/// How long to wait for each CRD of the backup to be Established.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The newest.
    Latest,
    /// One by id (`--from`).
    Id(String),
    /// The newest taken at or before this time (`--at`, RFC 3339).
    At(String),
}

/// Options of `ferry restore`.
#[derive(Debug)]
pub struct RestoreOptions {
    /// The environment whose backups are read.
    pub target: BackupTarget,
    /// Kubeconfig and context (`--to-context` is the context).
    pub cluster: ClusterOptions,
    /// Which backup.
    pub pick: Pick,
    /// `--namespace`: restore into this namespace instead of the backup's.
    pub namespace: Option<String>,
    /// Where the images go.
    pub images: ImageTarget,
    /// The identity that decrypts the backup.
    pub identity: Identities,
    /// Replace objects that exist with other content.
    pub overwrite: bool,
    /// Keep the Services' cluster IPs and node ports.
    pub keep_cluster_ips: bool,
    /// Plan and predict, change nothing.
    pub dry_run: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How long the workloads may take to become healthy.
    pub timeout: Duration,
}

/// What happened (or, in a dry run, would happen) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It did not exist and was created.
    Created,
    /// It existed with the same content.
    Unchanged,
    /// It existed with other content and was replaced (`--overwrite`).
    Overwritten,
    /// It exists with other content and was left alone.
    Conflicted,
    /// The server refused it, or the target does not serve its kind.
    Failed,
    /// Not applied: the restore stopped before its step.
    NotApplied,
}

impl Verdict {
    /// The word people read.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Created => "created",
            Verdict::Unchanged => "unchanged",
            Verdict::Overwritten => "overwritten",
            Verdict::Conflicted => "conflicted",
            Verdict::Failed => "failed",
            Verdict::NotApplied => "not applied",
        }
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredObject {
    /// Who it is on the target.
    pub id: ObjectRef,
    /// The plan step it is applied in (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// What happened.
    pub verdict: Verdict,
    /// Why it conflicted or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How long each phase took, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Fetching and verifying the backup.
    pub fetch_ms: u64,
    /// Discovery and the dry run.
    pub check_ms: u64,
    /// Pushing images.
    pub images_ms: u64,
    /// Applying.
    pub apply_ms: u64,
    /// Waiting for the workloads.
    pub healthy_ms: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub backup: String,
    /// When it was taken.
    pub backup_created_at: String,
    /// The environment.
    pub environment: String,
    /// The namespace restored into.
    pub namespace: String,
    /// The kubeconfig context.
    pub context: String,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// Every object, in plan order.
    pub objects: Vec<RestoredObject>,
    /// The images.
    pub images: Vec<RestoredImage>,
    /// Objects given new names (bindings moved to another namespace).
    pub renamed: Vec<Renamed>,
    /// Release revisions restored.
    pub revisions: Vec<u32>,
    /// Workloads waited for until healthy.
    pub workloads: usize,
    /// From fetching the backup to every workload healthy, in milliseconds.
    pub duration_ms: u64,
    /// The phases.
    pub phases: Phases,
    /// Where the restore was recorded in the store (none for a dry run, or when the store
    /// refused the write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
}

impl RestoreOutcome {
    /// Objects with the verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.objects.iter().filter(|o| o.verdict == verdict).count()
    }

    /// Objects the restore changed (created or overwritten).
    pub fn changes(&self) -> usize {
        self.count(Verdict::Created) + self.count(Verdict::Overwritten)
    }

    /// True when nothing conflicted or failed.
    pub fn clean(&self) -> bool {
        self.objects.iter().all(|o| {
            !matches!(
                o.verdict,
                Verdict::Conflicted | Verdict::Failed | Verdict::NotApplied
            )
        })
    }
}

/// Errors of `ferry restore`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Project, identity or store errors.
    #[error(transparent)]
    Backup(#[from] backup_ops::Error),
    /// No backup matches `--from` / `--at`, or there is none.
    #[error("{what} in {store}")]
    NoBackup {
        /// What was looked for.
        what: String,
        /// The store.
        store: String,
    },
    /// `--at` is not a time.
    #[error("`--at {value}` is not an RFC 3339 time (e.g. 2026-12-01T02:00:00Z)")]
    BadTime {
        /// The text.
        value: String,
    },
    /// The backup failed verification: nothing was applied.
    #[error("backup {id} failed verification; nothing was applied")]
    Tampered {
        /// The backup.
        id: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The objects cannot be mapped.
    #[error(transparent)]
    Remap(#[from] remap::Error),
    /// The cluster could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Discovery or a read failed before anything was written.
    #[error("failed to read the target cluster; nothing was restored")]
    Read(#[source] Box<cluster::Error>),
    /// Some objects conflict or fail on the target: nothing was written.
    #[error("{}", refusal(outcome))]
    Refused {
        /// Every object's verdict.
        outcome: Box<RestoreOutcome>,
    },
    /// An image could not be restored: nothing was applied.
    #[error("failed to restore the images; nothing was applied")]
    Images(#[source] Box<ImageError>),
    /// The apply stopped.
    #[error("{}", stopped(outcome))]
    Apply {
        /// What was done.
        outcome: Box<RestoreOutcome>,
        /// Why.
        #[source]
        source: Box<cluster::Error>,
    },
    /// Everything was applied but a workload did not become healthy.
    #[error("restored {} objects, but the workloads did not become healthy", outcome.changes())]
    Unhealthy {
        /// What was done.
        outcome: Box<RestoreOutcome>,
        /// Why.
        #[source]
        source: Box<RolloutError>,
    },
}

fn refusal(outcome: &RestoreOutcome) -> String {
    let conflicted = outcome.count(Verdict::Conflicted);
    let failed = outcome.count(Verdict::Failed);
    let mut parts = Vec::new();
    if conflicted > 0 {
        parts.push(format!(
            "{conflicted} object{} exist{} with other content",
            plural(conflicted),
            if conflicted == 1 { "s" } else { "" }
        ));
    }
    if failed > 0 {
        parts.push(format!("{failed} object{} would fail", plural(failed)));
    }
    let verb = if outcome.dry_run {
        "would be refused"
    } else {
        "refused"
    };
    format!(
        "restore of backup {} into {} {verb}: {}; nothing was written",
        outcome.backup,
        outcome.namespace,
        parts.join(" and ")
    )
}

fn stopped(outcome: &RestoreOutcome) -> String {
    let changes = outcome.changes();
    if changes == 0 {
        format!(
            "restore of backup {} into {} failed; nothing was changed",
            outcome.backup, outcome.namespace
        )
    } else {
        format!(
            "restore of backup {} into {} stopped after creating {changes} object{}: the environment is part-way",
            outcome.backup,
            outcome.namespace,
            plural(changes)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Backup(e) => e.exit_status(),
            Error::Store(e) => e.exit_status(),
            Error::Connect(e) => e.exit_status(),
            Error::NoBackup { .. } | Error::BadTime { .. } => ExitStatus::BadInput,
            Error::Tampered { .. }
            | Error::Remap(_)
            | Error::Read(_)
            | Error::Refused { .. }
            | Error::Images(_) => ExitStatus::Failure,
            Error::Apply { outcome, .. } | Error::Unhealthy { outcome, .. } => {
                if outcome.changes() > 0 {
                    ExitStatus::Partial
                } else {
                    ExitStatus::Failure
                }
            }
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Backup(e) => e.hints(),
            Error::Store(e) => e.hints(),
            Error::Connect(e) => e.hints(),
            Error::Images(e) => e.hints(),
            Error::NoBackup { .. } => {
                vec!["run `ferry backup list <env>` to see the backups".to_string()]
            }
            Error::Tampered { problems, .. } => {
                let mut hints: Vec<String> = problems.iter().take(5).cloned().collect();
                hints.push(
                    "restore an earlier backup with --from ID (`ferry backup list <env>`)"
                        .to_string(),
                );
                hints
            }
            Error::Refused { outcome } => {
                let mut hints: Vec<String> = outcome
                    .objects
                    .iter()
                    .filter(|o| matches!(o.verdict, Verdict::Conflicted | Verdict::Failed))
                    .take(5)
                    .map(|o| {
                        format!(
                            "{} {}: {}",
                            o.verdict.as_str(),
                            o.id,
                            o.reason.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                if outcome.count(Verdict::Conflicted) > 0 {
                    hints.push(format!(
                        "add --overwrite to replace what exists, or --namespace N to restore beside it (`ferry restore {} --dry-run` shows every object)",
                        outcome.environment
                    ));
                }
                hints
            }
            Error::Apply { outcome, source } => {
                let mut hints = source.hints();
                hints.push(format!(
                    "fix the cause, then run `ferry restore {} --from {}` again: objects already restored are reported unchanged",
                    outcome.environment, outcome.backup
                ));
                hints
            }
            Error::Unhealthy { outcome, .. } => vec![format!(
                "see `ferry status {}`; the objects are restored, the rollouts did not complete",
                outcome.environment
            )],
            _ => Vec::new(),
        }
    }
}

/// A backup opened and verified.
struct Fetched {
    index: Index,
    manifest: Manifest,
    objects: Vec<Value>,
}

/// Picks, fetches and verifies the backup. Nothing touches a cluster.
async fn fetch(store: &Store, pick: &Pick, identity: &Identities) -> Result<Fetched, Error> {
    let indexes = read_indexes(store).await?;
    let index = match pick {
        Pick::Latest => indexes.into_iter().last(),
        Pick::Id(id) => indexes.into_iter().find(|i| &i.id == id),
        Pick::At(at) => {
            let at = humantime::parse_rfc3339_weak(at)
                .map_err(|_| Error::BadTime { value: at.clone() })?;
            indexes
                .into_iter()
                .rev()
                .find(|i| humantime::parse_rfc3339_weak(&i.created_at).is_ok_and(|t| t <= at))
        }
    }
    .ok_or_else(|| Error::NoBackup {
        what: match pick {
            Pick::Latest => "no backups".to_string(),
            Pick::Id(id) => format!("no backup {id}"),
            Pick::At(at) => format!("no backup taken at or before {at}"),
        },
        store: store.describe(),
    })?;
    let verdict = verify_one(store, &index, Some(identity)).await?;
    if !verdict.problems.is_empty() {
        return Err(Error::Tampered {
            id: index.id.clone(),
            problems: verdict.problems.iter().map(|p| p.describe()).collect(),
        });
    }
    let bytes = store.get(&index.archive.key).await?;
    if format::sha256_hex(&bytes) != index.archive.sha256 {
        // Changed between the verification and this read.
        return Err(Error::Tampered {
            id: index.id.clone(),
            problems: vec![format!("{} changed while it was read", index.archive.key)],
        });
    }
    let opened = format::open(&bytes, identity, &index.archive.key).map_err(|e| {
        backup_ops::Error::WrongIdentity {
            id: index.id.clone(),
            source: Box::new(e),
        }
    })?;
    let Some(manifest) = opened.manifest.clone() else {
        return Err(Error::Tampered {
            id: index.id.clone(),
            problems: vec!["the manifest is missing".to_string()],
        });
    };
    let objects = opened
        .entries
        .iter()
        .filter(|(path, _)| path.starts_with("objects/"))
        .filter_map(|(_, bytes)| serde_json::from_slice::<Value>(bytes).ok())
        .collect();
    Ok(Fetched {
        index,
        manifest,
        objects,
    })
}

/// Restores the environment from a backup.
///
/// # Errors
/// See [`Error`]: everything before [`Error::Apply`] changes nothing.
pub async fn restore(
    opts: &RestoreOptions,
    reporter: &dyn ApplyReporter,
) -> Result<RestoreOutcome, Error> {
    let started = Instant::now();
    let mut phases = Phases::default();
    let target = resolve(&opts.target)?;
    let fetched = fetch(&target.store, &opts.pick, &opts.identity).await?;
    phases.fetch_ms = ms(started.elapsed());

    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| fetched.manifest.namespace.clone());
    let mut images = BTreeMap::new();
    for record in &fetched.manifest.images {
        let to = target_reference(record, opts.images.registry.as_deref())
            .map_err(|e| Error::Images(Box::new(e)))?;
        if to != record.reference {
            images.insert(record.reference.clone(), to);
        }
    }
    let restorable = remap::remap(
        fetched.objects,
        &Mapping {
            app: target.app.clone(),
            environment: target.environment.clone(),
            from_namespace: fetched.manifest.namespace.clone(),
            to_namespace: namespace.clone(),
            images,
            keep_cluster_ips: opts.keep_cluster_ips,
        },
    )?;
    let objects: Vec<Object> = restorable
        .objects
        .iter()
        .filter_map(|v| Object::new(v.clone(), None).ok())
        .collect();

    let checking = Instant::now();
    let cluster = opts.cluster.connect(&target.context).await?;
    let mut outcome = RestoreOutcome {
        backup: fetched.index.id.clone(),
        backup_created_at: fetched.index.created_at.clone(),
        environment: target.environment.clone(),
        namespace: namespace.clone(),
        context: cluster.context.clone(),
        dry_run: opts.dry_run,
        objects: Vec::new(),
        images: Vec::new(),
        renamed: restorable.renamed.clone(),
        revisions: restorable.revisions.iter().copied().collect(),
        workloads: 0,
        duration_ms: 0,
        phases: Phases::default(),
        recorded: None,
    };
    let predicted = predict(&cluster, &objects, &restorable, &namespace, opts, reporter).await?;
    phases.check_ms = ms(checking.elapsed());
    outcome.objects = predicted;
    let refused = outcome
        .objects
        .iter()
        .any(|o| o.verdict == Verdict::Failed || (o.verdict == Verdict::Conflicted));
    if opts.dry_run {
        outcome.phases = phases;
        outcome.duration_ms = ms(started.elapsed());
        return if refused {
            Err(Error::Refused {
                outcome: Box::new(outcome),
            })
        } else {
            Ok(outcome)
        };
    }
    if refused {
        outcome.duration_ms = ms(started.elapsed());
        return Err(Error::Refused {
            outcome: Box::new(outcome),
        });
    }

    let pushing = Instant::now();
    outcome.images = restore_images(
        &target.store,
        &opts.identity,
        &fetched.manifest.images,
        &fetched.index.blobs,
        &opts.images,
    )
    .await
    .map_err(|e| Error::Images(Box::new(e)))?;
    phases.images_ms = ms(pushing.elapsed());

    let applying = Instant::now();
    let report = apply(
        &cluster,
        &objects,
        &restorable,
        &namespace,
        opts,
        &mut outcome,
        reporter,
    )
    .await?;
    write_parents(&cluster, &restorable, &objects, &report.records)
        .await
        .map_err(|source| Error::Apply {
            outcome: Box::new(outcome.clone()),
            source: Box::new(source),
        })?;
    phases.apply_ms = ms(applying.elapsed());

    let waiting = Instant::now();
    let workloads = crate::ops::release::workloads_of(&report.objects, &namespace);
    outcome.workloads = workloads.len();
    if !workloads.is_empty() {
        let waited = wait_for_rollout(
            &cluster.client,
            &workloads,
            opts.timeout,
            WaitOptions::default(),
            &NoopRolloutReporter,
        )
        .await;
        phases.healthy_ms = ms(waiting.elapsed());
        outcome.phases = phases.clone();
        outcome.duration_ms = ms(started.elapsed());
        if let Err(source) = waited {
            return Err(Error::Unhealthy {
                outcome: Box::new(outcome),
                source: Box::new(source),
            });
        }
    }
    outcome.phases = phases;
    outcome.duration_ms = ms(started.elapsed());
    outcome.recorded = record_restore(&target.store, &outcome).await;
    Ok(outcome)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The engine request for the restored objects.
fn request<'a>(
    objects: &'a [Object],
    field_managers: &'a [String],
    ownership: &'a cluster::Ownership,
    mode: Mode,
    force: bool,
    opts: &RestoreOptions,
) -> ApplyRequest<'a> {
    ApplyRequest {
        objects,
        ownership,
        mode,
        force_conflicts: force,
        prune: false,
        reapply: true,
        concurrency: opts.concurrency,
        establish_timeout: ESTABLISH_TIMEOUT,
        parent_annotations: BTreeMap::new(),
        capture: mode == Mode::DryRun,
        members: Members::AsIs { field_managers },
    }
}

/// Kinds the target does not serve, then a forced server dry run of every object: what each
/// would be (created, unchanged, conflicted) or why it would fail. Changes nothing.
async fn predict(
    cluster: &Cluster,
    objects: &[Object],
    restorable: &Restorable,
    namespace: &str,
    opts: &RestoreOptions,
    reporter: &dyn ApplyReporter,
) -> Result<Vec<RestoredObject>, Error> {
    let mut resolver = Resolver::discover(&cluster.client)
        .await
        .map_err(|e| Error::Read(Box::new(e)))?;
    resolver.learn_definitions(objects);
    let unserved: Vec<RestoredObject> = objects
        .iter()
        .filter(|o| resolver.resolve(&o.id.api_version, &o.id.kind).is_none())
        .map(|o| RestoredObject {
            id: o.id.clone(),
            step: None,
            verdict: Verdict::Failed,
            reason: Some(format!(
                "the target cluster does not serve {} {}",
                o.id.api_version, o.id.kind
            )),
        })
        .collect();
    if !unserved.is_empty() {
        return Ok(unserved);
    }
    let ownership = cluster::Ownership::application(&restorable_app(restorable), "", namespace);
    let dry = request(
        objects,
        &restorable.field_managers,
        &ownership,
        Mode::DryRun,
        true,
        opts,
    );
    match cluster::apply::apply(&cluster.client, &dry, reporter).await {
        Ok(report) => Ok(report
            .objects
            .iter()
            .map(|r| predicted(r, opts.overwrite))
            .collect()),
        Err(failure) => match failure.error {
            cluster::Error::Rejected { first, others, .. } => {
                let mut failed: BTreeMap<(String, Option<String>, String), String> =
                    BTreeMap::new();
                for e in std::iter::once(first).chain(others) {
                    failed.insert(
                        (
                            e.target.kind.clone(),
                            e.target.namespace.clone(),
                            e.target.name.clone().unwrap_or_default(),
                        ),
                        e.source.message().unwrap_or("refused").to_string(),
                    );
                }
                Ok(objects
                    .iter()
                    .map(|o| {
                        let key = (o.id.kind.clone(), o.id.namespace.clone(), o.id.name.clone());
                        match failed.get(&key) {
                            Some(reason) => RestoredObject {
                                id: o.id.clone(),
                                step: None,
                                verdict: Verdict::Failed,
                                reason: Some(reason.clone()),
                            },
                            None => RestoredObject {
                                id: o.id.clone(),
                                step: None,
                                verdict: Verdict::Created,
                                reason: None,
                            },
                        }
                    })
                    .collect())
            }
            other => Err(Error::Read(Box::new(other))),
        },
    }
}

/// The app of the first set, for the engine's (unused) ownership.
fn restorable_app(restorable: &Restorable) -> String {
    restorable
        .sets
        .first()
        .map(|s| s.ownership.app.clone())
        .unwrap_or_default()
}

/// A dry-run result as a restore verdict.
fn predicted(result: &ObjectResult, overwrite: bool) -> RestoredObject {
    let (verdict, reason) = match result.action {
        Action::Created => (Verdict::Created, None),
        Action::Unchanged => (Verdict::Unchanged, None),
        Action::Adopted | Action::Configured | Action::Pruned if overwrite => {
            (Verdict::Overwritten, None)
        }
        Action::Adopted | Action::Configured | Action::Pruned => {
            (Verdict::Conflicted, Some(conflict_reason(result)))
        }
    };
    RestoredObject {
        id: result.id.clone(),
        step: result.step,
        verdict,
        reason,
    }
}

/// What differs between the live object and what the restore would make of it.
fn conflict_reason(result: &ObjectResult) -> String {
    let (Some(before), Some(after)) = (&result.before, &result.after) else {
        return "exists with other content".to_string();
    };
    let mut fields: BTreeSet<String> = BTreeSet::new();
    for top in [
        "metadata",
        "spec",
        "data",
        "stringData",
        "rules",
        "subjects",
        "roleRef",
    ] {
        let (b, a) = (before.get(top), after.get(top));
        if top == "metadata" {
            for key in ["labels", "annotations"] {
                if b.and_then(|m| m.get(key)) != a.and_then(|m| m.get(key)) {
                    fields.insert(format!("metadata.{key}"));
                }
            }
        } else if b != a {
            fields.insert(top.to_string());
        }
    }
    if fields.is_empty() {
        "exists with other content".to_string()
    } else {
        format!(
            "exists with other content ({} differ{})",
            fields.into_iter().collect::<Vec<_>>().join(", "),
            ""
        )
    }
}

/// Applies every object that is not unchanged, along the plan.
async fn apply(
    cluster: &Cluster,
    objects: &[Object],
    restorable: &Restorable,
    namespace: &str,
    opts: &RestoreOptions,
    outcome: &mut RestoreOutcome,
    reporter: &dyn ApplyReporter,
) -> Result<cluster::ApplyReport, Error> {
    let verdicts: BTreeMap<ObjectRef, Verdict> = outcome
        .objects
        .iter()
        .map(|o| (o.id.clone(), o.verdict))
        .collect();
    let mut to_send = Vec::new();
    let mut managers = Vec::new();
    for (object, manager) in objects.iter().zip(&restorable.field_managers) {
        if verdicts.get(&object.id) != Some(&Verdict::Unchanged) {
            to_send.push(object.clone());
            managers.push(manager.clone());
        }
    }
    let ownership = cluster::Ownership::application(&restorable_app(restorable), "", namespace);
    let req = request(
        &to_send,
        &managers,
        &ownership,
        Mode::Apply,
        opts.overwrite,
        opts,
    );
    let sent: BTreeSet<ObjectRef> = to_send.iter().map(|o| o.id.clone()).collect();
    match cluster::apply::apply(&cluster.client, &req, reporter).await {
        Ok(report) => {
            settle(outcome, &report.objects, &sent, None);
            Ok(report)
        }
        Err(failure) => {
            settle(
                outcome,
                &failure.report.objects,
                &sent,
                Some(&failure.error),
            );
            Err(Error::Apply {
                outcome: Box::new(outcome.clone()),
                source: Box::new(failure.error),
            })
        }
    }
}

/// Updates the verdicts after the apply: what was applied keeps its predicted verdict (with
/// the step it ran in), what was sent but not applied failed or was not reached.
fn settle(
    outcome: &mut RestoreOutcome,
    applied: &[ObjectResult],
    sent: &BTreeSet<ObjectRef>,
    error: Option<&cluster::Error>,
) {
    let steps: BTreeMap<&ObjectRef, Option<usize>> =
        applied.iter().map(|r| (&r.id, r.step)).collect();
    let refused: BTreeMap<(String, Option<String>, String), String> = match error {
        Some(cluster::Error::Rejected { first, others, .. }) => std::iter::once(first)
            .chain(others)
            .map(|e| {
                (
                    (
                        e.target.kind.clone(),
                        e.target.namespace.clone(),
                        e.target.name.clone().unwrap_or_default(),
                    ),
                    e.source.message().unwrap_or("refused").to_string(),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    for object in &mut outcome.objects {
        if !sent.contains(&object.id) {
            continue;
        }
        match steps.get(&object.id) {
            Some(step) => object.step = *step,
            None => {
                let key = (
                    object.id.kind.clone(),
                    object.id.namespace.clone(),
                    object.id.name.clone(),
                );
                match refused.get(&key) {
                    Some(reason) => {
                        object.verdict = Verdict::Failed;
                        object.reason = Some(reason.clone());
                    }
                    None => object.verdict = Verdict::NotApplied,
                }
            }
        }
    }
}

/// Writes each ApplySet parent of the backup with an inventory of its members as the target
/// now has them (merged with the records of a parent that exists there already).
async fn write_parents(
    cluster: &Cluster,
    restorable: &Restorable,
    objects: &[Object],
    records: &[Record],
) -> Result<(), cluster::Error> {
    let by_id: BTreeMap<ObjectRef, &Record> = records.iter().map(|r| (r.id(), r)).collect();
    for (index, set) in restorable.sets.iter().enumerate() {
        let members: Vec<&Object> = objects
            .iter()
            .zip(&restorable.set_of)
            .filter(|(_, s)| **s == Some(index))
            .map(|(o, _)| o)
            .collect();
        let existing = applyset::read_parent(&cluster.client, &set.ownership).await?;
        let mut inventory: BTreeMap<ObjectRef, Record> = existing
            .inventory
            .objects
            .into_iter()
            .map(|r| (r.id(), r))
            .collect();
        for member in &members {
            if let Some(record) = by_id.get(&member.id) {
                inventory.insert(member.id.clone(), (*record).clone());
            }
        }
        let group_kinds = members
            .iter()
            .map(|m| group_kind(&m.id.kind, split_api_version(&m.id.api_version).0))
            .chain(existing.group_kinds)
            .collect();
        let content = ParentContent {
            group_kinds,
            namespaces: existing.namespaces,
            inventory: Inventory {
                objects: inventory.into_values().collect(),
            },
            annotations: set.annotations.clone(),
        };
        applyset::write_parent(&cluster.client, &set.ownership, &content).await?;
    }
    Ok(())
}

/// A restore as recorded in the store.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RestoreRecord<'a> {
    restored_at: String,
    tool: String,
    backup: &'a str,
    environment: &'a str,
    namespace: &'a str,
    context: &'a str,
    objects: usize,
    created: usize,
    unchanged: usize,
    overwritten: usize,
    workloads: usize,
    duration_ms: u64,
}

/// The store prefix of restore records.
pub const RESTORES_PREFIX: &str = "restores/";

/// Records a finished restore in the store; the key, or `None` when the store refused.
async fn record_restore(store: &Store, outcome: &RestoreOutcome) -> Option<String> {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let record = RestoreRecord {
        restored_at: now.clone(),
        tool: format!("ferry {}", env!("CARGO_PKG_VERSION")),
        backup: &outcome.backup,
        environment: &outcome.environment,
        namespace: &outcome.namespace,
        context: &outcome.context,
        objects: outcome.objects.len(),
        created: outcome.count(Verdict::Created),
        unchanged: outcome.count(Verdict::Unchanged),
        overwritten: outcome.count(Verdict::Overwritten),
        workloads: outcome.workloads,
        duration_ms: outcome.duration_ms,
    };
    let key = format!(
        "{RESTORES_PREFIX}{}-{}.json",
        now.replace(':', ""),
        crate::backup::random_hex(2)
    );
    let mut bytes = serde_json::to_vec_pretty(&record).ok()?;
    bytes.push(b'\n');
    store.put_new(&key, &bytes).await.ok().map(|_| key)
}
