//! The manifest: every node of the project with its final config, relation and dependencies.
//!
//! Consumes a [`Project`]; renders each node once in the parse phase (no database touched) to
//! capture `ref`/`source`/`config`; merges configs in dbt's precedence; names relations with
//! `generate_schema_name` / `generate_alias_name` (project overrides honoured); resolves every
//! ref and source, reporting unknown names with the closest existing one.

pub mod partial;
mod test_names;
pub mod test_nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value as Json;
use smol_str::SmolStr;

use crate::config::{self, Config, ConfigExt};
use crate::diag::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::jinja::{self, Jinja, JinjaInputs, NodeInfo, Phase, RefCall, Relation};
use crate::project::properties::{self, ColumnDef, SourceTable};
use crate::project::{FileKind, Package, Project, SourceFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Model,
    Seed,
    Snapshot,
    Test,
    Source,
    Analysis,
    UnitTest,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
            ResourceType::Analysis => "analysis",
            ResourceType::UnitTest => "unit_test",
        }
    }
}

/// A model, seed or other executable node.
#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: SmolStr,
    pub resource_type: ResourceType,
    pub name: SmolStr,
    pub package: SmolStr,
    pub fqn: Vec<SmolStr>,
    /// Path relative to the project (`models/silver/orders.sql`).
    pub original_file_path: SmolStr,
    /// Path relative to the resource root (`silver/orders.sql`).
    pub path: String,
    pub raw_code: Arc<str>,
    pub config: Config,
    /// Keys as written (project tree + yml + config()), before defaults.
    pub unrendered_config: Config,
    pub description: String,
    pub columns: Vec<ColumnDef>,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub depends_on_nodes: Vec<SmolStr>,
    pub depends_on_macros: Vec<SmolStr>,
    pub relation: Relation,
    /// Set for data tests (generic and singular).
    pub test: Option<test_nodes::TestInfo>,
    /// What few nodes have; read through [`Node::extras`].
    extras: Option<Box<Extras>>,
}

/// The parts of a node that most nodes lack, boxed apart: most nodes of a large project are
/// generic tests, and every byte of `Node` is paid 50,000 times (at 640 bytes or less a node
/// also takes a smaller allocator block than at 744).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The file's checksum (generic tests have no file of their own).
    pub checksum: String,
    /// Only the keys set by `config()` in the file (or, for a test, in its yml entry).
    pub config_call: Config,
    /// The yml entry that describes the node: `<package>://<path>`.
    pub patch_path: Option<String>,
    /// Set for unit tests.
    pub unit_test: Option<Box<properties::UnitTestDef>>,
    /// Set for a version of a versioned model.
    pub version: Option<ModelVersion>,
    /// A model's `time_spine:` properties.
    pub time_spine: Option<Json>,
}

/// One version of a versioned model (`versions:` in its yml).
#[derive(Debug, Clone)]
pub struct ModelVersion {
    pub v: String,
    pub latest_version: String,
}

impl ModelVersion {
    pub fn is_latest(&self) -> bool {
        self.v == self.latest_version
    }
}

/// The key `ref()` finds a node by: its name (the latest version of a versioned model), or
/// `<name>.v<version>` for `ref('m', v=1)`.
pub fn ref_key(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{name}.v{v}"),
        None => name.to_string(),
    }
}

impl Node {
    /// A node with nothing set: constructors name only what they know.
    pub fn empty() -> Node {
        Node {
            unique_id: SmolStr::default(),
            resource_type: ResourceType::Model,
            name: SmolStr::default(),
            package: SmolStr::default(),
            fqn: vec![],
            original_file_path: SmolStr::default(),
            path: String::new(),
            raw_code: Arc::from(""),
            config: Config::new(),
            unrendered_config: Config::new(),
            description: String::new(),
            columns: vec![],
            refs: vec![],
            sources: vec![],
            depends_on_nodes: vec![],
            depends_on_macros: vec![],
            relation: Relation::new("", "", ""),
            test: None,
            extras: None,
        }
    }

    /// What few nodes have (all unset for most).
    pub fn extras(&self) -> &Extras {
        static NONE: Extras = Extras {
            checksum: String::new(),
            config_call: Config::new(),
            patch_path: None,
            unit_test: None,
            version: None,
            time_spine: None,
        };
        self.extras.as_deref().unwrap_or(&NONE)
    }
    /// [`Node::extras`] to set, made on first use.
    pub fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }
    pub fn version(&self) -> Option<&ModelVersion> {
        self.extras().version.as_ref()
    }
    pub fn unit_test(&self) -> Option<&properties::UnitTestDef> {
        self.extras().unit_test.as_deref()
    }
    pub fn checksum(&self) -> &str {
        &self.extras().checksum
    }
    pub fn patch_path(&self) -> Option<&str> {
        self.extras().patch_path.as_deref()
    }

    pub fn materialized(&self) -> &str {
        // A generic test keeps only the configs it sets (its defaults are shared).
        let default = if self.resource_type == ResourceType::Test {
            "test"
        } else {
            "view"
        };
        self.config.str_or("materialized", default)
    }
    pub fn tags(&self) -> Vec<String> {
        self.config.strings("tags")
    }
    /// A model, snapshot or singular test whose file holds nothing but whitespace: dbt parses
    /// it (`ls` lists it) and leaves it out of every other command's selection. Seeds and unit
    /// tests have no code to be empty.
    pub fn is_empty(&self) -> bool {
        matches!(
            self.resource_type,
            ResourceType::Model | ResourceType::Snapshot | ResourceType::Test
        ) && self.raw_code.trim().is_empty()
    }
    pub fn is_ephemeral(&self) -> bool {
        self.materialized() == "ephemeral"
    }
    /// The relation as SQL, or `None` for ephemeral models (dbt's `relation_name`).
    pub fn relation_name(&self) -> Option<String> {
        if self.is_ephemeral() {
            None
        } else {
            Some(self.relation.render())
        }
    }
    /// Takes what the parse render found: `config()` calls, refs, sources, macros.
    fn apply_parse(&mut self, capture: crate::jinja::Capture) {
        config::merge(&mut self.config, &capture.config);
        config::merge(&mut self.unrendered_config, &capture.config);
        if !capture.config.is_empty() {
            self.extras_mut().config_call = capture.config;
        }
        self.refs = capture.refs;
        self.sources = capture.sources;
        self.depends_on_macros = capture.macros.into_iter().map(SmolStr::from).collect();
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            unique_id: self.unique_id.to_string(),
            name: self.name.to_string(),
            resource_type: self.resource_type.as_str().to_string(),
            package: self.package.to_string(),
            template: self.original_file_path.to_string(),
            source: self.raw_code.clone(),
            config: self.config.clone(),
            this: self.relation.clone(),
        }
    }
}

/// A declared source table.
#[derive(Debug, Clone)]
pub struct Source {
    pub unique_id: String,
    pub fqn: Vec<String>,
    pub package: String,
    pub def: SourceTable,
    pub relation: Relation,
}

/// A dashboard, notebook or application downstream of the project (`exposures:` in yml).
#[derive(Debug, Clone)]
pub struct Exposure {
    pub unique_id: String,
    pub fqn: Vec<String>,
    pub package: String,
    pub def: crate::project::properties::ExposureDef,
    pub depends_on_nodes: Vec<SmolStr>,
}

/// A project macro.
#[derive(Debug, Clone)]
pub struct Macro {
    pub unique_id: String,
    pub name: String,
    pub package: String,
    pub original_file_path: String,
}

/// The parsed project.
pub struct Manifest {
    pub project_name: String,
    pub nodes: BTreeMap<SmolStr, Box<Node>>,
    pub sources: BTreeMap<String, Source>,
    pub exposures: BTreeMap<String, Exposure>,
    pub macros: BTreeMap<String, Macro>,
    /// Nodes with `enabled: false`: kept so that refs to them give a precise error.
    pub disabled: BTreeMap<SmolStr, Box<Node>>,
    pub docs: BTreeMap<String, String>,
    pub jinja: Jinja,
    pub invocation_id: String,
    pub generated_at: chrono::DateTime<chrono::Utc>,
    pub adapter_type: String,
    /// The project's target path as written (for `compiled_path`).
    pub target_path: String,
    /// Each installed package's folder, relative to the project (its files' paths are
    /// relative to it).
    pub package_dirs: BTreeMap<String, String>,
    /// What parsing found worth a warning; the CLI shows it.
    pub warnings: Diagnostics,
}

impl Manifest {
    /// Where a node's file is, relative to the project (package files live in their folder).
    pub fn file_path(&self, node: &Node) -> std::path::PathBuf {
        match self.package_dirs.get(node.package.as_str()) {
            Some(dir) => std::path::Path::new(dir).join(&node.original_file_path),
            None => std::path::PathBuf::from(&node.original_file_path),
        }
    }

