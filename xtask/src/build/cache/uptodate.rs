//! "Up to date": a build whose plan and inputs are those of the last build in the same output
//! folder, and whose outputs are still the ones that build wrote, reuses them. The last
//! build leaves `.build-state.json` beside its outputs: the fingerprint of its inputs and the
//! sha256 of each output.
//!
//! The fingerprint covers the plan (runtime and wheels by sha256, profile, rules, minimization,
//! output paths), every file of the spec's folder (layer.toml, the lock, rules, profiles,
//! templates, workloads), a `--trace` file, and the xtask binary itself (path, size and
//! modification time: a rebuilt xtask may build differently).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::plan::BuildPlan;

pub const STATE_FILE: &str = ".build-state.json";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct State {
    format: u32,
    fingerprint: String,
    /// sha256 of each output file, by path.
    outputs: BTreeMap<Utf8PathBuf, String>,
    /// A hash of the kept tree's listing (paths, kinds, sizes): hashing every file would cost
    /// as much as the zip.
    tree: String,
}

/// The fingerprint of everything the build reads.
pub fn fingerprint(plan: &BuildPlan) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("build-state/{}\n", super::FORMAT));
    // `--offline` changes where bytes may come from, not which: a build with it and one
    // without are the same build.
    let mut plan_json = serde_json::to_value(plan)?;
    if let Some(map) = plan_json.as_object_mut() {
        map.remove("offline");
    }
    h.update(serde_json::to_vec(&plan_json)?);
    // The spec's folder and its data folder (`[layer] data`: rules, profiles, workloads, ...),
    // which for a spec in layer/specs/NAME/ is another folder.
    let mut dirs = vec![plan.spec.dir(), plan.spec.data_dir()];
    dirs.dedup();
    let mut files: Vec<Utf8PathBuf> = Vec::new();
    for dir in &dirs {
        files.extend(
            crate::util::walk(dir)?
                .into_iter()
                .filter(|w| w.file_type.is_file())
                .map(|w| dir.join(w.rel)),
        );
    }
    files.sort();
    files.dedup();
    files.push(plan.spec_path.clone());
    files.extend(plan.minimize.trace_given.iter().cloned());
    for f in &files {
        h.update(f.as_str());
        h.update(crate::util::sha256_file(f).with_context(|| format!("reading {f}"))?);
    }
    h.update(super::exe_identity()?);
    Ok(hex::encode(h.finalize()))
}

/// What the build leaves for the user: the zip, or with `--split` the stack file and the parts
/// it lists (the single zip is then not kept), and the reports.
fn outputs(plan: &BuildPlan) -> Result<Vec<Utf8PathBuf>> {
    let mut out = vec![
        plan.paths.out.join("report.json"),
        plan.paths.out.join("layer-size-report.txt"),
    ];
    match &plan.split {
        None => out.push(plan.paths.zip.clone()),
        Some(split) => {
            let bytes = fs_err::read(&split.stack_file)?;
            let stack: crate::core::stack::Stack = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", split.stack_file))?;
            let dir = split.stack_file.parent().unwrap_or(&plan.paths.out);
            out.extend(stack.parts.iter().map(|p| dir.join(&p.file)));
            out.push(split.stack_file.clone());
        }
    }
    Ok(out)
}

fn tree_listing(tree: &Utf8Path) -> Result<String> {
    let mut h = Sha256::new();
    for w in crate::util::walk(tree)? {
        let kind = if w.file_type.is_dir() {
            "d"
        } else if w.file_type.is_symlink() {
            "l"
        } else {
            "f"
        };
        h.update(format!("{kind} {} {} {:o}\n", w.rel, w.len, w.mode & 0o777));
    }
    Ok(hex::encode(h.finalize()))
}

fn current(plan: &BuildPlan, fingerprint: &str) -> Result<State> {
    let mut outputs_now = BTreeMap::new();
    for o in outputs(plan)? {
        outputs_now.insert(o.clone(), crate::util::sha256_file(&o)?);
    }
    Ok(State {
        format: super::FORMAT,
        fingerprint: fingerprint.to_owned(),
        outputs: outputs_now,
        tree: tree_listing(&plan.paths.tree)?,
    })
}

/// The report of the last build when nothing changed since (inputs, outputs, tree), else
/// `None`. Any doubt (no state, an output missing or changed) is a `None`.
pub fn check(plan: &BuildPlan, fingerprint: &str) -> Option<crate::build::report::Report> {
    let state_path = plan.paths.out.join(STATE_FILE);
    let recorded: State = serde_json::from_slice(&std::fs::read(&state_path).ok()?).ok()?;
    if recorded.fingerprint != fingerprint || !plan.paths.tree.is_dir() {
        return None;
    }
    if current(plan, fingerprint).ok()? != recorded {
        return None;
    }
    serde_json::from_slice(&std::fs::read(plan.paths.out.join("report.json")).ok()?).ok()
}

