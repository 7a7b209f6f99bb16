//! Python's data model in Jinja, as dbt's Jinja (Jinja2 on Python) has it: the one place that
//! owns it.
//!
//! minijinja's lists and maps are immutable values; dbt packages mutate theirs
//! (`{% do fields.append(x) %}`, `{% do d.update({k: v}) %}`, `kwargs.get('at_least')`,
//! `results.values()`). Every container a template can see is a [`List`] or a [`Dict`]
//! (mutable, insertion-ordered, Python's methods):
//! - list and dict displays in templates, through [`super::template`]'s instruction pass;
//! - values our functions return (`var()`, `fromjson`, `run_query` tables, `zip`, configs...),
//!   through [`from_json`] / [`list`] / [`dict`];
//! - minijinja's own containers (from filters, `Serde` values, nested data) when they are
//!   put into ours or read out of ours ([`adopt`]), and the filters that make lists (`list`,
//!   `sort`, `unique`, `reverse`, `batch`, `slice`, `items`, `dictsort`) return ours.
//!
//! Methods on strings and on minijinja's own values go through [`unknown_method`], which adds
//! what `minijinja_contrib::pycompat` lacks; `| int` and `| float` follow Jinja2 (a bad value
//! gives the default, not an error).

use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind, from_args};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

/// A Python list.
#[derive(Debug, Default)]
pub struct List(Mutex<Vec<Value>>);

/// A Python dict: insertion-ordered, keys compared by value.
#[derive(Debug, Default)]
pub struct Dict(Mutex<IndexMap<Value, Value>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a container was locked cannot leave it half-changed in a way that matters
    // to a template; keep going with what is there.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// A new list of `items`.
pub fn list(items: Vec<Value>) -> Value {
    Value::from_object(List(Mutex::new(items.into_iter().map(adopt).collect())))
}

/// A new dict of `pairs`, in order (a later key replaces an earlier one).
pub fn dict(pairs: impl IntoIterator<Item = (Value, Value)>) -> Value {
    Value::from_object(Dict(Mutex::new(
        pairs.into_iter().map(|(k, v)| (k, adopt(v))).collect(),
    )))
}

/// A JSON value as Python sees it: objects are dicts, arrays lists, all the way down.
pub fn from_json(v: &Json) -> Value {
    match v {
        Json::Array(items) => list(items.iter().map(from_json).collect()),
        Json::Object(map) => dict(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v))),
        ),
        other => Value::from(minijinja::value::Serde(other)),
    }
}

/// `v` as our containers hold it: minijinja's own (immutable) lists and maps become ours, one
/// level at a time (nested ones convert when they are read); everything else stays itself.
/// Tuples stay tuples, and objects that are sequences or mappings (relations, tables,
/// columns) stay the objects they are.
pub fn adopt(v: Value) -> Value {
    match v.kind() {
        ValueKind::Seq if v.downcast_object_ref::<Vec<Value>>().is_some() => {
            Value::from_object(List(Mutex::new(
                v.try_iter().map(|i| i.collect()).unwrap_or_default(),
            )))
        }
        ValueKind::Map if is_plain_map(&v) => Value::from_object(Dict(Mutex::new(
            v.try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let value = v.get_item(&k).unwrap_or_default();
                        (k, value)
                    })
                    .collect()
                })
                .unwrap_or_default(),
        ))),
        _ => v,
    }
}

/// minijinja's own list or map (a display the compiler folded, a `Serde` value), which
/// Python code cannot change.
pub fn is_plain_container(v: &Value) -> bool {
    v.downcast_object_ref::<Vec<Value>>().is_some() || is_plain_map(v)
}

/// minijinja's own map (a display's constant, a `Serde` value), not kwargs or an object with a
/// map shape of its own.
fn is_plain_map(v: &Value) -> bool {
    !v.is_kwargs()
        && (v.downcast_object_ref::<IndexMap<Value, Value>>().is_some()
            || v.downcast_object_ref::<std::collections::BTreeMap<Value, Value>>()
                .is_some())
}

