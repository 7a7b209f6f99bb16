//! `RSDBT_TIMINGS=1`: how long each phase of a command took and the memory the process held,
//! recorded by the stages as they go and shown by the CLI's printer (for profiling; see
//! CONTRIBUTING.md). Off, a phase costs one check of a flag.

use std::sync::{Mutex, OnceLock};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RSDBT_TIMINGS").is_some())
}

/// Records that the phase `label`, begun at `since`, is done.
pub fn phase(label: &str, since: std::time::Instant) {
    if enabled() {
        note(format!(
            "[timing] {label}: {:.1} ms, rss {} MB",
            since.elapsed().as_secs_f64() * 1000.0,
            resident_kb() / 1024
        ));
    }
}

/// Records a line of the profile.
pub fn note(line: String) {
    if enabled()
        && let Ok(mut lines) = LINES.lock()
    {
        lines.push(line);
    }
}

/// The lines recorded since the last call.
pub fn take() -> Vec<String> {
    LINES
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// Resident memory from /proc (Linux); 0 elsewhere.
fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4)
        .unwrap_or(0)
}
