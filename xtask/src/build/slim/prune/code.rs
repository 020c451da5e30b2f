//! "Rules never delete code": which files of site-packages the import system can load, and the
//! pass that gives back to the layer every module a kept module imports.
//!
//! A folder's name is no evidence of what it holds: `botocore/docs/` is a package that
//! `botocore/client.py` imports at module level, `click/testing.py` is a module. So a `safe`
//! rule may match a folder by name, but the code inside it (`.py`, `.pyc`, extension `.so`)
//! is refused per file (`Protections::refuses`), and after planning, a static scan of the kept
//! sources refuses any `safe` or `check` deletion of a module they import.

use std::collections::BTreeMap;

use camino::Utf8Path;

use super::imports::{is_identifier, scan, targets, Import};
use super::{classify, Entry, FileKind, Plan, Refusal, Rule};
use crate::spec::rules::Level;

/// A module file: its dotted name, and whether it is a package's `__init__`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub is_package: bool,
}

/// The module `path` is, when the import system can load it from `site_packages`: a `.py`,
/// `.pyc` (beside its source or in `__pycache__`) or extension module whose folders, from
/// site-packages down, are all valid Python names. A folder without `__init__` is still a
/// (namespace) package by PEP 420, so the folder chain is the whole test.
pub fn module_of(path: &Utf8Path, site_packages: &Utf8Path) -> Option<Module> {
    let rel = path.strip_prefix(site_packages).ok()?;
    let file = rel.file_name()?;
    let pyc = file.ends_with(".pyc");
    if !(file.ends_with(".py") || pyc || classify(path) == FileKind::ExtensionModule) {
        return None;
    }
    let mut dirs: Vec<&str> = rel.parent().map(|p| p.iter().collect()).unwrap_or_default();
    if pyc && dirs.last() == Some(&"__pycache__") {
        dirs.pop();
    }
    let stem = file.split('.').next()?;
    if !dirs.iter().all(|d| is_identifier(d)) || !is_identifier(stem) {
        return None;
    }
    if stem == "__init__" {
        return (!dirs.is_empty()).then(|| Module {
            name: dirs.join("."),
            is_package: true,
        });
    }
    dirs.push(stem);
    Some(Module {
        name: dirs.join("."),
        is_package: false,
    })
}

/// Gives back to the layer every file the plan deletes by a `safe` or `check` rule that a kept
/// module imports (directly or through other given-back modules), each as a refusal naming
/// the importer. `read` returns a source's text (None when unreadable: nothing is learnt).
///
/// For a whole distribution a rule removes on purpose (an optional dependency such as hf-xet),
/// only imports that run whenever the importer is imported (at column 0) count: imports inside
/// functions or `try:` are how optional dependencies are used, and a `check` rule's workload
/// proves them. For everything matched by path, any import statement counts.
pub fn protect_imports(
    plan: &mut Plan,
    entries: &[Entry],
    rules: &[Rule],
    site_packages: &Utf8Path,
    read: &dyn Fn(&Utf8Path) -> Option<String>,
) {
    protect_imports_cached(plan, entries, rules, site_packages, read, None);
}

