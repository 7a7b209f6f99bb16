//! dbt's names for generic tests: `not_null_orders_order_id`, a 64-character limit with an md5
//! suffix, and the unique id hash (`test.<project>.<name>.<10 hex>`), byte for byte as dbt-core
//! computes them so that artifacts and selectors line up with dbt's.

use md5::{Digest, Md5};
use serde_json::Value as Json;

fn md5_hex(s: &str) -> String {
    format!("{:x}", Md5::digest(s.as_bytes()))
}

/// Python's `str()` of a YAML value (what dbt joins into test names).
fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => n.to_string(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON-like value.
fn py_repr(v: &Json) -> String {
    let mut out = String::new();
    py_repr_into(v, &mut out);
    out
}

fn py_repr_into(v: &Json, out: &mut String) {
    match v {
        Json::String(s) => py_repr_str(s, out),
        Json::Array(items) => repr_items(out, ['[', ']'], items, py_repr_into),
        Json::Object(m) => repr_items(out, ['{', '}'], m, |(k, v), out| {
            py_repr_str(k, out);
            out.push_str(": ");
            py_repr_into(v, out);
        }),
        other => out.push_str(&py_str(other)),
    }
}

/// Python's `[a, b]` / `{a, b}`: `items` between `brackets`, each written by `item`.
fn repr_items<T>(
    out: &mut String,
    brackets: [char; 2],
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(T, &mut String),
) {
    out.push(brackets[0]);
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item(x, out);
    }
    out.push(brackets[1]);
}

/// Python's `repr()` of a string: single quotes unless the text has a `'` and no `"`.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    // Most strings (names, refs) need no escape at all.
    if !s
        .bytes()
        .any(|b| b == quote as u8 || b == b'\\' || b < 0x20 || b == 0x7f)
    {
        out.push_str(s);
        out.push(quote);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// `repr()` of dbt's `get_hashable_md(v)` (dict keys sorted, every leaf turned into its
/// `str()`), written without building the hashable copy.
fn hashable_repr(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => hashable_map_repr(m, out),
        Json::Array(items) => repr_items(out, ['[', ']'], items, hashable_repr),
        Json::String(s) => py_repr_str(s, out),
        other => py_repr_str(&py_str(other), out),
    }
}

fn hashable_map_repr(m: &serde_json::Map<String, Json>, out: &mut String) {
    // serde_json's map may keep insertion order.
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    repr_items(out, ['{', '}'], keys, |k, out| {
        py_repr_str(k, out);
        out.push_str(": ");
        hashable_repr(&m[k], out);
    });
}

/// `(short_name, full_name)` of a generic test: `test_type` is e.g. `not_null` (or
/// `source_not_null`), `target` the model name (or `<source>_<table>`), `args` its kwargs.
pub fn synthesize(
    test_type: &str,
    target: &str,
    args: &serde_json::Map<String, Json>,
) -> (String, String) {
    let mut names: Vec<&String> = args.keys().filter(|k| *k != "model").collect();
    names.sort();
    let mut flat = Vec::new();
    for n in names {
        match &args[n] {
            Json::Object(m) => flat.extend(m.values().map(py_str)),
            Json::Array(items) => flat.extend(items.iter().map(py_str)),
            other => flat.push(py_str(other)),
        }
    }
    let clean: Vec<String> = flat.iter().map(|a| clean_arg(a)).collect();
    let identifier = format!("{test_type}_{target}");
    let full = format!("{identifier}_{}", clean.join("__"));
    if full.len() >= 64 {
        let trunc: String = identifier.chars().take(30).collect();
        (format!("{trunc}_{}", md5_hex(&full)), full)
    } else {
        (full.clone(), full)
    }
}

/// Runs of characters other than `[0-9a-zA-Z_]` become one `_`.
fn clean_arg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

