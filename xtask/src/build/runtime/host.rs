//! The interpreter that compiles bytecode on this machine: the target runtime itself, or for a
//! cross build the build machine's CPython of the same release, unpacked once in the cache.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use super::RuntimeInfo;
use crate::build::fetch::Fetcher;
use crate::build::plan::{BuildPlan, HostPython};
use crate::spec::Arch;

/// An interpreter that runs on this machine and has the target's minor version, to compile
/// bytecode: the target runtime itself when the architectures match, else the host-architecture
/// archive of the same release (from `--host-python-archive` or the spec), unpacked in the cache.
pub fn host_python(
    plan: &BuildPlan,
    fetcher: &Fetcher,
    runtime: &RuntimeInfo,
    stage: &Utf8Path,
) -> Result<Utf8PathBuf> {
    let source = match &plan.host_python {
        HostPython::Runtime => return Ok(stage.join("python").join(&runtime.exe)),
        HostPython::Unavailable { why } => bail!("{why}"),
        HostPython::Archive(source) => source,
    };
    let host = Arch::host()
        .context("this machine is neither x86_64 nor aarch64: cannot compile bytecode")?;
    let sha = &source.sha256;
    let archive = fetcher
        .fetch(&source.location, &source.file_name, sha, "python")
        .with_context(|| {
            format!(
                "fetching the {host} CPython that compiles bytecode for the {} layer",
                plan.arch
            )
        })?;
    // Unpacked once per archive hash; a finished folder is renamed into place, so a
    // concurrent build sees either nothing or a complete interpreter.
    let dir = crate::core::cache_dir()
        .join("host-python")
        .join(sha.as_str());
    if !dir.join("python").exists() {
        fs_err::create_dir_all(dir.parent().unwrap_or(&dir))?;
        // Kept as the cache entry: readable by the other users of the cache, as downloads are.
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .permissions(crate::util::new_dir_permissions())
            .tempdir_in(dir.parent().unwrap_or(&dir))?;
        let tmp_path = crate::util::utf8(tmp.path().to_path_buf())?;
        crate::build::runtime::extract(&archive, &tmp_path, host)?;
        if let Err(e) = fs_err::rename(&tmp_path, &dir) {
            if !dir.join("python").exists() {
                return Err(e.into());
            }
        }
        let _ = tmp.keep();
    }
    let info = RuntimeInfo {
        root: dir.join("python"),
        ..runtime.clone()
    };
    let exe = info.root.join(&runtime.exe);
    if !exe.exists() {
        bail!("{exe} is missing from the host runtime in the cache; delete {dir} and build again");
    }
    Ok(exe)
}