    /// unique_id of a node by its name (models and seeds in the root project).
    pub fn find_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes
            .values()
            .find(|n| {
                n.name == name
                    && matches!(
                        n.resource_type,
                        ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
                    )
            })
            .map(|n| &**n)
    }

    /// Every node and exposure with the ids it depends on: the edges of the graph.
    pub fn dependencies(&self) -> impl Iterator<Item = (&str, &[SmolStr])> {
        self.nodes
            .values()
            .map(|n| (n.unique_id.as_str(), n.depends_on_nodes.as_slice()))
            .chain(
                self.exposures
                    .values()
                    .map(|e| (e.unique_id.as_str(), e.depends_on_nodes.as_slice())),
            )
    }

    /// dbt's `parent_map`: every node, exposure and source with the ids it depends on, in
    /// id order (each list is sorted as it is written, see [`sorted_ids`]). A list of borrowed
    /// slices rather than a map of new vectors: a large project's 50,000 entries are written
    /// one by one, and as a map they were the peak of its parse.
    pub fn parent_map(&self) -> Vec<(&str, &[SmolStr])> {
        let mut all: Vec<(&str, &[SmolStr])> = self
            .dependencies()
            .chain(self.sources.keys().map(|s| (s.as_str(), &[][..])))
            .collect();
        // Stable: the three sorted runs are merged rather than sorted again.
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// dbt's `child_map`: every node, source and exposure (and any parent outside the
    /// manifest, such as a disabled node that is still referred to) with its children.
    pub fn child_map(&self) -> ChildMap<'_> {
        let mut ids: Vec<&str> = self
            .nodes
            .keys()
            .map(SmolStr::as_str)
            .chain(self.sources.keys().map(String::as_str))
            .chain(self.exposures.keys().map(String::as_str))
            .collect();
        // Three sorted runs: a stable sort merges them in one pass.
        ids.sort();
        // An edge finds its parent by hash: a search among 50,000 sorted ids compared strings
        // a million times for a large project.
        fn index<'a>(ids: &[&'a str]) -> rustc_hash::FxHashMap<&'a str, u32> {
            ids.iter()
                .enumerate()
                .map(|(i, id)| (*id, i as u32))
                .collect()
        }
        let mut at = index(&ids);
        // Each edge's parent and child, looked up once.
        let mut edges: Vec<(u32, u32)> = Vec::new();
        let mut outside = BTreeSet::new();
        for (id, deps) in self.dependencies() {
            let child = at[id];
            for p in deps {
                match at.get(p.as_str()) {
                    Some(&parent) => edges.push((parent, child)),
                    None => {
                        outside.insert(p.as_str());
                    }
                }
            }
        }
        if !outside.is_empty() {
            // Parents outside the manifest (rare) get entries too: ids and edges again.
            ids.extend(outside);
            ids.sort();
            at = index(&ids);
            edges = self
                .dependencies()
                .flat_map(|(id, deps)| deps.iter().map(move |p| (p.as_str(), id)))
                .map(|(p, id)| (at[p], at[id]))
                .collect();
        }
        // Children by parent in one array: offsets, then children as positions in `ids`.
        let mut starts = vec![0usize; ids.len() + 1];
        for &(parent, _) in &edges {
            starts[parent as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut children = vec![0u32; edges.len()];
        for (parent, child) in edges {
            let slot = &mut next[parent as usize];
            children[*slot] = child;
            *slot += 1;
        }
        ChildMap {
            ids,
            starts,
            children,
        }
    }
}

/// dbt's `child_map`, compact: ids in order and each one's children as positions in them.
pub struct ChildMap<'a> {
    ids: Vec<&'a str>,
    starts: Vec<usize>,
    children: Vec<u32>,
}

impl<'a> ChildMap<'a> {
    /// How many entries there are (see [`ChildMap::entry`]).
    pub fn size(&self) -> usize {
        self.ids.len()
    }

    /// The `i`th id in id order, with its children in id order.
    pub fn entry(&self, i: usize) -> (&'a str, Vec<&'a str>) {
        let mut kids = self.children[self.starts[i]..self.starts[i + 1]].to_vec();
        // Positions in sorted ids: their order is the ids' order.
        kids.sort_unstable();
        kids.dedup();
        (
            self.ids[i],
            kids.into_iter().map(|k| self.ids[k as usize]).collect(),
        )
    }
}

/// Where a test is defined: a generic test's entry in its yml (at its column, when it has
/// one), a singular test's file.
fn test_location(
    node: &Node,
    files_by_path: &BTreeMap<String, (&SourceFile, SmolStr)>,
) -> Location {
    let yml = format!("{}://{}", node.package, node.original_file_path);
    match (&node.test, files_by_path.get(&yml)) {
        (Some(t), Some((file, path))) if t.generic.is_some() => {
            let needle = match &t.column_name {
                Some(column) => format!("name: {column}"),
                None => "data_tests:".to_string(),
            };
            Location::find(path, file.contents.clone(), &needle)
        }
        _ => Location::file(&node.original_file_path, node.raw_code.clone()),
    }
}

