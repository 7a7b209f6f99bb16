//! `rsdbt run-operation`.

use super::*;

/// `rsdbt run-operation <macro> --args '{...}'`: renders a call of the macro in the project's
/// context with the warehouse open; the macro's output is discarded (its statements ran).
#[cfg(feature = "datafusion")]
pub(super) fn run_operation(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    name: &str,
    args: Option<&str>,
) -> Result<i32, Diagnostics> {
    let l = load(&cli.global, invocation)?;
    let args: serde_json::Map<String, serde_json::Value> = match args {
        None => Default::default(),
        Some(text) => {
            let parsed = crate::project::yaml::parse("--args", &std::sync::Arc::from(text))?;
            match parsed {
                serde_json::Value::Object(m) => m,
                serde_json::Value::Null => Default::default(),
                _ => {
                    return Err(
                        Diagnostic::error("args", "--args must be a YAML or JSON dict")
                            .hint("e.g. --args '{table: orders, days: 7}'")
                            .into(),
                    );
                }
            }
        }
    };
    let adapter = open_introspected(&l)?;
    let _lock = lock::acquire(
        &adapter,
        &l.project.target().name,
        cli.global.wait_for_lock,
        printer,
    )?;
    printer.running(&l.project.target().adapter_type);
    let unique_id = format!("operation.{}.{name}", l.manifest.project_name);
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now();
    let outcome = if l.manifest.jinja.macro_id(name).is_none() {
        Err(format!("no macro named '{name}' in the project"))
    } else {
        let call_args: Vec<String> = args
            .keys()
            .map(|k| {
                format!(
                    "{k}=__rsdbt_args__[{}]",
                    serde_json::Value::from(k.as_str())
                )
            })
            .collect();
        let call = format!("{{{{ {name}({}) }}}}", call_args.join(", "));
        let extra = vec![(
            "__rsdbt_args__".to_string(),
            crate::jinja::value_of(&serde_json::Value::Object(args)),
        )];
        crate::compile::Compiler::new(&l.manifest)
            .render_operation(None, name, "run-operation", &call, extra)
            .map(|(_, logs)| {
                for line in logs {
                    printer.logged(&line);
                }
            })
            .map_err(|d| d.message)
    };
    let secs = started.elapsed().as_secs_f64();
    let result = crate::exec::NodeResult {
        unique_id,
        status: if outcome.is_ok() {
            crate::exec::Status::Success
        } else {
            crate::exec::Status::Error
        },
        message: outcome.as_ref().err().cloned(),
        timing: vec![crate::exec::Timing {
            name: "execute",
            started_at,
            completed_at: chrono::Utc::now(),
        }],
        thread_id: "main".into(),
        execution_time: secs,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: None,
        batch_results: None,
    };
    let rr = crate::artifacts::run_results_json(
        &l.manifest,
        &crate::exec::RunResults {
            results: vec![result],
            elapsed: secs,
        },
        run_args(
            &cli.global,
            &l,
            json!({"which": "run-operation", "macro": name}),
        ),
    );
    crate::artifacts::write_json(&l.project.target_dir(), "run_results.json", &rr)
        .map_err(|e| Diagnostic::error("io", format!("cannot write run_results.json: {e}")))?;
    metrics::report(&cli.global, printer, &l, &|| rr.clone());
    match outcome {
        Ok(()) => Ok(0),
        Err(msg) => {
            printer.diagnostics(
                &Diagnostic::error("operation", format!("run-operation {name} failed: {msg}"))
                    .into(),
            );
            Ok(1)
        }
    }
}

#[cfg(not(feature = "datafusion"))]
pub(super) fn run_operation(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &str,
    _: Option<&str>,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}
