//! Partial parsing: the parse render of each model and snapshot (its refs, sources, `config()`
//! calls, macros used) is cached in `<target-path>/partial_parse.json` and reused while
//! nothing it could depend on changed. A node's key hashes its file, the configs it inherits
//! and where it builds; a shared base hashes everything else a render can see — macro and
//! property files, the project file, packages, vars, the target — and the environment
//! variables the render read are compared by value. Any difference renders the node again.
//! `--no-partial-parse` turns it off.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::Digest;

use crate::jinja::{Capture, NodeInfo};
use crate::project::{FileKind, Project};

const FILE: &str = "partial_parse.json";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Stored {
    base: String,
    entries: BTreeMap<String, Entry>,
}

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Entry {
    key: String,
    /// Environment variables the render read, with their values then.
    env: BTreeMap<String, Option<String>>,
    capture: Capture,
}

pub struct Cache {
    path: Option<PathBuf>,
    base: String,
    old: BTreeMap<String, Entry>,
    new: Mutex<BTreeMap<String, Entry>>,
    pub reused: std::sync::atomic::AtomicUsize,
}

impl Cache {
    pub fn open(project: &Project, flags: &serde_json::Value) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        // Renders can read `flags` (the command, --full-refresh...).
        h.update(flags.to_string());
        for f in project.files.iter().filter(|f| {
            !matches!(
                f.kind,
                FileKind::Model | FileKind::Snapshot | FileKind::Seed
            )
        }) {
            h.update(f.path.as_bytes());
            h.update(f.contents.as_bytes());
        }
        hash_settings(&mut h, project);
        let base = format!("{:x}", h.finalize());
        let path = project
            .partial_parse
            .then(|| project.target_dir().join(FILE));
        let old = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<Stored>(&t).ok())
            .filter(|s| s.base == base)
            .map(|s| s.entries)
            .unwrap_or_default();
        Cache {
            path,
            base,
            old,
            new: Mutex::new(BTreeMap::new()),
            reused: Default::default(),
        }
    }

    pub fn key(info: &NodeInfo) -> String {
        let mut h = sha2::Sha256::new();
        h.update(info.unique_id.as_bytes());
        h.update(info.template.as_bytes());
        h.update(info.source.as_bytes());
        h.update(serde_json::to_string(&info.config).unwrap_or_default());
        h.update(info.this.render().as_bytes());
        format!("{:x}", h.finalize())
    }

    /// The cached render of `id`, if its key and the environment it read are unchanged.
    pub fn get(&self, id: &str, key: &str) -> Option<Capture> {
        let e = self.old.get(id)?;
        if e.key != key
            || e.env
                .iter()
                .any(|(name, value)| &std::env::var(name).ok() != value)
        {
            return None;
        }
        self.new.lock().ok()?.insert(id.to_string(), e.clone());
        self.reused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(e.capture.clone())
    }

    pub fn put(&self, id: &str, key: String, capture: &Capture) {
        let env = capture
            .env_vars
            .iter()
            .map(|n| (n.clone(), std::env::var(n).ok()))
            .collect();
        if let Ok(mut m) = self.new.lock() {
            m.insert(
                id.to_string(),
                Entry {
                    key,
                    env,
                    capture: capture.clone(),
                },
            );
        }
    }

    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// Writes the renders of this parse (only the nodes that parsed), unless the file already
    /// holds exactly them.
    pub fn save(self) {
        let Some(path) = self.path else { return };
        let Ok(entries) = self.new.into_inner() else {
            return;
        };
        let unchanged = entries.len() == self.old.len()
            && self.reused.load(std::sync::atomic::Ordering::Relaxed) == entries.len();
        if unchanged {
            return;
        }
        let stored = Stored {
            base: self.base,
            entries,
        };
        if let Ok(text) = serde_json::to_string(&stored) {
            let tmp = path.with_extension("json.tmp");
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }
}

