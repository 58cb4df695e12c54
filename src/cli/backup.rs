//! `ferry backup keygen|create|list|verify|prune`: thin wrappers around `ops::backup`.

use std::path::PathBuf;

use clap::Subcommand;

use super::apply::{Finished, runtime};
use super::{CommandResult, GlobalArgs};
use crate::ops::ClusterOptions;
use crate::ops::backup::{
    self, BackupTarget, CreateOptions, IDENTITY_VAR, KeygenOptions, ListOptions, ProbeOptions,
    PruneOptions, Selection, VerifyOptions,
};
use crate::ui::{self, ExitStatus, OutputFormat, Printer};

/// Arguments of `ferry backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Write a new age identity and print its public recipient (age1…).
    Keygen(KeygenArgs),
    /// Back up an environment: its objects, release records and image blobs, encrypted.
    Create(CreateArgs),
    /// List an environment's backups.
    List(EnvArg),
    /// Check every checksum; with an identity, decrypt and check everything (no cluster).
    Verify(VerifyArgs),
    /// Delete backups `backup.keepDaily`/`keepWeekly` do not keep, and unreferenced blobs.
    Prune(PruneArgs),
    /// Try a delete and an overwrite of a locked canary: report what the store enforces
    /// (exit 1 when deletes are not refused).
    Probe(EnvArg),
}

/// `ferry backup keygen`.
#[derive(Debug, clap::Args)]
struct KeygenArgs {
    /// Write the identity to FILE (mode 0600; never over an existing file) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output_file: Option<PathBuf>,
}

/// The environment whose backups a command acts on.
#[derive(Debug, clap::Args)]
struct EnvArg {
    /// The environment (a file environments/<ENV>.yaml).
    #[arg(value_name = "ENV")]
    environment: String,
}

impl EnvArg {
    fn target(&self, global: &GlobalArgs) -> BackupTarget {
        BackupTarget {
            project: global.project.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            environment: self.environment.clone(),
        }
    }
}

/// `ferry backup create`.
#[derive(Debug, clap::Args)]
struct CreateArgs {
    #[command(flatten)]
    env: EnvArg,
    /// Pull images over plain HTTP (loopback registries only).
    #[arg(long)]
    insecure: bool,
}

/// `ferry backup verify`.
#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    env: EnvArg,
    /// The identity file that decrypts the backups; without one only checksums are checked.
    #[arg(long, value_name = "FILE", env = IDENTITY_VAR)]
    identity: Option<PathBuf>,
    /// Verify this backup (default: the newest).
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    id: Option<String>,
    /// Verify every backup.
    #[arg(long)]
    all: bool,
}

/// `ferry backup prune`.
#[derive(Debug, clap::Args)]
struct PruneArgs {
    #[command(flatten)]
    env: EnvArg,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs a backup subcommand.
pub fn run(args: &BackupArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    match &args.command {
        BackupCommand::Keygen(a) => keygen(a, printer),
        BackupCommand::Create(a) => create(a, global, printer),
        BackupCommand::List(a) => list(a, global, printer),
        BackupCommand::Verify(a) => verify(a, global, printer),
        BackupCommand::Prune(a) => prune(a, global, printer),
        BackupCommand::Probe(a) => probe(a, global, printer),
    }
}

fn keygen(args: &KeygenArgs, printer: &Printer) -> CommandResult {
    let outcome = backup::keygen(&KeygenOptions {
        output: args.output_file.clone(),
    })
    .map_err(super::boxed)?;
    if let Some(key) = &outcome.key {
        // No file: the identity is the data, like age-keygen; the recipient goes to stderr.
        printer.data(&key.file_text());
        printer.note(&format!("public key: {}", outcome.recipient));
        return Ok(ExitStatus::Success);
    }
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
    } else {
        printer.data(&format!("{}\n", outcome.recipient));
        if let Some(path) = &outcome.path {
            printer.status("Wrote", &format!("identity {} (mode 0600)", path.display()));
        }
    }
    Ok(ExitStatus::Success)
}

