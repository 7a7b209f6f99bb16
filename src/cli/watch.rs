//! `--watch`: after a first pass, every save in the project re-runs the selected nodes that
//! changed and their descendants. Changes are found as `state:modified+` against the manifest
//! of the previous successful parse (bodies, configs, macros, seed files), so a pass costs a
//! parse and the nodes that need it. A broken file prints its diagnostic and the loop waits
//! for the next save. With `--watch-sources` the loop also polls the brokers of the project's
//! stream sources and re-runs what is downstream of each that has new records (micro-batches
//! of the same models). Ctrl-C ends the process; a table is only ever replaced by one commit, so
//! stopping mid-build leaves the previous version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use super::args::{Cli, Selection};
use super::printer::Printer;
use super::{load, runtime};
use crate::adapter::external::KafkaSource;
use crate::diag::{Diagnostic, Diagnostics};
use crate::manifest::Invocation;

/// Quiet time after the last event before a pass starts (editors write a file in steps).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// `--watch-sources`: how often to poll, and the stream sources of the project as it is now
/// (`source_name.table_name` → its Kafka settings).
pub(super) struct Streams<'a> {
    pub(super) every: Duration,
    pub(super) sources: &'a dyn Fn() -> Result<Vec<(String, KafkaSource)>, Diagnostics>,
}

/// The high watermarks of each stream source; a source whose broker does not answer is left
/// out (and polled again next time).
fn marks(sources: &[(String, KafkaSource)]) -> BTreeMap<String, Vec<i64>> {
    sources
        .iter()
        .filter_map(|(name, k)| {
            let m = runtime()
                .block_on(crate::adapter::datafusion::high_watermarks(k))
                .ok()?;
            Some((name.clone(), m))
        })
        .collect()
}

/// Runs `pass` once with `selection`, then again with the changed part of it after each save
/// and, with `streams`, with the part downstream of each stream source that has new records.
pub(super) fn watch(
    printer: &Printer,
    selection: &Selection,
    root: &Path,
    target_dir: &Path,
    streams: Option<Streams>,
    pass: &dyn Fn(&Selection) -> Result<i32, Diagnostics>,
) -> Result<i32, Diagnostics> {
    if selection.defer || selection.state.is_some() {
        return Err(Diagnostic::error(
            "watch",
            "--watch compares each save with the previous pass, so it cannot take --state or --defer",
        )
        .hint("run without --watch to defer to another environment's artifacts")
        .into());
    }
    // The stream sources and their high watermarks, taken before each pass that reads them,
    // so that records arriving during a pass wake the next one.
    let mut sources = match &streams {
        Some(s) => (s.sources)().unwrap_or_default(),
        None => Vec::new(),
    };
    let mut seen = marks(&sources);
    report(printer, pass(selection));
    let state_dir = target_dir.join("watch-state");
    let saves = Saves::new(root, target_dir, &state_dir)?;
    loop {
        printer.info(if streams.is_some() {
            "Watching for changes and new records (Ctrl-C to stop)"
        } else {
            "Watching for changes (Ctrl-C to stop)"
        });
        let saved_at = match &streams {
            None => saves.next()?,
            Some(s) => loop {
                if let Some(at) = saves.next_within(s.every)? {
                    break at;
                }
                let now = marks(&sources);
                let grown: Vec<String> = now
                    .iter()
                    .filter(|(name, m)| seen.get(*name).is_none_or(|old| old != *m))
                    .map(|(name, _)| name.clone())
                    .collect();
                if grown.is_empty() {
                    continue;
                }
                let woken = Instant::now();
                seen.extend(now);
                let downstream = Selection {
                    select: downstream_part(&selection.select, &grown),
                    ..selection.clone()
                };
                let outcome = pass(&downstream);
                let ok = outcome.is_ok();
                report(printer, outcome);
                if ok {
                    printer.info(&format!(
                        "Rebuilt {:.2} s after new records in {}",
                        woken.elapsed().as_secs_f64(),
                        grown.join(", ")
                    ));
                }
                printer.info("Watching for changes and new records (Ctrl-C to stop)");
            },
        };
        // The manifest of the last good parse is the state to compare with.
        let manifest = target_dir.join("manifest.json");
        std::fs::create_dir_all(&state_dir).map_err(io)?;
        if manifest.is_file() {
            std::fs::copy(&manifest, state_dir.join("manifest.json")).map_err(io)?;
        }
        let changed = Selection {
            select: changed_part(&selection.select),
            state: Some(state_dir.clone()),
            ..selection.clone()
        };
        let outcome = pass(&changed);
        let ok = outcome.is_ok();
        report(printer, outcome);
        if ok {
            printer.info(&format!(
                "Rebuilt {:.2} s after the save",
                saved_at.elapsed().as_secs_f64()
            ));
        }
        // A save may have added, removed or moved stream sources.
        if let Some(s) = &streams
            && let Ok(now) = (s.sources)()
        {
            sources = now;
        }
    }
}

/// `user ∩ source:<s>+` for each stream source with new records, over the user's union terms.
fn downstream_part(select: &[String], sources: &[String]) -> Vec<String> {
    let terms: Vec<&str> = select.iter().flat_map(|s| s.split_whitespace()).collect();
    sources
        .iter()
        .flat_map(|s| {
            let down = format!("source:{s}+");
            if terms.is_empty() {
                vec![down]
            } else {
                terms.iter().map(|t| format!("{t},{down}")).collect()
            }
        })
        .collect()
}

fn io(e: std::io::Error) -> Diagnostics {
    Diagnostic::error("io", e.to_string()).into()
}

fn report(printer: &Printer, outcome: Result<i32, Diagnostics>) {
    if let Err(d) = outcome {
        printer.diagnostics(&d);
        printer.info("Fix the file and save it again.");
    }
}

