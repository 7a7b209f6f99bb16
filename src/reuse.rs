//! Skip-if-unchanged (`--skip-unchanged`): a model whose compiled SQL, config and input data
//! are what they were at its last successful build is not rebuilt; it reports `REUSED`.
//!
//! A model's fingerprint hashes its compiled SQL, its config and the data version of every
//! table it reads — through views and ephemeral models down to tables: a Delta version, an
//! Iceberg metadata file, a seed file's checksum (a large seed's size and modification time). Anything the warehouse cannot version (a
//! source read from files or PostgreSQL, a PostgreSQL target) or SQL whose result depends on
//! the moment (`now()`, `random()`...) has no fingerprint: it is always rebuilt. Fingerprints
//! are kept in `<target>/fingerprints.json`, written after every run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::Digest;

use crate::adapter::Adapter;
use crate::manifest::{Manifest, Node, ResourceType};

const FILE: &str = "fingerprints.json";

/// Functions whose value changes between two runs of the same SQL.
const VOLATILE: [&str; 9] = [
    "now(",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "random(",
    "uuid(",
    "gen_random_uuid",
    "clock_timestamp",
];

pub fn load(target_dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(target_dir.join(FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn save(target_dir: &Path, fingerprints: &BTreeMap<String, String>) {
    let Ok(text) = serde_json::to_string_pretty(fingerprints) else {
        return;
    };
    let tmp = target_dir.join(format!(".{FILE}.tmp"));
    if std::fs::create_dir_all(target_dir).is_ok() && std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, target_dir.join(FILE));
    }
}

/// The fingerprint of `node` built from `sql`, or `None` when in doubt.
pub async fn fingerprint<A: Adapter>(
    adapter: &A,
    manifest: &Manifest,
    node: &Node,
    sql: &str,
    root: &Path,
) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if VOLATILE.iter().any(|f| lower.contains(f)) {
        return None;
    }
    let mut h = sha2::Sha256::new();
    h.update(sql.as_bytes());
    h.update(serde_json::to_string(&node.config).ok()?.as_bytes());
    // Inputs, walked through views and ephemeral models down to what holds data.
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = node
        .depends_on_nodes
        .iter()
        .map(smol_str::SmolStr::as_str)
        .collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        h.update(id.as_bytes());
        if let Some(source) = manifest.sources.get(id) {
            h.update(adapter.data_version(&source.relation).await?.as_bytes());
            continue;
        }
        let up = manifest.nodes.get(id)?;
        match up.resource_type {
            ResourceType::Seed => {
                h.update(up.checksum().as_bytes());
                if crate::manifest::checksum_is_path(up) {
                    // A large seed's checksum is its path: its file's size and time stand in.
                    let m = std::fs::metadata(root.join(manifest.file_path(up))).ok()?;
                    let time = m
                        .modified()
                        .ok()?
                        .duration_since(std::time::UNIX_EPOCH)
                        .ok()?;
                    h.update(format!("{}:{}", m.len(), time.as_nanos()).as_bytes());
                }
                h.update(serde_json::to_string(&up.config).ok()?.as_bytes());
            }
            ResourceType::Model if matches!(up.materialized(), "view" | "ephemeral") => {
                // Its definition and its own inputs decide what it returns.
                h.update(up.checksum().as_bytes());
                h.update(serde_json::to_string(&up.config).ok()?.as_bytes());
                stack.extend(up.depends_on_nodes.iter().map(smol_str::SmolStr::as_str));
            }
            ResourceType::Model | ResourceType::Snapshot => {
                h.update(adapter.data_version(&up.relation).await?.as_bytes());
            }
            _ => {}
        }
    }
    Some(format!("{:x}", h.finalize()))
}
