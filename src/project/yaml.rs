//! YAML reading with positions: syntax errors become diagnostics at the failing line, and
//! `{{ env_var(...) }}` / `{{ var(...) }}` inside string values is rendered as dbt does.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Location};

/// Parses YAML text into JSON values (mapping keys become strings). An empty file is `null`.
pub fn parse(path: &str, source: &Arc<str>) -> Result<Json, Diagnostic> {
    if source.trim().is_empty() {
        return Ok(Json::Null);
    }
    let value: serde_yaml::Value = serde_yaml::from_str(source).map_err(|e| {
        let mut d = Diagnostic::error("yaml", format!("invalid YAML in {path}"))
            .label(yaml_reason(&e))
            .hint("fix the YAML syntax at the marked line (indentation, a missing ':' or an unclosed quote are the usual causes)");
        if let Some(loc) = e.location() {
            d = d.at(Location::at_line_col(path, source.clone(), loc.line(), loc.column()));
        } else {
            d = d.at(Location::file(path, source.clone()));
        }
        d
    })?;
    to_json(value).map_err(|msg| {
        Diagnostic::error("yaml", format!("unsupported YAML in {path}: {msg}"))
            .at(Location::file(path, source.clone()))
    })
}

fn yaml_reason(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    // serde_yaml appends " at line X column Y"; the caret already shows where.
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn to_json(v: serde_yaml::Value) -> Result<Json, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Json::Null,
        Y::Bool(b) => Json::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(Json::Number)
                    .unwrap_or(Json::Null)
            }
        }
        Y::String(s) => Json::String(s),
        Y::Sequence(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".into(),
                    other => return Err(format!("mapping key {other:?} is not a scalar")),
                };
                out.insert(key, to_json(v)?);
            }
            Json::Object(out)
        }
        Y::Tagged(t) => to_json(t.value)?,
    })
}

/// A string value from a mapping, if present and a string.
pub fn str_of<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

/// A list of strings from a mapping: accepts a single string too.
pub fn strings_of(v: &Json, key: &str) -> Option<Vec<String>> {
    match v.get(key)? {
        Json::String(s) => Some(vec![s.clone()]),
        Json::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}
