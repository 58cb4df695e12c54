//! The way back: settle a release left pending by a crashed Ferry, and restore a recorded
//! revision. Both apply the recorded objects exactly as they were recorded: no render, no
//! secret lookup, no lint of the working tree.

use serde_json::Value;

use super::engine::{Ctx, apply_request, workloads_of};
use super::{Error, Recovery, RestoreError};
use crate::object::Object;
use crate::release::{
    LockGuard, RecordStore, RecordSummary, ReleaseRecord, ReleaseStatus, RolloutOutcome,
    WaitOptions, wait_for_rollout,
};

/// Restores a recorded revision through the same engine and waits for it.
pub(super) async fn restore(
    ctx: &Ctx<'_>,
    target: &ReleaseRecord,
) -> Result<RolloutOutcome, RestoreError> {
    let objects = to_objects(&target.objects)?;
    let request = apply_request(&objects, &ctx.ownership, &target.candidate.templates_digest);
    let report = crate::cluster::apply::apply(&ctx.client, &request, ctx.apply_reporter)
        .await
        .map_err(|f| RestoreError::Apply(Box::new(f.error)))?;
    let workloads = workloads_of(&report.objects, &ctx.namespace);
    wait_for_rollout(
        &ctx.client,
        &workloads,
        ctx.timeout,
        WaitOptions::default(),
        ctx.reporter.as_ref(),
    )
    .await
    .map_err(RestoreError::Rollout)
}

/// Settles a release left pending by a crashed Ferry: restores the last succeeded revision
/// (or marks it failed when there is none).
pub(super) async fn recover(
    ctx: &Ctx<'_>,
    store: &RecordStore,
    guard: &LockGuard,
    environment: &str,
    history: &[RecordSummary],
) -> Result<Option<Recovery>, Error> {
    let Some(newest) = history.last() else {
        return Ok(None);
    };
    if newest.status != ReleaseStatus::Pending {
        return Ok(None);
    }
    let former_holder = guard.took_over().map(|t| t.holder.clone());
    let mut pending = store.read(newest.revision).await?;
    let failure = match &former_holder {
        Some(h) => format!("ferry stopped mid-release (the lock of {h} expired)"),
        None => "ferry stopped mid-release".to_string(),
    };
    pending.failure = Some(failure.clone());
    pending.status = ReleaseStatus::Failed;
    let target = store.last_succeeded().await?;
    if let Some(target) = &target {
        match restore(ctx, target).await {
            Ok(_) => {
                pending.status = ReleaseStatus::RolledBack;
                pending.rolled_back_to = Some(target.revision);
            }
            Err(source) => {
                pending.timings.finish();
                let _ = store.update(&pending).await;
                return Err(Error::Restore {
                    environment: environment.to_string(),
                    revision: pending.revision,
                    target: target.revision,
                    failure,
                    source: Box::new(source),
                });
            }
        }
    }
    pending.timings.finish();
    store.update(&pending).await?;
    Ok(Some(Recovery {
        revision: pending.revision,
        former_holder,
        status: pending.status,
        restored: pending.rolled_back_to,
    }))
}

/// The recorded objects as objects again.
pub(super) fn to_objects(values: &[Value]) -> Result<Vec<Object>, RestoreError> {
    values
        .iter()
        .map(|v| Object::new(v.clone(), None).map_err(RestoreError::Object))
        .collect()
}
