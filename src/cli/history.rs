//! `ferry history <env>`: the release records of an environment, as a table or one JSON
//! document.

use super::apply::runtime;
use super::{CommandResult, GlobalArgs, RecordTargetArgs};
use crate::ops::{self, ClusterOptions, HistoryOptions};
use crate::ui::{ExitStatus, OutputFormat, Printer, availability};

/// Arguments of `ferry history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    target: RecordTargetArgs,
}

/// Lists the records.
pub fn run(args: &HistoryArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = HistoryOptions {
        target: args.target.target_options(global)?,
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
    };
    let outcome = runtime()?
        .block_on(ops::history(&opts))
        .map_err(super::boxed)?;
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(ExitStatus::Success);
    }
    if outcome.releases.is_empty() {
        printer.note(&format!(
            "no releases of {} in {} yet",
            outcome.app, outcome.environment
        ));
        return Ok(ExitStatus::Success);
    }
    let mut text = format!(
        "{:<8} {:<12} {:<21} {:<12} {:<20} {}\n",
        "REVISION", "STATUS", "STARTED", "BY", "CANDIDATE", "AVAILABILITY"
    );
    for r in &outcome.releases {
        let candidate = r
            .candidate
            .as_deref()
            .map(|c| c.chars().take(19).collect::<String>())
            .unwrap_or_else(|| "-".to_string());
        let availability = availability::short(&r.availability);
        let mut note = String::new();
        if let Some(n) = r.rolled_back_to {
            note.push_str(&format!(" (restored {n})"));
        }
        if let Some(s) = &r.source {
            note.push_str(&format!(" ({s})"));
        }
        text.push_str(&format!(
            "{:<8} {:<12} {:<21} {:<12} {:<20} {availability}{note}\n",
            r.revision,
            r.status.as_str(),
            r.started_at
                .as_deref()
                .map(|t| t.get(..19).map_or(t.to_string(), |s| format!("{s}Z")))
                .unwrap_or_else(|| "-".to_string()),
            r.released_by.as_deref().unwrap_or("-"),
            candidate,
        ));
    }
    printer.data(&text);
    Ok(ExitStatus::Success)
}