/// The last 10 hex digits of md5(name + repr(hashable(test_metadata))), where `test_metadata`
/// is `{kwargs, name: test, namespace}`.
pub fn unique_id_hash(
    name: &str,
    kwargs: &serde_json::Map<String, Json>,
    test: &str,
    namespace: Option<&str>,
) -> String {
    let mut text = String::with_capacity(name.len() + 256);
    text.push_str(name);
    text.push_str("{'kwargs': ");
    hashable_map_repr(kwargs, &mut text);
    text.push_str(", 'name': ");
    py_repr_str(test, &mut text);
    text.push_str(", 'namespace': ");
    py_repr_str(namespace.unwrap_or("None"), &mut text);
    text.push('}');
    let digest = md5_hex(&text);
    digest[digest.len() - 10..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Json) -> serde_json::Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_like_dbt() {
        let a = args(
            json!({"column_name": "customer_id", "model": "{{ get_where_subquery(ref('customers')) }}"}),
        );
        assert_eq!(
            synthesize("not_null", "customers", &a).0,
            "not_null_customers_customer_id"
        );
        let a = args(
            json!({"column_name": "status", "values": ["placed", "shipped", "completed", "return_pending", "returned"], "model": "x"}),
        );
        let (short, full) = synthesize("accepted_values", "orders", &a);
        assert_eq!(
            full,
            "accepted_values_orders_status__placed__shipped__completed__return_pending__returned"
        );
        // 64 characters or more: the alias is the first 30 of "<type>_<target>" plus md5(full).
        assert_eq!(
            short,
            "accepted_values_orders_1ce6ab157c285f7cd2ac656013faf758"
        );
        let a = args(
            json!({"column_name": "customer_id", "to": "ref('customers')", "field": "customer_id", "model": "x"}),
        );
        let (short, full) = synthesize("relationships", "orders", &a);
        assert_eq!(
            full,
            "relationships_orders_customer_id__customer_id__ref_customers_"
        );
        assert_eq!(short, full);
        let a = args(
            json!({"column_name": "payment_method", "values": ["credit_card", "coupon", "bank_transfer", "gift_card"]}),
        );
        let (short, full) = synthesize("accepted_values", "stg_payments", &a);
        assert_eq!(
            full,
            "accepted_values_stg_payments_payment_method__credit_card__coupon__bank_transfer__gift_card"
        );
        assert_eq!(
            short,
            format!("accepted_values_stg_payments_{}", md5_hex(&full))
        );
    }

    #[test]
    fn unique_id_hash_matches_dbt_core() {
        // jaffle_shop's `unique` test on customers.customer_id: dbt-core's manifest says
        // test.jaffle_shop.unique_customers_customer_id.c5af1ff4b1
        let kwargs = args(
            json!({"column_name": "customer_id", "model": "{{ get_where_subquery(ref('customers')) }}"}),
        );
        assert_eq!(
            unique_id_hash("unique_customers_customer_id", &kwargs, "unique", None),
            "c5af1ff4b1"
        );
        let kwargs = args(json!({
            "column_name": "status",
            "values": ["placed", "shipped", "completed", "return_pending", "returned"],
            "model": "{{ get_where_subquery(ref('orders')) }}",
        }));
        let name =
            "accepted_values_orders_status__placed__shipped__completed__return_pending__returned";
        assert_eq!(
            unique_id_hash(name, &kwargs, "accepted_values", None),
            "be6b5b5ec3"
        );
        let kwargs = args(
            json!({"column_name": "customer_id", "to": "ref('customers')", "field": "customer_id", "model": "{{ get_where_subquery(ref('orders')) }}"}),
        );
        assert_eq!(
            unique_id_hash(
                "relationships_orders_customer_id__customer_id__ref_customers_",
                &kwargs,
                "relationships",
                None
            ),
            "c6ec7f58f2"
        );
        assert_eq!(
            py_repr(&json!({"b": ["x'y", "z"], "a": "q"})),
            "{'a': 'q', 'b': [\"x'y\", 'z']}"
        );
    }
}
