//! Rendering: Handlebars templates + a resolved environment → an ordered bundle of objects.
//!
//! Templates are compiled once into one registry in strict mode (a missing value is an
//! error naming the template, line and path), rendered in parallel, parsed as multi-document
//! YAML, checked to be Kubernetes objects, defaulted to the environment's namespace, and
//! sorted into apply order. Output is deterministic: the same inputs give the same bytes.
//! Reads template files; never the network or a cluster.

mod emit;
pub mod helpers;
pub mod order;
mod redact;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, RenderErrorReason};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use redact::redact_bundle;

use crate::object::{Object, ObjectError, ObjectRef, Origin};
use crate::project::{ResolvedEnvironment, TEMPLATES_DIR};
use crate::ui::{Diagnostic, ExitStatus};

/// The file suffix of templates that render objects.
pub const TEMPLATE_SUFFIX: &str = ".yaml.hbs";

/// Errors from loading and rendering templates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The templates directory could not be listed or a template read.
    #[error("failed to read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// There are no templates to render.
    #[error("no templates (*{TEMPLATE_SUFFIX}) in {}", dir.display())]
    NoTemplates {
        /// The templates directory.
        dir: PathBuf,
    },
    /// A template does not compile.
    #[error("syntax error in {template}{}", at(*line, *column))]
    Syntax {
        /// The template's path relative to the project.
        template: String,
        /// 1-based line.
        line: Option<usize>,
        /// 1-based column.
        column: Option<usize>,
        /// What the parser said.
        #[source]
        source: Reason,
    },
    /// A template failed while rendering (missing value, unknown helper, helper error).
    #[error("failed to render {template}{}", at(*line, *column))]
    Render {
        /// The template's path relative to the project.
        template: String,
        /// 1-based line.
        line: Option<usize>,
        /// 1-based column.
        column: Option<usize>,
        /// What went wrong.
        #[source]
        source: RenderFailure,
    },
    /// A template's output is not YAML.
    #[error("{template} rendered invalid YAML{}", line.map(|l| format!(" at line {l} of its output")).unwrap_or_default())]
    Yaml {
        /// The template's path relative to the project.
        template: String,
        /// 1-based line of the rendered output.
        line: Option<u64>,
        /// The parser's message, with the offending rendered line.
        #[source]
        source: Reason,
    },
    /// A rendered document is not a Kubernetes object.
    #[error("document {document} rendered by {template} is not a Kubernetes object")]
    NotAnObject {
        /// The template's path relative to the project.
        template: String,
        /// 1-based document index in the template's output.
        document: usize,
        /// What is missing.
        #[source]
        source: ObjectError,
    },
    /// Two templates render the same object.
    #[error("{object} is rendered twice: by {first} and by {second}")]
    Duplicate {
        /// The object.
        object: Box<ObjectRef>,
        /// Where it was rendered first.
        first: String,
        /// Where it was rendered again.
        second: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// Why a template failed to render.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// Strict mode found a path with no value.
    #[error("missing value `{path}`")]
    MissingValue {
        /// The path as written in the template, e.g. `values.replicas`.
        path: String,
    },
    /// A `{{name …}}` call names no helper.
    #[error("unknown helper `{name}`")]
    UnknownHelper {
        /// The name called.
        name: String,
    },
    /// A `{{> name}}` names no partial.
    #[error("unknown partial `{name}`")]
    UnknownPartial {
        /// The name used.
        name: String,
    },
    /// `{{secret}}` could not find the secret.
    #[error(transparent)]
    Secret(Box<crate::project::Error>),
    /// Anything else Handlebars or a helper reported.
    #[error("{0}")]
    Other(String),
}

/// A lower-level explanation kept as text (Handlebars' errors are not `Sync`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Reason(pub String);

