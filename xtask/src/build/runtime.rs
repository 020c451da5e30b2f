//! The CPython runtime: unpacking a python-build-standalone archive into a layer's `python/`.

use std::io::{BufReader, Read};

use anyhow::{bail, Context, Result};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::spec::Arch;

/// What an unpacked runtime is.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    /// The `python/` folder.
    pub root: Utf8PathBuf,
    /// Full version, e.g. `3.11.16`.
    pub version: String,
    /// `3.11`.
    pub xy: String,
    /// The interpreter, relative to `root`: `bin/python3.11`.
    pub exe: Utf8PathBuf,
}

/// How the archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
}

/// Where an archive entry goes, relative to the extraction folder (which will hold `python/`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// Written at this path (always under `python/`).
    Keep(Utf8PathBuf),
    /// The full layout's metadata, `python/PYTHON.json`.
    Metadata,
    /// Build artefacts and licenses of the full layout.
    Drop,
}

/// Unpacks `archive` (`.tar.gz` or `.tar.zst`, install_only or full layout) so that
/// `dest/python/bin/python3.X` exists; refuses unsafe entries and a foreign interpreter.
pub fn extract(archive: &Utf8Path, dest: &Utf8Path, arch: Arch) -> Result<RuntimeInfo> {
    let compression = compression_of(archive)?;
    fs_err::create_dir_all(dest)?;
    // Inside `dest`: same file system, so the final rename is atomic, and a failure
    // (the temporary folder is dropped) leaves nothing behind.
    let tmp = tempfile::Builder::new()
        .prefix(".python-extract.")
        .tempdir_in(dest)
        .with_context(|| format!("creating a temporary folder in {dest}"))?;
    let tmp_root = crate::util::utf8(tmp.path().to_owned())?;

    let metadata =
        unpack(archive, compression, &tmp_root).with_context(|| format!("unpacking {archive}"))?;
    let staged = tmp_root.join("python");
    if !staged.is_dir() {
        bail!("{archive} has no `python/` folder: is it a python-build-standalone archive?");
    }
    check_links_inside(&tmp_root).with_context(|| format!("unpacking {archive}"))?;
    let info = inspect(&staged, metadata.as_ref(), arch)
        .with_context(|| format!("checking the runtime in {archive}"))?;

    let final_root = dest.join("python");
    if fs_err::symlink_metadata(&final_root).is_ok() {
        // Move the old tree aside inside the temporary folder, which then deletes it.
        fs_err::rename(&final_root, tmp_root.join("old-python"))?;
    }
    fs_err::rename(&staged, &final_root)?;
    Ok(RuntimeInfo {
        root: final_root,
        ..info
    })
}

/// Gzip or zstd, by the file's ending, else by its first bytes.
fn compression_of(archive: &Utf8Path) -> Result<Compression> {
    let name = archive.file_name().unwrap_or("");
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return Ok(Compression::Gzip);
    }
    if name.ends_with(".tar.zst") || name.ends_with(".tar.zstd") {
        return Ok(Compression::Zstd);
    }
    let mut magic = [0u8; 4];
    let mut file = fs_err::File::open(archive)?;
    let n = file
        .read(&mut magic)
        .with_context(|| format!("reading {archive}"))?;
    match &magic[..n] {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd] => Ok(Compression::Zstd),
        _ => bail!("{archive} is neither a .tar.gz nor a .tar.zst archive"),
    }
}

/// Where an entry of either layout goes. `path` is the entry's path in the archive.
fn place(path: &str) -> Result<Place> {
    let rel = safe_relative(path)?;
    let mut parts = rel.components().map(|c| c.as_str());
    if parts.next() != Some("python") {
        bail!("archive entry `{path}` is outside the `python/` folder");
    }
    let rest: Utf8PathBuf = parts.collect();
    let mut rest_parts = rest.components().map(|c| c.as_str());
    Ok(match rest_parts.next() {
        Some("PYTHON.json") if rest_parts.next().is_none() => Place::Metadata,
        // The full layout: the installed tree is one level down.
        Some("install") => {
            Place::Keep(Utf8Path::new("python").join(rest_parts.collect::<Utf8PathBuf>()))
        }
        Some("build" | "licenses") => Place::Drop,
        _ => Place::Keep(rel),
    })
}

