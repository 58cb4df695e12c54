//! Everything a person or a pipeline sees: the [`Printer`] (stdout for data, stderr for
//! people), error rendering with causes and hints, exit statuses, and the tracing subscriber.
//!
//! Nothing outside this module writes to stdout or stderr.

pub mod availability;
pub mod error;
pub mod exit;
pub mod findings;
pub mod logging;
pub mod printer;
pub mod reporters;

pub use error::{Diagnostic, one_line, render_error};
pub use exit::ExitStatus;
pub use printer::{OutputFormat, Printer};
