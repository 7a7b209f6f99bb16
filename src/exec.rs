//! Execution: runs selected nodes in DAG order, up to `threads` at a time. Per node: compile,
//! plan the materialization's operations and apply them through the adapter, or run the data
//! test. A failed node becomes data (`status: error|fail`) and everything that waits on it is
//! skipped; the rest of the run goes on. In `build`, a model's children also wait for the
//! model's tests (dbt's build semantics).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value as Json, json};

use crate::adapter::Adapter;
use crate::cli::printer::{NodeLine, Printer};
use crate::compile::{Compiler, compiled_rel_path, write_compiled};
use crate::config::ConfigExt;
use crate::graph::Dag;
use crate::manifest::{Manifest, Node, ResourceType};
use crate::materialize::{self, Operation, SeedSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
    Skipped,
    /// Tests:
    Pass,
    Warn,
    Fail,
    /// Microbatch models: some batches failed, the others were committed.
    PartialSuccess,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Skipped => "skipped",
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::PartialSuccess => "partial success",
        }
    }

    /// Whether nodes waiting on this one must be skipped.
    pub fn blocks(self) -> bool {
        matches!(self, Status::Error | Status::Skipped | Status::Fail)
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
    /// Microbatch models: `{"successful": [[start, end], ...], "failed": [...]}`.
    pub batch_results: Option<Json>,
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

/// dbt's `is_incremental()`: an incremental model runs incrementally when its table exists
/// and no full refresh applies (its `full_refresh` config wins over the flag, as in dbt).
/// `table_exists` asks the warehouse only for an incremental model.
pub fn runs_incrementally(
    node: &Node,
    table_exists: impl FnOnce() -> bool,
    full_refresh: bool,
) -> bool {
    node.materialized() == "incremental"
        && !node
            .config
            .get("full_refresh")
            .and_then(Json::as_bool)
            .unwrap_or(full_refresh)
        && table_exists()
}

/// Whether a node is something `run`/`seed`/`test`/`build` executes.
pub fn is_executable(n: &Node) -> bool {
    match n.resource_type {
        ResourceType::Model => !n.is_ephemeral(),
        ResourceType::Seed
        | ResourceType::Test
        | ResourceType::UnitTest
        | ResourceType::Snapshot => true,
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
    /// The project file's name (`project.yml` or `dbt_project.yml`), for hook messages.
    pub project_file: &'a str,
    pub printer: &'a Printer,
    /// `--defer`: unique_id → the `--state` relation used for nodes this run does not build.
    pub deferred: &'a BTreeMap<String, crate::jinja::Relation>,
    /// `--full-refresh`: incremental models are rebuilt from scratch (unless their
    /// `full_refresh` config says otherwise).
    pub full_refresh: bool,
    /// `--event-time-start` / `--event-time-end` for microbatch models.
    pub event_time: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
    /// Models' fingerprints at their last successful build ([`crate::reuse`]), updated as
    /// models build.
    pub fingerprints: &'a std::sync::Mutex<BTreeMap<String, String>>,
    /// `--skip-unchanged`: a model whose fingerprint is unchanged is reused, not rebuilt.
    pub skip_unchanged: bool,
    /// `--empty`: every ref and source reads as zero rows.
    pub empty: bool,
    /// `--fail-fast`: after the first error or failure, nodes not started yet are skipped.
    pub fail_fast: bool,
    /// `--warn-error`: a test that would warn fails instead.
    pub warn_error: bool,
}

/// Runs `ids` (already filtered to executable nodes) in topological order, on `threads` worker
/// threads of their own. Each worker drives its node on `handle`'s runtime: planning a query,
/// rendering Jinja and compiling are CPU work inside the node's future, and futures polled
/// together in one task would share one core (the 4,067 tests of a 1,000-model project used one
/// of two cores).
pub fn run<A: Adapter + Sync>(
    handle: &tokio::runtime::Handle,
    adapter: &A,
    env: &RunEnv<'_>,
    ids: &[String],
) -> RunResults {
    let RunEnv {
        manifest,
        dag,
        threads,
        printer,
        deferred,
        ..
    } = *env;
    let started = Instant::now();
    let compiler = Compiler::with_deferred(manifest, deferred).empty(env.empty);
    let deps = dependencies(manifest, dag, ids);
    let order: BTreeMap<&String, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    // Ready nodes start in DAG order, except that a node's tests start one after another: the
    // tests of a table read it while it is fresh in the snapshot cache (tests sorted by name
    // would read every table four times: accepted_values_*, not_null_*, relationships_*,
    // unique_*).
    let mut first_test_of: BTreeMap<&str, usize> = BTreeMap::new();
    let rank: BTreeMap<&String, Rank> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let node = &manifest.nodes[id.as_str()];
            let attached = node.test.as_ref().and_then(|t| t.attached_node.as_deref());
            match attached {
                Some(a) if node.resource_type == ResourceType::Test => {
                    (id, (*first_test_of.entry(a).or_insert(i), i))
                }
                _ => (id, (i, 0)),
            }
        })
        .collect();
    // Each node counts the nodes it still waits for, and is released by them as they finish:
    // a large run does not rescan every waiting node each time one finishes.
    let mut children: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    let mut remaining: BTreeMap<&String, usize> = BTreeMap::new();
    let mut ready: BTreeSet<(Rank, &String)> = BTreeSet::new();
    for (id, ups) in &deps {
        let ups: Vec<&String> = ups.iter().filter(|u| deps.contains_key(*u)).collect();
        for u in &ups {
            children.entry(u.as_str()).or_default().push(id);
        }
        if ups.is_empty() {
            ready.insert((rank[id], id));
        }
        remaining.insert(id, ups.len());
    }
    let mut not_started = deps.len();
    let total = ids.len();
    let mut results: BTreeMap<String, NodeResult> = BTreeMap::new();
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    let mut running = 0usize;
    let mut next_index = 0usize;
    let threads = threads.max(1);
    // --fail-fast: the node whose failure stops the run.
    let mut stopped_by: Option<String> = None;
    // `not_null` tests on the same relation, counted in one query when ready together.
    let mut mergeable: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for id in deps.keys() {
        if let Some(key) = crate::data_test::merge_key(&manifest.nodes[id.as_str()]) {
            mergeable.entry(key).or_default().push(id);
        }
    }

    type Done = std::thread::Result<Vec<(usize, NodeResult)>>;
    let (job_tx, job_rx) = std::sync::mpsc::channel::<Vec<Job>>();
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        for w in 0..threads.min(deps.len()) {
            let (job_rx, done_tx, compiler) = (&job_rx, done_tx.clone(), &compiler);
            // Deep plans and templates recurse: the main thread's stack size, not a spawned
            // thread's 2 MB.
            std::thread::Builder::new()
                .name(format!("rsdbt-worker-{}", w + 1))
                .stack_size(8 << 20)
                .spawn_scoped(scope, move || {
                    loop {
                        let job = job_rx
                            .lock()
                            .map_err(|_| ())
                            .and_then(|rx| rx.recv().map_err(|_| ()));
                        let Ok(jobs) = job else {
                            break;
                        };
                        // A panic goes back to the scheduler, which re-raises it (a worker
                        // that died silently would leave the run waiting forever).
                        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            handle.block_on(async {
                                if jobs.len() > 1 {
                                    return run_test_group(adapter, compiler, jobs, env).await;
                                }
                                let mut done = Vec::new();
                                for job in jobs {
                                    let node = job.node;
                                    let res =
                                        run_node(adapter, compiler, node, job.thread_id, env).await;
                                    done.push((job.index, res));
                                }
                                done
                            })
                        }));
                        if done_tx.send(res).is_err() {
                            break;
                        }
                    }
                })
                .expect("starting a worker thread");
        }
        drop(done_tx);
        loop {
            // Start every ready node, in DAG order, while there are free threads.
            while running < threads {
                let Some((_, first)) = ready.pop_first() else {
                    break;
                };
                // The other ready `not_null` tests on the first one's relation go with it.
                let mut batch = vec![first];
                let key = crate::data_test::merge_key(&manifest.nodes[first.as_str()]);
                for &other in key.and_then(|k| mergeable.get(k)).into_iter().flatten() {
                    if batch.len() < MAX_MERGED
                        && other != first
                        && ready.remove(&(rank[other], other))
                    {
                        batch.push(other);
                    }
                }
                let mut jobs = Vec::new();
                for id in batch {
                    not_started -= 1;
                    next_index += 1;
                    let node = &*manifest.nodes[id.as_str()];
                    if let Some(by) = &stopped_by {
                        printer.node_skipped(next_index, total, node);
                        blocked.insert(id.clone());
                        let mut r = skipped(node, by);
                        r.message = Some(format!("skipped by --fail-fast: {by} did not succeed"));
                        results.insert(id.clone(), r);
                        release_children(&children, &rank, id, &mut remaining, &mut ready);
                        continue;
                    }
                    if let Some(cause) = deps[id].iter().find(|d| blocked.contains(*d)) {
                        printer.node_skipped(next_index, total, node);
                        blocked.insert(id.clone());
                        results.insert(id.clone(), skipped(node, cause));
                        release_children(&children, &rank, id, &mut remaining, &mut ready);
                        continue;
                    }
                    let thread_id = format!("Thread-{} (worker)", (next_index - 1) % threads + 1);
                    printer.node_start(next_index, total, node);
                    jobs.push(Job {
                        index: next_index,
                        node,
                        thread_id,
                    });
                }
                if !jobs.is_empty() {
                    running += 1;
                    job_tx
                        .send(jobs)
                        .expect("worker threads live as long as the run");
                }
            }
            let done = if running > 0 {
                done_rx.recv().ok()
            } else {
                None
            };
            let Some(done) = done else {
                if not_started == 0 {
                    break;
                }
                // Only reachable through a bug in `dependencies` (a cycle): never hang, say so.
                for (id, n) in &remaining {
                    if *n > 0 && !results.contains_key(*id) {
                        let node = &manifest.nodes[id.as_str()];
                        let mut r = skipped(node, "an internal scheduling error");
                        r.status = Status::Error;
                        r.message = Some(format!(
                            "internal error: {id} waits on nodes that never finish"
                        ));
                        results.insert((*id).clone(), r);
                    }
                }
                break;
            };
            running -= 1;
            let done = done.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (index, mut res) in done {
                if env.warn_error && res.status == Status::Warn {
                    res.status = Status::Fail;
                }
                let node = &manifest.nodes[res.unique_id.as_str()];
                printer.node_done(&NodeLine {
                    index,
                    total,
                    node,
                    result: &res,
                });
                if res.status.blocks() {
                    blocked.insert(res.unique_id.clone());
                    if env.fail_fast && stopped_by.is_none() {
                        stopped_by = Some(res.unique_id.clone());
                    }
                }
                release_children(&children, &rank, &res.unique_id, &mut remaining, &mut ready);
                results.insert(res.unique_id.clone(), res);
            }
        }
        // The workers stop once no more work can come.
        drop(job_tx);
    });
    let mut ordered: Vec<NodeResult> = ids.iter().filter_map(|id| results.remove(id)).collect();
    ordered.sort_by_key(|r| order[&r.unique_id]);
    RunResults {
        results: ordered,
        elapsed: started.elapsed().as_secs_f64(),
    }
}

