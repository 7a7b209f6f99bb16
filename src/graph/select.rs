//! dbt's node selection: `--select` / `--exclude` / `--selector` and their evaluation.
//!
//! Grammar of the command line (as dbt's), in EBNF:
//!
//! ```text
//! selection   = term { " " term } ;              (* union; several --select values too *)
//! term        = atom { "," atom } ;              (* intersection *)
//! atom        = [ "@" ] [ depth "+" ] criterion [ "+" [ depth ] ]
//!             | [ depth ] "+" criterion ... ;    (* "+x": ancestors, "x+": descendants *)
//! criterion   = [ method ":" ] value ;           (* the method defaults to fqn *)
//! method      = "fqn" | "path" | "file" | "tag" | "resource_type" | "source" | "package"
//!             | "test_type" | "test_name" | "state" | "result" | "source_status" | "exposure"
//!             | "config." key { "." key } ;
//! depth       = digit { digit } ;
//! value       = text with "*" and "?" wildcards ;
//! ```
//!
//! `--exclude` takes the same grammar and is subtracted. Each criterion also picks the tests
//! attached to what it selects (`--indirect-selection`) before set operations combine the
//! criteria, as dbt's `NodeSelector` does. `selectors.yml` definitions (`union`,
//! `intersection`, `exclude`, method dictionaries) evaluate through the same functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Location, did_you_mean};
use crate::graph::Dag;
use crate::graph::state::State;
use crate::manifest::Manifest;

/// One selector atom, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    pub method: String,
    pub value: String,
    /// `Some(None)`: all ancestors (`+x`); `Some(Some(n))`: `n+x`.
    pub parents: Option<Option<usize>>,
    pub children: Option<Option<usize>>,
    /// `@x`: x, its descendants, and the ancestors of those.
    pub childrens_parents: bool,
}

const METHODS: &[&str] = &[
    "fqn",
    "path",
    "file",
    "tag",
    "resource_type",
    "source",
    "package",
    "config",
    "test_type",
    "test_name",
    "state",
    "result",
    "source_status",
    "exposure",
];

/// How tests of selected nodes join a selection (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Indirect {
    /// A test runs when any of its parents is selected.
    #[default]
    Eager,
    /// Only when all of its parents are selected.
    Cautious,
    /// When all of its parents are selected or are ancestors of selected nodes.
    Buildable,
    /// Tests are never added indirectly.
    Empty,
}

/// `selectors.yml`: name → (definition, is the default).
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub defs: BTreeMap<String, (Json, bool)>,
    pub source: Option<(String, Arc<str>)>,
}

/// What to select.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub select: &'a [String],
    pub exclude: &'a [String],
    pub selector: Option<&'a str>,
    pub indirect: Indirect,
    pub state: Option<&'a State>,
    pub selectors: &'a Selectors,
}

