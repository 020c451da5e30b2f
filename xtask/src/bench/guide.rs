//! The original optimization guide's deletion rules, replayed on a copy of the plain tree.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::reset_dir;
use crate::util::run;
use xshell::cmd;

/// The original optimization guide's twelve deletion categories (seed `000`, "Lambda Layer Size
/// Optimization Guide", sections 1 to 12), as its `find ... -delete` lines applied them: by
/// file or folder *name*, anywhere under site-packages. Kept verbatim, including the ones this
/// tool knows to be harmful (5: bytecode, 6: `dist-info`), because showing what they do is the
/// point of the comparison.
pub const GUIDE_RULES: &[GuideRule] = &[
    GuideRule {
        category: 1,
        name: "documentation files",
        applies_to: AppliesTo::Files,
        names: &[
            "*.md",
            "*.txt",
            "*.rst",
            "LICENSE*",
            "COPYING*",
            "AUTHORS*",
            "CHANGELOG*",
            "HISTORY*",
        ],
        top_level_only: false,
    },
    GuideRule {
        category: 2,
        name: "doc folders",
        applies_to: AppliesTo::Dirs,
        names: &["doc", "docs"],
        top_level_only: false,
    },
    GuideRule {
        category: 3,
        name: "test folders",
        applies_to: AppliesTo::Dirs,
        names: &["tests", "test", "testing"],
        top_level_only: false,
    },
    GuideRule {
        category: 4,
        name: "example folders",
        applies_to: AppliesTo::Dirs,
        names: &["examples", "example"],
        top_level_only: false,
    },
    GuideRule {
        category: 5,
        name: "compiled python caches",
        applies_to: AppliesTo::Both,
        names: &["__pycache__", "*.pyc", "*.pyo", "*.pyd"],
        top_level_only: false,
    },
    GuideRule {
        category: 6,
        name: "package metadata",
        applies_to: AppliesTo::Both,
        names: &["*.dist-info", "*.egg-info"],
        top_level_only: false,
    },
    GuideRule {
        category: 7,
        name: "type stubs",
        applies_to: AppliesTo::Files,
        names: &["*.pyi"],
        top_level_only: false,
    },
    GuideRule {
        category: 8,
        name: "build tools",
        applies_to: AppliesTo::Dirs,
        names: &["pip", "setuptools", "wheel", "_distutils_hack"],
        // The guide removed these packages, not every folder that happens to share the name.
        top_level_only: true,
    },
    GuideRule {
        category: 9,
        name: "c/c++ sources",
        applies_to: AppliesTo::Files,
        names: &["*.c", "*.h", "*.cpp", "*.cc"],
        top_level_only: false,
    },
    GuideRule {
        category: 10,
        name: "version control and config files",
        applies_to: AppliesTo::Files,
        names: &[
            ".git*",
            ".coveragerc",
            ".pylintrc",
            "*.cfg",
            "*.ini",
            "*.toml",
            "*.yaml",
            "*.yml",
        ],
        top_level_only: false,
    },
    GuideRule {
        category: 11,
        name: "benchmark code",
        applies_to: AppliesTo::Dirs,
        names: &["benchmark*"],
        top_level_only: false,
    },
    // Category 12 deletes nothing: `strip --strip-debug` on every `.so` (see `strip_guide`).
];

/// Which entries a guide rule deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    Files,
    Dirs,
    Both,
}

/// One deletion category of the guide.
#[derive(Debug)]
pub struct GuideRule {
    pub category: u8,
    pub name: &'static str,
    pub applies_to: AppliesTo,
    /// `find -name` patterns (only `*` as a wildcard).
    pub names: &'static [&'static str],
    /// Only entries directly in site-packages.
    pub top_level_only: bool,
}

/// `find -name`'s glob, restricted to the `*` the guide uses.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    // Both checks before slicing: they make the cuts character boundaries.
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The guide category that deletes an entry of site-packages (`rel` relative to it), if any.
/// Pure: the executor decides nothing else.
pub fn guide_category(rel: &Utf8Path, is_dir: bool) -> Option<u8> {
    let name = rel.file_name()?;
    let top_level = rel.components().count() == 1;
    GUIDE_RULES
        .iter()
        .find(|r| {
            let kind_ok = match r.applies_to {
                AppliesTo::Files => !is_dir,
                AppliesTo::Dirs => is_dir,
                AppliesTo::Both => true,
            };
            kind_ok
                && (top_level || !r.top_level_only)
                && r.names.iter().any(|p| name_matches(p, name))
        })
        .map(|r| r.category)
}