/// Nodes in id order, equal ids in their given order: sorted in two halves on both cores,
/// then merged.
#[allow(clippy::vec_box)]
fn sorted_by_id(mut nodes: Vec<Box<Node>>) -> Vec<Box<Node>> {
    fn by_id(a: &Node, b: &Node) -> std::cmp::Ordering {
        a.unique_id.cmp(&b.unique_id)
    }
    let mut second = nodes.split_off(nodes.len() / 2);
    crate::parallel::beside(
        || nodes.sort_by(|a, b| by_id(a, b)),
        || second.sort_by(|a, b| by_id(a, b)),
    );
    let mut out = Vec::with_capacity(nodes.len() + second.len());
    let (mut a, mut b) = (nodes.into_iter().peekable(), second.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => by_id(x, y) != std::cmp::Ordering::Greater,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
    out
}

/// Ids sorted, each once.
pub fn sorted_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = ids.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Run-wide identity passed to the parse.
pub struct Invocation {
    pub invocation_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// dbt's `flags` in Jinja (`flags.WHICH`, `flags.FULL_REFRESH`...).
    pub flags: serde_json::Value,
}

impl Invocation {
    pub fn new() -> Self {
        Self {
            invocation_id: uuid::Uuid::new_v4().to_string(),
            started_at: chrono::Utc::now(),
            flags: serde_json::json!({}),
        }
    }
}

impl Default for Invocation {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the manifest from a loaded project.
pub fn build(project: &Project, invocation: &Invocation) -> Result<Manifest, Diagnostics> {
    let t = std::time::Instant::now();
    let props = properties::load(project)?;
    crate::timings::phase("properties", t);
    let mut diags = Diagnostics::new();
    for w in packages_warnings(project) {
        diags.push(w);
    }
    let target = project.target.as_ref();
    let target_json = target.map(|t| t.jinja_value()).unwrap_or_else(|| serde_json::json!({"name": "default", "schema": "main", "database": "warehouse", "type": "datafusion", "threads": 1}));
    let target_schema = target
        .map(|t| t.schema.clone())
        .unwrap_or_else(|| "main".into());
    let database = target
        .map(|t| t.database.clone())
        .unwrap_or_else(|| "warehouse".into());

    // Generic test definitions may also live in `<test-path>/generic/`, as in dbt.
    let is_generic_def = |f: &SourceFile| f.rel_path().starts_with("generic/");
    let macro_files: Vec<(&str, Arc<str>)> = project
        .files_of(FileKind::Macro)
        .chain(
            project
                .files_of(FileKind::SingularTest)
                .filter(|f| is_generic_def(f)),
        )
        .map(|f| (f.path.as_str(), f.contents.clone()))
        .collect();
    let model_files: Vec<&SourceFile> = project.files_of(FileKind::Model).collect();
    let jinja = match Jinja::new(JinjaInputs {
        flags: invocation.flags.clone(),
        project_name: &project.name,
        target: target_json,
        project_vars: project.vars.clone(),
        cli_vars: project.cli_vars.clone(),
        invocation_id: &invocation.invocation_id,
        run_started_at: invocation.started_at,
        macro_files,
        package_macro_files: project
            .packages
            .iter()
            .flat_map(|p| {
                p.macro_files
                    .iter()
                    .map(|f| (p.name.as_str(), f.path.as_str(), f.contents.clone()))
            })
            .collect(),
        package_vars: project
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.vars.clone()))
            .collect(),
        dispatch: dispatch_config(&project.raw),
        runtime_config: serde_json::json!({
            "project_name": project.name,
            "version": project.raw.get("version").map(properties::scalar_text),
            "profile_name": project.raw.get("profile"),
            "target_name": project.target().name,
            "vars": project.vars,
            "cli_vars": project.cli_vars,
            "args": {},
            "dependencies": project.packages.iter().map(|p| (p.name.clone(), serde_json::json!({
                "project_name": p.name, "version": p.version,
            }))).collect::<serde_json::Map<_, _>>(),
        }),
    }) {
        Ok(j) => j,
        Err(ds) => {
            diags.0.extend(ds);
            return Err(diags);
        }
    };

    crate::timings::phase("jinja env", t);
    let cache = partial::Cache::open(project, &invocation.flags);
    // dbt's `--no-static-parser` renders every model.
    let static_parser = invocation.flags.get("STATIC_PARSER") != Some(&Json::Bool(false));
    let read_statically = std::sync::atomic::AtomicUsize::new(0);
    let mut nodes: BTreeMap<SmolStr, Box<Node>> = BTreeMap::new();
    let mut disabled = BTreeMap::new();
    let mut by_name: BTreeMap<String, SmolStr> = BTreeMap::new();

    // Patches are moved into their nodes; what is left afterwards describes nothing.
    let mut props = props;
    let mut model_patches = props.patches.remove("models").unwrap_or_default();
    let mut seed_patches = props.patches.remove("seeds").unwrap_or_default();

    let mut snapshot_patches = props.patches.remove("snapshots").unwrap_or_default();
    // Each package's own model properties and sources (paths inside the package).
    let mut package_patches: BTreeMap<&str, BTreeMap<String, properties::Patch>> = BTreeMap::new();
    let mut package_sources: Vec<(&Package, SourceTable)> = Vec::new();
    for pkg in &project.packages {
        let mut pp = properties::load_files(pkg.property_files.iter())?;
        // Model and seed names are unique within a package: one map holds both.
        let mut own = pp.patches.remove("models").unwrap_or_default();
        own.extend(pp.patches.remove("seeds").unwrap_or_default());
        package_patches.insert(&pkg.name, own);
        package_sources.extend(pp.sources.into_iter().map(|mut t| {
            t.file = package_relative(Some(pkg), &t.file).to_string();
            (pkg, t)
        }));
    }
    // (resource type, file, node name): one per model and seed file, one per snapshot block,
    // one per YAML snapshot.
    // The fourth element is the package a file comes from (none: the root project).
    let mut candidates: Vec<(ResourceType, SourceFile, String, Option<&Package>)> = model_files
        .iter()
        .map(|f| {
            (
                ResourceType::Model,
                (*f).clone(),
                f.stem().to_string(),
                None,
            )
        })
        .collect();
    for pkg in &project.packages {
        candidates.extend(pkg.model_files.iter().map(|f| {
            (
                ResourceType::Model,
                f.clone(),
                f.stem().to_string(),
                Some(pkg),
            )
        }));
    }
    // Versioned models: the file of each version (`<name>_v<v>` or `defined_in:`) becomes a
    // node named after the model. (owner, file stem) → (model name, version).
    let mut versioned: BTreeMap<(String, String), (String, ModelVersion, Json)> = BTreeMap::new();
    let owned_patches = model_patches
        .iter()
        .map(|(n, p)| (project.name.clone(), n, p))
        .chain(
            package_patches
                .iter()
                .flat_map(|(pkg, m)| m.iter().map(|(n, p)| (pkg.to_string(), n, p))),
        );
    for (owner, name, p) in owned_patches {
        if p.versions.is_empty() {
            continue;
        }
        let vs: Vec<String> = p
            .versions
            .iter()
            .filter_map(|e| e.get("v").map(properties::scalar_text))
            .collect();
        let latest = p.latest_version.clone().unwrap_or_else(|| {
            vs.iter()
                .max_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.total_cmp(&y),
                    _ => a.cmp(b),
                })
                .cloned()
                .unwrap_or_default()
        });
        for (entry, v) in p.versions.iter().zip(&vs) {
            let stem = entry
                .get("defined_in")
                .and_then(Json::as_str)
                .map_or_else(|| format!("{name}_v{v}"), str::to_string);
            let mv = ModelVersion {
                v: v.clone(),
                latest_version: latest.clone(),
            };
            let config = entry.get("config").cloned().unwrap_or(Json::Null);
            versioned.insert((owner.clone(), stem), (name.clone(), mv, config));
        }
    }
    candidates.extend(
        project
            .files_of(FileKind::Seed)
            .map(|f| (ResourceType::Seed, f.clone(), f.stem().to_string(), None)),
    );
    for pkg in &project.packages {
        candidates.extend(pkg.seed_files.iter().map(|f| {
            (
                ResourceType::Seed,
                f.clone(),
                f.stem().to_string(),
                Some(pkg),
            )
        }));
    }
    for file in project.files_of(FileKind::Snapshot) {
        for (name, text) in snapshot_blocks(&file.contents) {
            candidates.push((
                ResourceType::Snapshot,
                SourceFile {
                    contents: text.into(),
                    ..file.clone()
                },
                name,
                None,
            ));
        }
    }
    for (name, p) in snapshot_patches
        .iter()
        .filter(|(_, p)| p.relation.is_some())
    {
        let rel = p.relation.as_deref().unwrap_or_default();
        let contents: Arc<str> = format!("select * from {{{{ {rel} }}}}").into();
        let root = p.file.split('/').next().unwrap_or("").to_string();
        candidates.push((
            ResourceType::Snapshot,
            SourceFile {
                kind: FileKind::Snapshot,
                path: p.file.clone(),
                root,
                contents,
            },
            name.clone(),
            None,
        ));
    }

    // What each file gives by itself (names, fqn, folder configs, checksum) on every core; the
    // yml entries are then taken one by one (a versioned model's is shared by its versions).
    let prepared = crate::parallel::map_owned(candidates, 256, |(rtype, file, name, package)| {
        let owner = package.map_or(&project.name, |p| &p.name);
        let (name, version, version_config) = match versioned
            .get(&(owner.clone(), name.clone()))
            .filter(|_| rtype == ResourceType::Model)
        {
            Some((model, v, c)) => (model.clone(), Some(v.clone()), c.clone()),
            None => (name, None, Json::Null),
        };
        let mut fqn = vec![SmolStr::from(owner.as_str())];
        fqn.extend(file.folders().into_iter().map(SmolStr::from));
        if rtype == ResourceType::Snapshot && file.path.ends_with(".sql") {
            fqn.push(file.stem().into());
        }
        fqn.push(name.as_str().into());
        if let Some(v) = &version {
            fqn.push(format!("v{}", v.v).into());
        }
        let tree_key = match rtype {
            ResourceType::Seed => "seeds",
            ResourceType::Snapshot => "snapshots",
            _ => "models",
        };
        // dbt's other defaults are shared (config::defaults), not copied into every node.
        let mut cfg = Config::new();
        cfg.insert("enabled".into(), Json::Bool(true));
        let materialized = match rtype {
            ResourceType::Seed => "seed",
            ResourceType::Snapshot => "snapshot",
            _ => "view",
        };
        cfg.insert("materialized".into(), materialized.into());
        if let Some(v) = &version {
            // dbt names a version's relation `<name>_v<v>` unless configured otherwise.
            cfg.insert("alias".into(), format!("{name}_v{}", v.v).into());
        }
        // A package's own folder configs, then the root project's (which win).
        let mut tree_cfg = match package {
            Some(p) => config::from_tree(p.config_trees.get(tree_key), &fqn),
            None => Config::new(),
        };
        config::merge(
            &mut tree_cfg,
            &config::from_tree(project.config_trees.get(tree_key), &fqn),
        );
        config::merge(&mut cfg, &tree_cfg);
        let original_file_path = package_relative(package, &file.path).to_string();
        let checksum = checksum(&file, project, &original_file_path);
        let rt = rtype.as_str();
        let unique_id = match &version {
            Some(v) => format!("{rt}.{owner}.{name}.v{}", v.v),
            None => format!("{rt}.{owner}.{name}"),
        };
        // The yml entry's description, columns, tests and configs are added below.
        let node = Node {
            unique_id: unique_id.into(),
            resource_type: rtype,
            name: name.as_str().into(),
            package: fqn[0].clone(),
            fqn,
            original_file_path: original_file_path.into(),
            path: file.rel_path().to_string(),
            raw_code: file.contents.clone(),
            config: cfg,
            unrendered_config: tree_cfg.clone(),
            relation: Relation::new(&database, &target_schema, &name),
            extras: Some(Box::new(Extras {
                checksum,
                version: version.clone(),
                ..Extras::default()
            })),
            ..Node::empty()
        };
        (node, tree_cfg, name, version, version_config, package)
    });
    let mut versioned_names = BTreeSet::new();
    let mut pending = Vec::new();
    // A yml entry's model-level tests, by node, until the test nodes are built (not a field
    // of every node: most nodes are tests).
    let mut yml_tests: std::collections::HashMap<SmolStr, Vec<Json>> = Default::default();
    for (mut node, tree_cfg, name, version, version_config, package) in prepared {
        let owner = package.map_or(&project.name, |p| &p.name);
        let patch = match (node.resource_type, package) {
            // Every version shares the model's entry; it is removed after the loop.
            (ResourceType::Model, _) if version.is_some() => {
                versioned_names.insert((owner.clone(), name.clone()));
                match package {
                    Some(pkg) => package_patches
                        .get(pkg.name.as_str())
                        .and_then(|m| m.get(&name))
                        .cloned(),
                    None => model_patches.get(&name).cloned(),
                }
            }
            (_, Some(pkg)) => package_patches
                .get_mut(pkg.name.as_str())
                .and_then(|m| m.remove(&name)),
            (ResourceType::Seed, _) => seed_patches.remove(&name),
            (ResourceType::Snapshot, _) => snapshot_patches.remove(&name),
            _ => model_patches.remove(&name),
        };
        if let Some(p) = &patch {
            node.extras_mut().patch_path =
                Some(format!("{owner}://{}", package_relative(package, &p.file)));
        }
        if let Some(p) = &patch {
            config::merge(&mut node.config, &p.config);
            config::merge(&mut node.unrendered_config, &p.config);
            // Top-level `tags:` / `meta:` / `docs:` of a yml entry are configs too.
            let mut extra = Config::new();
            if !p.tags.is_empty() {
                extra.insert("tags".into(), serde_json::json!(p.tags));
            }
            if let Some(meta) = &p.meta {
                extra.insert("meta".into(), meta.clone());
            }
            if let Some(docs) = &p.docs {
                extra.insert("docs".into(), docs.clone());
            }
            config::merge(&mut node.config, &extra);
        }
        if let Json::Object(c) = &version_config {
            let c = Config::from(c.clone());
            config::merge(&mut node.config, &c);
            config::merge(&mut node.unrendered_config, &c);
        }
        let patch_config = patch.as_ref().map(|p| p.config.clone()).unwrap_or_default();
        if let Some(p) = patch {
            if p.time_spine.is_some() {
                node.extras_mut().time_spine = p.time_spine;
            }
            node.description = p.description;
            node.columns = p.columns;
            if !p.tests.is_empty() {
                yml_tests.insert(node.unique_id.clone(), p.tests);
            }
        }
        pending.push((node, tree_cfg, patch_config, name, version));
    }
    // Each node's renders (the Jinja of its configs, then its file, for its refs and
    // `config()` calls) on every core: most of a large project's parse.
    let rendered = crate::parallel::map_owned(
        pending,
        64,
        |(mut node, tree_cfg, patch_config, name, version)| {
            let mut diags = Diagnostics::new();
            let rtype = node.resource_type;
            let ok = (|| {
                // Configs of the project file and of yml are Jinja too (`+enabled: "{{ target.name ==
                // 'prod' }}"`, `column_types: {x: "{{ 'float' if ... }}"}`), rendered for each node as
                // dbt does; hooks render when they run.
                for (key, value) in tree_cfg.iter().chain(patch_config.iter()) {
                    if !crate::jinja::renders_any(value)
                        || matches!(
                            key.as_str(),
                            "pre-hook" | "post-hook" | "pre_hook" | "post_hook"
                        )
                        || node.config.get(key) != Some(value)
                    {
                        continue;
                    }
                    let info = node.info();
                    let text = |t: &str| -> Result<String, Diagnostic> {
                        if t.contains("{{") || t.contains("{%") {
                            let out = jinja.render_str(info.clone(), t, Phase::Parse)?.0;
                            Ok(out.trim().to_string())
                        } else {
                            Ok(t.to_string())
                        }
                    };
                    match crate::jinja::deep_render(value, &text) {
                        Ok(rendered) => {
                            node.config.insert(key.clone(), rendered);
                        }
                        Err(d) => diags.push(d),
                    }
                }
                if matches!(rtype, ResourceType::Model | ResourceType::Snapshot) {
                    if let Some(capture) = static_parser
                        .then(|| jinja.parse_statically(&node.raw_code))
                        .flatten()
                    {
                        read_statically.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        node.apply_parse(capture);
                        return true;
                    }
                    let info = node.info();
                    let key = cache.enabled().then(|| partial::Cache::key(&info));
                    if let Some(capture) = key.as_ref().and_then(|k| cache.get(&node.unique_id, k))
                    {
                        node.apply_parse(capture);
                    } else {
                        match jinja.render_node(info, Phase::Parse) {
                            Ok((_, capture)) => {
                                if let Some(key) = key {
                                    cache.put(&node.unique_id, key, &capture);
                                }
                                node.apply_parse(capture);
                            }
                            Err(d) => {
                                diags.push(d);
                                return false;
                            }
                        }
                    }
                }
                true
            })();
            // Merged apart, a node's config and its config as written mostly hold the same
            // mappings (a `meta:` set in the project file and in `config()`).
            node.unrendered_config.share_with(&node.config);
            (node, diags, ok, name, version)
        },
    );
    for (node, node_diags, ok, name, version) in rendered {
        diags.extend(node_diags);
        if !ok {
            continue;
        }
        let rtype = node.resource_type;
        let unique_id = node.unique_id.clone();
        if rtype == ResourceType::Snapshot
            && node.config.bool_or("enabled", true)
            && let Err(msg) = check_snapshot_config(&node.config)
        {
            diags.push(
                    Diagnostic::error("snapshot", format!("snapshot '{}' {msg}", node.name))
                        .at(Location::find(&node.original_file_path, node.raw_code.clone(), &node.name))
                        .hint("configure it with unique_key and strategy='timestamp' (with updated_at) or strategy='check' (with check_cols)"),
                );
            continue;
        }
        if let Err(msg) = check_config_types(&node.config) {
            diags.push(
                Diagnostic::error(
                    "config",
                    format!("{} '{}': {msg}", rtype.as_str(), node.name),
                )
                .at(Location::file(
                    &node.original_file_path,
                    node.raw_code.clone(),
                ))
                .hint("fix the value where it is set: the project file, a properties file or config() in this file"),
            );
            continue;
        }
        if !node.config.bool_or("enabled", true) {
            disabled.insert(unique_id, Box::new(node));
            continue;
        }
        let key = ref_key(&name, version.as_ref().map(|v| v.v.as_str()));
        if let Some(prev) = by_name.get(&key) {
            let prev = &nodes[prev];
            if prev.resource_type != ResourceType::Seed || rtype != ResourceType::Seed {
                diags.push(
                    Diagnostic::error(
                        "duplicate",
                        format!("two resources are named '{name}': {} and {}", prev.original_file_path, node.original_file_path),
                    )
                    .at(Location::file(&node.original_file_path, node.raw_code.clone()))
                    .hint("names of models, seeds and snapshots must be unique in a project: rename or disable one of them"),
                );
                continue;
            }
        }
        by_name.insert(key, unique_id.clone());
        if version.as_ref().is_some_and(ModelVersion::is_latest) {
            by_name.insert(name, unique_id.clone());
        }
        nodes.insert(unique_id, Box::new(node));
    }
    for (owner, name) in versioned_names {
        if owner == project.name {
            model_patches.remove(&name);
        } else if let Some(m) = package_patches.get_mut(owner.as_str()) {
            m.remove(&name);
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }

    crate::timings::phase("parse renders", t);
    // Relation names: after every config is final; on every core (a project's own
    // generate_schema_name is a render per node).
    let named = crate::parallel::map_owned(nodes.values_mut().collect(), 64, |node| {
        name_relation(&jinja, node, &target_schema, &database).map(|rel| node.relation = rel)
    });
    diags.0.extend(named.into_iter().filter_map(Result::err));

    crate::timings::phase("relation names", t);
    // Sources.
    let mut sources = BTreeMap::new();
    let all_sources = props
        .sources
        .iter()
        .map(|t| (&project.name, t))
        .chain(package_sources.iter().map(|(p, t)| (&p.name, t)));
    for (owner, t) in all_sources {
        let info = crate::jinja::NodeInfo {
            unique_id: format!("source.{owner}.{}.{}", t.source_name, t.name),
            name: t.name.clone(),
            resource_type: "source".into(),
            package: owner.clone(),
            template: t.file.clone(),
            source: t.source.clone(),
            config: t.config.clone(),
            this: Relation::new(&database, &t.source_name, &t.identifier),
        };
        let t = match render_source_properties(&jinja, &info, t) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        // dbt leaves disabled sources out of the graph (`config: {enabled: false}`, which may
        // depend on the target: `enabled: "{{ target.name == 'prod' }}"`).
        let enabled = match t.config.get("enabled") {
            Some(Json::String(text)) => matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "true" | "yes" | "1"
            ),
            _ => t.config.bool_or("enabled", true),
        };
        if !enabled {
            continue;
        }
        let unique_id = format!("source.{owner}.{}.{}", t.source_name, t.name);
        let mut fqn = vec![owner.clone()];
        let folders: Vec<String> = t.file.split('/').skip(1).map(str::to_string).collect();
        fqn.extend(folders[..folders.len().saturating_sub(1)].iter().cloned());
        fqn.push(t.source_name.clone());
        fqn.push(t.name.clone());
        let relation = Relation::new(
            t.database.as_deref().unwrap_or(&database),
            t.schema.as_deref().unwrap_or(&t.source_name),
            &t.identifier,
        );
        if sources.contains_key(&unique_id) {
            diags.push(
                Diagnostic::error(
                    "duplicate",
                    format!(
                        "source table '{}.{}' is declared twice",
                        t.source_name, t.name
                    ),
                )
                .at(t.location())
                .hint("declare each source table once"),
            );
            continue;
        }
        sources.insert(
            unique_id.clone(),
            Source {
                unique_id,
                fqn,
                package: owner.clone(),
                def: t,
                relation,
            },
        );
    }

    // Data tests: generic ones from yml, singular ones from the test paths. Property files by
    // the patch path that names them (`<package>://<path in the package>`).
    // Each file's path once, shared by the fqn and paths of all its tests.
    let mut files_by_path: BTreeMap<String, (&SourceFile, SmolStr)> = project
        .files_of(FileKind::Properties)
        .map(|f| {
            (
                format!("{}://{}", project.name, f.path),
                (f, SmolStr::from(&f.path)),
            )
        })
        .collect();
    for pkg in &project.packages {
        for f in &pkg.property_files {
            let rel = package_relative(Some(pkg), &f.path);
            files_by_path.insert(format!("{}://{rel}", pkg.name), (f, rel.into()));
        }
    }
    let mut targets = Vec::new();
    // The yml test definitions move into test nodes; the model keeps its column docs.
    for n in nodes.values_mut().chain(disabled.values_mut()) {
        let Some(patch_path) = n.patch_path() else {
            continue;
        };
        let Some((yml, yml_path)) = files_by_path.get(patch_path) else {
            continue;
        };
        let model_tests = yml_tests.remove(n.unique_id.as_str()).unwrap_or_default();
        let mut tests = vec![(None, model_tests, vec![])];
        tests.extend(n.columns.iter_mut().map(|c| {
            (
                Some(c.name.clone()),
                std::mem::take(&mut c.tests),
                c.tags.clone(),
            )
        }));
        if !n.config.bool_or("enabled", true) {
            continue;
        }
        targets.push(test_nodes::Target {
            yaml_key: if n.resource_type == ResourceType::Seed {
                "seeds"
            } else {
                "models"
            },
            name: n.name.to_string(),
            expr: format!("ref('{}')", n.name),
            dependency: Ok(n.name.to_string()),
            unique_id: n.unique_id.clone(),
            package: n.package.clone(),
            yml_path: yml_path.clone(),
            yml_source: yml.contents.clone(),
            key_name: n.name.to_string(),
            tests,
        });
    }
    for s in sources.values() {
        let d = &s.def;
        let mut tests = vec![(None, d.tests.clone(), vec![])];
        tests.extend(
            d.columns
                .iter()
                .map(|c| (Some(c.name.clone()), c.tests.clone(), c.tags.clone())),
        );
        targets.push(test_nodes::Target {
            yaml_key: "sources",
            name: format!("{}_{}", d.source_name, d.name),
            expr: format!("source('{}', '{}')", d.source_name, d.name),
            dependency: Err((d.source_name.clone(), d.name.clone())),
            unique_id: s.unique_id.as_str().into(),
            package: s.package.as_str().into(),
            yml_path: d.file.as_str().into(),
            yml_source: d.source.clone(),
            key_name: d.source_name.clone(),
            tests,
        });
    }
    crate::timings::phase("sources and test targets", t);
    let (generic, test_diags) = test_nodes::generic(project, &jinja, targets, &database);
    diags.extend(test_diags);
    crate::timings::phase("generic test nodes", t);
    let mut singular = Vec::new();
    for file in project
        .files_of(FileKind::SingularTest)
        .filter(|f| !is_generic_def(f) && !f.rel_path().starts_with("fixtures/"))
    {
        let mut node = test_nodes::singular(project, file, &database);
        node.extras_mut().checksum = checksum(file, project, &file.path);
        match jinja.render_node(node.info(), Phase::Parse) {
            Ok((_, capture)) => {
                node.apply_parse(capture);
                singular.push(Box::new(node));
            }
            Err(d) => diags.push(d),
        }
    }
    let tests: Vec<Box<Node>> = generic.into_iter().chain([singular]).flatten().collect();
    // Each test's Jinja configs and relation name on every core; into the maps in order.
    let finished = crate::parallel::map_owned(tests, 64, |mut node| {
        let mut found = Vec::new();
        // Configs written as Jinja in yml or the project file (`enabled: "{{ not
        // var('x', false) }}"`), rendered as dbt does when it parses the test.
        for key in [
            "enabled",
            "severity",
            "warn_if",
            "error_if",
            "store_failures",
        ] {
            let Some(Json::String(text)) = node.config.get(key) else {
                continue;
            };
            if !(text.contains("{{") || text.contains("{%")) {
                continue;
            }
            match jinja.render_str(node.info(), &text.clone(), Phase::Parse) {
                Ok((out, _)) => {
                    let out = out.trim();
                    let value = match out.to_ascii_lowercase().as_str() {
                        "true" => Json::Bool(true),
                        "false" => Json::Bool(false),
                        // dbt's severities are upper case, however written.
                        _ if key == "severity" => Json::String(out.to_uppercase()),
                        _ => Json::String(out.to_string()),
                    };
                    node.config.insert(key.into(), value);
                }
                Err(mut d) => {
                    // Which test and config, and where in the yml (the first place the
                    // text is written).
                    let yml = format!("{}://{}", node.package, node.original_file_path);
                    if let Some((file, path)) = files_by_path.get(&yml) {
                        let message = d
                            .message
                            .strip_prefix(&format!("{path}: "))
                            .unwrap_or(&d.message);
                        d.message = format!("test '{}', config '{key}': {message}", node.name);
                        d = d.at(Location::find(path, file.contents.clone(), text));
                    }
                    found.push(d)
                }
            }
        }
        let enabled = node.config.bool_or("enabled", true);
        if enabled {
            match name_relation(&jinja, &node, &target_schema, &database) {
                Ok(rel) => node.relation = rel,
                Err(d) => found.push(d),
            }
        }
        (node, enabled, found)
    });
    let mut enabled_tests = Vec::with_capacity(finished.len());
    for (node, enabled, found) in finished {
        diags.0.extend(found);
        if enabled {
            enabled_tests.push(node);
        } else {
            disabled.insert(node.unique_id.clone(), node);
        }
    }
    // Into the map in bulk: 40,000 tests inserted one by one compared long, alike ids ~16
    // times each on one core. Sorted by id on both cores (stably: the first definition of an
    // id stays first); no node so far is a test (unit tests come later), so a duplicate is
    // the test before it; the sorted run is merged into the map in one pass.
    let mut added: Vec<(SmolStr, Box<Node>)> = Vec::with_capacity(enabled_tests.len());
    debug_assert!(
        nodes
            .values()
            .all(|n| n.resource_type != ResourceType::Test)
    );
    for node in sorted_by_id(enabled_tests) {
        let prev = added
            .last()
            .filter(|(id, _)| *id == node.unique_id)
            .map(|(_, prev)| prev);
        if let Some(prev) = prev {
            diags.push(
                Diagnostic::error(
                    "duplicate",
                    format!(
                        "test '{}' is defined twice ({} and {})",
                        node.name, prev.original_file_path, node.original_file_path
                    ),
                )
                .at(test_location(&node, &files_by_path))
                .hint("remove one of the two definitions, or give one a different `name:`"),
            );
            continue;
        }
        added.push((node.unique_id.clone(), node));
    }
    nodes.append(&mut added.into_iter().collect());

    // Unit tests: each depends on the model it tests.
    for mut u in std::mem::take(&mut props.unit_tests) {
        // `fixture: name` reads <test-path>/fixtures/name.csv (or .sql), as dbt does.
        let (test_name, test_loc) = (u.name.clone(), u.location());
        for f in u.given.iter_mut().chain(std::iter::once(&mut u.expect)) {
            let Some(name) = f.fixture.clone() else {
                continue;
            };
            let ext = if f.format == "sql" { "sql" } else { "csv" };
            if f.format == "dict" {
                f.format = "csv".into();
            }
            let found = project
                .test_paths
                .iter()
                .map(|t| {
                    project
                        .root
                        .join(t)
                        .join("fixtures")
                        .join(format!("{name}.{ext}"))
                })
                .find(|p| p.is_file());
            match found.and_then(|p| std::fs::read_to_string(p).ok()) {
                Some(text) => f.rows = Json::String(text),
                None => diags.push(
                    Diagnostic::error("unit-test", format!("unit test '{test_name}' uses fixture '{name}', but no {name}.{ext} was found"))
                        .at(test_loc.clone())
                        .hint(format!("put the file at {}/fixtures/{name}.{ext}", project.test_paths.first().map(String::as_str).unwrap_or("tests"))),
                ),
            }
        }
        let Some(model_id) = by_name.get(&u.model).filter(|id| {
            nodes
                .get(*id)
                .is_some_and(|n| n.resource_type == ResourceType::Model)
        }) else {
            diags.push(
                Diagnostic::error(
                    "unknown-ref",
                    format!(
                        "unit test '{}' tests model '{}', which was not found",
                        u.name, u.model
                    ),
                )
                .at(u.location())
                .hint(did_you_mean(
                    &u.model,
                    by_name.keys().map(String::as_str),
                    "check the `model:` of the unit test",
                )),
            );
            continue;
        };
        let mut fqn = vec![SmolStr::from(&project.name)];
        let parts: Vec<&str> = u.file.split('/').collect();
        fqn.extend(
            parts[1..parts.len().saturating_sub(1)]
                .iter()
                .map(|s| SmolStr::from(*s)),
        );
        fqn.push(u.model.as_str().into());
        fqn.push(u.name.as_str().into());
        let mut cfg = Config::new();
        cfg.insert("enabled".into(), Json::Bool(true));
        config::merge(&mut cfg, &u.config);
        let node = Node {
            unique_id: format!("unit_test.{}.{}.{}", project.name, u.model, u.name).into(),
            resource_type: ResourceType::UnitTest,
            name: u.name.as_str().into(),
            package: project.name.as_str().into(),
            fqn,
            original_file_path: u.file.as_str().into(),
            path: u
                .file
                .split_once('/')
                .map(|(_, p)| p)
                .unwrap_or(&u.file)
                .to_string(),
            raw_code: Arc::from(""),
            config: cfg,
            unrendered_config: u.config.clone(),
            description: u.description.clone(),
            depends_on_nodes: vec![model_id.clone()],
            relation: nodes[model_id].relation.clone(),
            extras: Some(Box::new(Extras {
                unit_test: Some(Box::new(u)),
                ..Extras::default()
            })),
            ..Node::empty()
        };
        if !node.config.bool_or("enabled", true) {
            disabled.insert(node.unique_id.clone(), Box::new(node));
        } else {
            nodes.insert(node.unique_id.clone(), Box::new(node));
        }
    }

    // Resolve refs and sources into dependencies.
    let names: BTreeMap<String, SmolStr> = by_name;
    let source_keys: BTreeMap<(String, String), SmolStr> = sources
        .values()
        .map(|s| {
            (
                (s.def.source_name.clone(), s.def.name.clone()),
                SmolStr::from(s.unique_id.as_str()),
            )
        })
        .collect();
    // Each node's dependencies on every core (read-only lookups), set in order.
    // Set in place: a vector of 50,000 results beside the nodes raised a parse's peak.
    let all: Vec<&mut Box<Node>> = nodes.values_mut().collect();
    let resolved = crate::parallel::map_owned(all, 256, |node| {
        // Sized exactly: 50,000 of these outlive the parse (a growing vector's first step
        // holds four).
        let mut deps = Vec::with_capacity(node.refs.len() + node.sources.len());
        let mut errs = Vec::new();
        for r in &node.refs {
            if let Some(pkg) = &r.package
                && pkg != &project.name
                && !project.packages.iter().any(|p| &p.name == pkg)
            {
                errs.push(
                    Diagnostic::error(
                        "unknown-ref",
                        format!(
                            "{} '{}' refers to package '{pkg}', which is not installed",
                            node.resource_type.as_str(),
                            node.name
                        ),
                    )
                    .at(locate_call(node, "ref", &r.name))
                    .label("unknown package")
                    .hint(format!("use ref('{}') for a model of this project", r.name)),
                );
                continue;
            }
            match names.get(&ref_key(&r.name, r.version.as_deref())) {
                Some(dep) => deps.push(dep.clone()),
                None => {
                    let is_disabled = disabled.values().any(|d| d.name == r.name);
                    let hint = if is_disabled {
                        format!(
                            "'{}' is disabled (enabled: false); enable it or remove this ref",
                            r.name
                        )
                    } else {
                        did_you_mean(
                            &r.name,
                            names.keys().map(String::as_str),
                            "create the model, or check the name in ref()",
                        )
                    };
                    errs.push(
                        Diagnostic::error(
                            "unknown-ref",
                            format!(
                                "{} '{}' depends on '{}', which {}",
                                node.resource_type.as_str(),
                                node.name,
                                r.name,
                                if is_disabled {
                                    "is disabled"
                                } else {
                                    "was not found"
                                }
                            ),
                        )
                        .at(locate_call(node, "ref", &r.name))
                        .label("unknown ref")
                        .hint(hint),
                    );
                }
            }
        }
        for (s, t) in &node.sources {
            match source_keys.get(&(s.clone(), t.clone())) {
                Some(dep) => deps.push(dep.clone()),
                None => {
                    let all: Vec<String> = source_keys
                        .keys()
                        .map(|(a, b)| format!("{a}.{b}"))
                        .collect();
                    errs.push(
                        Diagnostic::error(
                            "unknown-source",
                            format!(
                                "{} '{}' depends on source '{s}.{t}', which was not found",
                                node.resource_type.as_str(),
                                node.name
                            ),
                        )
                        .at(locate_call(node, "source", t))
                        .label("unknown source")
                        .hint(did_you_mean(
                            &format!("{s}.{t}"),
                            all.iter().map(String::as_str),
                            "declare it under `sources:` in a properties .yml file",
                        )),
                    );
                }
            }
        }
        if deps.len() > 1 {
            let mut seen = BTreeSet::new();
            deps.retain(|d| seen.insert(d.clone()));
            deps.shrink_to_fit();
        }
        // A unit test's only dependency, its model, was set when it was created.
        if node.resource_type != ResourceType::UnitTest {
            node.depends_on_nodes = deps;
        }
        errs
    });
    diags.0.extend(resolved.into_iter().flatten());

    let mut exposures = BTreeMap::new();
    for def in std::mem::take(&mut props.exposures) {
        let mut deps = Vec::new();
        for dep in &def.depends_on {
            let resolved = match exposure_dependency(dep) {
                Some(ExposureDep::Ref(name)) => names.get(&name).cloned().ok_or_else(|| {
                    did_you_mean(
                        &name,
                        names.keys().map(String::as_str),
                        "check the model's name",
                    )
                }),
                Some(ExposureDep::Source(s, t)) => {
                    source_keys.get(&(s, t)).cloned().ok_or_else(|| {
                        "declare the source under `sources:` in a properties .yml file".to_string()
                    })
                }
                // Metrics and semantic models are not part of rsdbt's graph.
                Some(ExposureDep::Other) => continue,
                None => Err("write `ref('model')` or `source('source', 'table')`".to_string()),
            };
            match resolved {
                Ok(id) if !deps.contains(&id) => deps.push(id),
                Ok(_) => {}
                Err(hint) => diags.push(
                    Diagnostic::error(
                        "unknown-ref",
                        format!(
                            "exposure '{}' depends on {dep}, which was not found",
                            def.name
                        ),
                    )
                    .at(def.location())
                    .hint(hint),
                ),
            }
        }
        // [project, folders under the resource path, name], as dbt.
        let mut fqn = vec![project.name.clone()];
        let parts: Vec<&str> = def.file.split('/').collect();
        if parts.len() > 2 {
            fqn.extend(parts[1..parts.len() - 1].iter().map(|s| s.to_string()));
        }
        fqn.push(def.name.clone());
        let unique_id = format!("exposure.{}.{}", project.name, def.name);
        exposures.insert(
            unique_id.clone(),
            Exposure {
                unique_id,
                fqn,
                package: project.name.clone(),
                def,
                depends_on_nodes: deps,
            },
        );
    }

    crate::timings::phase("refs resolved", t);
    // Patches that describe nothing: dbt warns.
    for (kind, map) in [("models", &model_patches), ("seeds", &seed_patches)] {
        for (name, p) in map {
            {
                diags.push(
                    Diagnostic::warning(
                        "unused-patch",
                        format!(
                            "{} describes {} '{name}', which does not exist",
                            p.file,
                            &kind[..kind.len() - 1]
                        ),
                    )
                    .at(p.location())
                    .hint("remove the entry or create the file"),
                );
            }
        }
    }

    let macros = jinja
        .macros()
        .iter()
        .map(|(name, (path, id))| {
            (
                id.clone(),
                Macro {
                    unique_id: id.clone(),
                    name: name.clone(),
                    package: id.split('.').nth(1).unwrap_or(&project.name).to_string(),
                    original_file_path: path.clone(),
                },
            )
        })
        .collect();
    crate::timings::note(format!(
        "partial parse: {} renders reused, {} read without a render",
        cache.reused.load(std::sync::atomic::Ordering::Relaxed),
        read_statically.load(std::sync::atomic::Ordering::Relaxed)
    ));
    // The renders are stored beside the docs' rendering (each ~10 ms for a large project):
    // they are renders of files, valid for the next parse whether or not this one fails.
    let docs_diags = crate::parallel::beside(
        || cache.save(),
        || render_all_docs(&mut nodes, &mut exposures, &mut sources, &props.docs),
    )
    .1;
    diags.extend(docs_diags);
    if diags.has_errors() {
        return Err(diags);
    }
    crate::timings::phase("docs rendered, partial-parse cache saved", t);
    let manifest = Manifest {
        project_name: project.name.clone(),
        nodes,
        sources,
        exposures,
        macros,
        disabled,
        docs: props.docs,
        jinja,
        invocation_id: invocation.invocation_id.clone(),
        generated_at: invocation.started_at,
        adapter_type: target
            .map(|t| t.adapter_type.clone())
            .unwrap_or_else(|| "datafusion".into()),
        target_path: project.target_path.clone(),
        package_dirs: project
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.dir.clone()))
            .collect(),
        warnings: diags,
    };
    crate::timings::phase("manifest assembled", t);
    Ok(manifest)
}

