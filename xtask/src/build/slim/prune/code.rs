//! "Rules never delete code": which files of site-packages the import system can load, and the
//! pass that gives back to the layer every module a kept module imports.
//!
//! A folder's name is no evidence of what it holds: `botocore/docs/` is a package that
//! `botocore/client.py` imports at module level, `click/testing.py` is a module. So a `safe`
//! rule may match a folder by name, but the code inside it (`.py`, `.pyc`, extension `.so`)
//! is refused per file (`Protections::refuses`), and after planning, a static scan of the kept
//! sources refuses any `safe` or `check` deletion of a module they import.

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};

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
    let mut by_module: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    let mut modules: BTreeMap<&Utf8Path, Module> = BTreeMap::new();
    for e in entries {
        if let Some(m) = module_of(&e.path, site_packages) {
            by_module.entry(m.name.clone()).or_default().push(e);
            modules.insert(&e.path, m);
        }
    }
    let mut queue: Vec<Utf8PathBuf> = modules
        .keys()
        .filter(|p| p.extension() == Some("py") && !plan.delete.contains_key(**p))
        .map(|p| p.to_path_buf())
        .collect();
    let mut scanned: BTreeSet<Utf8PathBuf> = BTreeSet::new();
    // The modules kept from the start are all scanned, whatever they import: read here, scanned
    // on two threads. Given-back modules (a few) are read and scanned when they come up.
    let mut first: BTreeMap<Utf8PathBuf, Vec<Import>> = scan_all(
        queue
            .iter()
            .filter_map(|p| Some((p.clone(), read(p)?)))
            .collect(),
    );
    while let Some(importer) = queue.pop() {
        if !scanned.insert(importer.clone()) {
            continue;
        }
        let Some(module) = modules.get(importer.as_path()) else {
            continue;
        };
        let Some(imports) = first
            .remove(&importer)
            .or_else(|| read(&importer).map(|source| scan(&source)))
        else {
            continue;
        };
        for import in imports {
            let Some(names) = targets(&module.name, module.is_package, &import) else {
                continue;
            };
            for file in names.iter().flat_map(|n| by_module.get(n)).flatten() {
                let Some(&i) = plan.delete.get(&file.path) else {
                    continue;
                };
                let rule = &rules[i];
                if rule.level == Level::Risky || (rule.claims_whole(file) && !import.top_level) {
                    continue;
                }
                plan.delete.remove(&file.path);
                plan.totals[i].1 -= 1;
                plan.totals[i].2 -= file.bytes;
                plan.refused.push(Refusal {
                    rule: rule.name.clone(),
                    path: file.path.clone(),
                    why: format!("code a kept module imports ({importer})"),
                });
                if file.path.extension() == Some("py") {
                    queue.push(file.path.clone());
                }
            }
        }
    }
}

/// The imports of each source, scanned on two threads (the scan is most of pruning's time).
fn scan_all(sources: Vec<(Utf8PathBuf, String)>) -> BTreeMap<Utf8PathBuf, Vec<Import>> {
    let (a, b) = sources.split_at(sources.len() / 2);
    let scan_part = |part: &[(Utf8PathBuf, String)]| -> Vec<(Utf8PathBuf, Vec<Import>)> {
        part.iter().map(|(p, s)| (p.clone(), scan(s))).collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| scan_part(b));
        let a = scan_part(a);
        // A panic there is a bug in the scanner: it goes on here as one.
        (
            a,
            other
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    a.into_iter().chain(b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Layout;
    use crate::spec::rules::RulesFile;

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
