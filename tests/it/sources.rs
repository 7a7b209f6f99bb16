//! External sources on the embedded engine: CSV, JSON and Parquet files (a file, a folder, a
//! glob), Delta and Iceberg tables by location, with time travel, joined in one model.

use serde_json::json;

use crate::harness::Project;

#[test]
fn files_of_every_format_join_in_one_model() {
    let p = Project::fixture("lake_shop");
    p.rsdbt(&["build"]).expect(0);
    assert_eq!(
        p.query(
            "select name, region, orders, amount from {{ ref('customer_orders') }} order by name"
        ),
        vec![
            json!({"name": "Ada", "region": "EMEA", "orders": 2, "amount": 15.5}),
            json!({"name": "Grace", "region": "AMER", "orders": 1, "amount": 7.25}),
            json!({"name": "Linus", "region": "EMEA", "orders": 0, "amount": 0.0}),
        ]
    );
    // The manifest keeps the declaration, as dbt-external-tables' `external`.
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    assert_eq!(
        manifest["sources"]["source.lake_shop.files.orders"]["external"],
        json!({"location": "data/orders.json", "file_format": "json"})
    );
    // The docs catalog describes them: columns, no row count (that could read everything).
    p.rsdbt(&["docs", "generate"]).expect(0);
    let catalog: serde_json::Value = serde_json::from_str(&p.read("target/catalog.json")).unwrap();
    let orders = &catalog["sources"]["source.lake_shop.files.orders"];
    assert_eq!(orders["metadata"]["type"], "EXTERNAL TABLE");
    let mut cols: Vec<&str> = orders["columns"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    cols.sort();
    assert_eq!(cols, ["amount", "customer_id", "order_id"]);
    assert!(orders["stats"].get("row_count").is_none());
}

#[test]
fn lake_tables_by_location_with_time_travel() {
    // A producer project writes a Delta seed and an Iceberg table, twice.
    let producer = Project::fixture("ice_shop");
    producer
        .rsdbt(&["build", "-s", "events", "ev_log"])
        .expect(0);
    producer.write(
        "seeds/events.csv",
        &format!(
            "{}4,new,2024-01-03,2024-01-03 09:00:00\n",
            producer.read("seeds/events.csv")
        ),
    );
    producer
        .rsdbt(&["build", "-s", "events", "ev_log"])
        .expect(0);
    let wh = producer.path().join("warehouse/main");
    let ice_dir = std::fs::read_dir(wh.join("ev_log.iceberg"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The first snapshot of the Iceberg table, from its metadata (as another reader sees it).
    let newest = std::fs::read_dir(ice_dir.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .max()
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
    let first_snapshot = meta["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|s| s["sequence-number"].as_i64())
        .unwrap()["snapshot-id"]
        .as_i64()
        .unwrap();

    let p = Project::fixture("lake_shop");
    p.write(
        "models/lake.yml",
        &format!(
            "version: 2\nsources:\n  - name: lake\n    tables:\n      - name: events\n        external: {{location: '{delta}', file_format: delta}}\n      - name: events_v0\n        external: {{location: '{delta}', file_format: delta, version: 0}}\n      - name: log\n        external: {{location: '{ice}', file_format: iceberg}}\n      - name: log_first\n        external: {{location: '{ice}', file_format: iceberg, snapshot_id: {first_snapshot}}}\n      - name: event_files\n        external: {{location: '{delta}/*.parquet', file_format: parquet}}\n",
            delta = wh.join("events").display(),
            ice = ice_dir.display(),
        ),
    );
    p.write(
        "models/counts.sql",
        "select (select count(*) from {{ source('lake', 'events') }}) as delta_now,\n  (select count(*) from {{ source('lake', 'events_v0') }}) as delta_v0,\n  (select count(*) from {{ source('lake', 'log') }}) as ice_now,\n  (select count(*) from {{ source('lake', 'log_first') }}) as ice_first,\n  (select count(*) from {{ source('lake', 'event_files') }}) as parquet_files\n",
    );
    p.rsdbt(&["run", "-s", "counts"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('counts') }}"),
        // Parquet files: the Delta table's two versions are both still on disk.
        vec![
            json!({"delta_now": 4, "delta_v0": 3, "ice_now": 4, "ice_first": 3, "parquet_files": 7})
        ]
    );
}

#[test]
fn bad_external_declarations_are_diagnostics() {
    let p = Project::fixture("lake_shop");
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    tables:\n      - name: blob\n        external: {location: data/blob.bin}\n",
    );
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr
            .contains("source 'broken.blob': unknown or missing file_format for data/blob.bin"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("models/bad.yml"), "{}", out.stderr);
    // A disabled source is left out, declaration and all.
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    config: {enabled: false}\n    tables:\n      - name: blob\n        external: {location: data/blob.bin}\n",
    );
    let out = p.rsdbt(&["run"]).expect(0);
    assert!(out.stdout.contains(", 3 sources,"), "{}", out.stdout);
    // A location with no data names the source and the path.
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    tables:\n      - name: blob\n        external: {location: data/missing.parquet}\n",
    );
    p.write(
        "models/uses_blob.sql",
        "select * from {{ source('broken', 'blob') }}",
    );
    let out = p.rsdbt(&["run", "-s", "uses_blob"]).expect(1);
    assert!(
        out.stdout.contains("source.lake_shop.broken.blob"),
        "{}",
        out.stdout
    );
}

#[test]
fn delta_parquet_csv_and_iceberg_sources_on_s3() {
    let Some((endpoint, python)) = crate::harness::s3() else {
        return;
    };
    let p = Project::fixture("check_shop");
    p.rsdbt(&["seed"]).expect(0);
    // The seeds' Delta table, one of its Parquet files and a CSV file, put into a new bucket.
    let bucket = format!("rsdbt-{}", std::process::id());
    let upload = r#"
import boto3, glob, os, sys
endpoint, bucket, root, csv = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
for f in glob.glob(root + "/**/*", recursive=True):
    if os.path.isfile(f):
        s3.upload_file(f, bucket, "lake/orders/" + os.path.relpath(f, root))
s3.upload_file(glob.glob(root + "/*.parquet")[0], bucket, "files/orders.parquet")
s3.upload_file(csv, bucket, "csv/customers.csv")
"#;
    let (table, csv) = (
        p.path().join("warehouse/main/orders"),
        p.path().join("seeds/customers.csv"),
    );
    crate::harness::run_python(
        &python,
        upload,
        &[
            endpoint.as_ref(),
            bucket.as_ref(),
            table.as_ref(),
            csv.as_ref(),
        ],
    );
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 2\n      s3: {{endpoint: \"{endpoint}\", allow_http: true, region: us-east-1, access_key_id: test, secret_access_key: test}}\n"
        ),
    );
    p.write(
        "models/s3.yml",
        &format!(
            "sources:\n  - name: s3\n    tables:\n      - name: orders\n        external: {{location: \"s3://{bucket}/lake/orders\", file_format: delta}}\n      - name: order_files\n        external: {{location: \"s3://{bucket}/files/\", file_format: parquet}}\n      - name: customers\n        external: {{location: \"s3://{bucket}/csv/customers.csv\", file_format: csv}}\n      - name: regions\n        external: {{location: \"s3://{bucket}/wh/shop/regions\", file_format: iceberg}}\n      - name: nothing\n        external: {{location: \"s3://no-such-bucket-{bucket}/x/\", file_format: parquet}}\n"
        ),
    );
    p.write(
        "models/s3_orders.sql",
        "{{ config(materialized='table') }}\n\
         select c.name, d.order_id, d.amount, f.ordered_at\n\
         from {{ source('s3', 'orders') }} d\n\
         join {{ source('s3', 'order_files') }} f on f.order_id = d.order_id\n\
         join {{ source('s3', 'customers') }} c on c.customer_id = d.customer_id\n",
    );
    p.rsdbt(&["run", "-s", "s3_orders"]).expect(0);
    assert_eq!(
        p.query("select name, order_id, amount from {{ ref('s3_orders') }} order by order_id"),
        vec![
            json!({"name": "Ada", "order_id": 1, "amount": 12.5}),
            json!({"name": "Grace", "order_id": 2, "amount": 7.25}),
        ]
    );
    // An Iceberg table another writer (pyiceberg, through pyarrow's S3 client) made on S3:
    // the newest metadata file is found by listing the table's folder.
    let pyiceberg = std::env::var("RSDBT_TEST_PYICEBERG")
        .expect("scripts/test.sh installs pyiceberg (RSDBT_TEST_PYICEBERG)");
    let write = r#"
import sys
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
endpoint, bucket, root = sys.argv[1:4]
cat = SqlCatalog("t", **{"uri": f"sqlite:///{root}/s3cat.db", "warehouse": f"s3://{bucket}/wh",
    "s3.endpoint": endpoint, "s3.access-key-id": "test", "s3.secret-access-key": "test",
    "s3.region": "us-east-1"})
cat.create_namespace("shop")
t = cat.create_table("shop.regions", schema=pa.schema([("country", pa.string()), ("region", pa.string())]))
t.append(pa.table({"country": ["UK"], "region": ["EMEA"]}))
t.append(pa.table({"country": ["US"], "region": ["AMER"]}))
"#;
    crate::harness::run_python(
        &pyiceberg,
        write,
        &[endpoint.as_ref(), bucket.as_ref(), p.path().as_ref()],
    );
    p.write(
        "models/s3_regions.sql",
        "select * from {{ source('s3', 'regions') }}\n",
    );
    p.rsdbt(&["run", "-s", "s3_regions"]).expect(0);
    let regions = vec![
        json!({"country": "UK", "region": "EMEA"}),
        json!({"country": "US", "region": "AMER"}),
    ];
    assert_eq!(
        p.query("select country, region from {{ ref('s3_regions') }} order by country"),
        regions
    );
    // The same table through pyiceberg's catalog (a local SQLite file, tables on S3).
    p.append(
        "profiles.yml",
        &format!(
            "      iceberg_catalogs:\n        s3cat: {{uri: \"sqlite:///{}/s3cat.db\", warehouse: \"s3://{bucket}/wh\", catalog_name: t}}\n",
            p.path().display()
        ),
    );
    p.append(
        "models/s3.yml",
        "  - name: shop\n    external: {catalog: s3cat}\n    tables:\n      - name: regions\n",
    );
    assert_eq!(
        p.query("select country, region from {{ source('shop', 'regions') }} order by country"),
        regions
    );
    // A bucket that does not exist: the source, its location and S3's answer, before running.
    p.write(
        "models/s3_nothing.sql",
        "select * from {{ source('s3', 'nothing') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "s3_nothing"]).expect(2);
    assert!(
        out.stderr
            .contains("source.check_shop.s3.nothing (s3://no-such-bucket-")
            && out.stderr.contains("404"),
        "{}",
        out.stderr
    );
}

/// The warehouse itself on S3: rebuilding a table with fewer columns (which deltalake cannot
/// overwrite, so the new table is copied into place), switching a model between view, Delta
/// and Iceberg, a failing model keeping its previous table, and the catalog's table list.
#[test]
fn a_warehouse_on_s3_rebuilds_switches_and_keeps_tables_on_failure() {
    let Some((endpoint, python)) = crate::harness::s3() else {
        return;
    };
    let p = Project::fixture("check_shop");
    let bucket = format!("rsdbt-own-{}", std::process::id());
    let keys = |create: &str| crate::harness::s3_keys(&python, &endpoint, &bucket, create == "1");
    keys("1");
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: s3://{bucket}/lake/\n      iceberg_catalog: ice.db\n      schema: main\n      threads: 2\n      s3: {{endpoint: \"{endpoint}\", allow_http: true, region: us-east-1, access_key_id: test, secret_access_key: test}}\n"
        ),
    );
    // Columns that a later build drops and renames.
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name, count(o.order_id) as orders, sum(o.order_amount) as total\nfrom {{ ref('stg_orders') }} o join {{ ref('customers') }} c on c.customer_id = o.customer_id group by c.name\n",
    );
    p.rsdbt(&["build"]).expect(0);
    assert!(!p.path().join("warehouse").exists());
    let totals = || p.query("select * from {{ ref('customer_totals') }} order by name");
    assert_eq!(
        totals(),
        vec![
            json!({"name": "Ada", "orders": 1, "total": 12.5}),
            json!({"name": "Grace", "orders": 1, "total": 7.25})
        ]
    );
    // Columns dropped and renamed: the table is overwritten in one commit.
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name as customer from {{ ref('customers') }} c\n",
    );
    p.rsdbt(&["run", "-s", "customer_totals"]).expect(0);
    let renamed = vec![json!({"customer": "Ada"}), json!({"customer": "Grace"})];
    let customers = || p.query("select * from {{ ref('customer_totals') }} order by customer");
    assert_eq!(customers(), renamed);
    let objects = keys("0");
    assert!(
        !objects.iter().any(|k| k.contains("rsdbt_tmp")),
        "the staging copy is gone: {objects:?}"
    );
    // Its history goes on (tables are written with nullable columns, which deltalake can
    // overwrite with fewer columns; only a table with a non-null column from an older rsdbt is
    // rebuilt beside the old one and copied into place).
    let log: Vec<&String> = objects
        .iter()
        .filter(|k| k.starts_with("lake/main/customer_totals/_delta_log/"))
        .collect();
    assert_eq!(
        log,
        vec![
            "lake/main/customer_totals/_delta_log/00000000000000000000.json",
            "lake/main/customer_totals/_delta_log/00000000000000000001.json"
        ]
    );
    // A model that fails leaves the table it had.
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect cast(name as int) as name from {{ ref('customers') }}\n",
    );
    p.rsdbt(&["run", "-s", "customer_totals"]).expect(1);
    assert_eq!(customers(), renamed);
    // Delta → Iceberg → Parquet → view → Delta: each build removes what stood under the name
    // before.
    for (materialized, format, kind) in [
        ("table", "iceberg", ".iceberg/"),
        ("table", "parquet", ".parquet/"),
        ("view", "delta", ".view.sql"),
        ("table", "delta", "/"),
    ] {
        p.write(
            "models/customer_totals.sql",
            &format!("{{{{ config(materialized='{materialized}', table_format='{format}') }}}}\nselect c.name, 1 as n from {{{{ ref('customers') }}}} c\n"),
        );
        p.rsdbt(&["run", "-s", "customer_totals"]).expect(0);
        assert_eq!(
            totals(),
            vec![
                json!({"name": "Ada", "n": 1}),
                json!({"name": "Grace", "n": 1})
            ]
        );
        let objects: Vec<String> = keys("0")
            .into_iter()
            .filter(|k| k.starts_with("lake/main/customer_totals"))
            .collect();
        assert!(
            objects
                .iter()
                .any(|k| k.contains("/_delta_log/") == (kind == "/"))
                && objects
                    .iter()
                    .all(|k| k.starts_with(&format!("lake/main/customer_totals{kind}"))),
            "{materialized} {format}: {objects:?}"
        );
    }
    // A bucket that is not there stops the command before anything runs, naming it.
    let profile = p.read("profiles.yml");
    p.write(
        "profiles.yml",
        &profile.replace(&format!("s3://{bucket}/"), &format!("s3://{bucket}-gone/")),
    );
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr.contains(&format!(
            "cannot reach the warehouse s3://{bucket}-gone/lake"
        )) && out.stderr.contains("NoSuchBucket"),
        "{}",
        out.stderr
    );
    p.write("profiles.yml", &profile);
    // DataFusion's catalog lists the tables and views on S3.
    assert_eq!(
        p.query("select table_name, table_type from information_schema.tables where table_schema = 'main' order by table_name"),
        vec![
            json!({"table_name": "customer_totals", "table_type": "BASE TABLE"}),
            json!({"table_name": "customers", "table_type": "BASE TABLE"}),
            json!({"table_name": "orders", "table_type": "BASE TABLE"}),
            json!({"table_name": "stg_orders", "table_type": "VIEW"}),
        ]
    );
}

