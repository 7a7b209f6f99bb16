//! Kafka sources against the real broker scripts/test.sh starts (Tansu): records read exactly
//! once by incremental models, across runs, failures and kills.

use std::time::Duration;

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use serde_json::json;

use crate::harness::{Project, Running, kafka};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(broker: &str) -> Client {
    ClientBuilder::new(vec![broker.to_string()])
        .build()
        .await
        .expect("connect to the test broker")
}

/// A topic of its own for a test (they share the broker), with `partitions` partitions.
fn topic(broker: &str, name: &str, partitions: i32) -> String {
    let topic = format!("{name}_{}", uuid::Uuid::new_v4().simple());
    runtime().block_on(async {
        let c = connect(broker).await;
        c.controller_client()
            .unwrap()
            .create_topic(topic.clone(), partitions, 1, 5_000)
            .await
            .expect("create topic");
    });
    topic
}

/// Sends `values` to the topic, spread over its partitions by index.
fn produce(broker: &str, topic: &str, partitions: i32, values: &[String]) {
    runtime().block_on(async {
        let c = connect(broker).await;
        for p in 0..partitions {
            let pc = c
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            let records: Vec<Record> = values
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as i32 % partitions == p)
                .map(|(i, v)| Record {
                    key: Some(format!("k{i}").into_bytes()),
                    value: Some(v.clone().into_bytes()),
                    headers: Default::default(),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            for chunk in records.chunks(5_000) {
                pc.produce(chunk.to_vec(), Compression::NoCompression)
                    .await
                    .unwrap();
            }
        }
    });
}

fn orders(range: std::ops::Range<i64>) -> Vec<String> {
    range
        .map(|i| {
            json!({"id": i, "item": format!("item {i}"), "amount": i as f64 * 1.5}).to_string()
        })
        .collect()
}

/// An empty project whose source `<source>.orders` has `external` (a YAML flow mapping) and
/// `columns` (YAML lines), and an incremental bronze model over it.
fn bronze_over(source: &str, external: &str, columns: &str) -> Project {
    let p = Project::fixture("tests_shop");
    for dir in ["models", "seeds", "data-tests", "snapshots"] {
        let _ = std::fs::remove_dir_all(p.path().join(dir));
    }
    p.write(
        "models/sources.yml",
        &format!(
            "version: 2\nsources:\n  - name: {source}\n    tables:\n      - name: orders\n        external: {external}\n{columns}"
        ),
    );
    p.write(
        "models/bronze_orders.sql",
        &format!(
            "{{{{ config(materialized='incremental') }}}}\nselect * from {{{{ source('{source}', 'orders') }}}}\n"
        ),
    );
    p
}

/// A project with a Kafka source `stream.orders` and an incremental bronze model over it.
fn project(broker: &str, topic: &str, format: &str, columns: &str) -> Project {
    let p = bronze_over(
        "stream",
        &format!("{{kafka: {{brokers: \"{broker}\", topic: {topic}, format: {format}}}}}"),
        columns,
    );
    p.write(
        "models/silver_orders.sql",
        "select id, item, amount from {{ ref('bronze_orders') }} where _error is null\n",
    );
    p
}

const TYPED: &str = "        columns:\n          - {name: id, data_type: bigint}\n          - {name: item, data_type: varchar}\n          - {name: amount, data_type: double}\n";

fn count(p: &Project, sql: &str) -> u64 {
    p.query(sql)[0]["n"].as_u64().unwrap()
}

/// Rows of bronze, and whether each (partition, offset) is there once.
fn bronze_rows(p: &Project) -> (u64, u64) {
    (
        count(p, "select count(*) as n from {{ ref('bronze_orders') }}"),
        count(
            p,
            "select count(*) as n from (select distinct _partition, _offset from {{ ref('bronze_orders') }})",
        ),
    )
}

fn delta_versions(p: &Project, table: &str) -> usize {
    std::fs::read_dir(
        p.path()
            .join("warehouse/main")
            .join(table)
            .join("_delta_log"),
    )
    .unwrap()
    .flatten()
    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
    .count()
}

#[test]
fn json_records_are_read_exactly_once_across_runs() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "orders", 2);
    let mut first = orders(0..5);
    first.push("not json at all".into());
    first.push(r#"{"id": "seven", "item": "x", "amount": 1}"#.into());
    produce(&broker, &t, 2, &first);
    let p = project(&broker, &t, "json", TYPED);

    let out = p.rsdbt(&["run"]).expect(0);
    assert!(out.stdout.contains("bronze_orders"), "{}", out.stdout);
    assert_eq!(bronze_rows(&p), (7, 7));
    assert_eq!(
        p.query("select id, item, amount from {{ ref('silver_orders') }} order by id"),
        (0..5)
            .map(|i| json!({"id": i, "item": format!("item {i}"), "amount": i as f64 * 1.5}))
            .collect::<Vec<_>>()
    );
    // Bad records are kept with their error, their text and where they came from.
    let rejects = p.query(
        "select id, _raw, _error, _topic, _partition from {{ ref('bronze_orders') }} where _error is not null order by _raw",
    );
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["_raw"], json!("not json at all"));
    assert_eq!(rejects[0]["_error"], json!("not a JSON object"));
    assert_eq!(rejects[0]["id"], json!(null));
    assert_eq!(rejects[0]["_topic"], json!(t));
    assert!(
        rejects[1]["_error"].as_str().unwrap().contains("seven"),
        "{rejects:?}"
    );
    let keys = p.query("select _key from {{ ref('bronze_orders') }} where id = 3");
    assert_eq!(keys, vec![json!({"_key": "k3"})]);

    // Nothing new: no rows, and no commit.
    let versions = delta_versions(&p, "bronze_orders");
    p.rsdbt(&["run", "-s", "bronze_orders"]).expect(0);
    assert_eq!(bronze_rows(&p), (7, 7));
    assert_eq!(delta_versions(&p, "bronze_orders"), versions);

    // Only the new records.
    produce(&broker, &t, 2, &orders(100..104));
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(bronze_rows(&p), (11, 11));
    assert_eq!(
        count(
            &p,
            "select count(*) as n from {{ ref('silver_orders') }} where id >= 100"
        ),
        4
    );

    // A plain query reads the whole topic and commits nothing.
    assert_eq!(
        count(
            &p,
            "select count(*) as n from {{ source('stream', 'orders') }}"
        ),
        11
    );
    p.rsdbt(&["run", "-s", "bronze_orders"]).expect(0);
    assert_eq!(bronze_rows(&p), (11, 11));

    // A full refresh reads from the start again, once.
    p.rsdbt(&["run", "--full-refresh"]).expect(0);
    assert_eq!(bronze_rows(&p), (11, 11));
}

