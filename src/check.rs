//! Static analysis: before a run executes anything, every selected model's compiled SQL is
//! planned with DataFusion against the schemas of its inputs — the warehouse's tables where
//! this run does not rebuild them, otherwise the schemas planned for the upstream models and
//! read from the seed files. Unknown columns and tables, ambiguous names and type errors become
//! diagnostics on the model's file. SQL the planner cannot judge (a dialect feature it lacks, an
//! input it cannot see) is skipped with a notice, never reported as the user's mistake, unless
//! the mode is `strict`.

#![cfg_attr(not(feature = "datafusion"), allow(dead_code, unused_imports))]

use std::collections::{BTreeMap, BTreeSet};

#[cfg(feature = "datafusion")]
use crate::adapter::datafusion::Analyzer;
use crate::compile::Compiler;
use crate::config::ConfigExt;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::manifest::{Manifest, Node, ResourceType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    Off,
    #[default]
    On,
    Strict,
}

/// What the analysis found: errors (and, in strict mode, unresolvable models) as diagnostics,
/// and notices for the models it could not judge.
#[derive(Default)]
pub struct Report {
    pub diagnostics: Diagnostics,
    pub notices: Vec<String>,
    pub checked: usize,
    /// Selected models planned: their columns and where each comes from (table as the plan
    /// names it, column).
    #[cfg(feature = "datafusion")]
    pub lineage: BTreeMap<String, Vec<(String, BTreeSet<crate::lineage::Origin>)>>,
}

