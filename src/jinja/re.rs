//! `modules.re`: Python's `re` module for the macros of dbt packages (dbt_utils' `slugify`
//! uses `re.sub`; dbt-project-evaluator searches with look-behinds), on `fancy-regex`: the
//! `regex` crate's syntax (Python's for nearly everything) plus look-around and
//! back-references. Arguments are Python's, positional or by keyword (`re.search(p, s,
//! re.IGNORECASE)`, `re.sub(p, r, s, count=1, flags=re.I)`).

use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use super::python;

/// `re.IGNORECASE`, `re.MULTILINE`, `re.DOTALL`, `re.VERBOSE`: Python's values.
const FLAGS: [(&str, i64); 8] = [
    ("I", 2),
    ("IGNORECASE", 2),
    ("M", 8),
    ("MULTILINE", 8),
    ("S", 16),
    ("DOTALL", 16),
    ("X", 64),
    ("VERBOSE", 64),
];

#[derive(Debug)]
pub struct Module;

#[derive(Debug)]
struct Pattern {
    source: String,
    flags: i64,
}

#[derive(Debug)]
struct Match {
    groups: Vec<Option<String>>,
    span: (usize, usize),
}

fn compile(pattern: &str, flags: i64, anchor: &str) -> Result<fancy_regex::Regex, Error> {
    let mut prefix = String::new();
    for (bit, c) in [(2, 'i'), (8, 'm'), (16, 's'), (64, 'x')] {
        if flags & bit != 0 {
            prefix.push(c);
        }
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("(?{prefix})")
    };
    let full = match anchor {
        "match" => format!("{prefix}\\A(?:{pattern})"),
        "fullmatch" => format!("{prefix}\\A(?:{pattern})\\z"),
        _ => format!("{prefix}{pattern}"),
    };
    fancy_regex::Regex::new(&full).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("modules.re: cannot use the pattern {pattern:?}: {e}"),
        )
    })
}

/// A failed match (a backtracking limit reached) as a template error.
fn failed(e: fancy_regex::Error) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("modules.re: {e}"))
}

/// Python's optional `flags` argument: positional at `flags_at` or by keyword.
fn flags_of(flags: i64, positional: Option<i64>, kwargs: &Kwargs) -> Result<i64, Error> {
    Ok(kwargs
        .get::<Option<i64>>("flags")?
        .or(positional)
        .unwrap_or(flags))
}

