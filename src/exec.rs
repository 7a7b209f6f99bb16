//! Execution: runs selected nodes in DAG order, up to `threads` at a time. Per node: compile,
//! plan the materialization's operations, apply them through the adapter. A failed node
//! becomes data (`status: error`) and its descendants are skipped; the rest of the run goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value as Json, json};

use crate::adapter::Adapter;
use crate::cli::printer::{NodeLine, Printer};
use crate::compile::{Compiler, write_compiled};
use crate::config::ConfigExt;
use crate::graph::Dag;
use crate::manifest::{Manifest, Node, ResourceType};
use crate::materialize::{self, Operation, SeedSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timing {
    pub name: &'static str,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: chrono::DateTime<chrono::Utc>,
}

/// The outcome of one node (dbt's `RunResult`).
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub unique_id: String,
    pub status: Status,
    pub message: Option<String>,
    pub timing: Vec<Timing>,
    pub thread_id: String,
    pub execution_time: f64,
    pub adapter_response: Json,
    pub failures: Option<u64>,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RunResults {
    pub results: Vec<NodeResult>,
    pub elapsed: f64,
}

impl RunResults {
    pub fn count(&self, s: Status) -> usize {
        self.results.iter().filter(|r| r.status == s).count()
    }
}

/// Whether a node is something `run`/`seed`/`build` executes.
pub fn is_executable(n: &Node) -> bool {
    match n.resource_type {
        ResourceType::Model => !n.is_ephemeral(),
        ResourceType::Seed => true,
        _ => false,
    }
}

/// What a run needs besides the adapter.
pub struct RunEnv<'a> {
    pub manifest: &'a Manifest,
    pub dag: &'a Dag,
    pub threads: usize,
    /// The project's target folder (compiled SQL is written there).
    pub target_dir: &'a std::path::Path,
    pub project_root: &'a std::path::Path,
    pub printer: &'a Printer,
}

/// Runs `ids` (already filtered to executable nodes) in topological order.
pub async fn run<A: Adapter>(adapter: &A, env: &RunEnv<'_>, ids: &[String]) -> RunResults {
    let RunEnv {
        manifest,
        dag,
        threads,
        target_dir,
        project_root,
        printer,
    } = *env;
    let started = Instant::now();
    let compiler = Compiler::new(manifest);
    let selected: BTreeSet<&String> = ids.iter().collect();
    let total = ids.len();
    // Parents inside the selection that must finish first.
    let mut waiting: BTreeMap<String, BTreeSet<String>> = ids
        .iter()
        .map(|id| {
            let mut ups = BTreeSet::new();
            collect_selected_ancestors(manifest, dag, id, &selected, &mut ups);
            (id.clone(), ups)
        })
        .collect();
    let order: BTreeMap<&String, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut results: BTreeMap<String, NodeResult> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    let mut next_index = 0usize;
    let threads = threads.max(1);

    loop {
        // Start every ready node, in DAG order, while there are free threads.
        let mut ready: Vec<String> = waiting
            .iter()
            .filter(|(_, ups)| ups.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        ready.sort_by_key(|id| order[id]);
        for id in ready {
            if running.len() >= threads {
                break;
            }
            waiting.remove(&id);
            next_index += 1;
            let node = &manifest.nodes[&id];
            let skipped_by = node
                .depends_on_nodes
                .iter()
                .find(|p| failed.contains(*p))
                .cloned()
                .or_else(|| {
                    let mut ups = BTreeSet::new();
                    collect_selected_ancestors(manifest, dag, &id, &selected, &mut ups);
                    ups.into_iter().find(|u| failed.contains(u))
                });
            if let Some(parent) = skipped_by {
                printer.node_skipped(next_index, total, node);
                failed.insert(id.clone());
                results.insert(id.clone(), skipped(node, &parent));
                for ups in waiting.values_mut() {
                    ups.remove(&id);
                }
                continue;
            }
            let thread_id = format!("Thread-{} (worker)", (next_index - 1) % threads + 1);
            printer.node_start(next_index, total, node);
            let index = next_index;
            let compiler = &compiler;
            running.push(async move {
                let res =
                    run_node(adapter, compiler, node, thread_id, target_dir, project_root).await;
                (index, res)
            });
        }
        let Some((index, res)) = running.next().await else {
            if waiting.is_empty() {
                break;
            }
            continue;
        };
        let node = &manifest.nodes[&res.unique_id];
        printer.node_done(&NodeLine {
            index,
            total,
            node,
            result: &res,
        });
        if res.status != Status::Success {
            failed.insert(res.unique_id.clone());
        }
        for ups in waiting.values_mut() {
            ups.remove(&res.unique_id);
        }
        results.insert(res.unique_id.clone(), res);
    }
    let mut ordered: Vec<NodeResult> = ids.iter().filter_map(|id| results.remove(id)).collect();
    ordered.sort_by_key(|r| order[&r.unique_id]);
    RunResults {
        results: ordered,
        elapsed: started.elapsed().as_secs_f64(),
    }
}

/// Selected ancestors of `id`, looking through unselected nodes in between (each node
/// visited once, so diamonds do not blow up).
fn collect_selected_ancestors(
    m: &Manifest,
    dag: &Dag,
    id: &str,
    selected: &BTreeSet<&String>,
    out: &mut BTreeSet<String>,
) {
    let mut seen = BTreeSet::new();
    let mut stack = vec![id.to_string()];
    while let Some(cur) = stack.pop() {
        for p in dag.neighbors(&cur, true) {
            if !seen.insert(p.clone()) {
                continue;
            }
            if selected.contains(&p) {
                out.insert(p);
            } else if m.nodes.contains_key(&p) {
                stack.push(p);
            }
        }
    }
}

fn skipped(node: &Node, parent: &str) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id.clone(),
        status: Status::Skipped,
        message: Some(format!("skipped because upstream {parent} failed")),
        timing: vec![],
        thread_id: "main".into(),
        execution_time: 0.0,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: node.relation_name(),
    }
}