fn create(args: &CreateArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = CreateOptions {
        target: args.env.target(global),
        cluster: ClusterOptions {
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
        insecure: args.insecure,
    };
    let bars = ui::reporters::bars_allowed(global.no_progress, global.verbose);
    let reporter = ui::reporters::backup_reporter(printer, bars);
    let result = runtime()?.block_on(backup::create(&opts, reporter.as_ref()));
    drop(reporter);
    let json = printer.format() == OutputFormat::Json;
    let outcome = match result {
        Ok(o) => o,
        Err(error) => {
            if json {
                let status = crate::ui::Diagnostic::exit_status(&error);
                printer.json(&Finished::new(status, None, Some(&error.to_string())));
            }
            return Err(super::boxed(error));
        }
    };
    if json {
        printer.json(&serde_json::json!({"event": "backup", "backup": outcome}));
        printer.json(&Finished::new(ExitStatus::Success, None, None));
        return Ok(ExitStatus::Success);
    }
    let secs = outcome.duration_ms as f64 / 1000.0;
    printer.status(
        "Backed up",
        &format!(
            "{} as {} to {}",
            outcome.environment, outcome.id, outcome.store
        ),
    );
    printer.text(&format!(
        "  {} objects ({} release records), {} images ({} blobs written, {} already stored), {:.1} MB written in {secs:.2}s",
        outcome.objects,
        outcome.release_records,
        outcome.images.len(),
        outcome.blobs_uploaded,
        outcome.blobs_reused,
        outcome.bytes_written as f64 / 1e6,
    ));
    let skipped: usize = outcome.skipped.values().sum();
    if skipped > 0 {
        printer.text(&format!(
            "  {skipped} objects left out that the cluster regenerates (pods, endpoints, tokens, …)"
        ));
    }
    printer.data(&format!("{}\n", outcome.id));
    Ok(ExitStatus::Success)
}

fn list(args: &EnvArg, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let outcome = runtime()?
        .block_on(backup::list(&ListOptions {
            target: args.target(global),
        }))
        .map_err(super::boxed)?;
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(ExitStatus::Success);
    }
    if outcome.backups.is_empty() {
        printer.note(&format!(
            "no backups of {} in {}",
            outcome.environment, outcome.store
        ));
        return Ok(ExitStatus::Success);
    }
    let mut text = format!(
        "{:<29} {:<24} {:>10} {:>8} {:>7} {}\n",
        "ID", "CREATED", "SIZE", "OBJECTS", "IMAGES", "VERIFIED"
    );
    for b in &outcome.backups {
        let verified = match b.verified {
            Some(crate::backup::index::Level::Full) => "yes",
            Some(crate::backup::index::Level::Checksums) => "checksums",
            None => "no",
        };
        text.push_str(&format!(
            "{:<29} {:<24} {:>10} {:>8} {:>7} {verified}\n",
            b.id,
            b.created_at,
            human_size(b.size),
            b.objects,
            b.images
        ));
    }
    printer.data(&text);
    Ok(ExitStatus::Success)
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn verify(args: &VerifyArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let identity = match &args.identity {
        Some(path) => Some(backup::read_identity(path).map_err(super::boxed)?),
        None => None,
    };
    let selection = match (&args.id, args.all) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, true) => Selection::All,
        (None, false) => Selection::Latest,
    };
    let outcome = runtime()?
        .block_on(backup::verify(&VerifyOptions {
            target: args.env.target(global),
            selection,
            identity,
        }))
        .map_err(super::boxed)?;
    let status = if outcome.passed() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(status);
    }
    for b in &outcome.backups {
        let how = match b.level {
            crate::backup::index::Level::Full => format!(
                "{} files decrypted, manifest authenticated, {} entries checked",
                b.files, b.entries
            ),
            crate::backup::index::Level::Checksums => format!(
                "{} file checksums (no identity: contents not decrypted)",
                b.files
            ),
        };
        if b.problems.is_empty() {
            printer.status("Verified", &format!("{}: {how}", b.id));
            if !b.recorded {
                printer.note(
                    "the verification could not be recorded in the store (read-only access?)",
                );
            }
        } else {
            printer.error(&format!("backup {} failed verification", b.id));
            for p in &b.problems {
                printer.text(&format!("  {}", p.describe()));
            }
        }
    }
    for orphan in &outcome.orphans {
        printer.error(&format!(
            "{orphan} has no index: an interrupted `backup create`, or its index was deleted"
        ));
    }
    if args.identity.is_none() {
        printer.hint(&format!(
            "pass --identity FILE (or {IDENTITY_VAR}) to decrypt and check every entry"
        ));
    }
    Ok(status)
}

fn prune(args: &PruneArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let outcome = runtime()?
        .block_on(backup::prune(&PruneOptions {
            target: args.env.target(global),
            dry_run: args.dry_run,
        }))
        .map_err(super::boxed)?;
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(ExitStatus::Success);
    }
    let verb = if outcome.dry_run {
        "Would delete"
    } else {
        "Deleted"
    };
    for id in &outcome.deleted {
        printer.status(verb, &format!("backup {id}"));
    }
    for k in &outcome.kept {
        let reasons: Vec<String> = k
            .reasons
            .iter()
            .map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        printer.status("Kept", &format!("backup {} ({})", k.id, reasons.join(", ")));
    }
    printer.text(&format!(
        "  {} backups kept (keepDaily {}, keepWeekly {}), {} deleted, {} unreferenced image blobs, {:.1} MB freed",
        outcome.kept.len(),
        outcome.keep_daily,
        outcome.keep_weekly,
        outcome.deleted.len(),
        outcome.blobs_deleted,
        outcome.bytes_freed as f64 / 1e6
    ));
    Ok(ExitStatus::Success)
}

fn probe(args: &EnvArg, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let outcome = runtime()?
        .block_on(backup::probe(&ProbeOptions {
            target: args.target(global),
        }))
        .map_err(super::boxed)?;
    let status = if outcome.enforced {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(status);
    }
    let yes_no = |b: bool| if b { "refused" } else { "ALLOWED" };
    printer.data(&format!(
        "store:             {}\nobject lock:       {}\ncreate-only write: {}\noverwrite:         {}\ndelete:            {}\n",
        outcome.store,
        match &outcome.lock {
            None => "n/a (directory)".to_string(),
            Some(l) if l.unsupported => "not implemented by the server".to_string(),
            Some(l) if l.enabled => format!(
                "enabled{}",
                l.default_rule.as_deref().map(|r| format!(", default {r}")).unwrap_or_default()
            ),
            Some(_) => "not enabled".to_string(),
        },
        yes_no(outcome.create_only_refused),
        match (&outcome.lock, outcome.overwrite_preserved) {
            (None, _) => "not protected",
            (_, true) => "original preserved",
            (_, false) => "original LOST",
        },
        yes_no(outcome.delete_refused),
    ));
    for note in &outcome.notes {
        printer.note(note);
    }
    if outcome.enforced {
        printer.status(
            "Enforced",
            "object lock: locked objects cannot be deleted or overwritten",
        );
    } else {
        printer.warn("object lock not enforced: backups in this store can be deleted or replaced by anyone with write access");
    }
    Ok(status)
}
