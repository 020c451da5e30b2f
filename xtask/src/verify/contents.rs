//! What the runtime checks will import and ask about: the layer's top-level modules (on disk
//! and in `site-packages.zip` files) and the distributions whose metadata must answer.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::modules;
use crate::spec::{Arch, Spec};

/// The layer's modules and distributions.
pub(super) struct Contents {
    pub modules: BTreeSet<String>,
    pub dists: Vec<String>,
}

/// Reads the layer unpacked at `root`; what was left out on purpose, or is named by the spec
/// but absent, becomes a warning.
pub(super) fn read(
    spec: &Spec,
    root: &Utf8Path,
    arch: Arch,
    warnings: &mut Vec<String>,
) -> Result<Contents> {
    let xy = spec.python_xy();
    // What the runtime checks will import and ask about.
    let site = root.join(format!("python/lib/python{xy}/site-packages"));
    let mut modules = site_modules(&site)?;
    for entry in crate::util::walk(root)? {
        if entry.file_type.is_file() && entry.rel.file_name() == Some("site-packages.zip") {
            let path = root.join(&entry.rel);
            let zip = zip::ZipArchive::new(fs_err::File::open(&path)?)
                .with_context(|| format!("{path} is not a valid zip"))?;
            let names = zip
                .file_names()
                .map(|n| n.map(|n| n.into_owned()))
                .collect::<Result<Vec<String>, _>>()
                .with_context(|| format!("reading the entries of {path}"))?;
            modules.extend(modules::top_level_in_zip(names.iter().map(String::as_str)));
        }
    }
    // A layer this tool built says which distributions it holds (a profile may remove some
    // on purpose); for any other layer, every distribution the lock installs must answer.
    let manifest_path = root.join(crate::core::MANIFEST);
    let dists = if manifest_path.is_file() {
        let manifest: crate::core::Manifest =
            serde_json::from_str(&fs_err::read_to_string(&manifest_path)?)
                .with_context(|| format!("{manifest_path} is not a layer manifest"))?;
        for removed in &manifest.removed_distributions {
            warnings.push(format!(
                "{} {} was removed on purpose by rule `{}`: its metadata is not checked",
                removed.name, removed.version, removed.rule
            ));
        }
        manifest
            .distributions
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    } else {
        locked_dists(spec, arch)?
    };
    let unknown_skips: Vec<&String> = spec
        .verify
        .skip_imports
        .keys()
        .filter(|m| !modules.contains(*m))
        .collect();
    if !unknown_skips.is_empty() {
        warnings.push(format!(
            "[verify] skip-imports names modules this layer does not have: {}",
            unknown_skips
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Contents { modules, dists })
}

/// Top-level modules of a site-packages folder on disk.
fn site_modules(site: &Utf8Path) -> Result<BTreeSet<String>> {
    if !site.is_dir() {
        return Ok(Default::default());
    }
    let mut entries = Vec::new();
    for entry in fs_err::read_dir(site)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let children = if entry.file_type()?.is_dir() {
            let mut c = Vec::new();
            for child in fs_err::read_dir(entry.path())? {
                if let Ok(n) = child?.file_name().into_string() {
                    c.push(n);
                }
            }
            Some(c)
        } else {
            None
        };
        entries.push(modules::SiteEntry { name, children });
    }
    Ok(modules::top_level(&entries))
}

/// Names of the distributions the lock installs for `arch`.
fn locked_dists(spec: &Spec, arch: Arch) -> Result<Vec<String>> {
    let lock_path = spec.lock_path();
    let lock = crate::python::pylock::PyLock::load(&lock_path)?;
    let env = crate::python::marker::Env {
        machine: arch.machine().to_owned(),
        python_version: spec.python_xy(),
        python_full_version: spec.python.version.clone(),
    };
    Ok(lock
        .packages_for(&env)
        .with_context(|| format!("evaluating the markers of {lock_path}"))?
        .into_iter()
        .map(|p| p.name.clone())
        .collect())
}
