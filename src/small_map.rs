//! A small map of JSON values, sorted by key: node configs and generic tests' arguments.

use serde_json::{Map, Value as Json};

/// Keys and JSON values sorted by key, as serde_json's map iterates them. A vector rather
/// than that map: the map's smallest node is ~640 bytes even for two keys, and a large project
/// holds three configs per model and the arguments of each of its tests (10,000 models and
/// 40,000 tests: ~45 MB as maps, ~10 as vectors).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmallMap(Vec<(String, Json)>);

impl SmallMap {
    pub const fn new() -> Self {
        Self(Vec::new())
    }
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }
    /// Sets `key`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: Json) -> Option<Json> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }
    /// The value of `key`, set to `default()` first when absent.
    pub fn get_or_insert_with(&mut self, key: String, default: impl FnOnce() -> Json) -> &mut Json {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key, default()));
                i
            }
        };
        &mut self.0[i].1
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
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl Iterator<Item = &Json> {
        self.0.iter().map(|(_, v)| v)
    }
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Json) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v))
    }
    /// The same keys as a JSON map (for templates and JSON documents).
    pub fn to_map(&self) -> Map<String, Json> {
        self.0.iter().cloned().collect()
    }
    pub fn to_json(&self) -> Json {
        Json::Object(self.to_map())
    }
}

impl From<Map<String, Json>> for SmallMap {
    fn from(map: Map<String, Json>) -> Self {
        // serde_json's map iterates in key order (no `preserve_order`); sorted anyway, so that
        // lookups cannot silently miss if that feature is ever on.
        let mut pairs: Vec<(String, Json)> = map.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs)
    }
}

impl From<SmallMap> for Map<String, Json> {
    fn from(m: SmallMap) -> Self {
        m.0.into_iter().collect()
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
    type IntoIter = std::vec::IntoIter<(String, Json)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a SmallMap {
    type Item = (&'a String, &'a Json);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Json)>,
        fn(&'a (String, Json)) -> (&'a String, &'a Json),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
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