/// `protect_imports`, with the scans of unchanged distributions read from the stage cache
/// (`scancache`) instead of scanned again.
pub fn protect_imports_cached(
    plan: &mut Plan,
    entries: &[Entry],
    rules: &[Rule],
    site_packages: &Utf8Path,
    read: &dyn Fn(&Utf8Path) -> Option<String>,
    cache: Option<&crate::build::cache::StageCache>,
) {
    // Entries by index, not by path: a path comparison walks components, and this loop makes
    // hundreds of thousands of lookups (seconds in a debug build).
    let mut by_module: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut modules: Vec<Option<Module>> = vec![None; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        if let Some(m) = module_of(&e.path, site_packages) {
            by_module.entry(m.name.clone()).or_default().push(i);
            modules[i] = Some(m);
        }
    }
    let mut deleted: Vec<Option<usize>> = entries
        .iter()
        .map(|e| plan.delete.get(&e.path).copied())
        .collect();
    // In path order (entries come in `util::walk`'s order), popped from the end.
    let mut queue: Vec<usize> = (0..entries.len())
        .filter(|&i| {
            modules[i].is_some()
                && entries[i].path.extension() == Some("py")
                && deleted[i].is_none()
        })
        .collect();
    let mut scanned = vec![false; entries.len()];
    // The modules kept from the start are all scanned, whatever they import: read here, scanned
    // on two threads or read from the cache. Given-back modules (a few) are read and scanned
    // when they come up.
    let mut first: Vec<Option<Vec<Import>>> = vec![None; entries.len()];
    let sources: Vec<(usize, String)> = queue
        .iter()
        .filter_map(|&i| Some((i, read(&entries[i].path)?)))
        .collect();
    for (i, imports) in super::scancache::scan_all(sources, entries, cache) {
        first[i] = Some(imports);
    }
    while let Some(importer) = queue.pop() {
        if std::mem::replace(&mut scanned[importer], true) {
            continue;
        }
        let Some(module) = &modules[importer] else {
            continue;
        };
        let importer_path = &entries[importer].path;
        let Some(imports) = first[importer]
            .take()
            .or_else(|| read(importer_path).map(|source| scan(&source)))
        else {
            continue;
        };
        for import in imports {
            let Some(names) = targets(&module.name, module.is_package, &import) else {
                continue;
            };
            for &f in names.iter().flat_map(|n| by_module.get(n)).flatten() {
                let Some(i) = deleted[f] else {
                    continue;
                };
                let file = &entries[f];
                let rule = &rules[i];
                if rule.level == Level::Risky || (rule.claims_whole(file) && !import.top_level) {
                    continue;
                }
                deleted[f] = None;
                plan.delete.remove(&file.path);
                plan.totals[i].1 -= 1;
                plan.totals[i].2 -= file.bytes;
                plan.refused.push(Refusal {
                    rule: rule.name.clone(),
                    path: file.path.clone(),
                    why: format!("code a kept module imports ({importer_path})"),
                });
                if file.path.extension() == Some("py") {
                    queue.push(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Layout;
    use crate::spec::rules::RulesFile;
    use std::collections::BTreeSet;

    const SP: &str = "python/lib/python3.11/site-packages";

    #[test]
    fn module_names_follow_the_folder_chain() {
        let sp = Utf8Path::new(SP);
        let m = |p: &str| module_of(&sp.join(p), sp).map(|m| (m.name, m.is_package));
        assert_eq!(m("pkg/docs/__init__.py"), Some(("pkg.docs".into(), true)));
        assert_eq!(m("pkg/docs/a.py"), Some(("pkg.docs.a".into(), false)));
        assert_eq!(
            m("pkg/tests/__pycache__/t.cpython-311.pyc"),
            Some(("pkg.tests.t".into(), false))
        );
        assert_eq!(
            m("pkg/_x.cpython-311-x86_64-linux-gnu.so"),
            Some(("pkg._x".into(), false))
        );
        assert_eq!(m("six.py"), Some(("six".into(), false)));
        assert_eq!(m("pkg/docs/index.rst"), None);
        assert_eq!(m("pkg-1.0.dist-info/x.py"), None);
        assert_eq!(m("pkg/my-docs/conf.py"), None);
        assert_eq!(module_of(Utf8Path::new("python/bin/x.py"), sp), None);
    }

    /// The case: `pkg/docs/` is a package `pkg/__init__.py` imports; `pkg/doc/` is
    /// text and one stray `conf.py` no one imports. With the repository's own rules the first
    /// is kept whole, the text goes, and the stray module stays at `safe` (it is code).
    #[test]
    fn an_imported_docs_package_is_kept_and_a_text_docs_folder_is_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = stage.join(SP);
        let files = [
            ("pkg/__init__.py", "from pkg.docs.docstring import Doc\n"),
            ("pkg/docs/__init__.py", "from .helpers import h\n"),
            ("pkg/docs/docstring.py", "class Doc: pass\n"),
            ("pkg/docs/helpers.py", "def h(): pass\n"),
            ("pkg/docs/README.md", "# notes"),
            ("docs/index.md", "# Pkg"),
            ("docs/api.rst", "API\n==="),
            ("docs/notes.txt", "text"),
            ("docs/conf.py", "project = 'pkg'\n"),
            ("pkg/tests/__init__.py", ""),
            ("pkg/tests/test_pkg.py", "import pkg\n"),
        ];
        for (path, text) in files {
            let p = sp.join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
        }
        let layout = Layout { xy: "3.11".into() };
        let rules_file =
            RulesFile::load(&crate::core::project_root().join("layer/rules.toml")).unwrap();
        for levels in [&[Level::Safe][..], &[Level::Safe, Level::Check]] {
            let rules: Vec<Rule> = rules_file
                .rules
                .iter()
                .filter(|d| levels.contains(&d.level))
                .map(|d| Rule::compile(d, &layout).unwrap())
                .collect();
            let protections = super::super::Protections::new(&layout, &[], &[], &[], &[]).unwrap();
            let entries =
                super::super::entries(stage, &crate::core::Owners::new(SP.into())).unwrap();
            let mut plan = super::super::plan(&entries, &rules, &protections);
            protect_imports(&mut plan, &entries, &rules, Utf8Path::new(SP), &|p| {
                fs_err::read_to_string(stage.join(p)).ok()
            });
            let deleted: BTreeSet<String> = plan
                .delete
                .keys()
                .map(|p| p.strip_prefix(SP).unwrap().to_string())
                .collect();
            for kept in [
                "pkg/__init__.py",
                "pkg/docs/__init__.py",
                "pkg/docs/docstring.py",
                "pkg/docs/helpers.py",
            ] {
                assert!(!deleted.contains(kept), "{levels:?}: {kept} deleted");
            }
            for pruned in [
                "docs/index.md",
                "docs/api.rst",
                "docs/notes.txt",
                "pkg/docs/README.md",
            ] {
                assert!(deleted.contains(pruned), "{levels:?}: {pruned} kept");
            }
            let refused: BTreeSet<String> = plan
                .refused
                .iter()
                .map(|r| r.path.strip_prefix(SP).unwrap().to_string())
                .collect();
            if levels.len() == 1 {
                // Safe alone: code in folders named like docs or tests is refused by name.
                assert!(refused.contains("docs/conf.py"), "{refused:?}");
                assert!(refused.contains("pkg/tests/test_pkg.py"), "{refused:?}");
                assert!(refused.contains("pkg/docs/docstring.py"));
                assert!(plan.refused.iter().all(|r| r.why.contains("code")));
            } else {
                // The check rule for such code removes what nothing imports; the import scan
                // gives back what pkg/__init__.py imports, naming it.
                assert!(
                    deleted.contains("docs/conf.py") && deleted.contains("pkg/tests/test_pkg.py")
                );
                let why = &plan
                    .refused
                    .iter()
                    .find(|r| r.path.as_str().ends_with("pkg/docs/helpers.py"))
                    .unwrap()
                    .why;
                assert!(why.contains("pkg/docs/__init__.py"), "{why}");
            }
        }
    }

    #[test]
    fn optional_dependencies_removed_whole_stay_removed_unless_imported_at_top_level() {
        let rule = |text: &str| {
            let def: crate::spec::rules::RuleDef = toml::from_str(text).unwrap();
            Rule::compile(&def, &Layout { xy: "3.11".into() }).unwrap()
        };
        let rules = [rule(
            "name='opt'\nlevel='check'\nreason='r'\ndistributions=['opt']\nallow-native=true",
        )];
        let e = |p: &str, d: Option<&str>| Entry {
            path: Utf8Path::new(SP).join(p),
            bytes: 1,
            dist: d.map(str::to_owned),
        };
        let entries = [
            e("opt/__init__.py", Some("opt")),
            e("user.py", None),
            e("other.py", None),
        ];
        let protections =
            super::super::Protections::new(&Layout { xy: "3.11".into() }, &[], &[], &[], &[])
                .unwrap();
        let run = |user: &'static str| {
            let mut plan = super::super::plan(&entries, &rules, &protections);
            protect_imports(&mut plan, &entries, &rules, Utf8Path::new(SP), &|p| {
                Some(
                    if p.as_str().ends_with("user.py") {
                        user
                    } else {
                        ""
                    }
                    .to_owned(),
                )
            });
            plan.delete.len()
        };
        assert_eq!(
            run("def f():\n    import opt\ntry:\n    import opt\nexcept ImportError:\n    pass\n"),
            1
        );
        assert_eq!(run("import opt\n"), 0);
    }
}
