//! The CPython runtime: unpacking a python-build-standalone archive into a layer's `python/`.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::spec::Arch;

/// What an unpacked runtime is.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The `python/` folder.
    pub root: Utf8PathBuf,
    /// Full version, e.g. `3.11.16`.
    pub version: String,
    /// `3.11`.
    pub xy: String,
    /// The interpreter, relative to `root`: `bin/python3.11`.
    pub exe: Utf8PathBuf,
}

/// Unpacks `archive` (`.tar.gz` or `.tar.zst`, install_only or full layout) so that
/// `dest/python/bin/python3.X` exists; refuses unsafe entries and a foreign interpreter.
pub fn extract(archive: &Utf8Path, dest: &Utf8Path, arch: Arch) -> Result<RuntimeInfo> {
    let _ = (archive, dest, arch);
    anyhow::bail!("runtime: not implemented yet")
}
