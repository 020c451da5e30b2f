//! The stage cache end to end (the seeds' spec): two builds started at once on one fresh
//! cache folder, then a warm build, all give the same zip bytes; a build with nothing changed
//! says "up to date";
//! `cache --size` and `cache --clean`. (That the cache writes the bytes an uncached build
//! writes is `build::zip`'s unit test: the fixture layer of the other tests may be older.)

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The cache folder the other tests fill (their wheels are copied from it), as
/// `core::cache_dir` finds it.
fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAYER_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    base.join("lambda-python-layer")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn layer_cmd(cache: &Path, out: &Path, archive: &Path, sha: &str) -> Command {
    let mut cmd = xtask();
    cmd.env("LAYER_CACHE_DIR", cache)
        .args(["layer", "--arch", "x86_64", "--offline", "--spec"])
        .arg(Which::Seeds.spec())
        .arg("--out")
        .arg(out)
        .arg("--python-archive")
        .arg(archive)
        .args(["--python-sha256", sha]);
    cmd
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(walk_files(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

fn zip_of(out: &Path) -> PathBuf {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    PathBuf::from(report["zip_path"].as_str().unwrap())
}

fn cache_counts(out: &Path) -> Vec<(String, u64, u64)> {
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    report["cache"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["stage"].as_str().unwrap().to_owned(),
                c["hits"].as_u64().unwrap(),
                c["misses"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn cold_concurrent_and_warm_builds_give_the_same_zip_and_an_unchanged_one_is_up_to_date() {
    let (archive, sha) = fixture_archive("x86_64");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    // The downloads of the shared cache (the seeds' wheels are there once its layer is
    // built); the stage cache starts empty.
    built_layer("x86_64", None);
    for downloads in ["wheels", "python"] {
        copy_dir(&default_cache().join(downloads), &cache.join(downloads));
    }

    let (out_a, out_b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Started at once: both miss, both write the same entries.
    let a = layer_cmd(&cache, &out_a, &archive, &sha)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = layer_cmd(&cache, &out_b, &archive, &sha)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let a_zip = std::fs::read(zip_of(&out_a)).unwrap();
    assert!(
        std::fs::read(zip_of(&out_b)).unwrap() == a_zip,
        "two concurrent builds on one cache differ"
    );

    // Nothing changed: the outputs are reused, untouched.
    let report_before = std::fs::read(out_a.join("report.json")).unwrap();
    let again = run_ok(&mut layer_cmd(&cache, &out_a, &archive, &sha));
    assert!(text(&again).contains("up to date: "), "{}", text(&again));
    assert_eq!(
        std::fs::read(out_a.join("report.json")).unwrap(),
        report_before
    );

    // An output changed by hand is no longer up to date: built again, warm, the same bytes.
    std::fs::write(zip_of(&out_a), b"not a zip").unwrap();
    let warm = run_ok(&mut layer_cmd(&cache, &out_a, &archive, &sha));
    assert!(!text(&warm).contains("up to date"), "{}", text(&warm));
    assert!(
        std::fs::read(zip_of(&out_a)).unwrap() == a_zip,
        "the warm build differs from the cold ones"
    );
    let counts = cache_counts(&out_a);
    // install, bytecode, strip, zip entries, the runtime and the pruning plan (whose hit leaves
    // the import scans unasked): every one a hit, no miss.
    let stages: Vec<&str> = counts.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        stages,
        ["install", "bytecode", "strip", "zip", "runtime", "prune"],
        "{counts:?}"
    );
    for (stage, hits, misses) in &counts {
        assert_eq!(*misses, 0, "warm {stage}: {counts:?}");
        assert!(*hits > 0, "warm {stage}: {counts:?}");
    }
    let wheels = counts[0].1;
    assert!(
        text(&warm).contains(&format!(
            "install: {wheels} wheels, {wheels} from the stage cache"
        )),
        "{}",
        text(&warm)
    );

    // A `.pyc` of a built tree edited in place changes its cache entry too (they are one file,
    // linked by the warm build): the next build notices, compiles that module again, says so,
    // and writes the same zip.
    let edited = walk_files(&out_a.join("tree"))
        .into_iter()
        .find(|p| {
            use std::os::unix::fs::MetadataExt;
            p.extension().is_some_and(|e| e == "pyc")
                && std::fs::metadata(p).is_ok_and(|m| m.nlink() > 1)
        })
        .expect("a .pyc linked from the stage cache");
    {
        use std::io::Write;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&edited)
            .unwrap();
        f.write_all(b"edited in place").unwrap();
    }
    let out_c = tmp.path().join("c");
    let mended = run_ok(&mut layer_cmd(&cache, &out_c, &archive, &sha));
    let notes = std::fs::read_to_string(out_c.join("report.json")).unwrap();
    assert!(
        notes.contains("1 of the stage cache's .pyc files had been changed since they were stored"),
        "{}",
        text(&mended)
    );
    assert!(
        std::fs::read(zip_of(&out_c)).unwrap() == a_zip,
        "the build after an edit in place differs"
    );
    let bytecode = cache_counts(&out_c)
        .into_iter()
        .find(|c| c.0 == "bytecode")
        .unwrap();
    assert_eq!(bytecode.2, 1, "one module compiled again: {bytecode:?}");

    // cache --size, then --clean empties the stage cache and keeps the downloads.
    let size = run_ok(
        xtask()
            .env("LAYER_CACHE_DIR", &cache)
            .args(["cache", "--size"]),
    );
    let size = text(&size);
    assert!(size.contains("stage bytecode"), "{size}");
    assert!(!size.contains("bytecode      0.0 MB"), "{size}");
    let clean = run_ok(
        xtask()
            .env("LAYER_CACHE_DIR", &cache)
            .args(["cache", "--clean"]),
    );
    assert!(
        text(&clean).contains("kept the downloads"),
        "{}",
        text(&clean)
    );
    assert!(!cache.join("stages").exists());
    assert!(cache.join("wheels").exists());
    let size = text(&run_ok(
        xtask()
            .env("LAYER_CACHE_DIR", &cache)
            .args(["cache", "--size"]),
    ));
    for line in size.lines().filter(|l| l.contains(" entries")) {
        assert!(line.ends_with(" 0 entries"), "{size}");
    }
}
