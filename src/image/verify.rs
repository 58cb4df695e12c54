//! Explaining why two builds of one image differ: which manifest field, config field, layer,
//! tar entry and header field, or whether only the compressed bytes differ (compressor).
//!
//! `ferry image build --verify` builds twice and calls [`compare`] on the two layouts.

use serde::Serialize;
use serde_json::Value;

use super::Error;
use super::layer::{self, ReadEntry};
use super::layout::Layout;

/// The most differences reported; the first ones are the informative ones.
const LIMIT: usize = 20;

/// One difference between two builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Where: `manifest`, `config`, `layer 2 (sha256:…)` or `layer 2 entry app/web`.
    pub location: String,
    /// Which field: a JSON path, a tar header field, `order`, `digest`.
    pub field: String,
    /// The value in the first build.
    pub first: String,
    /// The value in the second build.
    pub second: String,
}

/// Compares the images tagged `tag` in two layouts; empty when their manifests are identical.
///
/// # Errors
/// Read and parse errors of either layout.
pub fn compare(a: &Layout, b: &Layout, tag: &str) -> Result<Vec<Difference>, Error> {
    let (ma, mb) = (a.image(Some(tag))?, b.image(Some(tag))?);
    if ma.digest == mb.digest {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let (ja, jb) = (a.read_json(&ma.digest)?, b.read_json(&mb.digest)?);
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("config");
            m.remove("layers");
        }
        v
    };
    json_diff("manifest", "", &strip(&ja), &strip(&jb), &mut out);

    let digest = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (ca, cb) = (digest(&ja, "/config/digest"), digest(&jb, "/config/digest"));
    if ca != cb {
        let (ca, cb) = (a.read_json(&ca)?, b.read_json(&cb)?);
        let without_diff_ids = |v: &Value| {
            let mut v = v.clone();
            if let Some(r) = v.get_mut("rootfs").and_then(Value::as_object_mut) {
                r.remove("diff_ids");
            }
            v
        };
        json_diff(
            "config",
            "",
            &without_diff_ids(&ca),
            &without_diff_ids(&cb),
            &mut out,
        );
    }

    let layers = |v: &Value| {
        v.get("layers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (la, lb) = (layers(&ja), layers(&jb));
    if la.len() != lb.len() {
        out.push(diff("manifest", "layers (count)", la.len(), lb.len()));
    }
    for (i, (da, db)) in la.iter().zip(&lb).enumerate() {
        let (ga, gb) = (digest(da, "/digest"), digest(db, "/digest"));
        if ga == gb {
            continue;
        }
        let gz = |d: &Value| digest(d, "/mediaType").ends_with("gzip");
        let ea = layer::read_entries(a.open_blob(&ga)?, gz(da))
            .map_err(Error::read(a.blob_path(&ga)))?;
        let eb = layer::read_entries(b.open_blob(&gb)?, gz(db))
            .map_err(Error::read(b.blob_path(&gb)))?;
        let before = out.len();
        entries_diff(i, &ea, &eb, &mut out);
        if out.len() == before {
            out.push(Difference {
                location: format!("layer {i}"),
                field: "digest (same tar content, different compressed bytes: compressor or level)"
                    .into(),
                first: ga,
                second: gb,
            });
        }
        if out.len() >= LIMIT {
            break;
        }
    }
    out.truncate(LIMIT);
    Ok(out)
}

fn diff(location: &str, field: &str, a: impl ToString, b: impl ToString) -> Difference {
    Difference {
        location: location.to_string(),
        field: field.to_string(),
        first: a.to_string(),
        second: b.to_string(),
    }
}

fn json_diff(location: &str, path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for key in keys {
                let null = Value::Null;
                json_diff(
                    location,
                    &format!("{path}.{key}"),
                    ma.get(key).unwrap_or(&null),
                    mb.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(xa), Value::Array(xb)) if xa.len() == xb.len() => {
            for (i, (ea, eb)) in xa.iter().zip(xb).enumerate() {
                json_diff(location, &format!("{path}[{i}]"), ea, eb, out);
            }
        }
        _ => out.push(diff(location, path.trim_start_matches('.'), a, b)),
    }
}

/// An optional field for people: the value, or `none` (never Rust's `Some("…")`).
fn or_none(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "none".to_string())
}

fn entries_diff(layer: usize, a: &[ReadEntry], b: &[ReadEntry], out: &mut Vec<Difference>) {
    for (i, (ea, eb)) in a.iter().zip(b).enumerate() {
        let location = format!("layer {layer} entry {}", ea.path);
        if ea.path != eb.path {
            out.push(Difference {
                location: format!("layer {layer} entry #{i}"),
                field: "order (path)".into(),
                first: ea.path.clone(),
                second: eb.path.clone(),
            });
            return;
        }
        let fields: [(&str, String, String); 11] = [
            ("type", ea.kind.clone(), eb.kind.clone()),
            (
                "mode",
                format!("{:04o}", ea.mode),
                format!("{:04o}", eb.mode),
            ),
            ("uid", ea.uid.to_string(), eb.uid.to_string()),
            ("gid", ea.gid.to_string(), eb.gid.to_string()),
            ("mtime", ea.mtime.to_string(), eb.mtime.to_string()),
            ("size", ea.size.to_string(), eb.size.to_string()),
            ("link", or_none(&ea.link), or_none(&eb.link)),
            ("uname", ea.uname.clone(), eb.uname.clone()),
            ("gname", ea.gname.clone(), eb.gname.clone()),
            ("content sha256", or_none(&ea.sha256), or_none(&eb.sha256)),
            ("pax records (xattrs)", ea.pax.join(","), eb.pax.join(",")),
        ];
        for (field, va, vb) in fields {
            if va != vb {
                out.push(diff(&location, field, va, vb));
            }
        }
        if out.len() >= LIMIT {
            return;
        }
    }
    if a.len() != b.len() {
        let extra = if a.len() > b.len() {
            &a[b.len()]
        } else {
            &b[a.len()]
        };
        out.push(Difference {
            location: format!("layer {layer}"),
            field: "entries (count)".into(),
            first: a.len().to_string(),
            second: format!("{} (first extra: {})", b.len(), extra.path),
        });
    }
}
