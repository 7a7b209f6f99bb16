//! Properties files (`*.yml` under the resource paths): `models:`, `seeds:`, `sources:` and
//! friends, read into patches that the manifest applies to nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::config::Config;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::project::{FileKind, Project, SourceFile, yaml};

/// A column as described in yml.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ColumnDef {
    pub name: String,
    pub description: String,
    pub data_type: Option<String>,
    pub meta: Json,
    pub tags: Vec<String>,
    /// `constraints:` as written (`- type: not_null`), for the manifest and `graph`.
    pub constraints: Vec<Json>,
    /// `data_tests:` / `tests:` entries, kept as written for the tests stage.
    pub tests: Vec<Json>,
}

/// What a yml entry under `models:` / `seeds:` / `snapshots:` says about one node.
#[derive(Debug, Clone)]
pub struct Patch {
    pub name: String,
    pub description: String,
    pub config: Config,
    pub columns: Vec<ColumnDef>,
    pub tests: Vec<Json>,
    pub docs: Option<Json>,
    /// YAML snapshots (dbt 1.9): the relation they snapshot, e.g. `source('app', 'orders')`.
    pub relation: Option<String>,
    pub meta: Option<Json>,
    pub tags: Vec<String>,
    /// Model versions (`versions:` entries, each with `v:`), and `latest_version:`.
    pub versions: Vec<Json>,
    pub latest_version: Option<String>,
    /// A MetricFlow time spine's settings (`time_spine:`), kept for the manifest and `graph`.
    pub time_spine: Option<Json>,
    /// The properties file's text, to locate the entry when reporting a problem.
    pub source: Arc<str>,
    /// `path/to/file.yml`
    pub file: String,
}

impl Patch {
    /// Where the entry is written (computed only when a diagnostic needs it).
    pub fn location(&self) -> Location {
        Location::find(
            &self.file,
            self.source.clone(),
            &format!("name: {}", self.name),
        )
    }
}

/// One `sources:` table.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source_name: String,
    pub name: String,
    pub identifier: String,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub description: String,
    pub source_description: String,
    pub loader: String,
    pub meta: Json,
    pub source_meta: Json,
    pub tags: Vec<String>,
    pub config: Config,
    pub columns: Vec<ColumnDef>,
    pub tests: Vec<Json>,
    pub freshness: Json,
    pub loaded_at_field: Option<String>,
    /// Where the data lives when it is not a table of the target (dbt-external-tables'
    /// `external:`; the source's own `external:` gives the tables' defaults).
    pub external: Json,
    pub source: Arc<str>,
    pub file: String,
}

impl SourceTable {
    /// Where the table is declared (computed only when a diagnostic needs it).
    pub fn location(&self) -> Location {
        Location::find(
            &self.file,
            self.source.clone(),
            &format!("name: {}", self.name),
        )
    }
}

/// Everything read from the properties files.
#[derive(Debug, Default)]
pub struct Properties {
    /// Keyed by resource kind (`models`, `seeds`, `snapshots`, `analyses`) then node name.
    pub patches: BTreeMap<&'static str, BTreeMap<String, Patch>>,
    pub sources: Vec<SourceTable>,
    /// `{% docs name %}` blocks: name → text.
    pub docs: BTreeMap<String, String>,
    pub unit_tests: Vec<UnitTestDef>,
    pub exposures: Vec<ExposureDef>,
}

/// One `exposures:` entry: a dashboard, notebook or application that uses the project's nodes.
#[derive(Debug, Clone)]
pub struct ExposureDef {
    pub name: String,
    /// The entry as written (type, owner, url, maturity, label, meta...), for the manifest.
    pub raw: Json,
    /// `ref('x')` / `source('s', 't')` as written.
    pub depends_on: Vec<String>,
    pub description: String,
    pub tags: Vec<String>,
    pub file: String,
    pub source: Arc<str>,
}

impl ExposureDef {
    pub fn location(&self) -> Location {
        Location::find(
            &self.file,
            self.source.clone(),
            &format!("name: {}", self.name),
        )
    }
}

/// dbt's exposure types.
const EXPOSURE_TYPES: [&str; 5] = ["dashboard", "notebook", "analysis", "ml", "application"];

