//! End-to-end tests of `cargo xtask layer`: real fixture runtime, real wheels from PyPI,
//! real HTTP on loopback, a real bubblewrap sandbox.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::Path;

use crate::common;
use crate::common::*;

/// The spec's asset name for an architecture, as the mirror must serve it.
fn asset(arch_triple: &str) -> String {
    let spec = std::fs::read_to_string(root().join("layer/layer.toml")).expect("layer.toml");
    let field = |key: &str| -> String {
        let line = spec
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .expect(key);
        line.split('"').nth(1).expect("quoted").to_owned()
    };
    format!(
        "cpython-{}+{}-{arch_triple}-install_only_stripped.tar.gz",
        field("version"),
        field("release")
    )
}

fn release() -> String {
    let spec = std::fs::read_to_string(root().join("layer/layer.toml")).expect("layer.toml");
    let line = spec
        .lines()
        .find(|l| l.starts_with("release = "))
        .expect("release");
    line.split('"').nth(1).expect("quoted").to_owned()
}

#[test]
fn builds_from_a_mirror_and_imports_litellm_at_opt_in_a_sandbox() {
    let (archive, sha) = fixture_archive("x86_64");
    let mirror = tempfile::tempdir().unwrap();
    let release_dir = mirror.path().join(release());
    std::fs::create_dir_all(&release_dir).unwrap();
    std::fs::copy(
        &archive,
        release_dir.join(asset("x86_64-unknown-linux-gnu")),
    )
    .unwrap();
    let server = serve_dir(mirror.path().to_path_buf());

    let out = tempfile::tempdir().unwrap();
    // A private cache so that the runtime really goes through HTTP, hashing and caching.
    let cache = tempfile::tempdir().unwrap();
    let output = run_ok(
        xtask()
            .args([
                "layer",
                "--arch",
                "x86_64",
                "--json",
                "--python-sha256",
                &sha,
                "--out",
            ])
            .arg(out.path())
            .arg("--spec")
            .arg(Which::Seeds.spec())
            .env("LAYER_PYTHON_MIRROR", &server.base_url)
            .env("LAYER_CACHE_DIR", cache.path()),
    );
    assert!(
        server.hits.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the runtime came over HTTP"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints one JSON object");
    assert_eq!(report["arch"], "x86_64");
    let zip = Path::new(report["zip_path"].as_str().unwrap());
    assert_eq!(zip, out.path().join("python-litellm-x86_64.zip"));
    assert_eq!(
        report["zip_bytes"].as_u64().unwrap(),
        std::fs::metadata(zip).unwrap().len()
    );
    assert!(report["unpacked_bytes"].as_u64().unwrap() > report["zip_bytes"].as_u64().unwrap());
    assert!(report["python_version"]
        .as_str()
        .unwrap()
        .starts_with("3.11"));
    let packages = report["packages"].as_array().unwrap();
    let litellm = packages
        .iter()
        .find(|p| p["name"] == "litellm")
        .expect("litellm in the report");
    assert_eq!(litellm["version"], "1.78.7");
    assert!(litellm["bytes"].as_u64().unwrap() > 1_000_000);
    assert!(packages.iter().any(|p| p["name"] == "openai"));
    let steps: Vec<&str> = report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["seconds"].as_f64().unwrap() >= 0.0, "{t}");
            t["step"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        [
            "fetch",
            "unpack runtime",
            "install",
            "patch",
            "prune",
            "bytecode",
            "strip",
            "site-packages zip",
            "minimize",
            "clients",
            "package",
            "report",
            "replace tree"
        ],
        "report.json times every step of the build"
    );
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        on_disk, report,
        "report.json beside the zip is the same object"
    );
    let text_report = std::fs::read_to_string(out.path().join("layer-size-report.txt")).unwrap();
    assert!(
        text_report.contains("unpack runtime") && text_report.contains("site-packages zip"),
        "{text_report}"
    );
    // Finished outputs have the mode of any new file, not the temporary file's 0600.
    let umask = {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    };
    for name in [
        "python-litellm-x86_64.zip",
        "report.json",
        "layer-size-report.txt",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666 & !umask, "{name}: mode {mode:o}");
    }

    // The zip, unpacked as Lambda does at /opt, runs litellm with /root and this machine's Python hidden.
    let unpacked = tempfile::tempdir().unwrap();
    unzip(zip, unpacked.path());
    let run = run_in_sandbox(
        unpacked.path(),
        "import sys, os, litellm; print(sys.prefix, os.environ['LITELLM_LOCAL_MODEL_COST_MAP']); \
         print(os.path.exists('/root/.pyenv'))",
    );
    let text = text(&run);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("/opt/python True"), "{text}");
    assert!(
        text.contains("False"),
        "this machine's Python is hidden: {text}"
    );

    // The layer carries its SBOM: every distribution with the sha256 of the wheel it came
    // from (the lock's), and the runtime, which here is the fixture, not the pinned download.
    let sbom: serde_json::Value = serde_json::from_slice(
        &std::fs::read(unpacked.path().join("python/sbom.cdx.json"))
            .expect("python/sbom.cdx.json in the zip"),
    )
    .expect("the SBOM is JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    let components = sbom["components"].as_array().unwrap();
    let sbom_litellm = components
        .iter()
        .find(|c| c["name"] == "litellm")
        .expect("litellm in the SBOM");
    assert_eq!(sbom_litellm["version"], litellm["version"]);
    let seeds_lock = Which::Seeds.spec().with_file_name("pylock.toml");
    let locked = &locked_wheels(&seeds_lock)["litellm"];
    let wheel = sbom_litellm["properties"][0]["value"].as_str().unwrap();
    let (_, locked_sha) = locked
        .iter()
        .find(|(file, _)| file == wheel)
        .unwrap_or_else(|| panic!("{wheel} is a locked wheel of litellm: {locked:?}"));
    assert_eq!(sbom_litellm["hashes"][0]["content"], locked_sha.as_str());
    // One component per distribution the layer's manifest lists, plus the runtime.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(unpacked.path().join("python/layer-manifest.json")).unwrap(),
    )
    .unwrap();
    let dists = manifest["distributions"].as_array().unwrap();
    for d in dists {
        assert!(
            components
                .iter()
                .any(|c| c["name"] == d[0] && c["version"] == d[1] && c["type"] == "library"),
            "{d} in the SBOM"
        );
    }
    assert_eq!(components.len(), dists.len() + 1);
    let runtime = components
        .iter()
        .find(|c| c["bom-ref"] == "runtime")
        .expect("a runtime component");
    assert_eq!(runtime["version"], report["python_version"]);
    assert_eq!(runtime["hashes"][0]["content"], sha.as_str());
    assert!(
        runtime.to_string().contains("not the spec's"),
        "a fixture runtime is never passed off as the pinned download: {runtime}"
    );

    // The runtime is in the cache now: an offline build succeeds without the server.
    drop(server);
    let out2 = tempfile::tempdir().unwrap();
    run_ok(
        xtask()
            .args([
                "layer",
                "--arch",
                "x86_64",
                "--offline",
                "--python-sha256",
                &sha,
                "--out",
            ])
            .arg(out2.path())
            .arg("--spec")
            .arg(Which::Seeds.spec())
            .env("LAYER_PYTHON_MIRROR", "http://127.0.0.1:9")
            .env("LAYER_CACHE_DIR", cache.path()),
    );
    assert_eq!(
        std::fs::read(zip).unwrap(),
        std::fs::read(out2.path().join("python-litellm-x86_64.zip")).unwrap(),
        "two builds of the same inputs give the same bytes"
    );
}

