//! The trace: what the spec's workloads touched when run on the staged layer in the verify
//! sandbox, saved as `trace-<arch>.json`.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::spec::{Arch, Spec};

/// What a workload run touched, saved as `trace-<arch>.json` beside the zip; `--trace FILE`
/// reuses one instead of running the workload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trace {
    pub arch: String,
    pub providers: Vec<String>,
    pub workloads: Vec<String>,
    /// Layer paths (relative to `/opt`) of every file opened, imported or mapped.
    pub files: BTreeSet<Utf8PathBuf>,
    /// Layer paths of every folder listed.
    pub dirs: BTreeSet<Utf8PathBuf>,
    /// Every module imported.
    pub modules: BTreeSet<String>,
}

impl Trace {
    /// Folds one workload's raw result (absolute paths) in; paths outside `/opt` are dropped.
    fn add_raw(&mut self, raw: &serde_json::Value) {
        let paths = |key: &str| -> Vec<Utf8PathBuf> {
            raw[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .filter_map(|p| p.strip_prefix("/opt/"))
                        .map(Utf8PathBuf::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        self.files.extend(paths("files"));
        self.dirs.extend(paths("dirs"));
        if let Some(mods) = raw["modules"].as_array() {
            self.modules
                .extend(mods.iter().filter_map(|m| m.as_str().map(str::to_owned)));
        }
    }

    pub fn load(path: &Utf8Path) -> Result<Trace> {
        let text = fs_err::read_to_string(path)?;
        serde_json::from_str(&text).with_context(|| format!("{path} is not a minimization trace"))
    }
}

/// The workload scripts the spec names, read from disk.
pub fn workloads(spec: &Spec) -> Result<Vec<crate::verify::Workload>> {
    spec.minimize
        .workloads
        .iter()
        .map(|w| {
            let path = spec.data_path(w);
            let source = fs_err::read_to_string(&path)
                .with_context(|| format!("reading the [minimize] workload {w}"))?;
            Ok(crate::verify::Workload {
                name: w.to_string(),
                source,
            })
        })
        .collect()
}

/// Runs the spec's workloads on the staged layer and returns what they touched; fails, naming
/// the workload and its error, when one does not run through.
pub fn trace(spec: &Spec, arch: Arch, stage: &Utf8Path) -> Result<Trace> {
    let workloads = workloads(spec)?;
    let outcome = crate::verify::run_workloads(
        spec,
        arch,
        stage,
        workloads.clone(),
        spec.minimize.providers.clone(),
    )?;
    let failed: Vec<String> = outcome
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if !failed.is_empty() {
        bail!(
            "the minimization workload failed on the layer before anything was removed, so there is nothing to trace:\n  {}",
            failed.join("\n  ")
        );
    }
    let mut t = Trace {
        arch: arch.to_string(),
        providers: spec.minimize.providers.clone(),
        workloads: workloads.iter().map(|w| w.name.clone()).collect(),
        ..Trace::default()
    };
    for raw in &outcome.traces {
        t.add_raw(raw);
    }
    if t.files.is_empty() {
        bail!("the minimization workload ran but the trace recorded no file of the layer");
    }
    Ok(t)
}
