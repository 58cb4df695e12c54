//! Which environment a command acts on when it needs only the cluster (`rollback`, `history`,
//! the recovery of a crashed release): read from `ferry.yaml` and the environment's file —
//! never the templates, never a secret — or given entirely by flags, with no project at all.
//!
//! A broken template, a missing secret source or a checkout of another commit therefore never
//! blocks the way back to a recorded revision.

use std::path::PathBuf;

use crate::project::{self, Gates, Project, ReleasePolicy, is_dns_label};
use crate::ui::{Diagnostic, ExitStatus};

/// How to find the environment.
#[derive(Debug, Clone)]
pub enum TargetOptions {
    /// From the project's files: `ferry.yaml` and `environments/<environment>.yaml`.
    Project {
        /// `--project DIR`, or `None` to search upward from `cwd`.
        project: Option<PathBuf>,
        /// Where the search starts when no project is given.
        cwd: PathBuf,
        /// The environment's name.
        environment: String,
    },
    /// From flags alone (`--app`, `--namespace`, `--context`): no project is read.
    Explicit {
        /// The application.
        app: String,
        /// The environment's name.
        environment: String,
        /// The namespace.
        namespace: String,
        /// The kubeconfig context.
        context: String,
    },
}

/// The environment a record-based command acts on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The application.
    pub app: String,
    /// The environment's name.
    pub environment: String,
    /// The namespace.
    pub namespace: String,
    /// The kubeconfig context (before `--context`).
    pub context: String,
    /// Rollout timeout and history limit (the defaults without a project).
    pub release: ReleasePolicy,
    /// The environment's gates, its HTTP checks among them (none without a project).
    pub gates: Gates,
}

/// Why the target could not be resolved; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ferry.yaml` or the environment file is missing or invalid.
    #[error(transparent)]
    Project(Box<project::Error>),
    /// `--app` without `--context`: nothing names the cluster.
    #[error("--app needs --context: without a project no environment file names the cluster")]
    NeedsContext,
    /// A flag naming the target is not a DNS label.
    #[error(
        "invalid {flag} `{value}`: must be a DNS label (lowercase letters, digits and `-`, at most 63 characters)"
    )]
    InvalidFlag {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
    },
}

impl From<project::Error> for Error {
    fn from(error: project::Error) -> Self {
        Error::Project(Box::new(error))
    }
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Project(e) => {
                let mut hints = e.hints();
                if matches!(**e, project::Error::NotFound { .. }) {
                    hints.push(
                        "without a project, name the environment with --app, --namespace and --context"
                            .to_string(),
                    );
                }
                hints
            }
            Error::InvalidFlag { .. } | Error::NeedsContext => Vec::new(),
        }
    }
}

/// Resolves the target without rendering anything or reading any secret.
///
/// # Errors
/// [`Error::Project`] for a missing or invalid `ferry.yaml` or environment file,
/// [`Error::InvalidFlag`] for a malformed flag.
pub fn resolve(opts: &TargetOptions) -> Result<Target, Error> {
    match opts {
        TargetOptions::Project {
            project,
            cwd,
            environment,
        } => {
            let root = match project {
                Some(dir) => dir.clone(),
                None => Project::find_root(cwd)?,
            };
            let project = Project::load_file(&root)?;
            let env = project.resolve(environment, &[])?;
            Ok(Target {
                app: env.app,
                environment: env.name,
                namespace: env.namespace,
                context: env.context,
                release: env.release,
                gates: env.gates,
            })
        }
        TargetOptions::Explicit {
            app,
            environment,
            namespace,
            context,
        } => {
            for (flag, value) in [
                ("--app", app),
                ("environment name", environment),
                ("--namespace", namespace),
            ] {
                if !is_dns_label(value) {
                    return Err(Error::InvalidFlag {
                        flag,
                        value: value.clone(),
                    });
                }
            }
            Ok(Target {
                app: app.clone(),
                environment: environment.clone(),
                namespace: namespace.clone(),
                context: context.clone(),
                release: ReleasePolicy::default(),
                gates: Gates::default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn a_project_of_ferry_yaml_and_one_environment_file_is_enough() {
        let dir = tempfile::tempdir().expect("dir");
        // The pipeline names an environment whose file is missing, there are no templates,
        // and the secrets file does not exist: none of that is read.
        write(
            dir.path(),
            "ferry.yaml",
            "app: shop\npipeline: [staging, production]\nrelease:\n  timeout: 2m\n",
        );
        write(
            dir.path(),
            "environments/staging.yaml",
            "context: c\nnamespace: shop-staging\nsecrets:\n  - from: file\n    path: gone.yaml\n",
        );
        let target = resolve(&TargetOptions::Project {
            project: None,
            cwd: dir.path().join("environments"),
            environment: "staging".to_string(),
        })
        .expect("resolves");
        assert_eq!(target.app, "shop");
        assert_eq!(target.namespace, "shop-staging");
        assert_eq!(target.context, "c");
        assert_eq!(target.release.timeout, "2m");
    }

    #[test]
    fn flags_alone_name_the_target() {
        let target = resolve(&TargetOptions::Explicit {
            app: "shop".to_string(),
            environment: "production".to_string(),
            namespace: "shop-prod".to_string(),
            context: "prod".to_string(),
        })
        .expect("resolves");
        assert_eq!(target.namespace, "shop-prod");
        assert!(target.gates.checks.is_empty());
    }

    #[test]
    fn a_malformed_flag_is_bad_input() {
        let error = resolve(&TargetOptions::Explicit {
            app: "Shop".to_string(),
            environment: "production".to_string(),
            namespace: "shop-prod".to_string(),
            context: "prod".to_string(),
        })
        .expect_err("refused");
        assert_eq!(error.exit_status(), ExitStatus::BadInput);
        assert!(error.to_string().contains("--app `Shop`"), "{error}");
    }

    #[test]
    fn no_project_says_how_to_go_without_one() {
        let dir = tempfile::tempdir().expect("dir");
        let error = resolve(&TargetOptions::Project {
            project: None,
            cwd: dir.path().to_path_buf(),
            environment: "staging".to_string(),
        })
        .expect_err("no project");
        assert!(
            error.hints().iter().any(|h| h.contains("--app")),
            "{:?}",
            error.hints()
        );
    }
}
