//! `cargo xtask analyze`: run the real binary on layers made here (a zip with a few fake
//! distributions, the same unpacked, a layer built from a one-wheel spec) and, when one was
//! built, on the default layer. The HTML page is opened in headless Chromium.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::common;
use crate::common::*;

const SP: &str = "python/lib/python3.11/site-packages";

/// A layer as (path, content) pairs: two sites (the standard one and Lambda's classic
/// `python/`), a distribution with RECORD, native code, docs and tests, one without RECORD,
/// a second version of it, and one nothing requires.
fn synthetic_files(alpha_version: &str, with_orphan: bool) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("{SP}/alpha-{alpha_version}.dist-info/METADATA"),
            format!("Metadata-Version: 2.1\nName: Alpha\nVersion: {alpha_version}\nRequires-Dist: beta>=2\nRequires-Dist: gamma ; extra == \"x\"\n\nA test.\n").into_bytes(),
        ),
        (format!("{SP}/alpha/__init__.py"), b"import beta\n".repeat(200)),
        (
            format!("{SP}/alpha/_speed.cpython-311-x86_64-linux-gnu.so"),
            (0..60_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        (format!("{SP}/alpha/docs/guide.md"), b"# Guide\n".repeat(500)),
        (format!("{SP}/alpha/tests/test_alpha.py"), b"def test(): pass\n".repeat(100)),
        (format!("{SP}/beta-2.0.dist-info/METADATA"), b"Name: beta\nVersion: 2.0\n".to_vec()),
        (format!("{SP}/beta.py"), b"x = 1\n".repeat(300)),
        ("python/beta-3.0.dist-info/METADATA".into(), b"Name: beta\nVersion: 3.0\n".to_vec()),
        ("python/beta.py".into(), b"x = 2\n".repeat(10)),
        ("python/lib/python3.11/os.py".into(), b"# os\n".repeat(1000)),
        ("python/bin/python3.11".into(), b"not really an interpreter".to_vec()),
    ];
    let record: String = files
        .iter()
        .filter_map(|(p, _)| p.strip_prefix(&format!("{SP}/")))
        .filter(|p| p.starts_with("alpha"))
        .map(|p| format!("{p},,\n"))
        .collect();
    files.push((
        format!("{SP}/alpha-{alpha_version}.dist-info/RECORD"),
        record.into_bytes(),
    ));
    if with_orphan {
        files.push((
            format!("{SP}/orphan-0.1.dist-info/METADATA"),
            b"Name: orphan\nVersion: 0.1\n".to_vec(),
        ));
        files.push((format!("{SP}/orphan/__init__.py"), b"pass\n".to_vec()));
    } else {
        files.push((
            format!("{SP}/newcomer-5.0.dist-info/METADATA"),
            b"Name: newcomer\nVersion: 5.0\n".to_vec(),
        ));
        files.push((format!("{SP}/newcomer.py"), b"y = 1\n".repeat(2000)));
    }
    files
}

/// A `[prune]` section pointing a spec outside `layer/` at the repository's rules and profiles.
fn prune_paths() -> String {
    format!(
        "\n[prune]\nrules = \"{}\"\nprofiles = \"{}\"\n",
        root().join("layer/rules.toml").display(),
        root().join("layer/profiles.toml").display()
    )
}

fn write_zip(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn analyze_json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = run_ok(xtask().arg("analyze").arg("--json").args(args));
    serde_json::from_slice(&out.stdout).expect("analyze --json prints JSON")
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["normalized"].as_str().unwrap().to_owned())
        .collect()
}

/// Debian's chromium, installed when missing and allowed; `None` (the test then skips) when not.
fn chromium() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let which = || {
                ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                    .into_iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
            };
            if let Some(p) = which() {
                return Some(p);
            }
            let root = Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"0"));
            if !root {
                return None;
            }
            let _guard = lock("chromium-install");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "chromium"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
            which()
        })
        .clone()
}