/// Parses one atom like `2+tag:nightly+` or `@orders`.
pub fn parse_atom(raw: &str) -> Result<Atom, Diagnostic> {
    let bad = |why: &str, at: &str| {
        Diagnostic::error("selector", format!("invalid selector '{raw}': {why}"))
            .at(Location::find("--select", Arc::from(raw), at))
            .label(why.to_string())
            .hint("selectors look like `orders`, `+orders`, `gold+`, `2+orders+1`, `@orders`, `tag:nightly`, `path:models/gold`, `config.materialized:table`")
    };
    let mut s = raw;
    let childrens_parents = s.starts_with('@');
    if childrens_parents {
        s = &s[1..];
    }
    let digits_before: String = s.chars().take_while(char::is_ascii_digit).collect();
    let mut parents = None;
    if s[digits_before.len()..].starts_with('+') {
        parents = Some(if digits_before.is_empty() {
            None
        } else {
            Some(
                digits_before
                    .parse()
                    .map_err(|_| bad("depth too large", &digits_before))?,
            )
        });
        s = &s[digits_before.len() + 1..];
    }
    let digits_after: String = s
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let mut children = None;
    let body_end = s.len() - digits_after.len();
    if s[..body_end].ends_with('+') {
        children = Some(if digits_after.is_empty() {
            None
        } else {
            Some(
                digits_after
                    .parse()
                    .map_err(|_| bad("depth too large", &digits_after))?,
            )
        });
        s = &s[..body_end - 1];
    }
    if childrens_parents && (parents.is_some() || children.is_some()) {
        return Err(bad("'@' cannot be combined with '+'", "+"));
    }
    if s.is_empty() || s.ends_with(':') {
        return Err(bad("nothing to select", if s.is_empty() { raw } else { s }));
    }
    if let Some(c) = s.chars().find(|c| {
        matches!(
            c,
            '(' | ')' | '[' | ']' | '{' | '}' | '"' | '\'' | ';' | '|' | '&'
        )
    }) {
        return Err(bad(&format!("unexpected character '{c}'"), &c.to_string()));
    }
    // Without a method, as dbt: a path if it has a slash, a file if it names one, else fqn.
    let lower = s.to_ascii_lowercase();
    let (method, value) = match s.split_once(':') {
        Some((m, v)) => (m.to_string(), v.to_string()),
        None if s.contains('/') || s.contains('\\') => ("path".to_string(), s.to_string()),
        None if [".sql", ".py", ".csv"].iter().any(|e| lower.ends_with(e)) => {
            ("file".to_string(), s.to_string())
        }
        None => ("fqn".to_string(), s.to_string()),
    };
    let base = method.split('.').next().unwrap_or("");
    if !METHODS.contains(&base) {
        return Err(Diagnostic::error("selector", format!("unknown selector method '{method}' in '{raw}'"))
            .at(Location::find("--select", Arc::from(raw), &method))
            .label("unknown method")
            .hint(did_you_mean(&method, METHODS.iter().copied(), "methods: fqn, path, file, tag, resource_type, source, package, config.<key>, test_type, test_name, state, result")));
    }
    Ok(Atom {
        method,
        value,
        parents,
        children,
        childrens_parents,
    })
}

/// Nodes a selector picked directly, and tests kept aside in case all their parents join
/// later (dbt's cautious/buildable indirect selection).
#[derive(Debug, Default, Clone)]
struct Picked {
    direct: BTreeSet<String>,
    indirect: BTreeSet<String>,
}

struct Ctx<'a> {
    m: &'a Manifest,
    dag: &'a Dag,
    state: Option<&'a State>,
    selectors: &'a Selectors,
    /// Criteria that matched nothing (dbt warns about them).
    empty: std::cell::RefCell<Vec<String>>,
}

/// Evaluates a selection: `--selector` (or the default selector) or `--select` minus
/// `--exclude`. With nothing given, every node is selected. Also returns the warnings for
/// criteria that matched nothing.
pub fn eval(
    m: &Manifest,
    dag: &Dag,
    req: &Request,
) -> Result<(BTreeSet<String>, crate::diag::Diagnostics), Diagnostic> {
    let ctx = Ctx {
        m,
        dag,
        state: req.state,
        selectors: req.selectors,
        empty: Default::default(),
    };
    let nothing_given = req.select.iter().all(|s| s.trim().is_empty())
        && req.exclude.iter().all(|s| s.trim().is_empty());
    let named = req.selector.or_else(|| {
        if nothing_given {
            req.selectors
                .defs
                .iter()
                .find(|(_, (_, d))| *d)
                .map(|(n, _)| n.as_str())
        } else {
            None
        }
    });
    let result = if let Some(name) = named {
        selector_by_name(&ctx, name, req.indirect, &mut Vec::new())?.direct
    } else {
        let selected = if req.select.iter().all(|s| s.trim().is_empty()) {
            let all: BTreeSet<String> = dag.all().map(str::to_string).collect();
            Picked {
                direct: all.clone(),
                indirect: all,
            }
        } else {
            union(&ctx, req.select, req.indirect)?
        };
        if req.exclude.iter().all(|s| s.trim().is_empty()) {
            selected.direct
        } else {
            let excluded = union(&ctx, req.exclude, req.indirect)?;
            difference(&ctx, selected, excluded, req.indirect).direct
        }
    };
    let mut warnings = crate::diag::Diagnostics::new();
    for c in ctx.empty.take() {
        warnings.push(Diagnostic::warning(
            "selector",
            format!("The selection criterion '{c}' does not match any enabled nodes"),
        ));
    }
    Ok((result, warnings))
}

