//! `ferry status <env>`: what Ferry manages in an environment, each workload's readiness and
//! drift from the last apply. Exits 0 when all is in sync and ready, 1 otherwise.

use super::apply::{interruptible, runtime};
use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use crate::cluster::DEFAULT_CONCURRENCY;
use crate::cluster::status::Drift;
use crate::ops::{self, ClusterOptions, StatusOptions};
use crate::ui::{ExitStatus, OutputFormat, Printer};

/// Arguments of `ferry status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Requests in flight at most.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: usize,
}

/// Reads and prints the environment's state: a table on stdout, a summary on stderr.
pub fn run(args: &StatusArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = StatusOptions {
        project: args.env.project_options(global),
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        concurrency: args.concurrency,
    };
    let Some(result) = runtime()?.block_on(interruptible(ops::status(&opts))) else {
        printer.error("interrupted");
        return Ok(ExitStatus::Interrupted);
    };
    let outcome = result.map_err(super::boxed)?;
    let status = if outcome.healthy {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(status);
    }
    if !outcome.applied {
        printer.note(&format!(
            "ferry has applied nothing to {} (namespace {}) yet: run `ferry apply {}`",
            outcome.environment, outcome.namespace, outcome.environment
        ));
        return Ok(status);
    }
    let rows: Vec<[String; 3]> = outcome
        .objects
        .iter()
        .map(|o| {
            let drift = match &o.drift {
                Drift::InSync => "in sync".to_string(),
                Drift::Modified { by } if by.is_empty() => "modified".to_string(),
                Drift::Modified { by } => format!("modified by {}", by.join(", ")),
                Drift::Replaced => "replaced".to_string(),
                Drift::Missing => "missing".to_string(),
            };
            let ready = o
                .readiness
                .as_ref()
                .map(|r| {
                    if r.ready {
                        r.message.clone()
                    } else {
                        format!("not ready: {}", r.message)
                    }
                })
                .unwrap_or_else(|| "-".to_string());
            let name = format!("{}/{}", o.id.kind, o.id.name);
            [name, drift, ready]
        })
        .collect();
    let header = [
        "OBJECT".to_string(),
        "STATE".to_string(),
        "READY".to_string(),
    ];
    let widths: Vec<usize> = (0..2)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        table.push_str(&format!(
            "{:<w0$}  {:<w1$}  {}\n",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1]
        ));
    }
    printer.data(&table);
    for id in &outcome.unrecorded {
        printer.note(&format!(
            "{id} carries ferry's labels but is not in the last apply"
        ));
    }
    let drifted = outcome
        .objects
        .iter()
        .filter(|o| o.drift != Drift::InSync)
        .count();
    let unready = outcome
        .objects
        .iter()
        .filter(|o| o.readiness.as_ref().is_some_and(|r| !r.ready))
        .count();
    printer.status(
        "Status",
        &format!(
            "{} (namespace {}): {} objects, {} drifted, {} workloads not ready",
            outcome.environment,
            outcome.namespace,
            outcome.objects.len(),
            drifted,
            unready
        ),
    );
    Ok(status)
}
