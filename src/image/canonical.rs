//! Canonical JSON: object keys sorted bytewise at every level, no insignificant whitespace.
//!
//! Digests are taken over the exact bytes pushed, so every JSON document of an image goes
//! through [`to_vec`]. `serde_json::Value` keeps insertion order in this crate (the
//! `preserve_order` feature), so sorting is done here explicitly rather than trusted to it.

use serde_json::Value;

/// Serialises `value` canonically.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out
}

/// Serialises any `Serialize` value canonically (through `serde_json::Value`).
///
/// # Errors
/// When `value` cannot be represented as JSON (e.g. a map with non-string keys).
pub fn to_vec_of<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    Ok(to_vec(&serde_json::to_value(value)?))
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// Strings, numbers, booleans and null: serde_json's own escaping, which cannot fail for
/// these into a `Vec`.
fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_whatever_the_insertion_order() {
        let mut a = serde_json::Map::new();
        a.insert("zeta".into(), json!(1));
        a.insert(
            "alpha".into(),
            json!({"y": [3, {"b": 1, "a": 2}], "x": "é\"\n"}),
        );
        let mut b = serde_json::Map::new();
        b.insert(
            "alpha".into(),
            json!({"x": "é\"\n", "y": [3, {"a": 2, "b": 1}]}),
        );
        b.insert("zeta".into(), json!(1));
        let (a, b) = (to_vec(&Value::Object(a)), to_vec(&Value::Object(b)));
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"alpha":{"x":"é\"\n","y":[3,{"a":2,"b":1}]},"zeta":1}"#
        );
    }

    #[test]
    fn sorting_is_bytewise_not_by_locale() {
        let value = json!({"b": 1, "B": 2, "a": 3, "_": 4});
        assert_eq!(to_vec(&value), br#"{"B":2,"_":4,"a":3,"b":1}"#);
    }
}
