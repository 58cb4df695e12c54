//! Fast parsing of rendered template output into JSON values.
//!
//! Rendered output is the hot path of `render` (thousands of documents), so it is parsed with
//! yaml-rust2, about 2.5x faster than the serde-based parser Ferry uses for its own
//! configuration files (where schema errors with lines matter more than speed). Duplicate
//! keys are errors, as Kubernetes' strict decoding makes them.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Why a chunk of rendered output is not YAML Ferry accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlFailure {
    /// 1-based line within the parsed text, when known.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

/// Parses every document of `text`; empty documents are dropped.
///
/// # Errors
/// [`YamlFailure`] on a syntax error, a duplicate key, a non-scalar mapping key, an
/// unresolved alias, or a number JSON cannot hold (`.inf`, `.nan`).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlFailure> {
    let documents = YamlLoader::load_from_str(text).map_err(|e| YamlFailure {
        line: u64::try_from(e.marker().line()).ok().filter(|l| *l > 0),
        message: e.info().to_string(),
    })?;
    documents
        .into_iter()
        .map(to_json)
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|message| YamlFailure {
            line: None,
            message,
        })
}

fn to_json(yaml: Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(text) => {
            let float = text
                .parse::<f64>()
                .map_err(|_| format!("`{text}` is not a number"))?;
            Value::Number(
                Number::from_f64(float).ok_or_else(|| format!("`{text}` has no JSON form"))?,
            )
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(hash) => {
            let mut map = Map::with_capacity(hash.len());
            for (key, value) in hash {
                map.insert(key_text(key)?, to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("an alias refers to no anchor".to_string()),
    })
}

fn key_text(key: Yaml) -> Result<String, String> {
    match key {
        Yaml::String(s) | Yaml::Real(s) => Ok(s),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        Yaml::Null => Ok("null".to_string()),
        _ => {
            Err("a mapping key is a list or mapping; Kubernetes objects need text keys".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_documents_in_order_and_drops_empty_ones() {
        let docs =
            parse_documents("---\na: 1\nb: [x, true, 1.5, ~]\n---\n---\nc: {d: e}\n").unwrap();
        assert_eq!(
            docs,
            vec![
                json!({"a": 1, "b": ["x", true, 1.5, null]}),
                json!({"c": {"d": "e"}})
            ]
        );
    }

    #[test]
    fn keeps_key_order_and_resolves_anchors() {
        let docs = parse_documents("z: &v {k: 1}\na: *v\n").unwrap();
        assert_eq!(
            serde_json::to_string(&docs[0]).unwrap(),
            r#"{"z":{"k":1},"a":{"k":1}}"#
        );
    }

    #[test]
    fn a_syntax_error_has_its_line() {
        let err = parse_documents("a: 1\nb: [unclosed\nc: 2\n").unwrap_err();
        assert!(err.line.is_some_and(|l| l >= 2), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicated key"), "{err:?}");
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let docs = parse_documents("a: \"1\"\nb: 'true'\nc: 010\n").unwrap();
        assert_eq!(docs[0], json!({"a": "1", "b": "true", "c": 10}));
    }
}
