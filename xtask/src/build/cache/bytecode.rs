//! Stage "bytecode" through the cache: each `.pyc` per source hash, the path it records as
//! `co_filename` (py_compile's `dfile`, baked into the bytes), the interpreter (version and
//! magic number), the optimize level and the invalidation mode (always unchecked-hash here).
//!
//! A `.pyc` compiled alone and one compiled after thousands of others in the same process are
//! the same bytes on CPython 3.11 (checked on the whole standard library, forwards, backwards
//! and halved); the layer tests compare cold and warm builds byte for byte.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use super::{key, Stage, StageCache};
use crate::build::slim::bytecode::Job;

/// `py_compile`'s invalidation mode, part of the key.
const INVALIDATION: &str = "unchecked-hash";

/// What decides the bytes an interpreter compiles: its full version and its magic number.
pub fn interpreter_id(python: &Utf8Path) -> Result<String> {
    let sh = xshell::Shell::new().context("reading the current folder")?;
    let script = "import sys, importlib.util; print(sys.version); print(sys.implementation.cache_tag); print(importlib.util.MAGIC_NUMBER.hex())";
    let out = xshell::cmd!(sh, "{python} -I -S -B -c {script}")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {python} to ask its version"))?;
    if !out.status.success() {
        bail!(
            "{python} exited with {} when asked its version: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The key of one `.pyc`.
pub fn pyc_key(interpreter: &str, optimize: u8, source_sha256: &str, dfile: &str) -> String {
    key(
        Stage::Bytecode,
        &[
            interpreter.as_bytes(),
            &[optimize],
            INVALIDATION.as_bytes(),
            source_sha256.as_bytes(),
            dfile.as_bytes(),
        ],
    )
}

/// Writes the `.pyc` of every job the cache holds into `stage`; returns the key of each
/// job and whether it still has to be compiled, and how many cached `.pyc` files had changed
/// since they were stored (compiled again).
pub fn restore(
    cache: &StageCache,
    stage: &Utf8Path,
    jobs: &[Job],
    interpreter: &str,
    optimize: u8,
) -> Result<(Vec<(String, bool)>, usize)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut changed = 0;
    for job in jobs {
        // A source linked from the install stage is not read: its tag gives the hash.
        let source = crate::util::digest::sha256(&stage.join(&job.source))?;
        let key = pyc_key(interpreter, optimize, &source, &job.dfile);
        let dest = stage.join(&job.pyc);
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let found = cache.link_file(Stage::Bytecode, &key, &dest)?;
        changed += usize::from(found == super::FileEntry::Changed);
        out.push((key, !found.found()));
    }
    Ok((out, changed))
}

/// Stores the `.pyc` of each compiled job (`compiled` says which compiled) under its key.
pub fn store(
    cache: &StageCache,
    stage: &Utf8Path,
    jobs: &[(&Job, &String)],
    failed: &std::collections::BTreeSet<camino::Utf8PathBuf>,
) -> Result<()> {
    for (job, key) in jobs {
        if failed.contains(&job.source) {
            continue;
        }
        cache.put_file(Stage::Bytecode, key, &fs_err::read(stage.join(&job.pyc))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_interpreter_level_source_and_recorded_path() {
        let k = |i: &str, o: u8, s: &str, d: &str| pyc_key(i, o, s, d);
        let base = k("3.11.7 a", 0, "s1", "/opt/python/x.py");
        assert_eq!(base, k("3.11.7 a", 0, "s1", "/opt/python/x.py"));
        assert_ne!(base, k("3.11.8 a", 0, "s1", "/opt/python/x.py"));
        assert_ne!(base, k("3.11.7 a", 1, "s1", "/opt/python/x.py"));
        assert_ne!(base, k("3.11.7 a", 0, "s2", "/opt/python/x.py"));
        assert_ne!(base, k("3.11.7 a", 0, "s1", "/opt/python/y.py"));
    }
}
