//! `ferry apply <env>`: render, lint and apply an environment to its cluster (one server dry
//! run, server-side apply along the dependency plan, then prune), or print its dependency
//! plan with `--plan`. Also home of
//! [`runtime`] and [`interruptible`], which the other cluster commands share.

use std::future::Future;
use std::time::Instant;

use serde::Serialize;

use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use crate::cluster::{Action, DEFAULT_CONCURRENCY, ObjectResult};
use crate::ops::{self, ApplyOptions, ClusterOptions};
use crate::ui::reporters::{apply_reporter, bars_allowed};
use crate::ui::{Diagnostic, ExitStatus, OutputFormat, Printer, findings};

/// Arguments of `ferry apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Ask the API server what would change (server-side dry run); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take over fields another field manager owns instead of failing with a conflict.
    #[arg(long)]
    force_conflicts: bool,
    /// Keep objects that left the bundle instead of deleting them.
    #[arg(long)]
    no_prune: bool,
    /// Send every object, even those unchanged since the last apply.
    #[arg(long)]
    reapply: bool,
    /// Skip the lint (by default a bundle with lint errors is not applied).
    #[arg(long)]
    no_lint: bool,
    /// Requests in flight at most (default: 32).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Print the dependency plan (steps, and when each object can be dry-run); render only,
    /// no cluster is contacted and nothing changes.
    #[arg(long)]
    plan: bool,
}

impl ApplyArgs {
    /// Refuses the flags `--plan` would ignore: everything about talking to a cluster.
    fn refuse_with_plan(&self, global: &GlobalArgs) -> Result<(), Box<dyn Diagnostic>> {
        const COMMAND: &str = "apply --plan";
        global.refuse_cluster_flags(COMMAND)?;
        let flag = [
            (self.dry_run, "--dry-run"),
            (self.force_conflicts, "--force-conflicts"),
            (self.no_prune, "--no-prune"),
            (self.reapply, "--reapply"),
            (self.concurrency.is_some(), "--concurrency"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag));
        match flag {
            Some(flag) => Err(super::boxed(super::IgnoredFlag {
                command: COMMAND,
                flag,
            })),
            None => Ok(()),
        }
    }
}

/// The runtime was not built.
#[derive(Debug, thiserror::Error)]
#[error("failed to start the async runtime")]
pub struct RuntimeError {
    #[source]
    source: std::io::Error,
}

impl Diagnostic for RuntimeError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}

/// The tokio runtime cluster commands run on.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Box<dyn Diagnostic>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| super::boxed(RuntimeError { source }))
}

/// Runs `work` to completion, or stops at SIGINT/SIGTERM: `None` when interrupted (the
/// future is dropped, so no further request is sent).
pub(super) async fn interruptible<T>(work: impl Future<Output = T>) -> Option<T> {
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
        result = work => Some(result),
        _ = tokio::signal::ctrl_c() => None,
        () = terminate => None,
    }
}

/// The last JSON line of a long operation.
#[derive(Debug, Serialize)]
pub(super) struct Finished<'a> {
    event: &'static str,
    status: ExitStatus,
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl<'a> Finished<'a> {
    pub(super) fn new(status: ExitStatus, changes: Option<usize>, error: Option<&'a str>) -> Self {
        Finished {
            event: "finished",
            status,
            exit_code: status.code(),
            changes,
            error,
        }
    }
}

/// The verb people read for an action, dry run or not.
pub(super) fn action_verb(action: Action, dry_run: bool) -> &'static str {
    match (action, dry_run) {
        (Action::Created, false) => "Created",
        (Action::Adopted, false) => "Adopted",
        (Action::Configured, false) => "Configured",
        (Action::Unchanged, false) => "Unchanged",
        (Action::Pruned, false) => "Pruned",
        (Action::Created, true) => "Would create",
        (Action::Adopted, true) => "Would adopt",
        (Action::Configured, true) => "Would change",
        (Action::Unchanged, true) => "Unchanged",
        (Action::Pruned, true) => "Would prune",
    }
}

/// `N objects: 1 created, 2 configured, …` for a list of results (`1 to create, …` in a dry
/// run).
pub(super) fn summary(objects: &[ObjectResult], pruned: &[ObjectResult], dry_run: bool) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for r in objects.iter().chain(pruned) {
        *counts.entry(r.action).or_insert(0usize) += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(action, n)| match (dry_run, action) {
            (true, Action::Created) => format!("{n} to create"),
            (true, Action::Adopted) => format!("{n} to adopt"),
            (true, Action::Configured) => format!("{n} to change"),
            (true, Action::Pruned) => format!("{n} to prune"),
            _ => format!("{n} {}", action.as_str()),
        })
        .collect();
    format!(
        "{} object{}: {}",
        objects.len(),
        if objects.len() == 1 { "" } else { "s" },
        if parts.is_empty() {
            "nothing to do".to_string()
        } else {
            parts.join(", ")
        }
    )
}

