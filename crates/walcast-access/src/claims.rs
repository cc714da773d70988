//! `"$claims.<name>"` placeholders in row filters, replaced by the caller's token claims.

use serde_json::{Map, Value};

/// The prefix of a filter value taken from the caller's token: `"$claims.sub"`.
const CLAIM_PREFIX: &str = "$claims.";

/// A placeholder the filter needs that the token lacks (or holds as null).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim {name:?} is missing")]
pub struct MissingClaim {
    pub name: String,
}

/// Text that looks meant as a placeholder but is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: a placeholder is written \"$claims.<name>\"")]
pub struct BadPlaceholder {
    pub text: String,
}

/// Replaces every `"$claims.<name>"` string by the claim's value. A missing or null claim
/// fails: substituting null would turn an ownership filter into `IS NULL` and show rows nobody
/// owns.
pub(crate) fn substitute(
    template: &Value,
    claims: &Map<String, Value>,
) -> Result<Value, MissingClaim> {
    Ok(match template {
        Value::String(s) => match s.strip_prefix(CLAIM_PREFIX) {
            Some(name) => match claim(claims, name) {
                Some(v) if !v.is_null() => v.clone(),
                _ => {
                    return Err(MissingClaim {
                        name: name.to_owned(),
                    })
                }
            },
            None => template.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| substitute(item, claims))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, claims)?)))
                .collect::<Result<_, MissingClaim>>()?,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => template.clone(),
    })
}

/// A claim by name, or by a dotted path into nested claims (`$claims.app.org_id`) when no
/// claim has the whole name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let (first, rest) = name.split_once('.')?;
    let mut v = claims.get(first)?;
    for part in rest.split('.') {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

/// Checks that every placeholder of a filter names a claim.
pub(crate) fn check_placeholders(v: &Value) -> Result<(), BadPlaceholder> {
    match v {
        // Only what looks meant as a placeholder is checked; other `$` text is a literal.
        Value::String(s) if s.starts_with("$claim") => match s.strip_prefix(CLAIM_PREFIX) {
            Some(name) if !name.is_empty() => Ok(()),
            _ => Err(BadPlaceholder { text: s.clone() }),
        },
        Value::Array(items) => items.iter().try_for_each(check_placeholders),
        Value::Object(map) => map.values().try_for_each(check_placeholders),
        _ => Ok(()),
    }
}
