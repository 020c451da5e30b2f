//! Slimming a staged layer as its profile says: pruning rules, bytecode, stripping and
//! the optional `site-packages.zip`. Each step lives in its own module; this one sequences them.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::progress::Progress;
use crate::report::{Owners, Removed};
use crate::runtime::RuntimeInfo;
use crate::spec::{Arch, Spec};

/// What the slimming steps may look at.
pub struct SlimContext<'a> {
    pub spec: &'a Spec,
    pub arch: Arch,
    /// `--profile`, else the spec's default.
    pub profile: Option<&'a str>,
    /// The staged layer: holds `python/`.
    pub stage: &'a Utf8Path,
    pub runtime: &'a RuntimeInfo,
    /// `python/lib/python3.X/site-packages`, relative to `stage`.
    pub site_packages: &'a Utf8Path,
    pub owners: &'a Owners,
    /// Returns an interpreter that runs on this machine, of the target's minor version
    /// (fetched on first call for a cross build).
    pub host_python: &'a dyn Fn() -> Result<Utf8PathBuf>,
    pub progress: &'a Progress,
}

/// What slimming did, for the report.
#[derive(Debug, Default)]
pub struct Slimmed {
    pub removed: Vec<Removed>,
    pub notes: Vec<String>,
}

pub fn apply(ctx: &SlimContext<'_>) -> Result<Slimmed> {
    let _ = ctx;
    Ok(Slimmed::default())
}
