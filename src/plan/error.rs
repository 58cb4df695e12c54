//! Why a bundle cannot be planned, and what to do about it.

use std::path::{Path, PathBuf};

use super::DEPENDS_ON_ANNOTATION;
use crate::object::ObjectRef;
use crate::ui::{Diagnostic, ExitStatus};

/// Errors of [`super::plan`]. Each names the object at fault and the template it came from.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The annotation's value is not a list of `Kind[.group]/[namespace/]name`.
    #[error(
        "{object}{} has a malformed {DEPENDS_ON_ANNOTATION} annotation `{value}`",
        from(template)
    )]
    BadAnnotation {
        /// The declaring object.
        object: Box<ObjectRef>,
        /// Its template.
        template: Option<PathBuf>,
        /// The annotation's value.
        value: String,
        /// What is wrong with it.
        #[source]
        problem: Malformed,
    },
    /// A declared dependency names no object of the bundle.
    #[error(
        "{object}{} depends on `{target}`, which is not in the bundle (looked for {looked_for})",
        from(template)
    )]
    UnknownTarget {
        /// The declaring object.
        object: Box<ObjectRef>,
        /// Its template.
        template: Option<PathBuf>,
        /// The dependency as written.
        target: String,
        /// The objects it could have meant.
        looked_for: String,
    },
    /// A declared dependency matches objects of two groups (or versions).
    #[error(
        "{object}{} depends on `{target}`, which matches {}",
        from(template),
        list(matches)
    )]
    Ambiguous {
        /// The declaring object.
        object: Box<ObjectRef>,
        /// Its template.
        template: Option<PathBuf>,
        /// The dependency as written.
        target: String,
        /// Every object it matches.
        matches: Vec<ObjectRef>,
    },
    /// Objects wait for each other in a circle.
    #[error("dependency cycle: {object}{}{}", from(template), chain(links))]
    Cycle {
        /// The first object of the cycle.
        object: Box<ObjectRef>,
        /// Its template.
        template: Option<PathBuf>,
        /// Around the cycle: `object` waits for the first link, each link for the next,
        /// and the last link is `object` again.
        links: Vec<CycleLink>,
    },
}

/// One step around a cycle: the previous object waits for this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleLink {
    /// The object waited for.
    pub object: ObjectRef,
    /// Its template.
    pub template: Option<PathBuf>,
    /// Why the previous object waits for it.
    pub because: &'static str,
    /// True when the wait was declared with the annotation (it can be removed).
    pub declared: bool,
}

/// What is wrong with an annotation value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The value is empty.
    #[error("the value is empty")]
    Empty,
    /// Two commas with nothing between them, or a trailing comma.
    #[error("an item between commas is empty")]
    EmptyItem,
    /// An item is not `Kind/name` or `Kind/namespace/name`.
    #[error("`{item}` is not Kind/name or Kind/namespace/name")]
    Shape {
        /// The item.
        item: String,
    },
    /// A kind, group, namespace or name is empty.
    #[error("`{item}` has an empty kind, group, namespace or name")]
    EmptyPart {
        /// The item.
        item: String,
    },
}

/// ` (in templates/x.yaml.hbs)`, or nothing when the object has no template.
fn from(template: &Option<PathBuf>) -> String {
    template
        .as_deref()
        .map(|t| format!(" (in {})", t.display()))
        .unwrap_or_default()
}

fn list(matches: &[ObjectRef]) -> String {
    let names: Vec<String> = matches
        .iter()
        .map(|m| format!("{m} ({})", m.api_version))
        .collect();
    names.join(" and ")
}

fn chain(links: &[CycleLink]) -> String {
    links
        .iter()
        .enumerate()
        .map(|(i, link)| {
            let lead = if i == 0 {
                " waits for"
            } else {
                ", which waits for"
            };
            format!("{lead} {} ({})", link.object, link.because)
        })
        .collect()
}

fn template_text(template: Option<&Path>) -> String {
    template.map_or_else(|| "its source".to_string(), |t| t.display().to_string())
}

impl Diagnostic for PlanError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        match self {
            PlanError::BadAnnotation { template, .. } => vec![format!(
                "in {}, write {DEPENDS_ON_ANNOTATION} as a comma-separated list of Kind/name, Kind/namespace/name or Kind.group/name",
                template_text(template.as_deref())
            )],
            PlanError::UnknownTarget { template, .. } => vec![format!(
                "fix the name in {}, add the object to the templates, or drop it from {DEPENDS_ON_ANNOTATION}; an object of another namespace is Kind/namespace/name",
                template_text(template.as_deref())
            )],
            PlanError::Ambiguous { template, .. } => vec![format!(
                "in {}, name the group: Kind.group/name",
                template_text(template.as_deref())
            )],
            PlanError::Cycle {
                object,
                template,
                links,
            } => cycle_hints(object, template.as_deref(), links),
        }
    }
}

/// Points at each declared wait of the cycle: removing any one of them breaks it.
fn cycle_hints(
    first: &ObjectRef,
    first_template: Option<&Path>,
    links: &[CycleLink],
) -> Vec<String> {
    // The waiter of link i is the object before it: `first`, then link i-1.
    let mut hints = Vec::new();
    for (i, link) in links.iter().enumerate().filter(|(_, l)| l.declared) {
        let (waiter, template) = if i == 0 {
            (first, first_template)
        } else {
            (&links[i - 1].object, links[i - 1].template.as_deref())
        };
        hints.push(format!(
            "remove {} {} from the {DEPENDS_ON_ANNOTATION} of {waiter} in {}",
            link.object.kind,
            link.object.name,
            template_text(template)
        ));
    }
    if hints.is_empty() {
        hints.push(
            "this cycle comes from kinds and namespaces alone: check what the bundle's CRDs define"
                .to_string(),
        );
    } else if hints.len() > 1 {
        hints.insert(0, "any one of these breaks the cycle:".to_string());
    }
    hints
}
