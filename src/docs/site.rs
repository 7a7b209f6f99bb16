//! The docs page's data: one compact JSON document built from the artifacts in the target
//! folder (manifest, catalog, run results, column lineage), so the same builder serves a dbt
//! manifest too. The page is one HTML file with the data and its script inlined, which is why it
//! opens from disk with no server.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

const PAGE: &str = include_str!("assets/index.html");
const STYLE: &str = include_str!("assets/app.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// The artifacts a site is built from; any of them may be missing (a project never run has no
/// run results, `docs generate --empty-catalog` no columns from the warehouse).
#[derive(Default)]
pub struct Artifacts {
    pub manifest: Value,
    pub catalog: Value,
    pub run_results: Value,
    pub lineage: Value,
}

impl Artifacts {
    pub fn read(target_dir: &Path) -> std::io::Result<Artifacts> {
        let read = |name: &str| -> std::io::Result<Value> {
            match std::fs::read_to_string(target_dir.join(name)) {
                Ok(text) => serde_json::from_str(&text).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{name} is not valid JSON: {e}"),
                    )
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Null),
                Err(e) => Err(e),
            }
        };
        let manifest = read("manifest.json")?;
        if manifest.is_null() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no manifest.json in {}: run `rsdbt docs generate` first",
                    target_dir.display()
                ),
            ));
        }
        Ok(Artifacts {
            manifest,
            catalog: read("catalog.json")?,
            run_results: read("run_results.json")?,
            lineage: read("lineage.json")?,
        })
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter(|x| x.is_string()).cloned().collect())
        .unwrap_or_default()
}

