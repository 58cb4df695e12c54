//! The one place that writes to stdout and stderr.
//!
//! `data` and `json` go to stdout (what pipelines consume); `status`, `warn`, `note`, `hint`
//! and `error` go to stderr (what people read). A closed stdout (broken pipe) is remembered
//! and further data is dropped quietly; the command carries on and exits with its own code.
//!
//! Every line, on either stream, is scrubbed of the secret values this process has seen
//! ([`crate::redact::scrub`]) on its way out, so no command, error, cause or hint can print one,
//! whatever it carries. Only `ferry render --show-secrets` turns that off, for stdout only
//! ([`Printer::reveal_secrets_on_stdout`]).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::redact;

/// The shape of data on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Text for people.
    #[default]
    Human,
    /// JSON: one document for queries, JSON Lines for long operations.
    Json,
}

/// Writes data to stdout and messages to stderr, with color only on a terminal.
#[derive(Debug)]
pub struct Printer {
    format: OutputFormat,
    color: bool,
    stdout_closed: AtomicBool,
    reveal_on_stdout: AtomicBool,
}

impl Printer {
    /// A printer for `format`; color is used only when stderr is a terminal and `NO_COLOR`
    /// is unset.
    pub fn new(format: OutputFormat) -> Self {
        let color = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            format,
            color,
            stdout_closed: AtomicBool::new(false),
            reveal_on_stdout: AtomicBool::new(false),
        }
    }

    /// From now on, `data` and `json` print secret values as they are (`--show-secrets`, which
    /// the user asked for on purpose). Messages on stderr stay scrubbed.
    pub fn reveal_secrets_on_stdout(&self) {
        self.reveal_on_stdout.store(true, Ordering::Relaxed);
    }

    /// The output format chosen by the user.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// True when stdout was closed by its reader (e.g. `ferry render staging | head`).
    pub fn stdout_closed(&self) -> bool {
        self.stdout_closed.load(Ordering::Relaxed)
    }

    /// Writes `text` to stdout, secret values scrubbed. After a failed write stdout is left
    /// alone; a failure other than a broken pipe is reported once on stderr.
    pub fn data(&self, text: &str) {
        if self.stdout_closed() {
            return;
        }
        let text = if self.reveal_on_stdout.load(Ordering::Relaxed) {
            Cow::Borrowed(text)
        } else {
            redact::scrub(text)
        };
        let mut out = io::stdout().lock();
        let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        if let Err(error) = result {
            // Either way stdout is done: report a real failure once, never a broken pipe.
            self.stdout_closed.store(true, Ordering::Relaxed);
            if error.kind() != io::ErrorKind::BrokenPipe {
                self.error(&format!("failed to write to stdout: {error}"));
            }
        }
    }

    /// Writes `value` as one line of JSON to stdout, secret values scrubbed (also in their
    /// JSON-escaped form).
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        match serde_json::to_string(value) {
            Ok(line) => self.data(&(line + "\n")),
            Err(error) => self.error(&format!("failed to encode JSON output: {error}")),
        }
    }

    /// A progress line for people: `<verb> <message>`, the verb right-aligned like cargo's.
    pub fn status(&self, verb: &str, message: &str) {
        let verb = format!("{verb:>12}");
        self.stderr_line(&self.paint(&verb, "1;32"), message);
    }

    /// A warning the user should see without `-v`.
    pub fn warn(&self, message: &str) {
        self.stderr_line(&self.paint("warning:", "1;33"), message);
    }

    /// A neutral remark.
    pub fn note(&self, message: &str) {
        self.stderr_line(&self.paint("note:", "1;36"), message);
    }

    /// A suggestion of what to do next.
    pub fn hint(&self, message: &str) {
        self.stderr_line(&self.paint("hint:", "1;36"), message);
    }

    /// The headline of a failure.
    pub fn error(&self, message: &str) {
        self.stderr_line(&self.paint("error:", "1;31"), message);
    }

    /// One cause in an error chain.
    pub fn caused_by(&self, message: &str) {
        self.stderr_line(&self.paint("caused by:", "1"), message);
    }

    /// Free text for people on stderr (tables, summaries in human mode).
    pub fn text(&self, message: &str) {
        let message = redact::scrub(message);
        let _ = writeln!(io::stderr().lock(), "{message}");
    }

    fn stderr_line(&self, label: &str, message: &str) {
        let message = redact::scrub(message);
        let _ = writeln!(io::stderr().lock(), "{label} {message}");
    }

    fn paint(&self, text: &str, ansi: &str) -> String {
        if self.color {
            format!("\x1b[{ansi}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}
