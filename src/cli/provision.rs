//! `ferry provision <env>`: the environment's namespace, guard rails, network policies,
//! ServiceAccounts and deployer RBAC; `--print-rbac` prints the deployer's Role (and
//! ClusterRole when needed) with its bindings, and applies nothing.

use std::time::Instant;

use super::apply::{Finished, interruptible, print_changes, runtime, summary};
use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use crate::cluster::DEFAULT_CONCURRENCY;
use crate::ops::{self, ClusterOptions, ProvisionOptions};
use crate::ui::reporters::{apply_reporter, bars_allowed};
use crate::ui::{Diagnostic, ExitStatus, OutputFormat, Printer};

/// Arguments of `ferry provision`.
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Print the exact Role/ClusterRole (and bindings) a CI identity needs to run every ferry
    /// command against this environment; apply nothing.
    #[arg(long)]
    print_rbac: bool,
    /// Ask the API server what would change (server-side dry run); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Requests in flight at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

/// Provisions (or prints the RBAC) and reports.
pub fn run(args: &ProvisionArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = ProvisionOptions {
        project: args.env.project_options(global),
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        print_rbac: args.print_rbac,
        dry_run: args.dry_run,
        concurrency: args.concurrency,
    };
    let json = printer.format() == OutputFormat::Json;
    let bars = bars_allowed(global.no_progress, global.verbose) && !args.print_rbac;
    let reporter = apply_reporter(printer, bars && !json);
    let started = Instant::now();
    let result = runtime()?.block_on(interruptible(ops::provision(&opts, reporter.as_ref())));
    reporter.finished();
    let outcome = match result {
        None => {
            printer.error("interrupted: no further changes were sent");
            return Ok(ExitStatus::Interrupted);
        }
        Some(Err(error)) => {
            if json && !args.print_rbac {
                let message = error.to_string();
                printer.json(&Finished::new(error.exit_status(), None, Some(&message)));
            }
            return Err(super::boxed(error));
        }
        Some(Ok(outcome)) => outcome,
    };
    if args.print_rbac {
        if json {
            printer.json(&outcome.rbac);
        } else {
            printer.data(&outcome.rbac_yaml());
        }
        return Ok(ExitStatus::Success);
    }
    if json {
        let changes = outcome
            .objects
            .iter()
            .chain(&outcome.pruned)
            .filter(|r| r.action.is_change())
            .count();
        printer.json(&Finished::new(ExitStatus::Success, Some(changes), None));
        return Ok(ExitStatus::Success);
    }
    print_changes(printer, &outcome.objects, &outcome.pruned, outcome.dry_run);
    for note in &outcome.notes {
        printer.note(note);
    }
    printer.status(
        if outcome.dry_run {
            "Checked"
        } else {
            "Provisioned"
        },
        &format!(
            "{} (namespace {}, context {}): {} in {:.2}s",
            outcome.environment,
            outcome.namespace,
            outcome.context,
            summary(&outcome.objects, &outcome.pruned, outcome.dry_run),
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(ExitStatus::Success)
}