#[cfg(feature = "datafusion")]
/// Plans `order` (DAG order): the selected nodes, and the unselected ancestors that are not in
/// the warehouse yet (their planned schemas stand in for their tables); only the selected ones
/// are reported on. `built`: whether an incremental model's table exists (it then compiles
/// with `is_incremental()` true).
///
/// The models of one DAG level do not read each other: they are planned on every core, each
/// against the schemas of the levels before, and what they find is reported in `order`.
pub fn analyze(
    analyzer: &Analyzer,
    manifest: &Manifest,
    scope: &Scope<'_>,
    built: impl Fn(&str) -> bool + Sync,
    runtime: &tokio::runtime::Handle,
) -> Report {
    let Scope {
        order,
        selected,
        project_root,
        full_refresh,
        mode,
        run_start_hooks,
        types_checked,
        compiled,
    } = *scope;
    let mut report = Report::default();
    if mode == Mode::Off {
        return report;
    }
    let compiler = Compiler::new(manifest);
    let in_run: BTreeSet<&str> = order.iter().map(String::as_str).collect();
    let inputs_rebuilt = |node: &Node| {
        node.depends_on_nodes
            .iter()
            .any(|u| in_run.contains(u.as_str()))
    };
    // Nodes whose output schema is unknown: their children cannot be judged either.
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    // What each node found, by its place in `order`.
    let mut found: Vec<(usize, Found)> = Vec::new();
    for level in levels(manifest, order) {
        let mut to_plan: Vec<(usize, &Node)> = Vec::new();
        for (at, node) in level {
            let reported = selected.contains(node.unique_id.as_str());
            match node.resource_type {
                ResourceType::Seed => {
                    let path = project_root.join(manifest.file_path(node));
                    match analyzer.seed_schema(&crate::exec::seed_spec(node, &path)) {
                        Ok(schema) => analyzer.assume(&node.relation, schema),
                        // The seed's own load reports a bad file, with its line.
                        Err(_) => {
                            unknown.insert(&node.unique_id);
                        }
                    }
                }
                ResourceType::Model if !node.is_ephemeral() => {
                    match node
                        .depends_on_nodes
                        .iter()
                        .find(|u| unknown.contains(u.as_str()))
                    {
                        Some(up) => {
                            if reported {
                                found.push((
                                    at,
                                    Found::Notice(format!(
                                        "{}: not checked, as its input {up} could not be",
                                        node.name
                                    )),
                                ));
                            }
                            unknown.insert(&node.unique_id);
                        }
                        None => to_plan.push((at, node)),
                    }
                }
                // An ephemeral model is planned inlined into its children: what it reads
                // unknown, they read unknown.
                ResourceType::Model
                    if node
                        .depends_on_nodes
                        .iter()
                        .any(|u| unknown.contains(u.as_str())) =>
                {
                    unknown.insert(&node.unique_id);
                }
                // Snapshots add their own columns; tests build nothing.
                ResourceType::Snapshot => {
                    unknown.insert(&node.unique_id);
                }
                _ => {}
            }
        }
        let plans = crate::parallel::map(&to_plan, 16, |(_, node)| {
            let id = &node.unique_id;
            let fresh;
            let sql = match compiled.get(id.as_str()) {
                Some(sql) => sql,
                None => {
                    let incremental =
                        crate::exec::runs_incrementally(node, || built(id), full_refresh);
                    // Compilation errors are reported when the node runs, as before. SQL made
                    // from what the warehouse holds now (`run_query`, a relation's columns) is
                    // not what will run when this run builds one of the node's inputs first.
                    fresh = compiler
                        .compile_with(id, incremental)
                        .ok()
                        .filter(|c| !(c.introspected && inputs_rebuilt(node)))?;
                    &fresh.sql
                }
            };
            Some(runtime.block_on(analyzer.plan_with_lineage(sql)))
        });
        for ((at, node), plan) in to_plan.into_iter().zip(plans) {
            let reported = selected.contains(node.unique_id.as_str());
            match plan {
                Some(Ok((schema, lineage))) => {
                    report.checked += usize::from(reported);
                    if reported {
                        let cols = schema
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .zip(lineage)
                            .collect();
                        report.lineage.insert(node.unique_id.to_string(), cols);
                    }
                    analyzer.assume(&node.relation, schema);
                }
                None => {
                    unknown.insert(&node.unique_id);
                }
                Some(Err(_)) if !reported => {
                    unknown.insert(&node.unique_id);
                }
                Some(Err(msg)) => {
                    unknown.insert(&node.unique_id);
                    // A hook may create the table before the model runs.
                    let hooks = run_start_hooks || !node.config.strings("pre-hook").is_empty();
                    let kind = match classify(&msg) {
                        Kind::Mistake if hooks && msg.contains("not found") => Kind::Unjudged,
                        Kind::Mistake if !types_checked && is_type_error(&msg) => Kind::Unjudged,
                        k => k,
                    };
                    found.push((
                        at,
                        match kind {
                            Kind::Mistake => Found::Error(diagnostic(node, &msg)),
                            Kind::Unjudged if mode == Mode::Strict => Found::Error(
                                diagnostic(node, &msg).hint(
                                    "--static-analysis strict: the planner could not judge this SQL; use --static-analysis on to skip such models",
                                ),
                            ),
                            Kind::Unjudged => Found::Notice(format!(
                                "{}: not checked ({})",
                                node.name,
                                first_line(&msg)
                            )),
                        },
                    ));
                }
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    for (_, f) in found {
        match f {
            Found::Error(d) => report.diagnostics.push(d),
            Found::Notice(n) => report.notices.push(n),
        }
    }
    report
}

enum Found {
    Error(Diagnostic),
    Notice(String),
}

/// `order`'s nodes by DAG level (a node's level is one more than its deepest input's), each
/// with its place in `order`, in `order` within a level.
fn levels<'m>(manifest: &'m Manifest, order: &[String]) -> Vec<Vec<(usize, &'m Node)>> {
    let mut level_of: std::collections::HashMap<&str, usize> = Default::default();
    let mut levels: Vec<Vec<(usize, &Node)>> = Vec::new();
    for (at, id) in order.iter().enumerate() {
        let Some(node) = manifest.nodes.get(id.as_str()) else {
            continue;
        };
        let level = node
            .depends_on_nodes
            .iter()
            .filter_map(|u| level_of.get(u.as_str()))
            .max()
            .map_or(0, |l| l + 1);
        level_of.insert(&node.unique_id, level);
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push((at, node));
    }
    levels
}

/// What to analyze, and how.
pub struct Scope<'a> {
    pub order: &'a [String],
    pub selected: &'a BTreeSet<String>,
    pub project_root: &'a std::path::Path,
    pub full_refresh: bool,
    pub mode: Mode,
    /// The project has `on-run-start` hooks, which may create tables models read.
    pub run_start_hooks: bool,
    /// Type errors are mistakes (the SQL runs on DataFusion itself); otherwise notices.
    pub types_checked: bool,
    /// Models' SQL the caller already compiled (with `is_incremental()` answered as `built`
    /// says): planned as it is instead of rendered again.
    pub compiled: &'a BTreeMap<String, String>,
}

enum Kind {
    /// A mistake in the model: an unknown column or table, an ambiguous name, a type error.
    Mistake,
    /// The planner cannot judge it (unsupported syntax or function).
    Unjudged,
}

fn classify(msg: &str) -> Kind {
    const MISTAKES: [&str; 12] = [
        "Cannot get result type",
        "failed to match any signature",
        "coercion failed",
        "not supported for",
        "No field named",
        "not found",
        "Ambiguous reference",
        "ambiguous",
        "Cannot coerce",
        "There isn't a common type",
        "Cannot infer common",
        "does not exist",
    ];
    // A feature the planner lacks ("Tuple expressions are not supported for Rollup
    // expressions", "This feature is not implemented: ...") says nothing about the model.
    if msg.contains("not implemented") || msg.contains("expressions are not supported") {
        return Kind::Unjudged;
    }
    if MISTAKES.iter().any(|m| msg.contains(m)) && !msg.contains("Invalid function") {
        Kind::Mistake
    } else {
        Kind::Unjudged
    }
}

fn is_type_error(msg: &str) -> bool {
    !(msg.contains("No field named")
        || msg.contains("not found")
        || msg.contains("does not exist")
        || msg.contains("mbiguous"))
}

fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or(msg)
}

