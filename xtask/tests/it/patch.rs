//! `[[patch]]` end to end: the seeds' spec with a tiny patch to `sniffio/_version.py` builds
//! (profile standard), the layer holds the patched text, RECORD names its new hash, report.json
//! and the layer's manifest name the patch, the sandboxed interpreter runs the patched code and
//! `verify` passes; a diff that does not apply fails the build, naming the file, with no zip.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use sha2::Digest as _;

use crate::common::*;

const SITE: &str = "python/lib/python3.11/site-packages";

const GOOD_DIFF: &str = "\
--- a/sniffio/_version.py
+++ b/sniffio/_version.py
@@ -1,3 +1,4 @@
 # This file is imported from __init__.py and exec'd from setup.py
 
 __version__ = \"1.3.1\"
+PATCHED_BY_LAYER = \"sniffio-test-patch\"
";

/// The seeds' spec in `dir` with one `[[patch]]` of sniffio whose diff is `diff`.
fn spec_with_patch(dir: &Path, diff: &str) -> std::path::PathBuf {
    let spec = seeds_spec_with_own_data(dir);
    std::fs::create_dir_all(dir.join("patches")).unwrap();
    std::fs::write(dir.join("patches/sniffio-version.diff"), diff).unwrap();
    let mut text = std::fs::read_to_string(&spec).unwrap();
    text.push_str(
        "\n[[patch]]\ndistribution = \"sniffio\"\nfile = \"sniffio/_version.py\"\n\
         diff = \"patches/sniffio-version.diff\"\nreason = \"a test of [[patch]]\"\n",
    );
    std::fs::write(&spec, text).unwrap();
    spec
}

fn build(spec: &Path, out: &Path) -> Output {
    layer_cmd(spec, "standard", out)
        .output()
        .expect("spawn xtask layer")
}

#[test]
fn a_listed_patch_is_applied_recorded_named_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with_patch(&tmp.path().join("spec"), GOOD_DIFF);

    let plan = run_ok(xtask().args(["layer", "--plan", "--spec"]).arg(&spec));
    let plan = text(&plan);
    assert!(
        plan.contains("sniffio 1.3.1 sniffio/_version.py: patches/sniffio-version.diff"),
        "{plan}"
    );

    let out = tmp.path().join("out");
    let result = build(&spec, &out);
    let report_path = out.join("report.json");
    assert!(
        result.status.success() || result.status.code() == Some(3) && report_path.exists(),
        "build failed: {}",
        text(&result)
    );
    let tree = out.join("tree");
    let patched = std::fs::read_to_string(tree.join(SITE).join("sniffio/_version.py")).unwrap();
    assert!(
        patched.ends_with("__version__ = \"1.3.1\"\nPATCHED_BY_LAYER = \"sniffio-test-patch\"\n"),
        "{patched}"
    );
    let record =
        std::fs::read_to_string(tree.join(SITE).join("sniffio-1.3.1.dist-info/RECORD")).unwrap();
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(patched.as_bytes()));
    let line = format!("sniffio/_version.py,sha256={hash},{}", patched.len());
    assert!(record.lines().any(|l| l == line), "{line} not in\n{record}");

    let diff_sha = format!("{:x}", sha2::Sha256::digest(GOOD_DIFF.as_bytes()));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("python/layer-manifest.json")).unwrap())
            .unwrap();
    for (what, doc) in [("report.json", &report), ("the manifest", &manifest)] {
        let p = &doc["patches"][0];
        assert_eq!(p["distribution"], "sniffio", "{what}: {doc}");
        assert_eq!(p["version"], "1.3.1", "{what}");
        assert_eq!(p["file"], "sniffio/_version.py", "{what}");
        assert_eq!(p["diff_sha256"], diff_sha.as_str(), "{what}");
        assert_eq!(p["reason"], "a test of [[patch]]", "{what}");
    }
    let text_report = std::fs::read_to_string(out.join("layer-size-report.txt")).unwrap();
    assert!(
        text_report.contains("patched sniffio 1.3.1 sniffio/_version.py"),
        "{text_report}"
    );

    // The layer's interpreter runs the patched code (its bytecode was compiled from it).
    let ran = run_in_sandbox(
        &tree,
        "import sniffio._version as v; print(v.PATCHED_BY_LAYER)",
    );
    assert!(text(&ran).contains("sniffio-test-patch"), "{}", text(&ran));

    let zip = report["zip_path"].as_str().unwrap();
    let (code, verified) = verify_json(&[
        "--layer".as_ref(),
        zip.as_ref(),
        "--spec".as_ref(),
        spec.as_os_str(),
    ]);
    // Standard is over the spec's 50 MB zip budget (as without the patch): every other check,
    // the imports, metadata and the workload among them, must pass.
    let failed: Vec<String> = checks_of(&verified)
        .into_iter()
        .filter(|(name, (ok, _))| !ok && name != "size: zip")
        .map(|(name, (_, detail))| format!("{name}: {detail}"))
        .collect();
    assert!(failed.is_empty(), "verify (exit {code}) failed: {failed:?}");
    assert!(checks_of(&verified).contains_key("workload: workloads/litellm_verify.py"));
}

#[test]
fn a_diff_that_does_not_apply_fails_the_build_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = GOOD_DIFF.replace("\"1.3.1\"", "\"1.3.0\"");
    let spec = spec_with_patch(&tmp.path().join("spec"), &stale);
    let out = tmp.path().join("out");
    let result = build(&spec, &out);
    assert!(!result.status.success());
    let said = text(&result);
    assert!(said.contains("sniffio 1.3.1 sniffio/_version.py"), "{said}");
    assert!(said.contains("hunk 1"), "{said}");
    assert!(!out.join("python-litellm-x86_64.zip").exists());
    assert!(!out.join("report.json").exists());
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".staging")),
        "nothing half-written: {left:?}"
    );
}
