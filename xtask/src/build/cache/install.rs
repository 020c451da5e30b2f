//! Stage "install" through the cache: each wheel is installed once per wheel hash into an
//! entry of its own (`site-packages/` plus `installed.json`), then copied into the layer.
//! Copies, not hard links: stripping rewrites files in place, which would change the entry.

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::{key, Stage, StageCache};
use crate::python::wheel::{install_wheel, Installed};

const FILES: &str = "site-packages";
const ABOUT: &str = "installed.json";

/// The key of a wheel installed into `site_rel` (the target's site-packages path, which
/// names the Python version).
pub fn install_key(wheel_sha256: &str, site_rel: &Utf8Path) -> String {
    key(
        Stage::Install,
        &[wheel_sha256.as_bytes(), site_rel.as_str().as_bytes()],
    )
}

/// Installs the wheel at `wheel` (whose sha256 is `sha256`, already checked by the fetch) into
/// `site_packages`, from the cache when it holds it, else installing it there first.
pub fn install(
    cache: &StageCache,
    wheel: &Utf8Path,
    sha256: &str,
    site_rel: &Utf8Path,
    site_packages: &Utf8Path,
) -> Result<Installed> {
    let key = install_key(sha256, site_rel);
    let entry = match cache.get_dir(Stage::Install, &key) {
        Some(entry) => entry,
        None => cache.put_dir(Stage::Install, &key, |dir| {
            let files = dir.join(FILES);
            fs_err::create_dir_all(&files)?;
            let installed = install_wheel(wheel, &files)?;
            fs_err::write(dir.join(ABOUT), serde_json::to_vec(&installed)?)?;
            Ok(())
        })?,
    };
    let about = entry.join(ABOUT);
    let installed: Installed = serde_json::from_slice(&fs_err::read(&about)?)
        .with_context(|| format!("reading the stage cache entry {about}"))?;
    super::copy_tree(&entry.join(FILES), site_packages, &|rel| {
        format!(
            "{}: {rel} is already installed by another distribution",
            installed.wheel
        )
    })?;
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_wheel_and_the_target_layout() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let sp = Utf8Path::new("python/lib/python3.11/site-packages");
        assert_eq!(install_key(&a, sp), install_key(&a, sp));
        assert_ne!(install_key(&a, sp), install_key(&b, sp));
        assert_ne!(
            install_key(&a, sp),
            install_key(&a, Utf8Path::new("python/lib/python3.12/site-packages"))
        );
    }
}
