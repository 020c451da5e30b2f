//! Reading a layer, zip or folder, into a flat list of files with their sizes, plus the few
//! small files whose contents the analysis needs (distribution metadata, the interpreter's ELF
//! header, and the files the spec's data names, such as the payload's provider list).

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write as _};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// One file (or link) of a layer.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// Relative to the layer root; files inside `site-packages.zip` are written as
    /// `.../site-packages.zip/pkg/mod.pyc`.
    pub path: Utf8PathBuf,
    pub bytes: u64,
    pub compressed: u64,
}

#[derive(Debug, Default)]
pub struct RawLayer {
    pub files: Vec<RawFile>,
    /// Contents of the files `wanted` picked.
    pub contents: BTreeMap<Utf8PathBuf, Vec<u8>>,
    /// True for a folder: compressed sizes come from deflating each file at level 6.
    pub compressed_estimated: bool,
    /// The zip's own size, for a zip.
    pub zip_bytes: Option<u64>,
    /// Unpacked bytes as Lambda counts them (`site-packages.zip` counted as the one file it is).
    pub unpacked_on_disk: u64,
    /// `site-packages.zip` files that were opened and listed.
    pub inner_zips: Vec<Utf8PathBuf>,
    /// Path endings of further files whose contents are read (the spec's data names them,
    /// e.g. the payload's provider list); set before reading.
    pub also_read: Vec<String>,
}

impl RawLayer {
    fn reads(&self, path: &Utf8Path) -> bool {
        wanted(path)
            || self
                .also_read
                .iter()
                .any(|end| path.as_str().ends_with(end.as_str()))
    }
}

/// The name of a zip of site-packages that this tool (or anyone) put on `sys.path`.
fn is_inner_zip(path: &Utf8Path) -> bool {
    path.file_name() == Some("site-packages.zip")
}

/// Files whose contents the analysis always reads; all small except the interpreter, whose ELF
/// header says which libraries it needs.
pub fn wanted(path: &Utf8Path) -> bool {
    let name = path.file_name().unwrap_or_default();
    let in_dist_info = path
        .parent()
        .and_then(Utf8Path::file_name)
        .is_some_and(|p| p.ends_with(".dist-info"));
    (in_dist_info
        && matches!(
            name,
            "METADATA" | "RECORD" | "top_level.txt" | "entry_points.txt"
        ))
        // `site` executes their `import` lines at every start: analyze lists them.
        || name.ends_with(".pth")
        || (path.parent().and_then(Utf8Path::file_name) == Some("bin")
            && name.starts_with("python3.")
            && name[8..].chars().all(|c| c.is_ascii_digit()))
}

/// Reads a layer zip or an unpacked layer folder, and the contents of the files `wanted`
/// picks and of those whose paths end with one of `also_read`.
pub fn read_layer(path: &Utf8Path, also_read: &[String]) -> Result<RawLayer> {
    let meta = fs_err::metadata(path)?;
    if meta.is_dir() {
        read_folder(path, also_read)
    } else {
        let file = fs_err::File::open(path)?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .with_context(|| format!("{path} is neither a folder nor a valid zip"))?;
        let mut out = RawLayer {
            zip_bytes: Some(meta.len()),
            also_read: also_read.to_vec(),
            ..RawLayer::default()
        };
        read_zip(&mut zip, "", true, &mut out).with_context(|| format!("reading {path}"))?;
        Ok(out)
    }
}

/// Reads single files of a layer on demand: the sources the pruning replay's import scan
/// asks for, which `read_layer` does not keep. Members of an inner zip are not read.
pub enum Sources {
    Folder(Utf8PathBuf),
    Zip(std::cell::RefCell<zip::ZipArchive<std::io::BufReader<fs_err::File>>>),
}

impl Sources {
    pub fn open(path: &Utf8Path) -> Result<Sources> {
        if fs_err::metadata(path)?.is_dir() {
            return Ok(Sources::Folder(path.to_owned()));
        }
        let file = fs_err::File::open(path)?;
        let zip = zip::ZipArchive::new(std::io::BufReader::new(file))
            .with_context(|| format!("{path} is neither a folder nor a valid zip"))?;
        Ok(Sources::Zip(std::cell::RefCell::new(zip)))
    }

    /// The text of the file at `rel` (a layer path), if it is there and readable.
    pub fn read(&self, rel: &Utf8Path) -> Option<String> {
        match self {
            Sources::Folder(root) => fs_err::read_to_string(root.join(rel)).ok(),
            Sources::Zip(zip) => {
                let mut zip = zip.try_borrow_mut().ok()?;
                let mut entry = zip.by_name(rel.as_str()).ok()?;
                let mut text = String::new();
                entry.read_to_string(&mut text).ok()?;
                Some(text)
            }
        }
    }
}

