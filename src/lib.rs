#![recursion_limit = "256"]
// Diagnostics travel on the cold path (a run that fails before it starts); boxing them
// everywhere would only add noise.
#![allow(clippy::result_large_err)]
//! rsdbt: a declarative SQL model runner in the style of dbt.
//!
//! Stages, each one module, data flowing one way:
//! [`project::load`] → [`manifest::build`] (Jinja parse phase) → [`graph::Dag::build`] →
//! [`graph::select::eval`] → [`exec::run`] (compile, [`materialize`], [`adapter`]) →
//! [`artifacts`]. The [`cli`] drives them and is the only place that prints.

pub mod adapter;
pub mod artifacts;
pub mod check;
pub mod cli;
pub mod compile;
pub mod config;
pub mod data_test;
pub mod diag;
pub mod docs;
pub mod exec;
pub mod freshness;
pub mod graph;
pub mod jinja;
#[cfg(feature = "datafusion")]
pub mod lineage;
pub mod manifest;
pub mod materialize;
pub mod metrics;
pub mod parallel;
pub mod project;
#[cfg(test)]
mod proptests;
pub mod reuse;
pub mod secrets;
pub mod small_map;
pub mod timings;
#[cfg(feature = "datafusion")]
pub mod traces;
pub mod unit_test;