/// The project's `dispatch:` list: `{macro_namespace: dbt_utils, search_order: [me, dbt_utils]}`.
fn dispatch_config(doc: &Json) -> BTreeMap<String, Vec<String>> {
    doc.get("dispatch")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let ns = d.get("macro_namespace")?.as_str()?.to_string();
            let order = d
                .get("search_order")?
                .as_array()?
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            Some((ns, order))
        })
        .collect()
}

/// A file's path inside its package (dbt's `original_file_path`), or as is for the project's.
fn package_relative<'a>(package: Option<&Package>, path: &'a str) -> &'a str {
    package
        .and_then(|p| path.strip_prefix(p.dir.as_str()))
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

/// rsdbt loads the macros of packages already in `dbt_packages/`, but installs nothing and
/// loads no package models yet: say so rather than failing later on an undefined name.
fn packages_warnings(project: &Project) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if project.packages.is_empty() {
        out.extend(["packages.yml", "dependencies.yml"].iter().find_map(|f| {
            let text: Arc<str> = std::fs::read_to_string(project.root.join(f)).ok()?.into();
            let doc = crate::project::yaml::parse(f, &text).ok()?;
            let listed = doc.get("packages")?.as_array().filter(|p| !p.is_empty())?;
            Some(
                Diagnostic::warning(
                    "packages",
                    format!(
                        "{f} lists {} package(s), but none is installed; rsdbt cannot install packages yet",
                        listed.len()
                    ),
                )
                .at(Location::find(f, text.clone(), "packages"))
                .hint("put each package's folder under dbt_packages/ (dbt deps does this); rsdbt loads their macros"),
            )
        }));
    }
    out
}

