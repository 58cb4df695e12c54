//! Operations: one file per command's work. Each takes an options struct and returns an
//! outcome struct; none prints or picks an exit code.

pub mod apply;
pub mod backup;
pub mod diff;
pub mod history;
pub mod image;
pub mod lint;
pub mod plan;
pub mod prepare;
pub mod provision;
pub mod release;
pub mod render;
pub mod restore;
pub mod status;
pub mod target;

pub use apply::{ApplyOptions, ApplyOutcome, ClusterOptions, apply};
pub use diff::{DiffOptions, DiffOutcome, diff};
pub use history::{HistoryEntry, HistoryOptions, HistoryOutcome, history};
pub use image::{
    ImageBuildOptions, ImageBuildOutcome, ImageOptions, ImagePushOptions, ImagePushOutcome,
    build_images, push_images,
};
pub use lint::{LintOptions, LintOutcome, lint};
pub use plan::{PlanOptions, PlanOutcome, plan};
pub use prepare::{Prepared, ProjectOptions, prepare};
pub use provision::{ProvisionOptions, ProvisionOutcome, provision};
pub use release::{ReleaseOptions, ReleaseOutcome, Source as ReleaseSource, release};
pub use render::{RenderOptions, RenderOutcome, render};
pub use status::{StatusOptions, StatusOutcome, status};
pub use target::{Target, TargetOptions};