#[test]
fn a_failed_run_commits_nothing_and_the_next_reads_the_same_records() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "fails", 1);
    produce(&broker, &t, 1, &orders(0..3));
    let p = project(&broker, &t, "json", TYPED);
    p.rsdbt(&["run", "-s", "bronze_orders"]).expect(0);
    produce(&broker, &t, 1, &orders(10..13));
    // The model reads the new records, then fails while computing its rows.
    p.write(
        "models/bronze_orders.sql",
        "{{ config(materialized='incremental') }}\nselect *, cast(case when id = 11 then 'boom' else '1' end as int) as flag from {{ source('stream', 'orders') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "bronze_orders"]).expect(1);
    assert!(out.stdout.contains("boom"), "{}", out.stdout);
    assert_eq!(bronze_rows(&p), (3, 3));
    p.write(
        "models/bronze_orders.sql",
        "{{ config(materialized='incremental', on_schema_change='append_new_columns') }}\nselect *, 1 as flag from {{ source('stream', 'orders') }}\n",
    );
    p.rsdbt(&["run", "-s", "bronze_orders"]).expect(0);
    assert_eq!(bronze_rows(&p), (6, 6));
    assert_eq!(
        count(
            &p,
            "select count(*) as n from {{ ref('bronze_orders') }} where id >= 10 and flag = 1"
        ),
        3
    );
}

