//! Today's litellm, the default spec (`layer/layer.toml`), built with the README's commands on
//! the fixture runtimes and verified the way Lambda runs it. The other test files build the
//! seeds' spec (litellm 1.78.7), whose layers are three times smaller and faster to import.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::*;

/// Lambda's limits (bytes), as the tool reports them.
const DIRECT_UPLOAD: u64 = 52_428_800;
const UNPACKED: u64 = 262_144_000;

/// `cargo xtask verify --json` of a zip: the exit code and each check's (ok, detail).
fn verify(zip: &std::path::Path, extra: &[&str]) -> (i32, BTreeMap<String, (bool, String)>) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--layer".as_ref(), zip.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let (code, report) = verify_json(&args);
    (code, checks_of(&report))
}

/// `verify --json --timing-runs 1 --memory MB` of the default x86_64 layer: exit code, report.
fn verify_default_at(memory: &str) -> (i32, Value) {
    let layer = built(Which::Default, "x86_64", None);
    verify_json(&[
        "--memory".as_ref(),
        memory.as_ref(),
        "--layer".as_ref(),
        layer.zip.as_os_str(),
    ])
}

/// The default layer verified as a 1,024 MB function (Lambda's memory limit and CPU share on
/// top of every check of a plain verify), once: two tests read it.
fn default_at_1024() -> &'static (i32, Value) {
    static REPORT: OnceLock<(i32, Value)> = OnceLock::new();
    REPORT.get_or_init(|| verify_default_at("1024"))
}

fn failing(checks: &BTreeMap<String, (bool, String)>) -> Vec<(&String, &String)> {
    checks
        .iter()
        .filter(|(_, (ok, _))| !ok)
        .map(|(n, (_, d))| (n, d))
        .collect()
}

/// The version of a distribution in report.json's `packages`.
fn version_of(report: &Value, name: &str) -> Option<String> {
    report["packages"].as_array()?.iter().find_map(|p| {
        (p["name"].as_str()? == name).then(|| p["version"].as_str().unwrap_or_default().to_owned())
    })
}

