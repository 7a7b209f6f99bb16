//! The DAG of nodes and sources, and node selection over it.

pub mod dag;
pub mod select;
pub mod state;

pub use dag::Dag;
