//! Link arguments of the `rsdbt` executable on Linux (libraries and tests are untouched, and
//! dependencies need no rebuild).
//!
//! Position-dependent: a position-independent executable's pointer tables (DataFusion's and
//! arrow's vtables, ~7 MB of `.rela.dyn` relocations into 5 MB of `.data.rel.ro`) are patched by
//! the dynamic loader at every start, which touches all of them: 19 MB of RSS before `main` in a
//! release build instead of 9 MB, on every command (`scripts/bench.sh`). The cost is that the
//! executable's own image loads at a fixed address (no ASLR for it; libraries, heap and stacks
//! are still randomized).
//!
//! Identical code folded (release builds on x86_64 Linux, where rustc links with its own LLD
//! unless told otherwise): a generic function instantiated alike by several crates is compiled
//! once per crate at opt-level 3, and the linker keeps one copy of each byte-identical function
//! (154.5 → 148.7 MB, 2026-12-06). LLD folds code only, never data, so no vtable or static
//! changes its address.
//!
//! No unwind tables in a release executable without debug info (`.eh_frame` and its index,
//! 9.9 of 64.0 MB, 2026-12-06): the panic hook in `cli::main` exits before any unwinding starts
//! (and the release profile aborts on panic besides), so nothing in the executable ever unwinds;
//! the tables served only backtraces, which the hook never prints (a `Backtrace` captured
//! without them is short, not an error).
//! rustc's own switch for this, `-C force-unwind-tables=no`, is a flag for every crate of a
//! build, tests included, whose harness needs unwinding to report a failing test; the linker
//! drops the sections from the executable alone. A profiling build that wants call stacks from
//! the tables turns debug info on (CONTRIBUTING.md says how); cargo then sets `DEBUG=true` for
//! this script, which keeps them.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let lld = env("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && env("CARGO_CFG_TARGET_ENV") == "gnu"
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if !lld || env("PROFILE") != "release" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    if env("DEBUG") == "false" {
        // INSERT keeps LLD's default layout and only adds the discard rule to it.
        let script = PathBuf::from(env("OUT_DIR")).join("no-unwind-tables.ld");
        std::fs::write(
            &script,
            "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) } } INSERT AFTER .text;\n",
        )
        .expect("OUT_DIR is writable");
        // -Xlinker passes the path as it is (-Wl, would split it at any comma).
        for arg in ["-Xlinker", "-T", "-Xlinker"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        println!("cargo:rustc-link-arg-bins={}", script.display());
    }
}
