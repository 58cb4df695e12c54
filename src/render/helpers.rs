//! Template helpers: `secret`, `image`, `toYaml`, `toJson`, `b64enc`, `sha256`, `default`,
//! `required`, `quote`, `indent`, `nindent`.
//!
//! Every helper returns a value, so helpers nest as subexpressions:
//! `{{quote (b64enc (secret "db-password"))}}`. A helper given the wrong number or type of
//! arguments fails the render with a message naming the helper.

use std::collections::BTreeMap;

use base64::Engine;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, PathAndJson, RenderContext, RenderError,
    RenderErrorReason, ScopedJson,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::project::{ImageSpec, SecretStore};

/// The names of every helper, for documentation and error hints.
pub const HELPERS: &[&str] = &[
    "secret", "image", "toYaml", "toJson", "b64enc", "sha256", "default", "required", "quote",
    "indent", "nindent",
];

/// Registers every helper on `registry`; `secret` reads from `secrets`, `image` resolves
/// against `images` and the references in `pinned` (name → `host/repository@sha256:…`).
pub fn register<'reg>(
    registry: &mut Handlebars<'reg>,
    secrets: &'reg SecretStore,
    images: &'reg BTreeMap<String, ImageSpec>,
    pinned: &'reg BTreeMap<String, String>,
) {
    registry.register_helper("secret", Box::new(SecretHelper { secrets }));
    registry.register_helper("image", Box::new(ImageHelper { images, pinned }));
    let pure: [(&'static str, PureFn); 9] = [
        ("toYaml", to_yaml),
        ("toJson", to_json),
        ("b64enc", b64enc),
        ("sha256", sha256),
        ("default", default),
        ("required", required),
        ("quote", quote),
        ("indent", indent),
        ("nindent", nindent),
    ];
    for (name, f) in pure {
        registry.register_helper(name, Box::new(PureHelper { name, f }));
    }
}

/// One argument of a helper call: its value, or `None` when it names a missing value.
struct Arg<'a> {
    value: Option<&'a Value>,
    path: Option<&'a String>,
}

impl Arg<'_> {
    fn describe(&self) -> String {
        self.path
            .map_or_else(|| "argument".to_string(), |p| format!("`{p}`"))
    }
}

type PureFn = fn(&[Arg<'_>]) -> Result<Value, String>;

fn args<'a>(params: &'a [PathAndJson<'_>]) -> Vec<Arg<'a>> {
    params
        .iter()
        .map(|p| Arg {
            value: (!p.is_value_missing()).then(|| p.value()),
            path: p.relative_path(),
        })
        .collect()
}

fn failure(helper: &str, message: String) -> RenderError {
    RenderErrorReason::Other(format!("helper `{helper}`: {message}")).into()
}

struct PureHelper {
    name: &'static str,
    f: PureFn,
}

impl HelperDef for PureHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        (self.f)(&args(h.params()))
            .map(ScopedJson::Derived)
            .map_err(|message| failure(self.name, message))
    }
}

fn arity(args: &[Arg<'_>], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "expected {n} argument{}, got {}",
            if n == 1 { "" } else { "s" },
            args.len()
        ))
    }
}

fn present<'a>(arg: &Arg<'a>) -> Result<&'a Value, String> {
    arg.value
        .ok_or_else(|| format!("missing value {}", arg.describe()))
}

/// The text of a scalar: strings as is, numbers and booleans printed; anything else refused.
fn text(arg: &Arg<'_>) -> Result<String, String> {
    match present(arg)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, got {} {}",
            kind(other),
            arg.describe()
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

fn to_yaml(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 1)?;
    let yaml = serde_saphyr::to_string(present(&args[0])?).map_err(|e| e.to_string())?;
    Ok(Value::String(yaml.trim_end_matches('\n').to_string()))
}

fn to_json(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 1)?;
    serde_json::to_string(present(&args[0])?)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn b64enc(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 1)?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text(&args[0])?),
    ))
}

fn sha256(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 1)?;
    let input = match present(&args[0])? {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).map_err(|e| e.to_string())?,
    };
    Ok(Value::String(hex::encode(Sha256::digest(input.as_bytes()))))
}

