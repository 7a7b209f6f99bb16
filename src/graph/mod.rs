//! The DAG of nodes and sources, and node selection over it.

pub mod dag;
pub mod select;

pub use dag::Dag;