/// A display constant (`[1, [2]]`, `{'a': []}`) as a fresh Python value, deeply: each
/// evaluation of a display makes new containers, as in Python.
pub fn fresh(v: &Value) -> Value {
    match v.kind() {
        ValueKind::Seq if v.downcast_object_ref::<Vec<Value>>().is_some() => list(
            v.try_iter()
                .map(|i| i.map(|x| fresh(&x)).collect())
                .unwrap_or_default(),
        ),
        ValueKind::Map if is_plain_map(v) => dict(
            v.try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let value = fresh(&v.get_item(&k).unwrap_or_default());
                        (k, value)
                    })
                    .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        ),
        _ => v.clone(),
    }
}

/// The items of an iterable as a Vec (a string gives its characters, a dict its keys).
fn items_of(v: &Value) -> Result<Vec<Value>, Error> {
    Ok(v.try_iter()?.collect())
}

fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    usize::try_from(i).ok().filter(|i| *i < len)
}

fn none() -> Value {
    Value::from(())
}

/// Python's ordering for `sort()`: numbers, then strings, by value.
fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
}

impl List {
    fn items(&self) -> MutexGuard<'_, Vec<Value>> {
        lock(&self.0)
    }

    /// Item `i`, converting a nested minijinja container in place so that it keeps its
    /// identity (`x[0].append(1)` changes `x`).
    fn item(&self, i: usize) -> Option<Value> {
        self.items().get_mut(i).map(adopt_in_place)
    }
}

/// A stored value as ours, replacing it where it is kept so that later reads see the same
/// (mutable) container.
fn adopt_in_place(v: &mut Value) -> Value {
    let adopted = adopt(v.clone());
    *v = adopted.clone();
    adopted
}

