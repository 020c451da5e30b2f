//! A file's sha256 that travels with the file. The stage cache tags each file it stores with
//! its sha256 in an extended attribute, together with the file's size and modification time
//! at tagging. A hard link is the same inode, so a built tree's linked file carries the tag of
//! its cache entry, and its hash costs a `stat` and a `getxattr` instead of reading it.
//!
//! A tag counts only while the file's size and modification time are the ones it recorded: an
//! edit in place changes the time, and the file is then read and hashed as if untagged. So is
//! a file with no tag, one on a file system without user attributes (tmpfs before Linux 6.6,
//! some network file systems), or one the caller may not tag: tagging is best effort. Like
//! `make` and git's index, this trusts that a file whose size and modification time did not
//! change did not change; only the build writes a cache entry, just before it tags it.

use anyhow::Result;
use camino::Utf8Path;

/// The attribute's name. Its value is 49 bytes, small enough for the spare room of an ext4
/// inode (a longer one costs a block of its own per file): a format byte (1), the modification
/// time (nanoseconds, i64 little-endian) and the size (u64 little-endian) at tagging, and the
/// sha256.
const ATTR: &str = "user.layer-sha256";
const FORMAT: u8 = 1;
const LEN: usize = 1 + 8 + 8 + 32;

/// The attribute's value for a file of this time and size and content hash.
fn value(mtime_ns: i128, size: u64, sha256: &[u8; 32]) -> Option<[u8; LEN]> {
    let mut v = [0u8; LEN];
    v[0] = FORMAT;
    v[1..9].copy_from_slice(&i64::try_from(mtime_ns).ok()?.to_le_bytes());
    v[9..17].copy_from_slice(&size.to_le_bytes());
    v[17..].copy_from_slice(sha256);
    Some(v)
}

/// Tags the file at `path`, whose content is `bytes`, with their sha256 (best effort: a file
/// system or a file that refuses the attribute goes untagged). Returns the sha256 (hex).
pub fn tag(path: &Utf8Path, bytes: &[u8]) -> String {
    use sha2::Digest;
    let sha256: [u8; 32] = sha2::Sha256::digest(bytes).into();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_file() && meta.len() == bytes.len() as u64 {
            if let Some(v) = value(crate::util::mtime_ns(&meta), meta.len(), &sha256) {
                let _ = rustix::fs::setxattr(
                    path.as_std_path(),
                    ATTR,
                    &v,
                    rustix::fs::XattrFlags::empty(),
                );
            }
        }
    }
    hex::encode(sha256)
}

/// Tags every file under `root` (reading each): a stage cache entry just made.
pub fn tag_tree(root: &Utf8Path) -> Result<()> {
    for rel in crate::util::files_under(root)? {
        let path = root.join(rel);
        tag(&path, &fs_err::read(&path)?);
    }
    Ok(())
}

/// The sha256 (hex) of the file at `path` from its tag, when it has a current one.
pub fn tagged(path: &Utf8Path) -> Option<String> {
    tagged_with_size(path).map(|(sha256, _)| sha256)
}

/// [`tagged`], with the file's size from the same `stat`.
fn tagged_with_size(path: &Utf8Path) -> Option<(String, u64)> {
    let mut buf = [0u8; LEN + 1];
    let n = rustix::fs::getxattr(path.as_std_path(), ATTR, &mut buf[..]).ok()?;
    if n != LEN || buf[0] != FORMAT {
        return None;
    }
    let meta = std::fs::metadata(path).ok()?;
    let sha256: [u8; 32] = buf[17..LEN].try_into().ok()?;
    (value(crate::util::mtime_ns(&meta), meta.len(), &sha256)? == buf[..LEN])
        .then(|| (hex::encode(sha256), meta.len()))
}

/// The sha256 and size of the file at `path`: from its tag when current, else read and
/// hashed. The bytes come along when they had to be read.
pub fn sha256_and_bytes(path: &Utf8Path) -> Result<(String, u64, Option<Vec<u8>>)> {
    if let Some((sha256, size)) = tagged_with_size(path) {
        return Ok((sha256, size, None));
    }
    let bytes = fs_err::read(path)?;
    Ok((
        crate::util::sha256_hex(&bytes),
        bytes.len() as u64,
        Some(bytes),
    ))
}

/// The sha256 of the file at `path`: from its tag when current, else read and hashed.
pub fn sha256(path: &Utf8Path) -> Result<String> {
    if let Some(sha256) = tagged(path) {
        return Ok(sha256);
    }
    crate::util::sha256_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this folder's file system keeps user attributes (some CI file systems do not).
    fn keeps_tags(dir: &Utf8Path) -> bool {
        let probe = dir.join("probe");
        fs_err::write(&probe, b"x").unwrap();
        tag(&probe, b"x");
        tagged(&probe).is_some()
    }

    #[test]
    fn a_tag_gives_the_hash_until_the_file_changes_and_a_link_shares_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let file = dir.join("a.py");
        fs_err::write(&file, b"x = 1\n").unwrap();
        let real = crate::util::sha256_hex(b"x = 1\n");
        assert_eq!(tagged(&file), None, "untagged");
        assert_eq!(sha256(&file).unwrap(), real, "an untagged file is read");
        if !keeps_tags(dir) {
            eprintln!("skipped: {dir} keeps no user attributes");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let blocks = fs_err::metadata(&file).unwrap().blocks();
        assert_eq!(tag(&file, b"x = 1\n"), real);
        assert_eq!(
            fs_err::metadata(&file).unwrap().blocks(),
            blocks,
            "the tag takes no block of its own"
        );
        assert_eq!(tagged(&file).as_deref(), Some(real.as_str()));
        let link = dir.join("link.py");
        std::fs::hard_link(&file, &link).unwrap();
        assert_eq!(sha256(&link).unwrap(), real, "a hard link carries the tag");
        let (hash, _, bytes) = sha256_and_bytes(&link).unwrap();
        assert_eq!(
            (hash.as_str(), bytes),
            (real.as_str(), None),
            "nothing read"
        );

        // An edit in place (through the link, same size) moves the time: the tag stops counting.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs_err::write(&link, b"x = 2\n").unwrap();
        assert_eq!(tagged(&file), None);
        assert_eq!(
            sha256(&file).unwrap(),
            crate::util::sha256_hex(b"x = 2\n"),
            "the edited bytes, not the tag"
        );
        let (_, _, bytes) = sha256_and_bytes(&file).unwrap();
        assert_eq!(bytes.as_deref(), Some(&b"x = 2\n"[..]));

        // A replaced file (a new inode) has no tag.
        fs_err::remove_file(&link).unwrap();
        fs_err::write(&link, b"x = 1\n").unwrap();
        assert_eq!(tagged(&link), None);
    }

    #[test]
    fn a_malformed_tag_counts_as_none() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        if !keeps_tags(dir) {
            return;
        }
        let file = dir.join("a");
        fs_err::write(&file, b"abc").unwrap();
        tag(&file, b"abc");
        let mut buf = [0u8; 64];
        let n = rustix::fs::getxattr(file.as_std_path(), ATTR, &mut buf[..]).unwrap();
        let good = buf[..n].to_vec();
        assert_eq!(good.len(), LEN);
        let mut other_format = good.clone();
        other_format[0] = 2;
        let mut other_size = good.clone();
        other_size[9] ^= 1;
        for value in [vec![], good[..LEN - 1].to_vec(), other_format, other_size] {
            rustix::fs::setxattr(
                file.as_std_path(),
                ATTR,
                &value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            assert_eq!(tagged(&file), None, "{value:?}");
        }
    }
}
