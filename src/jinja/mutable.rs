//! Python's mutable lists and dicts for Jinja, which dbt packages rely on
//! (`{% set fields = [] %}{% do fields.append(x) %}`, `{% do d.update({k: v}) %}` — dbt_utils
//! does this in a dozen macros). minijinja's list and map literals are immutable values, so a
//! `set` whose value is a literal is rewritten, when a template is loaded, into a call that
//! makes a mutable copy ([`rewrite`]): `{% set x = [] %}` → `{% set x = __rsdbt_list([]) %}`.
//! Containers put into a mutable one (`d.update({k: []})`) are made mutable too, so
//! `d[k].append(...)` works as in Python.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, ErrorKind, State};

/// The function the rewritten templates call for a list literal.
pub const LIST_FN: &str = "__rsdbt_list";
/// The function the rewritten templates call for a dict literal.
pub const DICT_FN: &str = "__rsdbt_dict";

#[derive(Debug, Default)]
pub struct List(Mutex<Vec<Value>>);

#[derive(Debug, Default)]
pub struct Dict(Mutex<Vec<(Value, Value)>>);

fn poisoned() -> Error {
    Error::new(ErrorKind::InvalidOperation, "a list or dict was poisoned")
}

/// `v` as something a mutable container holds: a list or dict literal's value becomes a
/// mutable copy (one level); anything else — mutable containers, and objects that are
/// sequences or mappings (relations, columns, tables) — stays itself.
fn mutable(v: Value) -> Value {
    if v.downcast_object_ref::<Vec<Value>>().is_some() {
        list(&v).unwrap_or(v)
    } else if v
        .downcast_object_ref::<std::collections::BTreeMap<Value, Value>>()
        .is_some()
    {
        dict(&v).unwrap_or(v)
    } else {
        v
    }
}

/// A mutable copy of the items of `v`.
pub fn list(v: &Value) -> Result<Value, Error> {
    let items: Vec<Value> = v.try_iter()?.map(mutable).collect();
    Ok(Value::from_object(List(Mutex::new(items))))
}

/// A mutable copy of the pairs of map `v`.
pub fn dict(v: &Value) -> Result<Value, Error> {
    let mut pairs = Vec::new();
    for key in v.try_iter()? {
        let value = v.get_item(&key)?;
        pairs.push((key, mutable(value)));
    }
    Ok(Value::from_object(Dict(Mutex::new(pairs))))
}

impl Object for List {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let items = self.0.lock().ok()?;
        let i = key.as_i64()?;
        let i = if i < 0 { items.len() as i64 + i } else { i };
        items.get(usize::try_from(i).ok()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.0.lock() {
            Ok(items) => Enumerator::Values(items.clone()),
            Err(_) => Enumerator::Empty,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut items = self.0.lock().map_err(|_| poisoned())?;
        let none = Value::from(());
        match method {
            "append" => {
                let (x,): (Value,) = from_args(args)?;
                items.push(mutable(x));
                Ok(none)
            }
            "extend" => {
                let (xs,): (Value,) = from_args(args)?;
                items.extend(xs.try_iter()?.map(mutable));
                Ok(none)
            }
            "insert" => {
                let (i, x): (i64, Value) = from_args(args)?;
                let len = items.len() as i64;
                let i = if i < 0 { (len + i).max(0) } else { i.min(len) };
                items.insert(i as usize, mutable(x));
                Ok(none)
            }
            "pop" => {
                let (i,): (Option<i64>,) = from_args(args)?;
                let len = items.len() as i64;
                let i = i.map_or(len - 1, |i| if i < 0 { len + i } else { i });
                if i < 0 || i >= len {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "pop index out of range",
                    ));
                }
                Ok(items.remove(i as usize))
            }
            "remove" => {
                let (x,): (Value,) = from_args(args)?;
                let at = items.iter().position(|v| *v == x).ok_or_else(|| {
                    Error::new(ErrorKind::InvalidOperation, "list.remove(x): x not in list")
                })?;
                items.remove(at);
                Ok(none)
            }
            "index" => {
                let (x,): (Value,) = from_args(args)?;
                items
                    .iter()
                    .position(|v| *v == x)
                    .map(Value::from)
                    .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "x not in list"))
            }
            "count" => {
                let (x,): (Value,) = from_args(args)?;
                Ok(Value::from(items.iter().filter(|v| **v == x).count()))
            }
            "reverse" => {
                items.reverse();
                Ok(none)
            }
            "clear" => {
                items.clear();
                Ok(none)
            }
            "copy" => Ok(Value::from_object(List(Mutex::new(items.clone())))),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

impl Dict {
    fn set(pairs: &mut Vec<(Value, Value)>, key: Value, value: Value) {
        let value = mutable(value);
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => pairs.push((key, value)),
        }
    }
}

