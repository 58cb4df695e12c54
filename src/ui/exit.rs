//! Ferry's documented exit codes, in one enum.

use std::process::ExitCode;

/// How a command ended; converts to the process exit code documented in DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitStatus {
    /// 0: the operation succeeded.
    Success,
    /// 1: the operation failed but the cluster is safe (rolled back, gate failed, diff found).
    Failure,
    /// 2: bad input or configuration; nothing was changed.
    BadInput,
    /// 3: failed part-way; state may be mixed and the message says what to run next.
    Partial,
    /// 130: interrupted by a signal.
    Interrupted,
}

impl ExitStatus {
    /// The numeric code this status exits with.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::BadInput => 2,
            ExitStatus::Partial => 3,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}
