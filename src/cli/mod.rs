//! The command line: clap definitions, one file per command. Each command resolves its
//! inputs, calls one operation, and hands the outcome to the printer; no logic lives here.

mod apply;
mod backup;
mod diff;
mod history;
mod image;
mod lint;
mod provision;
mod release;
mod render;
mod restore;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::ops::{ProjectOptions, TargetOptions};
use crate::ui::{self, Diagnostic, ExitStatus, OutputFormat, Printer};

/// Ferry: render, harden, release and recover Kubernetes applications.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Output format: text for people, or JSON (JSON Lines for long operations).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    output: OutputFormat,
    /// The project directory (default: the nearest directory with a ferry.yaml).
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: the environment file's `context`).
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Never draw progress bars.
    #[arg(long, global = true)]
    no_progress: bool,
    /// More logs on stderr: -v debug, -vv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render an environment's manifests (nothing touches a cluster).
    Render(render::RenderArgs),
    /// Check an environment's manifests against the hardening and zero-downtime rules.
    Lint(lint::LintArgs),
    /// Create or update an environment's namespace, guard rails, network policies and RBAC.
    Provision(provision::ProvisionArgs),
    /// Show what `apply` would change, as a server-side dry-run diff (exit 1 when it differs).
    Diff(diff::DiffArgs),
    /// Apply an environment's manifests to its cluster (server-side apply, then prune).
    Apply(apply::ApplyArgs),
    /// Show what ferry manages in an environment, readiness and drift.
    Status(status::StatusArgs),
    /// Release an environment: apply, wait for the rollout, check, roll back on failure.
    Release(release::ReleaseArgs),
    /// List an environment's release records.
    History(history::HistoryArgs),
    /// Release a recorded revision again (default: the previous succeeded one).
    Rollback(release::RollbackArgs),
    /// Build reproducible, hardened OCI images (no Docker) and push them with their SBOMs.
    Image(image::ImageArgs),
    /// Encrypted, self-verifying backups of an environment: keygen, create, list, verify, prune,
    /// probe.
    Backup(backup::BackupArgs),
    /// Recreate an environment from a backup: verified first, along the dependency plan,
    /// images pushed, history restored, every workload waited for.
    Restore(restore::RestoreArgs),
}

/// Flags naming the environment and overriding its values.
#[derive(Debug, clap::Args)]
pub struct EnvironmentArgs {
    /// The environment (a file environments/<ENV>.yaml).
    #[arg(value_name = "ENV")]
    environment: String,
    /// Override a value: --set path.to.key=value (repeatable; later wins).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
}

impl EnvironmentArgs {
    fn project_options(&self, global: &GlobalArgs) -> ProjectOptions {
        ProjectOptions {
            project: global.project.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            environment: self.environment.clone(),
            sets: self.sets.clone(),
        }
    }
}

/// Flags naming an environment for the commands that act from its release records alone
/// (`rollback`, `history`): no `--set`, since nothing is rendered.
#[derive(Debug, clap::Args)]
pub struct RecordTargetArgs {
    /// The environment (a file environments/<ENV>.yaml, or any name with --app).
    #[arg(value_name = "ENV")]
    environment: String,
    /// Act without a project: the application's name (needs --namespace and --context).
    #[arg(long, value_name = "NAME", requires = "namespace")]
    app: Option<String>,
    /// Act without a project: the environment's namespace (needs --app).
    #[arg(long, value_name = "NAMESPACE", requires = "app")]
    namespace: Option<String>,
}

impl RecordTargetArgs {
    fn target_options(&self, global: &GlobalArgs) -> Result<TargetOptions, Box<dyn Diagnostic>> {
        let Some(app) = &self.app else {
            return Ok(TargetOptions::Project {
                project: global.project.clone(),
                cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                environment: self.environment.clone(),
            });
        };
        let context = global
            .context
            .clone()
            .ok_or_else(|| boxed(crate::ops::target::Error::NeedsContext))?;
        Ok(TargetOptions::Explicit {
            app: app.clone(),
            environment: self.environment.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            context,
        })
    }
}

/// A global flag given to a command that would ignore it.
#[derive(Debug, thiserror::Error)]
#[error("`ferry {command}` never talks to a cluster: {flag} would have no effect")]
pub struct IgnoredFlag {
    /// The command.
    command: &'static str,
    /// The flag.
    flag: &'static str,
}

impl Diagnostic for IgnoredFlag {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        vec![format!("drop {}", self.flag)]
    }
}

impl GlobalArgs {
    /// Refuses `--kubeconfig` and `--context` for a command that reads no cluster, rather
    /// than ignoring them.
    fn refuse_cluster_flags(&self, command: &'static str) -> Result<(), Box<dyn Diagnostic>> {
        let flag = if self.kubeconfig.is_some() {
            "--kubeconfig"
        } else if self.context.is_some() {
            "--context"
        } else {
            return Ok(());
        };
        Err(boxed(IgnoredFlag { command, flag }))
    }
}

/// What a command returns: how it ended, or an error to render.
type CommandResult = Result<ExitStatus, Box<dyn Diagnostic>>;

/// Runs ferry with the process arguments and returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitStatus::BadInput.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    ui::logging::init(cli.global.verbose);
    let printer = Printer::new(cli.global.output);
    // A closed stdout (`ferry diff | head -1`) only stops the data: the printer drops it
    // quietly, the command runs to its end, and the exit code is still the command's own.
    match run(&cli, &printer) {
        Ok(status) => status.into(),
        Err(error) => {
            ui::render_error(&printer, error.as_ref());
            error.exit_status().into()
        }
    }
}

fn run(cli: &Cli, printer: &Printer) -> CommandResult {
    match &cli.command {
        Command::Render(args) => {
            cli.global.refuse_cluster_flags("render")?;
            render::run(args, &cli.global, printer)
        }
        Command::Lint(args) => {
            cli.global.refuse_cluster_flags("lint")?;
            lint::run(args, &cli.global, printer)
        }
        Command::Provision(args) => provision::run(args, &cli.global, printer),
        Command::Diff(args) => diff::run(args, &cli.global, printer),
        Command::Apply(args) => apply::run(args, &cli.global, printer),
        Command::Status(args) => status::run(args, &cli.global, printer),
        Command::Image(args) => {
            cli.global.refuse_cluster_flags("image")?;
            image::run(args, &cli.global, printer)
        }
        Command::Release(args) => release::run(args, &cli.global, printer),
        Command::History(args) => history::run(args, &cli.global, printer),
        Command::Rollback(args) => release::run_rollback(args, &cli.global, printer),
        Command::Backup(args) => backup::run(args, &cli.global, printer),
        Command::Restore(args) => restore::run(args, &cli.global, printer),
    }
}

/// Boxes a module error for the top level.
fn boxed<E: Diagnostic>(error: E) -> Box<dyn Diagnostic> {
    Box::new(error)
}
