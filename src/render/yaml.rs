//! Fast parsing of rendered template output into JSON values.
//!
//! Rendered output is the hot path of `render` (thousands of documents), so it is parsed with
//! yaml-rust2, about 2.5x faster than the serde-based parser Ferry uses for its own
//! configuration files (where schema errors with lines matter more than speed). Duplicate
//! keys are errors, as Kubernetes' strict decoding makes them.

use std::collections::BTreeMap;

use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Collections nested deeper than this are refused: no Kubernetes object comes close, and a
/// deeper value would overflow the stack of every recursive walk that follows (drop, lint,
/// emit). serde_json stops at 128 for the same reason.
const MAX_DEPTH: usize = 256;

/// Values that aliases may add, in total, to one text: a few aliases in a real template add a
/// few hundred; "billion laughs" (aliases of aliases) would exhaust memory instead.
const MAX_ALIAS_VALUES: usize = 1_000_000;

/// Why a chunk of rendered output is not YAML Ferry accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlFailure {
    /// 1-based line within the parsed text, when known.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl YamlFailure {
    fn at(mark: Marker, message: String) -> Self {
        YamlFailure {
            line: u64::try_from(mark.line()).ok().filter(|l| *l > 0),
            message,
        }
    }
}

/// Parses every document of `text`; empty documents are dropped.
///
/// Values are built straight from the parser's events (no intermediate YAML tree), which is
/// what makes this the fast path.
///
/// # Errors
/// [`YamlFailure`] on a syntax error, a duplicate key, a non-scalar mapping key, an
/// unresolved alias, or a number JSON cannot hold (`.inf`, `.nan`).
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlFailure> {
    let mut builder = Builder::default();
    // Events one by one, not `Parser::load`: that one recurses once per nesting level (a
    // 100,000-deep `- - - …` overflowed the stack) and asserts on the events it gets.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| YamlFailure::at(*e.marker(), e.info().to_string()))?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, mark);
        if builder.failure.is_some() {
            break;
        }
    }
    if let Some(failure) = builder.failure {
        return Err(failure);
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|v| !v.is_null())
        .collect())
}

/// A collection being built.
enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    Mapping {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

/// Builds JSON values from parser events; the first failure stops it.
#[derive(Default)]
struct Builder {
    documents: Vec<Value>,
    stack: Vec<Frame>,
    /// Each anchored value with its size.
    anchors: BTreeMap<usize, (Value, Size)>,
    /// Values added by aliases so far.
    aliased: usize,
    failure: Option<YamlFailure>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.failure.is_some() {
            return;
        }
        if let Err(message) = self.handle(event) {
            self.failure = Some(YamlFailure::at(mark, message));
        }
    }
}

impl Builder {
    fn handle(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                return Err(format!("collections are nested more than {MAX_DEPTH} deep"));
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Sequence {
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Mapping {
                    map: Map::new(),
                    key: None,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Sequence { items, anchor }) => {
                    self.insert(Value::Array(items), anchor)?
                }
                Some(Frame::Mapping { map, anchor, .. }) => {
                    self.insert(Value::Object(map), anchor)?
                }
                None => return Err("unbalanced collection end".to_string()),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(text, style, tag.as_ref())?;
                self.insert(value, anchor)?;
            }
            Event::Alias(id) => {
                let (value, size) = self
                    .anchors
                    .get(&id)
                    .ok_or("an alias refers to no anchor")?;
                self.aliased = self.aliased.saturating_add(size.values);
                if self.aliased > MAX_ALIAS_VALUES {
                    return Err(format!(
                        "aliases expand to more than {MAX_ALIAS_VALUES} values"
                    ));
                }
                if self.stack.len().saturating_add(size.depth) > MAX_DEPTH {
                    return Err(format!("collections are nested more than {MAX_DEPTH} deep"));
                }
                let value = value.clone();
                self.insert(value, 0)?;
            }
            // Anchors are per document.
            Event::DocumentStart => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn insert(&mut self, value: Value, anchor: usize) -> Result<(), String> {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (value.clone(), Size::of(&value)));
        }
        match self.stack.last_mut() {
            None => self.documents.push(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping { map, key, .. }) => match key.take() {
                None => *key = Some(key_text(value)?),
                // One lookup for both the duplicate check and the insertion.
                Some(name) => match map.entry(name) {
                    Entry::Vacant(slot) => {
                        slot.insert(value);
                    }
                    Entry::Occupied(slot) => {
                        return Err(format!("{:?}: duplicated key in mapping", slot.key()));
                    }
                },
            },
        }
        Ok(())
    }
}