fn exposure(item: &Json, path: &str, source: &Arc<str>) -> Result<ExposureDef, Diagnostic> {
    let name = entry_name(item, path, source, "exposure")?;
    let loc = || Location::find(path, source.clone(), &format!("name: {name}"));
    let kind = yaml::str_of(item, "type").unwrap_or("");
    if !EXPOSURE_TYPES.contains(&kind) {
        return Err(Diagnostic::error(
            "exposure",
            format!(
                "exposure '{name}' needs a `type`, one of {}",
                EXPOSURE_TYPES.join(", ")
            ),
        )
        .at(loc())
        .hint("e.g. `type: dashboard`"));
    }
    if !item
        .get("owner")
        .is_some_and(|o| o.get("name").is_some() || o.get("email").is_some())
    {
        return Err(Diagnostic::error(
            "exposure",
            format!("exposure '{name}' needs an `owner` with a `name` or an `email`"),
        )
        .at(loc())
        .hint("e.g. `owner: {name: Analytics, email: analytics@example.com}`"));
    }
    Ok(ExposureDef {
        depends_on: item
            .get("depends_on")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        description: yaml::str_of(item, "description").unwrap_or("").to_string(),
        tags: item
            .get("tags")
            .or_else(|| item.pointer("/config/tags"))
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        raw: item.clone(),
        file: path.to_string(),
        source: source.clone(),
        name,
    })
}

/// One input or the expected output of a unit test: rows as `dict` (a list of mappings),
/// `csv` (text) or `sql` (a query), inline or from a fixture file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fixture {
    /// `ref('x')`, `source('s', 't')` or `this` (absent for `expect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub rows: Json,
    pub format: String,
    pub fixture: Option<String>,
}

/// A unit test (dbt 1.8's `unit_tests:`).
#[derive(Debug, Clone)]
pub struct UnitTestDef {
    pub name: String,
    pub model: String,
    pub description: String,
    pub given: Vec<Fixture>,
    pub expect: Fixture,
    /// `{vars: {...}, env_vars: {...}, macros: {...}}`
    pub overrides: Json,
    pub config: Config,
    pub source: Arc<str>,
    pub file: String,
}

impl UnitTestDef {
    pub fn location(&self) -> Location {
        Location::find(
            &self.file,
            self.source.clone(),
            &format!("name: {}", self.name),
        )
    }
}

fn fixture(v: &Json) -> Fixture {
    Fixture {
        input: yaml::str_of(v, "input").map(str::to_string),
        rows: v.get("rows").cloned().unwrap_or(Json::Null),
        format: yaml::str_of(v, "format").unwrap_or("dict").to_string(),
        fixture: yaml::str_of(v, "fixture").map(str::to_string),
    }
}

fn unit_test(item: &Json, path: &str, source: &Arc<str>) -> Result<UnitTestDef, Diagnostic> {
    let name = entry_name(item, path, source, "unit test")?;
    let loc = Location::find(path, source.clone(), &format!("name: {name}"));
    let Some(model) = yaml::str_of(item, "model") else {
        return Err(
            Diagnostic::error("unit-test", format!("unit test '{name}' has no `model`"))
                .at(loc)
                .hint("name the model under test: `model: my_model`"),
        );
    };
    let Some(expect) = item.get("expect") else {
        return Err(
            Diagnostic::error("unit-test", format!("unit test '{name}' has no `expect`"))
                .at(loc)
                .hint("give the expected rows under `expect: {rows: [...]}`"),
        );
    };
    Ok(UnitTestDef {
        model: model.to_string(),
        description: yaml::str_of(item, "description").unwrap_or("").to_string(),
        given: item
            .get("given")
            .and_then(Json::as_array)
            .map(|g| g.iter().map(fixture).collect())
            .unwrap_or_default(),
        expect: fixture(expect),
        overrides: item.get("overrides").cloned().unwrap_or(Json::Null),
        config: item
            .get("config")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default()
            .into(),
        source: source.clone(),
        file: path.to_string(),
        name,
    })
}