/// Forgets the last build's state: from now on its outputs are being replaced.
pub fn forget(plan: &BuildPlan) -> Result<()> {
    match fs_err::remove_file(plan.paths.out.join(STATE_FILE)) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
        _ => Ok(()),
    }
}

/// Records the state of a finished build.
pub fn record(plan: &BuildPlan, fingerprint: &str) -> Result<()> {
    let state = current(plan, fingerprint)?;
    crate::util::write_bytes_atomic(
        &plan.paths.out.join(STATE_FILE),
        &serde_json::to_vec_pretty(&state)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::LayerOptions;

    /// The repository's spec, copied into `dir` so that its files can be changed.
    fn spec_copy(dir: &Utf8Path) -> Utf8PathBuf {
        let from = crate::core::project_root().join("layer");
        for w in crate::util::walk(&from).unwrap() {
            let dest = dir.join(&w.rel);
            if w.file_type.is_dir() {
                fs_err::create_dir_all(&dest).unwrap();
            } else {
                fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
                fs_err::copy(from.join(&w.rel), &dest).unwrap();
            }
        }
        dir.join("layer.toml")
    }

    /// An x86_64 build into `dir/out` from an explicit (never read) archive.
    fn options(dir: &Utf8Path) -> LayerOptions {
        LayerOptions {
            arch: Some(crate::spec::Arch::X86_64),
            out: Some(dir.join("out")),
            python_archive: Some(dir.join("python.tar.gz").to_string()),
            python_sha256: Some("a".repeat(64).parse().unwrap()),
            ..LayerOptions::default()
        }
    }

    fn print(spec: &Utf8Path, options: &LayerOptions) -> String {
        let spec = crate::spec::Spec::load(spec).unwrap();
        fingerprint(&BuildPlan::resolve(spec, options).unwrap()).unwrap()
    }

    #[test]
    fn the_fingerprint_follows_the_plan_and_the_spec_files_but_not_offline() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let spec = spec_copy(&dir.join("layer"));
        let options = options(dir);
        let base = print(&spec, &options);
        assert_eq!(base, print(&spec, &options));
        let offline = LayerOptions {
            offline: true,
            ..options.clone()
        };
        assert_eq!(base, print(&spec, &offline), "--offline is the same build");
        let other_profile = LayerOptions {
            profile: Some("standard".into()),
            ..options.clone()
        };
        assert_ne!(base, print(&spec, &other_profile));
        let other_runtime = LayerOptions {
            python_sha256: Some("b".repeat(64).parse().unwrap()),
            ..options.clone()
        };
        assert_ne!(base, print(&spec, &other_runtime));
        let template = spec.parent().unwrap().join("sitecustomize.py");
        let text = fs_err::read_to_string(&template).unwrap();
        fs_err::write(&template, text + "\n# changed\n").unwrap();
        assert_ne!(
            base,
            print(&spec, &options),
            "a file of the spec's folder changed"
        );
        // A spec in specs/NAME/ reads its rules from the data folder two levels up.
        let seeds = dir.join("layer/specs/litellm-1.78.7/layer.toml");
        let before = print(&seeds, &options);
        let rules = dir.join("layer/rules.toml");
        let text = fs_err::read_to_string(&rules).unwrap();
        fs_err::write(&rules, text + "\n# changed\n").unwrap();
        assert_ne!(
            before,
            print(&seeds, &options),
            "a file of the spec's data folder changed"
        );
    }

    #[test]
    fn a_changed_patch_diff_changes_the_fingerprint_even_outside_the_spec_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let data = spec_copy(&dir.join("layer"));
        let text = fs_err::read_to_string(&data).unwrap();
        let text = text
            .replacen("[layer]\n", "[layer]\ndata = \"../layer\"\n", 1)
            .replacen("lock = \"pylock.toml\"", "lock = \"../layer/pylock.toml\"", 1)
            + "\n[[patch]]\ndistribution = \"litellm\"\nfile = \"litellm/main.py\"\ndiff = \"patches/x.diff\"\nreason = \"a test\"\n";
        fs_err::create_dir_all(dir.join("spec")).unwrap();
        let spec = dir.join("spec/layer.toml");
        fs_err::write(&spec, text).unwrap();
        let diff = dir.join("layer/patches/x.diff");
        fs_err::create_dir_all(diff.parent().unwrap()).unwrap();
        fs_err::write(&diff, "@@ -1 +1 @@\n-a\n+b\n").unwrap();
        let options = options(dir);
        let base = print(&spec, &options);
        fs_err::write(&diff, "@@ -1 +1 @@\n-a\n+c\n").unwrap();
        assert_ne!(base, print(&spec, &options), "the diff is part of the plan");
    }
}
