//! `cargo xtask layer --split` and `verify` of the stack, end to end: the slim layer (about
//! 41 MB zipped) built from a copy of the seeds' spec whose `[budget] zip-bytes` is 15 MB, so that it
//! must be split into three parts or more. Two builds in all: one kept as a fixture, one to
//! compare its bytes with.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::common;
use crate::common::{fixtures_dir, layer_cmd, lock, seeds_spec_text, text};

const BUDGET: u64 = 15_000_000;

/// The seeds' spec with a 15 MB zip budget, in its own folder (lock and data stay the
/// repository's). Tests run at once: a spec already right is left alone, and one that is not is
/// replaced whole (by a rename), so that a build reading it never sees it half-written.
fn tight_spec() -> PathBuf {
    let dir = fixtures_dir().join("spec-split");
    let _guard = lock("spec-split");
    std::fs::create_dir_all(&dir).expect("spec folder");
    let spec = seeds_spec_text();
    assert!(
        spec.contains("zip-bytes = 52428800"),
        "the budget line moved"
    );
    let spec = spec.replace("zip-bytes = 52428800", &format!("zip-bytes = {BUDGET}"));
    let path = dir.join("layer.toml");
    if std::fs::read(&path).ok().as_deref() != Some(spec.as_bytes()) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &spec).expect("write spec file");
        std::fs::rename(&tmp, &path).expect("rename spec file");
    }
    path
}

fn build_split(spec: &Path, out: &Path) -> Output {
    let mut cmd = layer_cmd(spec, "slim", out);
    cmd.arg("--split");
    let output = cmd.output().expect("spawn");
    assert!(output.status.success(), "{cmd:?}: {}", text(&output));
    output
}

/// The split slim layer, built once.
fn split_layer() -> PathBuf {
    let out = fixtures_dir().join("layer-x86_64-slim-split");
    let spec = tight_spec();
    let _guard = lock("layer-x86_64-slim-split");
    if !out.join("report.json").exists() {
        build_split(&spec, &out);
    }
    out
}

fn stack(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("layers.json")).expect("layers.json"))
        .expect("layers.json is JSON")
}

fn parts(out: &Path) -> Vec<PathBuf> {
    stack(out)["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| out.join(p["file"].as_str().expect("file")))
        .collect()
}

/// Files and links of a zip, with their CRC-32.
fn entries(zip: &Path) -> BTreeMap<String, u32> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(zip).expect("open zip")).expect("zip");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i).expect("entry");
        if !e.is_dir() {
            out.insert(e.name().expect("name").into_owned(), e.crc32());
        }
    }
    out
}

#[test]
fn a_split_layer_is_parts_within_the_budget_whose_union_is_the_layer() {
    let out = split_layer();
    let stack = stack(&out);
    let parts = parts(&out);
    assert!((3..=5).contains(&parts.len()), "{stack:#}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["split"], stack, "report.json carries the stack file");
    assert_eq!(report["over_budget"], serde_json::json!([]), "{report:#}");
    assert!(
        !out.join("python-litellm-x86_64.zip").exists(),
        "--split keeps only the parts"
    );

    let mut union: BTreeMap<String, u32> = BTreeMap::new();
    for (k, part) in parts.iter().enumerate() {
        let name = part.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            name,
            format!("python-litellm-x86_64-{}-of-{}.zip", k + 1, parts.len())
        );
        let size = std::fs::metadata(part).unwrap().len();
        assert!(size <= BUDGET, "{name} is {size} bytes");
        assert_eq!(stack["parts"][k]["zip_bytes"].as_u64(), Some(size));
        for (path, crc) in entries(part) {
            if let Some(_earlier) = union.insert(path.clone(), crc) {
                panic!("{path} is in two parts");
            }
        }
        if k == 0 {
            assert!(
                union.contains_key("python/bin/python3.11"),
                "the runtime is first"
            );
        }
    }
    // The parts hold exactly the tree (the layer unpacked, markers included), byte for byte.
    let tree_dir = out.join("tree");
    let tree: BTreeSet<String> = walk(&tree_dir);
    assert_eq!(union.keys().cloned().collect::<BTreeSet<_>>(), tree);
    for part in &parts {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(part).unwrap()).unwrap();
        for i in 0..zip.len() {
            let mut e = zip.by_index(i).unwrap();
            if e.is_dir() {
                continue;
            }
            let on_disk = tree_dir.join(e.name().unwrap().as_ref());
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            let want = if e.is_symlink() {
                std::fs::read_link(&on_disk)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                std::fs::read(&on_disk).unwrap()
            };
            assert!(bytes == want, "{} differs from the tree", on_disk.display());
        }
    }
}

/// Files and links under `dir`, relative.
fn walk(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                out.insert(rel);
            }
        }
    }
    out
}

#[test]
fn two_split_builds_write_the_same_bytes() {
    let first = split_layer();
    let again = tempfile::tempdir().unwrap();
    build_split(&tight_spec(), again.path());
    let (a, b) = (parts(&first), parts(again.path()));
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} differs between builds",
            a.display()
        );
    }
    assert_eq!(stack(&first), stack(again.path()));
}

fn verify(args: &[&std::ffi::OsStr]) -> (i32, BTreeMap<String, (bool, String)>) {
    let spec = tight_spec();
    let mut all: Vec<&std::ffi::OsStr> = vec!["--spec".as_ref(), spec.as_os_str()];
    all.extend_from_slice(args);
    let (code, report) = common::verify_json(&all);
    (code, common::checks_of(&report))
}

#[test]
fn verify_runs_the_stack_and_names_a_part_missing_or_out_of_order() {
    let out = split_layer();
    let (code, checks) = verify(&["--layer".as_ref(), out.as_os_str()]);
    let failed: Vec<_> = checks.iter().filter(|(_, (ok, _))| !ok).collect();
    assert!(code == 0 && failed.is_empty(), "{failed:#?}");
    assert!(
        checks["runtime: executed"].1.contains("bubblewrap"),
        "{checks:?}"
    );
    assert!(
        checks["litellm: completion"].0,
        "the workload ran: {checks:?}"
    );
    assert!(checks["stack: order"].1.contains("in order"), "{checks:?}");
    assert!(checks["size: zip"].1.contains("layers:"), "{checks:?}");

    let parts = parts(&out);
    let n = parts.len();
    let mut swapped: Vec<&std::ffi::OsStr> = vec!["--static-only".as_ref(), "--layer".as_ref()];
    swapped.extend([&parts[1], &parts[0]].map(|p| p.as_os_str()));
    swapped.extend(parts[2..].iter().map(|p| p.as_os_str()));
    let (code, checks) = verify(&swapped);
    assert_eq!(code, 1, "{checks:?}");
    let (ok, detail) = &checks["stack: order"];
    assert!(!ok && detail.contains("order 2, 1, 3"), "{detail}");

    let mut missing: Vec<&std::ffi::OsStr> = vec!["--static-only".as_ref(), "--layer".as_ref()];
    missing.extend(
        parts
            .iter()
            .filter(|p| *p != &parts[1])
            .map(|p| p.as_os_str()),
    );
    let (code, checks) = verify(&missing);
    assert_eq!(code, 1, "{checks:?}");
    let (ok, detail) = &checks["stack: order"];
    let want = format!("part 2 of {n} (python-litellm-x86_64-2-of-{n}.zip) missing");
    assert!(!ok && detail.contains(&want), "{detail}");
}
