//! YAML reading with positions: syntax errors become diagnostics at the failing line, and
//! `{{ env_var(...) }}` / `{{ var(...) }}` inside string values is rendered as dbt does.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Location};

mod block;

/// Parses YAML text into JSON values (mapping keys become strings). An empty file is `null`.
pub fn parse(path: &str, source: &Arc<str>) -> Result<Json, Diagnostic> {
    if source.trim().is_empty() {
        return Ok(Json::Null);
    }
    if let Some(value) = pieces::parse(source) {
        return Ok(value);
    }
    if let Some(value) = block::parse(source) {
        return Ok(value);
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

/// A large property file read on every core: its top-level lists (`models:`, `sources:`...) cut
/// into pieces of whole items, each piece parsed alone, the values put back together. The YAML
/// parser reads some 10-20 MB/s, so a project's 1 MB schema file was a tenth of its parse on
/// one core. Only a plain layout is cut (top-level `key:` lines, block lists, no aliases,
/// directives, tabs or document markers); a file that is not, or a piece that does not parse
/// alone, is read whole, so errors and their lines are the whole file's.
mod pieces {
    use super::{Direct, Json};

    /// Smaller files are read whole: splitting them saves nothing.
    const SPLIT_ABOVE: usize = 64 * 1024;
    const PIECE: usize = 32 * 1024;

    enum Section<'a> {
        /// Written as the rest of the file would be (a scalar or a mapping): read together.
        Other(&'a str),
        /// A block list: its items, in pieces.
        List(Vec<&'a str>),
    }

    pub fn parse(source: &str) -> Option<Json> {
        if source.len() < SPLIT_ABOVE
            || source.contains(['\r', '\t', '\u{feff}'])
            || has_alias(source)
        {
            return None;
        }
        let sections = sections(source)?;
        let mut texts: Vec<&str> = Vec::new();
        let mut other = String::new();
        for (_, section) in &sections {
            match section {
                Section::Other(text) => other.push_str(text),
                Section::List(pieces) => texts.extend(pieces),
            }
        }
        texts.push(&other);
        let mut values = crate::parallel::map(&texts, 1, |t| {
            super::block::parse(t)
                .or_else(|| serde_yaml::from_str::<Direct>(t).ok().map(|Direct(v)| v))
        })
        .into_iter()
        .collect::<Option<Vec<Json>>>()?;
        let mut other = match values.pop()? {
            Json::Object(m) => m,
            Json::Null => serde_json::Map::new(),
            _ => return None,
        };
        let mut values = values.into_iter();
        let mut out = serde_json::Map::new();
        for (key, section) in sections {
            let value = match section {
                Section::Other(_) => other.remove(key)?,
                Section::List(pieces) => {
                    let mut items = Vec::new();
                    for _ in pieces {
                        match values.next()? {
                            Json::Array(more) => items.extend(more),
                            _ => return None,
                        }
                    }
                    Json::Array(items)
                }
            };
            if out.insert(key.to_string(), value).is_some() {
                return None;
            }
        }
        Some(Json::Object(out))
    }

    /// The file's top-level keys with their text, in order.
    fn sections(source: &str) -> Option<Vec<(&str, Section<'_>)>> {
        let mut starts = Vec::new();
        let mut offset = 0;
        for line in source.split_inclusive('\n') {
            let content = indented(line).1.is_some();
            if content && !line.starts_with([' ', '-']) {
                let (key, rest) = line.split_once(':')?;
                let plain = !key.is_empty()
                    && key.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
                    && !matches!(key, "null" | "true" | "false");
                if !plain || !(rest.starts_with([' ', '\n']) || rest.is_empty()) {
                    return None;
                }
                starts.push((offset, key));
            }
            if starts.is_empty() && content {
                return None;
            }
            offset += line.len();
        }
        let mut out = Vec::new();
        for (i, (start, key)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(source.len(), |(e, _)| *e);
            let text = &source[*start..end];
            let (head, body) = text.split_at(text.find('\n').map_or(text.len(), |n| n + 1));
            let inline = head[key.len() + 1..].trim();
            let section = if inline.is_empty() || inline.starts_with('#') {
                list_pieces(body).map_or(Section::Other(text), Section::List)
            } else {
                Section::Other(text)
            };
            out.push((*key, section));
        }
        Some(out)
    }

    /// A line's indent and what follows it (`None` for a blank or comment-only line).
    fn indented(line: &str) -> (usize, Option<&str>) {
        let rest = line.trim_start_matches(' ');
        let depth = line.len() - rest.len();
        let content = !matches!(rest.as_bytes().first(), None | Some(b'\n' | b'#'));
        (depth, content.then_some(rest))
    }

    /// A block list's text cut before items (`- ` at the list's indent) into pieces of about
    /// [`PIECE`] bytes; `None` if `body` is not a block list.
    fn list_pieces(body: &str) -> Option<Vec<&str>> {
        let is_item = |rest: &str| rest.starts_with("- ") || rest.starts_with("-\n");
        let (indent, first) = body
            .split_inclusive('\n')
            .map(indented)
            .find(|(_, rest)| rest.is_some())?;
        if !first.is_some_and(is_item) {
            return None;
        }
        let mut pieces = Vec::new();
        let (mut start, mut offset) = (0, 0);
        for line in body.split_inclusive('\n') {
            if let (depth, Some(rest)) = indented(line) {
                if depth < indent {
                    return None;
                }
                if depth == indent && is_item(rest) && offset - start >= PIECE {
                    pieces.push(&body[start..offset]);
                    start = offset;
                }
            }
            offset += line.len();
        }
        pieces.push(&body[start..]);
        Some(pieces)
    }

    /// Whether the text may hold an alias (`*name`), which could point into another piece.
    fn has_alias(source: &str) -> bool {
        let b = source.as_bytes();
        source.match_indices('*').any(|(i, _)| {
            (i == 0 || matches!(b[i - 1], b' ' | b'\n' | b'[' | b'{' | b',' | b':'))
                && b.get(i + 1).is_some_and(|n| {
                    !n.is_ascii_whitespace() && !matches!(n, b',' | b']' | b'}' | b'*' | b')')
                })
        })
    }

    #[cfg(test)]
    mod tests {
        use std::sync::Arc;

        /// A file cut into pieces reads as it does whole; a layout that cannot be cut is read
        /// whole.
        #[test]
        fn pieces_read_as_the_whole_file() {
            let mut text = String::from("version: 2\n\nmodels:\n");
            for i in 0..2000 {
                text.push_str(&format!(
                    "  # model {i}\n  - name: m{i}\n    description: |\n      line one\n\n      - not an item\n    columns:\n      - name: id\n        data_tests: [unique, {{accepted_values: {{values: [1, 'b']}}}}]\n"
                ));
            }
            text.push_str("sources:\n- name: raw\n  tables:\n  - name: t\nseeds: {}\n");
            let whole = super::super::to_json(serde_yaml::from_str(&text).unwrap()).unwrap();
            let cut = super::parse(&text).expect("cut into pieces");
            assert_eq!(cut, whole);
            assert_eq!(cut["models"].as_array().unwrap().len(), 2000);
            let source: Arc<str> = text.clone().into();
            assert_eq!(super::super::parse("x.yml", &source).unwrap(), whole);
            for refused in [
                format!("{text}x: &a 1\ny: *a\n"),
                format!("{text}---\nz: 1\n"),
                format!("{text}\tz: 1\n"),
                format!("{text}models: []\n"),
                format!("\"quoted\": 1\n{text}"),
            ] {
                assert!(super::parse(&refused).is_none());
            }
        }
    }
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
