//! Parsing the value of `ferry.dev/depends-on`: `Kind[.group]/[namespace/]name`, comma
//! separated, whitespace tolerated.

use super::error::Malformed;

/// One dependency as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The item as written (trimmed), for messages.
    pub written: String,
    /// The kind.
    pub kind: String,
    /// The group when written `Kind.group` (`core` means `""`).
    pub group: Option<String>,
    /// The namespace when written `Kind/namespace/name`.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

/// Parses a whole annotation value.
///
/// # Errors
/// [`Malformed`] for an empty value or item, a wrong number of `/`, or an empty part.
pub(crate) fn parse(value: &str) -> Result<Vec<Target>, Malformed> {
    if value.trim().is_empty() {
        return Err(Malformed::Empty);
    }
    value.split(',').map(parse_item).collect()
}

/// Parses one `Kind[.group]/[namespace/]name`.
fn parse_item(item: &str) -> Result<Target, Malformed> {
    let written = item.trim();
    if written.is_empty() {
        return Err(Malformed::EmptyItem);
    }
    let parts: Vec<&str> = written.split('/').map(str::trim).collect();
    let (kind_part, namespace, name) = match parts.as_slice() {
        [kind, name] => (*kind, None, *name),
        [kind, namespace, name] => (*kind, Some(*namespace), *name),
        _ => {
            return Err(Malformed::Shape {
                item: written.to_string(),
            });
        }
    };
    let (kind, group) = match kind_part.split_once('.') {
        Some((kind, "core")) => (kind, Some("")),
        Some((kind, group)) => (kind, Some(group)),
        None => (kind_part, None),
    };
    let empty = kind.is_empty()
        || name.is_empty()
        || namespace.is_some_and(str::is_empty)
        || group.is_some_and(|g| g.is_empty() && !kind_part.ends_with(".core"));
    if empty {
        return Err(Malformed::EmptyPart {
            item: written.to_string(),
        });
    }
    Ok(Target {
        written: written.to_string(),
        kind: kind.to_string(),
        group: group.map(str::to_string),
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
    })
}