/// The relation a node builds: `generate_schema_name` / `generate_alias_name` (the project's
/// own macros when it has them), `database` config, and the kind the materialization makes.
fn name_relation(
    jinja: &Jinja,
    node: &Node,
    target_schema: &str,
    database: &str,
) -> Result<Relation, Diagnostic> {
    let defaults = config::defaults(node.resource_type.as_str());
    let get = |k: &str| {
        node.config
            .get(k)
            .or_else(|| defaults.get(k))
            .filter(|v| !v.is_null())
    };
    let custom_schema = get("schema").and_then(Json::as_str).map(str::to_string);
    let schema = if let Some(ts) = get("target_schema")
        .and_then(Json::as_str)
        .filter(|_| node.resource_type == ResourceType::Snapshot)
    {
        // Legacy snapshot config: the schema is used as written.
        ts.to_string()
    } else if jinja.has_project_macro("generate_schema_name") {
        let arg = custom_schema
            .clone()
            .map(Json::String)
            .unwrap_or(Json::Null);
        jinja
            .call_macro(node.info(), "generate_schema_name", &[arg, node_json(node)])?
            .trim()
            .to_string()
    } else {
        default_schema(target_schema, custom_schema.as_deref())
    };
    let alias: SmolStr = if jinja.has_project_macro("generate_alias_name") {
        let arg = get("alias").cloned().unwrap_or(Json::Null);
        jinja
            .call_macro(node.info(), "generate_alias_name", &[arg, node_json(node)])?
            .trim()
            .into()
    } else {
        match get("alias").and_then(Json::as_str) {
            Some(alias) => alias.into(),
            // Most relations are named as their node: the name is shared, not copied.
            None => node.name.clone(),
        }
    };
    let db = get("target_database")
        .filter(|_| node.resource_type == ResourceType::Snapshot)
        .or_else(|| get("database"))
        .and_then(Json::as_str)
        .unwrap_or(database);
    let mut rel = Relation::new(db, &schema, "");
    rel.identifier = alias;
    rel.kind = Some(
        match node.materialized() {
            "view" => "view",
            "ephemeral" => "cte",
            _ => "table",
        }
        .into(),
    );
    if node.is_ephemeral() {
        rel.cte_name = Some(format!("__dbt__cte__{}", node.name));
    }
    Ok(rel)
}

