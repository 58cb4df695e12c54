//! `ferry restore <env>`: a thin wrapper around `ops::restore`.

use std::path::PathBuf;
use std::time::Duration;

use super::apply::{Finished, interruptible, runtime};
use super::{CommandResult, GlobalArgs};
use crate::cluster::DEFAULT_CONCURRENCY;
use crate::ops::ClusterOptions;
use crate::ops::backup::{self, BackupTarget, IDENTITY_VAR};
use crate::ops::restore::images::ImageTarget;
use crate::ops::restore::{self, Error, Pick, RestoreOptions, RestoreOutcome, Verdict};
use crate::ui::reporters::{apply_reporter, bars_allowed};
use crate::ui::{Diagnostic, ExitStatus, OutputFormat, Printer};

/// Arguments of `ferry restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The environment whose backups to restore (a file environments/<ENV>.yaml).
    #[arg(value_name = "ENV")]
    environment: String,
    /// Restore this backup (default: the newest; `ferry backup list` shows the ids).
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    from: Option<String>,
    /// Restore the newest backup taken at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Restore onto the cluster of this kubeconfig context (default: the environment's).
    #[arg(long, value_name = "CONTEXT")]
    to_context: Option<String>,
    /// Restore into this namespace instead of the backup's.
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Push the images to this registry and run them from it (by digest).
    #[arg(long, value_name = "HOST[:PORT]")]
    registry: Option<String>,
    /// Talk plain HTTP to a loopback registry.
    #[arg(long)]
    insecure: bool,
    /// The identity file that decrypts the backup.
    #[arg(long, value_name = "FILE", env = IDENTITY_VAR)]
    identity: Option<PathBuf>,
    /// Replace objects that exist with other content (default: refuse, write nothing).
    #[arg(long)]
    overwrite: bool,
    /// Keep the Services' cluster IPs and node ports (default: the cluster allocates new ones).
    #[arg(long)]
    keep_cluster_ips: bool,
    /// Print the plan with every object's predicted outcome; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Requests in flight at most.
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// How long the workloads may take to become healthy.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// No identity: a restore must decrypt.
#[derive(Debug, thiserror::Error)]
#[error("ferry restore needs the identity that decrypts the backup")]
pub struct NoIdentity;

impl Diagnostic for NoIdentity {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        vec![format!(
            "pass --identity FILE or set {IDENTITY_VAR} to the age identity of one of `backup.recipients`"
        )]
    }
}

/// `--context` and `--to-context` both given, naming different contexts.
#[derive(Debug, thiserror::Error)]
#[error("--context {context} and --to-context {to_context} name different clusters")]
pub struct TwoContexts {
    context: String,
    to_context: String,
}

impl Diagnostic for TwoContexts {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        vec!["give only --to-context".to_string()]
    }
}

impl RestoreArgs {
    /// The operation's options.
    pub(super) fn options(
        &self,
        global: &GlobalArgs,
    ) -> Result<RestoreOptions, Box<dyn Diagnostic>> {
        let context = match (&global.context, &self.to_context) {
            (Some(c), Some(t)) if c != t => {
                return Err(super::boxed(TwoContexts {
                    context: c.clone(),
                    to_context: t.clone(),
                }));
            }
            (c, t) => t.clone().or_else(|| c.clone()),
        };
        let Some(identity) = &self.identity else {
            return Err(super::boxed(NoIdentity));
        };
        let identity = backup::read_identity(identity).map_err(super::boxed)?;
        let pick = match (&self.from, &self.at) {
            (Some(id), _) => Pick::Id(id.clone()),
            (None, Some(at)) => Pick::At(at.clone()),
            (None, None) => Pick::Latest,
        };
        Ok(RestoreOptions {
            target: BackupTarget {
                project: global.project.clone(),
                cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                environment: self.environment.clone(),
            },
            cluster: ClusterOptions {
                kubeconfig: global.kubeconfig.clone(),
                context,
            },
            pick,
            namespace: self.namespace.clone(),
            images: ImageTarget {
                registry: self.registry.clone(),
                insecure: self.insecure,
            },
            identity,
            overwrite: self.overwrite,
            keep_cluster_ips: self.keep_cluster_ips,
            dry_run: self.dry_run,
            concurrency: self.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
            timeout: self.timeout,
        })
    }
}

