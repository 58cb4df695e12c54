//! Writing: the plan's steps in order, every object of a step concurrently with server-side
//! apply, Services throttled to a few in flight, CRDs waited for before the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};

use super::super::applyset::{Record, managed_digest};
use super::members::with_type;
use super::{
    Action, ApplyReport, ApplyReporter, Desired, Engine, ObjectResult, SERVICE_WRITE_CONCURRENCY,
    Stage,
};
use crate::cluster::error::{ApiCause, Checkpoint, Error, RequestError, Target, Verb};
use crate::plan::Plan;

/// What a failed step had done before it failed, and why it failed.
type StepFailure = (Vec<ObjectResult>, Error);

impl Engine<'_> {
    /// Applies the plan's steps in order. After each step, the objects whose dry run had to
    /// wait for the namespace or kind that step created are checked, before the next step.
    pub(super) async fn apply_steps(
        &mut self,
        to_send: &[usize],
        deferred: &BTreeSet<usize>,
        report: &mut ApplyReport,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), (Stage, Error)> {
        let sending: BTreeSet<usize> = to_send.iter().copied().collect();
        let of = self.plan.steps.len();
        for step in 0..of {
            let stage = Stage::Step {
                number: step + 1,
                of,
            };
            let objects = self.plan.steps[step].objects.clone();
            reporter.step_started(step + 1, of, objects.len());
            let started = Instant::now();
            let outcome = self.apply_step(step, &objects, &sending, reporter).await;
            reporter.step_finished(step + 1);
            match outcome {
                Ok(results) => report.objects.extend(results),
                Err((done, error)) => {
                    report.objects.extend(done);
                    return Err((stage, error));
                }
            }
            tracing::debug!(
                step = step + 1,
                objects = objects.len(),
                elapsed = ?started.elapsed(),
                "step applied"
            );
            self.check_deferred(deferred, step, reporter)
                .await
                .map_err(|e| (stage, e))?;
        }
        Ok(())
    }

    /// Applies one step; on failure, returns what was done in it before.
    async fn apply_step(
        &mut self,
        step: usize,
        objects: &[usize],
        sending: &BTreeSet<usize>,
        reporter: &dyn ApplyReporter,
    ) -> Result<Vec<ObjectResult>, StepFailure> {
        let mut results: BTreeMap<usize, ObjectResult> = BTreeMap::new();
        let (to_send, unchanged): (Vec<usize>, Vec<usize>) =
            objects.iter().partition(|i| sending.contains(i));
        for index in unchanged {
            let d = &self.desired[index];
            if let Some(record) = self.previous_record(&d.key).cloned() {
                self.records.insert(d.key.clone(), record);
            }
            let result = d.result(Action::Unchanged, step);
            reporter.object_done(&result);
            results.insert(index, result);
        }
        // Namespaces and CRDs go first; the parent then records the step's other kinds before
        // any object of them exists (its own namespace may be one of those namespaces).
        let (first, rest): (Vec<usize>, Vec<usize>) = to_send
            .iter()
            .partition(|&&i| self.desired[i].creates_scope());
        let in_order = |results: BTreeMap<usize, ObjectResult>| {
            objects
                .iter()
                .filter_map(|i| results.get(i).cloned())
                .collect::<Vec<_>>()
        };
        if let Err(error) = self.write(step, &first, &mut results, reporter).await {
            return Err((in_order(results), error));
        }
        if !rest.is_empty()
            && let Err(error) = self.record_kinds_before_creating().await
        {
            return Err((in_order(results), error));
        }
        if let Err(error) = self.write(step, &rest, &mut results, reporter).await {
            return Err((in_order(results), error));
        }
        let crds: Vec<usize> = self.plan.steps[step]
            .establishes
            .iter()
            .copied()
            .filter(|i| sending.contains(i))
            .collect();
        if let Err(error) = self.wait_established(&crds, reporter).await {
            return Err((in_order(results), error));
        }
        Ok(in_order(results))
    }

    /// Applies the objects at `indices` for real, recording each one applied.
    async fn write(
        &mut self,
        step: usize,
        indices: &[usize],
        results: &mut BTreeMap<usize, ObjectResult>,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), Error> {
        if indices.is_empty() {
            return Ok(());
        }
        let mut applied = Vec::new();
        let mut failures = Vec::new();
        let params = self.patch_params(false);
        send(
            self.client,
            &self.desired,
            indices,
            &params,
            self.request.concurrency,
            |index, outcome| match outcome {
                Ok(response) => {
                    let (result, record) = self.applied(&self.desired[index], &response, step);
                    reporter.object_done(&result);
                    applied.push((index, result, record));
                }
                Err(error) => failures.push((index, error)),
            },
        )
        .await;
        for (index, result, record) in applied {
            self.records.insert(self.desired[index].key.clone(), record);
            results.insert(index, result);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            // Only a race (the object changed between the check and the apply) or an object
            // sent unchecked (a lone object, or one the dry run could not see) gets here.
            Err(rejected(Checkpoint::Step(step + 1), &self.plan, failures))
        }
    }

    /// The result of a real apply, and its inventory record.
    fn applied(
        &self,
        d: &Desired,
        response: &DynamicObject,
        step: usize,
    ) -> (ObjectResult, Record) {
        let manager = &d.field_manager;
        let meta = &response.metadata;
        let action = match self.live.get(&d.key) {
            Some(live) if meta.resource_version.as_deref() == Some(&live.resource_version) => {
                Action::Unchanged
            }
            // The resourceVersion also moves when a controller writes the status between the
            // list and the apply: compare what the apply is about.
            Some(live) => match (&live.value, serde_json::to_value(response)) {
                (Some(before), Ok(after)) if crate::cluster::diff::same(before, &after) => {
                    Action::Unchanged
                }
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
        let mut result = d.result(action, step);
        result.generation = meta.generation;
        if self.request.capture {
            result.before = self.live.get(&d.key).and_then(|l| l.value.clone());
            result.after = serde_json::to_value(response)
                .ok()
                .map(|v| with_type(v, &d.id.api_version, &d.id.kind));
        }
        (result, record)
    }

    /// Waits for the CRDs at `indices` to be Established.
    async fn wait_established(
        &self,
        indices: &[usize],
        reporter: &dyn ApplyReporter,
    ) -> Result<(), Error> {
        let names: Vec<&str> = indices
            .iter()
            .map(|&i| &self.desired[i])
            .filter(|d| d.is("apiextensions.k8s.io", "CustomResourceDefinition"))
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
                            message: crate::cluster::error::chain_text(&error),
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

/// True for a Service of the core group.
fn is_service(d: &Desired) -> bool {
    d.is("", "Service")
}

/// Sends the objects at `indices` with server-side apply (`params` says whether as a dry run),
/// at most `concurrency` at a time, calling `each` as each answer arrives. Real Service writes
/// keep at most [`SERVICE_WRITE_CONCURRENCY`] in flight (the API server allocates ClusterIPs
/// one at a time) while the other objects use the rest of the concurrency.
pub(super) async fn send(
    client: &Client,
    objects: &[Desired],
    indices: &[usize],
    params: &PatchParams,
    concurrency: usize,
    mut each: impl FnMut(usize, Result<DynamicObject, RequestError>),
) {
    let concurrency = concurrency.max(1);
    let (services, others): (Vec<usize>, Vec<usize>) = if params.dry_run {
        (Vec::new(), indices.to_vec())
    } else {
        indices.iter().partition(|&&i| is_service(&objects[i]))
    };
    let service_cap = concurrency.min(SERVICE_WRITE_CONCURRENCY);
    let other_cap = if services.is_empty() {
        concurrency
    } else {
        concurrency.saturating_sub(service_cap).max(1)
    };
    let mut answers = stream::select(
        requests(client, objects, services, params, service_cap),
        requests(client, objects, others, params, other_cap),
    );
    while let Some((index, outcome)) = answers.next().await {
        each(index, outcome);
    }
}

/// The answers to server-side applies of the objects at `indices`, `cap` in flight.
fn requests<'a>(
    client: &'a Client,
    objects: &'a [Desired],
    indices: Vec<usize>,
    params: &'a PatchParams,
    cap: usize,
) -> impl Stream<Item = (usize, Result<DynamicObject, RequestError>)> + 'a {
    let verb = if params.dry_run {
        Verb::DryRun
    } else {
        Verb::Apply
    };
    stream::iter(indices)
        .map(move |index| {
            let d = &objects[index];
            async move {
                let params = PatchParams {
                    field_manager: Some(d.field_manager.clone()),
                    ..params.clone()
                };
                let outcome = d
                    .api(client)
                    .patch(&d.id.name, &params, &Patch::Apply(&d.body))
                    .await
                    .map_err(|e| RequestError::new(verb, d.target(), &e));
                (index, outcome)
            }
        })
        .buffer_unordered(cap.max(1))
}

/// The failures at `at` as one error, the first in plan order as the cause.
pub(super) fn rejected(
    at: Checkpoint,
    plan: &Plan,
    mut failures: Vec<(usize, RequestError)>,
) -> Error {
    // By step, then by place in the step: bundle indices follow the bundle, not the plan.
    failures.sort_by_key(|(index, _)| {
        let step = plan.step_of(*index);
        let place = plan.steps[step].objects.iter().position(|i| i == index);
        (step, place)
    });
    let mut failures: Vec<RequestError> = failures.into_iter().map(|(_, e)| e).collect();
    let first = failures.remove(0);
    Error::Rejected {
        at,
        count: failures.len() + 1,
        first,
        others: failures,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use crate::cluster::apply::{Action, SERVICE_WRITE_CONCURRENCY};
    use crate::cluster::error::{Checkpoint, Error, Verb};
    use crate::cluster::fake::{Fake, Recorded, Rule, object, objects, positions};
    use crate::cluster::{Mode, Stage};

    #[tokio::test]
    async fn a_write_refused_after_its_dry_run_passed_stops_at_its_step() {
        let fake = Fake::new();
        fake.fail(Rule::patch("deployments", "web").writes_only().answer(
            409,
            "Conflict",
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified",
        ));
        let mut bundle = objects("ConfigMap", "config", 2);
        bundle.push(object("Deployment", None, "web"));
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        assert_eq!(failure.stage, Some(Stage::Step { number: 2, of: 2 }));
        let Error::Rejected {
            at, count, first, ..
        } = &failure.error
        else {
            panic!("not rejected: {:?}", failure.error);
        };
        assert_eq!((*at, *count), (Checkpoint::Step(2), 1));
        assert_eq!(first.verb, Verb::Apply);
        assert_eq!(first.target.name.as_deref(), Some("web"));
        let done: Vec<(String, Option<usize>, Action)> = failure
            .report
            .objects
            .iter()
            .map(|o| (o.id.name.clone(), o.step, o.action))
            .collect();
        assert_eq!(
            done,
            [
                ("config-0".to_string(), Some(1), Action::Created),
                ("config-1".to_string(), Some(1), Action::Created),
            ]
        );
        let requests = fake.requests();
        let checked = positions(&requests, |r| {
            r.dry_run() && r.is(&Method::PATCH, "deployments", Some("web"))
        });
        assert_eq!(checked.len(), 1, "the dry run passed first");
    }

    #[tokio::test]
    async fn services_stay_under_their_cap_while_config_maps_use_more() {
        let fake = Fake::new();
        fake.set_delay(Duration::from_millis(20));
        let mut bundle = objects("Service", "svc", 20);
        bundle.extend(objects("ConfigMap", "config", 20));
        fake.apply(&bundle, Mode::Apply).await.unwrap();
        let services = fake.max_in_flight("services", false);
        let config_maps = fake.max_in_flight("configmaps", false);
        assert_eq!(services, SERVICE_WRITE_CONCURRENCY);
        assert!(config_maps > SERVICE_WRITE_CONCURRENCY, "{config_maps}");
        // Dry runs allocate nothing and keep the full concurrency.
        assert!(fake.max_in_flight("services", true) > SERVICE_WRITE_CONCURRENCY);
    }

    #[tokio::test]
    async fn a_single_object_is_applied_without_a_dry_run() {
        let fake = Fake::new();
        let bundle = vec![object("ConfigMap", None, "only")];
        let report = fake.apply(&bundle, Mode::Apply).await.unwrap();
        assert_eq!(report.objects[0].action, Action::Created);
        let requests = fake.requests();
        assert!(!requests.iter().any(Recorded::dry_run));
        let writes = positions(&requests, |r| {
            r.is_write() && r.is(&Method::PATCH, "configmaps", Some("only"))
        });
        assert_eq!(writes.len(), 1);
    }
}
