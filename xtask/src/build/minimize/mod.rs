//! Trace-driven minimization (`cargo xtask layer --minimize`, profiles with `minimize = true`):
//! run the spec's workload in the verify sandbox under an audit hook (`verify/py/trace.py`),
//! keep the site-packages files it touched, every used distribution's metadata and licenses and
//! the user's `[minimize] keep`, remove the rest, then prove the result (verify + the workload
//! again). The standard library and the runtime's shared libraries are minimized the same way:
//! every workload starts the interpreter, so what start-up needs is in the trace; `verify`'s own
//! runtime checks run traced too, so that the result still passes them.
//!
//! Pure first: [`plan`] decides from a file list and a trace; [`execute`] deletes.

mod accelerators;
mod explain;
pub mod proof;
pub mod stage;
mod trace;

pub use accelerators::{accelerators, drop_accelerators, Accelerator};
pub use explain::explain;
pub use trace::{trace, workloads, Trace};

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::core::{Owners, RemovedDistribution, RemovedModule};

/// One distribution's share of the decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DistCount {
    pub name: String,
    pub kept_files: u64,
    pub kept_bytes: u64,
    pub removed_files: u64,
    pub removed_bytes: u64,
}

/// What to delete, and the account of it.
#[derive(Debug, Default)]
pub struct Plan {
    /// Layer paths to delete, sorted.
    pub delete: Vec<Utf8PathBuf>,
    pub per_dist: Vec<DistCount>,
    pub removed_modules: Vec<RemovedModule>,
    /// Distributions of which nothing is left (their metadata went too).
    pub removed_distributions: Vec<RemovedDistribution>,
}

/// For the report and the manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub trace: Utf8PathBuf,
    pub providers: Vec<String>,
    pub kept_files: u64,
    pub kept_bytes: u64,
    pub removed_files: u64,
    pub removed_bytes: u64,
    pub distributions: Vec<DistCount>,
    pub removed_modules: usize,
    /// Distributions whose native accelerators were left out (`[minimize] drop-accelerators`).
    #[serde(default)]
    pub dropped_accelerators: Vec<String>,
    /// How the minimized layer was proven: verify ran in this build, or the passing verify of
    /// the identical zip was reused (`proof`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<proof::Proof>,
}

/// The module a file under site-packages defines, if it is one (`a/b/__init__.pyc` -> `a.b`,
/// `a/_x.cpython-311-x86_64-linux-gnu.so` -> `a._x`).
pub fn module_of(rel: &Utf8Path) -> Option<String> {
    let file = rel.file_name()?;
    let stem = if let Some(s) = file
        .strip_suffix(".pyc")
        .or_else(|| file.strip_suffix(".py"))
    {
        s
    } else if file.ends_with(".so") {
        file.split('.').next()?
    } else {
        return None;
    };
    let mut parts: Vec<&str> = rel
        .parent()
        .map(|p| p.components().map(|c| c.as_str()).collect())
        .unwrap_or_default();
    if parts
        .iter()
        .any(|p| p.contains('.') || p.contains('-') || *p == "__pycache__")
    {
        return None;
    }
    if stem != "__init__" {
        parts.push(stem);
    }
    if parts.is_empty() || stem.contains('.') {
        return None;
    }
    Some(parts.join("."))
}

/// How to keep a removed module: the provider when it is LiteLLM provider code, else a keep rule.
fn hint(
    module: &str,
    rel: &Utf8Path,
    is_package: bool,
    base_rel_to_python: &Utf8Path,
    folders: &BTreeMap<String, Vec<String>>,
) -> String {
    let glob = if is_package {
        format!(
            "{}/**",
            base_rel_to_python.join(rel.parent().unwrap_or(Utf8Path::new("")))
        )
    } else {
        let stem = rel
            .file_name()
            .and_then(|f| f.split('.').next())
            .unwrap_or("");
        format!(
            "{}.*",
            base_rel_to_python
                .join(rel.parent().unwrap_or(Utf8Path::new("")))
                .join(stem)
        )
    };
    let parts: Vec<&str> = module.split('.').collect();
    match parts.as_slice() {
        ["litellm", "llms", folder, ..] => {
            let providers = folders
                .get(*folder)
                .cloned()
                .unwrap_or_else(|| vec![(*folder).to_owned()]);
            let named: Vec<String> = providers.iter().map(|p| format!("'{p}'")).collect();
            format!(
                "add provider {} to [minimize] providers in layer.toml, or a keep rule '{glob}' to [minimize] keep",
                named.join(" or ")
            )
        }
        _ => format!("add a keep rule '{glob}' to [minimize] keep in layer.toml"),
    }
}

