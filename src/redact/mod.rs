//! The secret values this process has seen, and the scrubber every output passes through.
//!
//! Whenever Ferry learns a secret value (a `{{secret}}` lookup, a Secret object decoded from a
//! release record or read from the cluster, a registry password or token), it is
//! [`register`]ed here. The [`ui::Printer`](crate::ui::Printer) (every stdout and stderr line:
//! data, JSON, status, warnings, errors, causes, hints) and the tracing writer pass their text
//! through [`scrub`], and `render`, `diff` and `status` scrub their objects with
//! [`scrub_value`], so the same values are hidden everywhere, whichever command found them.
//!
//! A value is hidden in every encoding it may be printed in: as is, base64 (standard and
//! URL-safe, with and without padding), JSON/YAML double-quoted escaping (which is also how
//! Rust's `{:?}` and Go's `%q` print plain ASCII), once and twice (a server's message quoting
//! the value, quoted again in JSON or a log), YAML single-quoted escaping, and each line
//! of a multi-line value (YAML literal blocks and diffs print one line at a time). Values
//! shorter than [`MIN_LEN`] bytes are not registered: hiding them would garble unrelated text.
//!
//! Pure: no I/O, no network. It never stores where a value came from, only the value.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

/// What a hidden value reads as.
pub const REDACTED: &str = "***";

/// The shortest value (in bytes) that is hidden; shorter ones would garble unrelated text.
pub const MIN_LEN: usize = 4;

/// The longest value that is registered: larger blobs (a release record chunk, a bundle of
/// certificates) are not secrets worth a matcher state each, and their encodings are hidden by
/// the structural masking of Secret `data` anyway.
const MAX_LEN: usize = 64 * 1024;

/// The registered needles and the matcher built from them.
#[derive(Default)]
struct Registry {
    /// Every string to hide (values and their encodings).
    needles: BTreeSet<String>,
    /// A matcher over `needles`, rebuilt lazily after a registration.
    matcher: Option<Arc<AhoCorasick>>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(RwLock::default);

/// Remembers `secret` (and every encoding of it) so that no output of this process shows it.
pub fn register(secret: &str) {
    register_all([secret]);
}

/// [`register`] for many values at once (one matcher rebuild).
pub fn register_all<'a>(secrets: impl IntoIterator<Item = &'a str>) {
    let mut fresh = Vec::new();
    for secret in secrets {
        fresh.extend(needles_of(secret));
    }
    if fresh.is_empty() {
        return;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    let before = registry.needles.len();
    registry.needles.extend(fresh);
    if registry.needles.len() != before {
        registry.matcher = None;
    }
}

/// Registers the values of a Kubernetes Secret (`data`, decoded, and `stringData`); other
/// objects are left alone. Returns how many values it registered.
///
/// Called wherever a Secret object enters Ferry without a secret store (a release record, a
/// live object), so a command that renders nothing still knows what to hide.
pub fn register_object(object: &Value) -> usize {
    if object.get("kind").and_then(Value::as_str) != Some("Secret") {
        return 0;
    }
    let mut values: Vec<String> = Vec::new();
    if let Some(data) = object.get("data").and_then(Value::as_object) {
        for encoded in data.values().filter_map(Value::as_str) {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded {
                Some(text) => values.push(text),
                // Binary data: only its base64 form can be printed.
                None => values.push(encoded.to_string()),
            }
        }
    }
    if let Some(data) = object.get("stringData").and_then(Value::as_object) {
        values.extend(data.values().filter_map(Value::as_str).map(str::to_string));
    }
    register_all(values.iter().map(String::as_str));
    values.len()
}

/// `text` with every registered value (in every known encoding) replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(matcher) = matcher() else {
        return Cow::Borrowed(text);
    };
    if matcher.is_match(text) {
        Cow::Owned(replace(&matcher, text))
    } else {
        Cow::Borrowed(text)
    }
}

fn replace(matcher: &AhoCorasick, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    matcher.replace_all_with(text, &mut out, |_, _, out| {
        out.push_str(REDACTED);
        true
    });
    out
}

/// Scrubs every string (and every mapping key) inside `value` in place.
pub fn scrub_value(value: &mut Value) {
    let Some(matcher) = matcher() else {
        return;
    };
    scrub_with(value, &matcher);
}

fn scrub_with(value: &mut Value, matcher: &AhoCorasick) {
    match value {
        Value::String(text) if matcher.is_match(text.as_str()) => {
            *text = replace(matcher, text);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_with(v, matcher)),
        Value::Object(map) => {
            if map.keys().any(|k| matcher.is_match(k.as_str())) {
                let entries = std::mem::take(map);
                for (key, mut field) in entries {
                    scrub_with(&mut field, matcher);
                    let key = replace(matcher, &key);
                    map.insert(key, field);
                }
            } else {
                map.values_mut().for_each(|v| scrub_with(v, matcher));
            }
        }
        _ => {}
    }
}