/// Unzips keeping modes and symlinks, as Lambda does.
fn unzip(zip: &Path, dest: &Path) {
    let status = std::process::Command::new("unzip")
        .arg("-q")
        .arg(zip)
        .arg("-d")
        .arg(dest)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => {
            // Without the unzip tool, use the zip crate (keeps modes; links become files).
            let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
            archive.extract(dest).unwrap();
        }
    }
}

#[test]
fn a_wrong_sha256_fails_names_both_hashes_and_leaves_no_zip() {
    let (archive, sha) = fixture_archive("x86_64");
    let wrong = "0".repeat(64);
    let out = tempfile::tempdir().unwrap();
    let output = xtask()
        .args([
            "layer",
            "--arch",
            "x86_64",
            "--python-sha256",
            &wrong,
            "--out",
        ])
        .arg(out.path())
        .arg("--python-archive")
        .arg(&archive)
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&wrong) && text.contains(&sha),
        "both hashes are shown: {text}"
    );
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().ends_with(".zip")),
        "no zip left: {left:?}"
    );
    assert!(!out.path().join("report.json").exists());
}

#[test]
fn an_archive_with_dotdot_paths_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&evil).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let body = b"#!/bin/sh\necho pwned\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_entry_type(tar::EntryType::Regular);
        // Written by hand: the tar crate refuses to build such a path itself.
        let name = b"python/../../evil";
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        tar.append(&header, &body[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let sha = sha256_file(&evil);
    let out = dir.path().join("out");
    let output = xtask()
        .args([
            "layer",
            "--arch",
            "x86_64",
            "--python-sha256",
            &sha,
            "--out",
        ])
        .arg(&out)
        .arg("--python-archive")
        .arg(&evil)
        .env("LAYER_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("../"), "the error names the entry: {text}");
    assert!(!dir.path().join("evil").exists() && !out.join("evil").exists());
    assert!(!out.join("python-litellm-x86_64.zip").exists());
}

#[test]
fn a_malformed_spec_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(root().join("layer/layer.toml")).unwrap();
    let bad = spec.replace("runtime = \"al2023\"", "runtime = \"al2025\"");
    let path = dir.path().join("layer.toml");
    std::fs::write(&path, &bad).unwrap();
    let line = bad.lines().position(|l| l.contains("al2025")).unwrap() + 1;
    let output = xtask()
        .args(["layer", "--arch", "x86_64", "--spec"])
        .arg(&path)
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success());
    assert!(
        text.contains(&path.display().to_string()),
        "names the file: {text}"
    );
    assert!(
        text.contains(&format!("line {line}")),
        "names the line: {text}"
    );
    assert!(text.contains("al2025"), "says what is wrong: {text}");
}

