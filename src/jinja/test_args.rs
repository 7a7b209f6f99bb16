//! A generic test's arguments (dbt's `test_metadata.kwargs`).

use serde_json::{Map, Value as Json};

/// The arguments of one generic test, sorted by name. A boxed slice rather than a map: a
/// map's smallest node is ~640 bytes, and a large project holds one per test (40,000 of them
/// were 25 MB of a 10,000-model parse); two or three pairs here take ~170.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TestArgs(Box<[(String, Json)]>);

impl TestArgs {
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// In name order, as a map iterates.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Json)> {
        self.into_iter()
    }
}

impl From<Map<String, Json>> for TestArgs {
    fn from(map: Map<String, Json>) -> Self {
        // serde_json's map iterates in key order (no `preserve_order`), so no sort is needed;
        // one is done anyway so that `get` cannot silently miss if that feature is ever on.
        let mut pairs: Vec<(String, Json)> = map.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Self(pairs.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a TestArgs {
    type Item = (&'a String, &'a Json);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Json)>,
        fn(&'a (String, Json)) -> (&'a String, &'a Json),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl serde::Serialize for TestArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
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
        let args = TestArgs::from(map.clone());
        assert_eq!(args.len(), 4);
        for (k, v) in &map {
            assert_eq!(args.get(k), Some(v));
        }
        assert_eq!(args.get("values"), None);
        assert!(!args.contains_key("a") && !args.contains_key("zz"));
        assert_eq!(
            serde_json::to_string(&args).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
    }
}