/// The current matcher, built if a registration made it stale; `None` when nothing is
/// registered.
fn matcher() -> Option<Arc<AhoCorasick>> {
    {
        let registry = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
        if registry.needles.is_empty() {
            return None;
        }
        if let Some(matcher) = &registry.matcher {
            return Some(Arc::clone(matcher));
        }
    }
    let mut registry = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if let Some(matcher) = &registry.matcher {
        return Some(Arc::clone(matcher));
    }
    // Leftmost-longest: a value's base64 wins over a shorter value it happens to contain.
    let built = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&registry.needles)
        .ok()
        .map(Arc::new);
    registry.matcher.clone_from(&built);
    built
}

/// The strings that reveal `secret`: the value and each encoding Ferry or a server may print.
fn needles_of(secret: &str) -> Vec<String> {
    if secret.len() < MIN_LEN || secret.len() > MAX_LEN {
        return Vec::new();
    }
    let bytes = secret.as_bytes();
    let mut needles = vec![
        secret.to_string(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        // JSON and YAML double quotes (also Go's %q for plain ASCII).
        json_escaped(secret),
        // Rust's `{:?}` of a string (tracing fields, error chains).
        debug_escaped(secret),
        // Escaped twice: a server message quoting the value, itself quoted in JSON or `{:?}`.
        json_escaped(&json_escaped(secret)),
        debug_escaped(&debug_escaped(secret)),
        // YAML single quotes.
        secret.replace('\'', "''"),
    ];
    if secret.contains('\n') {
        needles.extend(
            secret
                .lines()
                .map(|line| line.trim_end_matches('\r').trim())
                .filter(|line| line.len() >= MIN_LEN)
                .map(str::to_string),
        );
    }
    needles.sort();
    needles.dedup();
    needles
}

fn json_escaped(secret: &str) -> String {
    let quoted = serde_json::to_string(secret).unwrap_or_default();
    unquote(&quoted).to_string()
}

fn debug_escaped(secret: &str) -> String {
    let quoted = format!("{secret:?}");
    unquote(&quoted).to_string()
}

fn unquote(quoted: &str) -> &str {
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The registry is process-wide; each test uses its own values and never clears it, so
    // tests running in parallel threads cannot disturb each other.

    #[test]
    fn every_encoding_of_a_value_is_hidden() {
        let secret = "pa55: \"w0rd\" \\ tab\there/+?>";
        register(secret);
        for shown in [
            secret.to_string(),
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            serde_json::to_string(secret).unwrap(),
            serde_json::to_string(&serde_json::to_string(secret).unwrap()).unwrap(),
            format!("{secret:?}"),
            format!("{:?}", format!("{secret:?}")),
            secret.replace('\'', "''"),
        ] {
            let line = format!("before {shown} after");
            let scrubbed = scrub(&line);
            assert!(
                scrubbed.starts_with("before ") && scrubbed.ends_with(" after"),
                "{scrubbed}"
            );
            assert!(!scrubbed.contains("w0rd"), "{shown} → {scrubbed}");
        }
    }

    #[test]
    fn lines_of_multi_line_values_are_hidden_one_by_one() {
        register("-----KEY-----\nQUJDREVGR0hJSktMTU5P\nUFFSU1RVVldYWVo=\n");
        let literal = "  key: |\n    QUJDREVGR0hJSktMTU5P\n    UFFSU1RVVldYWVo=\n";
        let scrubbed = scrub(literal);
        assert!(!scrubbed.contains("QUJDREVG"), "{scrubbed}");
        assert!(!scrubbed.contains("UFFSU1RV"), "{scrubbed}");
    }

    #[test]
    fn short_values_are_not_registered_and_unrelated_text_is_untouched() {
        register("abc");
        assert_eq!(scrub("abc abcd"), "abc abcd");
        assert!(matches!(scrub("nothing to hide"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_objects_register_their_decoded_data() {
        let object = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"p": STANDARD.encode("decoded-from-data")},
            "stringData": {"q": "plain-string-data"}});
        assert_eq!(register_object(&object), 2);
        assert_eq!(
            register_object(&json!({"kind": "ConfigMap", "data": {"p": "not-a-secret"}})),
            0
        );
        let mut value = json!({"data": {"copy": "x decoded-from-data y",
            "plain-string-data": ["plain-string-data"], "other": "not-a-secret"}});
        scrub_value(&mut value);
        assert_eq!(
            value,
            json!({"data": {"copy": "x *** y", "***": ["***"], "other": "not-a-secret"}})
        );
    }

    #[test]
    fn the_longest_encoding_wins() {
        // The base64 of a value may contain another value; the longer match is hidden whole.
        let inner = "c2VjcmV0LWxvbmdlcg";
        register(inner);
        register("secret-longer");
        let encoded = STANDARD.encode("secret-longer");
        assert_eq!(scrub(&format!("[{encoded}]")), "[***]");
    }
}
