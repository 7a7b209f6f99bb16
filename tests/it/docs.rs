//! `rsdbt docs generate`: catalog.json in dbt's structure, describing the relations as built.

use serde_json::json;

use crate::harness::Project;

#[test]
fn catalog_describes_every_built_relation() {
    let p = Project::example();
    p.rsdbt(&["build"]).expect(0);
    let out = p.rsdbt(&["docs", "generate"]).expect(0);
    assert!(
        out.stdout
            .contains("Catalog written to target/rsdbt/catalog.json"),
        "{}",
        out.stdout
    );
    let c: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/catalog.json")).unwrap();
    assert_eq!(
        c["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/catalog/v1.json"
    );
    assert_eq!(c["errors"], json!(null));
    let top = &c["nodes"]["model.pinboard.gld_top_posters"];
    assert_eq!(top["metadata"]["type"], "BASE TABLE");
    assert_eq!(top["metadata"]["schema"], "main_gold");
    let rows = p.query("select count(*) as n from {{ ref('gld_top_posters') }}");
    assert_eq!(top["stats"]["row_count"]["value"], rows[0]["n"]);
    assert_eq!(top["stats"]["has_stats"]["value"], true);
    // The size of the Delta table's current data files: the parquet files its log adds.
    let bytes = top["stats"]["bytes"]["value"].as_u64().unwrap();
    let on_disk: u64 = std::fs::read_dir(p.path().join("warehouse/main_gold/gld_top_posters"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(bytes > 0 && bytes <= on_disk, "{bytes} vs {on_disk}");
    // Columns in table order, with the engine's type names.
    let columns = top["columns"].as_object().unwrap();
    let first = columns.values().find(|c| c["index"] == 1).unwrap();
    assert!(
        first["type"].is_string() && first["name"].is_string(),
        "{first}"
    );
    let users = &c["nodes"]["seed.pinboard.users"]["columns"];
    assert_eq!(users["user_id"]["type"], "bigint");
    assert_eq!(users["age"]["type"], "integer");
    // Views are views; ephemeral models and disabled ones have no relation.
    assert_eq!(
        c["nodes"]["model.pinboard.brz_pins"]["metadata"]["type"],
        "VIEW"
    );
    assert!(
        c["nodes"]["model.pinboard.brz_pins"]["stats"]
            .get("row_count")
            .is_none()
    );
    assert!(
        c["nodes"]["model.pinboard.brz_pins"]["stats"]
            .get("bytes")
            .is_none()
    );
    assert!(c["nodes"].get("model.pinboard.int_pins_enriched").is_none());
    // The manifest now carries compiled SQL.
    let m: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/manifest.json")).unwrap();
    assert!(
        m["nodes"]["model.pinboard.gld_top_posters"]["compiled_code"]
            .as_str()
            .is_some_and(|s| s.contains("\"main_silver\""))
    );
    // --empty-catalog describes nothing.
    p.rsdbt(&["docs", "generate", "--empty-catalog"]).expect(0);
    let c: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/catalog.json")).unwrap();
    assert_eq!(c["nodes"], json!({}));
}

/// manifest.json lists a node's columns in the order its yml does, as dbt (tools show them
/// in that order).
#[test]
fn manifest_columns_keep_the_yml_order() {
    let p = Project::example();
    p.rsdbt(&["parse"]).expect(0);
    let text = p.read("target/rsdbt/manifest.json");
    let node = text
        .find("\"model.pinboard.slv_pins\":{")
        .expect("slv_pins in manifest.json");
    let cols = node + text[node..].find("\"columns\":{").unwrap();
    let at = |c: &str| cols + text[cols..].find(&format!("\"{c}\":{{\"name\"")).unwrap();
    let order = ["pin_id", "user_id", "media_type", "follower_count"].map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}