impl Object for Dict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let pairs = self.0.lock().ok()?;
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.0.lock() {
            Ok(pairs) => Enumerator::Values(pairs.iter().map(|(k, _)| k.clone()).collect()),
            Err(_) => Enumerator::Empty,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let mut pairs = self.0.lock().map_err(|_| poisoned())?;
        let none = Value::from(());
        match method {
            "update" => {
                // update(other), update(k=v), or both.
                for arg in args {
                    for key in arg.try_iter()? {
                        let value = arg.get_item(&key)?;
                        Self::set(&mut pairs, key, value);
                    }
                }
                Ok(none)
            }
            "pop" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                match pairs.iter().position(|(k, _)| *k == key) {
                    Some(at) => Ok(pairs.remove(at).1),
                    None => default.ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            format!("key {key} not in dict"),
                        )
                    }),
                }
            }
            "setdefault" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                if let Some((_, v)) = pairs.iter().find(|(k, _)| *k == key) {
                    return Ok(v.clone());
                }
                let value = mutable(default.unwrap_or(none));
                pairs.push((key, value.clone()));
                Ok(value)
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                Ok(pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
                    .or(default)
                    .unwrap_or(none))
            }
            "keys" => Ok(Value::from(
                pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            )),
            "values" => Ok(Value::from(
                pairs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            )),
            "items" => Ok(Value::from(
                pairs
                    .iter()
                    .map(|(k, v)| Value::from(vec![k.clone(), v.clone()]))
                    .collect::<Vec<_>>(),
            )),
            "copy" => Ok(Value::from_object(Dict(Mutex::new(pairs.clone())))),
            "clear" => {
                pairs.clear();
                Ok(none)
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `{% set name = [...] %}` and `{% set name = {...} %}` with the literal wrapped in the call
/// that makes it mutable; everything else as it was (the text stays on the same lines).
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if !text.contains("set") {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut rest = 0;
    while let Some(open) = text[rest..].find('{').map(|i| rest + i) {
        let kind = text[open + 1..].chars().next();
        let closer = match kind {
            Some('%') => "%}",
            Some('{') => "}}",
            Some('#') => "#}",
            _ => {
                rest = open + 1;
                continue;
            }
        };
        let Some(close) = tag_end(text, open + 2, closer) else {
            break;
        };
        rest = close + 2;
        if kind != Some('%') {
            continue;
        }
        let body = text[open + 2..close]
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+']);
        let Some(after_set) = body.trim_start().strip_prefix("set") else {
            continue;
        };
        if !after_set.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((name, rhs)) = after_set.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
            || rhs.starts_with('=')
        {
            continue;
        }
        let literal = rhs.trim();
        let func = match literal.chars().next() {
            Some('[') => LIST_FN,
            Some('{') => DICT_FN,
            _ => continue,
        };
        if matching_close(literal) != Some(literal.len() - 1) {
            continue;
        }
        // `literal` is a slice of `text`: where it starts there.
        let at = literal.as_ptr() as usize - text.as_ptr() as usize;
        out.push_str(&text[copied..at]);
        out.push_str(func);
        out.push('(');
        out.push_str(literal);
        out.push(')');
        copied = at + literal.len();
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The index of `closer` (`%}`, `}}` or `#}`) that ends the tag whose body starts at `from`
/// (quotes respected, except in comments).
fn tag_end(text: &str, from: usize, closer: &str) -> Option<usize> {
    if closer == "#}" {
        return text[from..].find(closer).map(|i| from + i);
    }
    let bytes = text.as_bytes();
    let (c0, c1) = (closer.as_bytes()[0], closer.as_bytes()[1]);
    let mut quote = None;
    let mut i = from;
    while i + 1 < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == c0 && bytes[i + 1] == c1 => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// The index of the bracket that closes the one `s` starts with (quotes respected).
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn set_literals_are_wrapped_and_nothing_else() {
        assert_eq!(
            rewrite("{%- set fields = [] -%}x{% set d = {'a': [1]} %}"),
            "{%- set fields = __rsdbt_list([]) -%}x{% set d = __rsdbt_dict({'a': [1]}) %}"
        );
        for same in [
            "{% set x = [1] + y %}",
            "{% set x = y[0] %}",
            "{% set x %}[]{% endset %}",
            "{% set a, b = [1, 2] %}",
            "{% if x == [] %}{% endif %}",
            "{{ '{% set x = [] %}' }}",
        ] {
            assert_eq!(rewrite(same), same);
        }
        assert_eq!(
            rewrite("{% set s = ['a %}', \"]\"] %}"),
            "{% set s = __rsdbt_list(['a %}', \"]\"]) %}"
        );
    }
}
