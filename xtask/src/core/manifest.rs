//! `python/layer-manifest.json`: what a layer holds, written into the layer by the build and
//! read by `verify`, `analyze` and the clients.

use serde::{Deserialize, Serialize};

/// `python/layer-manifest.json`: what a layer holds, written into the layer itself so that
/// `verify` (and anyone on the machine it runs on) can tell what was installed and removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub arch: String,
    pub profile: String,
    pub python_version: String,
    /// Distributions present in the layer: (name, version).
    pub distributions: Vec<(String, String)>,
    pub removed_distributions: Vec<RemovedDistribution>,
    /// Modules trace-driven minimization removed (outermost of each branch), with how to keep
    /// each: the layer's sitecustomize turns an import of one into a ModuleNotFoundError that
    /// says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_modules: Vec<RemovedModule>,
    /// The spec's `[[patch]]` changes applied to installed files: a patched layer says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<AppliedPatch>,
}

/// A `[[patch]]` applied to an installed file (in the manifest and in report.json).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppliedPatch {
    pub distribution: String,
    pub version: String,
    /// Relative to site-packages.
    pub file: String,
    /// The diff as the spec names it (relative to its data folder).
    pub diff: String,
    pub diff_sha256: String,
    pub reason: String,
}

/// The manifest's path inside a layer.
pub const MANIFEST: &str = "python/layer-manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemovedDistribution {
    pub name: String,
    pub version: String,
    pub rule: String,
}

/// A module minimization removed, and how to keep it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemovedModule {
    pub module: String,
    /// What to add to the spec, in words ("add provider 'azure' to [minimize] providers ...").
    pub hint: String,
}