fn difference(ctx: &Ctx, selected: Picked, excluded: Picked, mode: Indirect) -> Picked {
    let direct = selected
        .direct
        .difference(&excluded.direct)
        .cloned()
        .collect();
    let all_excluded: BTreeSet<&String> =
        excluded.direct.iter().chain(&excluded.indirect).collect();
    let pending: BTreeSet<String> = selected
        .direct
        .iter()
        .chain(&selected.indirect)
        .filter(|id| !all_excluded.contains(id))
        .cloned()
        .collect();
    let direct = incorporate(ctx, direct, pending.clone(), mode);
    Picked {
        direct,
        indirect: pending,
    }
}

/// Space-separated terms and several values: a union of intersections.
fn union(ctx: &Ctx, values: &[String], mode: Indirect) -> Result<Picked, Diagnostic> {
    let mut terms = Vec::new();
    for v in values {
        for term in v.split_whitespace() {
            let mut parts = Vec::new();
            for part in term.split(',').filter(|p| !p.is_empty()) {
                let atom = parse_atom(part).map_err(|d| relocate(d, v, part))?;
                parts.push(criterion(ctx, &atom, part, mode)?);
            }
            terms.push(combine(ctx, parts, mode, true));
        }
    }
    Ok(combine(ctx, terms, mode, false))
}

/// Points a diagnostic about `part` into the whole `--select` value it came from.
fn relocate(mut d: Diagnostic, whole: &str, part: &str) -> Diagnostic {
    if let Some(loc) = &mut d.location {
        let base = whole.find(part).unwrap_or(0);
        loc.offset += base;
        loc.source = Arc::from(whole);
    }
    d
}

fn combine(ctx: &Ctx, parts: Vec<Picked>, mode: Indirect, intersect: bool) -> Picked {
    let mut iter = parts.into_iter();
    let Some(first) = iter.next() else {
        return Picked::default();
    };
    let mut direct = first.direct.clone();
    let mut pending: BTreeSet<String> = first.direct.union(&first.indirect).cloned().collect();
    for p in iter {
        let all: BTreeSet<String> = p.direct.union(&p.indirect).cloned().collect();
        if intersect {
            direct = direct.intersection(&p.direct).cloned().collect();
            pending = pending.intersection(&all).cloned().collect();
        } else {
            direct.extend(p.direct);
            pending.extend(all);
        }
    }
    let direct = incorporate(ctx, direct, pending.clone(), mode);
    Picked {
        direct,
        indirect: pending,
    }
}

/// Tests set aside earlier join when all their parents are now selected (or, for buildable,
/// selected or upstream of the selection).
fn incorporate(
    ctx: &Ctx,
    direct: BTreeSet<String>,
    pending: BTreeSet<String>,
    mode: Indirect,
) -> BTreeSet<String> {
    if direct == pending || !matches!(mode, Indirect::Cautious | Indirect::Buildable) {
        return direct;
    }
    let mut selected = direct.clone();
    let upstream: BTreeSet<String> = if mode == Indirect::Buildable {
        direct
            .iter()
            .flat_map(|id| ctx.dag.walk(id, true, None))
            .collect()
    } else {
        BTreeSet::new()
    };
    for id in pending.difference(&direct) {
        if let Some(n) = ctx.m.nodes.get(id.as_str())
            && n.depends_on_nodes
                .iter()
                .all(|p| direct.contains(p.as_str()) || upstream.contains(p.as_str()))
        {
            selected.insert(id.clone());
        }
    }
    selected
}