/// A hand-written `pylock.toml` in `dir` locking one wheel (whose bytes nothing downloads).
fn write_lock_of_one(dir: &Path, name: &str, version: &str, wheel: &str, url: &str) {
    let zeros = "0".repeat(64);
    std::fs::write(
        dir.join("pylock.toml"),
        common::lock_of(&format!(
            "[[packages]]\nname = \"{name}\"\nversion = \"{version}\"\nwheels = [{{ name = \"{wheel}\", url = \"{url}\", hashes = {{ sha256 = \"{zeros}\" }} }}]\n"
        )),
    )
    .unwrap();
}

#[test]
fn a_package_without_a_wheel_for_the_target_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = seeds_spec_own_lock().replace(
        "packages = [\"litellm==1.78.7\"]",
        "packages = [\"winonly==1.0\"]",
    );
    std::fs::write(dir.path().join("layer.toml"), spec).unwrap();
    write_lock_of_one(
        dir.path(),
        "winonly",
        "1.0",
        "winonly-1.0-cp311-cp311-win_amd64.whl",
        "https://example.invalid/w.whl",
    );
    let output = xtask()
        .args(["layer", "--arch", "x86_64", "--spec"])
        .arg(dir.path().join("layer.toml"))
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success());
    assert!(text.contains("winonly 1.0"), "names the package: {text}");
    assert!(
        text.contains("x86_64") && text.contains("2.34"),
        "names the target: {text}"
    );
    assert!(
        text.contains("cp311-cp311-win_amd64"),
        "names the tags that exist: {text}"
    );
}

/// The supply-chain case: litellm 1.82.7 shipped a credential-stealing `.pth` file.
/// `lock` refuses the requirement before asking the index (which no longer has the files);
/// `layer --plan` refuses a hand-written lock that holds it. Both quote the advisory.
#[test]
fn a_compromised_release_is_refused_by_lock_and_by_layer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = seeds_spec_own_lock().replace(
        "packages = [\"litellm==1.78.7\"]",
        "packages = [\"litellm==1.82.7\"]",
    );
    assert!(spec.contains("litellm==1.82.7"));
    std::fs::write(dir.path().join("layer.toml"), spec).unwrap();
    write_lock_of_one(
        dir.path(),
        "litellm",
        "1.82.7",
        "litellm-1.82.7-py3-none-any.whl",
        "https://example.invalid/litellm-1.82.7-py3-none-any.whl",
    );
    let lock_before = std::fs::read(dir.path().join("pylock.toml")).unwrap();
    let check = |args: &[&str]| {
        let output = xtask()
            .args(args)
            .arg("--spec")
            .arg(dir.path().join("layer.toml"))
            .env("UV", "/nonexistent/uv-must-not-run")
            .output()
            .unwrap();
        let text = text(&output);
        assert!(!output.status.success(), "{args:?} accepted it: {text}");
        assert!(
            text.contains("litellm 1.82.7 is a known-compromised release"),
            "{args:?} names the release: {text}"
        );
        assert!(
            text.contains("credential stealer") && text.contains("issues/24512"),
            "{args:?} quotes the advisory and its source: {text}"
        );
    };
    check(&["lock"]);
    assert_eq!(
        std::fs::read(dir.path().join("pylock.toml")).unwrap(),
        lock_before,
        "lock left the lock alone"
    );
    check(&["layer", "--plan", "--offline", "--arch", "x86_64"]);
    // The lock alone is enough for `layer`, whatever the spec asks for.
    let spec = seeds_spec_own_lock();
    std::fs::write(dir.path().join("layer.toml"), spec).unwrap();
    let output = xtask()
        .args(["layer", "--plan", "--offline", "--arch", "x86_64", "--spec"])
        .arg(dir.path().join("layer.toml"))
        .output()
        .unwrap();
    let text = text(&output);
    assert!(!output.status.success());
    assert!(text.contains("pylock.toml locks litellm 1.82.7"), "{text}");
}