async fn run_node<A: Adapter>(
    adapter: &A,
    compiler: &Compiler<'_>,
    node: &Node,
    thread_id: String,
    target_dir: &std::path::Path,
    project_root: &std::path::Path,
) -> NodeResult {
    let t0 = Instant::now();
    let compile_start = chrono::Utc::now();
    let mut res = NodeResult {
        unique_id: node.unique_id.clone(),
        status: Status::Success,
        message: None,
        timing: vec![],
        thread_id,
        execution_time: 0.0,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: node.relation_name(),
    };
    let ops = match node.resource_type {
        ResourceType::Seed => vec![Operation::LoadSeed {
            relation: node.relation.clone(),
            seed: seed_spec(node, project_root),
        }],
        _ => {
            let compiled = match compiler.compile(&node.unique_id) {
                Ok(c) => c,
                Err(d) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!(
                            "Compilation Error in {} {} ({})\n{}",
                            node.resource_type.as_str(),
                            node.name,
                            node.original_file_path,
                            d.render(false)
                        )),
                    );
                }
            };
            let _ = write_compiled(
                target_dir,
                &node.package,
                &node.original_file_path,
                &compiled.sql,
            );
            res.compiled_code = Some(compiled.sql.clone());
            let mut hooks = [Vec::new(), Vec::new()];
            for (i, key) in ["pre-hook", "post-hook"].iter().enumerate() {
                for h in node.config.strings(key) {
                    match compiler.render_hook(&node.unique_id, &h) {
                        Ok(sql) if !sql.trim().is_empty() => hooks[i].push(sql),
                        Ok(_) => {}
                        Err(d) => {
                            let msg = format!(
                                "Compilation Error in {key} of model {} ({})\n{}",
                                node.name,
                                node.original_file_path,
                                d.render(false)
                            );
                            return finish(res, t0, compile_start, Err(msg));
                        }
                    }
                }
            }
            match materialize::plan(materialize::Request {
                materialized: node.materialized(),
                relation: node.relation.clone(),
                sql: compiled.sql.clone(),
                pre_hooks: hooks[0].clone(),
                post_hooks: hooks[1].clone(),
            }) {
                Ok(ops) => ops,
                Err(msg) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!(
                            "Compilation Error in model {} ({}): {msg}",
                            node.name, node.original_file_path
                        )),
                    );
                }
            }
        }
    };
    let compile_end = chrono::Utc::now();
    res.timing.push(Timing {
        name: "compile",
        started_at: compile_start,
        completed_at: compile_end,
    });
    let mut last = None;
    for op in &ops {
        match adapter.apply(op).await {
            Ok(applied) => last = Some(applied),
            Err(e) => {
                let what = if node.resource_type == ResourceType::Seed {
                    "Runtime Error"
                } else {
                    "Database Error"
                };
                let mut msg = format!(
                    "{what} in {} {} ({})\n  {}",
                    node.resource_type.as_str(),
                    node.name,
                    node.original_file_path,
                    e.0.trim()
                );
                if res.compiled_code.is_some() {
                    msg.push_str(&format!(
                        "\n  compiled code at {}/compiled/{}/{}",
                        target_dir
                            .file_name()
                            .map(|f| f.to_string_lossy().to_string())
                            .unwrap_or_default(),
                        node.package,
                        node.original_file_path
                    ));
                }
                return finish(res, t0, compile_end, Err(msg));
            }
        }
    }
    if let Some(a) = &last {
        res.adapter_response =
            json!({"_message": a.code, "code": a.code, "rows_affected": a.rows_affected});
    }
    let msg = match &last {
        Some(a) => match a.rows_affected {
            Some(n) => format!("{} {n}", a.code),
            None => a.code.clone(),
        },
        None => "OK".into(),
    };
    finish(res, t0, compile_end, Ok(msg))
}

fn finish(
    mut res: NodeResult,
    t0: Instant,
    exec_start: chrono::DateTime<chrono::Utc>,
    outcome: Result<String, String>,
) -> NodeResult {
    res.timing.push(Timing {
        name: "execute",
        started_at: exec_start,
        completed_at: chrono::Utc::now(),
    });
    res.execution_time = t0.elapsed().as_secs_f64();
    match outcome {
        Ok(m) => {
            res.status = Status::Success;
            res.message = Some(m);
        }
        Err(m) => {
            res.status = Status::Error;
            res.message = Some(m);
        }
    }
    res
}

fn seed_spec(node: &Node, project_root: &std::path::Path) -> SeedSpec {
    let delimiter = node
        .config
        .str_or("delimiter", ",")
        .bytes()
        .next()
        .unwrap_or(b',');
    let column_types = node
        .config
        .get("column_types")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("varchar").to_string()))
                .collect()
        })
        .unwrap_or_default();
    SeedSpec {
        path: project_root.join(&node.original_file_path),
        display_path: node.original_file_path.clone(),
        delimiter,
        column_types,
    }
}
