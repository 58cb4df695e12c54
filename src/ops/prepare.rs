//! The first steps every command shares: find the project, resolve the environment, read
//! the templates and render the bundle.

use std::path::PathBuf;

use crate::project::{self, Project, ResolvedEnvironment, SetOverride, images_lock};
use crate::render::{self, Bundle, Templates};
use crate::ui::{Diagnostic, ExitStatus};

/// Which project and environment to work on, and how to override values.
#[derive(Debug, Clone)]
pub struct ProjectOptions {
    /// `--project DIR`, or `None` to search upward from `cwd`.
    pub project: Option<PathBuf>,
    /// Where the search starts when no project is given.
    pub cwd: PathBuf,
    /// The environment's name.
    pub environment: String,
    /// `--set path=value` arguments, in order.
    pub sets: Vec<String>,
}

/// A rendered environment, ready to lint, print or apply.
#[derive(Debug)]
pub struct Prepared {
    /// The project.
    pub project: Project,
    /// The environment with merged values and its secret store.
    pub env: ResolvedEnvironment,
    /// The rendered objects, secrets in clear: never print this one directly.
    pub bundle: Bundle,
}

/// Errors of the shared steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The project or environment is invalid.
    #[error(transparent)]
    Project(Box<project::Error>),
    /// A template failed.
    #[error(transparent)]
    Render(Box<render::Error>),
}

impl From<project::Error> for Error {
    fn from(error: project::Error) -> Self {
        Error::Project(Box::new(error))
    }
}

impl From<render::Error> for Error {
    fn from(error: render::Error) -> Self {
        Error::Render(Box::new(error))
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Project(e) => e.exit_status(),
            Error::Render(e) => e.exit_status(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Project(e) => e.hints(),
            Error::Render(e) => e.hints(),
        }
    }
}

/// Loads, resolves and renders.
///
/// # Errors
/// Any project or render error; nothing is written anywhere.
pub fn prepare(opts: &ProjectOptions) -> Result<Prepared, Error> {
    let project = match &opts.project {
        Some(dir) => Project::load(dir)?,
        None => Project::discover(&opts.cwd)?,
    };
    let sets = opts
        .sets
        .iter()
        .map(|s| SetOverride::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let env = project.resolve(&opts.environment, &sets)?;
    let templates = Templates::load(&project.root)?;
    let pinned = images_lock::pinned_references(&project.root, &project.file.images)?;
    let bundle = render::render(&templates, &env, &pinned)?;
    Ok(Prepared {
        project,
        env,
        bundle,
    })
}