/// Where a ready node stands in the queue (smallest first).
type Rank = (usize, usize);

/// The most `not_null` tests counted in one query: a wide relation's tests still share the
/// threads.
const MAX_MERGED: usize = 64;

/// A node handed to a worker: its position in the run's log and its thread label.
struct Job<'a> {
    index: usize,
    node: &'a Node,
    thread_id: String,
}

/// Runs tests handed over together: `not_null` tests in dbt's built-in form on the same
/// relation count their failures in one query (each keeps its own status, count and
/// message); any other test, or all of them if that query fails, runs on its own.
async fn run_test_group<A: Adapter>(
    adapter: &A,
    compiler: &Compiler<'_>,
    jobs: Vec<Job<'_>>,
    env: &RunEnv<'_>,
) -> Vec<(usize, NodeResult)> {
    let t0 = Instant::now();
    let compile_start = chrono::Utc::now();
    // Relation → (job, compiled test, its column).
    type Member<'j> = (Job<'j>, Arc<crate::compile::Compiled>, String);
    let mut by_relation: BTreeMap<String, Vec<Member<'_>>> = BTreeMap::new();
    let mut alone = Vec::new();
    for job in jobs {
        let Ok(c) = compiler.compile_with(&job.node.unique_id, false) else {
            alone.push(job);
            continue;
        };
        match crate::data_test::not_null_parts(&c.sql) {
            Some((column, relation)) => {
                let column = column.to_string();
                let members = by_relation.entry(relation.to_string()).or_default();
                members.push((job, c, column));
            }
            None => alone.push(job),
        }
    }
    let mut done = Vec::new();
    for (relation, group) in by_relation {
        let tests: Vec<(&Node, &str)> = group
            .iter()
            .map(|(job, _, column)| (job.node, column.as_str()))
            .collect();
        let exec_start = chrono::Utc::now();
        let outcomes = match group.len() {
            1 => None,
            _ => crate::data_test::run_not_null_group(adapter, &relation, &tests)
                .await
                .ok(),
        };
        // A failing shared query (a missing column, say) says nothing about which test
        // failed: each runs alone and reports its own error.
        let Some(outcomes) = outcomes else {
            alone.extend(group.into_iter().map(|(job, ..)| job));
            continue;
        };
        for ((job, c, _), outcome) in group.into_iter().zip(outcomes) {
            for line in &c.logs {
                env.printer.logged(line);
            }
            let _ = write_compiled(env.target_dir, job.node, &c.sql);
            let mut res = new_result(job.node, job.thread_id);
            res.compiled_code = Some(c.sql.clone());
            res.timing.push(Timing {
                name: "compile",
                started_at: compile_start,
                completed_at: exec_start,
            });
            let (where_, compiled_at) = node_labels(job.node, env);
            let r = finish_test(
                res,
                t0,
                exec_start,
                Ok(outcome),
                &where_,
                Some(&compiled_at),
                &compiled_at,
            );
            done.push((job.index, r));
        }
    }
    for job in alone {
        let res = run_node(adapter, compiler, job.node, job.thread_id, env).await;
        done.push((job.index, res));
    }
    done
}

