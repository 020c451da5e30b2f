//! `cargo xtask verify` against real layers: a good one, and deliberately broken copies of it,
//! each of which must be caught with a detail that names the cause.
//!
//! The good layer is the default spec built with the `standard` profile (everything a plain
//! install holds) on the fixture runtime, shared with the other end-to-end tests
//! (`tests/it/common`). `VERIFY_TEST_LAYER=path.zip` uses another zip instead.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common;

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

fn root() -> PathBuf {
    common::root()
}

fn work() -> PathBuf {
    let dir = common::fixtures_dir().join("verify-tests");
    std::fs::create_dir_all(&dir).expect("create the verify tests' folder");
    dir
}

/// The good x86_64 layer, built once.
fn good_layer() -> &'static Path {
    static LAYER: OnceLock<PathBuf> = OnceLock::new();
    LAYER.get_or_init(|| {
        if let Ok(p) = std::env::var("VERIFY_TEST_LAYER") {
            return PathBuf::from(p);
        }
        common::built_layer("x86_64", Some("standard")).zip
    })
}

/// Runs `cargo xtask verify --json` on a zip; returns the exit code and the report.
fn verify(zip: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["--layer".as_ref(), zip.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    common::verify_json(&args)
}

fn checks(report: &Value) -> BTreeMap<String, (bool, String)> {
    common::checks_of(report)
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
            // The standard profile keeps everything: over Lambda's 50 MB direct upload.
            !ok && !name.starts_with("size: zip")
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

/// A `.pth` file that runs code at every interpreter start (what the compromised litellm
/// 1.82.7 and 1.82.8 shipped) fails the static checks, naming the file; a spec that names it
/// in `[verify] allow-pth` accepts it.
#[test]
fn a_pth_file_that_executes_code_fails_verify() {
    // report.json names the zip relative to the workspace root.
    let good = root().join(common::built_layer("x86_64", None).zip);
    let evil = work().join("pth-x86_64.zip");
    let name = format!("{SP}/litellm_init.pth");
    let body: &[u8] = b"import os; os.system('echo stolen')\n";
    mutate(&good, &evil, |_, b| Some(b), &[(name.as_str(), body)]);
    let (code, report) = verify(&evil, &["--static-only"]);
    assert_ne!(code, 0, "{report}");
    let (ok, detail) = &checks(&report)["static: .pth files"];
    assert!(!ok, "{detail}");
    assert!(
        detail.contains("/opt/python/lib/python3.11/site-packages/litellm_init.pth EXECUTES CODE"),
        "{detail}"
    );
    let (code, report) = verify(&good, &["--static-only"]);
    let (ok, detail) = &checks(&report)["static: .pth files"];
    assert!(*ok && code == 0, "{detail} {report}");
    // analyze lists it too, with the line and no reason to allow it.
    let out = Command::new(XTASK)
        .args(["analyze", "--json"])
        .arg(&evil)
        .current_dir(root())
        .output()
        .unwrap();
    let analysis: Value = serde_json::from_slice(&out.stdout).expect("analyze --json");
    let pth = &analysis["pth_files"];
    assert_eq!(pth.as_array().map(Vec::len), Some(1), "{pth}");
    assert_eq!(pth[0]["path"], name.as_str());
    assert!(pth[0]["executes"]
        .as_str()
        .unwrap()
        .starts_with("import os"));
    assert!(pth[0]["allowed"].is_null());

    let dir = tempfile::tempdir().unwrap();
    let spec = common::seeds_spec_text().replace(
        "[verify]\n",
        "[verify]\nallow-pth = [\"litellm_init.pth\"]\n",
    );
    std::fs::write(dir.path().join("layer.toml"), spec).unwrap();
    let spec_path = dir.path().join("layer.toml");
    let (_, report) = verify(
        &evil,
        &["--static-only", "--spec", spec_path.to_str().unwrap()],
    );
    let (ok, detail) = &checks(&report)["static: .pth files"];
    assert!(*ok && detail.contains("allow-pth"), "{detail}");
}

/// Every profile of `layer/profiles.toml` (the slimming issue's) builds a layer that passes
/// every check but, for the profiles that keep everything, Lambda's 50 MB direct-upload size.
#[test]
fn every_profile_verifies() {
    let text = std::fs::read_to_string(root().join("layer/profiles.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).expect("profiles.toml parses");
    let profiles: Vec<String> = table["profile"]
        .as_table()
        .expect("[profile.NAME]")
        .keys()
        .cloned()
        .collect();
    assert!(profiles.len() >= 4, "{profiles:?}");
    let mut failures = Vec::new();
    for profile in &profiles {
        let layer = common::built_layer("x86_64", Some(profile));
        // The good layer is the standard profile's, already verified once in this process.
        let got = if profile == "standard" && std::env::var_os("VERIFY_TEST_LAYER").is_none() {
            good_report().clone()
        } else {
            checks(&verify(&layer.zip, &[]).1)
        };
        assert!(got.len() > 50, "{profile}: only {} checks", got.len());
        for (name, (ok, detail)) in got {
            let over_size = name.starts_with("size: zip")
                && layer.report["zip_bytes"].as_u64() > Some(52_428_800);
            if !ok && !over_size {
                failures.push(format!("{profile}: {name}: {detail}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The default arm64 layer, run under qemu-aarch64-static with a Debian arm64 sysroot in the
/// same sandbox: every check passes but one, which is a limitation of the arm64 fixture
/// runtime and not of the layer: Debian's interpreter links bookworm's libexpat, which needs
/// glibc 2.36 (python-build-standalone bundles its own expat and needs 2.17).
#[test]
fn the_default_arm64_layer_verifies_under_qemu() {
    if Command::new("qemu-aarch64-static")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: qemu-aarch64-static is not installed (ci/test.sh installs it)");
        return;
    }
    let layer = common::built_layer("arm64", None);
    let (_, report) = verify(&layer.zip, &["--arch", "arm64"]);
    let got = checks(&report);
    assert!(
        got["runtime: executed"].1.contains("qemu"),
        "{:?}",
        got["runtime: executed"]
    );
    assert!(
        got["runtime: interpreter"].1.contains("aarch64"),
        "{:?}",
        got["runtime: interpreter"]
    );
    for name in [
        "import: litellm",
        "litellm: completion",
        "litellm: streamed completion",
        "litellm: acompletion",
    ] {
        assert!(got[name].0, "{name}: {}", got[name].1);
    }
    let failing: Vec<_> = got.iter().filter(|(_, (ok, _))| !ok).collect();
    assert_eq!(failing.len(), 1, "{failing:#?}");
    let (name, (_, detail)) = failing[0];
    assert!(name.starts_with("static: glibc"), "{name}");
    assert_eq!(
        detail,
        "target glibc is 2.34: python/lib/libexpat.so.1 needs GLIBC_2.36"
    );
}