/// `path` as a relative path without `.` or `..`; refuses absolute paths and `..`.
fn safe_relative(path: &str) -> Result<Utf8PathBuf> {
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
fn link_target_inside(link: &Utf8Path, target: &str) -> Option<Utf8PathBuf> {
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
fn check_no_symlinked_parent(root: &Utf8Path, rel: &Utf8Path, entry: &str) -> Result<()> {
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
fn unpack(
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

fn link_name(entry: &tar::Entry<'_, impl Read>, name: &str) -> Result<String> {
    let target = entry
        .link_name_bytes()
        .with_context(|| format!("archive entry `{name}` is a link without a target"))?;
    std::str::from_utf8(&target)
        .map(str::to_owned)
        .map_err(|_| anyhow::anyhow!("archive entry `{name}` links to a path that is not UTF-8"))
}

/// Lets a later entry replace an earlier one of the same name, as tar does.
fn remove_existing(path: &Utf8Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{path} is a folder and a later archive entry is not"),
        Ok(_) => Ok(fs_err::remove_file(path)?),
        Err(_) => Ok(()),
    }
}

/// Follows every symlink under `root/python` through the unpacked tree, so that a chain of
/// links that each look harmless cannot lead outside it.
fn check_links_inside(root: &Utf8Path) -> Result<()> {
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

/// Finds the interpreter, its version, and checks that it is built for `arch`.
fn inspect(
    root: &Utf8Path,
    metadata: Option<&serde_json::Value>,
    arch: Arch,
) -> Result<RuntimeInfo> {
    let meta_str = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };

    let exe = match meta_str("python_exe") {
        // `install/bin/python3.11` in the full layout, which we moved up one level.
        Some(exe) => {
            let rel = safe_relative(&exe).context("reading python_exe in PYTHON.json")?;
            rel.strip_prefix("install")
                .map(Utf8Path::to_owned)
                .unwrap_or(rel)
        }
        None => find_interpreter(root)?,
    };
    let exe_name = exe.file_name().unwrap_or("");
    let xy = match meta_str("python_major_minor_version") {
        Some(xy) => xy,
        None => exe_name
            .strip_prefix("python")
            .filter(|v| is_xy(v))
            .map(str::to_owned)
            .with_context(|| {
                format!("cannot tell the Python version from the interpreter name `{exe}`")
            })?,
    };
    let version = meta_str("python_version")
        .or_else(|| patchlevel_version(root, &xy))
        .unwrap_or_else(|| xy.clone());
    if !root.join("lib").join(format!("python{xy}")).is_dir() {
        bail!("the runtime has no standard library folder lib/python{xy}");
    }

    let exe_path = root.join(&exe);
    let meta = fs_err::symlink_metadata(&exe_path)
        .with_context(|| format!("the interpreter {exe} is missing"))?;
    if !meta.is_file() {
        bail!("the interpreter {exe} is not a regular file");
    }
    let machine = elf_machine(&exe_path)?;
    if machine != arch.elf_machine() {
        bail!(
            "runtime interpreter {exe} is {} but the target is {}",
            crate::util::elf::machine_name(machine),
            arch.machine()
        );
    }
    Ok(RuntimeInfo {
        root: root.to_owned(),
        version,
        xy,
        exe,
    })
}

/// `3.11`, `3.12`...
fn is_xy(v: &str) -> bool {
    v.split_once('.').is_some_and(|(x, y)| {
        !x.is_empty()
            && !y.is_empty()
            && x.bytes().all(|b| b.is_ascii_digit())
            && y.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `bin/python3.X` that is a real file (`python3` and `python` are links to it).
fn find_interpreter(root: &Utf8Path) -> Result<Utf8PathBuf> {
    let bin = root.join("bin");
    let mut found = Vec::new();
    for entry in fs_err::read_dir(&bin)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && name.strip_prefix("python").is_some_and(is_xy) {
            found.push(name);
        }
    }
    found.sort();
    match found.as_slice() {
        [one] => Ok(Utf8Path::new("bin").join(one)),
        [] => bail!("no interpreter bin/python3.X (a regular file) in {root}"),
        many => bail!("several interpreters in {bin}: {}", many.join(", ")),
    }
}

/// `PY_VERSION` from `include/python3.X/patchlevel.h`, best effort.
fn patchlevel_version(root: &Utf8Path, xy: &str) -> Option<String> {
    let text =
        fs_err::read_to_string(root.join(format!("include/python{xy}/patchlevel.h"))).ok()?;
    text.lines().find_map(|line| {
        let rest = line
            .trim()
            .strip_prefix("#define")?
            .trim()
            .strip_prefix("PY_VERSION")?;
        let version = rest.trim().trim_matches('"');
        (version.starts_with(xy) && version.len() > xy.len()).then(|| version.to_owned())
    })
}

/// `e_machine` of an ELF file, read from its header only.
pub fn elf_machine(path: &Utf8Path) -> Result<u16> {
    let mut header = [0u8; 64];
    let mut file = fs_err::File::open(path)?;
    file.read_exact(&mut header)
        .with_context(|| format!("{path} is not an ELF file (too short)"))?;
    let parsed = goblin::elf::Elf::parse_header(&header)
        .map_err(|e| anyhow::anyhow!("{path} is not an ELF file: {e}"))?;
    Ok(parsed.e_machine)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of a test archive.
    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8], u32),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    fn elf_bytes(arch: Arch) -> Vec<u8> {
        // A minimal 64-bit little-endian ELF header: enough for the machine check.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        h[16] = 2;
        h[18..20].copy_from_slice(&arch.elf_machine().to_le_bytes());
        h[20] = 1;
        h[52] = 64;
        h
    }

    fn build(entries: &[E<'_>], zst: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for e in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            match e {
                E::Dir(path) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, path, &[][..])
                        .expect("dir");
                }
                E::File(path, data, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, *data).expect("file");
                }
                E::Link(path, target) | E::Hard(path, target) => {
                    let kind = if matches!(e, E::Link(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    header.set_entry_type(kind);
                    header.set_mode(0o777);
                    header.set_size(0);
                    // Written raw: the tar crate's helpers refuse some of the paths under test.
                    set_raw_name(&mut header, path);
                    header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                    header.set_cksum();
                    builder.append(&header, &[][..]).expect("link");
                }
            }
        }
        let tar = builder.into_inner().expect("tar");
        if zst {
            zstd::encode_all(&tar[..], 3).expect("zstd")
        } else {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("gzip");
            gz.finish().expect("gzip")
        }
    }

    fn set_raw_name(header: &mut tar::Header, path: &str) {
        let name = &mut header.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    /// A tar whose file entry has a raw (unchecked) name, e.g. `../evil` or `/etc/x`.
    fn build_raw_file(prefix: &[E<'_>], raw: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let gz = build(prefix, false);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut tar)
            .expect("gunzip");
        // Drop the two zero blocks that end the archive, then add the raw entry.
        tar.truncate(tar.len() - 1024);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(4);
        set_raw_name(&mut header, raw);
        header.set_cksum();
        builder.append(&header, &b"evil"[..]).expect("raw");
        tar.extend(builder.into_inner().expect("tar"));
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        gz.finish().expect("gzip")
    }

    struct Case {
        _tmp: tempfile::TempDir,
        archive: Utf8PathBuf,
        dest: Utf8PathBuf,
    }

    fn case(bytes: &[u8], name: &str) -> Case {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        let archive = root.join(name);
        fs_err::write(&archive, bytes).expect("write archive");
        Case {
            _tmp: tmp,
            archive,
            dest: root.join("layer"),
        }
    }

    fn install_only(elf: &[u8]) -> Vec<E<'_>> {
        vec![
            E::Dir("python/"),
            E::Dir("python/bin/"),
            E::File("python/bin/python3.11", elf, 0o755),
            E::Link("python/bin/python3", "python3.11"),
            E::Link("python/bin/python", "python3.11"),
            E::Dir("python/lib/python3.11/"),
            E::File("python/lib/python3.11/os.py", b"# os\n", 0o644),
            E::File(
                "python/include/python3.11/patchlevel.h",
                b"#define PY_VERSION      \"3.11.16\"\n",
                0o644,
            ),
        ]
    }

    fn assert_empty(dest: &Utf8Path) {
        let left: Vec<_> = if dest.exists() {
            fs_err::read_dir(dest)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect()
        } else {
            Vec::new()
        };
        assert!(left.is_empty(), "left behind in {dest}: {left:?}");
    }

    #[test]
    fn install_only_gz_keeps_links_and_modes() {
        let elf = elf_bytes(Arch::X86_64);
        let c = case(
            &build(&install_only(&elf), false),
            "cpython-install_only.tar.gz",
        );
        let info = extract(&c.archive, &c.dest, Arch::X86_64).expect("extract");
        assert_eq!(info.root, c.dest.join("python"));
        assert_eq!(info.exe, "bin/python3.11");
        assert_eq!(
            (info.version.as_str(), info.xy.as_str()),
            ("3.11.16", "3.11")
        );
        let link = fs_err::symlink_metadata(c.dest.join("python/bin/python3")).expect("link");
        assert!(link.file_type().is_symlink());
        assert_eq!(
            fs_err::read_link(c.dest.join("python/bin/python3")).expect("target"),
            Utf8Path::new("python3.11")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(c.dest.join("python/bin/python3.11"))
            .expect("exe")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let mode = fs_err::metadata(c.dest.join("python/lib/python3.11/os.py"))
            .expect("os.py")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0);
        // Extracting again replaces the tree, leaving no temporary folder.
        extract(&c.archive, &c.dest, Arch::X86_64).expect("extract again");
        let names: Vec<_> = fs_err::read_dir(&c.dest)
            .expect("read_dir")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert_eq!(names, vec!["python"]);
    }

    #[test]
    fn zstd_sniffed_without_ending() {
        let elf = elf_bytes(Arch::Arm64);
        let c = case(&build(&install_only(&elf), true), "runtime.bin");
        let info = extract(&c.archive, &c.dest, Arch::Arm64).expect("extract");
        assert_eq!(info.xy, "3.11");
    }

    #[test]
    fn full_layout_is_mapped() {
        let elf = elf_bytes(Arch::X86_64);
        let json = br#"{"python_exe": "install/bin/python3.11", "python_major_minor_version": "3.11", "python_version": "3.11.15"}"#;
        let entries = vec![
            E::File("python/PYTHON.json", json, 0o644),
            E::File("python/install/bin/python3.11", &elf, 0o755),
            E::Link("python/install/bin/python3", "python3.11"),
            E::File("python/install/lib/python3.11/os.py", b"", 0o644),
            E::Hard(
                "python/install/lib/python3.11/os2.py",
                "python/install/lib/python3.11/os.py",
            ),
            E::File("python/build/lib/libpython3.11.a", b"big", 0o644),
            E::File("python/licenses/LICENSE.txt", b"text", 0o644),
        ];
        let c = case(&build(&entries, true), "cpython-full.tar.zst");
        let info = extract(&c.archive, &c.dest, Arch::X86_64).expect("extract");
        assert_eq!(info.version, "3.11.15");
        assert_eq!(info.exe, "bin/python3.11");
        let root = c.dest.join("python");
        assert!(root.join("bin/python3.11").is_file());
        assert!(root.join("lib/python3.11/os2.py").is_file());
        assert!(
            !root.join("install").exists()
                && !root.join("build").exists()
                && !root.join("licenses").exists()
        );
        assert!(!root.join("PYTHON.json").exists());
    }

    #[test]
    fn parent_dir_entry_is_refused() {
        let elf = elf_bytes(Arch::X86_64);
        let c = case(
            &build_raw_file(&install_only(&elf), "python/../../evil"),
            "a.tar.gz",
        );
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(
            err.contains("python/../../evil") && err.contains(".."),
            "{err}"
        );
        assert_empty(&c.dest);
        assert!(!c.dest.parent().expect("parent").join("evil").exists());
    }

    #[test]
    fn absolute_entry_is_refused() {
        let elf = elf_bytes(Arch::X86_64);
        let c = case(
            &build_raw_file(&install_only(&elf), "/tmp/evil-absolute"),
            "a.tar.gz",
        );
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(
            err.contains("/tmp/evil-absolute") && err.contains("absolute"),
            "{err}"
        );
        assert_empty(&c.dest);
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        let elf = elf_bytes(Arch::X86_64);
        for (link, target) in [
            ("python/lib/etc", "/etc"),
            ("python/lib/up", "../../.."),
            ("python/bin/python3.12", "../../outside"),
        ] {
            let mut entries = install_only(&elf);
            entries.push(E::Link(link, target));
            let c = case(&build(&entries, false), "a.tar.gz");
            let err = format!(
                "{:#}",
                extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
            );
            assert!(
                err.contains(link) && err.contains("leaves the python/ folder"),
                "{err}"
            );
            assert_empty(&c.dest);
        }
    }

    #[test]
    fn chained_symlinks_cannot_escape() {
        let elf = elf_bytes(Arch::X86_64);
        let mut entries = install_only(&elf);
        // Each looks inside on its own; `m` really points above python/.
        entries.push(E::Link("python/a/b/l", "../.."));
        entries.push(E::Link("python/m", "a/b/l/.."));
        let c = case(&build(&entries, false), "a.tar.gz");
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(err.contains("python/m"), "{err}");
        assert_empty(&c.dest);
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let elf = elf_bytes(Arch::X86_64);
        let mut entries = install_only(&elf);
        entries.push(E::Link("python/share", "lib"));
        entries.push(E::File("python/share/x", b"x", 0o644));
        let c = case(&build(&entries, false), "a.tar.gz");
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(err.contains("python/share/x"), "{err}");
    }

    #[test]
    fn hard_link_outside_is_refused() {
        let elf = elf_bytes(Arch::X86_64);
        let mut entries = install_only(&elf);
        entries.push(E::Hard("python/lib/passwd", "etc/passwd"));
        let c = case(&build(&entries, false), "a.tar.gz");
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(err.contains("python/lib/passwd"), "{err}");
        assert_empty(&c.dest);
    }

    #[test]
    fn wrong_machine_is_refused() {
        let elf = elf_bytes(Arch::Arm64);
        let c = case(&build(&install_only(&elf), false), "a.tar.gz");
        let err = format!(
            "{:#}",
            extract(&c.archive, &c.dest, Arch::X86_64).expect_err("must refuse")
        );
        assert!(err.contains("is aarch64 but the target is x86_64"), "{err}");
        assert_empty(&c.dest);
    }

    #[test]
    fn real_elf_is_recognised() {
        // This machine's own binaries are x86_64 (the tests run on the build machine).
        let Some(host) = Arch::host() else { return };
        let elf = fs_err::read("/bin/true").expect("/bin/true");
        let c = case(&build(&install_only(&elf), false), "a.tar.gz");
        extract(&c.archive, &c.dest, host).expect("extract");
    }

    #[test]
    fn version_without_patchlevel_falls_back_to_xy() {
        let elf = elf_bytes(Arch::X86_64);
        let entries: Vec<_> = install_only(&elf)
            .into_iter()
            .filter(|e| !matches!(e, E::File(p, ..) if p.contains("patchlevel")))
            .collect();
        let c = case(&build(&entries, false), "a.tar.gz");
        let info = extract(&c.archive, &c.dest, Arch::X86_64).expect("extract");
        assert_eq!(info.version, "3.11");
    }

    #[test]
    fn places() {
        assert_eq!(
            place("python/bin/x").expect("ok"),
            Place::Keep("python/bin/x".into())
        );
        assert_eq!(
            place("./python/bin/x").expect("ok"),
            Place::Keep("python/bin/x".into())
        );
        assert_eq!(
            place("python/install/bin/x").expect("ok"),
            Place::Keep("python/bin/x".into())
        );
        assert_eq!(place("python/PYTHON.json").expect("ok"), Place::Metadata);
        assert_eq!(place("python/build/x").expect("ok"), Place::Drop);
        assert!(place("other/x").is_err());
        assert!(place("python/../x").is_err());
        assert!(place("/python/x").is_err());
        assert_eq!(
            link_target_inside(Utf8Path::new("python/bin/python3"), "python3.11"),
            Some("python/bin/python3.11".into())
        );
        assert_eq!(
            link_target_inside(Utf8Path::new("python/bin/x"), "../.."),
            None
        );
        assert_eq!(
            link_target_inside(Utf8Path::new("python/share/t/x"), "../../lib/y"),
            Some("python/lib/y".into())
        );
    }
}
