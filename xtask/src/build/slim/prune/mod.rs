//! Pruning: rules read from `layer/rules.toml` (and the spec's `[prune]`) decide which files of a
//! staged layer to delete. `classify` and `plan` are pure; `execute` applies a plan to disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::core::Layout;
use crate::spec::rules::{Level, RuleDef};
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

mod classify;
mod code;
mod imports;
pub mod plancache;
mod scancache;

pub use classify::{classify, FileKind};
pub use code::{protect_imports, protect_imports_cached};

/// One file (or link) of the staged layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the layer root: `python/lib/python3.11/site-packages/...`.
    pub path: Utf8PathBuf,
    pub bytes: u64,
    /// The normalized name of the distribution that installed it.
    pub dist: Option<String>,
}

/// A rule ready to match.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub level: Level,
    pub allow_native: bool,
    /// Relative to the layer root.
    pub gather: Option<Utf8PathBuf>,
    globs: GlobSet,
    except: GlobSet,
    distributions: BTreeSet<String>,
}

fn glob(pattern: &str) -> Result<globset::Glob> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(true)
        .build()
        .with_context(|| format!("bad glob `{pattern}`"))
}

pub(crate) fn glob_set(patterns: impl IntoIterator<Item = String>) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(glob(&p)?);
    }
    Ok(b.build()?)
}

/// Globs (relative to the layer root) for a standard-library module or package name;
/// `name.*` (or `whole`) covers the package folder.
fn stdlib_globs(layout: &Layout, name: &str, whole: bool) -> Vec<String> {
    let stdlib = layout.stdlib();
    let (name, star) = match name.strip_suffix(".*") {
        Some(n) => (n, true),
        None => (name, whole),
    };
    let rel = name.replace('.', "/");
    let mut out = vec![
        format!("{stdlib}/{rel}.py"),
        format!("{stdlib}/{rel}/__init__.py"),
    ];
    if star {
        out.push(format!("{stdlib}/{rel}/**"));
    }
    if !name.contains('.') {
        out.push(format!("{stdlib}/lib-dynload/{name}.*"));
    }
    out
}

impl Rule {
    pub fn compile(def: &RuleDef, layout: &Layout) -> Result<Rule> {
        let root = crate::spec::rules::root_dir(layout, def.root);
        let mut patterns: Vec<String> = def.paths.iter().map(|p| format!("{root}/{p}")).collect();
        for m in &def.stdlib {
            patterns.extend(stdlib_globs(layout, m, true));
        }
        Ok(Rule {
            name: def.name.clone(),
            level: def.level,
            allow_native: def.allow_native,
            gather: def.gather.as_ref().map(|g| layout.python().join(g)),
            globs: glob_set(patterns).with_context(|| format!("rule `{}`", def.name))?,
            except: glob_set(def.except.iter().map(|p| format!("{root}/{p}")))
                .with_context(|| format!("rule `{}`", def.name))?,
            distributions: def
                .distributions
                .iter()
                .map(|d| crate::python::wheel::normalize(d))
                .collect(),
        })
    }

    fn matches(&self, e: &Entry) -> bool {
        let hit = self.globs.is_match(e.path.as_std_path())
            || e.dist
                .as_ref()
                .is_some_and(|d| self.distributions.contains(d));
        hit && !self.except.is_match(e.path.as_std_path())
    }

    /// The rule removes `e`'s whole distribution (not a file it picked by path).
    fn claims_whole(&self, e: &Entry) -> bool {
        e.dist
            .as_ref()
            .is_some_and(|d| self.distributions.contains(d))
    }
}

/// What no rule may delete.
#[derive(Debug)]
pub struct Protections {
    /// Each set with the words the report uses for it.
    sets: Vec<(String, GlobSet)>,
    /// The user's exceptions (`[prune] keep`): kept silently, not refused.
    keep: GlobSet,
    /// Relative to the layer root: where importable code lives.
    site_packages: Utf8PathBuf,
}

