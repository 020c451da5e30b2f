//! Writing the layer zip: reproducible (sorted entries, fixed times and modes), links kept
//! as links, written through a temporary file and a rename.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::os::unix::fs::MetadataExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use zip::write::SimpleFileOptions;

use crate::build::cache::StageCache;
use crate::util::zipinfo::{read_stats, ZipStats};

pub mod chunked;

/// Zips the tree under `root` into `out`. Two calls on the same tree give the same bytes.
pub fn write_zip(root: &Utf8Path, out: &Utf8Path, level: i64) -> Result<ZipStats> {
    write_zip_cached(root, out, level, None)
}

/// [`write_zip`], taking each file's deflated bytes from the stage cache when it has them.
pub fn write_zip_cached(
    root: &Utf8Path,
    out: &Utf8Path,
    level: i64,
    cache: Option<&StageCache>,
) -> Result<ZipStats> {
    let entries = crate::util::walk(root)?;
    crate::util::write_atomic(out, |file| {
        write_in_order(&mut *file, &classify(root, &entries)?, level, cache)
    })
    .with_context(|| format!("writing {out}"))?;
    read_stats(out)
}

/// One entry of a zip, decided before anything is compressed.
pub struct Entry {
    /// The name in the zip (a folder's without its trailing `/`).
    pub name: String,
    pub kind: Kind,
}

pub enum Kind {
    Dir,
    Link(String),
    File {
        path: Utf8PathBuf,
        mode: u32,
        large: bool,
    },
}

/// A file deflated by a worker: by the zip library, or as a one-entry zip of the stage cache.
enum Deflated {
    Prepared(zip::PreparedZipFile),
    Cached(Vec<u8>),
}

/// Writes `entries`, in their order, as a zip into `out`, with fixed times and the given
/// modes. Files are read and deflated by a few threads ahead of the writer, which appends
/// them in order: the same compressor at the same level gives the same bytes as deflating
/// them one after another.
/// With a stage cache, the deflated bytes of each file come from there when it has them
/// (files of 4 GiB and more are deflated as they are). A file of [`chunked::MIN_BYTES`] or
/// more is deflated in parts on every core (`chunked`), with or without the cache, so one
/// large file does not leave the other cores idle at the end.
///
/// Long: the workers and the in-order writer share the channel and the stop flag.
pub fn write_in_order(
    out: impl Write + Seek,
    entries: &[Entry],
    level: i64,
    cache: Option<&StageCache>,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let base = SimpleFileOptions::default()
        .last_modified_time(zip::DateTime::default())
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(level));
    let files: Vec<usize> = (0..entries.len())
        .filter(|&i| matches!(entries[i].kind, Kind::File { .. }))
        .collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let workers = crate::util::worker_threads();
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel(4 * workers);
        for _ in 0..workers {
            let send = send.clone();
            let (files, next, stop) = (&files, &next, &stop);
            scope.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = files.get(n) else { break };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Entry {
                    name,
                    kind: Kind::File { path, mode, large },
                } = &entries[i]
                else {
                    continue;
                };
                let options = base.unix_permissions(*mode).large_file(*large);
                let deflated = match cache {
                    Some(cache) if !*large => {
                        crate::build::cache::zipentry::deflate(cache, path, options, level, *mode)
                            .map(Deflated::Cached)
                    }
                    _ => deflate_one(name, path, options, level, *mode, *large),
                };
                if send.send((n, deflated)).is_err() {
                    break;
                }
            });
        }
        drop(send);
        let written = with_quiet_zip(out, |zip| {
            // Files come back roughly in order; those ahead of their turn wait here.
            let mut ready = std::collections::BTreeMap::new();
            let mut file_no = 0;
            for entry in entries {
                let name = entry.name.as_str();
                match &entry.kind {
                    Kind::Dir => zip
                        .add_directory(name, base.unix_permissions(0o755))
                        .map_err(plain)?,
                    Kind::Link(target) => zip
                        .add_symlink(name, target, base.unix_permissions(0o777))
                        .map_err(plain)?,
                    Kind::File { .. } => {
                        let prepared = loop {
                            if let Some(p) = ready.remove(&file_no) {
                                break p;
                            }
                            let (n, p) = receive
                                .recv()
                                .context("a compressing thread stopped early")?;
                            ready.insert(n, p);
                        };
                        file_no += 1;
                        match prepared? {
                            Deflated::Prepared(p) => zip
                                .add_prepared_file(p)
                                .map_err(plain)
                                .with_context(|| format!("writing {name} into the zip"))?,
                            Deflated::Cached(one) => {
                                crate::build::cache::zipentry::append(zip, name, &one)?
                            }
                        }
                    }
                }
            }
            Ok(())
        });
        // On an error, the workers stop at their next file (none of them stays blocked on a
        // full channel: dropping the receiver ends their sends).
        stop.store(true, Ordering::SeqCst);
        drop(receive);
        written
    })
}

