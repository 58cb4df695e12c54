//! `ferry lint <env>`: check the environment's manifests.

use std::path::PathBuf;

use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use crate::ops::{self, LintOptions};
use crate::ui::{ExitStatus, OutputFormat, Printer, findings};

/// Arguments of `ferry lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Treat zero-downtime warnings as errors, as `ferry release` does.
    #[arg(long)]
    strict: bool,
    /// A previous render (file or `render -o` directory) to compare against, e.g. for
    /// selector changes.
    #[arg(long, value_name = "PATH")]
    previous: Option<PathBuf>,
}

/// Lints and prints the findings; exits 2 when any is an error.
pub fn run(args: &LintArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = LintOptions {
        project: args.env.project_options(global),
        strict: args.strict,
        previous: args.previous.clone(),
    };
    let outcome = ops::lint(&opts).map_err(super::boxed)?;
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
    } else {
        findings::print(printer, &outcome.findings);
        let errors = findings::error_count(&outcome.findings);
        let warnings = outcome.findings.len() - errors;
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let verdict = if outcome.failed { "failed" } else { "passed" };
        printer.status(
            "Linted",
            &format!(
                "{} of {}: {verdict}, {}, {}",
                plural(outcome.objects, "object"),
                outcome.environment,
                plural(errors, "error"),
                plural(warnings, "warning")
            ),
        );
    }
    Ok(if outcome.failed {
        ExitStatus::BadInput
    } else {
        ExitStatus::Success
    })
}