/// Prints each changed object, then the objects left alone.
pub(super) fn print_changes(
    printer: &Printer,
    objects: &[ObjectResult],
    pruned: &[ObjectResult],
    dry_run: bool,
) {
    for r in objects
        .iter()
        .chain(pruned)
        .filter(|r| r.action.is_change())
    {
        let note = if r.unchecked {
            " (not checked by the server: its kind or namespace is created by this bundle)"
        } else {
            ""
        };
        printer.status(action_verb(r.action, dry_run), &format!("{}{note}", r.id));
    }
}

/// Applies and prints what changed (or, with `--plan`, prints the plan).
pub fn run(args: &ApplyArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    if args.plan {
        args.refuse_with_plan(global)?;
        return run_plan(args, global, printer);
    }
    let opts = ApplyOptions {
        project: args.env.project_options(global),
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        dry_run: args.dry_run,
        force_conflicts: args.force_conflicts,
        prune: !args.no_prune,
        reapply: args.reapply,
        lint: !args.no_lint,
        concurrency: args.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
    };
    let json = printer.format() == OutputFormat::Json;
    let reporter = apply_reporter(printer, bars_allowed(global.no_progress, global.verbose));
    let started = Instant::now();
    let result = runtime()?.block_on(interruptible(ops::apply(&opts, reporter.as_ref())));
    reporter.finished();
    let outcome = match result {
        None => {
            if json {
                printer.json(&Finished::new(
                    ExitStatus::Interrupted,
                    None,
                    Some("interrupted"),
                ));
            }
            printer.error("interrupted: no further changes were sent");
            printer.hint(&format!(
                "objects applied before the interruption stay; run `ferry apply {}` again to finish",
                args.env.environment
            ));
            return Ok(ExitStatus::Interrupted);
        }
        Some(Err(error)) => {
            if let ops::apply::Error::Lint { findings, .. } = &error {
                findings::print(printer, findings);
            }
            if let ops::apply::Error::Apply { done, dry_run, .. } = &error
                && !json
            {
                print_changes(printer, done, &[], *dry_run);
            }
            if json {
                let message = error.to_string();
                printer.json(&Finished::new(error.exit_status(), None, Some(&message)));
            }
            return Err(super::boxed(error));
        }
        Some(Ok(outcome)) => outcome,
    };
    if json {
        printer.json(&Finished::new(
            ExitStatus::Success,
            Some(outcome.changes()),
            None,
        ));
        return Ok(ExitStatus::Success);
    }
    findings::print(printer, &outcome.findings);
    print_changes(printer, &outcome.objects, &outcome.pruned, outcome.dry_run);
    for id in &outcome.kept {
        printer.note(&format!(
            "left {id} alone: it carries ferry's labels but ferry never applied it"
        ));
    }
    printer.status(
        if outcome.dry_run {
            "Checked"
        } else {
            "Applied"
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

/// `--plan`: renders and prints the steps; findings and errors go to stderr.
fn run_plan(args: &ApplyArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = ops::PlanOptions {
        project: args.env.project_options(global),
        lint: !args.no_lint,
    };
    let outcome = match ops::plan(&opts) {
        Ok(outcome) => outcome,
        Err(error) => {
            if let ops::plan::Error::Lint { findings, .. } = &error {
                findings::print(printer, findings);
            }
            return Err(super::boxed(error));
        }
    };
    findings::print(printer, &outcome.findings);
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
    } else {
        printer.data(&plan_text(&outcome));
    }
    Ok(ExitStatus::Success)
}

/// The plan for people: a header per step, then one object per line.
fn plan_text(outcome: &ops::PlanOutcome) -> String {
    let total = outcome.steps.len();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut text = String::new();
    for step in &outcome.steps {
        text.push_str(&format!(
            "step {} of {total}: {}",
            step.step,
            plural(step.objects.len(), "object")
        ));
        if !step.establishes.is_empty() {
            text.push_str(&format!(
                ", then wait for {} to be established",
                plural(step.establishes.len(), "CustomResourceDefinition")
            ));
        }
        text.push('\n');
        for object in &step.objects {
            text.push_str(&format!("  {}\n", plan_line(object)));
        }
    }
    if total == 0 {
        text.push_str("nothing to apply\n");
    }
    text
}

/// `Kind namespace/name`, with when the server can check it when not up front.
fn plan_line(object: &ops::plan::PlannedObject) -> String {
    let at = match &object.namespace {
        Some(ns) => format!("{ns}/{}", object.name),
        None => object.name.clone(),
    };
    let check = match &object.check {
        ops::plan::PlannedCheck::UpFront => String::new(),
        ops::plan::PlannedCheck::After {
            step,
            namespace,
            kind,
        } => {
            let created = match (kind, namespace) {
                (Some(kind), _) => format!("kind {kind}"),
                (None, Some(ns)) => format!("namespace {ns}"),
                (None, None) => "what it needs".to_string(),
            };
            format!(" (server dry run once step {step} has created {created})")
        }
    };
    format!("{} {at}{check}", object.kind)
}
