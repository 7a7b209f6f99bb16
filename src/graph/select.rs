//! dbt's node selection: `--select` / `--exclude` syntax and its evaluation over the DAG.
//!
//! Grammar (as dbt): values separated by spaces (or given as several `--select`) are a union;
//! `a,b` is an intersection; each atom is `[@][N+]method:value[+N]`, where the method defaults
//! to `fqn` (a model name, or a folder path: `gold` = every node under `models/gold/`).

use std::collections::BTreeSet;

use crate::diag::Diagnostic;
use crate::graph::Dag;
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

/// Parses one atom like `2+tag:nightly+` or `@orders`.
pub fn parse_atom(raw: &str) -> Result<Atom, Diagnostic> {
    let bad = |why: &str| {
        Diagnostic::error("selector", format!("invalid selector '{raw}': {why}"))
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
            Some(digits_before.parse().map_err(|_| bad("bad depth"))?)
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
            Some(digits_after.parse().map_err(|_| bad("bad depth"))?)
        });
        s = &s[..body_end - 1];
    }
    if childrens_parents && (parents.is_some() || children.is_some()) {
        return Err(bad("'@' cannot be combined with '+'"));
    }
    if s.is_empty() {
        return Err(bad("nothing to select"));
    }
    let (method, value) = match s.split_once(':') {
        Some((m, v)) => (m.to_string(), v.to_string()),
        None => ("fqn".to_string(), s.to_string()),
    };
    let base = method.split('.').next().unwrap_or("");
    if !METHODS.contains(&base) {
        return Err(Diagnostic::error(
            "selector",
            format!("unknown selector method '{method}' in '{raw}'"),
        )
        .hint(crate::diag::did_you_mean(
            &method,
            METHODS.iter().copied(),
            "methods: fqn, path, file, tag, resource_type, source, package, config.<key>",
        )));
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

/// Evaluates `--select` values minus `--exclude` values as dbt does: each selector criterion
/// also picks the tests attached to what it selects (per `indirect`), before set operations
/// combine the criteria. With no `--select`, every node is selected.
pub fn eval(
    m: &Manifest,
    dag: &Dag,
    select: &[String],
    exclude: &[String],
    indirect: Indirect,
) -> Result<BTreeSet<String>, Diagnostic> {
    let selected = if select.iter().all(|s| s.trim().is_empty()) {
        let all: BTreeSet<String> = dag.all().cloned().collect();
        Picked {
            direct: all.clone(),
            indirect: all,
        }
    } else {
        union(m, dag, select, indirect)?
    };
    if exclude.iter().all(|s| s.trim().is_empty()) {
        return Ok(selected.direct);
    }
    let excluded = union(m, dag, exclude, indirect)?;
    let direct = selected
        .direct
        .difference(&excluded.direct)
        .cloned()
        .collect();
    let all_excluded: BTreeSet<&String> =
        excluded.direct.iter().chain(&excluded.indirect).collect();
    let pending = selected
        .direct
        .iter()
        .chain(&selected.indirect)
        .filter(|id| !all_excluded.contains(id))
        .cloned()
        .collect();
    Ok(incorporate(m, dag, direct, pending, indirect))
}

/// Space-separated terms and several values: a union of intersections.
fn union(m: &Manifest, dag: &Dag, values: &[String], mode: Indirect) -> Result<Picked, Diagnostic> {
    let mut terms = Vec::new();
    for v in values {
        for term in v.split_whitespace() {
            let mut parts = Vec::new();
            for part in term.split(',').filter(|p| !p.is_empty()) {
                parts.push(criterion(m, dag, &parse_atom(part)?, mode));
            }
            terms.push(combine(m, dag, parts, mode, true));
        }
    }
    Ok(combine(m, dag, terms, mode, false))
}

fn combine(m: &Manifest, dag: &Dag, parts: Vec<Picked>, mode: Indirect, intersect: bool) -> Picked {
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
    let direct = incorporate(m, dag, direct, pending.clone(), mode);
    Picked {
        direct,
        indirect: pending,
    }
}

/// Tests set aside earlier join when all their parents are now selected (or, for buildable,
/// selected or upstream of the selection).
fn incorporate(
    m: &Manifest,
    dag: &Dag,
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
            .flat_map(|id| dag.walk(id, true, None))
            .collect()
    } else {
        BTreeSet::new()
    };
    for id in pending.difference(&direct) {
        if let Some(n) = m.nodes.get(id)
            && n.depends_on_nodes
                .iter()
                .all(|p| direct.contains(p) || upstream.contains(p))
        {
            selected.insert(id.clone());
        }
    }
    selected
}

