//! Operations: one file per command's work. Each takes an options struct and returns an
//! outcome struct; none prints or picks an exit code.

pub mod lint;
pub mod prepare;
pub mod render;

pub use lint::{LintOptions, LintOutcome, lint};
pub use prepare::{Prepared, ProjectOptions, prepare};
pub use render::{RenderOptions, RenderOutcome, render};