/// One criterion: the nodes its method matches, its graph operators, then the tests attached
/// to those nodes (dbt's `expand_selection`).
fn criterion(ctx: &Ctx, atom: &Atom, raw: &str, mode: Indirect) -> Result<Picked, Diagnostic> {
    if matches!(atom.method.as_str(), "state" | "result" | "source_status") && ctx.state.is_none() {
        return Err(Diagnostic::error(
            "selector",
            format!("'{raw}' compares with an earlier run, but no --state was given"),
        )
        .hint("pass --state <folder with the manifest.json (and run_results.json) of that run>"));
    }
    let selected = eval_atom(ctx, atom);
    if selected.is_empty() {
        ctx.empty.borrow_mut().push(raw.to_string());
    }
    if mode == Indirect::Empty {
        return Ok(Picked {
            direct: selected,
            indirect: BTreeSet::new(),
        });
    }
    let upstream: BTreeSet<String> = if mode == Indirect::Buildable {
        selected
            .iter()
            .flat_map(|id| ctx.dag.walk(id, true, None))
            .chain(ctx.m.sources.keys().cloned())
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut picked = Picked {
        direct: selected.clone(),
        indirect: BTreeSet::new(),
    };
    for parent in &selected {
        for child in ctx.dag.neighbors(parent, false) {
            let Some(n) = ctx
                .m
                .nodes
                .get(child.as_str())
                .filter(|n| n.test.is_some() || n.unit_test().is_some())
            else {
                continue;
            };
            let all_parents_selected = n
                .depends_on_nodes
                .iter()
                .all(|p| selected.contains(p.as_str()));
            let buildable = mode == Indirect::Buildable
                && n.depends_on_nodes
                    .iter()
                    .all(|p| selected.contains(p.as_str()) || upstream.contains(p.as_str()));
            if mode == Indirect::Eager || all_parents_selected || buildable {
                picked.direct.insert(child);
            } else {
                picked.indirect.insert(child);
            }
        }
    }
    Ok(picked)
}

fn eval_atom(ctx: &Ctx, atom: &Atom) -> BTreeSet<String> {
    let base: BTreeSet<String> = ctx
        .dag
        .all()
        .filter(|id| matches(ctx, id, atom))
        .map(str::to_string)
        .collect();
    let mut out = base.clone();
    for id in &base {
        if atom.childrens_parents {
            let desc = ctx.dag.walk(id, false, None);
            for d in desc.iter().chain(std::iter::once(id)) {
                out.extend(ctx.dag.walk(d, true, None));
            }
            out.extend(desc);
            continue;
        }
        if let Some(depth) = atom.parents {
            out.extend(ctx.dag.walk(id, true, depth));
        }
        if let Some(depth) = atom.children {
            out.extend(ctx.dag.walk(id, false, depth));
        }
    }
    out
}

fn matches(ctx: &Ctx, id: &str, atom: &Atom) -> bool {
    let m = ctx.m;
    let v = atom.value.as_str();
    match atom.method.as_str() {
        "state" => return ctx.state.is_some_and(|s| s.matches(m, id, v)),
        "source_status" => {
            return v == "fresher" && ctx.state.is_some_and(|s| s.fresher(id));
        }
        "result" => {
            return ctx
                .state
                .and_then(|s| s.results.get(id))
                .is_some_and(|status| status == v);
        }
        _ => {}
    }
    if let Some(e) = m.exposures.get(id) {
        return match atom.method.as_str() {
            // `exposure:name` or `exposure:package.name`
            "exposure" => match v.split_once('.') {
                Some((pkg, name)) => glob(pkg, &e.package) && glob(name, &e.def.name),
                None => glob(v, &e.def.name),
            },
            "fqn" => fqn_matches(&e.fqn, v),
            "path" => path_matches(&e.def.file, v),
            "resource_type" => v == "exposure",
            "package" => glob(v, &e.package),
            "tag" => e.def.tags.iter().any(|t| glob(v, t)),
            _ => false,
        };
    }
    if let Some(node) = m.nodes.get(id) {
        match atom.method.as_str() {
            "fqn" => fqn_matches(&node.fqn, v),
            // A node is also at the yml that describes it (its patch), as in dbt.
            "path" => {
                path_matches(&node.original_file_path, v)
                    || node
                        .patch_path()
                        .and_then(|p| p.split_once("://"))
                        .is_some_and(|(_, yml)| path_matches(yml, v))
            }
            "file" => {
                let file = node.original_file_path.rsplit('/').next().unwrap_or("");
                glob(v, file) || glob(v, file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file))
            }
            "tag" => node.tags().iter().any(|t| glob(v, t)),
            "resource_type" => node.resource_type.as_str() == v,
            "package" => glob(v, &node.package),
            "source" => false,
            "test_type" => match (&node.test, node.unit_test()) {
                (Some(t), _) => match v {
                    "generic" => t.generic.is_some(),
                    "singular" => t.generic.is_none(),
                    "data" => true,
                    _ => false,
                },
                (None, Some(_)) => v == "unit",
                _ => false,
            },
            "test_name" => node
                .test
                .as_ref()
                .and_then(|t| t.generic.as_ref())
                .is_some_and(|g| glob(v, &g.name)),
            m if m.starts_with("config.") => config_matches(
                &node.config,
                // dbt's unit tests have no materialization (nor most other keys).
                if node.resource_type == crate::manifest::ResourceType::UnitTest {
                    &NO_DEFAULTS
                } else {
                    crate::config::defaults(node.resource_type.as_str())
                },
                &m["config.".len()..],
                v,
            ),
            _ => false,
        }
    } else if let Some(src) = m.sources.get(id) {
        match atom.method.as_str() {
            "source" => {
                let mut parts = v.splitn(3, '.');
                let (a, b) = (parts.next().unwrap_or(""), parts.next());
                // `source:pkg.src.table` and `source:src.table` / `source:src`
                let (s, t) = match (b, parts.next()) {
                    (Some(b), Some(c)) if a == src.package => (b, Some(c)),
                    (Some(b), _) => (a, Some(b)),
                    (None, _) => (a, None),
                };
                glob(s, &src.def.source_name) && t.is_none_or(|t| glob(t, &src.def.name))
            }
            "fqn" => fqn_matches(&src.fqn, v),
            "path" => path_matches(&src.def.file, v),
            "resource_type" => v == "source",
            "package" => glob(v, &src.package),
            "tag" => src.def.tags.iter().any(|t| glob(v, t)),
            m if m.starts_with("config.") => config_matches(
                &src.def.config,
                &crate::config::Config::new(),
                &m["config.".len()..],
                v,
            ),
            _ => false,
        }
    } else {
        false
    }
}

