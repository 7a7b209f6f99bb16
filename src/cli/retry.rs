//! `rsdbt retry`: the failed and skipped nodes of the last run, with its flags.

use super::*;

/// `rsdbt retry`: the failed and skipped nodes of the last run, with that run's flags.
#[cfg(feature = "datafusion")]
pub(super) fn retry(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
) -> Result<i32, Diagnostics> {
    let project = load_project(&settings(&cli.global, false)?)?;
    let path = project.target_dir().join("run_results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::error("retry", format!("cannot read {}: {e}", path.display()))
            .hint("retry re-runs the failures of the last run: run a command first")
    })?;
    let rr: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Diagnostic::error("retry", format!("{} is not valid: {e}", path.display())))?;
    let args = &rr["args"];
    let s = |k: &str| args.get(k).and_then(|v| v.as_str()).map(str::to_string);
    // The last run's flags, unless given again now.
    let mut global = cli.global.clone();
    // dbt (and rsdbt) record vars as a dict; older rsdbt runs as the flag's text.
    global.vars = global.vars.or_else(|| match args.get("vars") {
        Some(serde_json::Value::Object(v)) if !v.is_empty() => Some(args["vars"].to_string()),
        _ => s("vars"),
    });
    global.target = global.target.or_else(|| s("target"));
    global.threads = global.threads.or_else(|| {
        args.get("threads")
            .and_then(|v| v.as_u64())
            .map(|n| n as usize)
    });
    let selection = Selection {
        state: s("state").map(PathBuf::from),
        defer: args.get("defer").and_then(|v| v.as_bool()).unwrap_or(false),
        favor_state: args
            .get("favor_state")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        ..Default::default()
    };
    let which = s("which").unwrap_or_else(|| "build".into());
    let retryable = [
        "error",
        "fail",
        "skipped",
        "runtime error",
        "partial success",
    ];
    let failed: std::collections::BTreeSet<String> = rr["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["status"]
                .as_str()
                .is_some_and(|st| retryable.contains(&st))
        })
        .filter_map(|r| r["unique_id"].as_str().map(str::to_string))
        .collect();
    let l = load(&global, invocation)?;
    let ids: Vec<String> = l.dag.sort(failed.into_iter().filter(|id| {
        l.manifest
            .nodes
            .get(id.as_str())
            .is_some_and(|n| crate::exec::is_executable(n))
    }));
    if ids.is_empty() {
        printer.info("Nothing to retry: the last run had no failed or skipped nodes.");
        return Ok(0);
    }
    let state = load_state(&selection, &l)?;
    let full_refresh = args
        .get("full_refresh")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let empty = args.get("empty").and_then(|v| v.as_bool()).unwrap_or(false);
    let run = RunOptions {
        selection: &selection,
        state: state.as_ref(),
        what: &which,
        flags: Flags {
            full_refresh,
            empty,
            ..Default::default()
        },
    };
    run_nodes(&global, printer, &l, &ids, &run)
}

#[cfg(not(feature = "datafusion"))]
pub(super) fn retry(_: &Cli, _: &Printer, _: &Invocation) -> Result<i32, Diagnostics> {
    Err(no_engine())
}
