//! `ferry render`: the environment's manifests, linted, secrets redacted unless asked.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::prepare::{self, ProjectOptions, prepare};
use crate::object::{Object, ObjectRef};
use crate::policy::{self, Finding, LintContext};
use crate::render;
use crate::ui::{Diagnostic, ExitStatus};

/// What to render and how.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Project, environment and `--set` overrides.
    pub project: ProjectOptions,
    /// Print secret values instead of `***`.
    pub show_secrets: bool,
    /// Run the lint first and refuse a bundle with errors.
    pub lint: bool,
    /// Write one file per object into this directory instead of returning one stream.
    pub output_dir: Option<PathBuf>,
}

/// The rendered environment.
#[derive(Debug, Serialize)]
pub struct RenderOutcome {
    /// The environment's name.
    pub environment: String,
    /// Its namespace.
    pub namespace: String,
    /// The digest of the templates rendered.
    pub templates_digest: String,
    /// Objects in apply order, redacted unless `show_secrets`; empty when `blocked`.
    pub objects: Vec<RenderedObject>,
    /// Lint findings (empty when the lint was skipped).
    pub findings: Vec<Finding>,
    /// True when lint errors stopped the output.
    pub blocked: bool,
    /// Files written with `-o DIR`, in order.
    pub written: Vec<PathBuf>,
}

/// One object of the outcome, with its YAML text.
#[derive(Debug, Serialize)]
pub struct RenderedObject {
    /// Who it is.
    pub id: ObjectRef,
    /// The template it came from.
    pub template: Option<PathBuf>,
    /// The object.
    pub object: Value,
}

impl RenderedObject {
    /// The object as one YAML document, ending in a newline.
    pub fn yaml(&self) -> String {
        render::object_yaml(&self.object)
    }
}

/// Errors of `ferry render`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or rendering failed.
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    /// An output file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Prepare(e) => e.exit_status(),
            Error::Write { .. } => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Prepare(e) => e.hints(),
            Error::Write { .. } => Vec::new(),
        }
    }
}

/// Renders the environment, lints it, and returns (or writes) the redacted manifests.
///
/// # Errors
/// Project and template errors (nothing is written); I/O errors writing `output_dir`.
pub fn render(opts: &RenderOptions) -> Result<RenderOutcome, Error> {
    let mut prepared = prepare(&opts.project)?;
    let findings = if opts.lint {
        policy::lint(&prepared.bundle.objects, &LintContext::default())
    } else {
        Vec::new()
    };
    let blocked = policy::has_errors(&findings);
    if !opts.show_secrets {
        render::redact_bundle(&mut prepared.bundle);
    }
    let templates_digest = prepared.bundle.templates_digest.clone();
    let objects = if blocked {
        Vec::new()
    } else {
        prepared
            .bundle
            .objects
            .into_iter()
            .map(rendered_object)
            .collect()
    };
    let written = match (&opts.output_dir, blocked) {
        (Some(dir), false) => write_files(dir, &objects)?,
        _ => Vec::new(),
    };
    Ok(RenderOutcome {
        environment: prepared.env.name,
        namespace: prepared.env.namespace,
        templates_digest,
        objects,
        findings,
        blocked,
        written,
    })
}

fn rendered_object(object: Object) -> RenderedObject {
    RenderedObject {
        id: object.id,
        template: object.origin.map(|o| o.template),
        object: object.value,
    }
}

/// The file name of the `index`-th of `total` objects: `NNN-kind-namespace-name.yaml`, the
/// number zero-padded to at least 3 digits and to as many as `total` has, so names sort in
/// apply order whatever the size of the bundle.
fn file_name(index: usize, total: usize, id: &ObjectRef) -> String {
    let namespace = id
        .namespace
        .as_deref()
        .map(|n| format!("{n}-"))
        .unwrap_or_default();
    let name = format!("{}-{namespace}{}", id.kind.to_ascii_lowercase(), id.name);
    let width = total.to_string().len().max(3);
    format!("{:0width$}-{}.yaml", index + 1, file_safe(&name))
}

/// `text` as one path component: anything but letters, digits, `-`, `.` and `_` (a `/`, a
/// `\`, a control character: a name nobody validated yet) becomes `_`, so a file never lands
/// outside the directory.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a file name is one [`file_name`] gives (three or more digits, `-`, …, `.yaml`).
/// Compares bytes, so a name in any encoding (non-ASCII, not UTF-8) is simply not one.
fn is_earlier_render(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
    digits >= 3 && name.get(digits) == Some(&b'-') && name.ends_with(b".yaml")
}

/// Writes one file per object into `dir`, after removing files of an earlier render there
/// (`NNN-*.yaml`), so the directory holds exactly this bundle.
fn write_files(dir: &Path, objects: &[RenderedObject]) -> Result<Vec<PathBuf>, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.file_name().is_some_and(is_earlier_render) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    objects
        .iter()
        .enumerate()
        .map(|(index, object)| {
            let path = dir.join(file_name(index, objects.len(), &object.id));
            std::fs::write(&path, object.yaml()).map_err(io(&path))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "v1".to_string(),
            kind: "ConfigMap".to_string(),
            namespace: Some("shop".to_string()),
            name: name.to_string(),
        }
    }

    #[test]
    fn file_names_sort_in_apply_order_past_999_objects() {
        assert_eq!(file_name(0, 8, &id("a")), "001-configmap-shop-a.yaml");
        let mut names: Vec<String> = (0..1200).map(|i| file_name(i, 1200, &id("x"))).collect();
        assert_eq!(names[999], "1000-configmap-shop-x.yaml");
        assert_eq!(names[100], "0101-configmap-shop-x.yaml");
        let in_order = names.clone();
        names.sort();
        assert_eq!(names, in_order);
    }

    #[test]
    fn earlier_renders_of_any_size_are_recognised_and_nothing_else() {
        for name in ["001-a.yaml", "1000-configmap-x.yaml", "0101-b.yaml"] {
            assert!(is_earlier_render(std::ffi::OsStr::new(name)), "{name}");
        }
        for name in [
            "01-a.yaml",
            "001a.yaml",
            "001-a.yml",
            "notes.yaml",
            "-001-a.yaml",
        ] {
            assert!(!is_earlier_render(std::ffi::OsStr::new(name)), "{name}");
        }
    }
}
