//! Stage "install" through the cache: each wheel is installed once per wheel hash into an
//! entry of its own (`site-packages/` plus `installed.json`), then linked into the layer
//! (`link_tree`: no step writes through a linked file, and the finished tree shares none).

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
/// `site_packages`, from the cache when it holds it, else installing it there first. Returns
/// what was installed, and a note when the cached entry had been changed and was made anew.
pub fn install(
    cache: &StageCache,
    wheel: &Utf8Path,
    sha256: &str,
    site_rel: &Utf8Path,
    site_packages: &Utf8Path,
) -> Result<(Installed, Option<String>)> {
    let key = install_key(sha256, site_rel);
    let fill = |dir: &Utf8Path| {
        let files = dir.join(FILES);
        fs_err::create_dir_all(&files)?;
        let installed = install_wheel(wheel, &files)?;
        // Written last: its time is the entry's, and no file of the entry is newer.
        fs_err::write(dir.join(ABOUT), serde_json::to_vec(&installed)?)?;
        Ok(())
    };
    let dir = cache.linked_dir(Stage::Install, &key, FILES, ABOUT, fill)?;
    let note = dir.remade.map(|changed| {
        format!(
            "the stage cache's install of {wheel} had been changed since it was made ({changed} \
             is newer than the entry: a file of a built tree edited in place?); installed anew"
        )
    });
    let entry = dir.entry;
    let about = entry.join(ABOUT);
    let installed: Installed = serde_json::from_slice(&fs_err::read(&about)?)
        .with_context(|| format!("reading the stage cache entry {about}"))?;
    super::link_tree(&entry.join(FILES), &dir.walked, site_packages, &|rel| {
        format!(
            "{}: {rel} is already installed by another distribution",
            installed.wheel
        )
    })?;
    Ok((installed, note))
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

    #[test]
    fn a_linked_install_keeps_the_entry_and_an_entry_edited_in_place_is_made_anew() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let wheel = crate::python::wheel::tests::make_wheel(
            dir,
            &[
                ("demo/__init__.py", b"x = 1\n"),
                (
                    "demo-1.0.dist-info/METADATA",
                    b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n",
                ),
            ],
            None,
        );
        let cache = StageCache::new(&dir.join("cache"));
        let sp = Utf8Path::new("python/lib/python3.11/site-packages");
        let site = |name: &str| {
            let site = dir.join(name).join(sp);
            fs_err::create_dir_all(&site).unwrap();
            site
        };
        let sha = "a".repeat(64);
        let module =
            |site: &Utf8Path| fs_err::read_to_string(site.join("demo/__init__.py")).unwrap();

        let a = site("a");
        let (_, note) = install(&cache, &wheel, &sha, sp, &a).unwrap();
        assert_eq!((module(&a).as_str(), note), ("x = 1\n", None));
        // A step of the build replaces the file: the next install still gets the wheel's bytes.
        crate::util::rewrite_file(&a.join("demo/__init__.py"), b"x = 2\n").unwrap();
        let b = site("b");
        let (_, note) = install(&cache, &wheel, &sha, sp, &b).unwrap();
        assert_eq!((module(&b).as_str(), note), ("x = 1\n", None));
        assert_eq!(module(&a), "x = 2\n");

        // Someone edits the built tree in place, later: the shared bytes changed, which the
        // next install sees, says, and mends.
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .open(b.join("demo/__init__.py"))
            .unwrap();
        file.write_all(b"import evil\n").unwrap();
        file.file()
            .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(file);
        let c = site("c");
        let (_, note) = install(&cache, &wheel, &sha, sp, &c).unwrap();
        assert_eq!(module(&c), "x = 1\n");
        let note = note.expect("the changed entry is noted");
        assert!(note.contains("demo/__init__.py"), "{note}");
    }
}
