//! A small, fast YAML emitter for JSON values, in the block style `kubectl` prints.
//!
//! Strings are written plain only when no YAML 1.1 or 1.2 reader could take them for anything
//! else (a number, a boolean, null, a date, an indicator); otherwise they are double-quoted
//! with JSON escapes, which YAML accepts. Multi-line strings become literal blocks when that
//! is exact. The output parses back to the same value (tested).

use std::fmt::Write;

use serde_json::Value;

/// `value` as one YAML document, ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::with_capacity(1024);
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            write_scalar(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

fn write_mapping(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (index, (key, value)) in map.iter().enumerate() {
        // The first key of a mapping inside a sequence item follows the `- ` already written.
        if index > 0 || out.ends_with('\n') || out.is_empty() {
            indent(out, level);
        }
        write_string(out, key, level, true);
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(out, map, level + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            // kubectl style: sequence items at the same indentation as their key.
            write_sequence(out, items, level);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_mapping(out, map, level + 2),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_sequence(out, inner, level + 2);
            }
            scalar => {
                write_scalar(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// Scalars and empty collections, on the current line; `level` is the indentation of any
/// block-literal lines that follow.
fn write_scalar(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s, level, false),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_string(out: &mut String, text: &str, level: usize, is_key: bool) {
    if is_plain_safe(text) {
        out.push_str(text);
    } else if !is_key && fits_literal_block(text) {
        write_literal_block(out, text, level);
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string()));
    }
}

/// Whether `text` can be written without quotes and read back as the same string by both
/// YAML 1.1 (Kubernetes' Go decoder) and YAML 1.2 readers.
fn is_plain_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`+. =~<".contains(first) {
        return false;
    }
    // Numbers, dates, times, hex, octal and 1.1 sexagesimals start with a digit and use only
    // these characters; a digit-led string with any other character (`50m`, `32Mi`) is text.
    if first.is_ascii_digit()
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "._:+-xXoO ".contains(c))
    {
        return false;
    }
    if text.ends_with([' ', ':', '\t']) || text.contains(": ") || text.contains(" #") {
        return false;
    }
    if text
        .chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\t')
    {
        return false;
    }
    !is_reserved_word(text)
}

fn is_reserved_word(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf",
    ];
    text.len() <= 5 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(text))
}

/// A literal block (`|`) reproduces `text` exactly when it has several lines, no carriage
/// returns or other control characters, no trailing spaces, and a first line that does not
/// start with a space.
fn fits_literal_block(text: &str) -> bool {
    text.contains('\n')
        && !text.starts_with([' ', '\n'])
        && !text.chars().any(|c| c.is_control() && c != '\n')
        && !text.lines().any(|l| l.ends_with(' '))
}

fn write_literal_block(out: &mut String, text: &str, level: usize) {
    let body = text.trim_end_matches('\n');
    let trailing = text.len() - body.len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            indent(out, level);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: &Value) {
        let text = to_yaml(value);
        let back = crate::render::yaml::parse_documents(&text).unwrap();
        assert_eq!(back.first(), Some(value), "emitted:\n{text}");
        let saphyr: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(&saphyr, value, "serde-saphyr reads it differently:\n{text}");
    }

    #[test]
    fn writes_kubectl_style_blocks() {
        let value = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "demo"}},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {}, "ips": []},
        });
        assert_eq!(
            to_yaml(&value),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    app.kubernetes.io/name: demo\n\
             spec:\n  ports:\n  - name: http\n    port: 80\n  selector: {}\n  ips: []\n"
        );
        round_trip(&value);
    }

    #[test]
    fn quotes_strings_that_would_read_as_something_else() {
        for text in [
            "",
            "8080",
            "1.5",
            "0x1F",
            "010",
            "1e3",
            "true",
            "False",
            "yes",
            "NO",
            "on",
            "off",
            "y",
            "null",
            "~",
            "-",
            "- a",
            "a: b",
            "a #b",
            "#x",
            "*",
            "&a",
            "!tag",
            "|",
            ">",
            "'",
            "\"",
            "%",
            "@",
            "`",
            " lead",
            "trail ",
            "tab\there",
            "2024-01-01",
            ".inf",
            "-.5",
            "+1",
            "key:",
            "<<",
            "=",
            "ALL",
            "ünïcode",
            "a\rb",
            "line\n",
            "a\nb",
            "a\n\nb\n\n",
            " x\ny",
            "x \ny",
            "\nx",
            "1_000",
            "1:20",
            "12:30:00",
            "0o17",
            "0b101",
            "1.0e+3",
            "2001-12-14t21:59:43.10-05:00",
            "50m",
            "32Mi",
            "1Gi",
            "3h",
            "deadbeef",
            "0deadbeef",
        ] {
            round_trip(&json!({"v": text, "list": [text], "k": {text: 1}}));
        }
    }

    #[test]
    fn writes_safe_strings_plain() {
        assert_eq!(
            to_yaml(&json!({"a": "RuntimeDefault", "b": "/healthz", "c": "ALL"})),
            "a: RuntimeDefault\nb: /healthz\nc: ALL\n"
        );
        assert_eq!(
            to_yaml(&json!({"cpu": "50m", "memory": "32Mi", "port": "8080"})),
            "cpu: 50m\nmemory: 32Mi\nport: \"8080\"\n"
        );
    }

    #[test]
    fn multi_line_strings_become_literal_blocks() {
        let value = json!({"data": {"config.yaml": "a: 1\nb:\n  - x\n"}});
        assert_eq!(
            to_yaml(&value),
            "data:\n  config.yaml: |\n    a: 1\n    b:\n      - x\n"
        );
        round_trip(&value);
        round_trip(&json!({"x": [{"y": "one\ntwo"}, "three\n"]}));
    }

    #[test]
    fn nested_sequences_and_scalars_round_trip() {
        round_trip(&json!({"a": [[1, 2], [], [{"b": null}], {"c": [true, 1.25, -3]}]}));
        round_trip(&json!({"args": ["--port", "8080", "--flag=on"]}));
    }
}
