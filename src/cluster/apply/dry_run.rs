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
        let keep_answers = self.request.mode == Mode::DryRun;
        send(
            self.client,
            &self.desired,
            &servable,
            &params,
            self.request.concurrency,
            |index, outcome| {
                reporter.checked(&self.desired[index].id);
                match outcome {
                    // Only a dry run reports what the objects would become: an apply keeps
                    // nothing (5,000 answers are tens of megabytes).
                    Ok(response) if keep_answers => {
                        checked.answers.insert(index, response);
                    }
                    Ok(_) => {}
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
            Err(rejected(Checkpoint::UpFront, &self.plan, failures))
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
            Err(rejected(Checkpoint::After(step + 1), &self.plan, failures))
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
        // Restored objects have no set: whatever exists is compared with what it would become.
        let is_labelled = self.live.contains_key(&d.key) || self.request.members.as_is();
        let mut result = d.result(Action::Unchanged, step);
        result.generation = response.metadata.generation;
        result.after = serde_json::to_value(response).ok();
        result.before = if self.live.contains_key(&d.key) {
            labelled
        } else {
            unlabelled
        };
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use crate::cluster::error::{Checkpoint, Error, Verb};
    use crate::cluster::fake::{Fake, NAMESPACE, Recorded, Rule, object, objects, positions};
    use crate::cluster::{Mode, Stage};
    use crate::object::Object;

    /// A Namespace `extra`, two ConfigMaps in it, one in the set's namespace and a
    /// Deployment: steps Namespaces, Foundation, Workloads.
    fn bundle_with_a_namespace() -> Vec<Object> {
        vec![
            object("Namespace", None, "extra"),
            object("ConfigMap", Some("extra"), "a"),
            object("ConfigMap", Some("extra"), "b"),
            object("ConfigMap", None, "c"),
            object("Deployment", None, "web"),
        ]
    }

    fn in_extra(r: &Recorded) -> bool {
        r.is(&Method::PATCH, "configmaps", None) && r.namespace().as_deref() == Some("extra")
    }

    #[tokio::test]
    async fn an_invalid_object_fails_the_dry_run_and_nothing_is_written() {
        let fake = Fake::new();
        fake.fail(
            Rule::patch("services", "bad")
                .dry_run_only()
                .invalid("Service", "bad"),
        );
        let mut bundle = objects("ConfigMap", "config", 5);
        bundle.push(object("Service", None, "bad"));
        bundle.push(object("Deployment", None, "web"));
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        assert_eq!(failure.stage, Some(Stage::DryRun));
        let Error::Rejected {
            at, count, first, ..
        } = &failure.error
        else {
            panic!("not rejected: {:?}", failure.error);
        };
        assert_eq!((*at, *count), (Checkpoint::UpFront, 1));
        assert_eq!(first.verb, Verb::DryRun);
        assert_eq!(first.target.name.as_deref(), Some("bad"));
        assert_eq!(first.source.code(), Some(422));
        assert!(failure.report.objects.is_empty());

        let requests = fake.requests();
        let dry_runs = positions(&requests, |r| r.method == Method::PATCH && r.dry_run());
        assert_eq!(dry_runs.len(), 7, "every object was checked");
        let writes: Vec<&String> = requests
            .iter()
            .filter(|r| r.is_write())
            .map(|r| &r.path)
            .collect();
        assert!(writes.is_empty(), "written: {writes:?}");
    }

    #[tokio::test]
    async fn two_invalid_objects_are_counted_and_the_first_in_plan_order_is_the_cause() {
        let fake = Fake::new();
        // The first in bundle order answers last.
        fake.fail(
            Rule::patch("configmaps", "zeta")
                .dry_run_only()
                .after(Duration::from_millis(100))
                .answer(422, "Invalid", "ConfigMap \"zeta\" is invalid"),
        );
        fake.fail(Rule::patch("configmaps", "alpha").dry_run_only().answer(
            422,
            "Invalid",
            "ConfigMap \"alpha\" is invalid",
        ));
        let bundle = vec![
            object("ConfigMap", None, "ok-0"),
            object("ConfigMap", None, "zeta"),
            object("ConfigMap", None, "ok-1"),
            object("ConfigMap", None, "alpha"),
        ];
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        let Error::Rejected {
            at,
            count,
            first,
            others,
        } = &failure.error
        else {
            panic!("not rejected: {:?}", failure.error);
        };
        assert_eq!((*at, *count), (Checkpoint::UpFront, 2));
        // One step, sorted by name: alpha is applied before zeta, whatever the bundle order.
        assert_eq!(first.target.name.as_deref(), Some("alpha"));
        let others: Vec<Option<&str>> = others.iter().map(|e| e.target.name.as_deref()).collect();
        assert_eq!(others, [Some("zeta")]);
        assert!(!fake.requests().iter().any(Recorded::is_write));
    }

    /// The cause is the refusal the apply would have met first: plan order, not bundle order.
    #[tokio::test]
    async fn the_first_refusal_in_plan_order_is_the_cause() {
        let fake = Fake::new();
        fake.fail(Rule::patch("deployments", "web").dry_run_only().answer(
            422,
            "Invalid",
            "Deployment \"web\" is invalid",
        ));
        fake.fail(
            Rule::patch("configmaps", "config")
                .dry_run_only()
                .after(Duration::from_millis(100))
                .answer(422, "Invalid", "ConfigMap \"config\" is invalid"),
        );
        // The Deployment comes first in the bundle, the ConfigMap in the plan (step 1 of 2).
        let bundle = vec![
            object("Deployment", None, "web"),
            object("ConfigMap", None, "config"),
        ];
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        let Error::Rejected { first, others, .. } = &failure.error else {
            panic!("not rejected: {:?}", failure.error);
        };
        assert_eq!(first.target.kind, "ConfigMap");
        assert_eq!(others[0].target.kind, "Deployment");
    }

    #[tokio::test]
    async fn objects_in_a_namespace_the_bundle_creates_are_checked_after_its_step() {
        let fake = Fake::new();
        let bundle = bundle_with_a_namespace();
        let report = fake.apply(&bundle, Mode::Apply).await.unwrap();
        assert_eq!(report.objects.len(), 5);

        let requests = fake.requests();
        let namespace_written = positions(&requests, |r| {
            r.is_write() && r.is(&Method::PATCH, "namespaces", Some("extra"))
        });
        let checks = positions(&requests, |r| in_extra(r) && r.dry_run());
        let writes = positions(&requests, |r| in_extra(r) && r.is_write());
        assert_eq!(namespace_written.len(), 1);
        // Up front (answered 404: no namespace yet), then again once it exists.
        assert_eq!(checks.len(), 4, "{checks:?}");
        let (up_front, deferred) = checks.split_at(2);
        assert!(up_front.iter().all(|&i| i < namespace_written[0]));
        assert!(deferred.iter().all(|&i| i > namespace_written[0]));
        assert_eq!(writes.len(), 2);
        assert!(deferred.iter().all(|&i| writes.iter().all(|&w| i < w)));
    }

    #[tokio::test]
    async fn a_deferred_check_that_fails_stops_before_the_next_step() {
        let fake = Fake::new();
        // Its first dry run answers 404 (no namespace yet); the second, after step 1, 422.
        fake.fail(
            Rule::patch("configmaps", "b")
                .in_namespace("extra")
                .dry_run_only()
                .nth(2)
                .answer(422, "Invalid", "ConfigMap \"b\" is invalid"),
        );
        let bundle = bundle_with_a_namespace();
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        assert_eq!(failure.stage, Some(Stage::Step { number: 1, of: 3 }));
        let Error::Rejected {
            at, count, first, ..
        } = &failure.error
        else {
            panic!("not rejected: {:?}", failure.error);
        };
        assert_eq!((*at, *count), (Checkpoint::After(1), 1));
        assert_eq!(first.target.name.as_deref(), Some("b"));
        let applied: Vec<String> = failure
            .report
            .objects
            .iter()
            .map(|o| o.id.to_string())
            .collect();
        // Step 1 holds the Namespace and the ConfigMap of the environment's namespace.
        assert_eq!(applied, ["Namespace extra", "ConfigMap demo/c"]);
        let written: Vec<String> = fake
            .requests()
            .iter()
            .filter(|r| r.is_write())
            .filter_map(Recorded::resource)
            .collect();
        // The Namespace, the parent recording the kinds, the ConfigMap: nothing after step 1.
        assert_eq!(
            written,
            ["namespaces", "secrets", "configmaps"],
            "nothing after step 1 was written"
        );
    }

    #[tokio::test]
    async fn a_dry_run_writes_nothing_and_marks_deferred_objects_unchecked() {
        let fake = Fake::new();
        let bundle = bundle_with_a_namespace();
        let report = fake.apply(&bundle, Mode::DryRun).await.unwrap();
        assert!(report.dry_run);
        let requests = fake.requests();
        let writes: Vec<&String> = requests
            .iter()
            .filter(|r| r.is_write())
            .map(|r| &r.path)
            .collect();
        assert!(writes.is_empty(), "written: {writes:?}");
        assert_eq!(
            positions(&requests, |r| r.method == Method::PATCH && r.dry_run()).len(),
            5,
            "every object was dry-run"
        );
        assert!(
            fake.get("secrets", Some(NAMESPACE), "ferry-demo").is_none(),
            "no parent"
        );
        let unchecked: Vec<(String, bool)> = report
            .objects
            .iter()
            .map(|o| (o.id.to_string(), o.unchecked))
            .collect();
        assert_eq!(
            unchecked,
            [
                ("Namespace extra".to_string(), false),
                ("ConfigMap demo/c".to_string(), false),
                ("ConfigMap extra/a".to_string(), true),
                ("ConfigMap extra/b".to_string(), true),
                ("Deployment demo/web".to_string(), false),
            ]
        );
    }
}
