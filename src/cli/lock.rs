//! The run lock around commands that write to the target: a second run on the same warehouse
//! (folder) or PostgreSQL schema stops with a message naming the run that holds it, or waits
//! with `--wait-for-lock`. The guard releases it on every path out of the command.

use crate::adapter::{Adapter, AnyAdapter, Holder, Locked};
use crate::diag::{Diagnostic, Diagnostics};

use super::printer::Printer;

pub(super) struct RunLock<'a> {
    adapter: &'a AnyAdapter,
}

impl Drop for RunLock<'_> {
    fn drop(&mut self) {
        super::runtime().block_on(self.adapter.unlock());
    }
}

pub(super) fn acquire<'a>(
    adapter: &'a AnyAdapter,
    target: &str,
    wait: bool,
    printer: &Printer,
) -> Result<RunLock<'a>, Diagnostics> {
    let me = Holder::this_process();
    let mut told = false;
    loop {
        let outcome = super::runtime()
            .block_on(adapter.try_lock(&me))
            .map_err(|e| {
                let d = Diagnostic::error(
                    "lock",
                    format!("cannot take the run lock of target '{target}': {}", e.0),
                );
                if e.0.contains("Permission denied") || e.0.contains("Access Denied") {
                    d.hint("the warehouse must be writable by the user running rsdbt")
                } else {
                    d
                }
            })?;
        match outcome {
            Locked::Taken => return Ok(RunLock { adapter }),
            Locked::TakenOver(previous) => {
                printer.info(&format!(
                    "The last run on target '{target}' ({previous}) ended without finishing; its lock was released when it stopped, and this run took it"
                ));
                return Ok(RunLock { adapter });
            }
            Locked::HeldBy(other) if wait => {
                if !told {
                    printer.info(&format!(
                        "Waiting for the run holding target '{target}' to finish: {other}"
                    ));
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            Locked::HeldBy(other) => {
                return Err(Diagnostic::error(
                    "lock",
                    format!("another rsdbt run is writing to target '{target}': {other}"),
                )
                .hint("wait for it to finish, or pass --wait-for-lock to wait for it")
                .into());
            }
        }
    }
}