impl Protections {
    /// `paths` are relative to `python/`; `startup` are module names; `needed` are layer paths
    /// the interpreter loads (itself and its DT_NEEDED libraries); `keep` relative to `python/`.
    pub fn new(
        layout: &Layout,
        paths: &[String],
        startup: &[String],
        needed: &[Utf8PathBuf],
        keep: &[String],
    ) -> Result<Protections> {
        let py = layout.python();
        let paths_set = glob_set(paths.iter().map(|p| format!("{py}/{p}")))
            .context("rules.toml [protect] paths")?;
        let startup_set = glob_set(startup.iter().flat_map(|m| stdlib_globs(layout, m, false)))
            .context("start-up modules")?;
        let needed_set = glob_set(needed.iter().map(|p| globset::escape(p.as_str())))?;
        Ok(Protections {
            sets: vec![
                ("the interpreter or a library it needs".into(), needed_set),
                (
                    "a standard-library module loaded at start-up".into(),
                    startup_set,
                ),
                ("protected by rules.toml [protect]".into(), paths_set),
            ],
            keep: glob_set(keep.iter().map(|p| format!("{py}/{p}")))
                .context("layer.toml [prune] keep")?,
            site_packages: layout.site_packages(),
        })
    }

    /// Why `e` may not be deleted by `rule`, if it may not.
    fn refuses(
        &self,
        e: &Entry,
        rule: &Rule,
        native_dirs: &BTreeSet<Utf8PathBuf>,
    ) -> Option<String> {
        // A rule that removes a whole distribution removes its metadata too: METADATA left
        // behind would tell importlib.metadata the distribution is still installed.
        let whole_dist = rule.claims_whole(e);
        if whole_dist && classify(&e.path) == FileKind::DistMetadata {
            return None;
        }
        for (why, set) in &self.sets {
            if set.is_match(e.path.as_std_path()) {
                return Some(why.clone());
            }
        }
        let kind = classify(&e.path);
        if kind == FileKind::DistMetadata {
            return Some("distribution metadata (importlib.metadata reads it)".into());
        }
        // A folder's name (docs, tests, examples) says nothing about whether code imports
        // what is inside: a `safe` rule never removes a module the import system can load.
        // Removing a whole distribution is a decision about that distribution, not a guess.
        if rule.level == Level::Safe
            && !whole_dist
            && code::module_of(&e.path, &self.site_packages).is_some()
        {
            return Some(
                "code the import system can load (a `safe` rule removes no module, whatever its folder is called)".into(),
            );
        }
        if !rule.allow_native {
            if matches!(kind, FileKind::ExtensionModule | FileKind::SharedLibrary) {
                return Some("native code (.so); the rule has no allow-native".into());
            }
            let dir = e.path.parent().unwrap_or(Utf8Path::new(""));
            if matches!(kind, FileKind::ModuleSource | FileKind::Bytecode)
                && native_dirs.contains(dir)
            {
                return Some("a module of a package that loads native code".into());
            }
        }
        None
    }
}

/// A file a rule would have deleted but may not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub rule: String,
    pub path: Utf8PathBuf,
    pub why: String,
}

/// What pruning will do; computed without touching the disk.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Path -> index of the rule that claimed it.
    pub delete: BTreeMap<Utf8PathBuf, usize>,
    pub refused: Vec<Refusal>,
    /// Files the user's `keep` saved from a rule: (rule, path).
    pub kept: Vec<(String, Utf8PathBuf)>,
    /// Names of rules that matched no file.
    pub unmatched: Vec<String>,
    /// Per rule (same order as the rules): files and bytes deleted.
    pub totals: Vec<(String, u64, u64)>,
}

/// Decides what to delete: the first rule matching a file claims it; protected files are
/// refused; pure.
pub fn plan(entries: &[Entry], rules: &[Rule], protections: &Protections) -> Plan {
    // "The packages that load them": the modules in the same folder as a `.so`.
    let native_dirs: BTreeSet<Utf8PathBuf> = entries
        .iter()
        .filter(|e| {
            matches!(
                classify(&e.path),
                FileKind::ExtensionModule | FileKind::SharedLibrary
            )
        })
        .filter_map(|e| e.path.parent().map(Utf8Path::to_owned))
        .collect();
    let mut out = Plan {
        totals: rules.iter().map(|r| (r.name.clone(), 0, 0)).collect(),
        ..Plan::default()
    };
    let mut matched = vec![false; rules.len()];
    for e in entries {
        let Some(i) = rules.iter().position(|r| r.matches(e)) else {
            continue;
        };
        matched[i] = true;
        let rule = &rules[i];
        if protections.keep.is_match(e.path.as_std_path()) {
            out.kept.push((rule.name.clone(), e.path.clone()));
        } else if let Some(why) = protections.refuses(e, rule, &native_dirs) {
            out.refused.push(Refusal {
                rule: rule.name.clone(),
                path: e.path.clone(),
                why,
            });
        } else {
            out.delete.insert(e.path.clone(), i);
            out.totals[i].1 += 1;
            out.totals[i].2 += e.bytes;
        }
    }
    out.unmatched = rules
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(r, _)| r.name.clone())
        .collect();
    out
}