/// Without the cache: a large file (not one of 4 GiB and more) deflated in parts as a
/// one-entry zip, as the cache holds it; the others as a prepared entry of the zip library.
fn deflate_one(
    name: &str,
    path: &Utf8Path,
    options: SimpleFileOptions,
    level: i64,
    mode: u32,
    large: bool,
) -> Result<Deflated> {
    if large || fs_err::metadata(path)?.len() < chunked::MIN_BYTES {
        return deflate(name, path, options).map(Deflated::Prepared);
    }
    one_entry(&fs_err::read(path)?, options, level, mode)
        .with_context(|| format!("compressing {path}"))
        .map(Deflated::Cached)
}

/// The one-entry zip (its entry named `entry`) of a file's `bytes`, as the stage cache holds
/// it: deflated in parts from [`chunked::MIN_BYTES`] on, else by the zip library with
/// `options` (which carry `level` and `mode`).
pub fn one_entry(
    bytes: &[u8],
    options: SimpleFileOptions,
    level: i64,
    mode: u32,
) -> Result<Vec<u8>> {
    if bytes.len() as u64 >= chunked::MIN_BYTES {
        return chunked::one_entry(bytes, deflate_level(level)?, mode);
    }
    let prepared = zip::PreparedZipFile::from_data("entry", options, bytes)?;
    let mut one = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    one.add_prepared_file(prepared)?;
    Ok(one.finish()?.into_inner())
}

/// The zip library's level as flate2's.
fn deflate_level(level: i64) -> Result<u32> {
    u32::try_from(level)
        .ok()
        .filter(|l| *l <= 9)
        .with_context(|| format!("{level} is not a deflate level (0 to 9)"))
}

/// Reads and deflates one file as the zip entry `name`.
fn deflate(
    name: &str,
    path: &Utf8Path,
    options: SimpleFileOptions,
) -> Result<zip::PreparedZipFile> {
    let bytes = fs_err::read(path)?;
    let mut builder = zip::write::ZipFileBuilder::new(name, options)
        .with_context(|| format!("compressing {path}"))?;
    builder
        .write_all(&bytes)
        .with_context(|| format!("compressing {path}"))?;
    builder
        .finish()
        .with_context(|| format!("compressing {path}"))
}