impl Diagnostic for Error {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::BadInput
    }

    fn hints(&self) -> Vec<String> {
        match self {
            Error::Render { source: RenderFailure::MissingValue { .. }, .. } => vec![
                "define the value in ferry.yaml or the environment file, pass --set, or use {{default \"fallback\" path}}".to_string(),
            ],
            Error::Render { source: RenderFailure::UnknownHelper { .. }, .. } => {
                vec![format!("available helpers: {}", helpers::HELPERS.join(", "))]
            }
            Error::Render { source: RenderFailure::Secret(inner), .. } => inner.hints(),
            Error::Syntax { .. } => vec![
                "a block opened with {{#if}}, {{#each}} or {{#with}} and never closed is reported where the template ends".to_string(),
            ],
            Error::Duplicate { .. } => vec!["give one of the objects another name".to_string()],
            _ => Vec::new(),
        }
    }
}

/// One template file.
#[derive(Debug, Clone)]
pub struct Template {
    /// Path relative to the project root, e.g. `templates/deployment.yaml.hbs`.
    pub name: String,
    /// The template's source.
    pub text: String,
}

/// Every template and partial of a project, read once.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    /// Templates that render objects (`templates/*.yaml.hbs`), sorted by name.
    pub templates: Vec<Template>,
    /// Partials (`templates/_<name>.hbs`), usable as `{{> name}}`.
    pub partials: Vec<Template>,
}

impl Templates {
    /// Reads `templates/` under `root`.
    ///
    /// # Errors
    /// [`Error::Read`] on I/O failure, [`Error::NoTemplates`] when there is nothing to render.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let dir = root.join(TEMPLATES_DIR);
        let entries = std::fs::read_dir(&dir).map_err(|source| Error::Read {
            path: dir.clone(),
            source,
        })?;
        let mut templates = Templates::default();
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                path: dir.clone(),
                source,
            })?;
            let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = entry.path();
            if !path.is_file() || !file.ends_with(".hbs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            if let Some(partial) = file.strip_prefix('_').and_then(|f| f.strip_suffix(".hbs")) {
                let name = partial.trim_end_matches(".yaml").to_string();
                templates.partials.push(Template { name, text });
            } else if file.ends_with(TEMPLATE_SUFFIX) {
                templates.templates.push(Template {
                    name: format!("{TEMPLATES_DIR}/{file}"),
                    text,
                });
            }
        }
        if templates.templates.is_empty() {
            return Err(Error::NoTemplates { dir });
        }
        templates.templates.sort_by(|a, b| a.name.cmp(&b.name));
        templates.partials.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(templates)
    }

    /// A digest of every template and partial (names and sources): the template half of a
    /// release candidate's identity.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for t in self.partials.iter().chain(&self.templates) {
            for part in [t.name.as_bytes(), b"\0", t.text.as_bytes(), b"\0"] {
                hash.update(part);
            }
        }
        format!("sha256:{}", hex::encode(hash.finalize()))
    }
}

/// The rendered, ordered objects of one environment.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Objects in apply order (plan category, then kind, namespace, name).
    pub objects: Vec<Object>,
    /// [`Templates::digest`] of the templates it was rendered from.
    pub templates_digest: String,
}

impl Bundle {
    /// The bundle as multi-document YAML, `---` between documents.
    pub fn to_yaml(&self) -> String {
        yaml_stream(&self.objects.iter().map(|o| &o.value).collect::<Vec<_>>())
    }
}

/// Objects as one multi-document YAML stream, `---` between documents, serialised in
/// parallel.
pub fn yaml_stream(values: &[&Value]) -> String {
    let documents: Vec<String> = values.par_iter().map(|v| object_yaml(v)).collect();
    documents.join("---\n")
}

/// One object as a YAML document ending in a newline.
pub fn object_yaml(value: &Value) -> String {
    emit::to_yaml(value)
}