/// `model orders (models/orders.sql)` and `compiled code at target/...`, for messages.
fn node_labels(node: &Node, env: &RunEnv<'_>) -> (String, String) {
    let kind = node.resource_type.as_str();
    let where_ = format!("{kind} {} ({})", node.name, node.original_file_path);
    // Relative to the project, as the user sees it: `target/rsdbt/compiled/...`.
    let compiled_at = format!(
        "compiled code at {}/{}",
        env.target_dir
            .strip_prefix(env.project_root)
            .unwrap_or(env.target_dir)
            .display(),
        compiled_rel_path(node)
    );
    (where_, compiled_at)
}

/// `id` finished (or was skipped): the nodes waiting for it wait for one node fewer, and those
/// waiting for none are ready.
fn release_children<'a>(
    children: &BTreeMap<&str, Vec<&'a String>>,
    rank: &BTreeMap<&String, Rank>,
    id: &str,
    remaining: &mut BTreeMap<&'a String, usize>,
    ready: &mut BTreeSet<(Rank, &'a String)>,
) {
    for &c in children.get(id).into_iter().flatten() {
        if let Some(n) = remaining.get_mut(c) {
            *n -= 1;
            if *n == 0 {
                ready.insert((rank[c], c));
            }
        }
    }
}

/// What each selected node waits for: its selected ancestors (looking through unselected nodes
/// in between), and in a run with tests, the tests of its parents (a test whose parents are all
/// upstream of the node; the node itself must not be one of them).
fn dependencies(m: &Manifest, dag: &Dag, ids: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let selected: BTreeSet<&String> = ids.iter().collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = ids
        .iter()
        .map(|id| {
            let mut ups = BTreeSet::new();
            collect_selected_ancestors(m, dag, id, &selected, &mut ups);
            (id.clone(), ups)
        })
        .collect();
    // A unit test runs after its model's inputs are built (their columns fill what fixtures
    // leave out, as dbt), and before its model, which waits for it.
    for id in ids
        .iter()
        .filter(|id| m.nodes[id.as_str()].resource_type == ResourceType::UnitTest)
    {
        let model = &m.nodes[id.as_str()].depends_on_nodes[0];
        let inputs = deps.get(model.as_str()).cloned().unwrap_or_else(|| {
            let mut ups = BTreeSet::new();
            collect_selected_ancestors(m, dag, model, &selected, &mut ups);
            ups
        });
        *deps.get_mut(id).unwrap() = inputs;
        if let Some(d) = deps.get_mut(model.as_str()) {
            d.insert(id.clone());
        }
    }
    let mut ancestors: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for test in ids
        .iter()
        .filter(|id| m.nodes[id.as_str()].resource_type == ResourceType::Test)
    {
        let parents: BTreeSet<&str> = m.nodes[test.as_str()]
            .depends_on_nodes
            .iter()
            .map(smol_str::SmolStr::as_str)
            .filter(|p| m.nodes.contains_key(*p))
            .collect();
        for p in &parents {
            for child in dag.neighbors(p, false) {
                if !selected.contains(&child)
                    || parents.contains(child.as_str())
                    || matches!(
                        m.nodes[child.as_str()].resource_type,
                        ResourceType::Test | ResourceType::UnitTest
                    )
                {
                    continue;
                }
                let ups = ancestors
                    .entry(child.clone())
                    .or_insert_with(|| dag.walk(&child, true, None));
                if parents.iter().all(|q| ups.contains(*q)) {
                    deps.get_mut(&child).unwrap().insert(test.clone());
                }
            }
        }
    }
    deps
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
            } else if m.nodes.contains_key(p.as_str()) {
                stack.push(p);
            }
        }
    }
}

