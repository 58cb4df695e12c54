//! `ferry image build|push`: build reproducible OCI images into `target/ferry/images/<name>`
//! and push them (with their SBOMs) to their registries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{CommandResult, GlobalArgs};
use crate::ops::image::{
    ImageBuildOptions, ImageOptions, ImagePushOptions, ImageReport, SOURCE_DATE_EPOCH,
};
use crate::registry::{BlobAction, BlobOutcome, ClientOptions, PushReporter};
use crate::ui::{ExitStatus, OutputFormat, Printer, findings};

/// Arguments of `ferry image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Build images into target/ferry/images/<NAME> (OCI layout) and print their digests.
    Build(BuildArgs),
    /// Build when inputs changed, then push images and their SBOMs.
    Push(PushArgs),
}

/// Flags shared by build and push.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// The image (a key of `images:` in ferry.yaml); default: every image with files.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// Every timestamp in the image, in seconds since 1970 (reproducible-builds.org).
    #[arg(long, env = SOURCE_DATE_EPOCH, default_value_t = 0, value_name = "SECONDS")]
    source_date_epoch: u64,
    /// Talk plain HTTP to a registry on 127.0.0.1/localhost (test registries only).
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Build a second time from copies of the inputs and compare; exit 1 and show what
    /// differs when the digests do.
    #[arg(long)]
    verify: bool,
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Push to this registry host (host[:port]) instead of the one in each repository.
    #[arg(long, value_name = "HOST")]
    registry: Option<String>,
}

impl CommonArgs {
    fn options(&self, global: &GlobalArgs) -> ImageOptions {
        ImageOptions {
            project: global.project.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            name: self.name.clone(),
            source_date_epoch: self.source_date_epoch,
            client: ClientOptions {
                insecure: self.insecure,
                ..ClientOptions::default()
            },
        }
    }
}

/// Runs `ferry image build` or `ferry image push`.
pub fn run(args: &ImageArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| super::boxed(RuntimeError(e)))?;
    runtime.block_on(async {
        match &args.command {
            ImageCommand::Build(b) => build(b, global, printer).await,
            ImageCommand::Push(p) => push(p, global, printer).await,
        }
    })
}

async fn build(args: &BuildArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = ImageBuildOptions {
        images: args.common.options(global),
        verify: args.verify,
    };
    let outcome = tokio::select! {
        outcome = crate::ops::image::build_images(&opts) => outcome.map_err(super::boxed)?,
        _ = tokio::signal::ctrl_c() => return Ok(interrupted(printer)),
    };
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(outcome.status());
    }
    for image in &outcome.images {
        report_build(printer, image);
        if let Some(verify) = &image.verify {
            if verify.reproducible {
                printer.status(
                    "Verified",
                    &format!(
                        "{}: reproducible, a second build from copied inputs gave {}",
                        image.name,
                        short(&verify.second_digest)
                    ),
                );
            } else {
                printer.error(&format!(
                    "{} is not reproducible: a second build gave {}",
                    image.name, verify.second_digest
                ));
                for d in &verify.differences {
                    printer.text(&format!(
                        "  {} {}: {} → {}",
                        d.location, d.field, d.first, d.second
                    ));
                }
            }
        }
        if !image.blocked {
            printer.data(&format!("{}@{}\n", image.repository, image.digest));
        }
    }
    Ok(outcome.status())
}

async fn push(args: &PushArgs, global: &GlobalArgs, printer: &Printer) -> CommandResult {
    let opts = ImagePushOptions {
        images: args.common.options(global),
        registry: args.registry.clone(),
    };
    let reporter = Reporter {
        printer,
        show: printer.format() == OutputFormat::Human && !global.no_progress,
        uploaded: AtomicUsize::new(0),
        bytes: AtomicU64::new(0),
    };
    let outcome = tokio::select! {
        outcome = crate::ops::image::push_images(&opts, &reporter) => outcome.map_err(super::boxed)?,
        _ = tokio::signal::ctrl_c() => return Ok(interrupted(printer)),
    };
    if printer.format() == OutputFormat::Json {
        printer.json(&outcome);
        return Ok(outcome.status());
    }
    for image in &outcome.images {
        if image.build.reused {
            printer.status(
                "Fresh",
                &format!(
                    "{} {} (inputs unchanged)",
                    image.build.name,
                    short(&image.build.digest)
                ),
            );
        } else {
            report_build(printer, &image.build);
        }
        let Some(push) = &image.push else { continue };
        for warning in &push.warnings {
            printer.warn(warning);
        }
        let count = |f: fn(&BlobAction) -> bool| push.blobs.iter().filter(|b| f(&b.action)).count();
        let uploaded =
            count(|a| matches!(a, BlobAction::Uploaded | BlobAction::UploadedChunked { .. }));
        let mounted = count(|a| matches!(a, BlobAction::Mounted { .. }));
        let existed = count(|a| matches!(a, BlobAction::Existed));
        let summary = if push.manifest_existed {
            "already there, nothing uploaded".to_string()
        } else {
            format!(
                "{uploaded} blobs uploaded ({}), {mounted} mounted, {existed} already there",
                human_size(push.bytes_uploaded)
            )
        };
        printer.status(
            "Pushed",
            &format!(
                "{} to {} ({summary}; {} SBOMs)",
                image.build.name,
                push.reference,
                push.referrers.len()
            ),
        );
        printer.data(&format!("{}\n", push.reference));
    }
    Ok(outcome.status())
}

fn report_build(printer: &Printer, image: &ImageReport) {
    findings::print(printer, &image.findings);
    if image.blocked {
        let errors = findings::error_count(&image.findings);
        printer.error(&format!(
            "refusing image {}: {errors} hardening error{}; the previous build and lock are unchanged",
            image.name,
            if errors == 1 { "" } else { "s" }
        ));
        printer.hint("fix the image spec in ferry.yaml (the findings say how)");
        return;
    }
    let size: u64 = image.layers.iter().map(|l| l.size).sum();
    printer.status(
        "Built",
        &format!(
            "{} {} ({} files, {} layers, {}, SPDX + CycloneDX SBOMs) in {}",
            image.name,
            short(&image.digest),
            image.files,
            image.layers.len(),
            human_size(size),
            image.layout.display()
        ),
    );
}

fn interrupted(printer: &Printer) -> ExitStatus {
    printer.warn(
        "interrupted; a partial build or upload leaves nothing referenced (run the command again)",
    );
    ExitStatus::Interrupted
}

/// `sha256:0123456789ab`; a digest of another shape (from a lock file or a registry) whole.
fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Per-blob lines on stderr for people.
struct Reporter<'a> {
    printer: &'a Printer,
    show: bool,
    uploaded: AtomicUsize,
    bytes: AtomicU64,
}

impl PushReporter for Reporter<'_> {
    fn blob_done(&self, outcome: &BlobOutcome) {
        if matches!(outcome.action, BlobAction::Existed) {
            return;
        }
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(outcome.size, Ordering::Relaxed);
        if self.show {
            let how = match &outcome.action {
                BlobAction::Mounted { from } => format!("mounted from {from}"),
                BlobAction::UploadedChunked { chunks } => format!("{chunks} chunks"),
                _ => "one request".to_string(),
            };
            self.printer.status(
                "Uploaded",
                &format!(
                    "{} ({}, {how})",
                    short(&outcome.digest),
                    human_size(outcome.size)
                ),
            );
        }
    }
}

/// The async runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("failed to start the async runtime")]
struct RuntimeError(#[source] std::io::Error);

impl crate::ui::Diagnostic for RuntimeError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}
