//! Redaction of secret values from a bundle before it is shown to anyone.
//!
//! Secrets' `data` and `stringData` values become `***`, and any other string that contains a
//! secret's value (plain or base64) has that part replaced, so a secret that leaked into a
//! ConfigMap or an annotation is not printed either.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::Bundle;
use crate::project::Redacted;

/// What a redacted value reads as.
pub const REDACTED: &str = "***";

/// Hides every secret value in `secrets` inside `bundle`.
pub fn redact_bundle(bundle: &mut Bundle, secrets: &BTreeMap<String, Redacted<String>>) {
    let needles = needles(secrets);
    for object in &mut bundle.objects {
        if object.id.kind == "Secret" && object.id.api_version == "v1" {
            for field in ["data", "stringData"] {
                if let Some(map) = object.value.get_mut(field).and_then(Value::as_object_mut) {
                    for value in map.values_mut() {
                        *value = Value::String(REDACTED.to_string());
                    }
                }
            }
        }
        scrub(&mut object.value, &needles);
    }
}

/// The strings to hide: each secret and its base64 form, longest first, skipping values too
/// short to hide without garbling unrelated text.
fn needles(secrets: &BTreeMap<String, Redacted<String>>) -> Vec<String> {
    let mut needles: Vec<String> = secrets
        .values()
        .flat_map(|s| {
            let plain = s.expose().clone();
            let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
            [plain, encoded]
        })
        .filter(|n| n.len() >= 4)
        .collect();
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
    needles
}

fn scrub(value: &mut Value, needles: &[String]) {
    match value {
        Value::String(text) => {
            for needle in needles {
                if text.contains(needle.as_str()) {
                    *text = text.replace(needle.as_str(), REDACTED);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub(v, needles)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub(v, needles)),
        _ => {}
    }
}
