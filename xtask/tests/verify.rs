//! `cargo xtask verify` against real layers: a good one, and deliberately broken copies of it,
//! each of which must be caught with a detail that names the cause.
//!
//! The good layer is built once and cached under `target/verify-tests/`:
//! - `VERIFY_TEST_LAYER=path.zip` uses that zip;
//! - else `cargo xtask fixture-runtime` + `cargo xtask layer` for x86_64;
//! - else, while the runtime stage is not implemented, a layer is assembled by hand from this
//!   machine's CPython 3.11 (as the fixture runtime does) and `uv pip install -r pylock.toml`.
//!
//! Every test compares with the good layer, check by check: the fixture interpreter (this
//! machine's own build) fails some static checks by itself, which is a finding about the
//! fixture and not what these tests are about.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn work() -> PathBuf {
    let dir = root().join("target/verify-tests");
    std::fs::create_dir_all(&dir).expect("create target/verify-tests");
    dir
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The good x86_64 layer, built once per `target/`.
fn good_layer() -> &'static Path {
    static LAYER: OnceLock<PathBuf> = OnceLock::new();
    LAYER.get_or_init(|| {
        if let Ok(p) = std::env::var("VERIFY_TEST_LAYER") {
            return PathBuf::from(p);
        }
        let cached = work().join("good-x86_64.zip");
        if cached.is_file() {
            return cached;
        }
        let built = build_with_xtask().or_else(|e| {
            eprintln!(
                "building the layer with `cargo xtask layer` failed ({e}); assembling it by hand"
            );
            assemble_by_hand()
        });
        let zip = built.expect("a good layer for the verify tests");
        std::fs::rename(&zip, &cached).expect("cache the good layer");
        cached
    })
}