/// Iceberg tables another tool (pyiceberg) keeps in its SQL catalog, read through that catalog:
/// the catalog says which metadata file is current, so a newer append is seen, and a pinned
/// snapshot reads the older rows.
#[test]
fn iceberg_sources_through_a_catalog() {
    let Some(python) = crate::harness::pyiceberg() else {
        return;
    };
    let p = Project::fixture("check_shop");
    let write = r#"
import sys, json
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
root, step = sys.argv[1:3]
cat = SqlCatalog("lakehouse", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/lake")
if step == "1":
    cat.create_namespace("crm")
    t = cat.create_table("crm.accounts", schema=pa.schema([("id", pa.int64()), ("tier", pa.string())]))
    t.append(pa.table({"id": [1, 2], "tier": ["gold", "free"]}))
else:
    t = cat.load_table("crm.accounts")
    first = t.snapshots()[0].snapshot_id
    t.append(pa.table({"id": [3], "tier": ["gold"]}))
    print(first)
"#;
    let run = |step: &str| {
        crate::harness::run_python(&python, write, &[p.path().as_ref(), step.as_ref()])
            .trim()
            .to_string()
    };
    run("1");
    let root = p.path().display();
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      iceberg_catalogs:\n        lakehouse: {{uri: \"sqlite:///{root}/catalog.db\", warehouse: \"file://{root}/lake\"}}\n        missing: {{uri: \"sqlite:///{root}/nothing.db\", warehouse: \"file://{root}/lake\"}}\n"
        ),
    );
    p.write(
        "models/crm.yml",
        "sources:\n  - name: crm\n    external: {catalog: lakehouse}\n    tables:\n      - name: accounts\n  - name: crm_then\n    tables:\n      - name: accounts\n        external: {catalog: lakehouse, namespace: crm, snapshot_id: FIRST}\n  - name: nowhere\n    tables:\n      - name: accounts\n        external: {catalog: missing, namespace: crm}\n",
    );
    p.write(
        "models/gold_accounts.sql",
        "{{ config(materialized='table') }}\nselect tier, count(*) as n from {{ source('crm', 'accounts') }} group by tier\n",
    );
    p.rsdbt(&["run", "-s", "gold_accounts"]).expect(0);
    let tiers = || p.query("select tier, n from {{ ref('gold_accounts') }} order by tier");
    assert_eq!(
        tiers(),
        vec![
            json!({"tier": "free", "n": 1}),
            json!({"tier": "gold", "n": 1})
        ]
    );
    let first = run("2");
    p.rsdbt(&["run", "-s", "gold_accounts"]).expect(0);
    assert_eq!(
        tiers(),
        vec![
            json!({"tier": "free", "n": 1}),
            json!({"tier": "gold", "n": 2})
        ]
    );
    // The first snapshot, pinned: the rows before the append.
    p.write(
        "models/crm.yml",
        &p.read("models/crm.yml").replace("FIRST", &first),
    );
    assert_eq!(
        p.query("select count(*) as n from {{ source('crm_then', 'accounts') }}"),
        vec![json!({"n": 2})]
    );
    // A catalog file that is not there: the source, the catalog and the reason.
    p.write(
        "models/nowhere.sql",
        "select * from {{ source('nowhere', 'accounts') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "nowhere"]).expect(1);
    assert!(
        out.stdout.contains(
            "source.check_shop.nowhere.accounts (Iceberg table crm.accounts in catalog 'missing')"
        ) && out.stdout.contains("cannot open Iceberg catalog 'missing'")
            && out.stdout.contains("unable to open database file"),
        "{}",
        out.stdout
    );
}
