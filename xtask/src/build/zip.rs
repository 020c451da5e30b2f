//! Writing the layer zip: reproducible (sorted entries, fixed times and modes), links kept
//! as links, written through a temporary file and a rename.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use zip::write::SimpleFileOptions;

use crate::util::zipinfo::{read_stats, ZipStats};

/// Zips the tree under `root` into `out`. Two calls on the same tree give the same bytes.
pub fn write_zip(root: &Utf8Path, out: &Utf8Path, level: i64) -> Result<ZipStats> {
    let entries = crate::util::walk(root)?;
    crate::util::write_atomic(out, |file| {
        let mut zip = zip::ZipWriter::new(&mut *file);
        let base = SimpleFileOptions::default()
            .last_modified_time(zip::DateTime::default())
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(level));
        // A file reachable through several hard links is stored once; the others become links to it.
        let mut seen: HashMap<(u64, u64), Utf8PathBuf> = HashMap::new();
        for entry in &entries {
            let path = root.join(&entry.rel);
            let name = entry.rel.as_str();
            if entry.file_type.is_dir() {
                zip.add_directory(name, base.unix_permissions(0o755))?;
            } else if entry.file_type.is_symlink() {
                let target = fs_err::read_link(&path)?;
                let target = target
                    .to_str()
                    .with_context(|| format!("link target of {path} is not UTF-8"))?;
                zip.add_symlink(name, target, base.unix_permissions(0o777))?;
            } else if entry.file_type.is_file() {
                let meta = fs_err::metadata(&path)?;
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = seen.get(&key) {
                        let target = relative_link(&entry.rel, first);
                        zip.add_symlink(name, target.as_str(), base.unix_permissions(0o777))?;
                        continue;
                    }
                    seen.insert(key, entry.rel.clone());
                }
                let mode = if entry.mode & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                zip.start_file(
                    name,
                    base.unix_permissions(mode)
                        .large_file(meta.len() >= u32::MAX as u64),
                )?;
                let bytes = fs_err::read(&path)?;
                zip.write_all(&bytes)
                    .with_context(|| format!("writing {name} into the zip"))?;
            } else {
                anyhow::bail!("{path} is neither a file, a folder nor a link");
            }
        }
        zip.finish().context("finishing the zip")?;
        Ok(())
    })
    .with_context(|| format!("writing {out}"))?;
    read_stats(out)
}

/// The path of `target` as seen from the folder of `link` (both relative to one root).
fn relative_link(link: &Utf8Path, target: &Utf8Path) -> Utf8PathBuf {
    let from: Vec<_> = link
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = Utf8PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(dir: &Utf8Path) {
        fs_err::create_dir_all(dir.join("python/bin")).unwrap();
        fs_err::create_dir_all(dir.join("python/lib/empty")).unwrap();
        fs_err::write(dir.join("python/bin/python3.11"), b"\x7fELF fake").unwrap();
        fs_err::set_permissions(
            dir.join("python/bin/python3.11"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("python3.11", dir.join("python/bin/python3")).unwrap();
        fs_err::write(dir.join("python/lib/a.py"), b"print('a')\n".repeat(100)).unwrap();
        fs_err::hard_link(dir.join("python/lib/a.py"), dir.join("python/lib/b.py")).unwrap();
    }

    #[test]
    fn zips_are_reproducible_and_keep_modes_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        tree(&dir.join("one"));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        tree(&dir.join("two"));
        let a = write_zip(&dir.join("one"), &dir.join("a.zip"), 9).unwrap();
        let b = write_zip(&dir.join("two"), &dir.join("b.zip"), 9).unwrap();
        assert_eq!(
            fs_err::read(dir.join("a.zip")).unwrap(),
            fs_err::read(dir.join("b.zip")).unwrap()
        );
        assert_eq!(a.zip_bytes, b.zip_bytes);

        let mut zip = zip::ZipArchive::new(fs_err::File::open(dir.join("a.zip")).unwrap()).unwrap();
        let names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "entries are sorted");
        assert_eq!(
            zip.by_name("python/bin/python3.11")
                .unwrap()
                .unix_mode()
                .unwrap()
                & 0o777,
            0o755
        );
        assert_eq!(
            zip.by_name("python/lib/a.py").unwrap().unix_mode().unwrap() & 0o777,
            0o644
        );
        assert!(zip.by_name("python/bin/python3").unwrap().is_symlink());
        assert!(
            zip.by_name("python/lib/b.py").unwrap().is_symlink(),
            "a hard link is stored once"
        );
        assert!(zip.by_name("python/lib/empty/").unwrap().is_dir());
    }

    #[test]
    fn relative_links() {
        assert_eq!(relative_link("a/b/c".into(), "a/x".into()), "../x");
        assert_eq!(relative_link("a/c".into(), "a/x".into()), "x");
        assert_eq!(relative_link("c".into(), "a/x".into()), "a/x");
    }
}
