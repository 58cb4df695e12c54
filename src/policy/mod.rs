//! Hardening and zero-downtime rules as pure functions over rendered objects.
//!
//! Every rule has a stable ID, a default severity, and reports each violation as a
//! [`Finding`] naming the object, the field path and a one-line fix. No I/O here: the
//! previous bundle (for rules that compare against what is live) is passed in.

mod hardening;
mod pod;
mod pod_security;
#[cfg(test)]
mod testing;
mod zero_downtime;

use serde::Serialize;

use self::pod::{Bundle, Pod};
use crate::object::{Object, ObjectRef};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported; does not block.
    Warning,
    /// Blocks `render` (without `--no-lint`), `lint` (exit 2) and `release`.
    Error,
}

/// The family a rule belongs to; zero-downtime rules can be raised to errors as a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Pod Security Standards "restricted" (what the admission controller enforces).
    PodSecurity,
    /// Hardening beyond Pod Security (read-only root, resources, digests, network policy).
    Hardening,
    /// Rules that keep a rolling release available.
    ZeroDowntime,
}

/// One violation of one rule by one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable ID, e.g. `PSS-PRIV-ESC`.
    pub rule: &'static str,
    /// The effective severity (after any escalation by the context).
    pub severity: Severity,
    /// The object that violates the rule.
    pub object: ObjectRef,
    /// The dotted field path inside the object, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// What is wrong, in one lowercase sentence.
    pub message: String,
    /// What to change, in one line.
    pub fix: String,
}

/// What the rules may know beyond the bundle itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct LintContext<'a> {
    /// The objects of the previous release or live cluster, for rules that compare (selector
    /// changes). Empty when unknown.
    pub previous: &'a [Object],
    /// Raise zero-downtime warnings to errors (as `release` does).
    pub strict_zero_downtime: bool,
}

/// A rule: its ID, family, default severity, a summary, and the check itself.
pub struct Rule {
    /// Stable ID, never reused.
    pub id: &'static str,
    /// Which family it belongs to.
    pub family: Family,
    /// Severity when the context does not escalate it.
    pub severity: Severity,
    /// One line describing what the rule requires.
    pub summary: &'static str,
    /// What the rule looks at, and the check itself.
    check: Check,
}

/// How a rule looks at a bundle. The engine visits each object once and hands the per-pod
/// and per-object checks the same located [`Pod`], so no rule walks the bundle on its own
/// unless it must relate objects to each other.
#[derive(Clone, Copy)]
enum Check {
    /// One pod spec (with its containers) at a time, of every pod-bearing object.
    Pod(fn(&Pod<'_>, &mut Vec<Violation>)),
    /// One object at a time.
    Object(fn(&Object, &mut Vec<Violation>)),
    /// The whole bundle at once, for rules that relate objects (or compare with
    /// `ctx.previous`).
    Bundle(fn(&Bundle<'_>, &LintContext<'_>, &mut Vec<Violation>)),
}

impl Check {
    /// Runs a per-pod or per-object check on `object` (and its `pod`, if it carries one);
    /// a whole-bundle check does nothing here.
    fn one(self, object: &Object, pod: Option<&Pod<'_>>, out: &mut Vec<Violation>) {
        match (self, pod) {
            (Check::Pod(check), Some(pod)) => check(pod, out),
            (Check::Object(check), _) => check(object, out),
            (Check::Pod(_) | Check::Bundle(_), _) => {}
        }
    }

    /// Runs a whole-bundle check on `bundle`; per-pod and per-object checks do nothing here.
    fn whole(self, bundle: &Bundle<'_>, ctx: &LintContext<'_>, out: &mut Vec<Violation>) {
        if let Check::Bundle(check) = self {
            check(bundle, ctx, out);
        }
    }
}

/// A violation as a rule reports it, before the engine adds rule ID and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The object at fault.
    pub object: ObjectRef,
    /// The dotted field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl Rule {
    /// The severity this rule reports with under `ctx`: its default, raised to
    /// [`Severity::Error`] for the zero-downtime family when `ctx.strict_zero_downtime`.
    pub fn effective_severity(&self, ctx: &LintContext<'_>) -> Severity {
        if ctx.strict_zero_downtime && self.family == Family::ZeroDowntime {
            Severity::Error
        } else {
            self.severity
        }
    }

    /// Turns what the rule reported into findings (with its ID and effective severity),
    /// appended to `findings`; `violations` is left empty for reuse.
    fn report(
        &self,
        ctx: &LintContext<'_>,
        violations: &mut Vec<Violation>,
        findings: &mut Vec<Finding>,
    ) {
        let severity = self.effective_severity(ctx);
        findings.extend(violations.drain(..).map(|v| Finding {
            rule: self.id,
            severity,
            object: v.object,
            path: v.path,
            message: v.message,
            fix: v.fix,
        }));
    }
}

/// The catalogue, Pod Security first, then hardening, then zero downtime.
static RULES: [Rule; 27] = [
    pod_security::HOST_NAMESPACES,
    pod_security::PRIVILEGED,
    pod_security::CAPABILITIES,
    pod_security::HOST_PATH,
    pod_security::HOST_PORTS,
    pod_security::PROC_MOUNT,
    pod_security::SECCOMP,
    pod_security::SYSCTLS,
    pod_security::SELINUX,
    pod_security::APPARMOR,
    pod_security::VOLUME_TYPES,
    pod_security::PRIV_ESC,
    pod_security::RUN_AS_NON_ROOT,
    pod_security::RUN_AS_USER,
    pod_security::HOST_PROBES,
    pod_security::HOST_PROCESS,
    hardening::READONLY_ROOT,
    hardening::RESOURCES,
    hardening::SA_TOKEN,
    hardening::IMAGE_DIGEST,
    hardening::DEFAULT_DENY,
    hardening::DEFAULT_NAMESPACE,
    zero_downtime::READINESS_PROBE,
    zero_downtime::ROLLING_UPDATE,
    zero_downtime::PRESTOP,
    zero_downtime::PDB,
    zero_downtime::SELECTOR_CHANGE,
];

/// Every rule Ferry checks, in catalogue order.
pub fn rules() -> &'static [Rule] {
    &RULES
}

