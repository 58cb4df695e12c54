//! `ferry lint`: the hardening and zero-downtime rules over an environment's bundle, and the
//! image hardening rules over the images already built, and whether the bundle's
//! dependencies can be planned.

use std::path::PathBuf;

use serde::Serialize;

use super::prepare::{self, ProjectOptions, prepare};
use crate::object::Object;
use crate::policy::{self, Finding, LintContext};
use crate::ui::{Diagnostic, ExitStatus};

/// The default lint of `objects` that `apply` and `apply --plan` run first (nothing when not
/// `enabled`): its findings, or `Err((error count, every finding))` when any blocks.
pub(super) fn gate(
    objects: &[Object],
    enabled: bool,
) -> Result<Vec<Finding>, (usize, Vec<Finding>)> {
    if !enabled {
        return Ok(Vec::new());
    }
    let findings = policy::lint(objects, &LintContext::default());
    match policy::error_count(&findings) {
        0 => Ok(findings),
        errors => Err((errors, findings)),
    }
}

/// What to lint.
#[derive(Debug, Clone)]
pub struct LintOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Treat zero-downtime warnings as errors, as `release` does.
    pub strict: bool,
    /// A previously rendered bundle (a file or a `render -o` directory) to compare against,
    /// for rules such as selector changes.
    pub previous: Option<PathBuf>,
}

/// The lint's verdict.
#[derive(Debug, Serialize)]
pub struct LintOutcome {
    /// The environment's name.
    pub environment: String,
    /// How many objects were checked.
    pub objects: usize,
    /// Every finding, errors and warnings.
    pub findings: Vec<Finding>,
    /// True when at least one finding is an error.
    pub failed: bool,
}

/// Errors of `ferry lint`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// The previous bundle could not be read.
    #[error("failed to read the previous bundle {}", path.display())]
    Previous {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Previous { .. } => ExitStatus::BadInput,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Previous { .. } => {
                vec!["pass a file or directory written by `ferry render`".to_string()]
            }
        }
    }
}

/// Renders the environment and runs every rule.
///
/// # Errors
/// Project and template errors; an unreadable `previous` bundle.
pub fn lint(opts: &LintOptions) -> Result<LintOutcome, Error> {
    let prepared = prepare(&opts.project)?;
    let previous = match &opts.previous {
        Some(path) => read_previous(path)?,
        None => Vec::new(),
    };
    let ctx = LintContext {
        previous: &previous,
        strict_zero_downtime: opts.strict,
    };
    let mut findings = policy::lint(&prepared.bundle.objects, &ctx);
    // Dependencies an apply could not follow (cycles, unknown targets, bad annotations).
    findings.extend(super::plan::lint_plan(&prepared.bundle.objects));
    // The image I-rules, over the layouts `ferry image build` left (unbuilt images are skipped).
    findings.extend(super::image::lint_images(
        &prepared.project.root,
        &prepared.project.file.images,
    ));
    Ok(LintOutcome {
        environment: prepared.env.name,
        objects: prepared.bundle.objects.len(),
        failed: policy::has_errors(&findings),
        findings,
    })
}

/// Reads every YAML document of a file, or of every `*.yaml` file of a directory.
fn read_previous(path: &PathBuf) -> Result<Vec<Object>, Error> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| Error::Previous {
        path: path.clone(),
        source,
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| fail(e.into()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.clone()]
    };
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| fail(e.into()))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| fail(crate::project::yaml_message(&e).into()))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            objects.push(Object::new(doc, None).map_err(|e| fail(e.into()))?);
        }
    }
    Ok(objects)
}
