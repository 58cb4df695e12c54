//! Where a release's bundle comes from: a render of the project (strictly linted against the
//! last good revision), or a release record (`ferry rollback`), taken exactly as recorded.

use std::collections::BTreeMap;

use serde_json::Value;

use super::engine::{ReleaseBundle, Session};
use super::recovery::to_objects;
use super::{Error, lint};
use crate::object::Object;
use crate::release::{Candidate, ReleaseRecord, ReleaseStatus};
use crate::render::Bundle;

/// The bundle of a render, linted strictly against the last succeeded revision's objects
/// (a selector change against them is an error).
///
/// # Errors
/// [`Error::Lint`] when the lint finds errors; nothing was changed.
pub(super) fn rendered(session: &Session<'_>, bundle: Bundle) -> Result<ReleaseBundle, Error> {
    let previous = match &session.previous {
        Some(p) => to_objects(&p.objects).unwrap_or_default(),
        None => Vec::new(),
    };
    let findings = lint(&session.environment().name, &bundle.objects, &previous)?;
    let candidate = Candidate::new(images_of(&bundle.objects), bundle.templates_digest);
    Ok(ReleaseBundle {
        objects: bundle.objects,
        candidate,
        source: None,
        findings,
    })
}

/// The bundle of a recorded revision: `Some(n)`, else the succeeded revision before the newest
/// succeeded one.
///
/// # Errors
/// [`Error::NoTarget`], [`Error::NotSucceeded`], [`Error::InvalidRecord`] and record errors;
/// nothing was changed.
pub(super) async fn recorded(
    session: &Session<'_>,
    revision: Option<u32>,
) -> Result<ReleaseBundle, Error> {
    let target = rollback_target(session, revision).await?;
    let objects = to_objects(&target.objects).map_err(|source| Error::InvalidRecord {
        revision: target.revision,
        source: Box::new(source),
    })?;
    Ok(ReleaseBundle {
        objects,
        candidate: target.candidate.clone(),
        source: Some(format!("rollback to revision {}", target.revision)),
        findings: Vec::new(),
    })
}

/// The record `rollback` re-releases.
async fn rollback_target(session: &Session<'_>, to: Option<u32>) -> Result<ReleaseRecord, Error> {
    let env = session.environment();
    let revision = match to {
        Some(n) => n,
        None => {
            let succeeded: Vec<u32> = session
                .store
                .history()
                .await?
                .iter()
                .filter(|s| s.status == ReleaseStatus::Succeeded)
                .map(|s| s.revision)
                .collect();
            match succeeded
                .len()
                .checked_sub(2)
                .and_then(|i| succeeded.get(i))
            {
                Some(n) => *n,
                None => {
                    return Err(Error::NoTarget {
                        app: env.app.clone(),
                        environment: env.name.clone(),
                    });
                }
            }
        }
    };
    let record = session.store.read(revision).await?;
    if record.status != ReleaseStatus::Succeeded {
        return Err(Error::NotSucceeded {
            app: env.app.clone(),
            environment: env.name.clone(),
            revision,
            status: record.status.as_str(),
        });
    }
    Ok(record)
}

/// Container images of the bundle: image reference without digest or tag → full reference.
fn images_of(objects: &[Object]) -> BTreeMap<String, String> {
    let mut images = BTreeMap::new();
    for o in objects {
        let Some(spec) = o.pod_spec() else { continue };
        for list in ["initContainers", "containers"] {
            let Some(containers) = spec.get(list).and_then(Value::as_array) else {
                continue;
            };
            for c in containers {
                if let Some(image) = c.get("image").and_then(Value::as_str) {
                    let name = image.split('@').next().unwrap_or(image);
                    images.insert(name.to_string(), image.to_string());
                }
            }
        }
    }
    images
}