/// Decides what goes. `files` are (layer path, bytes) of every candidate: everything under
/// `python/lib/` (standard library, its extension modules, the runtime's shared libraries,
/// site-packages). `keep` holds globs relative to the layer root; `also_keep` lists layer paths
/// the caller knows are needed (shared libraries a kept ELF file links against); `folders` maps
/// provider code folders to the providers they serve, for the hints.
///
/// Long on purpose: one pass over the candidates whose keep/remove decision, per-distribution
/// counts and removed-module hints share the same running state; split, each part would need
/// all of it passed back and forth.
pub fn plan(
    files: &[(Utf8PathBuf, u64)],
    owners: &Owners,
    trace: &Trace,
    keep: &globset::GlobSet,
    also_keep: &BTreeSet<Utf8PathBuf>,
    folders: &BTreeMap<String, Vec<String>>,
) -> Plan {
    let site = &owners.site_packages;
    // The standard library: site-packages' parent.
    let stdlib = site.parent().unwrap_or(site);
    let dist_info = |rel: &Utf8Path| {
        rel.components()
            .next()
            .is_some_and(|c| c.as_str().ends_with(".dist-info"))
    };
    // 1. Kept by the trace or a keep rule.
    let mut kept: BTreeSet<&Utf8PathBuf> = files
        .iter()
        .filter(|(p, _)| {
            trace.files.contains(p)
                // Frozen start-up modules (os, site, codecs...) report their source path as
                // __file__; in a sourceless layer the file beside it is the .pyc.
                || p.as_str()
                    .strip_suffix(".pyc")
                    .is_some_and(|s| trace.files.contains(Utf8Path::new(&format!("{s}.py"))))
                || keep.is_match(p.as_str())
                || also_keep.contains(p)
                || crate::python::distinfo::is_license(p)
                // .pth files are read by `site` at start-up, before any audit hook exists
                // (Debian's interpreter finds site-packages through one).
                || p.extension() == Some("pth")
                // sitecustomize carries the layer's environment defaults and this very
                // module's import hook: imported at start-up, but never the trace's to judge.
                || p.parent() == Some(stdlib)
                    && p.file_stem() == Some("sitecustomize")
        })
        .map(|(p, _)| p)
        .collect();
    // 2. A package whose code ran keeps its `__init__` (imports run it; listed for safety) and
    //    its distribution keeps all of its metadata and licenses.
    let mut used: BTreeSet<usize> = BTreeSet::new();
    for p in &kept {
        if let Some(i) = owners.owner(p) {
            used.insert(i);
        }
    }
    let mut extra = Vec::new();
    for (p, _) in files {
        let Ok(rel) = p.strip_prefix(site) else {
            continue;
        };
        let owner = owners.owner(p);
        let is_meta = dist_info(rel);
        if is_meta && owner.is_some_and(|i| used.contains(&i)) {
            extra.push(p);
        }
        // Files no wheel installed (a `.pth` the build wrote, say) are not the trace's to judge.
        if owner.is_none() && !is_meta {
            extra.push(p);
        }
        // Metadata of an unused distribution installed without RECORD entries still goes with
        // its distribution: the dist-info folder name decides.
        if is_meta && owner.is_none() {
            let folder = rel.components().next().map(|c| c.as_str()).unwrap_or("");
            let name = crate::python::wheel::normalize(folder.split('-').next().unwrap_or(""));
            if used
                .iter()
                .any(|&i| crate::python::wheel::normalize(&owners.dists[i].0) == name)
            {
                extra.push(p);
            }
        }
    }
    let with_inits: Vec<Utf8PathBuf> = kept
        .iter()
        .flat_map(|p| p.ancestors().skip(1).map(|a| a.to_owned()))
        .filter(|a| !a.as_str().is_empty())
        .flat_map(|a| [a.join("__init__.pyc"), a.join("__init__.py")])
        .collect();
    kept.extend(extra);
    let present: BTreeSet<&Utf8PathBuf> = files.iter().map(|(p, _)| p).collect();
    for init in &with_inits {
        if let Some(p) = present.get(init) {
            kept.insert(p);
        }
    }

    // 3. The account.
    let kept_dirs: BTreeSet<&Utf8Path> = kept.iter().flat_map(|p| p.ancestors().skip(1)).collect();
    let mut out = Plan::default();
    let mut counts: BTreeMap<String, DistCount> = BTreeMap::new();
    let mut removed_mods: BTreeMap<String, (Utf8PathBuf, bool, Utf8PathBuf)> = BTreeMap::new();
    for (p, bytes) in files {
        let name = match owners.owner(p) {
            Some(i) => owners.dists[i].0.clone(),
            None if p.starts_with(site) => "(no distribution)".to_owned(),
            None => "(runtime: CPython)".to_owned(),
        };
        let c = counts.entry(name.clone()).or_insert_with(|| DistCount {
            name,
            ..DistCount::default()
        });
        if kept.contains(p) {
            c.kept_files += 1;
            c.kept_bytes += bytes;
        } else {
            c.removed_files += 1;
            c.removed_bytes += bytes;
            out.delete.push(p.clone());
            // Module names are relative to site-packages, or to the standard library (whose
            // extension modules sit in lib-dynload/).
            let rel = p.strip_prefix(site).ok().or_else(|| {
                let r = p.strip_prefix(stdlib).ok()?;
                Some(r.strip_prefix("lib-dynload").unwrap_or(r))
            });
            if let Some(rel) = rel {
                if let Some(m) = module_of(rel) {
                    let is_package = rel.file_stem().is_some_and(|s| s.starts_with("__init__"));
                    let base = if p.starts_with(site) { site } else { stdlib };
                    let base_rel = base.strip_prefix("python").unwrap_or(base);
                    let layer_rel = p
                        .strip_prefix(base)
                        .map(|r| r.to_owned())
                        .unwrap_or_else(|_| rel.to_owned());
                    // Folders of which nothing is left are removed packages too, namespace
                    // packages (no __init__) included: their import must meet the hint.
                    for dir in layer_rel.ancestors().skip(1) {
                        if dir.as_str().is_empty() || kept_dirs.contains(base.join(dir).as_path()) {
                            continue;
                        }
                        if let Some(m) = module_of(&dir.join("__init__.py")) {
                            removed_mods.entry(m).or_insert((
                                dir.join("__init__.py"),
                                true,
                                base_rel.to_owned(),
                            ));
                        }
                    }
                    removed_mods.insert(m, (layer_rel, is_package, base_rel.to_owned()));
                }
            }
        }
    }
    for (i, (name, version, _)) in owners.dists.iter().enumerate() {
        if !used.contains(&i) {
            out.removed_distributions.push(RemovedDistribution {
                name: name.clone(),
                version: version.clone(),
                rule: "minimize".to_owned(),
            });
        }
    }
    out.removed_distributions
        .sort_by(|a, b| a.name.cmp(&b.name));
    // Only the outermost removed module of each branch: a removed package covers its children.
    for (m, (rel, is_package, base_rel)) in &removed_mods {
        let covered = m
            .match_indices('.')
            .any(|(i, _)| removed_mods.contains_key(&m[..i]));
        if !covered {
            out.removed_modules.push(RemovedModule {
                module: m.clone(),
                hint: hint(m, rel, *is_package, base_rel, folders),
            });
        }
    }
    out.per_dist = counts.into_values().collect();
    out.delete.sort();
    out
}

