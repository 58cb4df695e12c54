//! The tracing subscriber, built once: stderr, ANSI only on a terminal.
//!
//! `-v` enables `ferry=debug`, `-vv` `ferry=trace`; `FERRY_LOG` (or `RUST_LOG`) overrides both.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