/// Python's replacement syntax (`\1`, `\g<name>`) in the regex crate's (`${1}`, `${name}`).
fn replacement(repl: &str) -> String {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        n.push(d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    let name: String = chars
                        .by_ref()
                        .skip_while(|c| *c == '<')
                        .take_while(|c| *c != '>')
                        .collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// `re.<method>(pattern, ...)` or `compiled.<method>(...)`.
fn call(pattern: &str, flags: i64, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "sub" => {
            let (repl, string, count, pos_flags, kwargs): (
                String,
                String,
                Option<usize>,
                Option<i64>,
                Kwargs,
            ) = from_args(args)?;
            let count = kwargs.get::<Option<usize>>("count")?.or(count).unwrap_or(0);
            let re = compile(pattern, flags_of(flags, pos_flags, &kwargs)?, "")?;
            kwargs.assert_all_used()?;
            Ok(Value::from(
                re.try_replacen(&string, count, replacement(&repl).as_str())
                    .map_err(failed)?
                    .into_owned(),
            ))
        }
        "match" | "search" | "fullmatch" => {
            let (string, pos_flags, kwargs): (String, Option<i64>, Kwargs) = from_args(args)?;
            let re = compile(pattern, flags_of(flags, pos_flags, &kwargs)?, method)?;
            kwargs.assert_all_used()?;
            Ok(match re.captures(&string).map_err(failed)? {
                Some(c) => {
                    let whole = c.get(0).expect("group 0");
                    Value::from_object(Match {
                        groups: c
                            .iter()
                            .map(|g| g.map(|m| m.as_str().to_string()))
                            .collect(),
                        span: (whole.start(), whole.end()),
                    })
                }
                None => Value::from(()),
            })
        }
        "findall" => {
            let (string, pos_flags, kwargs): (String, Option<i64>, Kwargs) = from_args(args)?;
            let re = compile(pattern, flags_of(flags, pos_flags, &kwargs)?, "")?;
            kwargs.assert_all_used()?;
            let mut found = Vec::new();
            for c in re.captures_iter(&string) {
                let c = c.map_err(failed)?;
                let text = |i: usize| Value::from(c.get(i).map_or("", |m| m.as_str()));
                found.push(match c.len() {
                    1 => text(0),
                    2 => text(1),
                    n => python::list((1..n).map(text).collect()),
                });
            }
            Ok(python::list(found))
        }
        "split" => {
            let (string, maxsplit, pos_flags, kwargs): (
                String,
                Option<usize>,
                Option<i64>,
                Kwargs,
            ) = from_args(args)?;
            let maxsplit = kwargs
                .get::<Option<usize>>("maxsplit")?
                .or(maxsplit)
                .unwrap_or(0);
            let re = compile(pattern, flags_of(flags, pos_flags, &kwargs)?, "")?;
            kwargs.assert_all_used()?;
            let parts: Vec<Value> = if maxsplit == 0 {
                re.split(&string)
                    .map(|p| p.map(Value::from))
                    .collect::<Result<_, _>>()
            } else {
                re.splitn(&string, maxsplit + 1)
                    .map(|p| p.map(Value::from))
                    .collect::<Result<_, _>>()
            }
            .map_err(failed)?;
            Ok(python::list(parts))
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

impl Object for Module {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        FLAGS
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| Value::from(*v))
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "compile" => {
                let (source, flags): (String, Option<i64>) = from_args(args)?;
                let flags = flags.unwrap_or(0);
                compile(&source, flags, "")?;
                Ok(Value::from_object(Pattern { source, flags }))
            }
            "escape" => {
                let (s,): (String,) = from_args(args)?;
                Ok(Value::from(regex::escape(&s)))
            }
            _ => {
                let (pattern, rest) = args
                    .split_first()
                    .ok_or_else(|| Error::new(ErrorKind::MissingArgument, "a pattern"))?;
                let pattern = pattern.as_str().ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "the pattern must be a string")
                })?;
                call(pattern, 0, method, rest)
            }
        }
    }
}

impl Object for Pattern {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "pattern" => Some(Value::from(self.source.clone())),
            "flags" => Some(Value::from(self.flags)),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        call(&self.source, self.flags, method, args)
    }
}

impl Object for Match {
    // A match is truthy, as Python's (`{% if re.search(...) %}`).
    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.groups.first().cloned().flatten().unwrap_or_default();
        write!(
            f,
            "<re.Match object; span=({}, {}), match='{whole}'>",
            self.span.0, self.span.1
        )
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let group = |i: usize| -> Value {
            self.groups
                .get(i)
                .cloned()
                .flatten()
                .map(Value::from)
                .unwrap_or(Value::from(()))
        };
        match method {
            "group" => {
                let (i,): (Option<usize>,) = from_args(args)?;
                Ok(group(i.unwrap_or(0)))
            }
            "groups" => Ok(python::list((1..self.groups.len()).map(group).collect())),
            "start" => Ok(Value::from(self.span.0)),
            "end" => Ok(Value::from(self.span.1)),
            "span" => Ok(Value::from(vec![
                Value::from(self.span.0),
                Value::from(self.span.1),
            ])),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{call, replacement};
    use minijinja::value::Value;

    #[test]
    fn python_replacements_become_the_regex_crates() {
        assert_eq!(replacement(r"_\1_\g<name>$"), "_${1}_${name}$$");
    }

    #[test]
    fn look_around_back_references_and_positional_flags() {
        let s = |v: &str| Value::from(v);
        let found = call(
            r"(?<!distinct\s)(from)\s+(\w+)",
            0,
            "search",
            &[s("select distinct from_x from T")],
        )
        .unwrap();
        assert!(found.is_true());
        assert_eq!(
            found.to_string(),
            "<re.Match object; span=(23, 29), match='from T'>"
        );
        let sub = call(r"(\w)\1", 0, "sub", &[s("-"), s("aabcc")]).unwrap();
        assert_eq!(sub.as_str(), Some("-b-"));
        let hit = call("ABC", 0, "search", &[s("xabc"), Value::from(2)]).unwrap();
        assert!(!hit.is_none());
        let parts = call(",", 0, "split", &[s("a,b,c"), Value::from(1)]).unwrap();
        assert_eq!(parts.to_string(), "['a', 'b,c']");
    }
}
