//! Runs the real `xtask fixture-runtime` binary, as a user would.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::process::Command;

fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    // Plain lines, no progress bars.
    cmd.env("CI", "true");
    cmd
}

#[test]
fn refuses_an_unknown_archive_ending() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("runtime.zip");
    let output = xtask()
        .args(["fixture-runtime", "--arch", "x86_64", "--out"])
        .arg(&out)
        .output()
        .expect("run xtask");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("runtime.zip") && stderr.contains(".tar.gz"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn writes_and_checks_a_full_x86_64_archive() {
    let has_python = Command::new("python3.11")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if std::env::consts::ARCH != "x86_64" || !has_python {
        eprintln!("skipped: needs an x86_64 machine with CPython 3.11");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("cpython-full.tar.zst");
    let output = xtask()
        .args([
            "fixture-runtime",
            "--arch",
            "x86_64",
            "--flavour",
            "full",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("FOR TESTS AND OFFLINE DEMOS"), "{stderr}");
    assert!(
        stdout.contains("sha256") && stdout.contains("check: python 3.11"),
        "{stdout}"
    );
    // hypot rebound, `_crypt` left out: within Lambda's glibc, and said so.
    assert!(stdout.contains("needs glibc 2.3"), "{stdout}");
    assert!(
        !stdout.contains("WARNING") && stdout.contains("note: `_crypt`"),
        "{stdout}"
    );
    // The full layout starts with PYTHON.json.
    let bytes = std::fs::read(&out).expect("read archive");
    let tar = zstd::decode_all(&bytes[..]).expect("zstd");
    let mut archive = tar::Archive::new(&tar[..]);
    let first = archive
        .entries()
        .expect("entries")
        .next()
        .expect("one entry")
        .expect("entry");
    assert_eq!(
        first.path().expect("path").to_str(),
        Some("python/PYTHON.json")
    );
}