/// Restores and prints the per-object report.
pub fn run(args: &RestoreArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = args.options(global)?;
    let json = printer.format() == OutputFormat::Json;
    let reporter = apply_reporter(printer, bars_allowed(global.no_progress, global.verbose));
    let result = runtime()?.block_on(interruptible(restore::restore(&opts, reporter.as_ref())));
    reporter.finished();
    drop(reporter);
    let Some(result) = result else {
        if json {
            printer.json(&Finished::new(
                ExitStatus::Interrupted,
                None,
                Some("interrupted"),
            ));
        }
        printer.error("interrupted: no further objects were sent");
        printer.hint(&format!(
            "run `ferry restore {}` again: objects already restored are reported unchanged",
            args.environment
        ));
        return Ok(ExitStatus::Interrupted);
    };
    match result {
        Ok(outcome) => {
            print_outcome(printer, &outcome);
            if json {
                printer.json(&Finished::new(
                    ExitStatus::Success,
                    Some(outcome.changes()),
                    None,
                ));
            }
            Ok(ExitStatus::Success)
        }
        Err(error) => {
            if let Some(outcome) = outcome_of(&error) {
                print_outcome(printer, outcome);
            }
            if json {
                printer.json(&Finished::new(
                    error.exit_status(),
                    outcome_of(&error).map(RestoreOutcome::changes),
                    Some(&error.to_string()),
                ));
            }
            Err(super::boxed(error))
        }
    }
}

/// The report carried by an error, when the restore got that far.
pub(super) fn outcome_of(error: &Error) -> Option<&RestoreOutcome> {
    match error {
        Error::Refused { outcome }
        | Error::Apply { outcome, .. }
        | Error::Unhealthy { outcome, .. } => Some(outcome),
        _ => None,
    }
}

/// Prints the report: JSON as one `restore` event, else one line per object on stdout and the
/// summary on stderr.
pub(super) fn print_outcome(printer: &Printer, outcome: &RestoreOutcome) {
    if printer.format() == OutputFormat::Json {
        printer.json(&serde_json::json!({"event": "restore", "restore": outcome}));
        return;
    }
    let mut text = String::new();
    for o in &outcome.objects {
        let step = o.step.map(|s| format!(" (step {s})")).unwrap_or_default();
        let reason = o
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let verb = if outcome.dry_run && o.verdict == Verdict::Created {
            "would create"
        } else if outcome.dry_run && o.verdict == Verdict::Overwritten {
            "would overwrite"
        } else {
            o.verdict.as_str()
        };
        text.push_str(&format!("{verb:<12} {}{step}{reason}\n", o.id));
    }
    for image in &outcome.images {
        let what = if image.already_present {
            "present".to_string()
        } else {
            format!(
                "pushed {} blobs ({:.1} MB), {} present",
                image.blobs_pushed,
                image.bytes_pushed as f64 / 1e6,
                image.blobs_present
            )
        };
        text.push_str(&format!("{:<12} image {} ({what})\n", "image", image.to));
    }
    printer.data(&text);
    for r in &outcome.renamed {
        printer.note(&format!(
            "{} {} restored as {} (its subjects moved to {})",
            r.kind, r.from, r.to, outcome.namespace
        ));
    }
    let counts = [
        Verdict::Created,
        Verdict::Unchanged,
        Verdict::Overwritten,
        Verdict::Conflicted,
        Verdict::Failed,
        Verdict::NotApplied,
    ]
    .into_iter()
    .filter_map(|v| {
        let n = outcome.count(v);
        (n > 0).then(|| format!("{n} {}", v.as_str()))
    })
    .collect::<Vec<_>>()
    .join(", ");
    if outcome.dry_run {
        printer.status(
            "Planned",
            &format!(
                "restore of backup {} ({}) into {} on {}: {counts}; nothing was changed",
                outcome.backup, outcome.backup_created_at, outcome.namespace, outcome.context
            ),
        );
        return;
    }
    if !outcome.clean() {
        printer.text(&format!("  {counts}"));
        return;
    }
    printer.status(
        "Restored",
        &format!(
            "{} from backup {} ({}) into {} on {} in {:.1}s: {counts}",
            outcome.environment,
            outcome.backup,
            outcome.backup_created_at,
            outcome.namespace,
            outcome.context,
            outcome.duration_ms as f64 / 1000.0
        ),
    );
    printer.text(&format!(
        "  {} workloads healthy, {} release revisions restored{}",
        outcome.workloads,
        outcome.revisions.len(),
        outcome
            .revisions
            .last()
            .map(|r| format!(" (latest {r})"))
            .unwrap_or_default()
    ));
    printer.hint(&format!(
        "next: `ferry status {}` and `ferry history {}`",
        outcome.environment, outcome.environment
    ));
}