/// The locked version of `name` in the default spec's lock.
fn locked(name: &str) -> String {
    let text =
        std::fs::read_to_string(root().join("layer/pylock.toml")).expect("layer/pylock.toml");
    let lock: toml::Value = toml::from_str(&text).expect("the lock parses");
    lock["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["version"].as_str())
        .unwrap_or_else(|| panic!("{name} is not in layer/pylock.toml"))
        .to_owned()
}

fn assert_the_workload_answered(checks: &BTreeMap<String, (bool, String)>) {
    for name in [
        "import: litellm",
        "litellm: import",
        "litellm: completion",
        "litellm: streamed completion",
        "litellm: acompletion",
        "audit: no egress",
        "audit: no writes outside /tmp",
    ] {
        let (ok, detail) = checks
            .get(name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"));
        assert!(ok, "{name}: {detail}");
    }
}

#[test]
fn the_default_layer_holds_todays_litellm_fits_250_mb_and_verifies() {
    let layer = built(Which::Default, "x86_64", None);
    assert_eq!(
        version_of(&layer.report, "litellm").as_deref(),
        Some(locked("litellm").as_str())
    );
    let openai = version_of(&layer.report, "openai").expect("openai is in the layer");
    assert!(
        openai.starts_with("3."),
        "the spec bounds openai to 3.x: {openai}"
    );
    let unpacked = layer.report["unpacked_bytes"].as_u64().unwrap();
    assert!(unpacked <= UNPACKED, "{unpacked} bytes unpacked");
    // Issue 11: at most 150 MB, so that the function's own code has 100 MB beside it.
    assert!(
        unpacked <= 150_000_000,
        "{unpacked} bytes unpacked: over 150 MB"
    );
    // The split packages work: litellm's plain modules are in site-packages.zip and the
    // layer's sitecustomize reaches them (the workload below imports and runs litellm).
    let notes = layer.report["notes"].to_string();
    assert!(notes.contains("plain modules of litellm"), "{notes}");

    let (code, report) = default_at_1024();
    let checks = checks_of(report);
    assert_eq!(*code, 0, "{:#?}", failing(&checks));
    assert_the_workload_answered(&checks);
    let zip_bytes = layer.report["zip_bytes"].as_u64().unwrap();
    if zip_bytes > DIRECT_UPLOAD {
        // Too big for one direct upload: both the build and verify say what to do instead.
        let notes = layer.report["notes"].to_string();
        assert!(notes.contains("--split") && notes.contains("S3"), "{notes}");
        assert!(
            checks["size: zip"].1.contains("--split"),
            "{:?}",
            checks["size: zip"]
        );
    }
    // `analyze` finds an owner for every file, though this layer keeps no RECORD and
    // litellm's wheel has no top_level.txt: `litellm_cli` is named by its console scripts.
    let out = xtask()
        .args(["analyze", "--json"])
        .arg(&layer.zip)
        .current_dir(root())
        .output()
        .expect("run xtask analyze");
    assert!(out.status.success(), "{}", text(&out));
    let a: Value = serde_json::from_slice(&out.stdout).expect("analyze --json is JSON");
    assert_eq!(a["unattributed"]["files"], 0, "{}", a["unattributed"]);
}

/// `verify --memory`: Lambda's memory limit fails a workload that does not fit, naming the
/// memory, and passes one that does, naming the smallest standard size it fits in.
#[test]
fn the_default_layer_does_not_fit_in_128_mb_but_fits_in_1024() {
    let (code, report) = &verify_default_at("128");
    assert_eq!(*code, 1, "{report}");
    assert_eq!(report["ok"], false);
    let (ok, detail) = check(report, "memory: 128 MB");
    assert!(!ok, "{detail}");
    assert!(detail.contains("at the 128 MB limit"), "{detail}");
    // The import alone was killed at the limit, so the workload is not run (at 0.07 vCPU it
    // would import for a minute first) and says why.
    let (ok, detail) = check(report, "import: litellm");
    assert!(!ok && detail.contains("OOM killer"), "{detail}");
    let (ok, detail) = check(report, "workload: workloads/litellm_verify.py");
    assert!(
        !ok && detail.contains("not run") && detail.contains("killed at the memory limit"),
        "{detail}"
    );

    let (code, report) = default_at_1024();
    let (ok, detail) = check(report, "memory: 1024 MB");
    assert!(ok, "{detail}");
    assert!(detail.contains("against the 1024 MB limit"), "{detail}");
    assert_eq!(*code, 0, "{report}");
    let peak = report["timings"]["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak > 128 << 20 && peak < 1024 << 20,
        "litellm's peak RSS is between the two: {peak}"
    );
    // The smallest standard size named is one above the peak.
    assert!(
        detail.contains("fits in 256 MB") || detail.contains("fits in 512 MB"),
        "{detail}"
    );
}

#[test]
fn the_minimal_layer_of_todays_litellm_fits_one_direct_upload_and_verifies() {
    let layer = built(Which::Default, "x86_64", Some("minimal"));
    let zip_bytes = layer.report["zip_bytes"].as_u64().unwrap();
    assert!(zip_bytes <= DIRECT_UPLOAD, "{zip_bytes} bytes zipped");
    let (code, checks) = verify(&layer.zip, &[]);
    assert_eq!(code, 0, "{:#?}", failing(&checks));
    assert_the_workload_answered(&checks);
}

/// Under qemu-user on this project's 2-core machine `import litellm` of today's litellm takes
/// about 106 s (4 s natively). Alone on an idle machine the test took 3.1 minutes (2026-12-02,
/// with split packages and python311.zip; 18 minutes before them). The suite is already close
/// to its 20-minute budget, so CI leaves it out; run it with
/// `cargo test -p xtask --test it today:: -- --ignored`. CI verifies the seeds' arm64 layer under
/// qemu (verify.rs).
#[test]
#[ignore = "3 minutes alone under qemu, more beside the suite: run with --ignored"]
fn the_arm64_default_layer_of_todays_litellm_verifies_under_qemu() {
    let layer = built(Which::Default, "arm64", None);
    let (_, checks) = verify(&layer.zip, &["--arch", "arm64"]);
    assert!(
        checks["runtime: executed"].1.contains("qemu"),
        "{:?}",
        checks["runtime: executed"]
    );
    assert_the_workload_answered(&checks);
    // The arm64 fixture runtime is Debian's CPython, whose libexpat needs a newer glibc than
    // Amazon Linux 2023's; the pinned python-build-standalone runtime does not.
    let failing = failing(&checks);
    assert!(
        failing
            .iter()
            .all(|(name, _)| name.starts_with("static: glibc")),
        "{failing:#?}"
    );
}
