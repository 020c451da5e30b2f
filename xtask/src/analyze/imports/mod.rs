//! `cargo xtask analyze --imports`: where the milliseconds of `import litellm` (the spec's
//! [verify] preload, or `--preload` modules) go. Fresh interpreters in verify's sandbox run
//! the imports under `python -X importtime` (`verify::import_times`); `parse` reads each
//! process's tree, `profile` takes medians and attributes time to the layer's distributions
//! (the same attribution as the size analysis), `text` prints it, and the HTML page draws it.

pub mod parse;
pub mod profile;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::attribute::{Kind, Layer};
pub use profile::Profile;

/// What `--imports` measures and how.
#[derive(Debug, Clone, Default)]
pub struct ImportsOptions {
    /// The modules to import (default: the spec's [verify] preload, else `litellm`).
    pub preload: Vec<String>,
    /// An interpreter for a layer that has none of its own.
    pub python: Option<Utf8PathBuf>,
    /// Fresh processes (default 5, 3 under emulation).
    pub runs: Option<usize>,
}

/// `--imports`' report (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub layer: Utf8PathBuf,
    /// The Python each process ran, without the markers: `import litellm`.
    pub code: String,
    pub runs: usize,
    /// The interpreter, as the sandbox saw it.
    pub python: String,
    pub own_python: bool,
    pub python_version: Option<String>,
    pub emulator: Option<String>,
    /// How it ran: always the verify sandbox.
    pub sandbox: String,
    /// Where the bytecode came from: the layer's own, or a warm-up run's cache.
    pub bytecode: String,
    #[serde(flatten)]
    pub profile: Profile,
}

/// Modules of the layer's sites that have source but no bytecode, and all modules with source.
fn missing_bytecode(layer: &Layer) -> (usize, usize) {
    let mut compiled = BTreeSet::new();
    for f in layer.files.iter().filter(|f| f.kind == Kind::Bytecode) {
        if let Some(src) = crate::core::source_of_pyc(&f.path) {
            compiled.insert(src);
        }
    }
    let sources: Vec<&Utf8Path> = layer
        .files
        .iter()
        .filter(|f| f.site.is_some() && f.path.extension() == Some("py"))
        .map(|f| f.path.as_path())
        .collect();
    let missing = sources.iter().filter(|p| !compiled.contains(**p)).count();
    (missing, sources.len())
}

/// Runs the imports in the sandbox and profiles them.
///
/// Long on purpose: choosing the modules and the warm-up, running, reading each run's result
/// and building the report are one sequence over the same values.
pub fn measure(
    layer_path: &Utf8Path,
    layer: &Layer,
    spec: Option<&crate::spec::Spec>,
    options: &ImportsOptions,
    top: usize,
) -> Result<ImportReport> {
    let preload = if !options.preload.is_empty() {
        options.preload.clone()
    } else {
        spec.map(|s| s.verify.preload.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| vec!["litellm".to_owned()])
    };
    let (missing, sources) = missing_bytecode(layer);
    // Without bytecode every run would time the compiler: one untimed run fills a cache first.
    let warm_up = sources > 0 && missing * 10 > sources;
    let code = parse::script(&preload);
    let runs = crate::verify::import_times(&crate::verify::ImportTimeRequest {
        layer: layer_path,
        python: options.python.as_deref(),
        code: &code,
        runs: options.runs,
        warm_up,
    })?;
    let mut parsed = Vec::new();
    let mut walls = Vec::new();
    let mut version = None;
    let mut stdlib: BTreeSet<String> = BTreeSet::new();
    for (i, r) in runs.runs.iter().enumerate() {
        let result: serde_json::Value = r
            .stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(parse::RESULT))
            .and_then(|j| serde_json::from_str(j).ok())
            .with_context(|| {
                format!(
                    "run {} printed no result; stdout: {}",
                    i + 1,
                    r.stdout.trim()
                )
            })?;
        walls.extend(result["wall_s"].as_f64());
        version = result["version"].as_str().map(str::to_owned);
        if let Some(names) = result["stdlib"].as_array() {
            stdlib.extend(names.iter().filter_map(|n| n.as_str().map(str::to_owned)));
        }
        parsed.push(parse::parse(&r.stderr));
    }
    let modules = layer.modules();
    let versions: BTreeMap<String, String> = layer
        .dists
        .iter()
        .map(|d| (d.norm.clone(), d.version.clone()))
        .collect();
    let owners = profile::Owners {
        modules: &modules,
        versions: &versions,
        stdlib: &stdlib,
    };
    let profile = profile::profile(&parsed, &walls, &owners, top);
    let bytecode = if warm_up {
        format!("the layer has no bytecode for {missing} of its {sources} modules: a warm-up run compiled it into a cache in the sandbox's /tmp first, so the timed runs do not include compiling")
    } else {
        "the layer's own".to_owned()
    };
    Ok(ImportReport {
        layer: layer_path.to_owned(),
        code: preload
            .iter()
            .map(|m| format!("import {m}"))
            .collect::<Vec<_>>()
            .join("; "),
        runs: parsed.len(),
        python: runs.python,
        own_python: runs.own_python,
        python_version: version,
        emulator: runs.emulator,
        sandbox: "verify's bubblewrap sandbox: the layer read-only at /opt, /tmp the only writable place, no network, Lambda's environment".to_owned(),
        bytecode,
        profile,
    })
}
