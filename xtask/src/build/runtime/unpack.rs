//! Safe extraction of a runtime archive: no entry leaves the folder, no link points out of it,
//! nothing is written through a link.

use std::io::{BufReader, Read};

use anyhow::{bail, Context, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use super::{place, Compression, Place};

/// `path` as a relative path without `.` or `..`; refuses absolute paths and `..`.
pub(super) fn safe_relative(path: &str) -> Result<Utf8PathBuf> {
    let mut out = Utf8PathBuf::new();
    for component in Utf8Path::new(path).components() {
        match component {
            Utf8Component::Normal(part) => out.push(part),
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => bail!("archive entry `{path}` contains `..`"),
            Utf8Component::RootDir | Utf8Component::Prefix(_) => {
                bail!("archive entry `{path}` is an absolute path")
            }
        }
    }
    if out.as_str().is_empty() {
        bail!("archive entry `{path}` has an empty path");
    }
    Ok(out)
}

/// Lexically resolves `target` as a link at `link` (both relative to the extraction folder)
/// would; `None` when the result leaves `python/`.
pub(super) fn link_target_inside(link: &Utf8Path, target: &str) -> Option<Utf8PathBuf> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.parent()?.components().map(|c| c.as_str()).collect();
    for component in Utf8Path::new(target).components() {
        match component {
            Utf8Component::Normal(part) => parts.push(part),
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => {
                parts.pop()?;
            }
            Utf8Component::RootDir | Utf8Component::Prefix(_) => return None,
        }
    }
    (parts.first() == Some(&"python")).then(|| parts.iter().collect())
}

/// Refuses to write through a symlinked folder that an earlier entry created.
pub(super) fn check_no_symlinked_parent(
    root: &Utf8Path,
    rel: &Utf8Path,
    entry: &str,
) -> Result<()> {
    let mut dir = root.to_owned();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        dir.push(part);
        match fs_err::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                bail!(
                    "archive entry `{entry}` would be written through the symlink {}",
                    dir.strip_prefix(root).unwrap_or(&dir)
                )
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unpacks every entry under `root`; returns the full layout's PYTHON.json, if any.
///
/// Long on purpose: one loop over the tar stream (it can be read only once), where the safety
/// checks of each entry kind (file, link, hard link, folder) sit next to the write they guard.
pub(super) fn unpack(
    archive: &Utf8Path,
    compression: Compression,
    root: &Utf8Path,
) -> Result<Option<serde_json::Value>> {
    use std::os::unix::fs::PermissionsExt;
    use tar::EntryType;

    let file = BufReader::new(fs_err::File::open(archive)?);
    let reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    };
    let mut tar = tar::Archive::new(reader);
    let mut metadata = None;
    for entry in tar.entries().context("reading the tar stream")? {
        let mut entry = entry.context("reading the tar stream")?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw)
            .map_err(|_| {
                anyhow::anyhow!(
                    "archive entry `{}` is not UTF-8",
                    String::from_utf8_lossy(&raw)
                )
            })?
            .to_owned();
        let kind = entry.header().entry_type();
        let rel = match place(&name)? {
            Place::Keep(rel) => rel,
            Place::Drop => continue,
            Place::Metadata => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .with_context(|| format!("reading `{name}`"))?;
                metadata =
                    Some(serde_json::from_str(&text).with_context(|| format!("parsing `{name}`"))?);
                continue;
            }
        };
        check_no_symlinked_parent(root, &rel, &name)?;
        let out = root.join(&rel);
        if let Some(parent) = out.parent() {
            fs_err::create_dir_all(parent)?;
        }
        match kind {
            EntryType::Directory => {
                if !out.is_dir() {
                    fs_err::create_dir(&out)?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&out)?;
                let mut file = fs_err::File::create(&out)?;
                std::io::copy(&mut entry, &mut file).with_context(|| format!("writing {out}"))?;
                // Keep the executable bits; drop setuid/setgid/sticky, which a layer never needs.
                let mode = entry
                    .header()
                    .mode()
                    .with_context(|| format!("reading the mode of `{name}`"))?
                    & 0o777;
                fs_err::set_permissions(&out, std::fs::Permissions::from_mode(mode | 0o600))?;
            }
            EntryType::Symlink => {
                let target = link_name(&entry, &name)?;
                if link_target_inside(&rel, &target).is_none() {
                    bail!("archive entry `{name}` is a symlink to `{target}`, which leaves the python/ folder");
                }
                remove_existing(&out)?;
                std::os::unix::fs::symlink(&target, &out)
                    .with_context(|| format!("creating the symlink {out}"))?;
            }
            EntryType::Link => {
                let target = link_name(&entry, &name)?;
                // A hard link names another entry of the archive, mapped like every entry.
                let target_rel = match place(&target) {
                    Ok(Place::Keep(rel)) => rel,
                    _ => {
                        bail!("archive entry `{name}` is a hard link to `{target}`, which is not in the python/ folder")
                    }
                };
                check_no_symlinked_parent(root, &target_rel, &name)?;
                let source = root.join(&target_rel);
                let is_file = fs_err::symlink_metadata(&source)
                    .map(|m| m.is_file())
                    .unwrap_or(false);
                if !is_file {
                    bail!(
                        "archive entry `{name}` is a hard link to `{target}`, which is not a file unpacked before it"
                    );
                }
                remove_existing(&out)?;
                if std::fs::hard_link(&source, &out).is_err() {
                    fs_err::copy(&source, &out)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                bail!("archive entry `{name}` is a device or fifo, which a runtime never contains")
            }
            other => bail!("archive entry `{name}` has an unsupported type {other:?}"),
        }
    }
    Ok(metadata)
}

