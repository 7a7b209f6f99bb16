//! `modules.re`: Python's `re` module for the macros of dbt packages (dbt_utils' `slugify`
//! uses `re.sub`), on the `regex` crate. Its syntax is Python's for everything but look-around
//! and back-references, which it refuses with an error naming the pattern.

use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Value, from_args};
use minijinja::{Error, ErrorKind, State};

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

fn compile(pattern: &str, flags: i64, anchor: &str) -> Result<regex::Regex, Error> {
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
    regex::Regex::new(&full).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("modules.re: cannot use the pattern {pattern:?}: {e}"),
        )
    })
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
            let (repl, string, count, kwargs): (String, String, Option<usize>, Kwargs) =
                from_args(args)?;
            let count = kwargs.get::<Option<usize>>("count")?.or(count).unwrap_or(0);
            let flags = kwargs.get::<Option<i64>>("flags")?.unwrap_or(flags);
            let re = compile(pattern, flags, "")?;
            Ok(Value::from(
                re.replacen(&string, count, replacement(&repl).as_str())
                    .into_owned(),
            ))
        }
        "match" | "search" | "fullmatch" => {
            let (string, kwargs): (String, Kwargs) = from_args(args)?;
            let flags = kwargs.get::<Option<i64>>("flags")?.unwrap_or(flags);
            let re = compile(pattern, flags, method)?;
            Ok(match re.captures(&string) {
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
            let (string, kwargs): (String, Kwargs) = from_args(args)?;
            let flags = kwargs.get::<Option<i64>>("flags")?.unwrap_or(flags);
            let re = compile(pattern, flags, "")?;
            let found: Vec<Value> = re
                .captures_iter(&string)
                .map(|c| match c.len() {
                    1 => Value::from(c[0].to_string()),
                    2 => Value::from(c.get(1).map_or("", |m| m.as_str()).to_string()),
                    _ => Value::from(
                        c.iter()
                            .skip(1)
                            .map(|g| Value::from(g.map_or("", |m| m.as_str()).to_string()))
                            .collect::<Vec<_>>(),
                    ),
                })
                .collect();
            Ok(Value::from(found))
        }
        "split" => {
            let (string, kwargs): (String, Kwargs) = from_args(args)?;
            let flags = kwargs.get::<Option<i64>>("flags")?.unwrap_or(flags);
            let re = compile(pattern, flags, "")?;
            Ok(Value::from(
                re.split(&string)
                    .map(|s| Value::from(s.to_string()))
                    .collect::<Vec<_>>(),
            ))
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
            "groups" => Ok(Value::from(
                (1..self.groups.len()).map(group).collect::<Vec<_>>(),
            )),
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
    use super::replacement;

    #[test]
    fn python_replacements_become_the_regex_crates() {
        assert_eq!(replacement(r"_\1_\g<name>$"), "_${1}_${name}$$");
    }
}