/// Runs the project's `on-run-start` or `on-run-end` hooks (`which`) in order, each in the
/// project's Jinja context plus `extra`; the first failure stops them and is returned. Each
/// hook run is a result (`operation.<project>.<project>-on-run-start-0`), as in dbt 1.9's
/// run_results.json.
pub async fn project_hooks<A: Adapter>(
    adapter: &A,
    env: &RunEnv<'_>,
    which: &str,
    hooks: &[crate::project::Hook],
    extra: Vec<(String, minijinja::Value)>,
) -> (Vec<NodeResult>, Result<(), String>) {
    let mut results = Vec::new();
    if hooks.is_empty() {
        return (results, Ok(()));
    }
    let p = env.printer;
    let n = hooks.len();
    p.info(&format!(
        "Running {n} {which} hook{}",
        if n == 1 { "" } else { "s" }
    ));
    let compiler = Compiler::with_deferred(env.manifest, env.deferred);
    for (i, hook) in hooks.iter().enumerate() {
        let (project, index) = (&hook.package, hook.index);
        let name = format!("{project}.{which}.{index}");
        p.hook_line(i + 1, n, &name, None);
        let start = Instant::now();
        let started_at = chrono::Utc::now();
        let mut rendered = None;
        let outcome = match compiler.render_operation(
            Some(project),
            &format!("{project}-{which}-{index}"),
            env.project_file,
            &hook.sql,
            extra.clone(),
        ) {
            Err(d) => Err(d.message),
            Ok((sql, logs)) => {
                for line in &logs {
                    p.logged(line);
                }
                rendered = Some(sql.clone());
                Ok(sql)
            }
        };
        let outcome = match outcome {
            Err(e) => Err(e),
            Ok(sql) if sql.trim().is_empty() => Ok(()),
            Ok(sql) => adapter
                .apply(&Operation::RunSql { sql })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        let ok = outcome.is_ok();
        let secs = start.elapsed().as_secs_f64();
        p.hook_line(i + 1, n, &name, Some((ok, secs)));
        results.push(NodeResult {
            unique_id: format!("operation.{project}.{project}-{which}-{index}"),
            status: if ok { Status::Success } else { Status::Error },
            message: Some(outcome.clone().err().unwrap_or_else(|| "OK".into())),
            timing: vec![Timing {
                name: "execute",
                started_at,
                completed_at: chrono::Utc::now(),
            }],
            thread_id: "main".into(),
            execution_time: secs,
            adapter_response: json!({}),
            failures: None,
            compiled_code: rendered,
            relation_name: None,
            batch_results: None,
        });
        if let Err(msg) = outcome {
            return (results, Err(format!("{which} hook {name} failed: {msg}")));
        }
    }
    if which == "on-run-start" {
        p.info("");
    }
    (results, Ok(()))
}

/// The node's `grants` and `persist_docs` operations.
fn grants_and_docs(node: &Node) -> Vec<Operation> {
    let columns: Vec<(String, String)> = node
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.description.clone()))
        .collect();
    materialize::after_build(
        &node.relation,
        node.materialized() == "view",
        &node.config,
        &node.description,
        &columns,
    )
}

/// Every node of `ids` skipped: what a run looks like when `on-run-start` failed.
pub fn skip_all(manifest: &Manifest, ids: &[String], why: &str) -> RunResults {
    let results = ids
        .iter()
        .map(|id| NodeResult {
            message: Some(why.to_string()),
            ..skipped(&manifest.nodes[id.as_str()], "")
        })
        .collect();
    RunResults {
        results,
        elapsed: 0.0,
    }
}

/// The `results` and `schemas` variables of `on-run-end` hooks, as dbt provides them.
pub fn run_end_context(
    manifest: &Manifest,
    results: &RunResults,
) -> Vec<(String, minijinja::Value)> {
    let mut schemas = BTreeSet::new();
    let mut database_schemas = BTreeSet::new();
    let list: Vec<Json> = results
        .results
        .iter()
        .map(|r| {
            let n = &manifest.nodes[r.unique_id.as_str()];
            if !n.is_ephemeral() && r.status != Status::Skipped {
                schemas.insert(n.relation.schema.clone());
                database_schemas.insert((n.relation.database.clone(), n.relation.schema.clone()));
            }
            // The node as `manifest.json` and `graph` give it (its whole config, defaults
            // included: dbt_artifacts reads `node.config.full_refresh`), with the compiled SQL.
            let mut node = crate::artifacts::node_json(manifest, n);
            // dbt's config objects answer none for a key they lack: a test's
            // `config.full_refresh` is none there, not undefined.
            if let Some(c) = node["config"].as_object_mut() {
                c.entry("full_refresh").or_insert(Json::Null);
            }
            if let Some(code) = &r.compiled_code {
                node["compiled_code"] = json!(code);
                node["compiled"] = json!(true);
            }
            json!({
                "status": r.status.as_str(), "message": r.message, "failures": r.failures,
                "execution_time": r.execution_time, "adapter_response": r.adapter_response,
                "thread_id": r.thread_id,
                "timing": r.timing.iter().map(|t| json!({
                    "name": t.name, "started_at": t.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "completed_at": t.completed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                })).collect::<Vec<_>>(),
                "node": node,
            })
        })
        .collect();
    let v = |x: Json| crate::jinja::value_of(&x);
    vec![
        ("results".into(), v(Json::from(list))),
        ("schemas".into(), v(json!(schemas))),
        ("database_schemas".into(), v(json!(database_schemas))),
    ]
}

