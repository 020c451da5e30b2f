//! Tests of the zip writer: reproducible bytes, modes and links, a full disk, parallel and
//! cached deflate, large files in parts.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn tree(dir: &Utf8Path) {
    fs_err::create_dir_all(dir.join("python/bin")).unwrap();
    fs_err::create_dir_all(dir.join("python/lib/empty")).unwrap();
    fs_err::write(dir.join("python/bin/python3.11"), b"\x7fELF fake").unwrap();
    fs_err::set_permissions(
        dir.join("python/bin/python3.11"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("python3.11", dir.join("python/bin/python3")).unwrap();
    fs_err::write(dir.join("python/lib/a.py"), b"print('a')\n".repeat(100)).unwrap();
    fs_err::hard_link(dir.join("python/lib/a.py"), dir.join("python/lib/b.py")).unwrap();
}

#[test]
fn zips_are_reproducible_and_keep_modes_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    tree(&dir.join("one"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    tree(&dir.join("two"));
    let a = write_zip(&dir.join("one"), &dir.join("a.zip"), 9).unwrap();
    let b = write_zip(&dir.join("two"), &dir.join("b.zip"), 9).unwrap();
    assert_eq!(
        fs_err::read(dir.join("a.zip")).unwrap(),
        fs_err::read(dir.join("b.zip")).unwrap()
    );
    assert_eq!(a.zip_bytes, b.zip_bytes);

    let mut zip = zip::ZipArchive::new(fs_err::File::open(dir.join("a.zip")).unwrap()).unwrap();
    let names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are sorted");
    assert_eq!(
        zip.by_name("python/bin/python3.11")
            .unwrap()
            .unix_mode()
            .unwrap()
            & 0o777,
        0o755
    );
    assert_eq!(
        zip.by_name("python/lib/a.py").unwrap().unix_mode().unwrap() & 0o777,
        0o644
    );
    assert!(zip.by_name("python/bin/python3").unwrap().is_symlink());
    assert!(
        zip.by_name("python/lib/b.py").unwrap().is_symlink(),
        "a hard link is stored once"
    );
    assert!(zip.by_name("python/lib/empty/").unwrap().is_dir());
}

/// A disk that fills after `room` bytes; counts the writes tried after that.
struct FillingDisk {
    data: std::io::Cursor<Vec<u8>>,
    room: usize,
    tried_when_full: std::rc::Rc<std::cell::Cell<usize>>,
}

impl Write for FillingDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.data.get_ref().len() + buf.len() > self.room {
            self.tried_when_full.set(self.tried_when_full.get() + 1);
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.data.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for FillingDisk {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.data.seek(pos)
    }
}

#[test]
fn a_full_disk_is_one_error_and_the_zip_library_stays_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    tree(dir);
    let entries = crate::util::walk(dir).unwrap();
    let mut whole = std::io::Cursor::new(Vec::new());
    write_entries(dir, &entries, &mut whole, 9).unwrap();
    let size = whole.get_ref().len();
    assert!(size > 500, "{size}");
    // The disk fills in every kind of place: a local header, data, a header update, the
    // central directory.
    for room in (0..size).step_by(7) {
        let tried = std::rc::Rc::new(std::cell::Cell::new(0));
        let disk = FillingDisk {
            data: std::io::Cursor::new(Vec::new()),
            room,
            tried_when_full: tried.clone(),
        };
        let err = write_entries(dir, &entries, disk, 9).expect_err("the disk is full");
        let msg = format!("{err:#}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(
            msg.matches("No space left on device").count(),
            1,
            "the cause once: {msg}"
        );
        // Only the first failure reached the disk: `ZipWriter`'s drop did not try again,
        // so it had nothing to print.
        assert_eq!(tried.get(), 1, "room {room}: {msg}");
    }
}

/// The writer as it was before files were deflated in parallel: one entry after another.
fn sequential(root: &Utf8Path, level: i64) -> Vec<u8> {
    let entries = crate::util::walk(root).unwrap();
    let items = classify(root, &entries).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default()
        .last_modified_time(zip::DateTime::default())
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(level));
    for item in &items {
        let name = item.name.as_str();
        match &item.kind {
            Kind::Dir => zip
                .add_directory(name, base.unix_permissions(0o755))
                .unwrap(),
            Kind::Link(t) => zip
                .add_symlink(name, t, base.unix_permissions(0o777))
                .unwrap(),
            Kind::File { path, mode, large } => {
                zip.start_file(name, base.unix_permissions(*mode).large_file(*large))
                    .unwrap();
                zip.write_all(&fs_err::read(path).unwrap()).unwrap();
            }
        }
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn parallel_deflate_gives_the_bytes_of_one_entry_after_another() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    tree(dir);
    // Many files of every kind of size: empty, tiny, compressible, incompressible.
    let mut noise = 0x2545_f491_u32;
    for i in 0..300usize {
        let mut bytes = format!("file {i}\n").repeat(i % 37).into_bytes();
        if i % 5 == 0 {
            bytes.extend((0..i * 97).map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                noise as u8
            }));
        }
        let sub = dir.join(format!("python/lib/d{}", i % 7));
        fs_err::create_dir_all(&sub).unwrap();
        fs_err::write(sub.join(format!("f{i}.py")), bytes).unwrap();
    }
    let outs = tempfile::tempdir().unwrap();
    for level in [1, 9] {
        let out = Utf8Path::from_path(outs.path())
            .unwrap()
            .join(format!("level{level}.zip"));
        write_zip(dir, &out, level).unwrap();
        assert!(
            fs_err::read(&out).unwrap() == sequential(dir, level),
            "level {level}: the parallel writer's bytes differ"
        );
    }
    // Through the stage cache, cold and then warm: still the same bytes.
    let cache = StageCache::new(Utf8Path::from_path(outs.path()).unwrap());
    for round in ["cold", "warm"] {
        let out = Utf8Path::from_path(outs.path())
            .unwrap()
            .join(format!("{round}.zip"));
        write_zip_cached(dir, &out, 9, Some(&cache)).unwrap();
        assert!(
            fs_err::read(&out).unwrap() == sequential(dir, 9),
            "{round} stage cache: the bytes differ"
        );
    }
    let zip = cache
        .counts()
        .into_iter()
        .find(|c| c.stage == "zip")
        .unwrap();
    assert!(zip.hits >= 300 && zip.misses > 0, "{zip:?}");
}