/// How big an anchored value is, to bound what its aliases add.
#[derive(Debug, Clone, Copy)]
struct Size {
    /// Values in it, itself included.
    values: usize,
    /// Collections nested in it, itself included (0 for a scalar).
    depth: usize,
}

impl Size {
    /// Measured without recursion.
    fn of(value: &Value) -> Size {
        let mut size = Size {
            values: 0,
            depth: 0,
        };
        let mut pending = vec![(value, 0usize)];
        while let Some((v, above)) = pending.pop() {
            size.values = size.values.saturating_add(1);
            let level = above + 1;
            match v {
                Value::Array(items) => {
                    size.depth = size.depth.max(level);
                    pending.extend(items.iter().map(|c| (c, level)));
                }
                Value::Object(map) => {
                    size.depth = size.depth.max(level);
                    pending.extend(map.values().map(|c| (c, level)));
                }
                _ => {}
            }
        }
        size
    }
}

/// A scalar's value: quoted and block scalars are strings; plain ones are resolved by the
/// YAML 1.2 core schema, as yaml-rust2's own loader does; `!!str`, `!!int`, … are honoured.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    match tag {
        Some(Tag { handle, suffix }) if handle == "tag:yaml.org,2002:" => match suffix.as_str() {
            "str" => Ok(Value::String(text)),
            "bool" | "int" | "float" | "null" => match Yaml::from_str(&text) {
                Yaml::String(_) => Err(format!("`{text}` is not a valid !!{suffix}")),
                resolved => resolved_value(resolved),
            },
            _ => Ok(Value::String(text)),
        },
        Some(_) => Ok(Value::String(text)),
        None if could_be_typed(&text) => match Yaml::from_str(&text) {
            Yaml::String(_) => Ok(Value::String(text)),
            resolved => resolved_value(resolved),
        },
        None => Ok(Value::String(text)),
    }
}

/// Whether a plain scalar might resolve to something other than a string (null, a boolean or
/// a number); everything else skips the resolver.
fn could_be_typed(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_digit() || b"+-.~".contains(b) => true,
        Some(b't' | b'T' | b'f' | b'F' | b'n' | b'N') => text.len() <= 5,
        Some(_) => false,
    }
}

fn resolved_value(yaml: Yaml) -> Result<Value, String> {
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
        _ => return Err("unexpected scalar".to_string()),
    })
}

fn key_text(key: Value) -> Result<String, String> {
    match key {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".to_string()),
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
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for text in [
            format!("{}x\n", "- ".repeat(100_000)),
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ] {
            assert!(parse_documents(&text).is_err());
        }
        let ok = format!("{}x\n", "- ".repeat(MAX_DEPTH));
        assert!(parse_documents(&ok).is_ok());
        let too_deep = format!("{}x\n", "- ".repeat(MAX_DEPTH + 1));
        let err = parse_documents(&too_deep).unwrap_err();
        assert!(err.message.contains("nested more than"), "{err:?}");
    }

    #[test]
    fn aliases_cannot_nest_past_the_depth_limit() {
        let deep = format!("{}x{}", "[".repeat(200), "]".repeat(200));
        let text = format!(
            "a: &a {deep}\nb: {}*a{}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("nested more than"), "{err:?}");
    }

    #[test]
    fn billion_laughs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=12 {
            let alias = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![alias; 10].join(", ")));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn anchors_do_not_reach_into_the_next_document() {
        assert!(parse_documents("a: &x 1\n---\nb: *x\n").is_err());
        assert_eq!(
            parse_documents("a: &x 1\n---\nb: &x 2\nc: *x\n").unwrap(),
            vec![json!({"a": 1}), json!({"b": 2, "c": 2})]
        );
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
