//! Redaction of secret values from a bundle before it is shown to anyone.
//!
//! Secrets' `data` and `stringData` values become `***` whatever they hold, and every other
//! string is scrubbed of the secret values this process has seen ([`crate::redact`]), so a
//! secret that leaked into a ConfigMap, an env value or an annotation is not printed either.

use serde_json::Value;

use super::Bundle;
use crate::redact::REDACTED;

/// Hides every secret value inside `bundle`: Secret `data`/`stringData` entirely, and every
/// registered value ([`crate::redact::register`]; `{{secret}}` registers what it returns)
/// wherever else it appears.
pub fn redact_bundle(bundle: &mut Bundle) {
    for object in &mut bundle.objects {
        mask_secret_data(&mut object.value);
        crate::redact::scrub_value(&mut object.value);
    }
}

/// Replaces the values of a Secret's `data` and `stringData` with `***`; other objects are
/// left alone.
fn mask_secret_data(object: &mut Value) {
    let is_secret = object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if !is_secret {
        return;
    }
    for field in ["data", "stringData"] {
        if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                *value = Value::String(REDACTED.to_string());
            }
        }
    }
}
