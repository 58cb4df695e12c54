//! The server's dry run: everything the run sends, checked in parallel before anything is
//! written; objects whose namespace or kind the bundle creates, checked once it exists; and,
//! for [`Mode::DryRun`], what each object would become.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use kube::api::DynamicObject;
use serde_json::Value;

use super::write::{rejected, send};
use super::{Action, ApplyReporter, Desired, Engine, Mode, ObjectResult};
use crate::cluster::error::{Checkpoint, Error, RequestError, Verb};
use crate::plan::Check;

/// What the up-front dry run found.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// The server's answers (what each object would become), by index.
    pub(super) answers: BTreeMap<usize, DynamicObject>,
    /// Objects the server could not check yet: their namespace or kind is created by the
    /// bundle.
    pub(super) deferred: BTreeSet<usize>,
}

impl Engine<'_> {
    /// Dry-runs every object of `to_send` the server can check now, all at once (at most
    /// `concurrency` in flight). Any failure fails the whole run before anything is written.
    /// A real apply of a single object skips it: that apply fails or succeeds whole.
    pub(super) async fn check_up_front(
        &self,
        to_send: &[usize],
        reporter: &dyn ApplyReporter,
    ) -> Result<Checked, Error> {
        let mut checked = Checked::default();
        if self.request.mode == Mode::Apply && to_send.len() <= 1 {
            return Ok(checked);
        }
        let (servable, unserved): (Vec<usize>, Vec<usize>) =
            to_send.iter().partition(|&&i| self.desired[i].served);
        checked.deferred.extend(unserved);
        if servable.is_empty() {
            return Ok(checked);
        }
        reporter.checking(servable.len());
        let started = std::time::Instant::now();
        let mut failures = Vec::new();
        let params = self.patch_params(true);
        send(
            self.client,
            &self.desired,
            &servable,
            &params,
            self.request.concurrency,
            |index, outcome| {
                reporter.checked(&self.desired[index].id);
                match outcome {
                    Ok(response) => {
                        checked.answers.insert(index, response);
                    }
                    Err(error) if self.waits_for_bundle_namespace(&error) => {
                        checked.deferred.insert(index);
                    }
                    Err(error) => failures.push((index, error)),
                }
            },
        )
        .await;
        tracing::debug!(
            objects = servable.len(),
            deferred = checked.deferred.len(),
            failed = failures.len(),
            elapsed = ?started.elapsed(),
            "server dry run of the bundle done"
        );
        if failures.is_empty() {
            Ok(checked)
        } else {
            Err(rejected(Checkpoint::UpFront, failures))
        }
    }

    /// After step `step` (0-based) is applied: dry-runs the deferred objects that could be
    /// checked only once that step created their namespace or kind.
    pub(super) async fn check_deferred(
        &self,
        deferred: &BTreeSet<usize>,
        step: usize,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), Error> {
        let due: Vec<usize> = deferred
            .iter()
            .copied()
            .filter(|&i| self.deferred_check_after(i) == Some(step))
            .collect();
        if due.len() <= 1 {
            // A lone object's apply fails or succeeds whole: no separate check.
            return Ok(());
        }
        reporter.checking(due.len());
        let mut failures = Vec::new();
        let params = self.patch_params(true);
        send(
            self.client,
            &self.desired,
            &due,
            &params,
            self.request.concurrency,
            |index, outcome| {
                reporter.checked(&self.desired[index].id);
                if let Err(error) = outcome {
                    failures.push((index, error));
                }
            },
        )
        .await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(rejected(Checkpoint::After(step + 1), failures))
        }
    }

    /// The step after which a deferred object is checked: the one that creates its namespace
    /// or kind, else the step before its own (`None` for the first step: its apply is the
    /// check).
    fn deferred_check_after(&self, index: usize) -> Option<usize> {
        match self.plan.check(index) {
            Check::After { step, .. } => Some(*step),
            Check::UpFront => self.plan.step_of(index).checked_sub(1),
        }
    }

    /// True when the server refused because the object's namespace does not exist yet and
    /// the bundle creates it.
    fn waits_for_bundle_namespace(&self, error: &RequestError) -> bool {
        error
            .missing_namespace()
            .is_some_and(|ns| self.bundle_namespaces.contains(ns))
    }

    /// [`Mode::DryRun`]: every object's result from the dry run's answers, in plan order.
    pub(super) async fn dry_run_results(
        &self,
        unchanged: &[usize],
        mut checked: Checked,
        reporter: &dyn ApplyReporter,
    ) -> Result<Vec<ObjectResult>, Error> {
        let unchanged: BTreeSet<usize> = unchanged.iter().copied().collect();
        // Objects not among the labelled members may still exist (unlabelled): look.
        let missing: Vec<usize> = checked
            .answers
            .keys()
            .copied()
            .filter(|i| !self.live.contains_key(&self.desired[*i].key))
            .collect();
        let found = self.get_unlabelled(&missing).await?;
        let mut results = Vec::with_capacity(self.desired.len());
        for (step, planned) in self.plan.steps.iter().enumerate() {
            for &index in &planned.objects {
                let d = &self.desired[index];
                let result = if unchanged.contains(&index) {
                    d.result(Action::Unchanged, step)
                } else if let Some(response) = checked.answers.remove(&index) {
                    self.would_be(d, step, &response, found.get(&index).cloned())
                } else {
                    unchecked(d, step)
                };
                reporter.object_done(&result);
                results.push(result);
            }
        }
        Ok(results)
    }

    /// What a dry-run answer says would happen to `d`; `unlabelled` is the object as it
    /// exists without the set's label, if it does.
    fn would_be(
        &self,
        d: &Desired,
        step: usize,
        response: &DynamicObject,
        unlabelled: Option<Value>,
    ) -> ObjectResult {
        let labelled = self.live.get(&d.key).and_then(|l| l.value.clone());
        let is_labelled = self.live.contains_key(&d.key);
        let mut result = d.result(Action::Unchanged, step);
        result.generation = response.metadata.generation;
        result.after = serde_json::to_value(response).ok();
        result.before = if is_labelled { labelled } else { unlabelled };
        result.action = match (&result.before, is_labelled) {
            (None, _) => Action::Created,
            (Some(_), false) => Action::Adopted,
            (Some(before), true) => match &result.after {
                Some(after) if crate::cluster::diff::same(before, after) => Action::Unchanged,
                _ => Action::Configured,
            },
        };
        result
    }

    async fn get_unlabelled(&self, indices: &[usize]) -> Result<BTreeMap<usize, Value>, Error> {
        let client = self.client;
        let answers: Vec<(usize, Result<Option<DynamicObject>, RequestError>)> =
            stream::iter(indices.iter().copied())
                .map(|index| {
                    let d = &self.desired[index];
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
}

/// The result of an object the server could not check: its kind or namespace is created by
/// this same bundle.
fn unchecked(d: &Desired, step: usize) -> ObjectResult {
    let mut result = d.result(Action::Created, step);
    result.unchecked = true;
    result.after = Some(d.body.clone());
    result
}
