//! Downloads into a content-addressed cache: hashed while streaming, renamed into place
//! only after the hash matched. Accepts `http(s)://` and `file://` URLs and plain paths.

use anyhow::Result;
use camino::Utf8PathBuf;

use crate::progress::Progress;
use crate::spec::Sha256Hex;

/// Fetches files into the cache. Safe to share between threads and between processes.
pub struct Fetcher {
    pub cache: Utf8PathBuf,
    pub offline: bool,
    pub progress: Progress,
}

impl Fetcher {
    pub fn new(offline: bool, progress: Progress) -> Result<Fetcher> {
        Ok(Fetcher {
            cache: crate::util::cache_dir(),
            offline,
            progress,
        })
    }

    /// Returns the path of a cached file named `file_name` whose sha256 is `expected`,
    /// fetching it from `source` (URL or path) when the cache lacks it or holds bad bytes.
    /// `kind` is the cache subfolder (`python`, `wheels`).
    pub fn fetch(
        &self,
        source: &str,
        file_name: &str,
        expected: &Sha256Hex,
        kind: &str,
    ) -> Result<Utf8PathBuf> {
        let _ = (source, file_name, expected, kind);
        anyhow::bail!("download: not implemented yet")
    }
}
