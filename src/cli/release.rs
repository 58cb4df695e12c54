//! `ferry release <env>` and `ferry rollback <env> [--to N]`: one call to
//! [`ops::release`], Ctrl-C and SIGTERM turned into a rollback (exit 130), and the outcome
//! printed as a summary per workload or as JSON Lines events.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;

use super::apply::{Finished, print_changes, runtime};
use super::{CommandResult, EnvironmentArgs, GlobalArgs, RecordTargetArgs};
use crate::ops::{self, ClusterOptions, ReleaseOptions, ReleaseOutcome, ReleaseSource};
use crate::release::ReleaseStatus;
use crate::ui::reporters::{bars_allowed, release_reporters};
use crate::ui::{Diagnostic, ExitStatus, OutputFormat, Printer, availability, findings};

/// Arguments of `ferry release`.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    #[command(flatten)]
    common: CommonArgs,
}

/// Arguments of `ferry rollback`: the environment, from its files or from flags alone (no
/// `--set`: the recorded objects are applied as they were).
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: RecordTargetArgs,
    /// The revision to release again (default: the succeeded revision before the live one).
    #[arg(long, value_name = "N")]
    to: Option<u32>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags `release` and `rollback` share.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// Wait for another release's lock instead of refusing (default wait: 5m).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "5m",
          value_parser = humantime::parse_duration)]
    wait_lock: Option<Duration>,
    /// Leave a failed release in place instead of restoring the last succeeded revision.
    #[arg(long)]
    no_rollback: bool,
}

/// Releases the environment.
pub fn run(args: &ReleaseArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let source = ReleaseSource::Render(args.env.project_options(global));
    execute(source, &args.common, global, printer)
}

/// Releases a recorded revision again.
pub fn run_rollback(args: &RollbackArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let source = ReleaseSource::Revision {
        target: args.target.target_options(global)?,
        revision: args.to,
    };
    execute(source, &args.common, global, printer)
}

/// Resolves when the process receives SIGINT or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

fn execute(
    source: ReleaseSource,
    common: &CommonArgs,
    global: &GlobalArgs,
    printer: &Printer,
) -> CommandResult {
    let opts = ReleaseOptions {
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        source,
        wait_lock: common.wait_lock,
        rollback: !common.no_rollback,
    };
    let json = printer.format() == OutputFormat::Json;
    let reporters = release_reporters(printer, bars_allowed(global.no_progress, global.verbose));
    let result = runtime()?.block_on(async {
        // Signal handlers are installed before anything changes, so a Ctrl-C rolls back.
        let interrupt = tokio::spawn(shutdown_signal());
        let interrupt = async move {
            let _ = interrupt.await;
        }
        .boxed();
        ops::release(
            &opts,
            Arc::clone(&reporters.rollout),
            reporters.apply.as_ref(),
            interrupt,
        )
        .await
    });
    reporters.finished();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            if let ops::release::Error::Lint { findings, .. } = &error {
                findings::print(printer, findings);
            }
            if json {
                let message = error.to_string();
                printer.json(&Finished::new(error.exit_status(), None, Some(&message)));
            }
            return Err(super::boxed(error));
        }
    };
    let status = match (outcome.status, outcome.interrupted) {
        (_, true) => ExitStatus::Interrupted,
        (ReleaseStatus::Succeeded, false) => ExitStatus::Success,
        _ => ExitStatus::Failure,
    };
    if json {
        printer.json(&Tagged {
            event: "release",
            body: &outcome,
        });
        printer.json(&Finished::new(status, None, outcome.failure.as_deref()));
    } else {
        print_human(printer, &outcome);
    }
    Ok(status)
}

fn print_human(printer: &Printer, outcome: &ReleaseOutcome) {
    if let Some(r) = &outcome.recovered {
        let who = r
            .former_holder
            .as_deref()
            .map(|h| format!(" by {h}"))
            .unwrap_or_default();
        let what = match r.restored {
            Some(n) => format!("restored revision {n}"),
            None => "marked it failed (no earlier succeeded revision)".to_string(),
        };
        printer.warn(&format!(
            "revision {} was left pending{who} (ferry stopped mid-release): {what}",
            r.revision
        ));
    }
    findings::print(printer, &outcome.findings);
    print_changes(printer, &outcome.objects, &outcome.pruned, false);
    for w in &outcome.workloads {
        printer.status(
            "Rolled out",
            &format!("{} in {:.1}s", w.workload, w.elapsed.as_secs_f64()),
        );
    }
    for c in &outcome.checks {
        printer.status(
            "Checked",
            &format!(
                "{} {}: {}",
                c.name,
                c.url,
                if c.passed { "passed" } else { "failed" }
            ),
        );
    }
    let took = outcome.elapsed.as_secs_f64();
    let what = match &outcome.source {
        Some(source) => format!("{} ({source})", outcome.app),
        None => outcome.app.clone(),
    };
    match outcome.status {
        ReleaseStatus::Succeeded => printer.text(&format!(
            "released {what} to {} as revision {} in {took:.1}s; {}",
            outcome.environment,
            outcome.revision,
            availability::summary(&outcome.availability)
        )),
        status => {
            printer.error(&format!(
                "release of {what} to {} as revision {} failed: {}",
                outcome.environment,
                outcome.revision,
                outcome.failure.as_deref().unwrap_or("unknown failure")
            ));
            match (status, outcome.rolled_back_to) {
                (ReleaseStatus::RolledBack, Some(n)) => printer.status(
                    "Restored",
                    &format!(
                        "revision {n} of {} in {}: the cluster runs what it ran before",
                        outcome.app, outcome.environment
                    ),
                ),
                _ if outcome.objects.is_empty() => {
                    printer.note("nothing was applied");
                }
                _ => {
                    printer.note(&format!(
                        "nothing was restored: the failed revision {} stays applied (no earlier succeeded revision, or --no-rollback)",
                        outcome.revision
                    ));
                    printer.hint(&format!(
                        "fix the cause and run `ferry release {}` again",
                        outcome.environment
                    ));
                }
            }
        }
    }
}

/// An event line: `{"event": …, …body}`.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    event: &'a str,
    #[serde(flatten)]
    body: T,
}
