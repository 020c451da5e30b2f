//! Stage "zip" through the cache: each file's deflated bytes per content hash, level and
//! mode, kept as a one-entry zip; a warm build copies those bytes into the layer's zips
//! (`raw_copy_file_rename`) instead of deflating again. Cold and warm builds both go through
//! the one-entry zip, so their bytes are the same by construction.

use std::io::{Cursor, Seek, Write};

use anyhow::{Context, Result};
use camino::Utf8Path;
use zip::write::SimpleFileOptions;

use super::{key, Stage, StageCache};
use crate::build::zip::chunked;

/// The key of a file's entry: its content, the compression level, its zip mode, and for a
/// file deflated in parts (`chunked`), the part size.
pub fn entry_key(content_sha256: &str, level: i64, mode: u32, size: u64) -> String {
    let (level, mode) = (level.to_le_bytes(), mode.to_le_bytes());
    let mut parts: Vec<&[u8]> = vec![content_sha256.as_bytes(), &level, &mode];
    let chunk = (chunked::CHUNK as u64).to_le_bytes();
    if size >= chunked::MIN_BYTES {
        parts.push(b"parts");
        parts.push(&chunk);
    }
    key(Stage::Zip, &parts)
}

/// The one-entry zip holding the file at `path` deflated with `options` (which carry the
/// level and `mode`), from the cache when it holds it.
pub fn deflate(
    cache: &StageCache,
    path: &Utf8Path,
    options: SimpleFileOptions,
    level: i64,
    mode: u32,
) -> Result<Vec<u8>> {
    // A file linked from the stage cache is not read: its tag gives the hash.
    let (sha256, size, bytes) = crate::util::digest::sha256_and_bytes(path)?;
    let key = entry_key(&sha256, level, mode, size);
    if let Some(one) = cache.get_file(Stage::Zip, &key) {
        // A damaged entry is made again rather than copied into a layer.
        if zip::ZipArchive::new(Cursor::new(&one)).is_ok_and(|z| z.len() == 1) {
            return Ok(one);
        }
    }
    let (bytes, key) = match bytes {
        Some(bytes) => (bytes, key),
        // Stored under the hash of the bytes compressed, whatever the tag said.
        None => {
            let bytes = fs_err::read(path)?;
            let key = entry_key(
                &crate::util::sha256_hex(&bytes),
                level,
                mode,
                bytes.len() as u64,
            );
            (bytes, key)
        }
    };
    let one = crate::build::zip::one_entry(&bytes, options, level, mode)
        .with_context(|| format!("compressing {path}"))?;
    cache.put_file(Stage::Zip, &key, &one)?;
    Ok(one)
}

/// Appends the entry of the one-entry zip `one` to `zip` as `name`, its deflated bytes as
/// they are.
pub fn append<W: Write + Seek>(zip: &mut zip::ZipWriter<W>, name: &str, one: &[u8]) -> Result<()> {
    let mut archive = zip::ZipArchive::new(Cursor::new(one))
        .with_context(|| format!("reading the cached entry of {name}"))?;
    let file = archive
        .by_index_raw(0)
        .with_context(|| format!("reading the cached entry of {name}"))?;
    zip.raw_copy_file_rename(file, name)
        .map_err(crate::build::zip::plain)
        .with_context(|| format!("writing {name} into the zip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_content_level_and_mode() {
        let a = "a".repeat(64);
        let small = 1000;
        assert_eq!(
            entry_key(&a, 9, 0o644, small),
            entry_key(&a, 9, 0o644, 2000)
        );
        assert_ne!(
            entry_key(&a, 9, 0o644, small),
            entry_key(&"b".repeat(64), 9, 0o644, small)
        );
        assert_ne!(
            entry_key(&a, 9, 0o644, small),
            entry_key(&a, 6, 0o644, small)
        );
        assert_ne!(
            entry_key(&a, 9, 0o644, small),
            entry_key(&a, 9, 0o755, small)
        );
        // An entry deflated in parts is never one deflated whole (a cache of older builds).
        assert_ne!(
            entry_key(&a, 9, 0o644, small),
            entry_key(&a, 9, 0o644, chunked::MIN_BYTES)
        );
    }
}