/// The rule with stable ID `id`, if there is one.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Runs every rule over `bundle` and returns the findings with their effective severity,
/// sorted by object, then rule, then path (then message), so the output is deterministic.
pub fn lint(bundle: &[Object], ctx: &LintContext<'_>) -> Vec<Finding> {
    lint_with(rules(), bundle, ctx)
}

/// [`lint`] over a given catalogue.
fn lint_with(rules: &[Rule], bundle: &[Object], ctx: &LintContext<'_>) -> Vec<Finding> {
    let view = Bundle::new(bundle);
    let mut findings = Vec::new();
    let mut violations = Vec::new();
    // One visit per object: its per-pod and per-object rules share the located pod.
    for (object, pod) in view.entries() {
        for rule in rules {
            rule.check.one(object, pod, &mut violations);
            rule.report(ctx, &mut violations, &mut findings);
        }
    }
    for rule in rules {
        rule.check.whole(&view, ctx, &mut violations);
        rule.report(ctx, &mut violations, &mut findings);
    }
    sort_findings(&mut findings);
    findings
}

/// Sorts findings by object, then rule, then path (then message), so the output is
/// deterministic.
fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        a.object
            .cmp(&b.object)
            .then_with(|| a.rule.cmp(b.rule))
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.message.cmp(&b.message))
    });
}