/// Renders every template of `templates` for `env`. `pinned` maps image names to the
/// references known from a build or push (`host/repository@sha256:…`, see
/// [`crate::project::images_lock::pinned_references`]).
///
/// # Errors
/// The first error in template order: syntax, render, YAML, not-an-object, duplicate.
pub fn render(
    templates: &Templates,
    env: &ResolvedEnvironment,
    pinned: &BTreeMap<String, String>,
) -> Result<Bundle, Error> {
    let registry = compile(templates, env, pinned)?;
    let context = env.template_context();
    let texts: Vec<Result<String, Error>> = templates
        .templates
        .par_iter()
        .map(|t| render_text(&registry, t, &context))
        .collect();
    let texts = texts.into_iter().collect::<Result<Vec<String>, Error>>()?;
    let chunks: Vec<Chunk<'_>> = templates
        .templates
        .iter()
        .zip(&texts)
        .enumerate()
        .flat_map(|(index, (t, text))| split_documents(index, t, text))
        .collect();
    let parsed: Vec<Result<Vec<Value>, Error>> = chunks.par_iter().map(parse_chunk).collect();
    let mut documents: Vec<Vec<Value>> = vec![Vec::new(); templates.templates.len()];
    for (chunk, result) in chunks.iter().zip(parsed) {
        documents[chunk.template_index].extend(result?);
    }
    let mut objects = Vec::new();
    let mut seen: BTreeMap<ObjectRef, String> = BTreeMap::new();
    for (template, docs) in templates.templates.iter().zip(documents) {
        for object in to_objects(template, docs, &env.namespace)? {
            let here = origin_text(&object);
            if let Some(first) = seen.insert(object.id.clone(), here.clone()) {
                return Err(Error::Duplicate {
                    object: Box::new(object.id),
                    first,
                    second: here,
                });
            }
            objects.push(object);
        }
    }
    // The plan's categories, so `render -o` files sort in an order that applies as is.
    objects.sort_by(|a, b| {
        let category = |o: &Object| crate::plan::category(o.group(), &o.id.kind);
        (category(a), &a.id.kind, &a.id.namespace, &a.id.name).cmp(&(
            category(b),
            &b.id.kind,
            &b.id.namespace,
            &b.id.name,
        ))
    });
    Ok(Bundle {
        objects,
        templates_digest: templates.digest(),
    })
}

fn origin_text(object: &Object) -> String {
    object.origin.as_ref().map_or_else(String::new, |o| {
        format!("{} (document {})", o.template.display(), o.document)
    })
}

fn compile<'reg>(
    templates: &Templates,
    env: &'reg ResolvedEnvironment,
    pinned: &'reg BTreeMap<String, String>,
) -> Result<Handlebars<'reg>, Error> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    helpers::register(&mut registry, &env.secrets, &env.images, pinned);
    for partial in &templates.partials {
        let name = format!("{TEMPLATES_DIR}/_{}.hbs", partial.name);
        registry
            .register_partial(&partial.name, &partial.text)
            .map_err(|e| syntax_error(&name, &e))?;
    }
    for template in &templates.templates {
        registry
            .register_template_string(&template.name, &template.text)
            .map_err(|e| syntax_error(&template.name, &e))?;
    }
    Ok(registry)
}

fn syntax_error(name: &str, error: &handlebars::TemplateError) -> Error {
    let (line, column) = error
        .pos()
        .map_or((None, None), |(l, c)| (Some(l), Some(c)));
    Error::Syntax {
        template: name.to_string(),
        line,
        column,
        source: Reason(error.reason().to_string()),
    }
}

fn render_text(
    registry: &Handlebars<'_>,
    template: &Template,
    context: &Value,
) -> Result<String, Error> {
    registry.render(&template.name, context).map_err(|e| {
        let name = e
            .template_name
            .clone()
            .unwrap_or_else(|| template.name.clone());
        let (line, column) = (e.line_no, e.column_no);
        Error::Render {
            template: name,
            line,
            column,
            source: explain(RenderErrorReason::from(e)),
        }
    })
}

/// One YAML document of a template's output, before parsing.
struct Chunk<'a> {
    /// Index of the template in [`Templates::templates`].
    template_index: usize,
    template: &'a Template,
    /// 1-based line of the rendered output where the chunk starts.
    first_line: u64,
    text: &'a str,
}

