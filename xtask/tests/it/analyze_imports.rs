//! `cargo xtask analyze --imports`: the import profile of the seeds' default layer (built once
//! by the other tests too) and of a plain `pip install --target` folder run with a given
//! interpreter, both in verify's sandbox; the page's icicle graph opened in headless Chromium.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

fn profile_json(args: &[&std::ffi::OsStr]) -> Value {
    let out = run_ok(xtask().args(["analyze", "--imports", "--json"]).args(args));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(&out)))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// The names of `nodes`' children in the median tree, for following a chain.
fn child<'a>(nodes: &'a [Value], name: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["name"] == name)
}

/// Every heavy module's chain is a path of the tree from a top-level import to the module.
fn chains_follow_the_tree(p: &Value, roots: &[&str]) {
    let tree = p["tree"].as_array().unwrap();
    let lists = [&p["heaviest"], &p["heaviest_self"]];
    for h in lists.iter().flat_map(|l| l.as_array().unwrap()) {
        let chain: Vec<&str> = h["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(chain.last(), h["module"].as_str().as_ref(), "{h}");
        assert!(
            roots.contains(&chain[0]),
            "{chain:?} starts at a preload module"
        );
        let mut level: &[Value] = tree;
        for (i, name) in chain.iter().enumerate() {
            let node = child(level, name)
                .unwrap_or_else(|| panic!("{name} (step {i} of {chain:?}) is in the tree"));
            level = node["children"].as_array().map_or(&[], |v| v.as_slice());
        }
    }
}

/// Debian's chromium, or `None` (the browser check is then skipped, saying so).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The DOM after the page's scripts ran, and a screenshot, from headless Chromium.
fn open_in_browser(page: &Path, screenshot: &Path) -> Option<String> {
    let Some(chromium) = chromium() else {
        eprintln!(
            "skipped the browser check: chromium is not installed (apt-get install chromium)"
        );
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        let mut cmd = Command::new(&chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1400,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        run_ok(&mut cmd)
    };
    run(&[format!("--screenshot={}", screenshot.display())]);
    let out = run(&["--dump-dom".to_owned()]);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_seeds_layer_import_profile() {
    let layer = built_layer("x86_64", None);
    let spec = Which::Seeds.spec();
    let page = layer.out.join("imports.html");
    let p = profile_json(&[
        layer.zip.as_os_str(),
        "--spec".as_ref(),
        spec.as_os_str(),
        // One run: its own times add up to its total exactly. (Medians of several runs do not:
        // on a loaded machine the median of each of 1,900 parts filters out spikes that the
        // median of the totals keeps; 17 % apart in one CI run. The table below takes three.)
        "--runs".as_ref(),
        "1".as_ref(),
        "--html".as_ref(),
        page.as_os_str(),
    ]);
    assert_eq!(p["code"], "import litellm", "the spec's preload");
    assert_eq!(p["own_python"], true);
    assert_eq!(p["bytecode"], "the layer's own");
    assert!(p["modules"].as_u64().unwrap() > 500, "{}", p["modules"]);
    // The totals agree: the tree's top level, every module's own time, and the wall clock.
    let total = f(&p["imports_ms"]);
    let top_level: f64 = p["tree"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| f(&n["cumulative_ms"]))
        .sum();
    let selfs: f64 = p["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| f(&d["self_ms"]))
        .sum();
    assert!(
        (top_level - total).abs() < total * 0.05,
        "{top_level} vs {total}"
    );
    // Within one run the own times add up to the total (each rounded to microseconds).
    assert!((selfs - total).abs() < total * 0.01, "{selfs} vs {total}");
    assert!(
        f(&p["wall_ms"]) >= total * 0.95,
        "{} vs {total}",
        p["wall_ms"]
    );
    let dists: Vec<&str> = p["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for d in ["litellm", "openai"] {
        assert!(dists[..5].contains(&d), "{d} among the top five: {dists:?}");
    }
    let openai = &p["distributions"][dists.iter().position(|d| *d == "openai").unwrap()];
    assert_eq!(
        openai["first_chain"][0], "litellm",
        "litellm pulls openai in: {openai}"
    );
    assert!(openai["version"].is_string());
    chains_follow_the_tree(&p, &["litellm"]);

    // The text table, from medians of three more runs.
    let out = run_ok(
        xtask()
            .args([
                "analyze",
                "--imports",
                "--runs",
                "3",
                "--top",
                "5",
                "--spec",
            ])
            .arg(&spec)
            .arg(&layer.zip),
    );
    let table = text(&out);
    let dist_rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("distributions by"))
        .skip(2)
        .take(5)
        .collect();
    for d in ["litellm ", "openai "] {
        assert!(
            dist_rows.iter().any(|r| r.trim_start().starts_with(d)),
            "{d}in {dist_rows:#?}"
        );
    }
    assert!(table.contains("litellm → "), "chains shown:\n{table}");

    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    let shots = fixtures_dir().parent().unwrap().join("analyze-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("imports.png");
    let _ = std::fs::remove_file(&shot);
    let Some(dom) = open_in_browser(&page, &shot) else {
        return;
    };
    let drawn: usize = dom
        .split("data-drawn=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the icicle graph says how many bars it drew"));
    assert!(drawn > 100, "{drawn} bars drawn");
    assert!(
        dom.contains(&format!(
            "Import time: {drawn} modules drawn of {} imported",
            p["modules"]
        )),
        "the title counts the bars"
    );
    assert!(dom.contains("data-dist=\"openai\"") && dom.contains("data-module=\"litellm\""));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "the screenshot shows something"
    );
    eprintln!("screenshot: {}", shot.display());
}

/// `pip install --target` of two small wheels from PyPI, with uv when it is there.
fn pip_target(dir: &Path) {
    let mut cmd = match which("uv") {
        Some(uv) => {
            let mut c = Command::new(uv);
            c.args(["pip", "install", "--target"]);
            c
        }
        None => {
            let mut c = Command::new("python3");
            c.args(["-m", "pip", "install", "--no-compile", "--target"]);
            c
        }
    };
    run_ok(cmd.arg(dir).args(["six==1.17.0", "idna==3.10"]));
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn a_pip_target_folder_with_a_given_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    pip_target(&site);
    let (archive, _) = fixture_archive("x86_64");
    run_ok(
        Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path()),
    );
    let python = dir.path().join("python/bin/python3.11");

    let out = xtask()
        .args(["analyze", "--imports", "--preload", "six"])
        .arg(&site)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("--python"), "says what is missing: {err}");

    let p = profile_json(&[
        site.as_os_str(),
        "--python".as_ref(),
        python.as_os_str(),
        "--preload".as_ref(),
        "six".as_ref(),
        "--preload".as_ref(),
        "idna".as_ref(),
        "--runs".as_ref(),
        "3".as_ref(),
    ]);
    assert_eq!(p["code"], "import six; import idna");
    assert_eq!(p["own_python"], false);
    assert!(
        p["bytecode"].as_str().unwrap().contains("warm-up run"),
        "uv and --no-compile leave no bytecode: {}",
        p["bytecode"]
    );
    let versions: Vec<(String, String)> = p["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["version"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    for (name, version) in [("six", "1.17.0"), ("idna", "3.10")] {
        assert!(
            versions.contains(&(name.to_owned(), version.to_owned())),
            "{versions:?}"
        );
    }
    assert!(
        versions.iter().any(|(n, _)| n == "(standard library)"),
        "{versions:?}"
    );
    chains_follow_the_tree(&p, &["six", "idna"]);
    let idna_core = p["heaviest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["module"] == "idna.core")
        .unwrap_or_else(|| panic!("idna.core among the heaviest: {}", p["heaviest"]));
    assert_eq!(idna_core["chain"], serde_json::json!(["idna", "idna.core"]));
}

#[test]
fn diff_puts_import_time_beside_bytes() {
    let layer = built_layer("x86_64", None);
    // The zip and the folder it was made from: the same distributions, both importable.
    let out = run_ok(
        xtask()
            .args(["analyze", "--json", "--imports", "--runs", "1", "--diff"])
            .arg(&layer.zip)
            .arg(&layer.tree),
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let i = &d["imports"];
    assert_eq!(i["code"], "import litellm");
    assert!(f(&i["old_ms"]) > 100.0 && f(&i["new_ms"]) > 100.0, "{i}");
    let litellm = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "litellm")
        .unwrap();
    assert!(
        f(&litellm["old_import_ms"]) > 10.0 && f(&litellm["new_import_ms"]) > 10.0,
        "{litellm}"
    );
    let md = run_ok(
        xtask()
            .args(["analyze", "--imports", "--runs", "1", "--diff"])
            .arg(&layer.zip)
            .arg(&layer.tree),
    );
    let md = text(&md);
    assert!(md.contains("### Import time (`import litellm`"), "{md}");
    assert!(md.contains("| litellm |"), "{md}");
}