/// `{{default FALLBACK value}}` (Helm's order): `value` unless it is missing or empty.
fn default(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 2)?;
    let chosen = if is_empty(args[1].value) {
        present(&args[0])?
    } else {
        present(&args[1])?
    };
    Ok(chosen.clone())
}

/// `{{required "message" value}}` (Helm's order): `value`, or the render fails with `message`.
fn required(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 2)?;
    let message = text(&args[0])?;
    if is_empty(args[1].value) {
        return Err(format!(
            "{message} ({} is missing or empty)",
            args[1].describe()
        ));
    }
    Ok(present(&args[1])?.clone())
}

/// `{{quote value}}`: a double-quoted YAML/JSON string of a scalar.
fn quote(args: &[Arg<'_>]) -> Result<Value, String> {
    arity(args, 1)?;
    serde_json::to_string(&text(&args[0])?)
        .map(Value::String)
        .map_err(|e| e.to_string())
}

fn indent_lines(args: &[Arg<'_>]) -> Result<String, String> {
    arity(args, 2)?;
    let width = present(&args[0])?
        .as_u64()
        .filter(|w| *w <= 256)
        .ok_or_else(|| "the first argument must be a width between 0 and 256".to_string())?;
    let pad = " ".repeat(usize::try_from(width).unwrap_or(0));
    let body = text(&args[1])?;
    Ok(body
        .lines()
        .map(|line| {
            if line.is_empty() {
                String::new()
            } else {
                format!("{pad}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `{{indent 4 text}}`: every non-empty line of `text` indented by 4 spaces.
fn indent(args: &[Arg<'_>]) -> Result<Value, String> {
    indent_lines(args).map(Value::String)
}

/// `{{nindent 4 text}}`: like `indent`, with a newline first.
fn nindent(args: &[Arg<'_>]) -> Result<Value, String> {
    indent_lines(args).map(|s| Value::String(format!("\n{s}")))
}

/// `{{secret "name"}}`: the secret's value from the environment's secret sources.
struct SecretHelper<'a> {
    secrets: &'a SecretStore,
}

impl HelperDef for SecretHelper<'_> {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let args = args(h.params());
        let name = arity(&args, 1)
            .and_then(|()| text(&args[0]))
            .map_err(|m| failure("secret", m))?;
        let value = self
            .secrets
            .get(&name)
            .map_err(|e| RenderErrorReason::NestedError(Box::new(e)))?;
        Ok(ScopedJson::Derived(Value::String(value.expose().clone())))
    }
}

/// `{{image "web"}}`: the pinned reference (`<repository it was pushed to>@sha256:…`) when
/// the lock has one, else `repository@<digest:>` from `ferry.yaml`, else `repository:tag`.
struct ImageHelper<'a> {
    images: &'a BTreeMap<String, ImageSpec>,
    pinned: &'a BTreeMap<String, String>,
}

impl HelperDef for ImageHelper<'_> {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let args = args(h.params());
        let name = arity(&args, 1)
            .and_then(|()| text(&args[0]))
            .map_err(|m| failure("image", m))?;
        let reference =
            image_reference(&name, self.images, self.pinned).map_err(|m| failure("image", m))?;
        Ok(ScopedJson::Derived(Value::String(reference)))
    }
}

/// The reference a workload should run for image `name`: `pinned[name]` (a full
/// `host/repository@sha256:…` from the lock), else `ferry.yaml`'s `repository@digest`, else
/// `repository:tag`.
pub fn image_reference(
    name: &str,
    images: &BTreeMap<String, ImageSpec>,
    pinned: &BTreeMap<String, String>,
) -> Result<String, String> {
    let spec = images.get(name).ok_or_else(|| {
        let known: Vec<&str> = images.keys().map(String::as_str).collect();
        format!(
            "unknown image `{name}` (images in ferry.yaml: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })?;
    if let Some(reference) = pinned.get(name) {
        return Ok(reference.clone());
    }
    if let Some(digest) = &spec.digest {
        return Ok(format!("{}@{digest}", spec.repository));
    }
    Ok(format!(
        "{}:{}",
        spec.repository,
        spec.tag.as_deref().unwrap_or("latest")
    ))
}
