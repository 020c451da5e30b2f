//! The layer zip, unpacked the way Lambda unpacks it, and its interpreter's architecture.

use anyhow::{bail, Context, Result};
use camino::Utf8Path;

use crate::spec::Arch;

/// Unpacks a layer zip as Lambda does: modes kept, links as links, nothing outside `dest`;
/// into a `dest` holding earlier layers, a path already there is replaced, as Lambda's later
/// layer replaces an earlier one's file.
pub(super) fn unzip(zip_path: &Utf8Path, dest: &Utf8Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut zip = zip::ZipArchive::new(fs_err::File::open(zip_path)?)
        .with_context(|| format!("{zip_path} is not a valid zip"))?;
    fs_err::create_dir_all(dest)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry
            .name()
            .with_context(|| format!("{zip_path}: entry {i} has no readable name"))?
            .into_owned();
        let rel = entry
            .enclosed_name()
            .with_context(|| format!("{zip_path}: entry {name} points outside the layer"))?;
        let rel = crate::util::utf8(rel)?;
        let path = dest.join(&rel);
        let existing = path.symlink_metadata().ok().map(|m| m.file_type());
        if entry.is_dir() {
            if existing.is_some_and(|t| !t.is_dir()) {
                fs_err::remove_file(&path)?;
            }
            fs_err::create_dir_all(&path)?;
            continue;
        }
        match existing {
            Some(t) if t.is_dir() => fs_err::remove_dir_all(&path)?,
            Some(_) => fs_err::remove_file(&path)?,
            None => {}
        }
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .with_context(|| format!("reading the link {name}"))?;
            let resolved = Utf8Path::new(rel.parent().map_or("", |p| p.as_str())).join(&target);
            let escapes = target.starts_with('/')
                || resolved
                    .components()
                    .try_fold(0i32, |depth, c| match c {
                        camino::Utf8Component::ParentDir if depth == 0 => None,
                        camino::Utf8Component::ParentDir => Some(depth - 1),
                        camino::Utf8Component::Normal(_) => Some(depth + 1),
                        _ => Some(depth),
                    })
                    .is_none();
            if escapes {
                bail!("{zip_path}: link {name} -> {target} points outside the layer");
            }
            std::os::unix::fs::symlink(&target, &path)
                .with_context(|| format!("creating the link {path}"))?;
            continue;
        }
        let mut out = fs_err::File::create(&path)?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("unpacking {name}"))?;
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The architecture of an ELF file, if it is one Lambda has.
pub(super) fn arch_of(path: &Utf8Path) -> Option<Arch> {
    let bytes = fs_err::read(path).ok()?;
    let machine = crate::util::elf::inspect(&bytes).ok()?.machine;
    Arch::ALL.into_iter().find(|a| a.elf_machine() == machine)
}
