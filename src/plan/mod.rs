//! STUB (uncommitted): replaced by the real planner.
#![allow(missing_docs)]
use std::path::PathBuf;

use serde::Serialize;

use crate::object::{Object, ObjectRef};

pub const DEPENDS_ON_ANNOTATION: &str = "ferry.dev/depends-on";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: ObjectRef,
    pub group: String,
    pub depends_on: Option<String>,
    pub defines: Option<GroupKind>,
    pub template: Option<PathBuf>,
}
impl Entry {
    pub fn of(object: &Object, namespace: Option<String>) -> Entry {
        let mut id = object.id.clone();
        id.namespace = namespace;
        let group = id
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        Entry {
            id,
            group,
            depends_on: None,
            defines: None,
            template: None,
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    Definitions,
    Namespaces,
    Foundation,
    Workloads,
    Extensions,
}
pub fn category(_group: &str, kind: &str) -> Category {
    match kind {
        "CustomResourceDefinition" => Category::Definitions,
        "Namespace" => Category::Namespaces,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "Pod" => Category::Workloads,
        "Ingress" | "HorizontalPodAutoscaler" => Category::Extensions,
        _ => Category::Foundation,
    }
}
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub objects: Vec<usize>,
    pub establishes: Vec<usize>,
}
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    step_of: Vec<usize>,
    checks: Vec<Check>,
}
impl Plan {
    pub fn step_of(&self, index: usize) -> usize {
        self.step_of[index]
    }
    pub fn check(&self, index: usize) -> &Check {
        &self.checks[index]
    }
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Check {
    UpFront,
    After { step: usize, because: Because },
}
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Because {
    Namespace(String),
    Kind(GroupKind),
}
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cycle")]
    Cycle,
}
impl crate::ui::Diagnostic for PlanError {
    fn exit_status(&self) -> crate::ui::ExitStatus {
        crate::ui::ExitStatus::BadInput
    }
}
pub fn plan(entries: &[Entry]) -> Result<Plan, PlanError> {
    let levels: Vec<usize> = entries
        .iter()
        .map(|e| category(&e.group, &e.id.kind) as usize)
        .collect();
    let mut used: Vec<usize> = levels.clone();
    used.sort();
    used.dedup();
    let step_of: Vec<usize> = levels
        .iter()
        .map(|l| used.iter().position(|u| u == l).unwrap_or(0))
        .collect();
    let mut steps: Vec<Step> = used
        .iter()
        .map(|_| Step {
            objects: vec![],
            establishes: vec![],
        })
        .collect();
    for (i, s) in step_of.iter().enumerate() {
        steps[*s].objects.push(i);
        if entries[i].id.kind == "CustomResourceDefinition" {
            steps[*s].establishes.push(i);
        }
    }
    let checks = entries.iter().map(|_| Check::UpFront).collect();
    Ok(Plan {
        steps,
        step_of,
        checks,
    })
}
