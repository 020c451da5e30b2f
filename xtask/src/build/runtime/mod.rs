//! The CPython runtime: unpacking a python-build-standalone archive into a layer's `python/`
//! (`unpack`: safe tar extraction; `inspect`: what interpreter it holds), and the build
//! machine's interpreter for cross builds (`host`).

mod host;
mod inspect;
mod unpack;

pub use host::host_python;

use std::io::Read;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::spec::Arch;
use inspect::inspect;
use unpack::{check_links_inside, safe_relative, unpack};

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
pub(super) enum Compression {
    Gzip,
    Zstd,
}

/// Where an archive entry goes, relative to the extraction folder (which will hold `python/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
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
pub(super) fn place(path: &str) -> Result<Place> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use unpack::link_target_inside;

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
    fn the_stage_cache_unpacks_once_links_and_mends_an_entry_edited_in_place() {
        use crate::build::cache::{runtime::unpack, StageCache};
        use std::io::Write;
        let elf = elf_bytes(Arch::X86_64);
        let c = case(
            &build(&install_only(&elf), false),
            "cpython-install_only.tar.gz",
        );
        let cache = StageCache::new(&c.dest.join("cache"));
        let sha = "c".repeat(64);
        let os_py = |stage: &Utf8Path| {
            fs_err::read_to_string(stage.join("python/lib/python3.11/os.py")).expect("os.py")
        };
        let a = c.dest.join("a");
        let (info, note) = unpack(&cache, &c.archive, &sha, Arch::X86_64, &a).expect("unpack");
        assert_eq!(
            (info.root, info.xy.as_str(), note),
            (a.join("python"), "3.11", None)
        );
        assert!(fs_err::symlink_metadata(a.join("python/bin/python3"))
            .expect("link")
            .file_type()
            .is_symlink());
        // The second comes from the cache: same files, no note.
        let b = c.dest.join("b");
        let (_, note) = unpack(&cache, &c.archive, &sha, Arch::X86_64, &b).expect("again");
        assert_eq!((os_py(&b).as_str(), note), ("# os\n", None));

        // An edit in place through a built tree reaches the shared bytes: seen and mended.
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .open(b.join("python/lib/python3.11/os.py"))
            .expect("open");
        file.write_all(b"import evil\n").expect("write");
        file.file()
            .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .expect("mtime");
        drop(file);
        let d = c.dest.join("d");
        let (_, note) = unpack(&cache, &c.archive, &sha, Arch::X86_64, &d).expect("mended");
        assert_eq!(os_py(&d), "# os\n");
        let note = note.expect("the changed entry is noted");
        assert!(note.contains("python/lib/python3.11/os.py"), "{note}");
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
