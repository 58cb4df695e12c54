//! The `ferry` binary: parse, run one command, render any error, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    ferry::cli::main()
}