/// Configs whose value dbt's schema requires to be text (or unset): anything else is an error
/// there (`[1, 2] is not of type 'string'`), and would be a silent default here.
fn check_config_types(cfg: &Config) -> Result<(), String> {
    const TEXT: &[&str] = &[
        "materialized",
        "schema",
        "alias",
        "database",
        "incremental_strategy",
        "on_schema_change",
    ];
    for key in TEXT {
        match cfg.get(key) {
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(other) if *key == "materialized" => {
                return Err(format!(
                    "config 'materialized' is {other}, not a text value"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "config '{key}' is {other}, not a text value or null"
                ));
            }
        }
    }
    Ok(())
}

/// A snapshot needs a `unique_key` and a strategy with its column(s).
fn check_snapshot_config(cfg: &Config) -> Result<(), String> {
    if cfg.get("unique_key").is_none_or(Json::is_null) {
        return Err("has no unique_key".into());
    }
    match cfg.get("strategy").and_then(Json::as_str) {
        Some("timestamp") if cfg.get("updated_at").and_then(Json::as_str).is_none() => {
            Err("uses strategy 'timestamp' without updated_at".into())
        }
        Some("check") if cfg.get("check_cols").is_none_or(Json::is_null) => {
            Err("uses strategy 'check' without check_cols".into())
        }
        Some("timestamp") | Some("check") => Ok(()),
        Some(other) => Err(format!(
            "has unknown strategy '{other}' (use timestamp or check)"
        )),
        None => Err("has no strategy".into()),
    }
}

