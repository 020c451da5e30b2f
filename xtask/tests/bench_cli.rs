//! `cargo xtask bench` from the outside. The bench itself takes minutes and downloads wheels,
//! so only what it refuses before any work is tested here; its figures are in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use common::{text, xtask};

#[test]
fn an_unknown_profile_is_refused_before_any_build() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = xtask()
        .args([
            "bench",
            "--skip-cold",
            "--profiles",
            "standard,no-such-profile",
            "--out",
        ])
        .arg(out_dir.path())
        .output()
        .expect("spawn");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("--profiles names `no-such-profile`") && all.contains("standard"),
        "the error names the profile and the ones that exist: {all}"
    );
    assert!(
        !out_dir.path().join("plain").exists(),
        "nothing was built: {all}"
    );
}

#[test]
fn zero_runs_is_refused() {
    let out = xtask()
        .args([
            "bench",
            "--runs",
            "0",
            "--out",
            "/nonexistent/never-created",
        ])
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--runs must be at least 1"),
        "{}",
        text(&out)
    );
}
