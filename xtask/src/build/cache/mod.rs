//! The stage cache: what a build step made from its inputs, kept under the cache folder
//! (`<cache>/stages/<stage>/<key>`) and keyed by a hash of everything that decides the bytes
//! (the inputs' sha256, the tool and its settings, a format version). A build with the same
//! inputs then copies results instead of making them again.
//!
//! Safe for concurrent builds the way the download cache is: an entry is written into a
//! temporary name inside the cache and renamed into place, so a reader sees a whole entry or
//! none; two builds racing to write the same key write the same bytes, and the loser's copy
//! is thrown away. Entries are never changed in place: builds link or copy out of them, and
//! replace (never write through) what they linked.

pub mod bytecode;
pub mod install;
pub mod runtime;
pub mod uptodate;
pub mod zipentry;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever what an entry holds, or how it is made, changes: old entries are then
/// never found again (and `cargo xtask cache --clean` removes them).
pub const FORMAT: u32 = 2;

/// The folder under the cache folder that holds the stages.
pub const STAGES_DIR: &str = "stages";

/// A build step whose results are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Each installed wheel: its site-packages files and what the installer said.
    Install,
    /// Each compiled `.pyc`.
    Bytecode,
    /// Each stripped ELF file.
    Strip,
    /// Each deflated zip entry (the layer zip's and `site-packages.zip`'s).
    Zip,
    /// Minimization's trace of a tree (by its content, the workloads, providers and xtask).
    Trace,
    /// The import scans of pruning, per distribution (by the scanner and the sources).
    Imports,
    /// Passing proofs of minimized layers (by the zip's sha256 and every verify input).
    Proof,
    /// Each runtime archive, unpacked and checked (by its sha256, the architecture, xtask).
    Runtime,
    /// Pruning's decisions for a whole tree (by its listing, its sources, the rules and
    /// protections, and xtask).
    Prune,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Install,
        Stage::Bytecode,
        Stage::Strip,
        Stage::Zip,
        Stage::Trace,
        Stage::Imports,
        Stage::Proof,
        Stage::Runtime,
        Stage::Prune,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Install => "install",
            Stage::Bytecode => "bytecode",
            Stage::Strip => "strip",
            Stage::Zip => "zip",
            Stage::Trace => "trace",
            Stage::Imports => "imports",
            Stage::Proof => "proof",
            Stage::Runtime => "runtime",
            Stage::Prune => "prune",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What `StageCache::link_file` found for a file entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileEntry {
    /// Linked: its tag is current.
    Linked,
    /// Copied: the cache's file system keeps no tags.
    Copied,
    /// None stored.
    Missing,
    /// Changed since it was stored (a stale tag: edited in place through a built tree).
    Changed,
}

impl FileEntry {
    /// Whether the entry is now at the destination.
    pub fn found(self) -> bool {
        matches!(self, FileEntry::Linked | FileEntry::Copied)
    }
}

/// Hits and misses of one stage in one build (report.json `cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCount {
    pub stage: String,
    pub hits: u64,
    pub misses: u64,
}

/// The stage cache of one build; counts its hits and misses per stage.
pub struct StageCache {
    root: Utf8PathBuf,
    hits: [AtomicU64; Stage::ALL.len()],
    misses: [AtomicU64; Stage::ALL.len()],
    tags_work: std::sync::OnceLock<bool>,
}

