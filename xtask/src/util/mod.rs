//! Small helpers shared by every subcommand: where things live, hashing, atomic writes.

pub mod cgroup;
pub mod cpu;
pub mod debian;
pub mod digest;
pub mod elf;
pub mod fmt;
pub mod progress;
pub mod which;
pub mod zipinfo;

pub use which::{which, which_any};

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

/// True when output should be plain lines: in CI, or when stderr is not a terminal.
pub fn plain_output() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
        || !io::stderr().is_terminal()
}

/// How many threads (or processes) a build step splits its CPU work across: the cores, at
/// least two (a step also waits on the disk) and at most eight.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Lower-case hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex sha256 of a file's content.
pub fn sha256_file(path: &Utf8Path) -> Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {path}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `path` through a temporary file in the same folder and a rename, so that
/// a reader never sees a half-written file and a failure leaves the old one in place.
/// The file gets the usual mode of a new file (0666 less the umask), not the temporary's 0600:
/// the rename keeps the temporary's mode.
pub fn write_atomic(
    path: &Utf8Path,
    write: impl FnOnce(&mut fs_err::File) -> Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    fs_err::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().unwrap_or("out")))
        .suffix(".tmp")
        .permissions(new_file_permissions())
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {dir}"))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut file = fs_err::File::from_parts(file, tmp_path.to_path_buf());
    write(&mut file)?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    tmp_path
        .persist(path)
        .with_context(|| format!("renaming the finished file into {path}"))?;
    Ok(())
}

/// Replaces the file at `path` with `bytes`, keeping its permissions: a new file, never a
/// write through the old one, so a hard link to the old bytes (a stage cache entry the
/// install linked into the layer) keeps them.
pub fn rewrite_file(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    let permissions = fs_err::metadata(path)?.permissions();
    fs_err::remove_file(path)?;
    fs_err::write(path, bytes)?;
    fs_err::set_permissions(path, permissions)?;
    // The bytes are at hand: later steps (the zips) take their hash from the tag.
    digest::tag(path, bytes);
    Ok(())
}

/// Links `from` at `to` (a new name for the same file), or copies it when the two are on
/// different file systems or linking is refused.
pub fn link_or_copy(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        fs_err::copy(from, to)?;
    }
    Ok(())
}

/// 0666 for a file created with it (the kernel takes the umask off, as for any new file).
pub fn new_file_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o666)
}

/// 0777 for a folder created with it, less the umask: for temporary folders renamed into
/// finished outputs, which tempfile would otherwise leave 0700.
pub fn new_dir_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o777)
}

/// Writes bytes to `path` atomically.
pub fn write_bytes_atomic(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| {
        f.write_all(bytes)?;
        Ok(())
    })
}

/// Converts a std path into a UTF-8 path, naming it in the error.
pub fn utf8(path: std::path::PathBuf) -> Result<Utf8PathBuf> {
    Utf8PathBuf::from_path_buf(path)
        .map_err(|p| anyhow::anyhow!("path is not UTF-8: {}", p.display()))
}

/// Total size in bytes of the regular files under `dir` (links are not followed).
pub fn tree_bytes(dir: &Utf8Path) -> Result<u64> {
    let mut total = 0;
    for entry in walk(dir)? {
        if entry.file_type.is_file() {
            total += entry.len;
        }
    }
    Ok(total)
}

/// One entry of a directory walk.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Path relative to the walked root, `/`-separated.
    pub rel: Utf8PathBuf,
    pub file_type: std::fs::FileType,
    pub len: u64,
    pub mode: u32,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// Every entry under `root` (not `root` itself), sorted by relative path, links not followed.
pub fn walk(root: &Utf8Path) -> Result<Vec<WalkEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![Utf8PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| anyhow::anyhow!("file name is not UTF-8 in {dir}: {n:?}"))?;
            let child = rel.join(name);
            // fstatat on the open folder (links not followed): no path lookup per entry.
            let meta = entry
                .metadata()
                .with_context(|| format!("reading the metadata of {}", root.join(&child)))?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                stack.push(child.clone());
            }
            out.push(WalkEntry {
                rel: child,
                file_type,
                len: meta.len(),
                mode: meta.permissions().mode(),
                mtime_ns: mtime_ns(&meta),
            });
        }
    }
    // The order of `Utf8Path`'s comparison (component by component), by comparing bytes with
    // the separator below every other byte: the same order, without walking components for
    // each of the ~400,000 comparisons a layer's tree takes (a second in a debug build).
    out.sort_by_cached_key(|w| path_order_key(&w.rel));
    Ok(out)
}

/// The modification time of `meta`, nanoseconds since the epoch.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// A key whose byte order is `Utf8Path`'s order for a relative path without `.` or `..`.
pub fn path_order_key(path: &Utf8Path) -> Vec<u8> {
    let mut key = path.as_str().as_bytes().to_vec();
    for b in &mut key {
        if *b == b'/' {
            *b = 0;
        }
    }
    key
}

/// The files (not folders) under `root`, relative to it, in `walk`'s order.
pub fn files_under(root: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    Ok(walk(root)?
        .into_iter()
        .filter(|w| w.file_type.is_file())
        .map(|w| w.rel)
        .collect())
}

/// Deletes `files` (relative to `root`), then every folder they leave empty, deepest first.
/// `why` names the reason of a deletion in its error.
pub fn remove_files_and_empty_dirs<'a>(
    root: &Utf8Path,
    files: impl IntoIterator<Item = &'a Utf8PathBuf>,
    why: impl Fn(&Utf8Path) -> String,
) -> Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in files {
        fs_err::remove_file(root.join(path)).with_context(|| why(path))?;
        let mut p = path.parent();
        while let Some(d) = p.filter(|d| !d.as_str().is_empty()) {
            dirs.insert(d.to_owned());
            p = d.parent();
        }
    }
    // Deepest first, so a parent is empty by the time it is tried.
    let mut dirs: Vec<_> = dirs.into_iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let full = root.join(&d);
        if full.is_dir() && fs_err::read_dir(&full)?.next().is_none() {
            fs_err::remove_dir(&full)?;
        }
    }
    Ok(())
}

/// Runs an `xshell` command to its end, quietly, with its output captured; its stdout, or
/// an error naming the command, its status and its stderr (xshell's own error lacks stderr,
/// the part that says what went wrong).
pub fn run(cmd: xshell::Cmd<'_>) -> Result<String> {
    let line = cmd.to_string();
    let program = line.split(' ').next().unwrap_or_default().to_owned();
    let output = cmd
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            line.chars().take(300).collect::<String>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{program} printed something that is not UTF-8"))
}

/// A shell for [`run`] and `xshell::cmd!`.
pub fn shell() -> Result<xshell::Shell> {
    xshell::Shell::new().context("creating an xshell shell")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// This process's umask, from /proc (setting it to read it would race other tests).
    pub(crate) fn umask() -> u32 {
        let status = fs_err::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn atomic_writes_get_the_mode_of_a_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let path = dir.join("out.json");
        write_bytes_atomic(&path, b"{}").unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "mode {mode:o}");
        assert_eq!(fs_err::read(&path).unwrap(), b"{}");
        // Replacing keeps the mode and leaves no temporary behind.
        write_bytes_atomic(&path, b"[]").unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask(), "mode {mode:o}");
        assert_eq!(fs_err::read_dir(dir).unwrap().count(), 1);
    }
}
