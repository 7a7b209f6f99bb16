//! The documentation site: `docs generate` writes `index.html` (page, script and data in one
//! file, so it opens from disk) next to the artifacts it shows; `docs serve` serves it with a
//! JSON API and reloads it when the project changes.

pub mod server;
pub mod site;

pub use site::write as write_site;
