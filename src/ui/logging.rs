//! The tracing subscriber, built once: stderr, ANSI only on a terminal.
//!
//! `-v` enables `ferry=debug`, `-vv` `ferry=trace`; `FERRY_LOG` (or `RUST_LOG`) overrides both.
//! Each event is buffered whole and scrubbed of secret values ([`crate::redact::scrub`]) before
//! it reaches stderr, like every line of the [`Printer`](super::Printer).

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Environment variable that overrides the log filter (tracing `EnvFilter` syntax).
pub const FERRY_LOG: &str = "FERRY_LOG";

/// Installs the global subscriber for `verbosity` (0 = warnings only). Safe to call once.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "ferry=warn",
        1 => "ferry=debug",
        _ => "ferry=trace",
    };
    let filter = std::env::var(FERRY_LOG)
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Makes one [`ScrubbedEvent`] per log event.
#[derive(Debug, Clone, Copy)]
pub struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedEvent<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedEvent::new(io::stderr())
    }
}

/// Collects one event's bytes and writes them, scrubbed, to `out` when dropped (a secret value
/// split across two `write` calls is still found).
#[derive(Debug)]
pub struct ScrubbedEvent<W: Write> {
    buffer: Vec<u8>,
    out: W,
}

impl<W: Write> ScrubbedEvent<W> {
    /// A buffer in front of `out`.
    pub fn new(out: W) -> Self {
        ScrubbedEvent {
            buffer: Vec::new(),
            out,
        }
    }
}

impl<W: Write> Write for ScrubbedEvent<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbedEvent<W> {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let _ = self.out.write_all(crate::redact::scrub(&text).as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_events_are_scrubbed_even_when_written_in_pieces() {
        crate::redact::register("log-secret-9d1f");
        let mut out = Vec::new();
        {
            let mut event = ScrubbedEvent::new(&mut out);
            write!(event, "DEBUG applying value=\"log-sec").unwrap();
            writeln!(event, "ret-9d1f\" done").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "DEBUG applying value=\"***\" done\n"
        );
    }
}