/// The page's data: nodes (with everything a node page shows) and the column lineage.
pub fn data(a: &Artifacts) -> Value {
    let m = &a.manifest;
    let empty = Map::new();
    let obj = |v: &Value, key: &str| v.get(key).and_then(Value::as_object).cloned();
    let catalog: Map<String, Value> = ["nodes", "sources"]
        .iter()
        .flat_map(|k| obj(&a.catalog, k).unwrap_or_default())
        .collect();
    let runs: BTreeMap<&str, &Value> = a
        .run_results
        .get("results")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(|x| (s(x, "unique_id"), x)).collect())
        .unwrap_or_default();
    // Tests listed by the node (and column) they guard.
    let mut tests: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let nodes = m.get("nodes").and_then(Value::as_object).unwrap_or(&empty);
    for t in nodes.values().filter(|t| s(t, "resource_type") == "test") {
        let attached = match t.get("attached_node").and_then(Value::as_str) {
            Some(a) => a.to_string(),
            None => t
                .pointer("/depends_on/nodes/0")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let short = t
            .pointer("/test_metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| s(t, "name"));
        tests
            .entry(attached)
            .or_default()
            .push((s(t, "column_name").to_string(), short.to_string()));
    }
    let mut out = Vec::new();
    let groups = ["nodes", "sources", "exposures"];
    for group in groups {
        for (id, n) in obj(m, group).unwrap_or_default() {
            let rtype = s(&n, "resource_type");
            let config = n.get("config").cloned().unwrap_or(json!({}));
            let cat = catalog.get(&id);
            let guarded = tests.get(&id);
            let mut columns: Vec<Value> = Vec::new();
            let declared = obj(&n, "columns").unwrap_or_default();
            let described = |name: &str| {
                declared
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, c)| c)
            };
            let column_tests = |name: &str| -> Vec<Value> {
                guarded
                    .map(|t| {
                        t.iter()
                            .filter(|(c, _)| c.eq_ignore_ascii_case(name))
                            .map(|(_, t)| json!(t))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let column = |name: &str, ty: &str| {
                let d = described(name);
                json!({
                    "name": name,
                    "type": ty,
                    "desc": markdown(d.map(|d| s(d, "description")).unwrap_or("")),
                    "tests": column_tests(name),
                })
            };
            // Warehouse columns in table order, then those only the yml declares.
            let cat_cols = cat
                .and_then(|c| obj(c, "columns"))
                .map(|c| {
                    let mut v: Vec<(i64, String, String)> = c
                        .values()
                        .map(|c| {
                            (
                                c.get("index").and_then(Value::as_i64).unwrap_or(0),
                                s(c, "name").to_string(),
                                s(c, "type").to_string(),
                            )
                        })
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default();
            for (_, name, ty) in &cat_cols {
                columns.push(column(name, ty));
            }
            for (name, c) in &declared {
                if !cat_cols
                    .iter()
                    .any(|(_, n, _)| n.eq_ignore_ascii_case(name))
                {
                    columns.push(column(name, s(c, "data_type")));
                }
            }
            // A model not built yet still has the columns its plan gives.
            if let Some(planned) = a
                .lineage
                .pointer(&format!(
                    "/models/{}/columns",
                    id.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_object)
            {
                for name in planned.keys() {
                    if !columns.iter().any(|c| {
                        c["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    }) {
                        columns.push(column(name, ""));
                    }
                }
            }
            let run = runs.get(id.as_str()).map(|r| {
                json!({"status": s(r, "status"), "time": r.get("execution_time"), "message": r.get("message")})
            });
            let row_count = cat
                .and_then(|c| c.pointer("/stats/row_count/value"))
                .cloned();
            let bytes = cat.and_then(|c| c.pointer("/stats/bytes/value")).cloned();
            let name = match rtype {
                "source" => format!("{}.{}", s(&n, "source_name"), s(&n, "name")),
                _ => s(&n, "name").to_string(),
            };
            let path = match s(&n, "original_file_path") {
                "" => s(&n, "path"),
                p => p,
            };
            out.push(json!({
                "id": id,
                "name": name,
                "type": rtype,
                "package": s(&n, "package_name"),
                "path": path,
                // The yml that describes the node: the path: method matches it too.
                "patch": n.get("patch_path").and_then(Value::as_str).and_then(|p| p.split_once("://")).map(|(_, p)| p),
                "fqn": strings(n.get("fqn")),
                "tags": strings(n.get("tags")),
                "materialized": config.get("materialized").and_then(Value::as_str).unwrap_or(match rtype { "source" => "source", _ => "" }),
                "relation": s(&n, "relation_name"),
                "desc": markdown(s(&n, "description")),
                "columns": columns,
                "tests": guarded.map(|t| t.iter().filter(|(c, _)| c.is_empty()).map(|(_, t)| json!(t)).collect::<Vec<_>>()).unwrap_or_default(),
                "raw": s(&n, "raw_code"),
                "compiled": n.get("compiled_code").cloned().unwrap_or(Value::Null),
                "config": config,
                "deps": strings(n.pointer("/depends_on/nodes")),
                "test_column": s(&n, "column_name"),
                // For the selector box's test_name: / test_type: methods.
                "test_name": n.pointer("/test_metadata/name").cloned().unwrap_or(Value::Null),
                "run": run,
                "rows": row_count,
                "bytes": bytes,
            }));
        }
    }
    json!({
        "project": m.pointer("/metadata/project_name").or_else(|| m.pointer("/metadata/project_id")).cloned().unwrap_or(Value::Null),
        "generated_at": m.pointer("/metadata/generated_at").cloned().unwrap_or(Value::Null),
        "nodes": out,
        "lineage": lineage(&a.lineage),
    })
}

/// lineage.json reduced to `{model: {column: [[node or relation, column], ...]}}`.
fn lineage(l: &Value) -> Value {
    let Some(models) = l.get("models").and_then(Value::as_object) else {
        return json!({});
    };
    let mut out = Map::new();
    for (id, m) in models {
        let Some(cols) = m.get("columns").and_then(Value::as_object) else {
            continue;
        };
        let cols: Map<String, Value> = cols
            .iter()
            .map(|(c, from)| {
                let from: Vec<Value> = from
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| {
                        let node = o
                            .get("node")
                            .and_then(Value::as_str)
                            .unwrap_or_else(|| s(o, "relation"));
                        json!([node, s(o, "column")])
                    })
                    .collect();
                (c.clone(), json!(from))
            })
            .collect();
        out.insert(id.clone(), Value::Object(cols));
    }
    Value::Object(out)
}

/// Markdown to HTML. Raw HTML in a description is shown as text, and links may only lead to
/// http(s), mailto or anchors: a description is untrusted input on a page with script.
pub fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    if text.trim().is_empty() {
        return String::new();
    }
    let safe = |url: &str| {
        let lower = url.trim().to_ascii_lowercase();
        let scheme = lower.split_once(':').map(|(s, _)| s);
        match scheme {
            None => true,
            Some(s) => ["http", "https", "mailto"].contains(&s) || s.contains('/'),
        }
    };
    let events =
        Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|e| {
            match e {
                Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
                Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe(&dest_url) => Event::Start(Tag::Link {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe(&dest_url) => Event::Start(Tag::Image {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                e => e,
            }
        });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// The page with `data` inlined. `</` is escaped in the JSON so no string in it can end the
/// script element.
pub fn page(data: &Value) -> String {
    let json = serde_json::to_string(data)
        .expect("JSON values serialize")
        .replace("</", "<\\/")
        .replace("<!--", "<\\!--");
    PAGE.replacen("/*STYLE*/", STYLE, 1)
        .replacen("/*SCRIPT*/", SCRIPT, 1)
        .replacen("{/*DATA*/}", &json, 1)
}

/// Writes `index.html` into the target folder from the artifacts there.
pub fn write(target_dir: &Path) -> std::io::Result<()> {
    let a = Artifacts::read(target_dir)?;
    let html = page(&data(&a));
    let tmp = target_dir.join("index.html.tmp");
    std::fs::write(&tmp, html)?;
    std::fs::rename(&tmp, target_dir.join("index.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_html_and_drops_script_links() {
        let html = markdown(
            "**Bold** <script>alert(1)</script> [x](javascript:alert(1)) [ok](https://a.b/c)",
        );
        assert!(html.contains("<strong>Bold</strong>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("href=\"#\""), "{html}");
        assert!(html.contains("href=\"https://a.b/c\""), "{html}");
    }

    #[test]
    fn page_data_cannot_close_its_script_element() {
        let html = page(&json!({"nodes": [{"raw": "select '</script><b>'"}]}));
        assert_eq!(
            html.matches("</script>").count(),
            PAGE.matches("</script>").count()
        );
    }
}
