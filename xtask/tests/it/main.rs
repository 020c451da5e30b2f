//! The end-to-end tests of `cargo xtask`, one module per command or subject, in one test
//! binary: each file of `tests/` used to be a crate of its own that recompiled `common` and
//! linked every dependency again, and `cargo test` ran those binaries one after another, so
//! one long test held back all the others. Here the test threads share the work; layers and
//! fixture runtimes are still built once, under file locks (`common::lock`).
//!
//! Run one module with `cargo test -p xtask --test it verify::`, one test by its full name.

mod common;

mod analyze;
mod analyze_imports;
mod bench_cli;
mod fixture_cli;
mod lambda_memory;
mod layer;
mod lock_cli;
mod minimize;
mod module_graph;
mod patch;
mod split;
mod stage_cache;
mod today;
mod verify;

/// A new file in `xtask/tests/` would be a test binary of its own again (cargo finds each
/// one); new tests go into a module here.
#[test]
fn every_integration_test_is_a_module_of_this_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut others: Vec<String> = std::fs::read_dir(&tests)
        .expect("read xtask/tests")
        .map(|e| e.expect("an entry of xtask/tests").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n != "it")
        .collect();
    others.sort();
    assert!(
        others.is_empty(),
        "xtask/tests holds {others:?}: move them under xtask/tests/it/ and add a `mod` line to \
         its main.rs"
    );
}