/// The key of an entry: a hash of the stage, the format and each part (length-prefixed, so
/// that `("ab", "c")` and `("a", "bc")` differ).
pub fn key(stage: Stage, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(format!("stage-cache/{FORMAT}/{}", stage.name()));
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

impl StageCache {
    /// The stage cache inside the cache folder `cache` (see `core::cache_dir`).
    pub fn new(cache: &Utf8Path) -> StageCache {
        StageCache {
            root: cache.join(STAGES_DIR),
            hits: Default::default(),
            misses: Default::default(),
            tags_work: std::sync::OnceLock::new(),
        }
    }

    fn dir(&self, stage: Stage) -> Utf8PathBuf {
        self.root.join(stage.name())
    }

    /// Where the entry `key` of `stage` is (two-letter fan-out keeps folders small).
    pub fn path(&self, stage: Stage, key: &str) -> Utf8PathBuf {
        self.dir(stage).join(&key[..2]).join(key)
    }

    fn count(&self, stage: Stage, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter[stage.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The bytes of a file entry, counted as a hit; `None` (a miss) when there is none.
    pub fn get_file(&self, stage: Stage, key: &str) -> Option<Vec<u8>> {
        let found = std::fs::read(self.path(stage, key)).ok();
        self.count(stage, found.is_some());
        found
    }

    /// Puts the file entry `key` at `dest` (replacing what is there), counted as a hit; a miss
    /// when there is none, or when it changed since it was stored.
    ///
    /// An entry whose tag (`util::digest`, set by `put_file`) is current is hard-linked: the
    /// built tree then shares its bytes, and an edit in place there shows as a stale tag here.
    /// A stale or missing tag where tags work means exactly that: the entry is a miss, made
    /// again and stored anew. Where the file system keeps no tags, the bytes are copied.
    pub fn link_file(&self, stage: Stage, key: &str, dest: &Utf8Path) -> Result<FileEntry> {
        let path = self.path(stage, key);
        // A current tag means the file is there: the hit costs no `stat` of its own.
        let found = if crate::util::digest::tagged(&path).is_some() {
            FileEntry::Linked
        } else if !path.is_file() {
            FileEntry::Missing
        } else if self.tags_work() {
            FileEntry::Changed
        } else {
            FileEntry::Copied
        };
        self.count(stage, found.found());
        if found.found() {
            if dest.symlink_metadata().is_ok() {
                fs_err::remove_file(dest)?;
            }
            if found == FileEntry::Linked {
                crate::util::link_or_copy(&path, dest)?;
            } else {
                fs_err::copy(&path, dest)?;
            }
        }
        Ok(found)
    }

    /// Whether the cache's file system keeps the tags of `util::digest` (asked once).
    fn tags_work(&self) -> bool {
        *self.tags_work.get_or_init(|| {
            let Ok(()) = fs_err::create_dir_all(&self.root) else {
                return false;
            };
            let Ok(probe) = tempfile::Builder::new()
                .prefix(".tag-probe-")
                .tempfile_in(&self.root)
            else {
                return false;
            };
            let Some(path) = Utf8Path::from_path(probe.path()) else {
                return false;
            };
            crate::util::digest::tag(path, b"");
            crate::util::digest::tagged(path).is_some()
        })
    }

    /// Stores `bytes` as the file entry `key`: written beside it, then renamed into place.
    pub fn put_file(&self, stage: Stage, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(stage, key);
        let dir = path.parent().unwrap_or(&self.root);
        fs_err::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".part-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {dir}"))?;
        std::io::Write::write_all(&mut tmp, bytes)
            .with_context(|| format!("writing a stage cache entry in {dir}"))?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting the permissions of a temporary file in {dir}"))?;
        // A build that links this entry reads its hash from the tag (`util::digest`).
        if let Some(tmp_path) = Utf8Path::from_path(tmp.path()) {
            crate::util::digest::tag(tmp_path, bytes);
        }
        // A concurrent build renaming the same bytes onto the same name is harmless.
        tmp.persist(&path)
            .with_context(|| format!("moving a stage cache entry into {path}"))?;
        Ok(())
    }

    /// The folder entry `key`, counted as a hit; `None` (a miss) when there is none.
    pub fn get_dir(&self, stage: Stage, key: &str) -> Option<Utf8PathBuf> {
        let path = self.path(stage, key);
        let found = path.is_dir();
        self.count(stage, found);
        found.then_some(path)
    }

    /// Removes the folder entry `key` (renamed aside first, so no reader sees half of it).
    pub fn remove_dir(&self, stage: Stage, key: &str) -> Result<()> {
        let path = self.path(stage, key);
        let aside = path.with_file_name(format!(".removed-{key}-{}", std::process::id()));
        match std::fs::rename(&path, &aside) {
            Ok(()) => fs_err::remove_dir_all(&aside)?,
            // Another build removed it first.
            Err(_) if !path.exists() => {}
            Err(err) => return Err(err).with_context(|| format!("removing {path}")),
        }
        Ok(())
    }

    /// Makes the folder entry `key`: `fill` writes it under a temporary name inside the
    /// cache, which is then renamed into place. When another build got there first, its
    /// entry (the same content) is kept and ours removed. Returns the entry's path.
    pub fn put_dir(
        &self,
        stage: Stage,
        key: &str,
        fill: impl FnOnce(&Utf8Path) -> Result<()>,
    ) -> Result<Utf8PathBuf> {
        let path = self.path(stage, key);
        let dir = path.parent().unwrap_or(&self.root);
        fs_err::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".part-")
            .permissions(crate::util::new_dir_permissions())
            .tempdir_in(dir)
            .with_context(|| format!("creating a temporary folder in {dir}"))?;
        let tmp_path = crate::util::utf8(tmp.path().to_path_buf())?;
        fill(&tmp_path)?;
        match std::fs::rename(&tmp_path, &path) {
            Ok(()) => {
                // Renamed away: nothing left for the guard to delete.
                let _ = tmp.keep();
            }
            // Another build renamed its entry first (rename onto a non-empty folder fails);
            // the guard removes ours.
            Err(_) if path.is_dir() => {}
            Err(err) => {
                return Err(err).with_context(|| format!("moving a stage cache entry into {path}"))
            }
        }
        Ok(path)
    }

    /// The folder entry `key` whose files `files` a build links (made by `fill`, which writes
    /// the file `about` last): made when missing, and made anew when one of its files is newer
    /// than `about` (edited in place through a built tree). Each file is tagged with its hash
    /// (`util::digest`), which the links share.
    pub fn linked_dir(
        &self,
        stage: Stage,
        key: &str,
        files: &str,
        about: &str,
        fill: impl Fn(&Utf8Path) -> Result<()>,
    ) -> Result<LinkedDir> {
        let fill = |dir: &Utf8Path| {
            fill(dir)?;
            // A tag changes no modification time: `about` stays the newest.
            crate::util::digest::tag_tree(&dir.join(files))
        };
        let entry = match self.get_dir(stage, key) {
            Some(entry) => entry,
            None => self.put_dir(stage, key, fill)?,
        };
        let walked = crate::util::walk(&entry.join(files))?;
        let Some(changed) = changed_since(&entry.join(about), &walked)? else {
            return Ok(LinkedDir {
                entry,
                walked,
                remade: None,
            });
        };
        self.remove_dir(stage, key)?;
        let entry = self.put_dir(stage, key, fill)?;
        let walked = crate::util::walk(&entry.join(files))?;
        Ok(LinkedDir {
            entry,
            walked,
            remade: Some(changed),
        })
    }

    /// Hits and misses per stage so far, for the stages that were asked at all.
    pub fn counts(&self) -> Vec<StageCount> {
        Stage::ALL
            .iter()
            .map(|&s| StageCount {
                stage: s.name().to_owned(),
                hits: self.hits[s.index()].load(Ordering::Relaxed),
                misses: self.misses[s.index()].load(Ordering::Relaxed),
            })
            .filter(|c| c.hits + c.misses > 0)
            .collect()
    }
}

