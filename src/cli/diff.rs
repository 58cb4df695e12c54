//! `ferry diff <env>`: what `ferry apply` would change, as unified diffs on stdout. Exits 0
//! when nothing would change, 1 when something would (like `kubectl diff`), 2 or more on error.

use super::apply::{interruptible, runtime};
use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use crate::cluster::DEFAULT_CONCURRENCY;
use crate::cluster::diff::Change;
use crate::ops::{self, ClusterOptions, DiffOptions};
use crate::ui::{ExitStatus, OutputFormat, Printer};

/// Arguments of `ferry diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Compare as `ferry apply --force-conflicts` would apply.
    #[arg(long)]
    force_conflicts: bool,
    /// Leave out the objects an apply would prune.
    #[arg(long)]
    no_prune: bool,
    /// Requests in flight at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

/// Diffs and prints; exit 1 when there are differences.
pub fn run(args: &DiffArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = DiffOptions {
        project: args.env.project_options(global),
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        force_conflicts: args.force_conflicts,
        prune: !args.no_prune,
        concurrency: args.concurrency,
    };
    let Some(result) = runtime()?.block_on(interruptible(ops::diff(&opts))) else {
        printer.error("interrupted");
        return Ok(ExitStatus::Interrupted);
    };
    let outcome = result.map_err(super::boxed)?;
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
    } else {
        for object in &outcome.objects {
            printer.data(&object.diff);
        }
        let count = |c: Change| outcome.objects.iter().filter(|o| o.change == c).count();
        let message = if outcome.changed {
            format!(
                "{} would change ({} to create, {} to update, {} to prune), {} unchanged",
                outcome.environment,
                count(Change::Create),
                count(Change::Update),
                count(Change::Delete),
                outcome.unchanged
            )
        } else {
            format!(
                "{} matches the cluster ({} objects)",
                outcome.environment, outcome.unchanged
            )
        };
        printer.status("Compared", &message);
        for id in &outcome.kept {
            printer.note(&format!(
                "{id} carries ferry's labels but ferry never applied it: apply leaves it alone"
            ));
        }
    }
    Ok(if outcome.changed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