#[test]
fn an_arm64_layer_holds_only_aarch64_native_code() {
    if std::process::Command::new("qemu-aarch64-static")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: qemu-aarch64-static is not installed (ci/test.sh installs it)");
        return;
    }
    // The default profile's (verify.rs runs it under qemu): one arm64 build for both tests.
    let layer = built_layer("arm64", None);
    let site = layer.tree.join("python/lib/python3.11/site-packages");
    let mut elf_files = 0;
    for entry in walk(&layer.tree) {
        let bytes = std::fs::read(&entry).unwrap();
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let elf =
            goblin::elf::Elf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", entry.display()));
        assert_eq!(
            elf.header.e_machine,
            goblin::elf::header::EM_AARCH64,
            "{} is not AArch64",
            entry.display()
        );
        if entry.starts_with(&site) {
            elf_files += 1;
        }
    }
    assert!(
        elf_files > 10,
        "site-packages holds native code of several distributions ({elf_files} files)"
    );
    assert_eq!(layer.report["arch"], "arm64");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// The chosen wheel of every package of a lock: name -> (file, sha256) of each of
/// its wheels.
fn locked_wheels(lock: &Path) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(lock).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for pkg in lock["packages"].as_array().unwrap() {
        let wheels = pkg
            .get("wheels")
            .and_then(|w| w.as_array())
            .map(|ws| {
                ws.iter()
                    .map(|w| {
                        (
                            w["name"].as_str().unwrap().to_owned(),
                            w["hashes"]["sha256"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert(pkg["name"].as_str().unwrap().to_owned(), wheels);
    }
    out
}

#[test]
fn the_plan_names_every_wheel_and_output_and_touches_nothing() {
    let (archive, sha) = fixture_archive("x86_64");
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("no-cache");
    let out = tmp.path().join("no-out");
    let locked = locked_wheels(&root().join("layer/pylock.toml"));
    let explicit = [
        "--python-archive".to_owned(),
        archive.to_string_lossy().into_owned(),
        "--python-sha256".to_owned(),
        sha.clone(),
    ];
    for extra in [&explicit[..], &[]] {
        let output = run_ok(
            xtask()
                .env("LAYER_CACHE_DIR", &cache)
                .args(["layer", "--plan", "--json", "--offline", "--arch", "x86_64"])
                .arg("--out")
                .arg(&out)
                .args(extra),
        );
        let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let wheels = plan["wheels"].as_array().unwrap();
        assert_eq!(wheels.len(), locked.len(), "one wheel per locked package");
        for w in wheels {
            let name = w["package"].as_str().unwrap();
            let pair = (
                w["file"].as_str().unwrap().to_owned(),
                w["sha256"].as_str().unwrap().to_owned(),
            );
            assert!(
                locked[name].contains(&pair),
                "{name}: {pair:?} is one of the lock's wheels"
            );
            assert!(w["why"].is_string() && w["tags"].is_array());
        }
        let paths = &plan["paths"];
        let out_str = out.to_string_lossy();
        assert_eq!(paths["out"], *out_str);
        assert_eq!(paths["zip"], format!("{out_str}/python-litellm-x86_64.zip"));
        for key in ["tree", "report_json", "report_text", "trace"] {
            assert!(paths[key].as_str().unwrap().starts_with(&*out_str), "{key}");
        }
        let runtime = &plan["runtime"];
        if extra.is_empty() {
            assert_eq!(runtime["origin"], "pinned");
            assert!(runtime["location"]
                .as_str()
                .unwrap()
                .starts_with("https://"));
        } else {
            assert_eq!(runtime["origin"], "explicit");
            assert_eq!(runtime["sha256"], *sha);
        }
        assert!(!cache.exists(), "the plan created the cache folder");
        assert!(!out.exists(), "the plan created the output folder");
    }
    // The text rendering names the same things.
    let output = run_ok(
        xtask()
            .env("LAYER_CACHE_DIR", &cache)
            .args(["layer", "--plan", "--offline", "--arch", "x86_64"])
            .arg("--out")
            .arg(&out),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("wheels (") && text.contains("python-litellm-x86_64.zip"),
        "{text}"
    );
    assert!(!cache.exists() && !out.exists());
}
