//! The `ferry` binary: parse, run one command, render any error, exit with its code.

use std::process::ExitCode;

/// mimalloc: rendering and parsing allocate many small values, and the system allocator
/// spent about 15% of `ferry render`'s time in malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ferry::cli::main()
}