/// What one guide category removed (or, for 12, saved by stripping).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuideOutcome {
    pub category: u8,
    pub name: String,
    pub entries: u64,
    pub bytes: u64,
}

/// Copies the plain tree to `dir/tree` and applies the guide's twelve categories to its
/// site-packages.
pub(super) fn apply_guide(plain_tree: &Utf8Path, dir: &Utf8Path) -> Result<Vec<GuideOutcome>> {
    let tree = dir.join("tree");
    reset_dir(dir)?;
    // `cp -a` keeps links and modes, as the guide's shell script worked on the same folder.
    let sh = crate::util::shell()?;
    run(cmd!(sh, "cp -a {plain_tree} {tree}"))
        .with_context(|| format!("copying {plain_tree} to {tree}"))?;
    let site = find_site_packages(&tree)?;
    let mut outcomes: Vec<GuideOutcome> = GUIDE_RULES
        .iter()
        .map(|r| GuideOutcome {
            category: r.category,
            name: r.name.to_owned(),
            ..GuideOutcome::default()
        })
        .collect();
    let entries = crate::util::walk(&site)?;
    // Sorted by path: a folder comes before what it holds, so once it is gone its contents
    // are skipped (and counted with it).
    let mut removed: Vec<Utf8PathBuf> = Vec::new();
    for e in &entries {
        if removed.iter().any(|r| e.rel.starts_with(r)) {
            continue;
        }
        let is_dir = e.file_type.is_dir();
        let Some(category) = guide_category(&e.rel, is_dir) else {
            continue;
        };
        let path = site.join(&e.rel);
        let (count, bytes) = if is_dir {
            let inner = crate::util::walk(&path)?;
            let bytes = inner
                .iter()
                .filter(|i| i.file_type.is_file())
                .map(|i| i.len)
                .sum();
            fs_err::remove_dir_all(&path)?;
            removed.push(e.rel.clone());
            (inner.len() as u64 + 1, bytes)
        } else {
            fs_err::remove_file(&path)?;
            (1, e.len)
        };
        if let Some(o) = outcomes.iter_mut().find(|o| o.category == category) {
            o.entries += count;
            o.bytes += bytes;
        }
    }
    outcomes.push(strip_guide(&site)?);
    Ok(outcomes)
}

/// Category 12: `strip --strip-debug` on every `.so`, as the guide's script ran it, unchecked.
fn strip_guide(site: &Utf8Path) -> Result<GuideOutcome> {
    let mut outcome = GuideOutcome {
        category: 12,
        name: "strip --strip-debug on .so".to_owned(),
        ..GuideOutcome::default()
    };
    let sh = crate::util::shell()?;
    for e in crate::util::walk(site)? {
        let name = e.rel.file_name().unwrap_or("");
        if !e.file_type.is_file() || !(name.ends_with(".so") || name.contains(".so.")) {
            continue;
        }
        let path = site.join(&e.rel);
        let output = cmd!(sh, "strip --strip-debug {path}")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .output()
            .context("could not start `strip` (binutils)")?;
        // The guide ignored failures (`|| true`); so does its replay.
        if output.status.success() {
            let after = fs_err::metadata(&path)?.len();
            outcome.entries += 1;
            outcome.bytes += e.len.saturating_sub(after);
        }
    }
    Ok(outcome)
}

