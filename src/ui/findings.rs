//! How lint findings read for people: one block per finding on stderr.

use super::Printer;
use crate::policy::{Finding, Severity};

/// Prints every finding: `error[RULE] Kind ns/name: message`, then the field and the fix.
pub fn print(printer: &Printer, findings: &[Finding]) {
    for finding in findings {
        let label = match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        printer.text(&format!(
            "{label}[{}] {}: {}\n  at: {}\n  fix: {}",
            finding.rule, finding.object, finding.message, finding.path, finding.fix
        ));
    }
}

/// How many findings are errors.
pub fn error_count(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}