/// `user ∩ state:modified+`, distributed over the union terms of the user's selection.
fn changed_part(select: &[String]) -> Vec<String> {
    let terms: Vec<&str> = select.iter().flat_map(|s| s.split_whitespace()).collect();
    if terms.is_empty() {
        return vec!["state:modified+".into()];
    }
    terms
        .into_iter()
        .map(|t| format!("{t},state:modified+"))
        .collect()
}

/// Saves of project files (not of the target folder, the warehouse, logs or hidden files).
pub(super) struct Saves {
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    // Watching stops when the watcher is dropped.
    _watcher: notify::RecommendedWatcher,
    root: std::path::PathBuf,
    ignored: Vec<std::path::PathBuf>,
}

impl Saves {
    /// Watches `root`; `ignored` folders' writes (the target folder...) are not saves.
    pub(super) fn new(
        root: &Path,
        target_dir: &Path,
        state_dir: &Path,
    ) -> Result<Saves, Diagnostics> {
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .map_err(|e| Diagnostic::error("watch", format!("cannot watch the project: {e}")))?;
        watcher.watch(root, RecursiveMode::Recursive).map_err(|e| {
            Diagnostic::error("watch", format!("cannot watch {}: {e}", root.display()))
        })?;
        Ok(Saves {
            rx,
            _watcher: watcher,
            root: root.to_path_buf(),
            ignored: vec![state_dir.to_path_buf(), target_dir.to_path_buf()],
        })
    }

    /// Blocks until a project file changes, then waits for the writes to settle; returns when
    /// the first change was seen.
    pub(super) fn next(&self) -> Result<Instant, Diagnostics> {
        wait_for_change(&self.rx, &self.root, &self.ignored, None)
            .map(|at| at.expect("no deadline"))
    }

    /// [`Self::next`], or None when no project file changed within `wait`.
    pub(super) fn next_within(&self, wait: Duration) -> Result<Option<Instant>, Diagnostics> {
        wait_for_change(
            &self.rx,
            &self.root,
            &self.ignored,
            Some(Instant::now() + wait),
        )
    }
}

fn wait_for_change(
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
    root: &Path,
    ignored: &[std::path::PathBuf],
    deadline: Option<Instant>,
) -> Result<Option<Instant>, Diagnostics> {
    let relevant = |e: &notify::Event| {
        !matches!(e.kind, notify::EventKind::Access(_))
            && e.paths.iter().any(|p| {
                let rel = p.strip_prefix(root).unwrap_or(p);
                // Project files only: a log or a database file written next to them is not a save.
                let project_file = p.extension().is_some_and(|x| {
                    matches!(
                        x.to_string_lossy().as_ref(),
                        "sql" | "yml" | "yaml" | "csv" | "md" | "tsv" | "py"
                    )
                });
                project_file
                    && !ignored.iter().any(|i| p.starts_with(i))
                    && !rel.components().any(|c| {
                        let c = c.as_os_str().to_string_lossy();
                        c.starts_with('.') || c == "warehouse" || c == "target" || c == "logs"
                    })
            })
    };
    let first = loop {
        let event = match deadline {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match event {
            Ok(Ok(e)) if relevant(&e) => break Instant::now(),
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Diagnostic::error("watch", "the file watcher stopped").into());
            }
        }
    };
    loop {
        match rx.recv_timeout(DEBOUNCE) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(Some(first)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Diagnostic::error("watch", "the file watcher stopped").into());
            }
        }
    }
}

/// The project folder a `--watch` loop watches and its target folder (whose writes it
/// ignores), both canonical as file events name them.
pub(super) fn watched_folders(
    cli: &Cli,
    invocation: &Invocation,
) -> Result<(PathBuf, PathBuf), Diagnostics> {
    let (root, target_dir, _) = watched(cli, invocation)?;
    Ok((root, target_dir))
}

/// [`watched_folders`], and where a long-running command's `/metrics` reads.
pub(super) fn watched(
    cli: &Cli,
    invocation: &Invocation,
) -> Result<(PathBuf, PathBuf, crate::docs::server::MetricsSource), Diagnostics> {
    let l = load(&cli.global, invocation)?;
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or(p.to_path_buf());
    let target_dir = canonical(&l.project.target_dir());
    let _ = std::fs::create_dir_all(&target_dir);
    let metrics = crate::docs::server::MetricsSource {
        target_dir: target_dir.clone(),
        project: l.manifest.project_name.clone(),
        target: l.project.target().name.clone(),
    };
    Ok((canonical(&l.project.root), target_dir, metrics))
}

/// `--metrics-listen` with `--watch`: `/metrics` on that address for as long as the loop runs.
pub(super) fn serve_metrics(
    printer: &Printer,
    addr: &str,
    source: crate::docs::server::MetricsSource,
) -> Result<(), Diagnostics> {
    let listener = runtime()
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            Diagnostic::error("metrics", format!("cannot listen on {addr}: {e}"))
                .hint("choose another address with --metrics-listen (port 0 picks a free one)")
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Diagnostic::error("metrics", e.to_string()))?;
    runtime().spawn(crate::docs::server::serve_metrics(
        listener,
        std::sync::Arc::new(source),
    ));
    printer.info(&format!("Serving metrics at http://{local}/metrics"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_part_intersects_each_union_term() {
        assert_eq!(changed_part(&[]), vec!["state:modified+"]);
        assert_eq!(
            changed_part(&["gold+ tag:x".into(), "orders".into()]),
            vec![
                "gold+,state:modified+",
                "tag:x,state:modified+",
                "orders,state:modified+"
            ]
        );
    }
}