/// Decides what each walked entry becomes: folders, links (a file reachable through several
/// hard links is stored once; the others become links to it) and files with their zip mode.
pub fn classify(root: &Utf8Path, entries: &[crate::util::WalkEntry]) -> Result<Vec<Entry>> {
    let mut seen: HashMap<(u64, u64), Utf8PathBuf> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let path = root.join(&entry.rel);
        let kind = if entry.file_type.is_dir() {
            Kind::Dir
        } else if entry.file_type.is_symlink() {
            let target = fs_err::read_link(&path)?;
            let target = target
                .to_str()
                .with_context(|| format!("link target of {path} is not UTF-8"))?;
            Kind::Link(target.to_owned())
        } else if entry.file_type.is_file() {
            let meta = fs_err::metadata(&path)?;
            let key = (meta.dev(), meta.ino());
            match seen.get(&key) {
                Some(first) if meta.nlink() > 1 => {
                    Kind::Link(relative_link(&entry.rel, first).into_string())
                }
                _ => {
                    if meta.nlink() > 1 {
                        seen.insert(key, entry.rel.clone());
                    }
                    let mode = if entry.mode & 0o111 != 0 {
                        0o755
                    } else {
                        0o644
                    };
                    Kind::File {
                        path,
                        mode,
                        large: meta.len() >= u32::MAX as u64,
                    }
                }
            }
        } else {
            anyhow::bail!("{path} is neither a file, a folder nor a link");
        };
        out.push(Entry {
            name: entry.rel.to_string(),
            kind,
        });
    }
    Ok(out)
}

/// Runs `write` on a `ZipWriter` over `out`, then finishes the archive. Whatever fails, the
/// error is returned and nothing is printed: see [`QuietAfterFailure`].
pub fn with_quiet_zip<W: Write + Seek>(
    mut out: W,
    write: impl FnOnce(&mut zip::ZipWriter<QuietAfterFailure<W>>) -> Result<()>,
) -> Result<()> {
    let pos = out
        .stream_position()
        .context("finding the start of the zip")?;
    let mut zip = zip::ZipWriter::new(QuietAfterFailure {
        inner: out,
        failed: false,
        pos,
        end: pos,
    });
    write(&mut zip)?;
    let sink = zip.finish().map_err(plain).context("finishing the zip")?;
    if sink.failed {
        anyhow::bail!("a write failed while finishing the zip");
    }
    Ok(())
}

/// A zip error whose cause is I/O as that I/O error: `ZipError::Io` both prints its cause and
/// gives it as its source, so the error line would say it twice.
pub fn plain(err: zip::result::ZipError) -> anyhow::Error {
    match err {
        zip::result::ZipError::Io(io) => io.into(),
        other => other.into(),
    }
}

/// The output of a zip, gone quiet after its first failure. `ZipWriter`'s `Drop` finishes an
/// archive left unfinished, and when that fails too (the disk is still full) it prints its
/// debug text to stderr, without a newline, in front of our own error line. Once a write has
/// failed, this plays a file that takes every write and seek without touching the disk, so
/// that second attempt succeeds silently and the first error is the one reported.
pub struct QuietAfterFailure<W> {
    inner: W,
    failed: bool,
    /// The position and the length of the file as the zip writer sees them.
    pos: u64,
    end: u64,
}

impl<W> QuietAfterFailure<W> {
    fn moved_to(&mut self, pos: u64) -> u64 {
        self.pos = pos;
        self.end = self.end.max(pos);
        pos
    }

    /// After a failure the zip writer's own bookkeeping may be behind (a header half
    /// updated), so the pretend file only grows: every write appends, every seek lands at the
    /// end. Positions the zip writer reads then never go backwards, which it checks.
    fn pretend_append(&mut self, len: usize) -> u64 {
        self.end += len as u64;
        self.pos = self.end;
        self.end
    }

    fn note<T>(&mut self, result: std::io::Result<T>, len: usize) -> std::io::Result<T> {
        if let Err(err) = &result {
            if err.kind() != std::io::ErrorKind::Interrupted {
                self.failed = true;
                self.pretend_append(len);
            }
        }
        result
    }
}

impl<W: Write> Write for QuietAfterFailure<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed {
            self.pretend_append(buf.len());
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        let n = self.note(result, buf.len())?;
        self.moved_to(self.pos + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.note(result, 0)
    }
}

impl<W: Seek> Seek for QuietAfterFailure<W> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        if self.failed {
            return Ok(self.pretend_append(0));
        }
        let result = self.inner.seek(to);
        let pos = self.note(result, 0)?;
        Ok(self.moved_to(pos))
    }
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
mod tests;