/// Reads `selectors.yml` at the project root, if there is one.
pub fn load_selectors(root: &Path) -> Result<Selectors, Diagnostic> {
    let path = root.join("selectors.yml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Selectors::default());
    };
    let text: Arc<str> = text.into();
    let doc = crate::project::yaml::parse("selectors.yml", &text)?;
    let mut out = Selectors {
        source: Some(("selectors.yml".into(), text.clone())),
        ..Default::default()
    };
    for item in doc
        .get("selectors")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = item.get("name").and_then(Json::as_str) else {
            return Err(
                Diagnostic::error("selector", "a selector in selectors.yml has no `name`")
                    .at(Location::file("selectors.yml", text.clone())),
            );
        };
        let Some(def) = item.get("definition") else {
            return Err(Diagnostic::error("selector", format!("selector '{name}' has no `definition`"))
                .at(Location::find("selectors.yml", text.clone(), &format!("name: {name}")))
                .hint("add `definition:` with a selector string, a method dictionary, or union/intersection"));
        };
        let default = item.get("default").and_then(Json::as_bool).unwrap_or(false);
        out.defs.insert(name.to_string(), (def.clone(), default));
    }
    if out.defs.values().filter(|(_, d)| *d).count() > 1 {
        return Err(Diagnostic::error(
            "selector",
            "more than one selector in selectors.yml has `default: true`",
        )
        .at(Location::find("selectors.yml", text, "default: true")));
    }
    Ok(out)
}

fn selector_by_name(
    ctx: &Ctx,
    name: &str,
    mode: Indirect,
    stack: &mut Vec<String>,
) -> Result<Picked, Diagnostic> {
    let Some((def, _)) = ctx.selectors.defs.get(name) else {
        return Err(Diagnostic::error(
            "selector",
            format!("no selector named '{name}' in selectors.yml"),
        )
        .hint(did_you_mean(
            name,
            ctx.selectors.defs.keys().map(String::as_str),
            "define it under `selectors:` in selectors.yml",
        )));
    };
    if stack.iter().any(|s| s == name) {
        return Err(Diagnostic::error(
            "selector",
            format!(
                "selector '{name}' refers to itself through {}",
                stack.join(" → ")
            ),
        ));
    }
    stack.push(name.to_string());
    let out = definition(ctx, def, mode, stack);
    stack.pop();
    out
}

