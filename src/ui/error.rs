//! Error rendering: `error: <top>`, one `caused by:` line per source, then `hint:` lines.

use std::error::Error as StdError;

use super::{ExitStatus, Printer};

/// An error that knows its exit status and can suggest what to do next.
///
/// Module errors implement this so the top level can pick the exit code and print hints
/// without knowing every module.
pub trait Diagnostic: StdError + Send + Sync + 'static {
    /// The exit status this error ends the command with.
    fn exit_status(&self) -> ExitStatus;

    /// Lines of advice for the user, most useful first. Empty when there is nothing to add.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Renders `error` through `printer`: the message, each cause, then the hints.
///
/// Errors whose exit status is not a documented one of 1/2/3 (an unexpected failure) get a
/// hint that the problem is a bug in ferry.
pub fn render_error(printer: &Printer, error: &dyn Diagnostic) {
    printer.error(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        printer.caused_by(&cause.to_string());
        source = cause.source();
    }
    for hint in error.hints() {
        printer.hint(&hint);
    }
}

/// An error and each of its causes on one line, `: `-separated: for records, outcomes and
/// warnings, where the `caused by:` lines of [`render_error`] do not fit.
pub fn one_line(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