/// Applies a plan under `stage`: gathers what `gather` rules ask for, deletes the files, then
/// removes folders the deletions emptied.
pub fn execute(stage: &Utf8Path, plan: &Plan, rules: &[Rule]) -> Result<()> {
    let mut gathers: BTreeMap<&Utf8Path, Vec<&Utf8Path>> = BTreeMap::new();
    for (path, &i) in &plan.delete {
        if let Some(target) = &rules[i].gather {
            gathers.entry(target).or_default().push(path);
        }
    }
    for (target, files) in gathers {
        let mut text = String::from(
            "Licenses of the software in this layer, gathered from each distribution's files.\n",
        );
        for f in files {
            let bytes = fs_err::read(stage.join(f))?;
            let _ = write!(
                text,
                "\n==== {f} ====\n\n{}\n",
                String::from_utf8_lossy(&bytes).trim_end()
            );
        }
        let dest = stage.join(target);
        if dest.exists() {
            bail!("{target} already exists in the layer: a gather rule would overwrite it");
        }
        fs_err::write(&dest, text).with_context(|| format!("gathering licenses into {target}"))?;
    }
    crate::util::remove_files_and_empty_dirs(stage, plan.delete.keys(), |path| {
        format!("deleting {path} (rule `{}`)", rules[plan.delete[path]].name)
    })?;
    Ok(())
}

