//! Stage "runtime" through the cache: each runtime archive is unpacked (and checked) once per
//! archive sha256 into an entry of its own (`python/` plus `runtime.json`), then linked into
//! the layer like the installed wheels (`link_tree`), and checked the same way for files
//! edited in place through a built tree.

use anyhow::{Context, Result};
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use super::{key, Stage, StageCache};
use crate::build::runtime::RuntimeInfo;
use crate::core::Arch;

const ABOUT: &str = "runtime.json";

#[derive(Serialize, Deserialize)]
struct About {
    version: String,
    xy: String,
    exe: camino::Utf8PathBuf,
}

/// The key of the archive whose sha256 is `sha256`, unpacked for `arch` by this xtask binary.
pub fn runtime_key(sha256: &str, arch: Arch) -> Result<String> {
    let exe = super::exe_identity()?;
    Ok(key(
        Stage::Runtime,
        &[
            sha256.as_bytes(),
            arch.to_string().as_bytes(),
            exe.as_bytes(),
        ],
    ))
}

/// Unpacks `archive` (whose sha256, already checked by the fetch, is `sha256`) as `python/`
/// into `stage`, from the cache when it holds it. Returns the runtime and a note when the
/// cached entry had been changed and was made anew.
pub fn unpack(
    cache: &StageCache,
    archive: &Utf8Path,
    sha256: &str,
    arch: Arch,
    stage: &Utf8Path,
) -> Result<(RuntimeInfo, Option<String>)> {
    let key = runtime_key(sha256, arch)?;
    let fill = |dir: &Utf8Path| {
        let info = crate::build::runtime::extract(archive, dir, arch)?;
        let about = About {
            version: info.version,
            xy: info.xy,
            exe: info.exe,
        };
        // Written last: no file of the entry is newer than it.
        fs_err::write(dir.join(ABOUT), serde_json::to_vec(&about)?)?;
        Ok(())
    };
    let dir = cache.linked_dir(Stage::Runtime, &key, "python", ABOUT, fill)?;
    let note = dir.remade.map(|changed| {
        format!(
            "the stage cache's unpacked runtime {archive} had been changed since it was made \
             (python/{changed} is newer than the entry: a file of a built tree edited in place?); \
             unpacked anew"
        )
    });
    let entry = dir.entry;
    let about_path = entry.join(ABOUT);
    let about: About = serde_json::from_slice(&fs_err::read(&about_path)?)
        .with_context(|| format!("reading the stage cache entry {about_path}"))?;
    let root = stage.join("python");
    fs_err::create_dir_all(&root)?;
    super::link_tree(&entry.join("python"), &dir.walked, &root, &|rel| {
        format!("python/{rel} is already in the staging folder")
    })?;
    Ok((
        RuntimeInfo {
            root,
            version: about.version,
            xy: about.xy,
            exe: about.exe,
        },
        note,
    ))
}