/// One `definition:` of selectors.yml (string, method dictionary, union, intersection).
fn definition(
    ctx: &Ctx,
    def: &Json,
    mode: Indirect,
    stack: &mut Vec<String>,
) -> Result<Picked, Diagnostic> {
    let bad = |msg: String| {
        let d = Diagnostic::error("selector", msg).hint("a definition is a selector string, `{method: ..., value: ...}`, or `union:` / `intersection:` lists with optional `exclude:` items");
        match &ctx.selectors.source {
            Some((path, src)) => d.at(Location::file(path, src.clone())),
            None => d,
        }
    };
    match def {
        Json::String(s) => union(ctx, std::slice::from_ref(s), mode),
        Json::Object(o) => {
            let mode = match o.get("indirect_selection").and_then(Json::as_str) {
                Some("cautious") => Indirect::Cautious,
                Some("buildable") => Indirect::Buildable,
                Some("empty") => Indirect::Empty,
                Some("eager") => Indirect::Eager,
                _ => mode,
            };
            for op in ["union", "intersection"] {
                if let Some(items) = o.get(op) {
                    let items = items
                        .as_array()
                        .ok_or_else(|| bad(format!("`{op}` must be a list")))?;
                    let mut parts = Vec::new();
                    let mut excludes = Vec::new();
                    for item in items {
                        match item.get("exclude") {
                            Some(ex) => excludes.push(exclusions(ctx, ex, mode, stack)?),
                            None => parts.push(definition(ctx, item, mode, stack)?),
                        }
                    }
                    let mut picked = combine(ctx, parts, mode, op == "intersection");
                    for ex in excludes {
                        picked = difference(ctx, picked, ex, mode);
                    }
                    return Ok(picked);
                }
            }
            if let Some(ex) = o.get("exclude") {
                // A bare exclude: everything but these.
                let all: BTreeSet<String> = ctx.dag.all().map(str::to_string).collect();
                let excluded = exclusions(ctx, ex, mode, stack)?;
                return Ok(difference(
                    ctx,
                    Picked {
                        direct: all.clone(),
                        indirect: all,
                    },
                    excluded,
                    mode,
                ));
            }
            let method = o.get("method").and_then(Json::as_str).ok_or_else(|| {
                bad(format!(
                    "a definition needs `method` and `value`, or `union` / `intersection`: {def}"
                ))
            })?;
            let value = match o.get("value") {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(bad(format!("method '{method}' has no `value`"))),
            };
            if method == "selector" {
                return selector_by_name(ctx, &value, mode, stack);
            }
            let depth = |flag: &str, depth_key: &str| -> Option<Option<usize>> {
                match (
                    o.get(flag).and_then(Json::as_bool),
                    o.get(depth_key).and_then(Json::as_u64),
                ) {
                    (_, Some(d)) => Some(Some(d as usize)),
                    (Some(true), None) => Some(None),
                    _ => None,
                }
            };
            let raw = format!("{method}:{value}");
            let atom = parse_atom(&raw)?;
            let atom = Atom {
                parents: depth("parents", "parents_depth"),
                children: depth("children", "children_depth"),
                childrens_parents: o
                    .get("childrens_parents")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
                ..atom
            };
            criterion(ctx, &atom, &raw, mode)
        }
        other => Err(bad(format!("unsupported selector definition: {other}"))),
    }
}

fn exclusions(
    ctx: &Ctx,
    ex: &Json,
    mode: Indirect,
    stack: &mut Vec<String>,
) -> Result<Picked, Diagnostic> {
    match ex {
        Json::Array(items) => {
            let parts = items
                .iter()
                .map(|i| definition(ctx, i, mode, stack))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(combine(ctx, parts, mode, false))
        }
        other => definition(ctx, other, mode, stack),
    }
}

static NO_DEFAULTS: std::sync::LazyLock<crate::config::Config> =
    std::sync::LazyLock::new(crate::config::Config::new);