fn read_zip<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    prefix: &str,
    outer: bool,
    out: &mut RawLayer,
) -> Result<()> {
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name()?.trim_start_matches('/').to_owned();
        let path = Utf8PathBuf::from(format!("{prefix}{name}"));
        if outer {
            out.unpacked_on_disk += entry.size();
        }
        if outer && is_inner_zip(&path) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {path}"))?;
            drop(entry);
            let mut inner = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .with_context(|| format!("{path} is not a valid zip"))?;
            read_zip(&mut inner, &format!("{path}/"), false, out)
                .with_context(|| format!("reading {path}"))?;
            out.inner_zips.push(path);
            continue;
        }
        out.files.push(RawFile {
            path: path.clone(),
            bytes: entry.size(),
            compressed: entry.compressed_size(),
        });
        if out.reads(&path) {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("reading {path}"))?;
            out.contents.insert(path, bytes);
        }
    }
    Ok(())
}

fn read_folder(root: &Utf8Path, also_read: &[String]) -> Result<RawLayer> {
    let mut out = RawLayer {
        compressed_estimated: true,
        also_read: also_read.to_vec(),
        ..RawLayer::default()
    };
    for w in crate::util::walk(root)? {
        if w.file_type.is_dir() {
            continue;
        }
        out.unpacked_on_disk += w.len;
        let full = root.join(&w.rel);
        if !w.file_type.is_file() {
            // A link is stored as its target's name: about as many bytes as it is long.
            out.files.push(RawFile {
                path: w.rel,
                bytes: w.len,
                compressed: w.len,
            });
            continue;
        }
        let bytes = fs_err::read(&full)?;
        if is_inner_zip(&w.rel) {
            let mut inner = zip::ZipArchive::new(std::io::Cursor::new(bytes))
                .with_context(|| format!("{full} is not a valid zip"))?;
            read_zip(&mut inner, &format!("{}/", w.rel), false, &mut out)
                .with_context(|| format!("reading {full}"))?;
            out.inner_zips.push(w.rel);
            continue;
        }
        out.files.push(RawFile {
            path: w.rel.clone(),
            bytes: w.len,
            compressed: deflated_size(&bytes),
        });
        if out.reads(&w.rel) {
            out.contents.insert(w.rel, bytes);
        }
    }
    Ok(out)
}

/// What a zip at deflate level 6 (zip's and Python's default) would store for these bytes.
pub fn deflated_size(bytes: &[u8]) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut enc = flate2::write::DeflateEncoder::new(Count(0), flate2::Compression::new(6));
    // Writing into a counter cannot fail; if it somehow did, the stored size is the honest answer.
    match enc.write_all(bytes).and_then(|_| enc.finish()) {
        Ok(c) => c.0.min(bytes.len() as u64),
        Err(_) => bytes.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_table() {
        let table = [
            (
                "python/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA",
                true,
            ),
            ("python/six-1.16.0.dist-info/RECORD", true),
            ("x.dist-info/top_level.txt", true),
            ("x.dist-info/entry_points.txt", true),
            ("x.dist-info/licenses/METADATA", false),
            // The payload's own files are data: `RawLayer::also_read` names them.
            (
                "python/lib/python3.11/site-packages/litellm/types/utils.py",
                false,
            ),
            ("python/bin/python3.11", true),
            ("python/bin/python3", false),
            ("python/bin/python3.11-config", false),
            ("python/lib/python3.11/os.py", false),
            ("python/lib/python3.11/site-packages/x.pth", true),
        ];
        for (path, expected) in table {
            assert_eq!(wanted(Utf8Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn also_read_names_further_files() {
        let raw = RawLayer {
            also_read: vec!["litellm/types/utils.py".to_owned()],
            ..RawLayer::default()
        };
        assert!(raw.reads(Utf8Path::new("python/sp/litellm/types/utils.py")));
        assert!(raw.reads(Utf8Path::new("x.dist-info/METADATA")));
        assert!(!raw.reads(Utf8Path::new("python/sp/litellm/main.py")));
    }

    #[test]
    fn deflating_repetitive_bytes_is_smaller() {
        assert!(deflated_size(&[b'a'; 10_000]) < 100);
        assert_eq!(deflated_size(b""), 0);
    }
}