fn build_with_xtask() -> Result<PathBuf, String> {
    let dir = work().join("build");
    let archive = dir.join("fixture-x86_64.tar.gz");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(Command::new(XTASK)
        .args(["fixture-runtime", "--arch", "x86_64", "--out"])
        .arg(&archive)
        .current_dir(root()))?;
    let bytes = std::fs::read(&archive).map_err(|e| e.to_string())?;
    let sha = sha256(&bytes);
    run(Command::new(XTASK)
        .args(["layer", "--arch", "x86_64", "--out"])
        .arg(&dir)
        .arg("--python-archive")
        .arg(&archive)
        .args(["--python-sha256", &sha])
        .current_dir(root()))?;
    Ok(dir.join("python-litellm-x86_64.zip"))
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// This machine's CPython 3.11 copied the way the fixture runtime does (with `$ORIGIN`
/// rpath), the locked packages installed by uv, the spec's sitecustomize, zipped.
fn assemble_by_hand() -> Result<PathBuf, String> {
    let host = Command::new("python3.11")
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .map_err(|e| format!("no python3.11 on this machine: {e}"))?;
    let prefix = PathBuf::from(String::from_utf8_lossy(&host.stdout).trim());
    let tree = work().join("hand");
    let _ = std::fs::remove_dir_all(&tree);
    let py = tree.join("python");
    std::fs::create_dir_all(py.join("bin")).map_err(|e| e.to_string())?;
    run(Command::new("cp")
        .arg(prefix.join("bin/python3.11"))
        .arg(py.join("bin/")))?;
    run(Command::new("sh").arg("-c").arg(format!(
        "cp -a {p}/lib {d}/ && rm -rf {d}/lib/python3.11/site-packages {d}/lib/python3.11/test \
         {d}/lib/python3.11/idlelib {d}/lib/python3.11/tkinter && \
         find {d}/lib -name __pycache__ -prune -exec rm -rf {{}} + && \
         mkdir -p {d}/lib/python3.11/site-packages && ln -s python3.11 {d}/bin/python3",
        p = prefix.display(),
        d = py.display()
    )))?;
    run(Command::new("patchelf")
        .args(["--set-rpath", "$ORIGIN/../lib"])
        .arg(py.join("bin/python3.11")))?;
    run(Command::new("uv")
        .args(["pip", "install", "--target"])
        .arg(py.join("lib/python3.11/site-packages"))
        .arg("-r")
        .arg(root().join("layer/pylock.toml"))
        .args([
            "--python-platform",
            "x86_64-manylinux_2_28",
            "--python-version",
            "3.11",
            "--only-binary",
            ":all:",
        ]))?;
    let template = std::fs::read_to_string(root().join("layer/sitecustomize.py"))
        .map_err(|e| e.to_string())?;
    std::fs::write(
        py.join("lib/python3.11/sitecustomize.py"),
        template.replace(
            "__LAYER_ENV__",
            r#"{"LITELLM_LOCAL_MODEL_COST_MAP": "True"}"#,
        ),
    )
    .map_err(|e| e.to_string())?;
    let zip = work().join("hand.zip");
    let _ = std::fs::remove_file(&zip);
    run(Command::new("zip")
        .args(["-qry1"])
        .arg(&zip)
        .arg("python")
        .current_dir(&tree))?;
    let _ = std::fs::remove_dir_all(&tree);
    Ok(zip)
}

/// Runs `cargo xtask verify --json` on a zip; returns the exit code and the report.
fn verify(zip: &Path, extra: &[&str]) -> (i32, Value) {
    let out = Command::new(XTASK)
        .args(["verify", "--json", "--timing-runs", "1", "--layer"])
        .arg(zip)
        .args(extra)
        .current_dir(root())
        .output()
        .expect("run xtask verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn checks(report: &Value) -> BTreeMap<String, (bool, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                (
                    c["ok"].as_bool().unwrap_or(false),
                    c["detail"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

/// The good layer's report, computed once.
fn good_report() -> &'static BTreeMap<String, (bool, String)> {
    static REPORT: OnceLock<BTreeMap<String, (bool, String)>> = OnceLock::new();
    REPORT.get_or_init(|| {
        let (_, report) = verify(good_layer(), &[]);
        checks(&report)
    })
}

/// A copy of `src` with entries removed, replaced or added.
fn mutate(
    src: &Path,
    dest: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    add: &[(&str, &[u8])],
) {
    let mut zin = zip::ZipArchive::new(std::fs::File::open(src).expect("open zip")).expect("zip");
    let mut zout = zip::ZipWriter::new(std::fs::File::create(dest).expect("create zip"));
    for i in 0..zin.len() {
        let mut e = zin.by_index(i).expect("entry");
        let name = e.name().expect("name").into_owned();
        if e.is_dir() || e.is_symlink() {
            drop(e);
            zout.raw_copy_file(zin.by_index_raw(i).expect("raw entry"))
                .expect("copy entry");
            continue;
        }
        let mode = e.unix_mode().unwrap_or(0o644);
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).expect("read entry");
        drop(e);
        if let Some(bytes) = edit(&name, bytes) {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(1))
                .unix_permissions(mode);
            zout.start_file(name.as_str(), opts).expect("start entry");
            zout.write_all(&bytes).expect("write entry");
        }
    }
    for (name, bytes) in add {
        zout.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("start added entry");
        zout.write_all(bytes).expect("write added entry");
    }
    zout.finish().expect("finish zip");
}

fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + to.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

const SP: &str = "python/lib/python3.11/site-packages";

/// Six breakages in one layer: each module is imported in its own interpreter and each
/// static check looks at every file, so one failure cannot hide another.
#[test]
fn broken_layers_are_caught_with_their_cause() {
    let good = good_report();
    let broken = work().join("broken-x86_64.zip");
    let sp = format!("{SP}/");
    mutate(
        good_layer(),
        &broken,
        |name, mut bytes| {
            let Some(rel) = name.strip_prefix(&sp) else {
                return Some(bytes);
            };
            // 1. A distribution's metadata removed.
            if rel.starts_with("sniffio-") && rel.contains(".dist-info/") {
                return None;
            }
            // 2. An extension module removed.
            if rel.starts_with("rpds/rpds.") && rel.ends_with(".so") {
                return None;
            }
            // 3. An AArch64 `.so` in an x86_64 layer: e_machine 62 -> 183.
            if rel.starts_with("propcache/_helpers_c.") && rel.ends_with(".so") {
                bytes[18] = 183;
                bytes[19] = 0;
            }
            // 4. A `.so` that needs a glibc newer than the target's.
            if rel.starts_with("multidict/_multidict.") && rel.ends_with(".so") {
                let n = replace_all(&mut bytes, b"GLIBC_2.14", b"GLIBC_2.99")
                    + replace_all(&mut bytes, b"GLIBC_2.28", b"GLIBC_2.99")
                    + replace_all(&mut bytes, b"GLIBC_2.17", b"GLIBC_2.99");
                assert!(n > 0, "no GLIBC_2.1x/2.28 version name in {rel}");
            }
            Some(bytes)
        },
        &[
            // 5. A module that reaches for the internet at import (and hides the failure).
            (
                "python/lib/python3.11/site-packages/phonehome.py",
                b"import urllib.request\ntry:\n    urllib.request.urlopen('http://pypi.org/simple/', timeout=3)\nexcept Exception:\n    pass\n",
            ),
            // 6. A package that writes into its own folder at import (and hides the failure).
            (
                "python/lib/python3.11/site-packages/selfwriter/__init__.py",
                b"import os\ntry:\n    with open(os.path.join(os.path.dirname(__file__), 'cache.json'), 'w') as f:\n        f.write('{}')\nexcept OSError:\n    pass\n",
            ),
        ],
    );
    let (code, report) = verify(&broken, &[]);
    let got = checks(&report);
    assert_ne!(code, 0, "a broken layer must not verify");
    assert_eq!(report["ok"], false);

    let expect = |name: &str, needle: &str| {
        let (ok, detail) = got
            .get(name)
            .unwrap_or_else(|| panic!("no check {name}: {got:#?}"));
        assert!(!ok, "{name} should fail: {detail}");
        assert!(
            detail.contains(needle),
            "{name}: {detail:?} should name {needle:?}"
        );
        if let Some((good_ok, good_detail)) = good.get(name) {
            assert!(
                good_ok,
                "{name} already fails on the good layer: {good_detail}"
            );
        }
    };
    expect("metadata: sniffio", "sniffio");
    expect("import: rpds", "rpds");
    expect("static: elf machine", "propcache/_helpers_c.");
    expect("static: elf machine", "is AArch64");
    expect("import: phonehome", "resolve pypi.org");
    expect("audit: no egress", "import phonehome: resolve pypi.org");
    expect("import: selfwriter", "selfwriter/cache.json");
    expect(
        "audit: no writes outside /tmp",
        "/opt/python/lib/python3.11/site-packages/selfwriter/cache.json",
    );
    // The glibc check fails on the fixture interpreter already (this machine's glibc is
    // newer than the target's), so look for this file by name.
    let (ok, detail) = &got["static: glibc <= 2.34"];
    assert!(
        !ok && detail.contains("multidict/_multidict.") && detail.contains("GLIBC_2.99"),
        "{detail}"
    );
}

/// The good layer passes every runtime, package and LiteLLM check.
#[test]
fn the_good_layer_runs_like_lambda_would() {
    let good = good_report();
    let failing: Vec<_> = good
        .iter()
        .filter(|(name, (ok, _))| {
            !ok && !name.starts_with("static: ") && !name.starts_with("size: ")
        })
        .collect();
    assert!(failing.is_empty(), "{failing:#?}");
    for name in [
        "runtime: executed",
        "runtime: interpreter",
        "runtime: ssl",
        "import: litellm",
        "metadata: litellm",
        "litellm: completion",
        "litellm: streamed completion",
        "litellm: acompletion",
        "litellm: /v1/models",
        "audit: no egress",
        "audit: no writes outside /tmp",
    ] {
        assert!(good.contains_key(name), "no check {name}");
    }
    assert!(
        good["runtime: executed"].1.contains("bubblewrap"),
        "{:?}",
        good["runtime: executed"]
    );
}

/// An arm64 check of an x86_64 layer with nothing to run it: static checks name every
/// wrong-machine file, and the exit code says the layer was not executed.
#[test]
fn not_executed_is_never_verified() {
    let (code, report) = verify(
        good_layer(),
        &["--arch", "arm64", "--sysroot", "/nonexistent-sysroot"],
    );
    assert_ne!(code, 0);
    let got = checks(&report);
    let (ok, detail) = &got["runtime: executed"];
    assert!(!ok && detail.contains("NOT run"), "{detail}");
    let (ok, detail) = &got["static: elf machine"];
    assert!(!ok && detail.contains("is x86-64, not AArch64"), "{detail}");

    let (_, report) = verify(good_layer(), &["--static-only"]);
    assert!(
        !checks(&report).contains_key("runtime: executed"),
        "--static-only reports no runtime check"
    );
    assert!(
        report["warnings"].to_string().contains("NOT run"),
        "{report}"
    );
}

/// Every profile of `layer/profiles.toml` (the slimming issue's) builds a layer that passes
/// every runtime, package and LiteLLM check. Builds one layer per profile, so it is slow.
#[test]
#[ignore = "needs the runtime (fixture) and slim branches on main: run with --ignored"]
fn every_profile_verifies() {
    let text = std::fs::read_to_string(root().join("layer/profiles.toml"))
        .expect("layer/profiles.toml (from the slim branch)");
    let table: toml::Table = toml::from_str(&text).expect("profiles.toml parses");
    let profiles: Vec<String> = table
        .get("profile")
        .and_then(|p| p.as_table())
        .expect("[profile.NAME] tables")
        .keys()
        .cloned()
        .collect();
    assert!(!profiles.is_empty());
    let archive = work().join("build/fixture-x86_64.tar.gz");
    if !archive.is_file() {
        build_with_xtask().expect("the fixture runtime and a standard layer build");
    }
    let sha = sha256(&std::fs::read(&archive).expect("read the fixture runtime"));
    let mut failures = Vec::new();
    for profile in &profiles {
        let out = work().join(format!("profile-{profile}"));
        run(Command::new(XTASK)
            .args(["layer", "--arch", "x86_64", "--profile", profile, "--out"])
            .arg(&out)
            .arg("--python-archive")
            .arg(&archive)
            .args(["--python-sha256", &sha])
            .current_dir(root()))
        .unwrap_or_else(|e| panic!("building profile {profile}: {e}"));
        let (_, report) = verify(&out.join("python-litellm-x86_64.zip"), &[]);
        for (name, (ok, detail)) in checks(&report) {
            // Static findings about the fixture interpreter itself are the same for every
            // profile; the good layer's report says which.
            let fixture_finding = good_report().get(&name).is_some_and(|(ok, _)| !ok);
            if !ok && !fixture_finding {
                failures.push(format!("{profile}: {name}: {detail}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