pub(super) fn link_name(entry: &tar::Entry<'_, impl Read>, name: &str) -> Result<String> {
    let target = entry
        .link_name_bytes()
        .with_context(|| format!("archive entry `{name}` is a link without a target"))?;
    std::str::from_utf8(&target)
        .map(str::to_owned)
        .map_err(|_| anyhow::anyhow!("archive entry `{name}` links to a path that is not UTF-8"))
}

/// Lets a later entry replace an earlier one of the same name, as tar does.
pub(super) fn remove_existing(path: &Utf8Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{path} is a folder and a later archive entry is not"),
        Ok(_) => Ok(fs_err::remove_file(path)?),
        Err(_) => Ok(()),
    }
}

/// Follows every symlink under `root/python` through the unpacked tree, so that a chain of
/// links that each look harmless cannot lead outside it.
pub(super) fn check_links_inside(root: &Utf8Path) -> Result<()> {
    for entry in crate::util::walk(root)? {
        if entry.file_type.is_symlink() {
            let mut pending: Vec<String> = entry
                .rel
                .components()
                .rev()
                .map(|c| c.as_str().to_owned())
                .collect();
            let mut resolved: Vec<String> = Vec::new();
            let mut hops = 0;
            while let Some(part) = pending.pop() {
                match part.as_str() {
                    "" | "." => continue,
                    ".." => {
                        if resolved.pop().is_none() {
                            bail!(
                                "the symlink `{}` leads outside the python/ folder",
                                entry.rel
                            );
                        }
                        continue;
                    }
                    _ => resolved.push(part),
                }
                let here: Utf8PathBuf = resolved.iter().collect();
                let path = root.join(&here);
                if fs_err::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    hops += 1;
                    if hops > 40 {
                        bail!("the symlink `{}` is part of a loop", entry.rel);
                    }
                    let target = crate::util::utf8(fs_err::read_link(&path)?)?;
                    if target.is_absolute() {
                        bail!("the symlink `{here}` points to the absolute path {target}");
                    }
                    resolved.pop();
                    pending.extend(target.as_str().split('/').rev().map(str::to_owned));
                }
            }
            if resolved.first().map(String::as_str) != Some("python") {
                bail!(
                    "the symlink `{}` leads outside the python/ folder",
                    entry.rel
                );
            }
        }
    }
    Ok(())
}