/// Opens the page in headless Chromium: the DOM after the script ran, and a screenshot.
fn open_in_browser(page: &Path, screenshot: &Path) -> Option<String> {
    let Some(chromium) = chromium() else {
        eprintln!("skipped the browser check: chromium is not installed and this user cannot install it (apt-get install chromium)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let base = |cmd: &mut Command| {
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let url = format!("file://{}", page.display());
    let mut shot = Command::new(&chromium);
    base(&mut shot);
    shot.arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url);
    run_ok(&mut shot);
    let mut dump = Command::new(&chromium);
    base(&mut dump);
    dump.arg("--dump-dom").arg(&url);
    let out = run_ok(&mut dump);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{path:?} is a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The page has a box for every distribution, and a screenshot of it is a real picture.
fn check_page(page: &Path, dists: &[String], shot_name: &str) {
    let html = std::fs::read_to_string(page).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
        "the page loads nothing from elsewhere"
    );
    let shots = fixtures_dir().parent().unwrap().join("analyze-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(shot_name);
    let _ = std::fs::remove_file(&shot);
    let Some(dom) = open_in_browser(page, &shot) else {
        return;
    };
    for d in dists {
        assert!(
            dom.contains(&format!("data-dist=\"{d}\"")),
            "a treemap box for {d} in the rendered page"
        );
    }
    let (w, h) = png_size(&shot);
    assert!(w >= 1000 && h >= 600, "screenshot {w}x{h}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "the screenshot shows something"
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn a_foreign_zip_is_measured_attributed_and_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("someone-elses-layer.zip");
    write_zip(&zip, &synthetic_files("1.0", true));
    let page = dir.path().join("page.html");
    let a = analyze_json(&[zip.as_os_str(), "--html".as_ref(), page.as_os_str()]);
    assert_eq!(names(&a), ["alpha", "beta", "beta", "orphan"], "{a:#}");
    let alpha = &a["distributions"][0];
    assert_eq!(alpha["attributed_by"], "RECORD");
    assert!(alpha["kinds"]["native"].as_u64().unwrap() >= 60_000);
    assert!(alpha["kinds"]["docs"].as_u64().unwrap() > 0);
    assert!(alpha["kinds"]["tests"].as_u64().unwrap() > 0);
    assert_eq!(a["compressed_estimated"], false);
    assert_eq!(a["duplicates"][0]["name"], "beta");
    assert_eq!(a["duplicates"][0]["copies"].as_array().unwrap().len(), 2);
    assert_eq!(a["unattributed"]["files"], 0);
    assert_eq!(a["outside_site_packages"]["files"], 2);
    // No spec: the roots are what nothing else requires.
    assert_eq!(
        a["requirements"]["roots"],
        serde_json::json!(["alpha", "orphan"])
    );
    // The rules still find docs and tests, grouped by level, and never a `.so`. A test
    // module is code: no `safe` rule removes it, the `check` rule for code in test folders does.
    let level = |name: &str| {
        let level = a["pruning"]["levels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["level"] == name)
            .unwrap_or_else(|| panic!("{name} rules apply"))
            .clone();
        let rules: Vec<String> = level["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].as_str().unwrap().to_owned())
            .collect();
        (level, rules)
    };
    let (safe, rules) = level("safe");
    assert!(rules.contains(&"documentation".to_owned()), "{rules:?}");
    assert!(safe["bytes"].as_u64().unwrap() >= 4000);
    let (check, rules) = level("check");
    assert!(
        rules.contains(&"code-in-docs-tests-examples".to_owned()),
        "{rules:?}"
    );
    assert!(check["bytes"].as_u64().unwrap() >= 1700);
    assert_eq!(a["largest"][0]["kind"], "native");

    // Text for people: no layer-size-analysis.txt beside a zip this tool did not build.
    let out = run_ok(xtask().arg("analyze").arg(&zip));
    let text = text(&out);
    for needle in [
        "by distribution",
        "by kind of file",
        "largest files",
        "level safe",
        "distributions present more than once",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    assert!(!dir.path().join("layer-size-analysis.txt").exists());

    check_page(
        &page,
        &["alpha".into(), "beta".into(), "orphan".into()],
        "synthetic.png",
    );
}

#[test]
fn a_folder_gives_the_same_distributions_with_estimated_compression_and_a_spec_finds_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("layer");
    write_tree(&tree, &synthetic_files("1.0", true));
    let spec_dir = dir.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let spec = seeds_spec_own_lock().replace(
        "packages = [\"litellm==1.78.7\"]",
        "packages = [\"alpha[x]==1.0\"]",
    ) + &prune_paths();
    let spec_path = spec_dir.join("layer.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let a = analyze_json(&[tree.as_os_str(), "--spec".as_ref(), spec_path.as_os_str()]);
    assert_eq!(names(&a), ["alpha", "beta", "beta", "orphan"]);
    assert_eq!(a["compressed_estimated"], true);
    let alpha = &a["distributions"][0];
    assert!(alpha["compressed_bytes"].as_u64().unwrap() < alpha["bytes"].as_u64().unwrap());
    assert_eq!(
        a["requirements"]["not_required"],
        serde_json::json!(["orphan"])
    );
}

#[test]
fn scan_source_finds_providers_and_imports() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("l.zip");
    write_zip(&zip, &synthetic_files("1.0", true));
    let src = dir.path().join("app");
    std::fs::create_dir_all(src.join("node_modules/x")).unwrap();
    std::fs::create_dir_all(src.join("src")).unwrap();
    std::fs::write(
        src.join("src/handler.ts"),
        "import { spawn } from 'child_process';\nconst py = require('python-shell');\nconst code = `\nimport alpha\nfrom litellm import completion\n`;\nrun(code, { model: 'anthropic/claude-3-5-sonnet-20241022' });\nrun(code, { model: \"bedrock/amazon.nova-pro-v1:0\" });\n",
    )
    .unwrap();
    std::fs::write(
        src.join("worker.py"),
        "import json\nimport helper\nx = completion(model='openai/gpt-4o')\n",
    )
    .unwrap();
    std::fs::write(src.join("helper.py"), "").unwrap();
    std::fs::write(
        src.join("node_modules/x/index.js"),
        "m = 'gemini/gemini-pro'; // vendored: not the user's code",
    )
    .unwrap();
    let a = analyze_json(&[zip.as_os_str(), "--scan-source".as_ref(), src.as_os_str()]);
    let scan = &a["scan"];
    let providers: Vec<&str> = scan["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["anthropic", "bedrock", "openai"], "{scan:#}");
    let modules: Vec<&str> = scan["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["module"].as_str().unwrap())
        .collect();
    assert_eq!(modules, ["alpha"]);
    assert_eq!(
        scan["modules_elsewhere"],
        serde_json::json!(["json", "litellm"]),
        "own modules (helper) are not listed"
    );
    let not_needed: Vec<&str> = scan["distributions_not_needed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[0].as_str().unwrap())
        .collect();
    assert_eq!(not_needed, ["orphan"]);
}

#[test]
fn diff_lists_what_changed_largest_change_first() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.zip"), dir.path().join("new.zip"));
    write_zip(&old, &synthetic_files("1.0", true));
    write_zip(&new, &synthetic_files("1.1", false));
    let out = run_ok(xtask().args(["analyze", "--diff"]).arg(&old).arg(&new));
    let md = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(md.starts_with("### Layer size:"), "{md}");
    assert!(md.contains("| distribution | change |"), "{md}");
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
    let pos = |name: &str| {
        rows.iter()
            .position(|r| r.starts_with(&format!("| {name} |")))
    };
    assert!(
        pos("newcomer").unwrap() < pos("orphan").unwrap(),
        "sorted by change:\n{md}"
    );
    assert!(md.contains("| newcomer | added | – | 5.0 | +120"), "{md}");
    assert!(md.contains("| orphan | removed | 0.1 | – |"), "{md}");
    assert!(md.contains("| alpha | upgraded | 1.0 | 1.1 |"), "{md}");
    let out = run_ok(
        xtask()
            .args(["analyze", "--json", "--diff"])
            .arg(&new)
            .arg(&old),
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alpha = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "alpha")
        .unwrap();
    assert_eq!(alpha["change"], "downgraded");
}

/// A one-wheel wheel: `tinydist` with docs and tests, RECORD hashed as installers check.
fn tiny_wheel(dir: &Path) -> (PathBuf, String) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("tinydist/__init__.py", b"VALUE = 42\n".to_vec()),
        ("tinydist/docs/usage.md", b"# Usage\n".repeat(300)),
        (
            "tinydist/tests/test_tiny.py",
            b"def test(): pass\n".repeat(50),
        ),
        (
            "tinydist-1.0.dist-info/METADATA",
            b"Metadata-Version: 2.1\nName: tinydist\nVersion: 1.0\n".to_vec(),
        ),
        (
            "tinydist-1.0.dist-info/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (name, bytes) in &files {
        use sha2::Digest;
        let hash =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(bytes));
        record.push_str(&format!("{name},sha256={hash},{}\n", bytes.len()));
    }
    record.push_str("tinydist-1.0.dist-info/RECORD,,\n");
    let path = dir.join("tinydist-1.0-py3-none-any.whl");
    let mut all: Vec<(String, Vec<u8>)> =
        files.into_iter().map(|(n, b)| (n.to_owned(), b)).collect();
    all.push(("tinydist-1.0.dist-info/RECORD".into(), record.into_bytes()));
    write_zip(&path, &all);
    let sha = sha256_file(&path);
    (path, sha)
}

#[test]
fn a_layer_built_from_another_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec_dir = dir.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let (wheel, wheel_sha) = tiny_wheel(dir.path());
    let spec = seeds_spec_own_lock()
        .replace("name = \"python-litellm\"", "name = \"tiny\"")
        .replace(
            "packages = [\"litellm==1.78.7\"]",
            "packages = [\"tinydist==1.0\"]",
        )
        + &prune_paths();
    let spec_path = spec_dir.join("layer.toml");
    std::fs::write(&spec_path, spec).unwrap();
    std::fs::write(
        spec_dir.join("pylock.toml"),
        format!(
            "lock-version = \"1.0\"\ncreated-by = \"test\"\n\n[[packages]]\nname = \"tinydist\"\nversion = \"1.0\"\nwheels = [{{ name = \"tinydist-1.0-py3-none-any.whl\", url = \"file://{}\", hashes = {{ sha256 = \"{wheel_sha}\" }} }}]\n",
            wheel.display()
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    run_ok(&mut layer_cmd(&spec_path, "standard", &out_dir));
    let zip = out_dir.join("tiny-x86_64.zip");
    let page = out_dir.join("tiny.html");
    let a = analyze_json(&[
        zip.as_os_str(),
        "--spec".as_ref(),
        spec_path.as_os_str(),
        "--html".as_ref(),
        page.as_os_str(),
    ]);
    assert!(
        names(&a).contains(&"tinydist".to_owned()),
        "{:?}",
        names(&a)
    );
    assert_eq!(
        a["requirements"]["roots"],
        serde_json::json!(["tinydist==1.0"])
    );
    // The standard profile keeps everything: the safe rules would still remove the docs and
    // tests, and the runtime's headers.
    let levels = a["pruning"]["levels"].as_array().unwrap();
    assert!(levels
        .iter()
        .any(|l| l["level"] == "safe" && l["bytes"].as_u64().unwrap() > 0));
    assert!(
        out_dir.join("layer-size-analysis.txt").exists(),
        "written beside a zip this tool built"
    );
    let dists = names(&a);
    check_page(&page, &dists, "other-spec.png");
}

#[test]
fn the_default_layer() {
    let layer = common::built_layer("x86_64", None);
    let report_path = layer.out.join("report.json");
    let report = layer.report;
    let zip = layer.zip;
    let page = report_path.parent().unwrap().join("analysis.html");
    let a = analyze_json(&[zip.as_os_str(), "--html".as_ref(), page.as_os_str()]);
    let found = names(&a);
    // Distributions a rule removed whole are still listed in report.json, with no bytes.
    for p in report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["bytes"].as_u64() > Some(0))
    {
        let name = p["name"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .replace(['_', '.'], "-");
        assert!(found.contains(&name), "{name} attributed; found {found:?}");
    }
    assert_eq!(
        a["unattributed"]["files"], 0,
        "every site-packages file has an owner"
    );
    assert!(
        a["requirements"]["roots_from"]
            .as_str()
            .unwrap()
            .starts_with("spec"),
        "this tool's layer is read with its spec"
    );
    assert!(report_path
        .with_file_name("layer-size-analysis.txt")
        .exists());
    check_page(&page, &found, "default-layer.png");
}