/// One criterion: the nodes its method matches, its graph operators, then the tests attached
/// to those nodes (dbt's `expand_selection`).
fn criterion(m: &Manifest, dag: &Dag, atom: &Atom, mode: Indirect) -> Picked {
    let selected = eval_atom(m, dag, atom);
    if mode == Indirect::Empty {
        return Picked {
            direct: selected,
            indirect: BTreeSet::new(),
        };
    }
    let upstream: BTreeSet<String> = if mode == Indirect::Buildable {
        selected
            .iter()
            .flat_map(|id| dag.walk(id, true, None))
            .chain(m.sources.keys().cloned())
            .collect()
    } else {
        BTreeSet::new()
    };
    let mut picked = Picked {
        direct: selected.clone(),
        indirect: BTreeSet::new(),
    };
    for parent in &selected {
        for child in dag.neighbors(parent, false) {
            let Some(n) = m
                .nodes
                .get(&child)
                .filter(|n| n.test.is_some() || n.unit_test.is_some())
            else {
                continue;
            };
            let all_parents_selected = n.depends_on_nodes.iter().all(|p| selected.contains(p));
            let buildable = mode == Indirect::Buildable
                && n.depends_on_nodes
                    .iter()
                    .all(|p| selected.contains(p) || upstream.contains(p));
            if mode == Indirect::Eager || all_parents_selected || buildable {
                picked.direct.insert(child);
            } else {
                picked.indirect.insert(child);
            }
        }
    }
    picked
}

fn eval_atom(m: &Manifest, dag: &Dag, atom: &Atom) -> BTreeSet<String> {
    let base: BTreeSet<String> = dag
        .all()
        .filter(|id| matches(m, id, atom))
        .cloned()
        .collect();
    let mut out = base.clone();
    for id in &base {
        if atom.childrens_parents {
            let desc = dag.walk(id, false, None);
            for d in desc.iter().chain(std::iter::once(id)) {
                out.extend(dag.walk(d, true, None));
            }
            out.extend(desc);
            continue;
        }
        if let Some(depth) = atom.parents {
            out.extend(dag.walk(id, true, depth));
        }
        if let Some(depth) = atom.children {
            out.extend(dag.walk(id, false, depth));
        }
    }
    out
}

fn matches(m: &Manifest, id: &str, atom: &Atom) -> bool {
    let v = atom.value.as_str();
    if let Some(node) = m.nodes.get(id) {
        match atom.method.as_str() {
            "fqn" => fqn_matches(&node.fqn, v),
            "path" => path_matches(&node.original_file_path, v),
            "file" => {
                let file = node.original_file_path.rsplit('/').next().unwrap_or("");
                glob(v, file) || glob(v, file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file))
            }
            "tag" => node.tags().iter().any(|t| glob(v, t)),
            "resource_type" => node.resource_type.as_str() == v,
            "package" => glob(v, &node.package),
            "source" => false,
            "test_type" => match (&node.test, &node.unit_test) {
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
            m if m.starts_with("config.") => config_matches(&node.config, &m["config.".len()..], v),
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
            m if m.starts_with("config.") => {
                config_matches(&src.def.config, &m["config.".len()..], v)
            }
            _ => false,
        }
    } else {
        false
    }
}

fn config_matches(cfg: &crate::config::Config, key: &str, v: &str) -> bool {
    let mut parts = key.split('.');
    let mut cur = parts
        .next()
        .and_then(|k| cfg.get(&crate::config::canonical_key(k)));
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
fn fqn_matches(fqn: &[String], selector: &str) -> bool {
    if fqn.last().is_some_and(|leaf| glob(selector, leaf)) {
        return true;
    }
    let parts: Vec<&str> = selector.split('.').collect();
    let flat: Vec<&str> = fqn.iter().flat_map(|s| s.split('.')).collect();
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
    if sel.contains('*') || sel.contains('?') {
        return glob(sel, file);
    }
    file == sel || file.starts_with(&format!("{sel}/"))
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
    }
}
