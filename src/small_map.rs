//! A small map of JSON values, sorted by key: node configs and generic tests' arguments.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

/// Keys and JSON values sorted by key, as serde_json's map iterates them. A vector rather
/// than that map: the map's smallest node is ~640 bytes even for two keys, and a large project
/// holds three configs per model and the arguments of each of its tests (10,000 models and
/// 40,000 tests: ~45 MB as maps, ~10 as vectors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmallMap(Vec<(String, Value)>);

/// A value as a map holds it: a non-empty mapping behind a shared pointer, anything else in
/// place. A node keeps three configs (its own, as written, and its `config()` call's), and a
/// project-file `+meta:` or `+persist_docs:` reaches every node of a folder: copies of a map
/// share one mapping (each would be a ~640-byte map node or more) until one of them is
/// changed. Lists stay in place: a config's lists are mostly `tags` and hooks, which merging
/// appends to anyway, and a shared list would cost each `accepted_values` test a pointer's
/// allocation for nothing.
#[derive(Debug, Clone)]
pub struct Value(Repr);

#[derive(Debug, Clone)]
enum Repr {
    Inline(Json),
    Shared(Arc<Json>),
}

impl Value {
    pub fn new(v: Json) -> Value {
        let shared = matches!(&v, Json::Object(m) if !m.is_empty());
        Value(if shared {
            Repr::Shared(Arc::new(v))
        } else {
            Repr::Inline(v)
        })
    }
    pub fn json(&self) -> &Json {
        match &self.0 {
            Repr::Inline(v) => v,
            Repr::Shared(v) => v,
        }
    }
    /// The value to change in place (a shared one is copied first).
    fn json_mut(&mut self) -> &mut Json {
        match &mut self.0 {
            Repr::Inline(v) => v,
            Repr::Shared(v) => Arc::make_mut(v),
        }
    }
    fn into_json(self) -> Json {
        match self.0 {
            Repr::Inline(v) => v,
            Repr::Shared(v) => Arc::unwrap_or_clone(v),
        }
    }
    fn same_allocation(&self, other: &Value) -> bool {
        matches!((&self.0, &other.0), (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.same_allocation(other) || self.json() == other.json()
    }
}

impl SmallMap {
    pub const fn new() -> Self {
        Self(Vec::new())
    }
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.find(key).ok().map(|i| self.0[i].1.json())
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.find(key).ok().map(|i| self.0[i].1.json_mut())
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }
    /// Sets `key`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: Json) -> Option<Json> {
        self.insert_value(key, Value::new(value))
            .map(Value::into_json)
    }
    /// Sets `key` to a value of another map (shared, not copied).
    pub fn insert_value(&mut self, key: String, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        self.find(key).ok().map(|i| self.0.remove(i).1.into_json())
    }
    /// The value of `key`, set to `default()` first when absent.
    pub fn get_or_insert_with(&mut self, key: String, default: impl FnOnce() -> Json) -> &mut Json {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, Value::new(default())));
                i
            }
        };
        self.0[i].1.json_mut()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// In key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &Json)> + ExactSizeIterator {
        self.into_iter()
    }
    /// In key order, the values as held (to insert into another map without a copy).
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl Iterator<Item = &Json> {
        self.0.iter().map(|(_, v)| v.json())
    }
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &Json) -> bool) {
        self.0.retain(|(k, v)| keep(k, v.json()))
    }
    /// Makes each of this map's values that equals `other`'s under the same key share
    /// `other`'s copy: two configs of one node mostly hold the same mappings, built apart.
    pub fn share_with(&mut self, other: &SmallMap) {
        let mut theirs = other.0.iter().peekable();
        for (key, mine) in &mut self.0 {
            if !matches!(mine.0, Repr::Shared(_)) {
                continue;
            }
            while theirs.next_if(|(k, _)| k < &*key).is_some() {}
            if let Some((k, v)) = theirs.peek()
                && k == key
                && matches!(v.0, Repr::Shared(_))
                && !mine.same_allocation(v)
                && mine.json() == v.json()
            {
                *mine = v.clone();
            }
        }
    }
    /// The same keys as a JSON map (for templates and JSON documents).
    pub fn to_map(&self) -> Map<String, Json> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
    pub fn to_json(&self) -> Json {
        Json::Object(self.to_map())
    }
}

impl From<Map<String, Json>> for SmallMap {
    fn from(map: Map<String, Json>) -> Self {
        // serde_json's map iterates in key order (no `preserve_order`); sorted anyway, so that
        // lookups cannot silently miss if that feature is ever on.
        let mut pairs: Vec<(String, Value)> =
            map.into_iter().map(|(k, v)| (k, Value::new(v))).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs)
    }
}

impl From<SmallMap> for Map<String, Json> {
    fn from(m: SmallMap) -> Self {
        m.into_iter().collect()
    }
}

impl From<SmallMap> for Json {
    fn from(m: SmallMap) -> Self {
        Json::Object(m.into())
    }
}

impl FromIterator<(String, Json)> for SmallMap {
    fn from_iter<I: IntoIterator<Item = (String, Json)>>(items: I) -> Self {
        let mut m = SmallMap::new();
        m.extend(items);
        m
    }
}

impl Extend<(String, Json)> for SmallMap {
    fn extend<I: IntoIterator<Item = (String, Json)>>(&mut self, items: I) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for SmallMap {
    type Item = (String, Json);
    type IntoIter =
        std::iter::Map<std::vec::IntoIter<(String, Value)>, fn((String, Value)) -> (String, Json)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(k, v)| (k, v.into_json()))
    }
}

impl<'a> IntoIterator for &'a SmallMap {
    type Item = (&'a String, &'a Json);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a String, &'a Json),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v.json()))
    }
}

impl std::ops::Index<&str> for SmallMap {
    type Output = Json;
    /// `Json::Null` for a missing key, as a JSON object indexes.
    fn index(&self, key: &str) -> &Json {
        static NULL: Json = Json::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl serde::Serialize for SmallMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for SmallMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::<String, Json>::deserialize(d).map(SmallMap::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_value_takes_no_more_room_than_a_json_value() {
        // Scalars stay in place: the shared pointer hides in the JSON value's spare tags.
        assert_eq!(size_of::<Value>(), size_of::<Json>());
    }

    #[test]
    fn looks_up_and_writes_like_the_map_it_came_from() {
        let map =
            serde_json::json!({"to": "ref('c')", "column_name": "id", "model": "m", "field": "x"})
                .as_object()
                .unwrap()
                .clone();
        let mut small = SmallMap::from(map.clone());
        assert_eq!(small.len(), 4);
        for (k, v) in &map {
            assert_eq!(small.get(k), Some(v));
        }
        assert_eq!(small.get("values"), None);
        assert!(!small.contains_key("a") && !small.contains_key("zz"));
        assert_eq!(
            serde_json::to_string(&small).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        // Inserted keys keep the order; a replaced value is returned.
        assert_eq!(small.insert("a".into(), Json::Bool(true)), None);
        assert_eq!(
            small.insert("to".into(), Json::Null),
            Some("ref('c')".into())
        );
        let keys: Vec<&String> = small.keys().collect();
        assert_eq!(keys, ["a", "column_name", "field", "model", "to"]);
        assert_eq!(small.remove("model"), Some("m".into()));
        assert_eq!(small["model"], Json::Null);
        assert_eq!(
            small.get_or_insert_with("b".into(), || Json::Array(vec![])),
            &Json::Array(vec![])
        );
        let text = serde_json::to_string(&small).unwrap();
        let back: SmallMap = serde_json::from_str(&text).unwrap();
        assert_eq!(back, small);
    }
}