/// `rsdbt parse` of a project whose every input is as it was at the last parse: the manifest
/// that parse wrote still stands and is kept, instead of being built and written again (most
/// of a large project's parse). The stamp in `<target-path>/parse_stamp.json` holds a hash of
/// everything a parse reads — every project and package file, the project file, vars, the
/// target, the environment, rsdbt's version — and the size and modification time of the
/// manifest.json it wrote, so a manifest changed since (by another command) is written again.
const STAMP: &str = "parse_stamp.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Stamp {
    inputs: String,
    manifest_len: u64,
    manifest_modified_ns: u128,
    /// The parse's "Found ..." line, said again.
    found: String,
}

/// The hash of everything a parse of `project` reads.
pub fn inputs(project: &Project) -> String {
    let mut h = sha2::Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    for f in &project.files {
        h.update(f.path.as_bytes());
        h.update(f.contents.as_bytes());
        // Large seeds are checksummed by path: their size and time stand for their rows.
        if f.kind == FileKind::Seed
            && let Ok(m) = std::fs::metadata(project.root.join(&f.path))
        {
            h.update(m.len().to_le_bytes());
            h.update(modified_ns(&m).to_le_bytes());
        }
    }
    hash_settings(&mut h, project);
    // Any render or property file may read any variable: all of them count, but those a
    // shell changes on its own (PWD too: the same project parsed from another folder, with
    // --project-dir, is the same project).
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !matches!(k.as_str(), "_" | "OLDPWD" | "SHLVL" | "PWD"))
        .collect();
    env.sort();
    for (k, v) in env {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())
}

/// What every render can see besides the node files: the project file, packages, vars, target.
fn hash_settings(h: &mut sha2::Sha256, project: &Project) {
    h.update(project.project_file.contents.as_bytes());
    for p in &project.packages {
        h.update(p.name.as_bytes());
        for f in p
            .macro_files
            .iter()
            .chain(&p.property_files)
            .chain(&p.docs_files)
        {
            h.update(f.path.as_bytes());
            h.update(f.contents.as_bytes());
        }
        h.update(serde_json::to_string(&p.config_trees).unwrap_or_default());
        h.update(serde_json::to_string(&p.vars).unwrap_or_default());
    }
    h.update(serde_json::to_string(&project.vars).unwrap_or_default());
    h.update(serde_json::to_string(&project.cli_vars).unwrap_or_default());
    if let Some(t) = &project.target {
        h.update(serde_json::to_string(&t.jinja_value()).unwrap_or_default());
    }
}

fn modified_ns(m: &std::fs::Metadata) -> u128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// The "Found ..." line of the last parse when nothing it read changed and its manifest.json
/// is still the one it wrote.
pub fn unchanged(project: &Project, inputs: &str) -> Option<String> {
    if !project.partial_parse {
        return None;
    }
    let dir = project.target_dir();
    let stamp: Stamp =
        serde_json::from_str(&std::fs::read_to_string(dir.join(STAMP)).ok()?).ok()?;
    let m = std::fs::metadata(dir.join("manifest.json")).ok()?;
    (stamp.inputs == inputs
        && stamp.manifest_len == m.len()
        && stamp.manifest_modified_ns == modified_ns(&m))
    .then_some(stamp.found)
}

/// Records that the manifest.json just written is the parse of `inputs`; a parse that warned
/// is not stamped, so that its warnings are said again next time.
pub fn stamp(project: &Project, inputs: &str, found: &str, warned: bool) {
    let dir = project.target_dir();
    let _ = std::fs::remove_file(dir.join(STAMP));
    if warned || !project.partial_parse {
        return;
    }
    let Ok(m) = std::fs::metadata(dir.join("manifest.json")) else {
        return;
    };
    let stamp = Stamp {
        inputs: inputs.to_string(),
        manifest_len: m.len(),
        manifest_modified_ns: modified_ns(&m),
        found: found.to_string(),
    };
    if let Ok(text) = serde_json::to_string(&stamp) {
        let _ = std::fs::write(dir.join(STAMP), text);
    }
}