fn skipped(node: &Node, cause: &str) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id.to_string(),
        status: Status::Skipped,
        message: Some(format!("skipped because upstream {cause} did not succeed")),
        timing: vec![],
        thread_id: "main".into(),
        execution_time: 0.0,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: node.relation_name(),
        batch_results: None,
    }
}

fn new_result(node: &Node, thread_id: String) -> NodeResult {
    NodeResult {
        unique_id: node.unique_id.to_string(),
        status: Status::Success,
        message: None,
        timing: vec![],
        thread_id,
        execution_time: 0.0,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: if node.resource_type == ResourceType::Test {
            None
        } else {
            node.relation_name()
        },
        batch_results: None,
    }
}

async fn run_node<A: Adapter>(
    adapter: &A,
    compiler: &Compiler<'_>,
    node: &Node,
    thread_id: String,
    env: &RunEnv<'_>,
) -> NodeResult {
    let RunEnv {
        target_dir,
        project_root,
        full_refresh,
        event_time,
        printer,
        ..
    } = *env;
    let t0 = Instant::now();
    let compile_start = chrono::Utc::now();
    let mut res = new_result(node, thread_id);
    let (where_, compiled_at) = node_labels(node, env);
    let mut fingerprint: Option<String> = None;
    // Post-hooks render after the build, as in dbt: they may query (or insert into) the
    // relation just built, e.g. dbt-project-evaluator's `{% call statement() %}` inserts.
    let mut post_hooks: Vec<String> = Vec::new();
    let ops = match node.resource_type {
        ResourceType::UnitTest => {
            let inputs =
                crate::unit_test::warehouse_columns(adapter, compiler.manifest(), node).await;
            let sql = match crate::unit_test::compile(compiler.manifest(), node, &inputs) {
                Ok(sql) => sql,
                Err(msg) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!("Compilation Error in {where_}\n  {msg}")),
                    );
                }
            };
            let _ = write_compiled(target_dir, node, &sql);
            res.compiled_code = Some(sql.clone());
            let exec_start = chrono::Utc::now();
            res.timing.push(Timing {
                name: "compile",
                started_at: compile_start,
                completed_at: exec_start,
            });
            let outcome = crate::unit_test::run(adapter, node, &sql).await;
            return finish_test(res, t0, exec_start, outcome, &where_, None, &compiled_at);
        }
        ResourceType::Seed => {
            let format = match crate::materialize::TableFormat::of(&node.config) {
                Ok(f) => f,
                Err(msg) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!("Compilation Error in {where_}: {msg}")),
                    );
                }
            };
            let mut ops = vec![Operation::LoadSeed {
                relation: node.relation.clone(),
                seed: seed_spec(node, &project_root.join(env.manifest.file_path(node))),
                format,
                options: crate::materialize::TableOptions::of(&node.config),
            }];
            ops.extend(grants_and_docs(node));
            ops
        }
        _ => {
            if node.materialized() == "incremental"
                && node
                    .config
                    .get("incremental_strategy")
                    .and_then(Json::as_str)
                    == Some("microbatch")
            {
                let refresh = node
                    .config
                    .get("full_refresh")
                    .and_then(Json::as_bool)
                    .unwrap_or(full_refresh);
                return run_microbatch(
                    adapter, compiler, node, res, t0, refresh, event_time, target_dir,
                )
                .await;
            }
            let table = node.materialized() == "incremental"
                && adapter.relation_type(&node.relation).await == Some("table");
            let incremental = runs_incrementally(node, || table, full_refresh);
            let compiled = match compiler.compile_with(&node.unique_id, incremental) {
                Ok(c) => c,
                Err(d) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!(
                            "Compilation Error in {where_}\n{}",
                            d.render(false)
                        )),
                    );
                }
            };
            // `{{ log(msg, info=True) }}` prints when the node runs, as in dbt.
            for line in &compiled.logs {
                printer.logged(line);
            }
            let _ = write_compiled(target_dir, node, &compiled.sql);
            res.compiled_code = Some(compiled.sql.clone());
            if node.resource_type == ResourceType::Test {
                let exec_start = chrono::Utc::now();
                res.timing.push(Timing {
                    name: "compile",
                    started_at: compile_start,
                    completed_at: exec_start,
                });
                let outcome = crate::data_test::run(adapter, node, &compiled.sql).await;
                return finish_test(
                    res,
                    t0,
                    exec_start,
                    outcome,
                    &where_,
                    Some(&compiled_at),
                    &compiled_at,
                );
            }
            if node.resource_type == ResourceType::Snapshot {
                match snapshot_op(adapter, node, &compiled.sql).await {
                    Ok(op) => {
                        let compile_end = chrono::Utc::now();
                        res.timing.push(Timing {
                            name: "compile",
                            started_at: compile_start,
                            completed_at: compile_end,
                        });
                        return match adapter.apply(&op).await {
                            Ok(a) => {
                                res.adapter_response = json!({"_message": "SNAPSHOT", "code": "SNAPSHOT", "rows_affected": a.rows_affected});
                                finish(
                                    res,
                                    t0,
                                    compile_end,
                                    Ok(format!("SNAPSHOT {}", a.rows_affected.unwrap_or(0))),
                                )
                            }
                            Err(e) => finish(
                                res,
                                t0,
                                compile_end,
                                Err(format!(
                                    "Database Error in {where_}\n  {}\n  {compiled_at}",
                                    e.0.trim()
                                )),
                            ),
                        };
                    }
                    Err(msg) => {
                        return finish(
                            res,
                            t0,
                            compile_start,
                            Err(format!("Runtime Error in {where_}\n  {msg}")),
                        );
                    }
                }
            }
            if node.resource_type == ResourceType::Model {
                fingerprint = crate::reuse::fingerprint(
                    adapter,
                    env.manifest,
                    node,
                    &compiled.sql,
                    project_root,
                )
                .await;
                let unchanged = fingerprint.is_some()
                    && env
                        .fingerprints
                        .lock()
                        .unwrap()
                        .get(node.unique_id.as_str())
                        == fingerprint.as_ref();
                if env.skip_unchanged
                    && unchanged
                    && adapter.relation_type(&node.relation).await.is_some()
                {
                    res.adapter_response =
                        json!({"_message": "REUSED", "code": "REUSED", "rows_affected": null});
                    return finish(res, t0, compile_start, Ok("REUSED".into()));
                }
                // Until it builds again, nothing is known to be current.
                env.fingerprints
                    .lock()
                    .unwrap()
                    .remove(node.unique_id.as_str());
            }
            let mut pre_hooks = Vec::new();
            for h in node.config.strings("pre-hook") {
                match compiler.render_hook(&node.unique_id, &h) {
                    Ok(sql) if !sql.trim().is_empty() => pre_hooks.push(sql),
                    Ok(_) => {}
                    Err(d) => {
                        let msg = format!(
                            "Compilation Error in pre-hook of {where_}\n{}",
                            d.render(false)
                        );
                        return finish(res, t0, compile_start, Err(msg));
                    }
                }
            }
            post_hooks = node.config.strings("post-hook");
            match materialize::plan(materialize::Request {
                materialized: node.materialized(),
                relation: node.relation.clone(),
                sql: compiled.sql.clone(),
                pre_hooks,
                post_hooks: vec![],
                incremental,
                config: &node.config,
                grants_and_docs: grants_and_docs(node),
            }) {
                Ok(ops) => ops,
                Err(msg) => {
                    return finish(
                        res,
                        t0,
                        compile_start,
                        Err(format!("Compilation Error in {where_}: {msg}")),
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
            // The node's message is its build's response, not a hook's.
            Ok(applied) if op.builds() || last.is_none() => last = Some(applied),
            Ok(_) => {}
            Err(e) => {
                let what = if node.resource_type == ResourceType::Seed {
                    "Runtime Error"
                } else {
                    "Database Error"
                };
                let mut msg = format!("{what} in {where_}\n  {}", e.0.trim());
                if res.compiled_code.is_some() {
                    msg.push_str(&format!("\n  {compiled_at}"));
                }
                return finish(res, t0, compile_end, Err(msg));
            }
        }
    }
    for h in &post_hooks {
        let sql = match compiler.render_hook(&node.unique_id, h) {
            Ok(sql) => sql,
            Err(d) => {
                let msg = format!(
                    "Compilation Error in post-hook of {where_}\n{}",
                    d.render(false)
                );
                return finish(res, t0, compile_end, Err(msg));
            }
        };
        if sql.trim().is_empty() {
            continue;
        }
        if let Err(e) = adapter.apply(&Operation::RunSql { sql }).await {
            let msg = format!("Database Error in {where_}\n  {}", e.0.trim());
            return finish(res, t0, compile_end, Err(msg));
        }
    }
    if let Some(a) = &last {
        res.adapter_response =
            json!({"_message": a.code, "code": a.code, "rows_affected": a.rows_affected});
        // For the metrics: what a table build wrote (an empty increment wrote nothing).
        let bytes = match a.rows_affected {
            Some(0) => Some(0),
            _ if a.code.contains("VIEW") || node.is_ephemeral() => None,
            _ => adapter.written_bytes(&node.relation).await,
        };
        if let Some(b) = bytes {
            res.adapter_response["bytes_written"] = json!(b);
        }
    }
    if let Some(f) = fingerprint {
        env.fingerprints
            .lock()
            .unwrap()
            .insert(node.unique_id.to_string(), f);
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

/// The result of a data or unit test: its status, failure count and message. `pointer`, when
/// given, is appended to a failure message (where the compiled query is).
fn finish_test(
    mut res: NodeResult,
    t0: Instant,
    exec_start: chrono::DateTime<chrono::Utc>,
    outcome: Result<crate::data_test::Outcome, crate::adapter::AdapterError>,
    where_: &str,
    pointer: Option<&str>,
    compiled_at: &str,
) -> NodeResult {
    match outcome {
        Ok(o) => {
            res.failures = Some(o.failures);
            res.adapter_response = json!({"_message": "OK", "rows_affected": 1});
            let mut r = finish(res, t0, exec_start, Ok(String::new()));
            r.status = o.status;
            r.message = match (o.message, pointer) {
                (Some(m), Some(p)) => Some(format!("{m}\n\n  {p}")),
                (m, _) => m,
            };
            r
        }
        Err(e) => finish(
            res,
            t0,
            exec_start,
            Err(format!(
                "Database Error in {where_}\n  {}\n  {compiled_at}",
                e.0.trim()
            )),
        ),
    }
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

/// Truncates a time to the start of its batch.
fn batch_floor(t: chrono::NaiveDateTime, size: &str) -> chrono::NaiveDateTime {
    use chrono::{Datelike, NaiveDate, Timelike};
    let d = t.date();
    let day = |y, m, dd| {
        NaiveDate::from_ymd_opt(y, m, dd)
            .unwrap_or(d)
            .and_hms_opt(0, 0, 0)
            .unwrap()
    };
    match size {
        "hour" => d.and_hms_opt(t.hour(), 0, 0).unwrap(),
        "month" => day(d.year(), d.month(), 1),
        "year" => day(d.year(), 1, 1),
        _ => day(d.year(), d.month(), d.day()),
    }
}

/// The start of the batch after the one starting at `t`.
fn batch_next(t: chrono::NaiveDateTime, size: &str) -> chrono::NaiveDateTime {
    match size {
        "hour" => t + chrono::Duration::hours(1),
        "month" => t.checked_add_months(chrono::Months::new(1)).unwrap_or(t),
        "year" => t.checked_add_months(chrono::Months::new(12)).unwrap_or(t),
        _ => t + chrono::Duration::days(1),
    }
}

fn batch_prev(t: chrono::NaiveDateTime, size: &str) -> chrono::NaiveDateTime {
    match size {
        "hour" => t - chrono::Duration::hours(1),
        "month" => t.checked_sub_months(chrono::Months::new(1)).unwrap_or(t),
        "year" => t.checked_sub_months(chrono::Months::new(12)).unwrap_or(t),
        _ => t - chrono::Duration::days(1),
    }
}

/// Parses `2024-01-01`, `2024-01-01 10:00:00` or `2024-01-01T10:00:00`, with fractional
/// seconds or not (Python's `isoformat()` of a datetime that has microseconds).
pub fn parse_event_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(&s.replace('T', " "), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// A microbatch model: each batch of `event_time` is compiled, run and committed on its own;
/// a failed batch does not undo the others.
#[allow(clippy::too_many_arguments)]
async fn run_microbatch<A: Adapter>(
    adapter: &A,
    compiler: &Compiler<'_>,
    node: &Node,
    mut res: NodeResult,
    t0: Instant,
    full_refresh: bool,
    flags: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
    target_dir: &std::path::Path,
) -> NodeResult {
    let start_time = chrono::Utc::now();
    let cfg = &node.config;
    let size = cfg.str_or("batch_size", "day").to_string();
    let event_time = cfg.str_or("event_time", "").to_string();
    let lookback = cfg.get("lookback").and_then(Json::as_u64).unwrap_or(1);
    let exists = adapter.relation_type(&node.relation).await == Some("table") && !full_refresh;
    let Some(begin) = cfg
        .get("begin")
        .and_then(Json::as_str)
        .and_then(parse_event_time)
    else {
        return finish(
            res,
            t0,
            start_time,
            Err(format!(
                "Compilation Error in model {}: `begin` must be a date or timestamp",
                node.name
            )),
        );
    };
    let now = chrono::Utc::now().naive_utc();
    let mut start = match flags.0 {
        Some(t) => batch_floor(t, &size),
        None if !exists => batch_floor(begin, &size),
        None => {
            let mut s = batch_floor(now, &size);
            for _ in 0..lookback {
                s = batch_prev(s, &size);
            }
            s
        }
    };
    let end = flags
        .1
        .unwrap_or_else(|| batch_next(batch_floor(now, &size), &size));
    let fmt = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let (mut ok, mut failed, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut table_exists = exists;
    let mut rows = 0u64;
    while start < end {
        let next = batch_next(start, &size);
        let (s, e) = (fmt(start), fmt(next));
        let outcome: Result<u64, String> = async {
            let sql = compiler
                .compile_batch(&node.unique_id, &s, &e)
                .map_err(|d| d.render(false))?;
            let _ = write_compiled(target_dir, node, &sql);
            res.compiled_code = Some(sql.clone());
            let op = if table_exists {
                let q = crate::jinja::quote(&event_time);
                let mut spec = match materialize::plan(materialize::Request {
                    materialized: "incremental",
                    relation: node.relation.clone(),
                    sql,
                    pre_hooks: vec![],
                    post_hooks: vec![],
                    incremental: true,
                    config: cfg,
                    grants_and_docs: vec![],
                })?
                .pop()
                {
                    Some(Operation::Incremental(spec)) => spec,
                    _ => {
                        return Err(
                            "internal error: microbatch planned no incremental write".to_string()
                        );
                    }
                };
                spec.replace_where = Some(format!("{q} >= '{s}' and {q} < '{e}'"));
                Operation::Incremental(spec)
            } else {
                Operation::CreateTableAs {
                    relation: node.relation.clone(),
                    sql,
                    format: crate::materialize::TableFormat::of(cfg)?,
                    options: crate::materialize::TableOptions::of(cfg),
                }
            };
            let applied = adapter.apply(&op).await.map_err(|e| e.0)?;
            Ok(applied.rows_affected.unwrap_or(0))
        }
        .await;
        match outcome {
            Ok(n) => {
                rows += n;
                table_exists = true;
                ok.push(serde_json::json!([s, e]));
            }
            Err(msg) => {
                errors.push(format!("batch {s} .. {e}: {}", msg.trim()));
                failed.push(serde_json::json!([s, e]));
            }
        }
        start = next;
    }
    let granted = if ok.is_empty() {
        Ok(())
    } else {
        let mut r = Ok(());
        for op in grants_and_docs(node) {
            if let Err(e) = adapter.apply(&op).await {
                r = Err(format!(
                    "Database Error in model {}\n  {}",
                    node.name,
                    e.0.trim()
                ));
                break;
            }
        }
        r
    };
    res.batch_results = Some(serde_json::json!({"successful": ok, "failed": failed}));
    if let Err(msg) = granted {
        return finish(res, t0, chrono::Utc::now(), Err(msg));
    }
    let total = ok.len() + failed.len();
    let compile_end = chrono::Utc::now();
    res.timing.push(Timing {
        name: "compile",
        started_at: start_time,
        completed_at: compile_end,
    });
    if failed.is_empty() {
        res.adapter_response = serde_json::json!({"_message": "MICROBATCH", "rows_affected": rows});
        return finish(
            res,
            t0,
            compile_end,
            Ok(format!("MICROBATCH {total} batches, {rows} rows")),
        );
    }
    let msg = format!(
        "{} of {total} batches of model {} failed:\n  {}",
        failed.len(),
        node.name,
        errors.join("\n  ")
    );
    let mut r = finish(res, t0, compile_end, Err(msg));
    if !ok.is_empty() {
        r.status = Status::PartialSuccess;
    }
    r
}

/// The write that takes a snapshot: the first build, or the table's next state.
async fn snapshot_op<A: Adapter>(adapter: &A, node: &Node, sql: &str) -> Result<Operation, String> {
    use crate::materialize::snapshot::{HardDeletes, MetaColumns, SnapshotSpec, SnapshotStrategy};
    let cfg = &node.config;
    let list = |key: &str| -> Vec<String> {
        match cfg.get(key) {
            Some(Json::String(s)) => vec![s.clone()],
            Some(Json::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    let source = adapter
        .query(
            &format!(
                "select * from (\n{}\n) dbt_snapshot_source limit 0",
                sql.trim().trim_end_matches(';')
            ),
            Some(0),
        )
        .await
        .map_err(|e| e.0)?;
    let unique_key = list("unique_key");
    let strategy = match cfg.str_or("strategy", "") {
        "timestamp" => SnapshotStrategy::Timestamp {
            updated_at: cfg.str_or("updated_at", "updated_at").to_string(),
        },
        _ => {
            let cols = list("check_cols");
            let columns = if cols == ["all"] {
                source
                    .columns
                    .iter()
                    .filter(|c| !unique_key.contains(c))
                    .cloned()
                    .collect()
            } else {
                cols
            };
            SnapshotStrategy::Check { columns }
        }
    };
    let hard_deletes = match cfg.get("hard_deletes").and_then(Json::as_str) {
        Some("invalidate") => HardDeletes::Invalidate,
        Some("new_record") => HardDeletes::NewRecord,
        // dbt before 1.9: invalidate_hard_deletes: true
        _ if cfg.bool_or("invalidate_hard_deletes", false) => HardDeletes::Invalidate,
        _ => HardDeletes::Ignore,
    };
    let mut meta = MetaColumns::default();
    if let Some(Json::Object(names)) = cfg.get("snapshot_meta_column_names") {
        let name = |k: &str, d: &str| names.get(k).and_then(Json::as_str).unwrap_or(d).to_string();
        meta = MetaColumns {
            scd_id: name("dbt_scd_id", &meta.scd_id),
            updated_at: name("dbt_updated_at", &meta.updated_at),
            valid_from: name("dbt_valid_from", &meta.valid_from),
            valid_to: name("dbt_valid_to", &meta.valid_to),
            is_deleted: name("dbt_is_deleted", &meta.is_deleted),
        };
    }
    let spec = SnapshotSpec {
        relation: node.relation.clone(),
        sql: sql.to_string(),
        source_columns: source.columns.clone(),
        unique_key,
        strategy,
        hard_deletes,
        meta,
        valid_to_current: cfg
            .get("dbt_valid_to_current")
            .and_then(Json::as_str)
            .map(str::to_string),
        now: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        timestamp_cast: match adapter.kind() {
            "datafusion" => "arrow_cast({}, 'Timestamp(Microsecond, None)')".into(),
            _ => "cast({} as timestamp)".into(),
        },
        hash: adapter.hash_sql().into(),
    };
    let exists = adapter.relation_type(&node.relation).await == Some("table");
    let sql = if exists {
        let target = adapter
            .query(
                &format!("select * from {} limit 0", node.relation.render()),
                Some(0),
            )
            .await
            .map_err(|e| e.0)?;
        let new: Vec<&String> = source
            .columns
            .iter()
            .filter(|c| !target.columns.contains(c))
            .collect();
        if !new.is_empty() {
            return Err(format!(
                "the snapshot query has columns the snapshot table lacks: {new:?}; rebuild it with --full-refresh (its history is lost) or drop them from the query"
            ));
        }
        spec.update_sql()
    } else {
        spec.initial_sql()
    };
    Ok(Operation::CreateTableAs {
        relation: node.relation.clone(),
        sql,
        format: crate::materialize::TableFormat::of(&node.config)?,
        options: crate::materialize::TableOptions::of(&node.config),
    })
}

pub(crate) fn seed_spec(node: &Node, path: &std::path::Path) -> SeedSpec {
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
        path: path.to_path_buf(),
        display_path: node.original_file_path.to_string(),
        delimiter,
        column_types,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_event_time;

    #[test]
    fn event_times_as_dbt_and_python_write_them() {
        let t = |s: &str| parse_event_time(s).map(|t| t.to_string());
        assert_eq!(t("2024-01-02"), Some("2024-01-02 00:00:00".into()));
        assert_eq!(t("2024-01-02 06:00:00"), Some("2024-01-02 06:00:00".into()));
        // Python's isoformat() of `now().replace(hour=6, minute=0, second=0)` keeps microseconds.
        assert_eq!(
            t("2024-01-02T06:00:00.123456"),
            Some("2024-01-02 06:00:00.123456".into())
        );
        assert_eq!(
            t("2024-01-02T06:00:00Z"),
            Some("2024-01-02 06:00:00".into())
        );
        assert_eq!(t("yesterday"), None);
    }
}