/// `(name, text)` of each `{% snapshot name %}...{% endsnapshot %}` block of a file; the text
/// is the whole file with everything but the block's body blanked, so line numbers still match.
fn snapshot_blocks(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = source[pos..].find("{%").map(|i| pos + i) {
        let Some(tag_end) = source[start..].find("%}").map(|e| start + e + 2) else {
            break;
        };
        let inner =
            source[start + 2..tag_end - 2].trim_matches(|c: char| c == '-' || c.is_whitespace());
        let Some(name) = inner
            .strip_prefix("snapshot ")
            .map(|n| n.trim().to_string())
        else {
            pos = tag_end;
            continue;
        };
        let close = source[tag_end..]
            .find("endsnapshot")
            .map(|e| tag_end + e)
            .unwrap_or(source.len());
        let body_end = source[..close]
            .rfind("{%")
            .filter(|&b| b >= tag_end)
            .unwrap_or(close);
        let blank = |t: &str| {
            t.chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' })
                .collect::<String>()
        };
        let text = format!(
            "{}{}{}",
            blank(&source[..tag_end]),
            &source[tag_end..body_end],
            blank(&source[body_end..])
        );
        out.push((name, text));
        pos = source[close..]
            .find("%}")
            .map(|e| close + e + 2)
            .unwrap_or(source.len());
    }
    out
}

/// dbt's default `generate_schema_name`: the target schema, or `<target>_<custom>`.
pub fn default_schema(target_schema: &str, custom: Option<&str>) -> String {
    match custom.map(str::trim) {
        Some(c) if !c.is_empty() => format!("{target_schema}_{c}"),
        _ => target_schema.to_string(),
    }
}

fn node_json(node: &Node) -> Json {
    serde_json::json!({
        "name": node.name,
        "unique_id": node.unique_id,
        "resource_type": node.resource_type.as_str(),
        "package_name": node.package,
        "fqn": node.fqn,
        "original_file_path": node.original_file_path,
        "path": node.path,
        "config": node.config,
        "tags": node.tags(),
    })
}

/// Where in a node's file `ref('name')` / `source(.., 'name')` is written.
fn locate_call(node: &Node, func: &str, name: &str) -> Location {
    let src = &node.raw_code;
    let mut from = 0;
    while let Some(pos) = src[from..].find(&format!("{func}(")) {
        let start = from + pos;
        let end = src[start..]
            .find(')')
            .map(|e| start + e + 1)
            .unwrap_or(src.len());
        let call = &src[start..end];
        if call.contains(&format!("'{name}'")) || call.contains(&format!("\"{name}\"")) {
            return Location {
                path: node.original_file_path.to_string(),
                source: src.clone(),
                offset: start,
                len: end - start,
            };
        }
        from = start + func.len();
    }
    Location::file(&node.original_file_path, src.clone())
}

