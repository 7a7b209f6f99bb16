//! OpenTelemetry traces over OTLP/HTTP: a small collector endpoint in the test receives the
//! export and the spans are checked (names, parent and child, status, timings).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::harness::Project;

/// Each request's path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP endpoint on loopback: every request's path and body, answered with 200.
fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    store.lock().unwrap().push((path, body));
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                        .unwrap();
                }
            });
        }
    });
    (url, received)
}

/// The spans of every export, as (name, span) pairs.
fn spans(received: &Mutex<Vec<(String, Vec<u8>)>>) -> Vec<Value> {
    let mut out = Vec::new();
    for (path, body) in received.lock().unwrap().iter() {
        assert_eq!(path, "/v1/traces");
        let doc: Value = serde_json::from_slice(body).unwrap();
        for rs in doc["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some("rsdbt".into()));
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

#[test]
fn a_run_is_one_trace_with_a_span_per_node() {
    let (endpoint, received) = collector();
    let p = Project::fixture("check_shop");
    p.rsdbt(&["seed"]).expect(0);
    assert!(received.lock().unwrap().is_empty(), "off unless configured");
    p.write(
        "models/customer_totals.sql",
        &p.read("models/customer_totals.sql").replace(
            "group by",
            "where cast('x' || c.customer_id as int) > 0\ngroup by",
        ),
    );
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ];
    p.rsdbt_env(&["run"], &env).expect(1);
    let spans = spans(&received);
    let root = spans
        .iter()
        .find(|s| s["name"] == "rsdbt run")
        .unwrap_or_else(|| panic!("no root span in {spans:#?}"));
    assert_eq!(root["parentSpanId"], "");
    // 2 is OTLP's STATUS_CODE_ERROR, 1 is OK.
    assert_eq!(root["status"]["code"], 2, "{root}");
    let child = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    };
    let stg = child("model.check_shop.stg_orders");
    let totals = child("model.check_shop.customer_totals");
    for s in [stg, totals] {
        assert_eq!(s["traceId"], root["traceId"]);
        assert_eq!(s["parentSpanId"], root["spanId"]);
        let t = |k: &str| s[k].as_str().unwrap().parse::<u64>().unwrap();
        let r = |k: &str| root[k].as_str().unwrap().parse::<u64>().unwrap();
        assert!(
            t("startTimeUnixNano") >= r("startTimeUnixNano")
                && t("endTimeUnixNano") >= t("startTimeUnixNano")
        );
    }
    assert_eq!(stg["status"]["code"], 1);
    assert_eq!(totals["status"]["code"], 2);
    assert!(
        totals["status"]["message"]
            .as_str()
            .unwrap()
            .contains("Cannot cast"),
        "{totals}"
    );
    assert_eq!(spans.len(), 3, "the run and its two models");
}