/// The planner's message on the model's file, pointing at the name it complains about.
fn diagnostic(node: &Node, msg: &str) -> Diagnostic {
    let name = offending_name(msg);
    let location = match &name {
        Some(n) => Location::find(&node.original_file_path, node.raw_code.clone(), n),
        None => Location::file(&node.original_file_path, node.raw_code.clone()),
    };
    let mut hint = String::new();
    // DataFusion's own suggestion, when it makes one.
    if let Some(s) = msg
        .split("Did you mean '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
    {
        hint = format!("did you mean `{}`? ", s.rsplit('.').next().unwrap_or(s));
    } else if let (Some(n), Some(valid)) = (&name, msg.split("Valid fields are ").nth(1)) {
        let candidates: Vec<String> = valid
            .trim_end_matches('.')
            .split(", ")
            .map(|f| {
                f.rsplit('.')
                    .next()
                    .unwrap_or(f)
                    .trim_matches('"')
                    .to_string()
            })
            .collect();
        // A near spelling, or a column whose name contains it (`amount` → `order_amount`).
        let best = crate::diag::closest(n, candidates.iter().map(String::as_str)).or_else(|| {
            candidates
                .iter()
                .map(String::as_str)
                .find(|c| c.contains(n.as_str()) || n.contains(c))
        });
        if let Some(best) = best {
            hint = format!("did you mean `{best}`? ");
        }
    }
    hint.push_str(
        "(found by planning the compiled SQL before running anything; --static-analysis off skips this)",
    );
    Diagnostic::error(
        "static-analysis",
        format!("model '{}': {}", node.name, first_line(msg)),
    )
    .at(location)
    .hint(hint)
}

/// `foo` from `No field named foo.` / `No field named t.foo.` / `table 'a.b.foo' not found`.
fn offending_name(msg: &str) -> Option<String> {
    if let Some(rest) = msg.split("No field named ").nth(1) {
        let word: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect::<String>()
            .trim_end_matches('.')
            .to_string();
        return Some(word.rsplit('.').next()?.trim_matches('"').to_string());
    }
    if let Some(rest) = msg.split("table '").nth(1) {
        let table = rest.split('\'').next()?;
        return Some(table.rsplit('.').next()?.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_planner_messages() {
        assert_eq!(
            offending_name("Schema error: No field named amout. Valid fields are o.amount, o.id."),
            Some("amout".into())
        );
        assert_eq!(
            offending_name("Schema error: No field named o.amout. Valid fields are o.amount."),
            Some("amout".into())
        );
        assert_eq!(
            offending_name("Error during planning: table 'warehouse.main.ordrs' not found"),
            Some("ordrs".into())
        );
        assert!(matches!(
            classify("SQL error: ParserError(\"Expected ...\")"),
            Kind::Unjudged
        ));
        assert!(matches!(
            classify(
                "Error during planning: Tuple expressions are not supported for Rollup expressions"
            ),
            Kind::Unjudged
        ));
        assert!(matches!(
            classify("Schema error: No field named x."),
            Kind::Mistake
        ));
    }
}
