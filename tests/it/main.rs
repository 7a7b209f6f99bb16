//! Integration tests: one binary so the heavy crates link once. Each test copies a fixture
//! project into a temp folder and runs the real `rsdbt` binary on it.

mod airflow;
mod cli;
mod corpus;
mod crash;
mod data_tests;
mod docs;
mod docs_site;
mod errors;
mod example;
mod freshness;
mod harness;
mod iceberg;
mod incremental;
mod locks;
mod memory;
mod metrics;
mod parquet_tables;
mod partial_parse;
mod postgres;
mod projects;
mod python_jinja;
mod reuse;
mod secrets;
mod selection;
mod snapshots;
mod sources;
mod spark;
mod state;
mod statements;
mod static_analysis;
mod streams;
mod time_travel;
mod traces;
mod unit_tests;
mod watch;