/// Reads every properties and docs file of the project. The packages' docs blocks are there
/// too, under the root project's: `doc('name')` in a package's yml finds its own blocks (a
/// block of the same name in the root project wins).
pub fn load(project: &Project) -> Result<Properties, Diagnostics> {
    let mut props = load_files(project.files_of(FileKind::Properties))?;
    for file in project.files_of(FileKind::Docs) {
        read_docs_blocks(&file.contents, &mut props.docs);
    }
    for pkg in &project.packages {
        let mut own = BTreeMap::new();
        for file in &pkg.docs_files {
            read_docs_blocks(&file.contents, &mut own);
        }
        for (name, text) in own {
            props.docs.entry(name).or_insert(text);
        }
    }
    Ok(props)
}

/// The keys of a properties file whose entries describe nodes of the project.
const PATCH_KINDS: [&str; 4] = ["models", "seeds", "snapshots", "analyses"];

/// Reads properties files (`models:`, `seeds:`, `sources:`, `unit_tests:` ...).
pub fn load_files<'a>(
    files: impl Iterator<Item = &'a SourceFile>,
) -> Result<Properties, Diagnostics> {
    let mut props = Properties::default();
    let mut diags = Diagnostics::new();
    // Each file read whole on a worker, its YAML tree freed there too (a large project's
    // trees are tens of thousands of small allocations); only the results come back, in
    // order, for the checks across files.
    let files: Vec<&SourceFile> = files.collect();
    let read = crate::parallel::map(&files, 1, |file| read_file(file));
    for file in read {
        let file = match file {
            Ok(f) => f,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        for (kind, (list_error, patches)) in PATCH_KINDS.into_iter().zip(file.patches) {
            diags.0.extend(list_error);
            for p in patches {
                match p {
                    Ok(p) => {
                        let map = props.patches.entry(kind).or_default();
                        if let Some(prev) = map.get(&p.name) {
                            diags.push(
                                Diagnostic::error(
                                    "duplicate",
                                    format!(
                                        "{} '{}' is described twice: in {} and {}",
                                        &kind[..kind.len() - 1],
                                        p.name,
                                        prev.file,
                                        p.file
                                    ),
                                )
                                .at(p.location())
                                .hint("keep one entry per node across all properties files"),
                            );
                        } else {
                            map.insert(p.name.clone(), p);
                        }
                    }
                    Err(d) => diags.push(d),
                }
            }
        }
        let (list_error, unit_tests) = file.unit_tests;
        diags.0.extend(list_error);
        for u in unit_tests {
            match u {
                Ok(u) => props.unit_tests.push(u),
                Err(d) => diags.push(d),
            }
        }
        let (list_error, exposures) = file.exposures;
        diags.0.extend(list_error);
        for e in exposures {
            match e {
                Ok(e) => props.exposures.push(e),
                Err(d) => diags.push(d),
            }
        }
        let (list_error, sources) = file.sources;
        diags.0.extend(list_error);
        for tables in sources {
            match tables {
                Ok(tables) => props.sources.extend(tables),
                Err(d) => diags.push(d),
            }
        }
    }
    diags.into_result(props)
}

/// A list key's entries as read: the error when the key holds no list, then each entry.
type Entries<T> = (Option<Diagnostic>, Vec<Result<T, Diagnostic>>);

/// What one properties file says, in the order its entries are checked.
struct FileProps {
    patches: [Entries<Patch>; PATCH_KINDS.len()],
    unit_tests: Entries<UnitTestDef>,
    exposures: Entries<ExposureDef>,
    sources: Entries<Vec<SourceTable>>,
}

fn read_file(file: &SourceFile) -> Result<FileProps, Diagnostic> {
    let doc = yaml::parse(&file.path, &file.contents)?;
    let empty = serde_json::Map::new();
    let obj = match &doc {
        Json::Null => &empty,
        Json::Object(obj) => obj,
        _ => {
            return Err(Diagnostic::error(
                "yaml",
                format!("{} must be a mapping (version: 2, models: ...)", file.path),
            )
            .at(file.location()));
        }
    };
    // Every list key must hold a list; anything else is a mistake to point at.
    let entries = |kind: &str| -> (Option<Diagnostic>, &[Json]) {
        match obj.get(kind) {
            None | Some(Json::Null) => (None, &[]),
            Some(Json::Array(items)) => (None, items),
            Some(_) => (
                Some(
                    Diagnostic::error(
                        "yaml",
                        format!("`{kind}:` in {} must be a list of entries", file.path),
                    )
                    .at(Location::find(
                        &file.path,
                        file.contents.clone(),
                        &format!("{kind}:"),
                    ))
                    .hint(format!("write `{kind}:` followed by `  - name: ...` items")),
                ),
                &[],
            ),
        }
    };
    // A file's entries on its worker: spreading a large file's over every core too made the
    // parse no faster and its peak memory 2-4 MB higher (their allocations interleaved with
    // other files' YAML trees, which are then freed).
    fn each<T>(
        (error, items): (Option<Diagnostic>, &[Json]),
        read: impl Fn(&Json) -> Result<T, Diagnostic>,
    ) -> Entries<T> {
        (error, items.iter().map(read).collect())
    }
    let (path, source) = (&file.path, &file.contents);
    Ok(FileProps {
        patches: PATCH_KINDS.map(|kind| each(entries(kind), |item| patch(item, path, source))),
        unit_tests: each(entries("unit_tests"), |item| unit_test(item, path, source)),
        exposures: each(entries("exposures"), |item| exposure(item, path, source)),
        sources: each(entries("sources"), |item| sources(item, path, source)),
    })
}

fn entry_name(
    item: &Json,
    path: &str,
    source: &Arc<str>,
    what: &str,
) -> Result<String, Diagnostic> {
    match item.get("name").and_then(Json::as_str) {
        Some(n) => Ok(n.to_string()),
        None => Err(
            Diagnostic::error("yaml", format!("a {what} entry in {path} has no `name`"))
                .at(Location::file(path, source.clone()))
                .hint("every entry needs `- name: <node name>`"),
        ),
    }
}

/// The `columns:` of a node or source table `owner`. dbt refuses a `columns:` that is not a
/// list (a mapping by column name is the usual slip) and a column without a name; taken
/// silently, the columns' tests would vanish.
fn columns(
    item: &Json,
    owner: &str,
    path: &str,
    source: &Arc<str>,
) -> Result<Vec<ColumnDef>, Diagnostic> {
    let at = || Location::find(path, source.clone(), &format!("name: {owner}"));
    let list = match item.get("columns") {
        Some(Json::Array(items)) => items.as_slice(),
        None | Some(Json::Null) => &[],
        Some(other) => {
            return Err(wrong_kind(
                format!("`columns` of '{owner}' in {path}"),
                "a list",
                other,
                at(),
            )
            .hint("write each column as a list item: `- name: <column>` with its description and tests under it"));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let name = match c.get("name") {
            Some(n @ (Json::String(_) | Json::Number(_) | Json::Bool(_))) => scalar_text(n),
            _ => {
                return Err(Diagnostic::error(
                    "yaml",
                    format!("a column of '{owner}' in {path} has no `name`"),
                )
                .at(at())
                .hint("every column entry needs `- name: <column>`"));
            }
        };
        out.push(ColumnDef {
            description: yaml::str_of(c, "description").unwrap_or("").to_string(),
            data_type: yaml::str_of(c, "data_type").map(str::to_string),
            meta: c
                .get("meta")
                .cloned()
                .unwrap_or(Json::Object(Default::default())),
            tags: yaml::strings_of(c, "tags").unwrap_or_default(),
            constraints: c
                .get("constraints")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default(),
            tests: tests_of(c, &format!("column '{name}' of '{owner}'"), path, source)?,
            name,
        });
    }
    Ok(out)
}

/// `data_tests:` (or the older `tests:`) of `what`: a list, as dbt requires (a single test
/// written as text would otherwise be dropped).
fn tests_of(
    item: &Json,
    what: &str,
    path: &str,
    source: &Arc<str>,
) -> Result<Vec<Json>, Diagnostic> {
    let mut out = Vec::new();
    for key in ["data_tests", "tests"] {
        match item.get(key) {
            Some(Json::Array(items)) => out.extend(items.iter().cloned()),
            None | Some(Json::Null) => {}
            Some(other) => {
                return Err(wrong_kind(
                    format!("`{key}` of {what} in {path}"),
                    "a list",
                    other,
                    Location::find(path, source.clone(), &format!("{key}:")),
                )
                .hint(format!(
                    "write each test as a list item: `{key}:` then `- not_null` on the next line"
                )));
            }
        }
    }
    Ok(out)
}

/// `<what> must be <expected>, got <what the YAML holds>`, at `at`.
fn wrong_kind(what: String, expected: &str, got: &Json, at: Location) -> Diagnostic {
    let got = match got {
        Json::Object(_) => "a mapping",
        Json::Array(_) => "a list",
        Json::String(_) => "text",
        Json::Number(_) => "a number",
        Json::Bool(_) => "a boolean",
        Json::Null => "nothing",
    };
    Diagnostic::error("yaml", format!("{what} must be {expected}, got {got}")).at(at)
}

/// The `config:` of `owner`: a mapping (or nothing), as dbt requires; anything else would be
/// a config silently not applied. `owner` names it in the message; the error points at
/// `name: <entry>`.
fn config_of(
    item: &Json,
    owner: &str,
    entry: &str,
    path: &str,
    source: &Arc<str>,
) -> Result<Config, Diagnostic> {
    match item.get("config") {
        Some(Json::Object(m)) => Ok(m.clone().into()),
        None | Some(Json::Null) => Ok(Default::default()),
        Some(other) => Err(wrong_kind(
            format!("`config` of '{owner}' in {path}"),
            "a mapping",
            other,
            Location::find(path, source.clone(), &format!("name: {entry}")),
        )
        .hint("write the configs as keys under it, e.g. `config:` then `materialized: table` on the next line")),
    }
}

fn patch(item: &Json, path: &str, source: &Arc<str>) -> Result<Patch, Diagnostic> {
    let name = entry_name(item, path, source, "node")?;
    let config = config_of(item, &name, &name, path, source)?;
    Ok(Patch {
        description: yaml::str_of(item, "description").unwrap_or("").to_string(),
        config,
        columns: columns(item, &name, path, source)?,
        tests: tests_of(item, &format!("'{name}'"), path, source)?,
        docs: item.get("docs").cloned(),
        versions: item
            .get("versions")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
        latest_version: item.get("latest_version").map(scalar_text),
        time_spine: item.get("time_spine").cloned(),
        relation: yaml::str_of(item, "relation").map(str::to_string),
        meta: item.get("meta").cloned(),
        tags: yaml::strings_of(item, "tags").unwrap_or_default(),
        source: source.clone(),
        file: path.to_string(),
        name,
    })
}

fn sources(src: &Json, path: &str, source: &Arc<str>) -> Result<Vec<SourceTable>, Diagnostic> {
    let source_name = entry_name(src, path, source, "source")?;
    let loc = Location::find(path, source.clone(), &format!("name: {source_name}"));
    let mut out = Vec::new();
    let tables = src
        .get("tables")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    for t in &tables {
        let name = entry_name(t, path, source, "source table")?;
        let mut config = config_of(src, &source_name, &source_name, path, source)?;
        crate::config::merge(
            &mut config,
            &config_of(t, &format!("{source_name}.{name}"), &name, path, source)?,
        );
        out.push(SourceTable {
            source_name: source_name.clone(),
            identifier: yaml::str_of(t, "identifier").unwrap_or(&name).to_string(),
            schema: yaml::str_of(src, "schema").map(str::to_string),
            database: yaml::str_of(src, "database").map(str::to_string),
            description: yaml::str_of(t, "description").unwrap_or("").to_string(),
            source_description: yaml::str_of(src, "description").unwrap_or("").to_string(),
            loader: yaml::str_of(src, "loader").unwrap_or("").to_string(),
            meta: t
                .get("meta")
                .cloned()
                .unwrap_or(Json::Object(Default::default())),
            source_meta: src
                .get("meta")
                .cloned()
                .unwrap_or(Json::Object(Default::default())),
            tags: [
                yaml::strings_of(src, "tags").unwrap_or_default(),
                yaml::strings_of(t, "tags").unwrap_or_default(),
            ]
            .concat(),
            config,
            columns: columns(t, &name, path, source)?,
            tests: tests_of(t, &format!("'{source_name}.{name}'"), path, source)?,
            // dbt merges the source's block under the table's, threshold by threshold;
            // `freshness: null` on the table turns it off.
            freshness: match (src.get("freshness"), t.get("freshness")) {
                (Some(Json::Object(base)), Some(Json::Object(own))) => {
                    let mut merged = base.clone();
                    merged.extend(own.clone());
                    Json::Object(merged)
                }
                (_, Some(own)) => own.clone(),
                (base, None) => base.cloned().unwrap_or(Json::Null),
            },
            // `loaded_at_field: null` on a table drops the source's.
            loaded_at_field: match t.get("loaded_at_field") {
                Some(own) => own.as_str(),
                None => yaml::str_of(src, "loaded_at_field"),
            }
            .map(str::to_string),
            external: match (src.get("external"), t.get("external")) {
                (Some(Json::Object(defaults)), Some(Json::Object(own))) => {
                    let mut merged = defaults.clone();
                    merged.extend(own.clone());
                    Json::Object(merged)
                }
                (own, None) | (None, own) => own.cloned().unwrap_or(Json::Null),
                (_, Some(own)) => own.clone(),
            },
            source: source.clone(),
            file: path.to_string(),
            name,
        });
    }
    if tables.is_empty() {
        return Err(Diagnostic::error(
            "yaml",
            format!("source '{source_name}' in {path} has no tables"),
        )
        .at(loc)
        .hint("list the tables under `tables:` with `- name: <table>`"));
    }
    Ok(out)
}

/// `{% docs name %}...{% enddocs %}` blocks of a Markdown file, with or without whitespace
/// control (`{%- docs name -%}`, `{%- enddocs %}`); the text is trimmed either way.
fn read_docs_blocks(text: &str, out: &mut BTreeMap<String, String>) {
    /// The tag at the start of `s` if it is `{%[-+] <keyword> <args> [-+]%}`: its arguments and
    /// the text after it.
    fn tag<'a>(s: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
        let inner = s
            .strip_prefix("{%")?
            .trim_start_matches(['-', '+'])
            .trim_start();
        let args = inner.strip_prefix(keyword)?;
        if !args.starts_with(|c: char| c.is_whitespace() || c == '-' || c == '%') {
            return None;
        }
        let close = args.find("%}")?;
        Some((
            args[..close].trim().trim_end_matches(['-', '+']).trim(),
            &args[close + 2..],
        ))
    }
    let mut rest = text;
    while let Some(at) = rest.find("{%") {
        rest = &rest[at..];
        let Some((name, body)) = tag(rest, "docs") else {
            rest = &rest[2..];
            continue;
        };
        let mut end = body;
        let after = loop {
            let Some(at) = end.find("{%") else {
                return;
            };
            end = &end[at..];
            match tag(end, "enddocs") {
                Some((_, after)) => break after,
                None => end = &end[2..],
            }
        };
        let len = body.len() - end.len();
        out.insert(name.to_string(), body[..len].trim().to_string());
        rest = after;
    }
}

/// A YAML scalar as text (`v: 1` is a number to YAML, a version to dbt).
pub fn scalar_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn docs_blocks_with_and_without_whitespace_control() {
        let mut out = BTreeMap::new();
        super::read_docs_blocks(
            "# Notes\n{% docs plain %}\nPlain text.\n{% enddocs %}\n\
             {% docs trimmed -%} Trimmed, with a {% raw %}tag{% endraw %} inside.\n{%- enddocs %}\n\
             {%- docs tight-%}x{%-enddocs-%} {% documented %}",
            &mut out,
        );
        assert_eq!(
            out,
            BTreeMap::from([
                ("plain".to_string(), "Plain text.".to_string()),
                (
                    "trimmed".to_string(),
                    "Trimmed, with a {% raw %}tag{% endraw %} inside.".to_string()
                ),
                ("tight".to_string(), "x".to_string()),
            ])
        );
    }
}