/// A hash of the tree under `root`: every path, kind, mode, link target and file content.
pub fn tree_hash(root: &Utf8Path) -> Result<String> {
    let mut h = Sha256::new();
    for w in crate::util::walk(root)? {
        let path = root.join(&w.rel);
        let what = if w.file_type.is_dir() {
            "dir".to_owned()
        } else if w.file_type.is_symlink() {
            format!("link {}", fs_err::read_link(&path)?.display())
        } else {
            crate::util::digest::sha256(&path)?
        };
        h.update(format!("{} {:o} {what}\n", w.rel, w.mode & 0o7777));
    }
    Ok(hex::encode(h.finalize()))
}

/// What identifies this xtask binary (path, size, modification time): code that runs inside
/// a sandbox (the tracing hook) is part of it.
pub fn exe_identity() -> Result<String> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let meta = fs_err::metadata(&exe)?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(format!(
        "{}\n{}\n{}",
        exe.display(),
        meta.len(),
        mtime.as_nanos()
    ))
}

/// Puts the tree `from` (walked: `walked`) into `to` (which may exist): folders made, files
/// hard-linked (copied across file systems), symbolic links recreated. Refuses to replace
/// anything: `clash` names what is in the way. Linking costs one directory entry per file,
/// where a copy writes every byte again. The build changes a linked file only by replacing it
/// (`util::rewrite_file`), so the entry keeps its bytes; the finished tree still shares the
/// bytes of what it did not change (`changed_since` notices an edit in place).
pub fn link_tree(
    from: &Utf8Path,
    walked: &[crate::util::WalkEntry],
    to: &Utf8Path,
    clash: &dyn Fn(&Utf8Path) -> String,
) -> Result<()> {
    for w in walked {
        let src = from.join(&w.rel);
        let dest = to.join(&w.rel);
        if w.file_type.is_dir() {
            fs_err::create_dir_all(&dest)?;
            continue;
        }
        if dest.symlink_metadata().is_ok() {
            anyhow::bail!("{}", clash(&w.rel));
        }
        if w.file_type.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&src)?, &dest)
                .with_context(|| format!("linking {dest}"))?;
        } else {
            crate::util::link_or_copy(&src, &dest)?;
        }
    }
    Ok(())
}

/// The first file of a cache entry modified after the entry was made (the time of `about`,
/// which the entry writes last), if any. A built tree links these files, so an edit in place
/// there (which keeps the link) shows here.
fn changed_since(
    about: &Utf8Path,
    walked: &[crate::util::WalkEntry],
) -> Result<Option<Utf8PathBuf>> {
    let made = crate::util::mtime_ns(&fs_err::metadata(about)?);
    Ok(walked
        .iter()
        .find(|w| w.file_type.is_file() && w.mtime_ns > made)
        .map(|w| w.rel.clone()))
}

