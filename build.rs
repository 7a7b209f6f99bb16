//! Links the `rsdbt` executable as a position-dependent executable on Linux.
//!
//! A position-independent executable's pointer tables (DataFusion's and arrow's vtables, ~7 MB
//! of `.rela.dyn` relocations into 5 MB of `.data.rel.ro`) are patched by the dynamic loader at
//! every start, which touches all of them: 19 MB of RSS before `main` in a release build
//! instead of 9 MB, on every command (`scripts/bench.sh`). Only the executable is linked so:
//! libraries and tests are untouched, and dependencies need no rebuild. The cost is that the
//! executable's own image loads at a fixed address (no ASLR for it; libraries, heap and stacks
//! are still randomized).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