#[test]
fn killed_runs_reread_and_end_without_duplicates() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "killed", 2);
    let p = project(&broker, &t, "json", TYPED);
    let mut produced = 0;
    let mut killed = 0;
    for (trial, delay) in [50u64, 150, 300, 600, 1200].into_iter().enumerate() {
        produce(&broker, &t, 2, &orders(produced..produced + 20_000));
        produced += 20_000;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
            .args(["run", "-s", "bronze_orders"])
            .current_dir(p.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("trial {trial}: killed after {delay} ms");
        // Whatever the kill interrupted, the table has each record at most once (a first run
        // killed before its commit leaves no table).
        if p.path()
            .join("warehouse/main/bronze_orders/_delta_log/00000000000000000000.json")
            .exists()
        {
            let (rows, distinct) = bronze_rows(&p);
            assert_eq!(rows, distinct, "trial {trial}");
        }
    }
    assert!(
        killed >= 3,
        "only {killed} of 5 runs were killed while running"
    );
    p.rsdbt(&["run", "-s", "bronze_orders"]).expect(0);
    assert_eq!(bronze_rows(&p), (produced as u64, produced as u64));
}

#[test]
fn csv_records_are_typed_by_the_declared_columns() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "csv", 1);
    produce(
        &broker,
        &t,
        1,
        &[
            "1,apple,2.5".into(),
            "2,\"pear, green\",".into(),
            "3,plum".into(),
            "x,fig,1".into(),
        ],
    );
    let p = project(&broker, &t, "csv", TYPED);
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(
        p.query("select id, item, amount, _error from {{ ref('bronze_orders') }} order by _offset"),
        vec![
            json!({"id": 1, "item": "apple", "amount": 2.5, "_error": null}),
            json!({"id": 2, "item": "pear, green", "amount": null, "_error": null}),
            json!({"id": null, "item": null, "amount": null, "_error": "2 fields where the source declares 3 columns"}),
            json!({"id": null, "item": null, "amount": null, "_error": "column 'id': 'x' is not a Int64"}),
        ]
    );
}