fn find_site_packages(tree: &Utf8Path) -> Result<Utf8PathBuf> {
    let lib = tree.join("python/lib");
    for entry in fs_err::read_dir(&lib)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let site = lib.join(&name).join("site-packages");
        if name.starts_with("python3") && site.is_dir() {
            return Ok(site);
        }
    }
    bail!("{lib} has no python3.X/site-packages")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_rules_match_what_the_guide_deleted() {
        let cases: &[(&str, bool, Option<u8>)] = &[
            ("litellm/README.md", false, Some(1)),
            ("certifi-2024.dist-info/LICENSE", false, Some(1)),
            ("yarl/LICENSE.txt", false, Some(1)),
            ("regex/CHANGELOG", false, Some(1)),
            ("numpy/doc", true, Some(2)),
            ("numpy/doc", false, None),
            ("aiohttp/tests", true, Some(3)),
            ("pydantic/testing", true, Some(3)),
            ("litellm/tests.py", false, None),
            ("pkg/examples", true, Some(4)),
            ("litellm/__pycache__", true, Some(5)),
            ("six.pyc", false, Some(5)),
            ("litellm-1.78.7.dist-info", true, Some(6)),
            ("foo.egg-info", false, Some(6)),
            ("yarl/__init__.pyi", false, Some(7)),
            ("pip", true, Some(8)),
            ("setuptools", true, Some(8)),
            ("litellm/wheel", true, None),
            ("multidict/_multidict.c", false, Some(9)),
            ("tokenizers/x.h", false, Some(9)),
            ("pkg/.gitignore", false, Some(10)),
            ("pkg/setup.cfg", false, Some(10)),
            ("litellm/proxy/config.yaml", false, Some(10)),
            ("pkg/benchmarks", true, Some(11)),
            ("pkg/benchmark_utils.py", false, None),
            ("litellm/main.py", false, None),
            ("tokenizers/tokenizers.abi3.so", false, None),
            ("litellm/model_prices.json", false, None),
        ];
        for &(path, is_dir, want) in cases {
            assert_eq!(
                guide_category(Utf8Path::new(path), is_dir),
                want,
                "{path} (dir: {is_dir})"
            );
        }
    }

    #[test]
    fn find_name_globs() {
        assert!(name_matches("*.md", "a.md"));
        assert!(!name_matches("*.md", "a.mdx"));
        assert!(name_matches("LICENSE*", "LICENSE"));
        assert!(name_matches("LICENSE*", "LICENSE.APACHE"));
        assert!(!name_matches("LICENSE*", "XLICENSE"));
        assert!(name_matches("*.dist-info", "a-1.0.dist-info"));
        assert!(name_matches("a*b*c", "aXbYc"));
        assert!(!name_matches("a*b*c", "aXc"));
        assert!(!name_matches("ab*ba", "aba"));
        assert!(name_matches("pip", "pip"));
        assert!(!name_matches("pip", "pipx"));
        assert!(!name_matches("*.md", "é"), "no panic on a multi-byte name");
        assert!(name_matches("*.txt", "naïve.txt"));
    }

    /// The replay on a tiny tree: `cp -a` copies it, the categories delete by name, and a
    /// `.so` strip cannot read is left alone (the guide ignored strip's failures).
    #[test]
    fn guide_replay_on_a_tiny_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        let site = root.join("plain/tree/python/lib/python3.11/site-packages");
        fs_err::create_dir_all(site.join("pkg/tests")).expect("mkdir");
        fs_err::write(site.join("pkg/__init__.py"), "x = 1\n").expect("write");
        fs_err::write(site.join("pkg/README.md"), "readme\n").expect("write");
        fs_err::write(site.join("pkg/tests/test_x.py"), "pass\n").expect("write");
        fs_err::write(site.join("pkg/fake.so"), "not an ELF file").expect("write");
        let outcomes = apply_guide(&root.join("plain/tree"), &root.join("guide")).expect("guide");
        let copy = root.join("guide/tree/python/lib/python3.11/site-packages");
        assert!(copy.join("pkg/__init__.py").is_file());
        assert!(!copy.join("pkg/README.md").exists());
        assert!(!copy.join("pkg/tests").exists());
        assert!(copy.join("pkg/fake.so").is_file());
        assert!(
            site.join("pkg/README.md").is_file(),
            "the plain tree is untouched"
        );
        let by_category = |c: u8| outcomes.iter().find(|o| o.category == c).expect("category");
        assert_eq!(by_category(1).entries, 1);
        assert_eq!(by_category(3).entries, 2);
        assert_eq!(by_category(12).entries, 0);
    }
}
