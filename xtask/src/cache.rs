//! `cargo xtask cache`: how much the cache folder holds (`--size`, per stage of the stage
//! cache and for the downloads) and emptying it (`--clean`: the stage cache; `--clean --all`:
//! the downloads too).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::cache::{Stage, STAGES_DIR};
use crate::util::fmt::mb;

/// What `cargo xtask cache` was asked for (flags.rs turns flags into these).
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Remove the stage cache.
    pub clean: bool,
    /// With `clean`: the downloads (runtimes, wheels) too.
    pub all: bool,
    /// The cache folder; default: `core::cache_dir()`.
    pub dir: Option<Utf8PathBuf>,
}

pub fn run(options: &CacheOptions) -> Result<ExitCode> {
    let dir = options.dir.clone().unwrap_or_else(crate::core::cache_dir);
    if options.all && !options.clean {
        bail!(
            "--all goes with --clean (`cargo xtask cache --clean --all` removes the downloads too)"
        );
    }
    if options.clean {
        print!("{}", clean(&dir, options.all)?);
    } else {
        print!("{}", size(&dir)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes and entries under `dir` (0 and 0 when it does not exist).
fn usage(dir: &Utf8Path) -> Result<(u64, usize)> {
    if !dir.exists() {
        return Ok((0, 0));
    }
    let bytes = crate::util::tree_bytes(dir)?;
    let entries = crate::util::walk(dir)?
        .iter()
        .filter(|w| w.rel.components().count() == 2 && !w.rel.as_str().contains("/."))
        .count();
    Ok((bytes, entries))
}

/// The `--size` table: each stage, the stage cache's total, the downloads.
fn size(dir: &Utf8Path) -> Result<String> {
    let mut out = format!("cache folder {dir}\n");
    let stages = dir.join(STAGES_DIR);
    let mut total = 0;
    for stage in Stage::ALL {
        let (bytes, entries) = usage(&stages.join(stage.name()))?;
        total += bytes;
        out.push_str(&format!(
            "  stage {:<9} {:>10}  {entries} entries\n",
            stage.name(),
            mb(bytes)
        ));
    }
    out.push_str(&format!("  stage cache     {:>10}\n", mb(total)));
    let downloads = downloads_bytes(dir)?;
    out.push_str(&format!("  downloads       {:>10}\n", mb(downloads)));
    out.push_str(&format!(
        "  total           {:>10}\n",
        mb(total + downloads)
    ));
    Ok(out)
}

/// Everything of the cache folder but the stage cache: runtimes, wheels, host interpreters.
fn downloads_bytes(dir: &Utf8Path) -> Result<u64> {
    let mut bytes = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == STAGES_DIR {
            continue;
        }
        let path = crate::util::utf8(entry.path())?;
        bytes += if path.is_dir() {
            crate::util::tree_bytes(&path)?
        } else {
            fs_err::metadata(&path)?.len()
        };
    }
    Ok(bytes)
}

/// Removes `path` by first renaming it aside: a build running meanwhile sees the whole cache
/// or none of it, never a half-deleted entry under its usual name.
fn remove(path: &Utf8Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Utf8Path::new("."));
    let aside = parent.join(format!(
        ".removing-{}-{}",
        path.file_name().unwrap_or("x"),
        std::process::id()
    ));
    fs_err::rename(path, &aside)?;
    fs_err::remove_dir_all(&aside).with_context(|| format!("removing {path}"))
}

fn clean(dir: &Utf8Path, all: bool) -> Result<String> {
    let stages = dir.join(STAGES_DIR);
    let (stage_bytes, _) = usage(&stages)?;
    remove(&stages)?;
    let mut out = format!("removed the stage cache {stages} ({})\n", mb(stage_bytes));
    if all {
        let downloads = downloads_bytes(dir)?;
        if dir.exists() {
            for entry in fs_err::read_dir(dir)? {
                let path = crate::util::utf8(entry?.path())?;
                if path.is_dir() {
                    remove(&path)?;
                } else {
                    fs_err::remove_file(&path)?;
                }
            }
        }
        out.push_str(&format!(
            "removed the downloads in {dir} ({}): the next build fetches its runtime and wheels again\n",
            mb(downloads)
        ));
    } else {
        out.push_str(&format!(
            "kept the downloads in {dir} ({}); `cargo xtask cache --clean --all` removes them too\n",
            mb(downloads_bytes(dir)?)
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_each_stage_and_clean_keeps_downloads_unless_all() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let cache = crate::build::cache::StageCache::new(dir);
        let key = crate::build::cache::key(Stage::Zip, &[b"x"]);
        cache.put_file(Stage::Zip, &key, &[7; 1_500_000]).unwrap();
        fs_err::create_dir_all(dir.join("wheels/abc")).unwrap();
        fs_err::write(dir.join("wheels/abc/w.whl"), [1; 2_000_000]).unwrap();
        let text = size(dir).unwrap();
        assert!(text.contains("stage zip"), "{text}");
        assert!(text.contains("1.5 MB  1 entries"), "{text}");
        let line = |text: &str, start: &str| {
            let l = text.lines().find(|l| l.trim_start().starts_with(start));
            l.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        assert_eq!(line(&text, "downloads"), "downloads 2.0 MB", "{text}");

        let text = clean(dir, false).unwrap();
        assert!(text.contains("removed the stage cache"), "{text}");
        assert!(text.contains("kept the downloads"), "{text}");
        assert!(!dir.join(STAGES_DIR).exists());
        assert!(dir.join("wheels/abc/w.whl").exists());
        assert_eq!(
            line(&size(dir).unwrap(), "stage cache"),
            "stage cache 0.0 MB"
        );

        clean(dir, true).unwrap();
        assert!(!dir.join("wheels").exists());
        assert_eq!(fs_err::read_dir(dir).unwrap().count(), 0);
    }
}
