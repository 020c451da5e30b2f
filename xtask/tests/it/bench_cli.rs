//! `cargo xtask bench` from the outside. The bench itself takes minutes and downloads wheels,
//! so only what it refuses before any work is tested here; its figures are in BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use crate::common;
use crate::common::{text, xtask};

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

/// layer/layer.toml in a temporary folder (its data still the repository's) with
/// `import-candidates = [CANDIDATES]` in [requirements].
fn spec_with_candidates(dir: &std::path::Path, candidates: &str) -> std::path::PathBuf {
    let layer = common::root().join("layer");
    let text = std::fs::read_to_string(layer.join("layer.toml")).unwrap();
    let text = text
        .replacen(
            "[layer]\n",
            &format!("[layer]\ndata = {:?}\n", layer.to_str().unwrap()),
            1,
        )
        .replacen(
            "[requirements]\n",
            &format!("[requirements]\nimport-candidates = [{candidates}]\n"),
            1,
        );
    let spec = dir.join("layer.toml");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// `cargo xtask bench --spec SPEC` with candidates that must be refused before any build.
fn refused(candidates: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_with_candidates(dir.path(), candidates);
    let out_dir = dir.path().join("out");
    let out = xtask()
        .args(["bench", "--skip-cold", "--spec"])
        .arg(&spec)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("spawn");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!out_dir.join("plain").exists(), "nothing was built: {all}");
    all
}

#[test]
fn import_candidates_the_spec_forbids_or_cannot_be_read_are_refused_naming_them() {
    let all = refused(r#""openai==3.52.0", "openai==2.30.0""#);
    assert!(
        all.contains("`openai==2.30.0` is outside the spec's constraint `openai>=3.0,<3.53`"),
        "{all}"
    );
    let all = refused(r#""openai>=3.1""#);
    assert!(all.contains("`openai>=3.1` is not NAME==VERSION"), "{all}");
}