#[test]
fn a_large_file_deflated_in_parts_is_the_same_with_or_without_the_cache_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap();
    let root = dir.join("t");
    fs_err::create_dir_all(root.join("lib")).unwrap();
    // Over the threshold, not a multiple of a part: code-like text with some noise.
    let mut big = Vec::new();
    let mut noise = 0x9e37_79b9_u32;
    while (big.len() as u64) < chunked::MIN_BYTES + 300_001 {
        noise ^= noise << 13;
        noise ^= noise >> 17;
        noise ^= noise << 5;
        big.extend_from_slice(format!("x{} = {}\n", noise % 5000, noise % 97).as_bytes());
    }
    fs_err::write(root.join("lib/_native.so"), &big).unwrap();
    fs_err::set_permissions(
        root.join("lib/_native.so"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs_err::write(root.join("lib/small.py"), b"x = 1\n").unwrap();
    let plain = dir.join("plain.zip");
    write_zip(&root, &plain, 9).unwrap();
    let cache = StageCache::new(&dir.join("cache"));
    for round in ["cold", "warm"] {
        let out = dir.join(format!("{round}.zip"));
        write_zip_cached(&root, &out, 9, Some(&cache)).unwrap();
        assert!(
            fs_err::read(&out).unwrap() == fs_err::read(&plain).unwrap(),
            "{round} stage cache: the bytes differ from those written without it"
        );
    }
    // An independent reader: every entry's CRC checks, the bytes and the mode survive.
    let check = r#"
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
i = z.getinfo("lib/_native.so")
assert i.compress_type == zipfile.ZIP_DEFLATED and (i.external_attr >> 16) & 0o777 == 0o755
sys.stdout.buffer.write(z.read("lib/_native.so"))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", check, plain.as_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == big, "python's zipfile reads other bytes");
}

fn write_entries(
    root: &Utf8Path,
    entries: &[crate::util::WalkEntry],
    out: impl Write + Seek,
    level: i64,
) -> Result<()> {
    write_in_order(out, &classify(root, entries)?, level, None)
}

#[test]
fn relative_links() {
    assert_eq!(relative_link("a/b/c".into(), "a/x".into()), "../x");
    assert_eq!(relative_link("a/c".into(), "a/x".into()), "x");
    assert_eq!(relative_link("c".into(), "a/x".into()), "a/x");
}
