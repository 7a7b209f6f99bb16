//! What a command reports besides its artifact: Prometheus metrics (`--metrics-file`,
//! `--metrics-push`) and OpenTelemetry traces (the `OTEL_*` variables). A failed export is a
//! warning: monitoring must not fail a run that succeeded.

use super::args::Global;
use super::printer::Printer;
use crate::diag::Diagnostic;
use crate::metrics::{Origin, exposition, push_url};

pub(super) fn report(
    global: &Global,
    printer: &Printer,
    l: &super::Loaded,
    artifact: &dyn Fn() -> serde_json::Value,
) {
    let traces = crate::traces::enabled();
    if !traces && global.metrics_file.is_none() && global.metrics_push.is_none() {
        return;
    }
    // Made only when something reads it: the tree of a large run is large.
    let artifact = &artifact();
    let target = l.project.target();
    if traces
        && let Err(e) = crate::traces::export(
            artifact,
            &l.manifest.project_name,
            &target.name,
            super::runtime().handle().clone(),
        )
    {
        printer.diagnostics(
            &Diagnostic::warning("traces", format!("cannot export traces: {e}"))
                .hint("check OTEL_EXPORTER_OTLP_ENDPOINT (an OTLP/HTTP endpoint, e.g. http://localhost:4318)")
                .into(),
        );
    }
    if global.metrics_file.is_none() && global.metrics_push.is_none() {
        return;
    }
    let origin = Origin {
        project: &l.manifest.project_name,
        target: &target.name,
    };
    let text = exposition(&[artifact], &origin);
    let warn = |msg: String, hint: &str| {
        printer.diagnostics(&Diagnostic::warning("metrics", msg).hint(hint).into());
    };
    if let Some(path) = &global.metrics_file
        && let Err(e) = crate::artifacts::write_atomic(path, text.as_bytes())
    {
        warn(
            format!("cannot write metrics to {}: {e}", path.display()),
            "check that the folder of --metrics-file exists and is writable",
        );
    }
    if let Some(gateway) = &global.metrics_push {
        let url = push_url(gateway, &origin, artifact);
        let sent = super::runtime().block_on(async {
            let response = reqwest::Client::new()
                .put(&url)
                .header("Content-Type", "text/plain; version=0.0.4")
                .body(text)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "{status}: {}",
                    response.text().await.unwrap_or_default().trim()
                ))
            }
        });
        if let Err(e) = sent {
            warn(
                format!("cannot push metrics to {url}: {e}"),
                "check --metrics-push (the Pushgateway's base URL, e.g. http://localhost:9091)",
            );
        }
    }
}
