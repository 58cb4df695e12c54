//! Pruning: deleting the owned members that left the bundle, workloads first, each only if it
//! is still the object that was listed.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Preconditions, PropagationPolicy};

use super::members::{Key, Live};
use super::{Action, ApplyReport, ApplyReporter, Engine, Mode, ObjectResult};
use crate::cluster::error::{Error, RequestError, Target, Verb};
use crate::plan::{Category, category};

impl Engine<'_> {
    /// Deletes owned members that left the bundle, in reverse plan order: what
    /// depends on others first, so workloads go before their NetworkPolicies and namespaces last.
    pub(super) async fn prune(
        &mut self,
        report: &mut ApplyReport,
        reporter: &dyn ApplyReporter,
    ) -> Result<(), Error> {
        let wanted: BTreeSet<&Key> = self.desired.iter().map(|d| &d.key).collect();
        let mut doomed: Vec<&Live> = Vec::new();
        for (key, live) in &self.live {
            if wanted.contains(key) {
                continue;
            }
            if live.owned {
                doomed.push(live);
            } else {
                report.kept.push(live.id.clone());
            }
        }
        doomed.sort_by(|a, b| {
            let order = |l: &Live| {
                (
                    category_of(l),
                    l.id.kind.clone(),
                    l.id.namespace.clone(),
                    l.id.name.clone(),
                )
            };
            order(b).cmp(&order(a))
        });
        if doomed.is_empty() {
            return Ok(());
        }
        reporter.prune_started(doomed.len());
        let mut by_category: BTreeMap<std::cmp::Reverse<Category>, Vec<&Live>> = BTreeMap::new();
        for live in doomed {
            by_category
                .entry(std::cmp::Reverse(category_of(live)))
                .or_default()
                .push(live);
        }
        let dry_run = self.request.mode == Mode::DryRun;
        let client = self.client;
        let capture = self.request.capture;
        for members in by_category.into_values() {
            let outcomes: Vec<(usize, Result<bool, RequestError>)> =
                stream::iter(members.iter().enumerate())
                    .map(
                        |(index, live)| async move { (index, delete(client, live, dry_run).await) },
                    )
                    .buffer_unordered(self.request.concurrency.max(1))
                    .collect()
                    .await;
            let mut outcomes = outcomes;
            outcomes.sort_by_key(|(index, _)| *index);
            for (index, outcome) in outcomes {
                let live = members[index];
                match outcome {
                    Ok(true) => {
                        let result = ObjectResult {
                            id: live.id.clone(),
                            step: None,
                            action: Action::Pruned,
                            template: None,
                            generation: None,
                            unchecked: false,
                            before: if capture { live.value.clone() } else { None },
                            after: None,
                        };
                        reporter.pruned(&result);
                        report.pruned.push(result);
                    }
                    // Replaced by another object of the same name since it was listed.
                    Ok(false) => report.kept.push(live.id.clone()),
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }
}

/// Deletes one member if it is still the object that was listed (same uid). `Ok(false)` when
/// it was replaced meanwhile; a member already gone counts as deleted.
async fn delete(client: &Client, live: &Live, dry_run: bool) -> Result<bool, RequestError> {
    let api = Api::<DynamicObject>::dynamic(
        client.clone(),
        &live.resolved.resource,
        &live.resolved.scope,
    );
    let api = match &live.id.namespace {
        Some(ns) => api.constrain(ns),
        None => api,
    };
    let params = DeleteParams {
        dry_run,
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: Some(live.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&live.id.name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(RequestError::new(
            Verb::Delete,
            Target {
                kind: live.id.kind.clone(),
                resource: Some(live.resolved.qualified()),
                namespace: live.id.namespace.clone(),
                name: Some(live.id.name.clone()),
                template: None,
            },
            &error,
        )),
    }
}

/// The plan category of a live member's kind.
fn category_of(live: &Live) -> Category {
    category(&live.resolved.resource.group, &live.id.kind)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use crate::cluster::apply::{Action, apply, prepare};
    use crate::cluster::error::{Error, Verb};
    use crate::cluster::fake::{self, Fake, NAMESPACE, Rule, object, positions};
    use crate::cluster::{Mode, NoopReporter, Stage};

    /// Applies ConfigMaps `keep` and `stale`, so the next apply of `keep` alone prunes
    /// `stale`.
    async fn applied_keep_and_stale(fake: &Fake) {
        let first = vec![
            object("ConfigMap", None, "keep"),
            object("ConfigMap", None, "stale"),
        ];
        fake.apply(&first, Mode::Apply).await.unwrap();
    }

    #[tokio::test]
    async fn a_member_already_gone_counts_as_pruned() {
        let fake = Fake::new();
        applied_keep_and_stale(&fake).await;
        let client = fake.client();
        let bundle = vec![object("ConfigMap", None, "keep")];
        let ownership = fake::ownership();
        let request = fake::request(&bundle, &ownership, Mode::Apply);
        let prepared = prepare(&client, &request).await.unwrap();
        fake.remove("configmaps", Some(NAMESPACE), "stale");

        let report = prepared.run(&NoopReporter).await.unwrap();
        let pruned: Vec<(String, Action)> = report
            .pruned
            .iter()
            .map(|r| (r.id.name.clone(), r.action))
            .collect();
        assert_eq!(pruned, [("stale".to_string(), Action::Pruned)]);
        assert!(report.kept.is_empty());
        let deletes = positions(&fake.requests(), |r| {
            r.is(&Method::DELETE, "configmaps", Some("stale"))
        });
        assert_eq!(deletes.len(), 1, "the delete was sent (and answered 404)");
    }

    #[tokio::test]
    async fn a_member_replaced_since_it_was_listed_is_kept() {
        let fake = Fake::new();
        applied_keep_and_stale(&fake).await;
        let client = fake.client();
        let bundle = vec![object("ConfigMap", None, "keep")];
        let ownership = fake::ownership();
        let request = fake::request(&bundle, &ownership, Mode::Apply);
        let prepared = prepare(&client, &request).await.unwrap();
        fake.recreate("configmaps", Some(NAMESPACE), "stale");

        let report = prepared.run(&NoopReporter).await.unwrap();
        assert!(report.pruned.is_empty(), "{:?}", report.pruned);
        let kept: Vec<String> = report.kept.iter().map(ToString::to_string).collect();
        assert_eq!(kept, ["ConfigMap demo/stale"]);
        assert!(fake.get("configmaps", Some(NAMESPACE), "stale").is_some());
    }

    #[tokio::test]
    async fn a_refused_delete_fails_the_prune_naming_the_object() {
        let fake = Fake::new();
        applied_keep_and_stale(&fake).await;
        fake.fail(Rule::delete("configmaps", "stale").answer(
            403,
            "Forbidden",
            "configmaps \"stale\" is forbidden: User \"ci\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"demo\"",
        ));
        let bundle = vec![object("ConfigMap", None, "keep")];
        let failure = fake.apply(&bundle, Mode::Apply).await.unwrap_err();
        assert_eq!(failure.stage, Some(Stage::Prune));
        let Error::Request(error) = &failure.error else {
            panic!("not a request error: {:?}", failure.error);
        };
        assert_eq!(error.verb, Verb::Delete);
        assert_eq!(error.source.code(), Some(403));
        assert_eq!(error.to_string(), "failed to delete ConfigMap demo/stale");
        assert!(failure.report.pruned.is_empty());
    }

    #[tokio::test]
    async fn workloads_are_deleted_before_network_policies() {
        let fake = Fake::new();
        let first = vec![
            object("ConfigMap", None, "keep"),
            object("NetworkPolicy", None, "deny"),
            object("Deployment", None, "web"),
        ];
        let ownership = fake::ownership();
        let client = fake.client();
        apply(
            &client,
            &fake::request(&first, &ownership, Mode::Apply),
            &NoopReporter,
        )
        .await
        .unwrap();
        let bundle = vec![object("ConfigMap", None, "keep")];

        let report = apply(
            &client,
            &fake::request(&bundle, &ownership, Mode::Apply),
            &NoopReporter,
        )
        .await
        .unwrap();
        let pruned: Vec<String> = report.pruned.iter().map(|r| r.id.to_string()).collect();
        assert_eq!(pruned, ["Deployment demo/web", "NetworkPolicy demo/deny"]);
        let requests = fake.requests();
        let deployment = positions(&requests, |r| {
            r.is(&Method::DELETE, "deployments", Some("web"))
        });
        let policy = positions(&requests, |r| {
            r.is(&Method::DELETE, "networkpolicies", Some("deny"))
        });
        assert_eq!((deployment.len(), policy.len()), (1, 1));
        assert!(deployment[0] < policy[0], "{deployment:?} {policy:?}");
    }
}
