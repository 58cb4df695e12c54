//! `ferry apply <env> --plan`: render an environment and lay out the dependency plan an apply
//! would follow, without contacting any cluster.

use std::path::PathBuf;

use serde::Serialize;

use super::prepare::{self, ProjectOptions, prepare};
use crate::object::Object;
use crate::plan::{self as planner, Because, Check, Entry, GroupKind, Plan, PlanError};
use crate::policy::{self, Finding};
use crate::ui::{Diagnostic, ExitStatus};

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Run the lint first and refuse a bundle with errors, as `apply` does.
    pub lint: bool,
}

/// The plan of an environment, in the order an apply follows it.
#[derive(Debug, Serialize)]
pub struct PlanOutcome {
    /// The environment.
    pub environment: String,
    /// The steps, first to last.
    pub steps: Vec<PlannedStep>,
    /// Lint warnings (errors stop the plan).
    #[serde(skip)]
    pub findings: Vec<Finding>,
}

/// One step of the plan.
#[derive(Debug, Serialize)]
pub struct PlannedStep {
    /// 1-based.
    pub step: usize,
    /// Its objects, sorted by category, kind, namespace, name.
    pub objects: Vec<PlannedObject>,
    /// Names of the CRDs to wait for (Established) before the next step.
    pub establishes: Vec<String>,
}

/// One object of a step.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedObject {
    /// Its kind.
    pub kind: String,
    /// Its apiVersion.
    pub api_version: String,
    /// Its namespace, `null` when cluster-scoped.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The template it came from.
    pub template: Option<PathBuf>,
    /// When the server can dry-run it.
    pub check: PlannedCheck,
}

/// When the server can dry-run an object: `{"when":"up-front"}`, or
/// `{"when":"after","step":N,"namespace":…}` / `{"when":"after","step":N,"kind":{…}}` (N
/// 1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "when", rename_all = "kebab-case")]
pub enum PlannedCheck {
    /// With the whole bundle, before anything is applied.
    UpFront,
    /// Once step `step` has created its namespace or kind.
    After {
        /// 1-based.
        step: usize,
        /// The namespace created by that step.
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        /// The kind defined by that step.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<GroupKind>,
    },
}

/// Errors of `ferry apply --plan`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The lint found errors.
    #[error("refusing to plan {environment}: {errors} lint error{}", if *errors == 1 { "" } else { "s" })]
    Lint {
        /// The environment.
        environment: String,
        /// How many findings are errors.
        errors: usize,
        /// Every finding.
        findings: Vec<Finding>,
    },
    /// The bundle's dependencies cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Lint { .. } => ExitStatus::BadInput,
            Error::Plan(e) => e.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Lint { .. } => {
                vec!["fix the findings above, or pass --no-lint to plan anyway".to_string()]
            }
            Error::Plan(e) => e.hints(),
        }
    }
}

/// The entries of a bundle, namespaces as rendered (and so as applied).
pub fn entries(objects: &[Object]) -> Vec<Entry> {
    objects
        .iter()
        .map(|o| Entry::of(o, o.id.namespace.clone()))
        .collect()
}

/// Renders, lints and plans; touches no cluster and writes nothing.
///
/// # Errors
/// Project and template errors, lint errors (unless `lint` is off), plan errors.
pub fn plan(opts: &PlanOptions) -> Result<PlanOutcome, Error> {
    let prepared = prepare(&opts.project)?;
    let objects = &prepared.bundle.objects;
    let findings =
        super::lint::gate(objects, opts.lint).map_err(|(errors, findings)| Error::Lint {
            environment: prepared.env.name.clone(),
            errors,
            findings,
        })?;
    let entries = entries(objects);
    let plan = planner::plan(&entries)?;
    Ok(PlanOutcome {
        environment: prepared.env.name.clone(),
        steps: planned_steps(&entries, &plan),
        findings,
    })
}

fn planned_steps(entries: &[Entry], plan: &Plan) -> Vec<PlannedStep> {
    plan.steps
        .iter()
        .enumerate()
        .map(|(s, step)| PlannedStep {
            step: s + 1,
            objects: step
                .objects
                .iter()
                .map(|&i| planned_object(&entries[i], plan.check(i)))
                .collect(),
            establishes: step
                .establishes
                .iter()
                .map(|&i| entries[i].id.name.clone())
                .collect(),
        })
        .collect()
}

fn planned_object(entry: &Entry, check: &Check) -> PlannedObject {
    PlannedObject {
        kind: entry.id.kind.clone(),
        api_version: entry.id.api_version.clone(),
        namespace: entry.id.namespace.clone(),
        name: entry.id.name.clone(),
        template: entry.template.clone(),
        check: match check {
            Check::UpFront => PlannedCheck::UpFront,
            Check::After { step, because } => PlannedCheck::After {
                step: step + 1,
                namespace: match because {
                    Because::Namespace(ns) => Some(ns.clone()),
                    Because::Kind(_) => None,
                },
                kind: match because {
                    Because::Kind(kind) => Some(kind.clone()),
                    Because::Namespace(_) => None,
                },
            },
        },
    }
}

/// The plan's verdict as lint findings, for `ferry lint`: nothing when the bundle plans,
/// else one error naming the object (a bad or unresolvable annotation, a cycle), so CI
/// catches it before an apply.
pub fn lint_plan(objects: &[Object]) -> Vec<Finding> {
    match planner::plan(&entries(objects)) {
        Ok(_) => Vec::new(),
        Err(error) => vec![plan_finding(&error)],
    }
}

fn plan_finding(error: &PlanError) -> Finding {
    let (rule, object, message) = match error {
        PlanError::BadAnnotation {
            object, problem, ..
        } => (
            "PLAN-ANNOTATION",
            object,
            format!("malformed {}: {problem}", planner::DEPENDS_ON_ANNOTATION),
        ),
        PlanError::UnknownTarget {
            object,
            target,
            looked_for,
            ..
        } => (
            "PLAN-UNKNOWN-TARGET",
            object,
            format!("depends on `{target}`, which is not in the bundle (looked for {looked_for})"),
        ),
        PlanError::Ambiguous { object, target, .. } => (
            "PLAN-AMBIGUOUS",
            object,
            format!("depends on `{target}`, which matches more than one object"),
        ),
        PlanError::Cycle { object, .. } => ("PLAN-CYCLE", object, error.to_string()),
    };
    Finding {
        rule,
        severity: policy::Severity::Error,
        object: object.as_ref().clone(),
        path: format!("metadata.annotations.{}", planner::DEPENDS_ON_ANNOTATION),
        message,
        fix: error.hints().join("; "),
    }
}