/// Seeds above this size are checksummed by their path, as dbt does: hashing a large file on
/// every parse would cost seconds, and reading it whole its size in memory.
pub const MAX_HASHED_SEED: u64 = 1024 * 1024;

fn checksum(file: &SourceFile, project: &Project, original_file_path: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    if file.kind == FileKind::Seed {
        let path = project.root.join(&file.path);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_HASHED_SEED => return seed_path_checksum(original_file_path),
            Ok(_) => match std::fs::read(&path) {
                Ok(bytes) => h.update(&bytes),
                Err(_) => h.update(file.path.as_bytes()),
            },
            Err(_) => h.update(file.path.as_bytes()),
        }
    } else {
        h.update(file.contents.as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// The checksum of a large seed: its path (dbt's `{"name": "path"}` checksum).
fn seed_path_checksum(path: &str) -> String {
    path.replace('\\', "/")
}

/// Whether `node`'s checksum is its path rather than a hash of its file (a large seed): a
/// seed's path has an extension, a hex digest no dot.
pub fn checksum_is_path(node: &Node) -> bool {
    node.resource_type == ResourceType::Seed && node.checksum().contains('.')
}

/// An owned snapshot of relations, usable from other threads during compile.
pub struct RelationIndex {
    refs: BTreeMap<String, Relation>,
    sources: BTreeMap<(String, String), Relation>,
}

impl RelationIndex {
    /// Relations of refable nodes; `deferred` (unique_id → relation from `--state`) replaces
    /// the relation of nodes this run does not build.
    pub fn new(m: &Manifest, deferred: &BTreeMap<String, Relation>) -> Self {
        Self {
            refs: m
                .nodes
                .values()
                .filter(|n| {
                    matches!(
                        n.resource_type,
                        ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
                    )
                })
                .flat_map(|n| {
                    let rel = deferred
                        .get(n.unique_id.as_str())
                        .cloned()
                        .unwrap_or_else(|| n.relation.clone());
                    let v = n.version();
                    let versioned = v.map(|v| (ref_key(&n.name, Some(&v.v)), rel.clone()));
                    let plain =
                        (v.is_none_or(|v| v.is_latest())).then(|| (n.name.to_string(), rel));
                    versioned.into_iter().chain(plain)
                })
                .collect(),
            sources: m
                .sources
                .values()
                .map(|s| {
                    (
                        (s.def.source_name.clone(), s.def.name.clone()),
                        s.relation.clone(),
                    )
                })
                .collect(),
        }
    }
}

impl jinja::Resolve for RelationIndex {
    fn resolve_ref(&self, _from: &str, call: &RefCall) -> Result<Relation, String> {
        self.refs
            .get(&ref_key(&call.name, call.version.as_deref()))
            .cloned()
            .ok_or_else(|| format!("ref('{}') not found", call.name))
    }
    fn resolve_source(&self, _from: &str, source: &str, table: &str) -> Result<Relation, String> {
        self.sources
            .get(&(source.into(), table.into()))
            .cloned()
            .ok_or_else(|| format!("source('{source}', '{table}') not found"))
    }
}

/// `{{ doc('name') }}` in the descriptions of nodes, exposures and sources, rendered at parse
/// time as dbt does.
fn render_all_docs(
    nodes: &mut BTreeMap<SmolStr, Box<Node>>,
    exposures: &mut BTreeMap<String, Exposure>,
    sources: &mut BTreeMap<String, Source>,
    docs: &BTreeMap<String, String>,
) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let uses_doc = |text: &str| text.contains("doc(");
    for n in nodes.values_mut() {
        // Most descriptions call no doc(): no copy of the file's name for them.
        if !uses_doc(&n.description) && !n.columns.iter().any(|c| uses_doc(&c.description)) {
            continue;
        }
        let file = n
            .patch_path()
            .map_or_else(|| n.original_file_path.to_string(), str::to_string);
        render_docs(&mut n.description, docs, &file, &mut diags);
        for c in &mut n.columns {
            render_docs(&mut c.description, docs, &file, &mut diags);
        }
    }
    for e in exposures.values_mut() {
        render_docs(&mut e.def.description, docs, &e.def.file, &mut diags);
    }
    for s in sources.values_mut() {
        let def = &mut s.def;
        render_docs(&mut def.description, docs, &def.file, &mut diags);
        render_docs(&mut def.source_description, docs, &def.file, &mut diags);
        for c in &mut def.columns {
            render_docs(&mut c.description, docs, &def.file, &mut diags);
        }
    }
    diags
}

/// Replaces `{{ doc('name') }}` (or `doc('package', 'name')`) with the `{% docs %}` block of
/// that name; other Jinja in a description is left as written.
fn render_docs(
    text: &mut String,
    docs: &BTreeMap<String, String>,
    file: &str,
    diags: &mut Diagnostics,
) {
    if !text.contains("doc(") {
        return;
    }
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        let call = inner
            .strip_prefix("doc")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'));
        match call {
            Some(args) => {
                let name = args
                    .rsplit(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"');
                match docs.get(name) {
                    Some(body) => out.push_str(body),
                    None => {
                        diags.push(
                            Diagnostic::error(
                                "unknown-doc",
                                format!(
                                    "a description in {} uses doc('{name}'), which no {{% docs %}} block defines",
                                    // dbt's patch paths (`project://path`) shown as the file's path.
                                    file.split_once("://").map_or(file, |(_, path)| path)
                                ),
                            )
                            .hint("define it in a .md file under the model paths: {% docs NAME %}...{% enddocs %}"),
                        );
                        out.push_str(&rest[start..start + len + 2]);
                    }
                }
            }
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    *text = out;
}

enum ExposureDep {
    Ref(String),
    Source(String, String),
    Other,
}

/// `ref('m')`, `ref('pkg', 'm')`, `ref('m', v=2)`, `source('s', 't')`, `metric('x')`.
fn exposure_dependency(text: &str) -> Option<ExposureDep> {
    let text = text.trim();
    let open = text.find('(')?;
    let (func, rest) = (text[..open].trim(), text[open + 1..].strip_suffix(')')?);
    let args: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('='))
        .map(|a| a.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    match (func, args.as_slice()) {
        ("ref", [.., name]) => Some(ExposureDep::Ref(name.clone())),
        ("source", [s, t]) => Some(ExposureDep::Source(s.clone(), t.clone())),
        ("metric" | "semantic_model", _) => Some(ExposureDep::Other),
        _ => None,
    }
}

/// A source's properties with their Jinja rendered, as dbt does when it parses them:
/// `schema: "{{ target.schema }}"`, `database`, `identifier`, `loaded_at_field`, `loader`,
/// config, meta, freshness and `external:` may use `target`, `var()` and `env_var()`.
/// Descriptions are left to `doc()` at docs time, and tests render when they run.
fn render_source_properties(
    jinja: &Jinja,
    info: &crate::jinja::NodeInfo,
    t: &SourceTable,
) -> Result<SourceTable, Diagnostic> {
    let text = |s: &str| -> Result<String, Diagnostic> {
        if s.contains("{{") || s.contains("{%") {
            Ok(jinja.render_str(info.clone(), s, Phase::Parse)?.0)
        } else {
            Ok(s.to_string())
        }
    };
    let opt = |o: &Option<String>| o.as_deref().map(&text).transpose();
    let mut out = t.clone();
    out.database = opt(&t.database)?;
    out.schema = opt(&t.schema)?;
    out.identifier = text(&t.identifier)?;
    out.loaded_at_field = opt(&t.loaded_at_field)?;
    out.loader = text(&t.loader)?;
    out.meta = crate::jinja::deep_render(&t.meta, &text)?;
    out.source_meta = crate::jinja::deep_render(&t.source_meta, &text)?;
    out.freshness = crate::jinja::deep_render(&t.freshness, &text)?;
    out.external = crate::jinja::deep_render(&t.external, &text)?;
    out.config = match crate::jinja::deep_render(&t.config.to_json(), &text)? {
        Json::Object(m) => m.into(),
        _ => unreachable!("an object renders to an object"),
    };
    Ok(out)
}

#[cfg(test)]
mod layout {
    /// A large project holds 50,000 nodes, most of them generic tests: a node of 640 bytes or
    /// less takes mimalloc's 640-byte block, one byte more its 768-byte block (6 MB more for
    /// a 10,000-model parse). A new field of a few nodes belongs in `Extras`.
    #[test]
    fn a_node_fits_the_640_byte_block() {
        assert!(std::mem::size_of::<super::Node>() <= 640);
    }
}