/// `config.<key>:<value>`: a key the node does not set has its type's default, as in dbt
/// (`config.materialized:test`, `config.on_schema_change:ignore`).
fn config_matches(
    cfg: &crate::config::Config,
    defaults: &crate::config::Config,
    key: &str,
    v: &str,
) -> bool {
    let mut parts = key.split('.');
    let mut cur = parts.next().and_then(|k| {
        let k = crate::config::canonical_key(k);
        cfg.get(&k).or_else(|| defaults.get(&k))
    });
    for part in parts {
        cur = cur.and_then(|c| c.get(part));
    }
    match cur {
        Some(serde_json::Value::String(s)) => glob(v, s),
        Some(serde_json::Value::Array(items)) => items.iter().any(|i| match i {
            serde_json::Value::String(s) => glob(v, s),
            other => *other == v,
        }),
        Some(serde_json::Value::Bool(b)) => {
            v.eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        Some(serde_json::Value::Null) | None => false,
        Some(other) => *other == v,
    }
}

/// dbt's fqn matching: the node's name, or a dotted prefix of its fqn (with or without the
/// package), `*` allowed in each part.
fn fqn_matches<S: AsRef<str>>(fqn: &[S], selector: &str) -> bool {
    if fqn.last().is_some_and(|leaf| glob(selector, leaf.as_ref())) {
        return true;
    }
    let parts: Vec<&str> = selector.split('.').collect();
    let flat: Vec<&str> = fqn.iter().flat_map(|s| s.as_ref().split('.')).collect();
    let prefix = |flat: &[&str]| {
        if flat.len() < parts.len() {
            return false;
        }
        for (i, p) in parts.iter().enumerate() {
            if *p == "*" {
                return true;
            }
            if !glob(p, flat[i]) {
                return false;
            }
        }
        true
    };
    prefix(&flat) || (flat.len() > 1 && prefix(&flat[1..]))
}

/// `path:` matches a file, or everything under a folder; globs allowed.
fn path_matches(file: &str, selector: &str) -> bool {
    let sel = selector.trim_start_matches("./").trim_end_matches('/');
    if sel.is_empty() || sel == "." {
        return true;
    }
    // As dbt (pathlib's glob): wildcards stay within one folder name, `**` spans folders, and
    // a file is selected by its own path or any folder above it.
    let pattern: Vec<&str> = sel.split('/').collect();
    let parts: Vec<&str> = file.split('/').collect();
    (1..=parts.len()).any(|k| segments_match(&pattern, &parts[..k]))
}

fn segments_match(pattern: &[&str], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|i| segments_match(rest, &parts[i..])),
        Some((p, rest)) => parts
            .split_first()
            .is_some_and(|(f, more)| glob(p, f) && segments_match(rest, more)),
    }
}

/// Shell-style wildcard match (`*` any run of characters, `?` one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms_parse_graph_operators() {
        let a = parse_atom("2+tag:nightly+").unwrap();
        assert_eq!((a.method.as_str(), a.value.as_str()), ("tag", "nightly"));
        assert_eq!(a.parents, Some(Some(2)));
        assert_eq!(a.children, Some(None));
        let b = parse_atom("gold+1").unwrap();
        assert_eq!(
            (b.method.as_str(), b.value.as_str(), b.children),
            ("fqn", "gold", Some(Some(1)))
        );
        assert!(parse_atom("@orders").unwrap().childrens_parents);
        assert!(parse_atom("@+orders").is_err());
        let e = parse_atom("tags:x").unwrap_err();
        assert!(e.hint.unwrap().contains("did you mean 'tag'"));
    }

    #[test]
    fn fqn_and_path_matching() {
        let fqn: Vec<String> = ["shop", "gold", "daily_revenue"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(fqn_matches(&fqn, "daily_revenue"));
        assert!(fqn_matches(&fqn, "gold"));
        assert!(fqn_matches(&fqn, "shop.gold"));
        assert!(fqn_matches(&fqn, "shop"));
        assert!(fqn_matches(&fqn, "daily_*"));
        assert!(!fqn_matches(&fqn, "silver"));
        assert!(!fqn_matches(&fqn, "daily"));
        assert!(path_matches("models/gold/x.sql", "models/gold"));
        assert!(path_matches("models/gold/x.sql", "models/*/x.sql"));
        assert!(!path_matches("models/golden/x.sql", "models/gold"));
        assert!(!path_matches("models/staging/x.sql", "models/*.sql"));
        assert!(path_matches("models/staging/x.sql", "models/*"));
        assert!(path_matches("models/a/b/x.yml", "models/**/*.yml"));
        assert!(path_matches("models/x.yml", "models/**/*.yml"));
    }
}