#[test]
fn a_broker_that_is_down_stops_the_run_naming_it() {
    let Some(_) = kafka() else { return };
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("127.0.0.1:{port}");
    let p = project(&broker, "orders", "json", TYPED);
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr
            .contains(&format!("the Kafka broker {broker} does not answer")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("models/sources.yml"), "{}", out.stderr);
    assert!(!p.path().join("warehouse/main/bronze_orders").exists());

    // A topic the broker does not have.
    let broker = kafka().unwrap();
    let p = project(&broker, "no_such_topic_here", "json", TYPED);
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr.contains("has no topic 'no_such_topic_here'"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_incremental_model_on_iceberg_cannot_read_a_stream() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "iceberg", 1);
    produce(&broker, &t, 1, &orders(0..2));
    let p = project(&broker, &t, "json", TYPED);
    p.write(
        "models/bronze_orders.sql",
        "{{ config(materialized='incremental', table_format='iceberg') }}\nselect * from {{ source('stream', 'orders') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "bronze_orders"]).expect(2);
    assert!(
        out.stderr
            .contains("model 'bronze_orders' reads source.tests_shop.stream.orders incrementally")
            && out.stderr.contains("which needs a Delta table"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("models/bronze_orders.sql"),
        "{}",
        out.stderr
    );
    assert!(!p.path().join("warehouse/main/bronze_orders").exists());
}

/// The example project's `stream` target: pin events produced by scripts/produce_events.sh go
/// through bronze (exactly once), silver and gold, and a second batch adds only itself.
#[test]
fn the_example_streams_pin_events_through_bronze_silver_and_gold() {
    let Some(broker) = kafka() else { return };
    let topic = format!("pin_events_{}", uuid::Uuid::new_v4().simple());
    // The example producer, built beside the tests (cargo builds examples with them).
    let producer = std::path::Path::new(env!("CARGO_BIN_EXE_rsdbt"))
        .with_file_name("examples")
        .join("produce");
    assert!(producer.exists(), "{} is not built", producer.display());
    let send = |first: &str, count: &str| {
        let status = std::process::Command::new("bash")
            .arg(crate::harness::repo_root().join("scripts/produce_events.sh"))
            .args([broker.as_str(), count, first, topic.as_str()])
            .env("PRODUCE", &producer)
            .status()
            .unwrap();
        assert!(status.success());
    };
    send("0", "400");
    produce(
        &broker,
        &topic,
        1,
        &["{\"event_id\": 9999, \"pin_id\":".into()],
    );
    let p = Project::example();
    let env = [
        ("RSDBT_KAFKA_BROKERS", broker.as_str()),
        ("RSDBT_KAFKA_TOPIC", topic.as_str()),
    ];
    let query = |sql: &str| -> serde_json::Value {
        let out = p
            .rsdbt_env(
                &["show", "-t", "stream", "--inline", sql, "--output", "json"],
                &env,
            )
            .expect(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["show"][0].clone()
    };
    let figures = || {
        query(
            "select (select count(*) from {{ ref('brz_pin_events') }}) as bronze, \
                    (select count(*) from {{ ref('brz_pin_events') }} where _error is not null) as rejects, \
                    (select count(*) from {{ ref('slv_pin_events') }}) as silver, \
                    (select count(distinct event_id) from {{ ref('slv_pin_events') }}) as distinct_silver, \
                    (select sum(events) from {{ ref('gld_engagement_by_category') }}) as gold",
        )
    };
    let out = p.rsdbt_env(&["build", "-t", "stream"], &env).expect(0);
    assert!(out.stdout.contains("brz_pin_events"), "{}", out.stdout);
    let first = figures();
    assert_eq!(first["bronze"], json!(401), "{first}");
    assert_eq!(first["rejects"], json!(1), "{first}");
    let silver = first["silver"].as_u64().unwrap();
    // Every event is on a pin of the example's seed; those the seed's cleaning drops go.
    assert!(silver > 300 && silver <= 400, "{first}");
    assert_eq!(first["distinct_silver"], first["silver"]);
    assert_eq!(first["gold"], first["silver"]);

    send("400", "100");
    p.rsdbt_env(
        &["build", "-t", "stream", "-s", "+gld_engagement_by_category"],
        &env,
    )
    .expect(0);
    let second = figures();
    assert_eq!(second["bronze"], json!(501), "{second}");
    let added = second["silver"].as_u64().unwrap() - silver;
    assert!(added > 70 && added <= 100, "{second}");
    assert_eq!(second["distinct_silver"], second["silver"]);
    assert_eq!(second["gold"], second["silver"]);
}

#[test]
fn watch_sources_reruns_the_stream_and_its_descendants_when_records_arrive() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "watched", 2);
    produce(&broker, &t, 2, &orders(0..3));
    let p = project(&broker, &t, "json", TYPED);
    p.write("models/unrelated.sql", "select 1 as one\n");
    let mut w = Running::start(&p, &["run", "--watch-sources", "--watch-interval", "0.2"]);
    let first = w.wait_for("Watching for changes and new records");
    assert!(first.contains("unrelated"), "{first}");
    produce(&broker, &t, 2, &orders(10..15));
    let pass = w.wait_for("after new records in stream.orders");
    // Only what reads the stream, and what is downstream of it.
    assert!(
        pass.contains("bronze_orders") && pass.contains("silver_orders"),
        "{pass}"
    );
    assert!(!pass.contains("unrelated"), "{pass}");
    w.wait_for("Watching for changes and new records");
    assert_eq!(bronze_rows(&p), (8, 8));
    assert_eq!(
        count(&p, "select count(*) as n from {{ ref('silver_orders') }}"),
        8
    );
    let _ = w.child.kill();
    let _ = w.child.wait();
}

/// `incremental: files`: files a sink keeps landing in a folder are read once each; a file
/// rewritten under its old name is reported; a full refresh reads them all again.
#[test]
fn landed_files_are_ingested_once_and_a_rewritten_one_is_reported() {
    let p = bronze_over(
        "landing",
        "{location: landing/orders, file_format: json, incremental: files}",
        "",
    );
    let land = |name: &str, ids: std::ops::Range<i64>| {
        let lines: Vec<String> = ids
            .map(|i| json!({"id": i, "item": format!("item {i}")}).to_string())
            .collect();
        p.write(
            &format!("landing/orders/{name}"),
            &(lines.join("\n") + "\n"),
        );
    };
    let ids = |p: &Project| -> Vec<i64> {
        p.query("select id from {{ ref('bronze_orders') }} order by id")
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    land("part-0001.json", 0..3);
    land("part-0002.json", 3..5);
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(ids(&p), vec![0, 1, 2, 3, 4]);

    // Nothing landed: no rows and no commit.
    let versions = delta_versions(&p, "bronze_orders");
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(ids(&p), vec![0, 1, 2, 3, 4]);
    assert_eq!(delta_versions(&p, "bronze_orders"), versions);

    // A new file: only its rows.
    land("part-0003.json", 5..7);
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(ids(&p), vec![0, 1, 2, 3, 4, 5, 6]);

    // A plain query reads every file.
    assert_eq!(
        count(
            &p,
            "select count(*) as n from {{ source('landing', 'orders') }}"
        ),
        7
    );

    // A file rewritten under its name: the node fails naming it, the table keeps its rows.
    std::thread::sleep(std::time::Duration::from_millis(20));
    land("part-0002.json", 100..102);
    let out = p.rsdbt(&["run"]).expect(1);
    assert!(
        out.stdout
            .contains("the landed file part-0002.json was rewritten after it was ingested"),
        "{}",
        out.stdout
    );
    assert_eq!(ids(&p), vec![0, 1, 2, 3, 4, 5, 6]);

    // A full refresh reads what the folder holds now.
    p.rsdbt(&["run", "--full-refresh"]).expect(0);
    assert_eq!(ids(&p), vec![0, 1, 2, 5, 6, 100, 101]);
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(ids(&p), vec![0, 1, 2, 5, 6, 100, 101]);
}

/// Kinesis against moto's emulator (started by scripts/test.sh for the S3 tests): the same
/// exactly-once contract across two shards.
#[test]
fn kinesis_records_are_read_exactly_once_across_shards() {
    let Some((endpoint, python)) = crate::harness::s3() else {
        return;
    };
    let stream = format!("clicks_{}", uuid::Uuid::new_v4().simple());
    let put = |first: i64, count: i64, bad: bool| {
        let script = r#"
import boto3, json, sys
endpoint, stream, first, count, bad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
k = boto3.client("kinesis", endpoint_url=endpoint, aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1")
if first == 0:
    k.create_stream(StreamName=stream, ShardCount=2)
    k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1})
records = [{"Data": json.dumps({"id": i, "item": f"item {i}", "amount": i * 1.5}).encode(),
            "PartitionKey": f"k{i}",
            # Half the records to each shard's hash range.
            "ExplicitHashKey": str(0 if i % 2 == 0 else 2**127 + 1)}
           for i in range(first, first + count)]
if bad:
    records.append({"Data": b"not json", "PartitionKey": "bad", "ExplicitHashKey": "0"})
k.put_records(StreamName=stream, Records=records)
"#;
        crate::harness::run_python(
            &python,
            script,
            &[
                endpoint.as_ref(),
                stream.as_ref(),
                first.to_string().as_ref(),
                count.to_string().as_ref(),
                (if bad { "1" } else { "0" }).as_ref(),
            ],
        );
    };
    put(0, 6, true);
    let kinesis = |stream: &str| {
        format!("{{kinesis: {{stream: {stream}, region: us-east-1, endpoint: \"{endpoint}\"}}}}")
    };
    let p = bronze_over("stream", &kinesis(&stream), TYPED);
    let env = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let query = |sql: &str| -> Vec<serde_json::Value> {
        let out = p
            .rsdbt_env(
                &["show", "--inline", sql, "--limit", "-1", "--output", "json"],
                &env,
            )
            .expect(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["show"].as_array().unwrap().clone()
    };
    let figures = || {
        query(
            "select count(*) as n, count(distinct _shard_id || '/' || _sequence_number) as seqs, count(distinct _shard_id) as shards, \
             count(_error) as rejects, count(distinct id) as ids from {{ ref('bronze_orders') }}",
        )[0]
            .clone()
    };
    p.rsdbt_env(&["run"], &env).expect(0);
    assert_eq!(
        figures(),
        json!({"n": 7, "seqs": 7, "shards": 2, "rejects": 1, "ids": 6})
    );
    let bad = query(
        "select _raw, _error, _partition_key from {{ ref('bronze_orders') }} where _error is not null",
    );
    assert_eq!(
        bad,
        vec![json!({"_raw": "not json", "_error": "not a JSON object", "_partition_key": "bad"})]
    );

    // Nothing new: no commit.
    let versions = delta_versions(&p, "bronze_orders");
    p.rsdbt_env(&["run"], &env).expect(0);
    assert_eq!(delta_versions(&p, "bronze_orders"), versions);

    put(100, 4, false);
    p.rsdbt_env(&["run"], &env).expect(0);
    assert_eq!(
        figures(),
        json!({"n": 11, "seqs": 11, "shards": 2, "rejects": 1, "ids": 10})
    );
    p.rsdbt_env(&["run", "--full-refresh"], &env).expect(0);
    assert_eq!(
        figures(),
        json!({"n": 11, "seqs": 11, "shards": 2, "rejects": 1, "ids": 10})
    );

    // A stream that does not exist stops the run before anything runs.
    p.write(
        "models/sources.yml",
        &p.read("models/sources.yml")
            .replace(&stream, "no_such_stream"),
    );
    let out = p.rsdbt_env(&["run"], &env).expect(2);
    assert!(out.stderr.contains("no_such_stream"), "{}", out.stderr);
}

#[test]
fn json_columns_are_inferred_when_not_declared_and_on_error_fail_stops_the_node() {
    let Some(broker) = kafka() else { return };
    let t = topic(&broker, "inferred", 1);
    let mut values = orders(0..3);
    values.push(r#"{"id": 3, "item": "late", "amount": 4.5, "note": null}"#.into());
    produce(&broker, &t, 1, &values);
    let p = project(&broker, &t, "json", "");
    p.rsdbt(&["run"]).expect(0);
    let columns = p.query(
        "select column_name, data_type from information_schema.columns where table_name = 'bronze_orders' order by ordinal_position",
    );
    let columns: Vec<(String, String)> = columns
        .iter()
        .map(|c| {
            (
                c["column_name"].as_str().unwrap().to_string(),
                c["data_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Text reads back from Delta as Utf8View; a field only ever null is text.
    let expected = [
        ("id", "Int64"),
        ("item", "Utf8View"),
        ("amount", "Float64"),
        ("note", "Utf8View"),
        ("_topic", "Utf8View"),
        ("_offset", "Int64"),
    ];
    for (name, ty) in expected {
        assert!(
            columns.iter().any(|(n, t)| n == name && t == ty),
            "{name} {ty} in {columns:?}"
        );
    }
    assert_eq!(
        count(
            &p,
            "select count(*) as n from {{ ref('bronze_orders') }} where amount = 4.5 and item = 'late'"
        ),
        1
    );

    // With `on_error: fail`, a bad record stops the node, naming where it is; nothing is
    // committed, so the next run (after the setting is relaxed) reads it.
    produce(&broker, &t, 1, &["{\"id\": 9, \"item\": ".into()]);
    p.write(
        "models/sources.yml",
        &p.read("models/sources.yml")
            .replace("format: json}", "format: json, on_error: fail}"),
    );
    let out = p.rsdbt(&["run"]).expect(1);
    assert!(
        out.stdout.contains(&format!(
            "the record at offset 4 of partition 0 of topic '{t}' cannot be read: not valid JSON"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(bronze_rows(&p), (4, 4));
}
