//! dbt's static parser: a model whose only Jinja is `ref()`, `source()` and `config()` calls
//! with literal arguments gives, at parse time, what a render would record, read straight from
//! the text. Most models of a large project are like that, and a render is the main cost of
//! parsing them. Anything else (a `{% %}` tag, a variable, a filter, an escape in a string)
//! returns `None`, and the caller renders the template as before; so do templates minijinja
//! would reject, so their errors stay the renderer's.

use serde_json::Value as Json;

use super::{Capture, RefCall};
use crate::config::Config;

/// What rendering `source` in the parse phase would capture, if its Jinja is simple enough to
/// read without rendering.
pub(crate) fn capture(source: &str) -> Option<Capture> {
    let mut out = Capture::default();
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        rest = match after.as_bytes().first() {
            Some(b'{') => {
                let end = after.find("}}")?;
                call(strip_controls(&after[1..end]), &mut out)?;
                &after[end + 2..]
            }
            Some(b'#') => &after[after.find("#}")? + 2..],
            Some(b'%') => return None,
            _ => after,
        };
    }
    Some(out)
}

/// An expression's text without the whitespace controls (`{{-`, `-}}`, `{{+`).
fn strip_controls(expr: &str) -> &str {
    let expr = expr.strip_prefix(['-', '+']).unwrap_or(expr);
    expr.strip_suffix('-').unwrap_or(expr)
}

