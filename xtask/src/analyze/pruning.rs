//! What the pruning rules would still remove from a layer, grouped by level.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::attribute::Layer;
use super::report::{LevelSaving, Pruning, RuleSaving};

/// The libraries `python/bin/python3.X` needs, as layer paths: the rules may not remove them.
pub(super) fn interpreter_needs(layer: &Layer) -> Vec<Utf8PathBuf> {
    let mut out = Vec::new();
    for (path, bytes) in &layer.contents {
        if path.parent().and_then(Utf8Path::file_name) != Some("bin") {
            continue;
        }
        let Ok(elf) = crate::util::elf::inspect(bytes) else {
            continue;
        };
        out.push(path.clone());
        let lib = path
            .parent()
            .and_then(Utf8Path::parent)
            .map(|p| p.join("lib"))
            .unwrap_or_default();
        out.extend(elf.needed.iter().map(|l| lib.join(l)));
    }
    out
}

/// What the rules would still remove, grouped by level. Files of every site folder are seen
/// by the rules as if they were in `python/lib/python3.X/site-packages`, where the rules look.
///
/// Long on purpose: it is the build's prune step (rules, protections, plan) replayed on a
/// read layer, then the totals grouped; splitting it would hide that it mirrors the build.
pub(super) fn pruning(
    layer: &Layer,
    rules_path: &Utf8Path,
    spec: Option<&crate::spec::Spec>,
    sources: &dyn Fn(&Utf8Path) -> Option<String>,
) -> Result<Pruning> {
    use crate::build::slim::prune::{Entry, Protections, Rule};
    use crate::core::Layout;
    use crate::spec::rules::RulesFile;
    let rules_file = RulesFile::load(rules_path)?;
    let xy = layer
        .python_xy
        .clone()
        .or_else(|| spec.map(|s| s.python_xy()))
        .unwrap_or_else(|| "3.11".into());
    let layout = Layout { xy };
    let disabled: &[String] = spec.map(|s| s.prune.disable.as_slice()).unwrap_or(&[]);
    let defs: Vec<crate::spec::rules::RuleDef> = rules_file
        .rules
        .iter()
        .filter(|r| !disabled.contains(&r.name))
        .chain(spec.map(|s| s.prune.rule.as_slice()).unwrap_or(&[]))
        .cloned()
        .collect();
    let rules = defs
        .iter()
        .map(|d| Rule::compile(d, &layout))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("compiling the rules of {rules_path}"))?;
    let protections = Protections::new(
        &layout,
        &rules_file.protect.paths,
        &rules_file.protect.startup_modules,
        &interpreter_needs(layer),
        spec.map(|s| s.prune.keep.as_slice()).unwrap_or(&[]),
    )
    .with_context(|| format!("the protections of {rules_path}"))?;
    let canonical_sp = layout.site_packages();
    let mut compressed: BTreeMap<Utf8PathBuf, u64> = BTreeMap::new();
    // Canonical path -> the path in the layer, for reading sources.
    let mut original: BTreeMap<Utf8PathBuf, Utf8PathBuf> = BTreeMap::new();
    let entries: Vec<Entry> = layer
        .files
        .iter()
        .map(|f| {
            let path = match f.site {
                Some(s) => {
                    canonical_sp.join(f.path.strip_prefix(&layer.sites[s]).unwrap_or(&f.path))
                }
                None => f.path.clone(),
            };
            *compressed.entry(path.clone()).or_default() += f.compressed;
            original.insert(path.clone(), f.path.clone());
            Entry {
                path,
                bytes: f.bytes,
                dist: f.dist.map(|d| layer.dists[d].norm.clone()),
            }
        })
        .collect();
    let mut plan = crate::build::slim::prune::plan(&entries, &rules, &protections);
    // As the build does: what a kept source imports stays (sourceless layers have none to read).
    crate::build::slim::prune::protect_imports(&mut plan, &entries, &rules, &canonical_sp, &|p| {
        original.get(p).and_then(|o| sources(o))
    });
    let mut per_rule: Vec<u64> = vec![0; rules.len()];
    for (path, &i) in &plan.delete {
        per_rule[i] += compressed.get(path).copied().unwrap_or(0);
    }
    let mut levels: BTreeMap<crate::spec::rules::Level, LevelSaving> = BTreeMap::new();
    for (i, def) in defs.iter().enumerate() {
        let (_, files, bytes) = &plan.totals[i];
        if *files == 0 {
            continue;
        }
        let level = levels.entry(def.level).or_insert_with(|| LevelSaving {
            level: format!("{:?}", def.level).to_lowercase(),
            files: 0,
            bytes: 0,
            compressed_bytes: 0,
            rules: Vec::new(),
        });
        level.files += files;
        level.bytes += bytes;
        level.compressed_bytes += per_rule[i];
        level.rules.push(RuleSaving {
            rule: def.name.clone(),
            reason: def.reason.clone(),
            files: *files,
            bytes: *bytes,
            compressed_bytes: per_rule[i],
        });
    }
    for l in levels.values_mut() {
        l.rules.sort_by_key(|r| std::cmp::Reverse(r.bytes));
    }
    Ok(Pruning {
        rules_file: rules_path.to_owned(),
        levels: levels.into_values().collect(),
        refused_files: plan.refused.len() as u64,
    })
}
