//! Reading a zip's table of contents: the size of every entry, without unpacking.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

/// Size of one zip entry.
#[derive(Debug, Clone)]
pub struct EntryStat {
    pub path: Utf8PathBuf,
    pub compressed: u64,
    pub uncompressed: u64,
}

#[derive(Debug, Clone)]
pub struct ZipStats {
    pub zip_bytes: u64,
    pub entries: Vec<EntryStat>,
}

/// Sizes of every entry of an existing zip.
pub fn read_stats(zip_path: &Utf8Path) -> Result<ZipStats> {
    let file = fs_err::File::open(zip_path)?;
    let zip_bytes = file.metadata()?.len();
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{zip_path} is not a valid zip"))?;
    let mut entries = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let e = zip.by_index_raw(i)?;
        entries.push(EntryStat {
            path: e.name()?.to_string().into(),
            compressed: e.compressed_size(),
            uncompressed: e.size(),
        });
    }
    Ok(ZipStats { zip_bytes, entries })
}