/// One `{{ f(args) }}` of `ref`, `source` or `config`, recorded into `out`.
fn call(expr: &str, out: &mut Capture) -> Option<()> {
    let mut p = Parser {
        s: expr.as_bytes(),
        i: 0,
    };
    let name = p.ident()?;
    p.expect(b'(')?;
    let (positional, keywords) = p.args()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return None;
    }
    match name {
        "ref" => {
            let names: Vec<String> = positional
                .into_iter()
                .map(|v| match v {
                    Json::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            let version = match keywords.as_slice() {
                [] => None,
                [(k, v)] if k == "version" || k == "v" => match v {
                    Json::Null => None,
                    Json::String(s) => Some(s.clone()),
                    Json::Number(n) if n.is_i64() => Some(n.to_string()),
                    _ => return None,
                },
                _ => return None,
            };
            let (package, name) = match <[String; 1]>::try_from(names) {
                Ok([name]) => (None, name),
                Err(names) => {
                    let [package, name] = <[String; 2]>::try_from(names).ok()?;
                    (Some(package), name)
                }
            };
            out.refs.push(RefCall {
                name,
                package,
                version,
            });
        }
        "source" => match (positional.as_slice(), keywords.is_empty()) {
            ([Json::String(s), Json::String(t)], true) => {
                out.sources.push((s.clone(), t.clone()));
            }
            _ => return None,
        },
        "config" => {
            let mut cfg = Config::new();
            for v in positional {
                cfg.extend(match v {
                    Json::Object(m) => m,
                    _ => return None,
                });
            }
            for (k, v) in keywords {
                if cfg.insert(k, v).is_some() {
                    return None;
                }
            }
            crate::config::merge(&mut out.config, &cfg);
        }
        _ => return None,
    }
    Some(())
}

type Args = (Vec<Json>, Vec<(String, Json)>);

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.skip_ws();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            .then_some(word)
    }

    /// `a, b, key=c)`: positional arguments before keyword ones, each key once.
    fn args(&mut self) -> Option<Args> {
        let (mut positional, mut keywords) = (Vec::new(), Vec::<(String, Json)>::new());
        loop {
            if self.peek()? == b')' {
                self.i += 1;
                return Some((positional, keywords));
            }
            let save = self.i;
            let keyword = self
                .ident()
                .filter(|_| self.peek() == Some(b'=') && self.s.get(self.i + 1) != Some(&b'='));
            match keyword {
                Some(k) => {
                    self.i += 1;
                    if keywords.iter().any(|(seen, _)| seen == k) {
                        return None;
                    }
                    keywords.push((k.to_string(), self.literal()?));
                }
                None if keywords.is_empty() => {
                    self.i = save;
                    positional.push(self.literal()?);
                }
                None => return None,
            }
            match self.peek()? {
                b',' => self.i += 1,
                b')' => {}
                _ => return None,
            }
        }
    }

    /// A string, number, boolean, none, list or dict of such.
    fn literal(&mut self) -> Option<Json> {
        match self.peek()? {
            q @ (b'\'' | b'"') => {
                let start = self.i + 1;
                let len = self.s[start..].iter().position(|c| *c == q)?;
                let text = &self.s[start..start + len];
                if text.contains(&b'\\') {
                    return None;
                }
                self.i = start + len + 1;
                // Jinja joins adjacent strings (`'a' 'b'`): rendered, not read here.
                if matches!(self.peek(), Some(b'\'' | b'"')) {
                    return None;
                }
                Some(Json::String(std::str::from_utf8(text).ok()?.to_string()))
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek()? == b']' {
                        self.i += 1;
                        return Some(Json::Array(items));
                    }
                    items.push(self.literal()?);
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {}
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut map = serde_json::Map::new();
                loop {
                    if self.peek()? == b'}' {
                        self.i += 1;
                        return Some(Json::Object(map));
                    }
                    let Json::String(key) = self.literal()? else {
                        return None;
                    };
                    self.expect(b':')?;
                    let value = self.literal()?;
                    map.insert(key, value);
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {}
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => match self.ident()? {
                "true" | "True" => Some(Json::Bool(true)),
                "false" | "False" => Some(Json::Bool(false)),
                "none" | "None" => Some(Json::Null),
                _ => None,
            },
        }
    }

    /// `12`, `-3`, `1.5`: what minijinja reads as an integer or a float.
    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.i;
            while p.s.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > from
        };
        if !digits(self) {
            return None;
        }
        let float = self.s.get(self.i) == Some(&b'.');
        if float {
            self.i += 1;
            if !digits(self) {
                return None;
            }
        }
        if self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            return None;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if float {
            serde_json::Number::from_f64(text.parse().ok()?).map(Json::Number)
        } else {
            text.parse::<i64>().ok().map(Json::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Templates of text and the calls this reader takes, some with what it must leave alone.
    fn template() -> impl Strategy<Value = String> {
        let name = "[a-z_][a-z0-9_]{0,6}";
        let literal = prop_oneof![
            "'[a-z {}%#-]{0,8}'",
            "\"[a-z ']{0,8}\"",
            "-?[0-9]{1,4}",
            "-?[0-9]{1,3}\\.[0-9]{1,3}",
            Just("True".to_string()),
            Just("false".to_string()),
            Just("none".to_string()),
            Just("['a', 1, [2.5]]".to_string()),
            Just("{'k': 'v', \"n\": {'m': [true]}}".to_string()),
        ];
        let call = prop_oneof![
            name.prop_map(|n| format!("ref('{n}')")),
            (name, name).prop_map(|(p, n)| format!("ref(\"{p}\", '{n}')")),
            (name, 0..4u8).prop_map(|(n, v)| format!("ref('{n}', v={v})")),
            (name, name).prop_map(|(s, t)| format!("source('{s}', '{t}')")),
            proptest::collection::vec((name, literal.clone()), 0..4).prop_map(|kv| {
                let args: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("config({})", args.join(", "))
            }),
            literal.prop_map(|l| format!("config({{'materialized': {l}}})")),
            Just("var('x', 1)".to_string()),
            Just("ref('a') ~ ''".to_string()),
        ];
        let piece = prop_oneof![
            "[a-z *(),.'\n]{0,12}",
            (call, "[-+]?", "-?").prop_map(|(c, l, r)| format!("{{{{{l} {c} {r}}}}}")),
            Just("{# {{ ref('hidden') }} #}".to_string()),
            Just("{% if true %}x{% endif %}".to_string()),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|p| p.concat())
    }

    proptest! {
        /// What is read without a render is what the render records.
        #[test]
        fn reads_what_a_render_records(text in template()) {
            let Some(read) = capture(&text) else { return Ok(()) };
            let env = crate::jinja::test_env(vec![]);
            let node = crate::jinja::test_node("model", "m", &text);
            let (_, rendered) = env
                .render_node(node, crate::jinja::Phase::Parse)
                .map_err(|d| TestCaseError::fail(format!("{text}: {d:?}")))?;
            prop_assert_eq!(&read.refs, &rendered.refs, "{}", text);
            prop_assert_eq!(&read.sources, &rendered.sources, "{}", text);
            prop_assert_eq!(&read.config, &rendered.config, "{}", text);
            prop_assert!(rendered.macros.is_empty() && rendered.logs.is_empty(), "{}", text);
        }
    }

    #[test]
    fn reads_refs_sources_and_configs() {
        let c = capture(
            "{{ config(materialized='table', tags=['a', \"b\"], meta={'n': 1, 'x': -2.5}, enabled=True) }}\n\
             {# {{ ref('commented') }} #}\n\
             select * from {{- ref('orders') -}} o join {{ ref('pkg', 'items', v=2) }}\n\
             join {{ source('raw', 'payments') }} where a = '{' and b = '}'",
        )
        .unwrap();
        assert_eq!(
            c.refs,
            vec![
                RefCall {
                    name: "orders".into(),
                    package: None,
                    version: None
                },
                RefCall {
                    name: "items".into(),
                    package: Some("pkg".into()),
                    version: Some("2".into())
                },
            ]
        );
        assert_eq!(c.sources, vec![("raw".into(), "payments".into())]);
        assert_eq!(
            c.config.to_json(),
            json!({"materialized": "table", "tags": ["a", "b"], "meta": {"n": 1, "x": -2.5}, "enabled": true})
        );
    }

    #[test]
    fn leaves_anything_else_to_the_renderer() {
        for text in [
            "{% if x %}{{ ref('a') }}{% endif %}",
            "{{ ref('a') | upper }}",
            "{{ ref(name) }}",
            "{{ ref('a', 'b', 'c') }}",
            "{{ ref('a', other=1) }}",
            "{{ source('a') }}",
            "{{ config(alias='x' ~ 'y') }}",
            "{{ config(alias='it\\'s') }}",
            "{{ config(alias='a' 'b') }}",
            "{{ config(a=1, a=2) }}",
            "{{ var('x') }}",
            "{{ this }}",
            "{{ ref('a') ",
            "{# open comment",
            "{{ config(n=1e3) }}",
        ] {
            assert!(capture(text).is_none(), "{text}");
        }
    }
}