/// Splits rendered output at document markers (`---` at the start of a line, which YAML
/// never allows inside a document), so documents can be parsed in parallel. Each chunk keeps
/// its marker line, so line numbers stay exact.
fn split_documents<'a>(
    template_index: usize,
    template: &'a Template,
    text: &'a str,
) -> Vec<Chunk<'a>> {
    let mut chunks = Vec::new();
    let (mut start, mut first_line, mut offset) = (0, 1, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_marker && offset > start {
            chunks.push(Chunk {
                template_index,
                template,
                first_line,
                text: &text[start..offset],
            });
            start = offset;
            first_line = u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1);
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        template_index,
        template,
        first_line,
        text: &text[start..],
    });
    chunks
}

/// At most [`EXCERPT_CHARS`] characters of `line` (cut at a character, never inside one),
/// with `…` when cut: a generated line can be megabytes long.
fn excerpt(line: &str) -> String {
    const EXCERPT_CHARS: usize = 120;
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

fn parse_chunk(chunk: &Chunk<'_>) -> Result<Vec<Value>, Error> {
    yaml::parse_documents(chunk.text).map_err(|failure| {
        let excerpt = failure
            .line
            .and_then(|l| {
                chunk
                    .text
                    .lines()
                    .nth(usize::try_from(l).unwrap_or(0).saturating_sub(1))
            })
            .map(|l| format!(" (the line reads `{}`)", excerpt(l.trim())))
            .unwrap_or_default();
        Error::Yaml {
            template: chunk.template.name.clone(),
            line: failure.line.map(|l| l + chunk.first_line - 1),
            source: Reason(format!("{}{excerpt}", failure.message)),
        }
    })
}

/// Turns the parsed documents of one template into objects, numbering them from 1.
fn to_objects(
    template: &Template,
    documents: Vec<Value>,
    namespace: &str,
) -> Result<Vec<Object>, Error> {
    documents
        .into_iter()
        .enumerate()
        .map(|(index, mut value)| {
            let origin = Origin {
                template: PathBuf::from(&template.name),
                document: index + 1,
            };
            default_namespace(&mut value, namespace);
            Object::new(value, Some(origin)).map_err(|source| Error::NotAnObject {
                template: template.name.clone(),
                document: index + 1,
                source,
            })
        })
        .collect()
}

/// Puts `namespace` into `metadata.namespace` of namespaced kinds that leave it out.
fn default_namespace(value: &mut Value, namespace: &str) {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() || order::is_cluster_scoped(kind) {
        return;
    }
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
        && !metadata.contains_key("namespace")
    {
        // Keep `namespace` next to `name`, where people look for it.
        let namespace = Value::String(namespace.to_string());
        let fields = std::mem::take(metadata);
        for (key, field) in fields {
            let is_name = key == "name";
            metadata.insert(key, field);
            if is_name {
                metadata.insert("namespace".to_string(), namespace.clone());
            }
        }
        if !metadata.contains_key("namespace") {
            metadata.insert("namespace".to_string(), namespace);
        }
    }
}

/// A user-facing explanation of a Handlebars render failure.
fn explain(reason: RenderErrorReason) -> RenderFailure {
    match reason {
        RenderErrorReason::MissingVariable(path) => RenderFailure::MissingValue {
            path: path.unwrap_or_default(),
        },
        RenderErrorReason::HelperNotFound(name) => RenderFailure::UnknownHelper { name },
        RenderErrorReason::PartialNotFound(name) => RenderFailure::UnknownPartial { name },
        RenderErrorReason::NestedError(inner) => match inner.downcast::<crate::project::Error>() {
            Ok(project) => RenderFailure::Secret(project),
            Err(other) => RenderFailure::Other(other.to_string()),
        },
        RenderErrorReason::Other(message) => RenderFailure::Other(message),
        other => RenderFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
