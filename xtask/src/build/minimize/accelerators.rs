//! `accelerators.toml`: native accelerators a minimized layer leaves out, and the environment
//! defaults that make their packages take the pure-Python path.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::spec::Spec;

/// One entry of `layer/accelerators.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    /// Globs relative to site-packages: the native files left out.
    pub paths: Vec<String>,
    /// Defaults sitecustomize.py sets so that the package takes its pure-Python path.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceleratorsFile {
    accelerator: BTreeMap<String, Accelerator>,
}

/// The accelerators `[minimize] drop-accelerators` names, from `accelerators.toml` beside the
/// spec; an unknown name is an error listing the known ones.
pub fn accelerators(spec: &Spec) -> Result<Vec<(String, Accelerator)>> {
    if spec.minimize.drop_accelerators.is_empty() {
        return Ok(Vec::new());
    }
    let path = spec.data_path("accelerators.toml");
    let text = fs_err::read_to_string(&path)?;
    let file: AcceleratorsFile = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{path}: {}", crate::spec::format_toml_error(&text, &e)))?;
    spec.minimize
        .drop_accelerators
        .iter()
        .map(|name| {
            let key = crate::python::wheel::normalize(name);
            file.accelerator
                .get(&key)
                .map(|a| (key.clone(), a.clone()))
                .with_context(|| {
                    format!(
                        "{}: [minimize] drop-accelerators names `{name}`, which {path} does not describe (it has: {})",
                        spec.path,
                        file.accelerator.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })
        })
        .collect()
}

/// Removes the dropped accelerators' native files from site-packages; returns their layer paths.
pub fn drop_accelerators(
    stage: &Utf8Path,
    site: &Utf8Path,
    dropped: &[(String, Accelerator)],
) -> Result<Vec<Utf8PathBuf>> {
    let mut removed = Vec::new();
    for (name, acc) in dropped {
        let globs = crate::build::slim::prune::glob_set(acc.paths.iter().cloned())
            .with_context(|| format!("accelerators.toml: `{name}`"))?;
        for w in crate::util::walk(&stage.join(site))? {
            if w.file_type.is_file() && globs.is_match(w.rel.as_str()) {
                fs_err::remove_file(stage.join(site).join(&w.rel))?;
                removed.push(site.join(&w.rel));
            }
        }
    }
    removed.sort();
    Ok(removed)
}
