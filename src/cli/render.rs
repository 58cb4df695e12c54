//! `ferry render <env>`: print or write the environment's manifests.

use std::path::PathBuf;

use super::{CommandResult, EnvironmentArgs, GlobalArgs};
use serde_json::Value;

use crate::ops::{self, RenderOptions};
use crate::render;
use crate::ui::{ExitStatus, OutputFormat, Printer, findings};

/// Arguments of `ferry render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    env: EnvironmentArgs,
    /// Write one file per object into DIR instead of printing.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Print secret values instead of `***`.
    #[arg(long)]
    show_secrets: bool,
    /// Skip the lint (by default a bundle with lint errors is not printed).
    #[arg(long)]
    no_lint: bool,
}

/// Renders, prints findings on stderr, and the manifests on stdout (or into files).
pub fn run(args: &RenderArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = RenderOptions {
        project: args.env.project_options(global),
        show_secrets: args.show_secrets,
        lint: !args.no_lint,
        output_dir: args.output_dir.clone(),
    };
    let outcome = ops::render(&opts).map_err(super::boxed)?;
    if args.show_secrets {
        printer.reveal_secrets_on_stdout();
    }
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
    } else {
        findings::print(printer, &outcome.findings);
        if !outcome.blocked {
            if outcome.written.is_empty() {
                let values: Vec<&Value> = outcome.objects.iter().map(|o| &o.object).collect();
                printer.data(&render::yaml_stream(&values));
            } else if let Some(dir) = &args.output_dir {
                printer.status(
                    "Wrote",
                    &format!("{} objects to {}", outcome.written.len(), dir.display()),
                );
            }
        }
    }
    if outcome.blocked {
        let errors = findings::error_count(&outcome.findings);
        printer.error(&format!(
            "refusing to render {}: {errors} lint error{}",
            outcome.environment,
            if errors == 1 { "" } else { "s" }
        ));
        printer.hint("fix the findings above, or pass --no-lint to render anyway");
        return Ok(ExitStatus::BadInput);
    }
    Ok(ExitStatus::Success)
}
