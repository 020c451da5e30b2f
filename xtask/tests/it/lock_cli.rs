//! `cargo xtask lock` for Amazon Linux 2 (glibc 2.26), against the real index with the real
//! uv: the lock holds only wheels that run there, and a requirement without such a wheel
//! (today's litellm ships `manylinux_2_28` only) is refused before anything is written.

#![allow(clippy::unwrap_used)]

use crate::common::{root, text, xtask};

/// The repository's spec with other requirements and `runtime = "al2"`, in a fresh folder.
fn al2_spec(packages: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(root().join("layer/layer.toml")).unwrap();
    let spec: Vec<String> = spec
        .lines()
        .filter(|l| !l.starts_with("constraints ="))
        .map(|l| {
            if l.starts_with("packages =") {
                format!("packages = {packages}")
            } else if l.starts_with("runtime =") {
                "runtime = \"al2\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let spec = spec.join("\n") + "\n";
    assert!(spec.contains("runtime = \"al2\"") && spec.contains(packages));
    std::fs::write(dir.path().join("layer.toml"), spec).unwrap();
    dir
}

/// `cargo xtask lock` of the spec in `dir`.
fn lock(dir: &tempfile::TempDir) -> std::process::Output {
    xtask()
        .args(["lock", "--spec"])
        .arg(dir.path().join("layer.toml"))
        .output()
        .unwrap()
}

/// Whether one wheel file name carries a platform tag that runs on glibc 2.26 for `machine`.
fn runs_on_al2(file: &str, machine: &str) -> bool {
    let platforms = file.trim_end_matches(".whl").rsplit('-').next().unwrap();
    platforms.split('.').any(|p| {
        p == "any"
            || [
                "manylinux1",
                "manylinux2010",
                "manylinux2014",
                "manylinux_2_17",
            ]
            .iter()
            .any(|ok| p == format!("{ok}_{machine}"))
    })
}

#[test]
fn al2_locks_wheels_that_run_on_glibc_2_26() {
    // tiktoken 0.12.0 has manylinux_2_28 wheels only; 0.11.0 has manylinux2014 ones.
    let dir = al2_spec(r#"["tiktoken>=0.11,<=0.12"]"#);
    let output = lock(&dir);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    let lock = std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap();
    assert!(
        lock.contains("name = \"tiktoken\"\nversion = \"0.11.0\""),
        "{lock}"
    );
    assert!(lock.contains("glibc = \"2.26\""), "{lock}");
    let wheels: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.trim().strip_prefix("{ name = \""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    for machine in ["x86_64", "aarch64"] {
        assert!(
            wheels
                .iter()
                .any(|w| w.starts_with("tiktoken-0.11.0-cp311") && w.contains(machine)),
            "a tiktoken wheel for {machine}: {wheels:?}"
        );
    }
    for w in &wheels {
        assert!(
            runs_on_al2(w, "x86_64") || runs_on_al2(w, "aarch64"),
            "{w} needs a glibc newer than 2.26"
        );
    }
}

#[test]
fn todays_litellm_is_refused_on_al2_naming_what_would_fit() {
    let dir = al2_spec(r#"["litellm==1.110.2"]"#);
    let lock_path = dir.path().join("pylock.toml");
    std::fs::write(&lock_path, "# the previous lock\n").unwrap();
    let output = lock(&dir);
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    let first = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    for part in [
        "litellm==1.110.2 has no wheel for x86_64",
        "glibc 2.26 (runtime al2)",
        "CPython 3.11",
        "the newest litellm that fits is 1.91.5",
    ] {
        assert!(first.contains(part), "the first line says `{part}`: {log}");
    }
    assert!(
        log.contains("has wheels tagged") && log.contains("cp310-abi3-manylinux_2_28_x86_64"),
        "names the tags it has: {log}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        "# the previous lock\n",
        "the old lock is untouched"
    );
}