/// Whether any finding blocks (has [`Severity::Error`]).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// How many findings block (have [`Severity::Error`]).
pub fn error_count(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::testing::{WEB, bundle_with, hardened_bundle, object, remove, set};
    use super::*;

    #[test]
    fn the_hardened_bundle_has_no_findings_at_all() {
        let previous = hardened_bundle();
        for strict in [false, true] {
            let ctx = LintContext {
                previous: &previous,
                strict_zero_downtime: strict,
            };
            assert_eq!(lint(&hardened_bundle(), &ctx), vec![]);
        }
    }

    #[test]
    fn rule_ids_are_unique_and_prefixed_by_family() {
        let mut seen = BTreeSet::new();
        for rule in rules() {
            assert!(seen.insert(rule.id), "duplicate rule {}", rule.id);
            let prefix = match rule.family {
                Family::PodSecurity => "PSS-",
                Family::Hardening => "HARD-",
                Family::ZeroDowntime => "ZD-",
            };
            assert!(rule.id.starts_with(prefix), "{}", rule.id);
            let expected = if rule.id == "HARD-IMAGE-DIGEST" {
                Severity::Warning
            } else {
                Severity::Error
            };
            assert_eq!(rule.severity, expected, "{}", rule.id);
            assert!(!rule.summary.is_empty());
        }
        assert_eq!(rule("PSS-PRIV-ESC").map(|r| r.id), Some("PSS-PRIV-ESC"));
        assert!(rule("NOPE").is_none());
    }

    #[test]
    fn every_message_is_lowercase_and_every_fix_one_line() {
        let mut bundle = bundle_with(|d| {
            set(d, "/spec/template/spec/hostNetwork", json!(true));
            set(d, &format!("{WEB}/image"), json!("web:latest"));
            remove(d, &format!("{WEB}/securityContext"));
            remove(d, &format!("{WEB}/readinessProbe"));
            remove(d, &format!("{WEB}/lifecycle"));
            remove(d, "/spec/strategy");
            set(d, "/metadata/namespace", json!("default"));
        });
        bundle.truncate(1);
        let findings = lint(&bundle, &LintContext::default());
        assert!(findings.len() > 10);
        for f in findings {
            let first = f.message.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{}: {}", f.rule, f.message);
            assert!(!f.message.ends_with('.'), "{}", f.rule);
            assert!(!f.fix.contains('\n') && !f.fix.is_empty(), "{}", f.rule);
            assert!(!f.path.is_empty(), "{}", f.rule);
        }
    }

    #[test]
    fn findings_are_sorted_by_object_rule_and_path() {
        let mut worker = super::testing::deployment();
        worker["metadata"]["name"] = json!("a-worker");
        remove(
            &mut worker,
            &format!("{WEB}/securityContext/allowPrivilegeEscalation"),
        );
        remove(&mut worker, &format!("{WEB}/readinessProbe"));
        let mut web = super::testing::deployment();
        set(
            &mut web,
            &format!("{WEB}/securityContext/allowPrivilegeEscalation"),
            json!(true),
        );
        set(
            &mut web,
            "/spec/template/spec/initContainers/0/securityContext/allowPrivilegeEscalation",
            json!(true),
        );
        let bundle = vec![
            object(web),
            object(worker),
            object(super::testing::pdb()),
            object(super::testing::default_deny()),
        ];
        let found: Vec<(String, &str, String)> = lint(&bundle, &LintContext::default())
            .into_iter()
            .map(|f| (f.object.name, f.rule, f.path))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "a-worker".to_string(),
                    "PSS-PRIV-ESC",
                    "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"
                        .to_string()
                ),
                (
                    "a-worker".to_string(),
                    "ZD-READINESS-PROBE",
                    "spec.template.spec.containers[0].readinessProbe".to_string()
                ),
                (
                    "web".to_string(),
                    "PSS-PRIV-ESC",
                    "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"
                        .to_string()
                ),
                (
                    "web".to_string(),
                    "PSS-PRIV-ESC",
                    "spec.template.spec.initContainers[0].securityContext.allowPrivilegeEscalation"
                        .to_string()
                ),
            ]
        );
    }

    fn warn_zero_downtime(_: &Bundle<'_>, _: &LintContext<'_>, out: &mut Vec<Violation>) {
        out.push(Violation {
            object: object(super::testing::pdb()).id,
            path: "spec".to_string(),
            message: "a warning".to_string(),
            fix: "a fix".to_string(),
        });
    }

    const TEST_RULES: [Rule; 2] = [
        Rule {
            id: "ZD-TEST",
            family: Family::ZeroDowntime,
            severity: Severity::Warning,
            summary: "a zero-downtime warning",
            check: Check::Bundle(warn_zero_downtime),
        },
        Rule {
            id: "HARD-TEST",
            family: Family::Hardening,
            severity: Severity::Warning,
            summary: "a hardening warning",
            check: Check::Bundle(warn_zero_downtime),
        },
    ];

    #[test]
    fn strict_zero_downtime_escalates_only_that_family() {
        let severities = |strict| {
            let ctx = LintContext {
                previous: &[],
                strict_zero_downtime: strict,
            };
            lint_with(&TEST_RULES, &[], &ctx)
                .into_iter()
                .map(|f| (f.rule, f.severity))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            severities(false),
            [
                ("HARD-TEST", Severity::Warning),
                ("ZD-TEST", Severity::Warning)
            ]
        );
        assert_eq!(
            severities(true),
            [
                ("HARD-TEST", Severity::Warning),
                ("ZD-TEST", Severity::Error)
            ]
        );
        assert!(!has_errors(&lint_with(
            &TEST_RULES,
            &[],
            &LintContext::default()
        )));
    }

    #[test]
    fn a_tag_alone_is_a_warning_and_does_not_block() {
        let bundle = bundle_with(|d| set(d, &format!("{WEB}/image"), json!("web:1.0")));
        let findings = lint(&bundle, &LintContext::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].rule, "HARD-IMAGE-DIGEST");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(!has_errors(&findings));
    }

    #[test]
    fn a_missing_readiness_probe_blocks() {
        let bundle = bundle_with(|d| remove(d, &format!("{WEB}/readinessProbe")));
        let findings = lint(&bundle, &LintContext::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(has_errors(&findings));
    }
}
