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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        let lld = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")
            && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
            && !std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
        if lld && std::env::var("PROFILE").as_deref() == Ok("release") {
            println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        }
    }
}