/// A folder entry that builds link files out of, checked before use.
pub struct LinkedDir {
    pub entry: Utf8PathBuf,
    /// The walk of `entry/<files>`.
    pub walked: Vec<crate::util::WalkEntry>,
    /// The file (under `<files>`) found changed since the entry was made, when it was made anew.
    pub remade: Option<Utf8PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_changes_with_each_part_its_stage_and_how_parts_split() {
        let base = key(Stage::Bytecode, &[b"src", b"3.11", b"0"]);
        assert_eq!(base, key(Stage::Bytecode, &[b"src", b"3.11", b"0"]));
        assert_ne!(base, key(Stage::Bytecode, &[b"src2", b"3.11", b"0"]));
        assert_ne!(base, key(Stage::Bytecode, &[b"src", b"3.12", b"0"]));
        assert_ne!(base, key(Stage::Bytecode, &[b"src", b"3.11", b"1"]));
        assert_ne!(base, key(Stage::Strip, &[b"src", b"3.11", b"0"]));
        assert_ne!(base, key(Stage::Bytecode, &[b"sr", b"c3.11", b"0"]));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn a_linked_file_entry_edited_in_place_is_a_miss_and_stored_anew() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let cache = StageCache::new(&dir.join("cache"));
        let k = key(Stage::Bytecode, &[b"a.py"]);
        cache.put_file(Stage::Bytecode, &k, b"compiled").unwrap();
        let tree = dir.join("tree.pyc");
        assert!(cache.link_file(Stage::Bytecode, &k, &tree).unwrap().found());
        assert_eq!(fs_err::read(&tree).unwrap(), b"compiled");
        if !cache.tags_work() {
            let entry = fs_err::metadata(cache.path(Stage::Bytecode, &k)).unwrap();
            assert_ne!(
                entry.ino(),
                fs_err::metadata(&tree).unwrap().ino(),
                "copied"
            );
            eprintln!("skipped: the cache's file system keeps no tags");
            return;
        }
        let entry = cache.path(Stage::Bytecode, &k);
        assert_eq!(
            fs_err::metadata(&entry).unwrap().ino(),
            fs_err::metadata(&tree).unwrap().ino(),
            "linked"
        );
        // An edit in place through the built tree reaches the entry: the next build must not
        // take it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs_err::write(&tree, b"edited!!").unwrap();
        let again = dir.join("again.pyc");
        assert_eq!(
            cache.link_file(Stage::Bytecode, &k, &again).unwrap(),
            FileEntry::Changed
        );
        assert!(!again.exists());
        cache.put_file(Stage::Bytecode, &k, b"compiled").unwrap();
        assert_eq!(
            cache.link_file(Stage::Bytecode, &k, &again).unwrap(),
            FileEntry::Linked
        );
        assert_eq!(fs_err::read(&again).unwrap(), b"compiled");
        assert_eq!(
            fs_err::read(&tree).unwrap(),
            b"edited!!",
            "the old tree keeps its edit"
        );
    }

    #[test]
    fn entries_round_trip_and_a_second_writer_loses_quietly() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = StageCache::new(Utf8Path::from_path(tmp.path()).unwrap());
        let k = key(Stage::Zip, &[b"x"]);
        assert_eq!(cache.get_file(Stage::Zip, &k), None);
        cache.put_file(Stage::Zip, &k, b"deflated").unwrap();
        cache.put_file(Stage::Zip, &k, b"deflated").unwrap();
        assert_eq!(cache.get_file(Stage::Zip, &k).unwrap(), b"deflated");

        let d = key(Stage::Install, &[b"wheel"]);
        assert!(cache.get_dir(Stage::Install, &d).is_none());
        for _ in 0..2 {
            let path = cache
                .put_dir(Stage::Install, &d, |dir| {
                    fs_err::write(dir.join("a.py"), "x = 1\n")?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(
                fs_err::read_to_string(path.join("a.py")).unwrap(),
                "x = 1\n"
            );
        }
        assert!(cache.get_dir(Stage::Install, &d).is_some());
        let leftovers: Vec<_> = crate::util::walk(&cache.root)
            .unwrap()
            .into_iter()
            .filter(|w| w.rel.as_str().contains(".part-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let counts = cache.counts();
        assert_eq!(
            counts,
            vec![
                StageCount {
                    stage: "install".into(),
                    hits: 1,
                    misses: 1
                },
                StageCount {
                    stage: "zip".into(),
                    hits: 1,
                    misses: 1
                }
            ]
        );
    }
}
