//! Value merging: project defaults, then the environment file, then `--set a.b=c`.
//!
//! Mappings merge key by key, recursively; anything else (scalars, sequences) replaces.

use serde_json::{Map, Value};

use super::Error;

/// Merges `overlay` into `base`: mappings recursively, everything else replaced.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// One parsed `--set path=value` override.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOverride {
    /// The dotted path split into keys, e.g. `["replicas"]` or `["web", "port"]`.
    pub path: Vec<String>,
    /// The value, typed like a YAML scalar (`3` is a number, `true` a boolean, `"3"` a string).
    pub value: Value,
}

impl SetOverride {
    /// Parses `a.b=c`.
    ///
    /// # Errors
    /// [`Error::BadSet`] when there is no `=`, the path is empty or has an empty key.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadSet {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (path, raw) = text
            .split_once('=')
            .ok_or_else(|| bad("expected `path=value`"))?;
        let path: Vec<String> = path.split('.').map(str::to_string).collect();
        if path.iter().any(|key| key.trim().is_empty()) {
            return Err(bad("the path has an empty key"));
        }
        Ok(SetOverride {
            path,
            value: scalar(raw),
        })
    }

    /// Applies the override to `values`, creating mappings along the path.
    ///
    /// # Errors
    /// [`Error::SetThroughScalar`] when a key on the path holds a non-mapping value.
    pub fn apply(&self, values: &mut Value) -> Result<(), Error> {
        let mut node = values;
        for (depth, key) in self.path.iter().enumerate() {
            let is_last = depth + 1 == self.path.len();
            let Value::Object(map) = node else {
                return Err(Error::SetThroughScalar {
                    path: self.path[..depth].join("."),
                });
            };
            if is_last {
                map.insert(key.clone(), self.value.clone());
                return Ok(());
            }
            node = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        Ok(())
    }
}

/// Types a `--set` value like a YAML plain scalar: null, booleans, integers, floats, or a string.
fn scalar(raw: &str) -> Value {
    match raw {
        "null" | "~" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(int) = raw.parse::<i64>() {
        return Value::from(int);
    }
    if let Ok(float) = raw.parse::<f64>()
        && float.is_finite()
        && raw.chars().any(|c| c.is_ascii_digit())
    {
        return Value::from(float);
    }
    let unquoted = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
    Value::String(unquoted.unwrap_or(raw).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_mappings_recursively_and_replaces_the_rest() {
        let mut base = json!({"a": {"x": 1, "y": [1, 2]}, "b": "keep"});
        merge(&mut base, json!({"a": {"y": [3], "z": true}}));
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [3], "z": true}, "b": "keep"})
        );
    }

    #[test]
    fn set_types_values_like_yaml_scalars() {
        let cases = [
            ("n=3", json!(3)),
            ("n=1.5", json!(1.5)),
            ("n=true", json!(true)),
            ("n=null", Value::Null),
            ("n=\"3\"", json!("3")),
            ("n=hello world", json!("hello world")),
            ("n=", json!("")),
            ("n=a=b", json!("a=b")),
        ];
        for (text, expected) in cases {
            assert_eq!(SetOverride::parse(text).unwrap().value, expected, "{text}");
        }
    }

    #[test]
    fn set_creates_nested_mappings() {
        let mut values = json!({"web": {"port": 80}});
        SetOverride::parse("web.replicas=3")
            .unwrap()
            .apply(&mut values)
            .unwrap();
        SetOverride::parse("db.host=x")
            .unwrap()
            .apply(&mut values)
            .unwrap();
        assert_eq!(
            values,
            json!({"web": {"port": 80, "replicas": 3}, "db": {"host": "x"}})
        );
    }

    #[test]
    fn set_refuses_to_descend_through_a_scalar() {
        let mut values = json!({"web": 1});
        let err = SetOverride::parse("web.port=80")
            .unwrap()
            .apply(&mut values)
            .unwrap_err();
        assert!(
            matches!(err, Error::SetThroughScalar { ref path } if path == "web"),
            "{err}"
        );
    }

    #[test]
    fn set_rejects_malformed_input() {
        assert!(matches!(
            SetOverride::parse("novalue"),
            Err(Error::BadSet { .. })
        ));
        assert!(matches!(
            SetOverride::parse("a..b=1"),
            Err(Error::BadSet { .. })
        ));
        assert!(matches!(
            SetOverride::parse("=1"),
            Err(Error::BadSet { .. })
        ));
    }
}