impl Object for List {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let len = self.items().len();
        self.item(index(len, key.as_i64()?)?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut items = self.items();
        for v in items.iter_mut() {
            *v = adopt(v.clone());
        }
        Enumerator::Values(items.clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items().len())
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "append" => {
                let (x,): (Value,) = from_args(args)?;
                self.items().push(adopt(x));
                Ok(none())
            }
            "extend" => {
                let (xs,): (Value,) = from_args(args)?;
                let new = items_of(&xs)?;
                self.items().extend(new.into_iter().map(adopt));
                Ok(none())
            }
            "insert" => {
                let (i, x): (i64, Value) = from_args(args)?;
                let mut items = self.items();
                let len = items.len() as i64;
                let i = if i < 0 { (len + i).max(0) } else { i.min(len) };
                items.insert(i as usize, adopt(x));
                Ok(none())
            }
            "pop" => {
                let (i,): (Option<i64>,) = from_args(args)?;
                let mut items = self.items();
                let at = index(items.len(), i.unwrap_or(-1))
                    .ok_or_else(|| invalid("pop from empty list or index out of range"))?;
                Ok(items.remove(at))
            }
            "remove" => {
                let (x,): (Value,) = from_args(args)?;
                let mut items = self.items();
                let at = items
                    .iter()
                    .position(|v| *v == x)
                    .ok_or_else(|| invalid("list.remove(x): x not in list"))?;
                items.remove(at);
                Ok(none())
            }
            "index" => {
                let (x,): (Value,) = from_args(args)?;
                self.items()
                    .iter()
                    .position(|v| *v == x)
                    .map(Value::from)
                    .ok_or_else(|| invalid(format!("{x} is not in list")))
            }
            "count" => {
                let (x,): (Value,) = from_args(args)?;
                Ok(Value::from(
                    self.items().iter().filter(|v| **v == x).count(),
                ))
            }
            "reverse" => {
                self.items().reverse();
                Ok(none())
            }
            "sort" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let reverse = kwargs.get::<Option<bool>>("reverse")?.unwrap_or(false);
                let key: Option<Value> = kwargs.get("key")?;
                kwargs.assert_all_used()?;
                // Keys are computed outside the lock: a key function may read this list.
                let items = self.items().clone();
                let mut keyed = Vec::with_capacity(items.len());
                for item in items {
                    let k = match &key {
                        Some(f) => f.call(state, std::slice::from_ref(&item))?,
                        None => item.clone(),
                    };
                    keyed.push((k, item));
                }
                keyed.sort_by(|a, b| compare(&a.0, &b.0));
                if reverse {
                    keyed.reverse();
                }
                *self.items() = keyed.into_iter().map(|(_, v)| v).collect();
                Ok(none())
            }
            "clear" => {
                self.items().clear();
                Ok(none())
            }
            "copy" => Ok(list(self.items().clone())),
            // Python's set methods, for the sorted lists `set()` returns.
            "add" => {
                let (x,): (Value,) = from_args(args)?;
                let mut items = self.items();
                if !items.contains(&x) {
                    items.push(adopt(x));
                    items.sort_by(compare);
                }
                Ok(none())
            }
            "discard" => {
                let (x,): (Value,) = from_args(args)?;
                self.items().retain(|v| *v != x);
                Ok(none())
            }
            "union" | "difference" | "intersection" | "issubset" | "issuperset" => {
                let (other,): (Value,) = from_args(args)?;
                let other = items_of(&other)?;
                let mine = self.items().clone();
                let has = |xs: &[Value], x: &Value| xs.contains(x);
                Ok(match method {
                    "union" => {
                        let mut all = mine;
                        all.extend(other.into_iter().filter(|x| !has(&self.items(), x)));
                        set_of(all)
                    }
                    "difference" => set_of(mine.into_iter().filter(|x| !has(&other, x)).collect()),
                    "intersection" => set_of(mine.into_iter().filter(|x| has(&other, x)).collect()),
                    "issubset" => Value::from(mine.iter().all(|x| has(&other, x))),
                    _ => Value::from(other.iter().all(|x| has(&mine, x))),
                })
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Python's `set(xs)` as a list: each value once, sorted, so that two sets with the same
/// values compare equal (`set(a) != set(b)` in dbt_utils' `equality`) and iterate the same way
/// every run.
pub fn set_of(items: Vec<Value>) -> Value {
    let mut unique: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    unique.sort_by(compare);
    list(unique)
}

impl Dict {
    fn pairs(&self) -> MutexGuard<'_, IndexMap<Value, Value>> {
        lock(&self.0)
    }

    fn set(&self, key: Value, value: Value) {
        self.pairs().insert(key, adopt(value));
    }

    fn lookup(&self, key: &Value) -> Option<Value> {
        self.pairs().get_mut(key).map(adopt_in_place)
    }
}

impl Object for Dict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.lookup(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.pairs().keys().cloned().collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.pairs().len())
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "update" => {
                // update(other), update(k=v), update(other, k=v); other may be pairs.
                for arg in args {
                    if arg.kind() == ValueKind::Map {
                        for key in arg.try_iter()? {
                            let value = arg.get_item(&key)?;
                            self.set(key, value);
                        }
                    } else {
                        for pair in arg.try_iter()? {
                            let kv = items_of(&pair)?;
                            let [k, v] = <[Value; 2]>::try_from(kv).map_err(|_| {
                                invalid("dict.update() takes a mapping or (key, value) pairs")
                            })?;
                            self.set(k, v);
                        }
                    }
                }
                Ok(none())
            }
            "pop" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                match self.pairs().shift_remove(&key) {
                    Some(v) => Ok(v),
                    None => default.ok_or_else(|| invalid(format!("KeyError: {key}"))),
                }
            }
            "popitem" => {
                let popped = self.pairs().pop();
                popped
                    .map(|(k, v)| Value::from(vec![k, v]))
                    .ok_or_else(|| invalid("popitem(): dictionary is empty"))
            }
            "setdefault" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                if let Some(v) = self.lookup(&key) {
                    return Ok(v);
                }
                let value = adopt(default.unwrap_or_else(none));
                self.pairs().insert(key, value.clone());
                Ok(value)
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                Ok(self.lookup(&key).or(default).unwrap_or_else(none))
            }
            "keys" => Ok(list(self.pairs().keys().cloned().collect())),
            "values" => {
                let keys: Vec<Value> = self.pairs().keys().cloned().collect();
                Ok(list(keys.iter().filter_map(|k| self.lookup(k)).collect()))
            }
            "items" => {
                let keys: Vec<Value> = self.pairs().keys().cloned().collect();
                Ok(list(
                    keys.into_iter()
                        .filter_map(|k| {
                            let v = self.lookup(&k)?;
                            Some(Value::from(minijinja::value::Tuple::from([k, v])))
                        })
                        .collect(),
                ))
            }
            "copy" => Ok(dict(self.pairs().clone())),
            // dbt's result and node objects are dicts here; theirs convert with `to_dict()`.
            "to_dict" => Ok(dict(self.pairs().clone())),
            "clear" => {
                self.pairs().clear();
                Ok(none())
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// Methods of values that are not ours: Python's string methods pycompat lacks, the reading
/// methods of minijinja's lists and maps returning Python values, then pycompat. A mutating
/// method on a container nobody could adopt says so instead of "unknown method".
pub fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str()
        && let Some(v) = string_method(s, method, args)?
    {
        return Ok(v);
    }
    // Ours reached here because they have no such method; minijinja's own adopt ours'.
    if is_plain_container(value) {
        let adopted = adopt(value.clone());
        {
            // A copy that is mutated is not the value the template holds: refuse mutations.
            let mutating = [
                "append",
                "extend",
                "insert",
                "pop",
                "remove",
                "sort",
                "reverse",
                "clear",
                "update",
                "setdefault",
                "popitem",
            ];
            if mutating.contains(&method) {
                return Err(invalid(format!(
                    "cannot {method}() on this {}: it is read-only (make a list with `list(...)` or a dict with `dict(...)` first)",
                    value.kind()
                )));
            }
            return adopted.call_method(state, method, args);
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str` methods beyond pycompat's, and those whose result must be a list.
fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    let words = |v: Vec<&str>| list(v.into_iter().map(Value::from).collect());
    Ok(Some(match method {
        "split" | "rsplit" => {
            let (sep, maxsplit, kwargs): (Option<Value>, Option<i64>, Kwargs) = from_args(args)?;
            let sep = match sep {
                Some(v) if !v.is_none() => Some(v.to_string()),
                _ => kwargs.get::<Option<String>>("sep")?,
            };
            let max = maxsplit
                .or(kwargs.get::<Option<i64>>("maxsplit")?)
                .filter(|m| *m >= 0)
                .map(|m| m as usize);
            kwargs.assert_all_used()?;
            let parts: Vec<&str> = match (sep.as_deref(), max, method == "split") {
                (Some(""), _, _) => return Err(invalid("empty separator")),
                (Some(sep), None, _) => s.split(sep).collect(),
                (Some(sep), Some(m), true) => s.splitn(m + 1, sep).collect(),
                (Some(sep), Some(m), false) => {
                    let mut p: Vec<&str> = s.rsplitn(m + 1, sep).collect();
                    p.reverse();
                    p
                }
                (None, max, forward) => {
                    // Runs of whitespace separate, ends are ignored.
                    let all: Vec<&str> = s.split_whitespace().collect();
                    match max {
                        Some(m) if m < all.len().saturating_sub(1) && forward => {
                            let mut out: Vec<&str> = all[..m].to_vec();
                            let mut rest = s.trim_start();
                            for _ in 0..m {
                                rest = rest
                                    .trim_start()
                                    .split_once(char::is_whitespace)
                                    .map_or("", |x| x.1);
                            }
                            out.push(rest.trim_start());
                            out
                        }
                        _ => all,
                    }
                }
            };
            words(parts)
        }
        "splitlines" => words(s.lines().collect()),
        "partition" | "rpartition" => {
            let (sep,): (&str,) = from_args(args)?;
            let found = if method == "partition" {
                s.split_once(sep)
            } else {
                s.rsplit_once(sep)
            };
            let (a, b, c) = match found {
                Some((a, c)) => (a, sep, c),
                None if method == "partition" => (s, "", ""),
                None => ("", "", s),
            };
            Value::from(minijinja::value::Tuple::from([
                Value::from(a),
                Value::from(b),
                Value::from(c),
            ]))
        }
        "removeprefix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(p).unwrap_or(s))
        }
        "removesuffix" => {
            let (p,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(p).unwrap_or(s))
        }
        "zfill" => {
            let (width,): (usize,) = from_args(args)?;
            let (sign, digits) = match s.strip_prefix(['-', '+']) {
                Some(rest) => (&s[..1], rest),
                None => ("", s),
            };
            let pad = width.saturating_sub(s.chars().count());
            Value::from(format!("{sign}{}{digits}", "0".repeat(pad)))
        }
        "ljust" | "rjust" | "center" => {
            let (width, fill): (usize, Option<&str>) = from_args(args)?;
            let fill = fill.and_then(|f| f.chars().next()).unwrap_or(' ');
            let pad = width.saturating_sub(s.chars().count());
            let (left, right) = match method {
                "ljust" => (0, pad),
                "rjust" => (pad, 0),
                // Python's center puts the odd space on the left when the width is odd.
                _ => {
                    let left = pad / 2 + ((pad % 2) & (width % 2));
                    (left, pad - left)
                }
            };
            let f = |n: usize| fill.to_string().repeat(n);
            Value::from(format!("{}{s}{}", f(left), f(right)))
        }
        "index" | "rindex" => {
            let (sub,): (&str,) = from_args(args)?;
            let at = if method == "index" {
                s.find(sub)
            } else {
                s.rfind(sub)
            };
            let at = at.ok_or_else(|| invalid("substring not found"))?;
            Value::from(s[..at].chars().count())
        }
        "casefold" => Value::from(s.to_lowercase()),
        "swapcase" => Value::from(
            s.chars()
                .map(|c| {
                    if c.is_uppercase() {
                        c.to_lowercase().collect::<String>()
                    } else {
                        c.to_uppercase().collect()
                    }
                })
                .collect::<String>(),
        ),
        "isidentifier" => Value::from(
            s.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_alphanumeric() || c == '_'),
        ),
        "istitle" => {
            let mut prev_cased = false;
            let mut ok = false;
            for c in s.chars() {
                if c.is_uppercase() {
                    if prev_cased {
                        return Ok(Some(Value::from(false)));
                    }
                    prev_cased = true;
                    ok = true;
                } else if c.is_lowercase() {
                    if !prev_cased {
                        return Ok(Some(Value::from(false)));
                    }
                    prev_cased = true;
                } else {
                    prev_cased = false;
                }
            }
            Value::from(ok)
        }
        _ => return Ok(None),
    }))
}

/// Jinja2's `int`: a number's integer part, a string parsed as an integer or as a float, and
/// the default (0) for anything else — never an error.
fn int_filter(
    state: &State,
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0)),
    };
    let base = match base {
        Some(b) => Some(b),
        None => kwargs.get::<Option<u32>>("base")?,
    };
    kwargs.assert_all_used()?;
    let trimmed = value
        .as_str()
        .map(|s| Value::from(s.trim().replace('_', "")));
    let v = trimmed.as_ref().unwrap_or(value);
    Ok(minijinja::filters::int(
        state,
        v,
        Some(default.clone()),
        base,
        Kwargs::from_iter(None::<(&str, Value)>),
    )
    .unwrap_or(default))
}

/// Jinja2's `float`: the default (0.0) for what does not parse.
fn float_filter(
    state: &State,
    value: &Value,
    default: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0.0)),
    };
    kwargs.assert_all_used()?;
    let trimmed = value.as_str().map(|s| Value::from(s.trim()));
    let v = trimmed.as_ref().unwrap_or(value);
    Ok(minijinja::filters::float(
        state,
        v,
        Some(default.clone()),
        Kwargs::from_iter(None::<(&str, Value)>),
    )
    .unwrap_or(default))
}

/// Python's `list(x)` and `dict(...)` as functions, and the filters that make lists, returning
/// Python values; `int`/`float` as Jinja2.
pub fn install(env: &mut Environment<'static>) {
    use minijinja::filters as f;
    env.set_unknown_method_callback(unknown_method);
    // `{{ true }}` prints `True` and `{{ none }}` prints `None`, as Python's str() (dbt's
    // compiled SQL says `cast(True as boolean)`); everything else as minijinja prints it.
    env.set_formatter(|out, state, value| {
        match value.kind() {
            ValueKind::Bool if value.is_true() => out.write_str("True")?,
            ValueKind::Bool => out.write_str("False")?,
            ValueKind::None => out.write_str("None")?,
            _ => return minijinja::escape_formatter(out, state, value),
        }
        Ok(())
    });
    env.add_function("list", |v: Option<Value>| -> Result<Value, Error> {
        Ok(list(match v {
            Some(v) => items_of(&v)?,
            None => Vec::new(),
        }))
    });
    env.add_function(
        "dict",
        |args: Rest<Value>, kwargs: Kwargs| -> Result<Value, Error> {
            let out = Dict::default();
            for arg in args.iter() {
                if arg.kind() == ValueKind::Map {
                    for k in arg.try_iter()? {
                        let v = arg.get_item(&k)?;
                        out.set(k, v);
                    }
                } else {
                    for pair in arg.try_iter()? {
                        let kv = items_of(&pair)?;
                        let [k, v] = <[Value; 2]>::try_from(kv)
                            .map_err(|_| invalid("dict() takes a mapping or (key, value) pairs"))?;
                        out.set(k, v);
                    }
                }
            }
            for k in kwargs.args() {
                out.set(Value::from(k), kwargs.get::<Value>(k)?);
            }
            Ok(Value::from_object(out))
        },
    );
    // Jinja2's Undefined has length 0 (`column.fields|length > 0` on a column without
    // fields); minijinja's `length` refuses it.
    for name in ["length", "count"] {
        env.add_filter(name, |v: &Value| -> Result<Value, Error> {
            if v.is_undefined() {
                return Ok(Value::from(0));
            }
            f::length(v).map(Value::from)
        });
    }
    env.add_filter("int", int_filter);
    env.add_filter("float", float_filter);
    env.add_filter("list", |state: &State, v: Value| {
        f::list(state, v).map(adopt)
    });
    env.add_filter("sort", |state: &State, v: Value, kwargs: Kwargs| {
        f::sort(state, v, kwargs).map(adopt)
    });
    env.add_filter("unique", |state: &State, v: Value, kwargs: Kwargs| {
        f::unique(state, v, kwargs).map(adopt)
    });
    env.add_filter("reverse", |v: &Value| f::reverse(v).map(reversed_list));
    env.add_filter("dictsort", |v: &Value, kwargs: Kwargs| {
        f::dictsort(v, kwargs).map(adopt)
    });
    env.add_filter("items", |v: &Value| {
        f::items(v).and_then(|i| Ok(list(items_of(&i)?)))
    });
    env.add_filter(
        "batch",
        |state: &State, v: Value, n: usize, fill: Option<Value>| {
            f::batch(state, v, n, fill).map(adopt)
        },
    );
    env.add_filter(
        "slice",
        |state: &State, v: Value, n: usize, fill: Option<Value>| {
            f::slice(state, v, n, fill).map(adopt)
        },
    );
}

/// `reverse` on a string is a string; on anything else our list of its items.
fn reversed_list(v: Value) -> Value {
    if v.kind() == ValueKind::String {
        return v;
    }
    match v.try_iter() {
        Ok(items) => list(items.collect()),
        Err(_) => v,
    }
}
