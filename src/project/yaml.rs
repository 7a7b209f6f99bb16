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
    // Large property files are read straight into JSON; what that path does not take is read
    // again through serde_yaml's Value, which reports it or converts it.
    if let Ok(Direct(value)) = serde_yaml::from_str::<Direct>(source) {
        return Ok(value);
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

/// JSON built from the YAML parser's events, without a `serde_yaml::Value` in between (half the
/// allocations). It refuses what [`to_json`] converts or reports — duplicate keys (an error),
/// tags, keys that are not strings, integers, booleans or null — so that path handles them.
struct Direct(Json);

impl<'de> serde::Deserialize<'de> for Direct {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DirectVisitor).map(Direct)
    }
}

struct DirectVisitor;

impl<'de> serde::de::Visitor<'de> for DirectVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
        Ok(Json::from(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
        Ok(Json::from(u))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(DirectVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(Direct(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(DirectKey(k)) = map.next_key()? {
            let Direct(v) = map.next_value()?;
            if out.insert(k, v).is_some() {
                return Err(serde::de::Error::custom("duplicate key"));
            }
        }
        Ok(Json::Object(out))
    }
}

/// A mapping key as [`to_json`] writes it.
struct DirectKey(String);

impl<'de> serde::Deserialize<'de> for DirectKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, integer, boolean or null key")
            }
            fn visit_str<E>(self, s: &str) -> Result<String, E> {
                Ok(s.to_string())
            }
            fn visit_string<E>(self, s: String) -> Result<String, E> {
                Ok(s)
            }
            fn visit_bool<E>(self, b: bool) -> Result<String, E> {
                Ok(b.to_string())
            }
            fn visit_i64<E>(self, i: i64) -> Result<String, E> {
                Ok(i.to_string())
            }
            fn visit_u64<E>(self, u: u64) -> Result<String, E> {
                Ok(u.to_string())
            }
            fn visit_unit<E>(self) -> Result<String, E> {
                Ok("null".into())
            }
        }
        d.deserialize_any(KeyVisitor).map(DirectKey)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct path gives what the Value path gives, and leaves it what it cannot take.
    #[test]
    fn the_direct_path_agrees_with_the_value_path() {
        let text = "version: 2\nmodels:\n  - name: a\n    description: \"x: y\"\n    config: {n: 1, f: 1.5, big: 18446744073709551615, on: true, none: ~}\n    columns:\n      - name: id\n        data_tests: [unique, {accepted_values: {values: [1, 'b']}}]\n1: one\ntrue: yes\n~: null\n";
        let Direct(direct) = serde_yaml::from_str(text).unwrap();
        let slow = to_json(serde_yaml::from_str(text).unwrap()).unwrap();
        assert_eq!(direct, slow);
        for refused in ["a: 1\na: 2\n", "a: !tag 1\n", "1.5: x\n", "[1]: x\n"] {
            assert!(
                serde_yaml::from_str::<Direct>(refused).is_err(),
                "{refused}"
            );
        }
        let source: Arc<str> = Arc::from("a: !tag 1\n");
        assert_eq!(
            parse("x.yml", &source).unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