/// Every file and link of the staged layer, with its owning distribution.
pub fn entries(stage: &Utf8Path, owners: &crate::core::Owners) -> Result<Vec<Entry>> {
    let names: Vec<String> = owners
        .dists
        .iter()
        .map(|(n, _, _)| crate::python::wheel::normalize(n))
        .collect();
    Ok(crate::util::walk(stage)?
        .into_iter()
        .filter(|w| !w.file_type.is_dir())
        .map(|w| {
            let dist = w
                .rel
                .strip_prefix(&owners.site_packages)
                .ok()
                .and_then(|rel| owners.files.get(rel))
                .map(|&i| names[i].clone());
            Entry {
                bytes: w.len,
                path: w.rel,
                dist,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::rules::{check_names, RulesFile};

    fn layout() -> Layout {
        Layout { xy: "3.11".into() }
    }

    const SP: &str = "python/lib/python3.11/site-packages";

    fn e(path: &str, dist: Option<&str>) -> Entry {
        Entry {
            path: path.into(),
            bytes: 10,
            dist: dist.map(str::to_owned),
        }
    }

    fn rule(toml_text: &str) -> Rule {
        let def: RuleDef = toml::from_str(toml_text).unwrap();
        Rule::compile(&def, &layout()).unwrap()
    }

    fn protections() -> Protections {
        Protections::new(
            &layout(),
            &["bin/python3.[0-9]*".into()],
            &["encodings.*".into(), "os".into()],
            &["python/lib/libpython3.11.so.1.0".into()],
            &["lib/python3.11/site-packages/keepme/**".into()],
        )
        .unwrap()
    }

    #[test]
    fn classify_table() {
        use FileKind::*;
        let table = [
            ("a/b.py", ModuleSource),
            ("a/__pycache__/b.cpython-311.pyc", Bytecode),
            ("a/_x.cpython-311-x86_64-linux-gnu.so", ExtensionModule),
            ("tokenizers/tokenizers.abi3.so", ExtensionModule),
            ("numpy.libs/libgfortran-1a2b.so.5.0.0", SharedLibrary),
            ("python/lib/libpython3.11.so.1.0", SharedLibrary),
            ("x-1.0.dist-info/METADATA", DistMetadata),
            ("x-1.0.dist-info/RECORD", DistRecord),
            ("x-1.0.dist-info/entry_points.txt", DistOther),
            ("x-1.0.dist-info/licenses/LICENSE", License),
            ("x-1.0.dist-info/LICENSE.txt", License),
            ("pkg/LICENSE", License),
            ("pkg/__init__.pyi", TypeStub),
            ("pkg/py.typed", TypeStub),
            ("pkg/_speedups.c", CSource),
            ("pkg/tests/test_a.py", Test),
            ("pkg/README.md", Doc),
            ("pkg/data/cacert.pem", PackageData),
        ];
        for (path, kind) in table {
            assert_eq!(classify(Utf8Path::new(path)), kind, "{path}");
        }
    }

    #[test]
    fn first_matching_rule_claims_and_unmatched_is_reported() {
        let rules = [
            rule("name='tests'\nlevel='check'\nreason='r'\npaths=['**/tests/**']"),
            rule("name='py'\nlevel='check'\nreason='r'\npaths=['**/*.py']"),
            rule("name='nothing'\nlevel='safe'\nreason='r'\npaths=['nope/**']"),
        ];
        let entries = [
            e(&format!("{SP}/pkg/tests/test_a.py"), None),
            e(&format!("{SP}/pkg/a.py"), None),
        ];
        let p = plan(&entries, &rules, &protections());
        assert_eq!(
            p.delete[Utf8Path::new(&format!("{SP}/pkg/tests/test_a.py"))],
            0
        );
        assert_eq!(p.delete[Utf8Path::new(&format!("{SP}/pkg/a.py"))], 1);
        assert_eq!(p.unmatched, vec!["nothing".to_owned()]);
        assert_eq!(p.totals[0], ("tests".into(), 1, 10));
    }

    #[test]
    fn protected_files_are_never_removed() {
        let everything = rule(
            "name='everything'\nlevel='risky'\nreason='r'\nroot='python'\npaths=['**']\nallow-native=true",
        );
        let no_native = rule("name='all-sp'\nlevel='risky'\nreason='r'\npaths=['**']");
        let entries = [
            e("python/bin/python3.11", None),
            e("python/lib/libpython3.11.so.1.0", None),
            e("python/lib/python3.11/encodings/utf_8.py", None),
            e("python/lib/python3.11/os.py", None),
            e(&format!("{SP}/x-1.0.dist-info/METADATA"), Some("x")),
            e(&format!("{SP}/x-1.0.dist-info/RECORD"), Some("x")),
            e(&format!("{SP}/keepme/a.py"), None),
            e("python/lib/python3.11/json/__init__.py", None),
        ];
        let p = plan(&entries, &[everything], &protections());
        let deleted: Vec<&str> = p.delete.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            deleted,
            [
                "python/lib/python3.11/json/__init__.py",
                &format!("{SP}/x-1.0.dist-info/RECORD")
            ]
        );
        assert_eq!(p.refused.len(), 5, "{:?}", p.refused);
        assert!(p.refused.iter().all(|r| r.rule == "everything"));
        assert_eq!(p.kept.len(), 1);

        // Without allow-native, `.so` files and the modules beside them are refused.
        let entries = [
            e(&format!("{SP}/tok/tok.abi3.so"), Some("tok")),
            e(&format!("{SP}/tok/__init__.py"), Some("tok")),
            e(&format!("{SP}/tok/data/vocab.json"), Some("tok")),
        ];
        let p = plan(&entries, &[no_native], &protections());
        assert_eq!(p.refused.len(), 2);
        assert_eq!(p.delete.len(), 1);
    }

    #[test]
    fn distributions_and_stdlib_names_match() {
        let r = rule(
            "name='d'\nlevel='check'\nreason='r'\ndistributions=['HF_Xet']\nallow-native=true",
        );
        let s = rule(
            "name='s'\nlevel='safe'\nreason='r'\nstdlib=['tkinter','_tkinter']\nallow-native=true",
        );
        let entries = [
            e(&format!("{SP}/hf_xet/hf_xet.abi3.so"), Some("hf-xet")),
            e(&format!("{SP}/hf_xet-1.0.dist-info/RECORD"), Some("hf-xet")),
            e(
                &format!("{SP}/hf_xet-1.0.dist-info/METADATA"),
                Some("hf-xet"),
            ),
            e("python/lib/python3.11/tkinter/__init__.py", None),
            e(
                "python/lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so",
                None,
            ),
            e("python/lib/python3.11/tkinterx.py", None),
        ];
        let p = plan(&entries, &[r, s], &protections());
        assert_eq!(p.delete.len(), 5, "{:?}", p.delete);
        assert!(
            p.refused.is_empty(),
            "a removed distribution takes its METADATA along"
        );
        assert!(!p
            .delete
            .contains_key(Utf8Path::new("python/lib/python3.11/tkinterx.py")));
    }

    #[test]
    fn except_globs_and_bad_rules() {
        let r = rule(
            "name='md'\nlevel='check'\nreason='r'\npaths=['**/*.md']\nexcept=['hub/templates/**']",
        );
        let entries = [
            e(&format!("{SP}/hub/templates/card.md"), None),
            e(&format!("{SP}/hub/README.md"), None),
        ];
        let p = plan(&entries, &[r], &protections());
        assert_eq!(p.delete.len(), 1);
        let defs: Vec<RuleDef> = vec![
            toml::from_str("name='a'\nlevel='safe'\nreason='r'\npaths=['x']").unwrap(),
            toml::from_str("name='a'\nlevel='safe'\nreason='r'\npaths=['y']").unwrap(),
        ];
        assert!(check_names(&defs).unwrap_err().to_string().contains("`a`"));
        assert!(toml::from_str::<RuleDef>("name='a'\nlevel='sure'\nreason='r'").is_err());
    }

    #[test]
    fn the_repository_rules_parse_and_compile() {
        let path = crate::core::project_root().join("layer/rules.toml");
        let rules = RulesFile::load(&path).unwrap();
        for def in &rules.rules {
            Rule::compile(def, &layout()).unwrap();
        }
        Protections::new(
            &layout(),
            &rules.protect.paths,
            &rules.protect.startup_modules,
            &[],
            &[],
        )
        .unwrap();
        let names: BTreeSet<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
        for needed in [
            "licenses",
            "tests",
            "documentation",
            "type-stubs",
            "hf-xet",
            "litellm-proxy-ui",
        ] {
            assert!(names.contains(needed), "{needed}");
        }
    }

    #[test]
    fn execute_gathers_licenses_and_removes_empty_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let stage = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = stage.join(SP);
        fs_err::create_dir_all(sp.join("x-1.0.dist-info/licenses")).unwrap();
        fs_err::create_dir_all(sp.join("x/tests")).unwrap();
        fs_err::write(sp.join("x-1.0.dist-info/licenses/LICENSE"), "MIT terms").unwrap();
        fs_err::write(sp.join("x-1.0.dist-info/METADATA"), "Name: x").unwrap();
        fs_err::write(sp.join("x/tests/test_x.py"), "").unwrap();
        fs_err::write(sp.join("x/__init__.py"), "").unwrap();
        let rules = [
            rule("name='licenses'\nlevel='safe'\nreason='r'\ngather='LICENSES.txt'\npaths=['*.dist-info/licenses/**']"),
            rule("name='tests'\nlevel='check'\nreason='r'\npaths=['**/tests/**']"),
        ];
        let owners = crate::core::Owners::new(SP.into());
        let entries = entries(stage, &owners).unwrap();
        let p = plan(&entries, &rules, &protections());
        execute(stage, &p, &rules).unwrap();
        let gathered = fs_err::read_to_string(stage.join("python/LICENSES.txt")).unwrap();
        assert!(
            gathered.contains("MIT terms") && gathered.contains("x-1.0.dist-info/licenses/LICENSE")
        );
        assert!(!sp.join("x/tests").exists(), "emptied folder removed");
        assert!(!sp.join("x-1.0.dist-info/licenses").exists());
        assert!(sp.join("x-1.0.dist-info/METADATA").exists());
        assert!(sp.join("x/__init__.py").exists());
    }
}