/// `a/b/../c` -> `a/c`, lexically (for link targets inside the layer).
pub fn normalize(path: &Utf8Path) -> Utf8PathBuf {
    let mut out: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            camino::Utf8Component::ParentDir => {
                out.pop();
            }
            camino::Utf8Component::CurDir => {}
            other => out.push(other.as_str()),
        }
    }
    out.iter().collect()
}

/// Deletes the plan's files, then the folders under `root` (a layer path) left empty.
pub fn execute(stage: &Utf8Path, root: &Utf8Path, plan: &Plan) -> Result<()> {
    let site = root;
    for p in &plan.delete {
        let path = stage.join(p);
        match fs_err::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("removing a file minimization dropped"),
        }
    }
    // Deepest first, so that a folder whose children were all empty goes too.
    let mut dirs: Vec<Utf8PathBuf> = crate::util::walk(&stage.join(site))?
        .into_iter()
        .filter(|w| w.file_type.is_dir())
        .map(|w| w.rel)
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let path = stage.join(site).join(&d);
        if fs_err::read_dir(&path)?.next().is_none() {
            fs_err::remove_dir(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_link_targets() {
        assert_eq!(
            normalize(Utf8Path::new("python/lib/x/../libssl.so.3")),
            Utf8PathBuf::from("python/lib/libssl.so.3")
        );
    }

    #[test]
    fn modules_of_files() {
        let m = |p: &str| module_of(Utf8Path::new(p));
        assert_eq!(m("litellm/__init__.pyc").as_deref(), Some("litellm"));
        assert_eq!(
            m("litellm/llms/azure/azure.pyc").as_deref(),
            Some("litellm.llms.azure.azure")
        );
        assert_eq!(m("six.py").as_deref(), Some("six"));
        assert_eq!(
            m("yaml/_yaml.cpython-311-x86_64-linux-gnu.so").as_deref(),
            Some("yaml._yaml")
        );
        assert_eq!(m("litellm-1.78.7.dist-info/METADATA"), None);
        assert_eq!(m("tiktoken_ext/data/cl100k.tiktoken"), None);
    }

    fn owners() -> Owners {
        let mut o = Owners::new("python/lib/python3.11/site-packages".into());
        o.add(
            "litellm",
            "1",
            "w",
            &[
                "litellm/__init__.py".into(),
                "litellm/llms/__init__.py".into(),
                "litellm/llms/openai/__init__.py".into(),
                "litellm/llms/azure/__init__.py".into(),
                "litellm/llms/azure/chat.py".into(),
                "litellm/data.json".into(),
                "litellm-1.dist-info/METADATA".into(),
                "litellm-1.dist-info/LICENSE".into(),
            ],
        );
        o.add(
            "unused",
            "2",
            "w",
            &[
                "unused/__init__.py".into(),
                "unused-2.dist-info/METADATA".into(),
            ],
        );
        o
    }

    #[test]
    fn keeps_what_ran_and_metadata() {
        let o = owners();
        let site = Utf8Path::new("python/lib/python3.11/site-packages");
        let files: Vec<(Utf8PathBuf, u64)> = [
            "litellm/__init__.pyc",
            "litellm/llms/__init__.pyc",
            "litellm/llms/openai/__init__.pyc",
            "litellm/llms/azure/__init__.pyc",
            "litellm/llms/azure/chat.pyc",
            "litellm/data.json",
            "litellm-1.dist-info/METADATA",
            "litellm-1.dist-info/LICENSE",
            "unused/__init__.pyc",
            "unused-2.dist-info/METADATA",
        ]
        .iter()
        .map(|p| (site.join(p), 10))
        .collect();
        let trace = Trace {
            files: ["litellm/llms/openai/__init__.pyc", "litellm/data.json"]
                .iter()
                .map(|p| site.join(p))
                .collect(),
            ..Trace::default()
        };
        let keep = crate::build::slim::prune::glob_set(Vec::new()).expect("empty glob set");
        let plan = plan(
            &files,
            &o,
            &trace,
            &keep,
            &BTreeSet::new(),
            &BTreeMap::new(),
        );
        let deleted: Vec<&str> = plan
            .delete
            .iter()
            .map(|p| p.strip_prefix(site).map_or(p.as_str(), |r| r.as_str()))
            .collect();
        assert_eq!(
            deleted,
            [
                "litellm/llms/azure/__init__.pyc",
                "litellm/llms/azure/chat.pyc",
                "unused/__init__.pyc",
                "unused-2.dist-info/METADATA",
            ]
        );
        let mods: Vec<&str> = plan
            .removed_modules
            .iter()
            .map(|m| m.module.as_str())
            .collect();
        assert_eq!(mods, ["litellm.llms.azure", "unused"]);
        assert!(
            plan.removed_modules[0].hint.contains("provider 'azure'"),
            "{:?}",
            plan.removed_modules[0]
        );
        assert_eq!(plan.removed_distributions.len(), 1);
        assert_eq!(plan.removed_distributions[0].name, "unused");

        // A keep rule wins over the trace.
        let keep = crate::build::slim::prune::glob_set(vec![
            "python/lib/python3.11/site-packages/litellm/llms/azure/**".to_owned(),
        ])
        .expect("glob");
        let plan2 = super::plan(
            &files,
            &o,
            &trace,
            &keep,
            &BTreeSet::new(),
            &BTreeMap::new(),
        );
        assert_eq!(plan2.delete.len(), 2);
    }

    #[test]
    fn explains_a_missing_module() {
        let site = Utf8Path::new("python/lib/python3.11/site-packages");
        let mut plan = Plan {
            delete: vec![
                site.join("litellm/llms/azure/chat.pyc"),
                site.join("six.pyc"),
            ],
            ..Plan::default()
        };
        let failures = [
            (
                "workload: w.py".to_owned(),
                "ModuleNotFoundError: No module named 'litellm.llms.azure.chat'".to_owned(),
            ),
            (
                "import: x".to_owned(),
                "FileNotFoundError: [Errno 2] No such file or directory: '/opt/python/lib/python3.11/site-packages/six.pyc'".to_owned(),
            ),
        ];
        let text = explain(&failures, &plan, site);
        assert!(
            text.contains("removing python/lib/python3.11/site-packages/litellm/llms/azure/chat.pyc broke workload: w.py"),
            "{text}"
        );
        assert!(
            text.contains("keep = [\"lib/python3.11/site-packages/litellm/llms/azure/chat.pyc\"]"),
            "{text}"
        );
        assert!(
            text.contains("removing python/lib/python3.11/site-packages/six.pyc broke import: x"),
            "{text}"
        );
        plan.removed_modules.push(RemovedModule {
            module: "litellm.llms.azure".to_owned(),
            hint: "add provider 'azure'".to_owned(),
        });
        let text = explain(&failures[..1], &plan, site);
        assert!(text.contains("to keep it add provider 'azure'"), "{text}");
    }
}
