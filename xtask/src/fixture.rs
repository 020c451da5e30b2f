//! `cargo xtask fixture-runtime`: a python-build-standalone-shaped archive from local parts,
//! for tests and offline demos.
//!
//! x86_64 takes this machine's CPython 3.11; arm64 assembles Debian's arm64 CPython 3.11
//! packages. Either way the tree is made self-contained the way PBS's is: every library
//! it needs except glibc's own is copied into `python/lib/`, and RPATHs point there.
//! Like PBS's, it should need no glibc newer than Lambda's (2.34): `hypot@GLIBC_2.35` is
//! rebound to the architecture's first version and `_crypt` is left out; on arm64,
//! Debian's libexpat (needed by the interpreter itself) still needs 2.36, with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use crate::spec::{Arch, Glibc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    #[value(name = "install_only")]
    InstallOnly,
    #[value(name = "full")]
    Full,
}

/// Bump when the assembled tree changes shape, so stale cached trees are not reused.
const TREE_FORMAT: &str = "fixture-tree-v3";

/// Every tar entry gets this mtime (2020-01-01), so the same tree gives the same bytes.
const MTIME: u64 = 1_577_836_800;

/// Lambda's newest base, Amazon Linux 2023, has glibc 2.34.
const LAMBDA_GLIBC: Glibc = Glibc {
    major: 2,
    minor: 34,
};

/// Debian arm64 packages that make up the interpreter and the libraries its modules need.
/// `libnsl2`/`libtirpc3` (for the obsolete `nis` module) are left out: `nis` is dropped.
/// So is `libcrypt1`: `_crypt` is left out (see [`skip_stdlib`]).
const ARM64_PACKAGES: &[&str] = &[
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libgcc-s1",
    // Not needed by the interpreter, but by wheels (tokenizers, ...): Lambda's base image
    // provides it, so the sysroot that stands in for that image under qemu must too.
    "libstdc++6",
    "zlib1g",
    "libexpat1",
    "libssl3",
    "libffi8",
    "libsqlite3-0",
    "liblzma5",
    "libbz2-1.0",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libdb5.3",
];

/// What the fixture leaves out or changes compared with PBS, printed with every build.
const NOTES: &[&str] = &[
    "`_crypt` and libcrypt.so.1 are left out (libxcrypt here is built against glibc 2.36; the module is deprecated and nothing in this project needs it): `import crypt` raises ImportError, as on many minimal Pythons",
];

/// Why the arm64 fixture still needs glibc 2.36.
const ARM64_EXPAT_NOTE: &str = "Debian compiles pyexpat and _elementtree into its python3.11, which therefore needs libexpat.so.1; bookworm's libexpat needs arc4random_buf@GLIBC_2.36, which has no older version, and no older expat is available here: the arm64 fixture needs glibc 2.36 because of it (PBS's bundles its own expat)";

/// What `import` must manage in the check, beyond starting at all.
const CHECK_IMPORTS: &str =
    "ssl, ctypes, sqlite3, lzma, bz2, zlib, hashlib, decimal, uuid, json, asyncio";

impl crate::flags::FixtureRuntime {
    pub fn run(self) -> Result<ExitCode> {
        let progress = crate::progress::Progress::new();
        progress.line(format!(
            "fixture-runtime: FOR TESTS AND OFFLINE DEMOS ONLY (the real layer uses the pinned python-build-standalone download); {}",
            match self.arch {
                Arch::X86_64 => "x86_64 from this machine's CPython 3.11",
                Arch::Arm64 => "arm64 from Debian's arm64 CPython 3.11 packages",
            }
        ));
        let started = std::time::Instant::now();
        let built = build(self.arch, self.flavour, &self.out, &progress)?;
        let bytes = fs_err::metadata(&self.out)?.len();
        println!(
            "wrote {} ({}, {})",
            self.out,
            self.arch,
            flavour_name(self.flavour)
        );
        println!("  python {}", built.meta.version);
        println!(
            "  archive {} bytes ({:.1} MB), sha256 {}",
            bytes,
            mb(bytes),
            crate::util::sha256_file(&self.out)?
        );
        println!(
            "  unpacked {} bytes ({:.1} MB)",
            built.unpacked,
            mb(built.unpacked)
        );
        for note in NOTES
            .iter()
            .copied()
            .chain(built.meta.notes.iter().map(|n| n.as_str()))
        {
            println!("  note: {note}");
        }
        report_glibc(&built.glibc);
        println!("  built in {:.1} s", started.elapsed().as_secs_f64());

        let report = check(self.arch, &self.out, &progress).context("checking the fixture")?;
        println!("  check: {report}");
        Ok(ExitCode::SUCCESS)
    }
}

fn flavour_name(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::InstallOnly => "install_only",
        Flavour::Full => "full",
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

fn report_glibc(glibc: &GlibcNeeds) {
    match glibc.max {
        Some(max) => {
            println!("  needs glibc {max} at most (Lambda's Amazon Linux 2023 has {LAMBDA_GLIBC})")
        }
        None => println!("  needs no versioned glibc symbols"),
    }
    if !glibc.too_new.is_empty() {
        println!("  WARNING: these files need a glibc newer than {LAMBDA_GLIBC} and would fail on Lambda:");
        for (file, version) in &glibc.too_new {
            println!("    {file}: GLIBC_{version}");
        }
    }
}

/// What was built.
#[derive(Debug)]
struct Built {
    meta: TreeMeta,
    unpacked: u64,
    glibc: GlibcNeeds,
}

/// Facts about an assembled tree, stored next to it in the cache.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct TreeMeta {
    /// `3.11.7`.
    version: String,
    /// `3.11`.
    xy: String,
    /// `importlib.util.MAGIC_NUMBER` in hex.
    magic: String,
    /// What assembling did to lower the glibc the tree needs, for the summary.
    #[serde(default)]
    notes: Vec<String>,
}

/// Assembles (or reuses) the tree for `arch` and writes it to `out` as an archive.
fn build(
    arch: Arch,
    flavour: Flavour,
    out: &Utf8Path,
    progress: &crate::progress::Progress,
) -> Result<Built> {
    let compression = match out.file_name().unwrap_or("") {
        name if name.ends_with(".tar.gz") || name.ends_with(".tgz") => Compression::Gzip,
        name if name.ends_with(".tar.zst") || name.ends_with(".tar.zstd") => Compression::Zstd,
        _ => bail!("{out}: the archive name must end with .tar.gz or .tar.zst"),
    };
    let host = HostPython::find()?;
    let tree = cached_tree(arch, &host, progress)?;
    let meta: TreeMeta = serde_json::from_str(&fs_err::read_to_string(tree.join("meta.json"))?)
        .with_context(|| format!("reading {}/meta.json", tree))?;
    let root = tree.join("python");
    let glibc = glibc_needs(&root)?;
    let unpacked = crate::util::tree_bytes(&root)?;
    let python_json = (flavour == Flavour::Full).then(|| python_json(arch, &meta, &glibc));
    crate::util::write_atomic(out, |file| {
        let file = std::io::BufWriter::new(file);
        match compression {
            Compression::Gzip => {
                // No name and mtime 0 in the gzip header: the bytes depend only on the tree.
                let mut gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(file, flate2::Compression::new(6));
                write_tar(&root, python_json.as_deref(), &mut gz)?;
                gz.finish()?.flush()?;
            }
            Compression::Zstd => {
                let mut zst = zstd::stream::write::Encoder::new(file, 10)?;
                write_tar(&root, python_json.as_deref(), &mut zst)?;
                zst.finish()?.flush()?;
            }
        }
        Ok(())
    })
    .with_context(|| format!("writing {out}"))?;
    Ok(Built {
        meta,
        unpacked,
        glibc,
    })
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    Gzip,
    Zstd,
}

/// PBS's PYTHON.json, with the keys readers use.
fn python_json(arch: Arch, meta: &TreeMeta, glibc: &GlibcNeeds) -> String {
    let nodot = meta.xy.replace('.', "");
    let mut crt = Vec::new();
    if let Some(max) = glibc.max {
        crt.push(format!("glibc-max-symbol-version:{max}"));
    }
    let value = serde_json::json!({
        "python_exe": format!("install/bin/python{}", meta.xy),
        "python_major_minor_version": meta.xy,
        "python_version": meta.version,
        "python_tag": format!("cp{nodot}"),
        "python_abi_tag": format!("cp{nodot}"),
        "python_platform_tag": format!("linux-{}", arch.machine()),
        "python_bytecode_magic_number": meta.magic,
        "target_triple": arch.triple(),
        "crt_features": crt,
        "fixture": "built by `cargo xtask fixture-runtime` for tests and offline demos",
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Writes `root` (a `python/` folder) as a tar: sorted, fixed mtime, owner 0, normalised modes.
/// With `python_json`, writes the full layout: PYTHON.json first, the tree under `python/install/`.
fn write_tar(root: &Utf8Path, python_json: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let prefix = match python_json {
        Some(json) => {
            let mut h = header(tar::EntryType::Regular, 0o644, json.len() as u64);
            builder.append_data(&mut h, "python/PYTHON.json", json.as_bytes())?;
            "python/install"
        }
        None => "python",
    };
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    builder.append_data(&mut h, format!("{prefix}/"), std::io::empty())?;
    for entry in crate::util::walk(root)? {
        let name = format!("{prefix}/{}", entry.rel);
        let path = root.join(&entry.rel);
        if entry.file_type.is_dir() {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            builder.append_data(&mut h, format!("{name}/"), std::io::empty())?;
        } else if entry.file_type.is_symlink() {
            let target = fs_err::read_link(&path)?;
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut h, &name, target)
                .with_context(|| format!("adding {name}"))?;
        } else if entry.file_type.is_file() {
            let mode = if entry.mode & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut h = header(tar::EntryType::Regular, mode, entry.len);
            let file = fs_err::File::open(&path)?;
            builder
                .append_data(&mut h, &name, file)
                .with_context(|| format!("adding {name}"))?;
        }
    }
    builder.finish()?;
    Ok(())
}

/// This machine's CPython 3.11, asked about itself.
#[derive(Debug, Clone, Deserialize)]
struct HostPython {
    executable: Utf8PathBuf,
    base_prefix: Utf8PathBuf,
    version: String,
    xy: String,
    ldlibrary: String,
    libdir: Utf8PathBuf,
    stdlib: Utf8PathBuf,
    include: Utf8PathBuf,
    magic: String,
}

impl HostPython {
    fn find() -> Result<HostPython> {
        const SCRIPT: &str = "import sys, sysconfig, json, importlib.util, platform
print(json.dumps({
    'executable': sys.executable, 'base_prefix': sys.base_prefix,
    'version': platform.python_version(), 'xy': '%d.%d' % sys.version_info[:2],
    'ldlibrary': sysconfig.get_config_var('LDLIBRARY') or '',
    'libdir': sysconfig.get_config_var('LIBDIR') or '',
    'stdlib': sysconfig.get_path('stdlib'), 'include': sysconfig.get_path('include'),
    'magic': importlib.util.MAGIC_NUMBER.hex(),
}))";
        let program =
            std::env::var("FIXTURE_HOST_PYTHON").unwrap_or_else(|_| "python3.11".to_owned());
        let stdout = run(Command::new(&program).args(["-I", "-B", "-c", SCRIPT])).with_context(|| {
            format!("asking {program} about itself (set FIXTURE_HOST_PYTHON to another CPython 3.11)")
        })?;
        let host: HostPython = serde_json::from_str(&stdout)
            .with_context(|| format!("{program} printed bad JSON: {stdout}"))?;
        if host.xy != "3.11" {
            bail!(
                "{program} is Python {}, but the fixture needs CPython 3.11",
                host.version
            );
        }
        Ok(host)
    }
}

/// Runs a command; returns its stdout. "Could not start" and "failed" are told apart.
fn run(cmd: &mut Command) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(300)
                .collect::<String>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{program} printed something that is not UTF-8"))
}

/// The assembled tree for `arch`: `<dir>/python` and `<dir>/meta.json`, cached by the inputs.
fn cached_tree(
    arch: Arch,
    host: &HostPython,
    progress: &crate::progress::Progress,
) -> Result<Utf8PathBuf> {
    let mut key = format!(
        "{TREE_FORMAT}\n{arch}\n{}\n{}\n",
        host.executable, host.version
    );
    let sysroot = match arch {
        Arch::X86_64 => None,
        Arch::Arm64 => {
            let sysroot = arm64_sysroot()?;
            key.push_str(&fs_err::read_to_string(sysroot.join(".complete"))?);
            Some(sysroot)
        }
    };
    let base = crate::util::cache_dir().join("fixture");
    let dir = base.join(format!(
        "{arch}-{}",
        &crate::util::sha256_hex(key.as_bytes())[..16]
    ));
    if dir.join("meta.json").is_file() {
        progress.line(format!("reusing the assembled tree in {dir}"));
        return Ok(dir);
    }
    fs_err::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{arch}."))
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary folder in {base}"))?;
    let stage = crate::util::utf8(tmp.path().to_owned())?;
    progress.line(format!("assembling the {arch} tree in {stage}"));
    let meta = match sysroot {
        None => assemble_x86_64(&stage.join("python"), host, progress)?,
        Some(sysroot) => assemble_arm64(&stage.join("python"), &sysroot, host, progress)?,
    };
    crate::util::write_bytes_atomic(
        &stage.join("meta.json"),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    let stage = tmp.keep();
    if let Err(err) = fs_err::rename(&stage, &dir) {
        // Another process finished the same tree first: use theirs.
        let _ = fs_err::remove_dir_all(&stage);
        if !dir.join("meta.json").is_file() {
            return Err(err.into());
        }
    }
    Ok(dir)
}

/// Which stdlib paths (relative to `lib/python3.X`) a fixture leaves out, as PBS does
/// with the tests, plus caches, Tk, and the other installed packages of this machine.
fn skip_stdlib(rel: &Utf8Path) -> bool {
    let s = rel.as_str();
    let name = rel.file_name().unwrap_or("");
    let first = rel.components().next().map(|c| c.as_str()).unwrap_or("");
    name == "__pycache__"
        || matches!(first, "test" | "idlelib" | "tkinter" | "turtledemo")
        || (first == "site-packages" || first == "dist-packages") && rel.components().count() > 1
        || matches!(
            s,
            "lib2to3/tests" | "ctypes/test" | "distutils/tests" | "unittest/test" | "sqlite3/test" | "EXTERNALLY-MANAGED"
        )
        // Debian's is a link into /etc; the layer brings its own.
        || s == "sitecustomize.py"
        || (first.starts_with("config-") && (name.ends_with(".a") || name.ends_with(".o")))
        // `_crypt` (deprecated) needs libxcrypt's libcrypt.so.1, which the build machines
        // have only built against glibc 2.36; nothing here needs it. See [`NOTES`].
        || (first == "lib-dynload"
            && ["_tkinter", "_test", "_ctypes_test", "xxlimited", "_xxtestfuzz", "xxsubtype", "_crypt."]
                .iter()
                .any(|p| name.starts_with(p)))
}

/// Copies `src` into `dest` (created), skipping what `skip` says; keeps links inside the
/// tree as links, replaces links that point elsewhere by the file they point to.
fn copy_tree(src: &Utf8Path, dest: &Utf8Path, skip: &dyn Fn(&Utf8Path) -> bool) -> Result<()> {
    fs_err::create_dir_all(dest)?;
    let mut skipped: Vec<Utf8PathBuf> = Vec::new();
    for entry in crate::util::walk(src)? {
        if skipped.iter().any(|s| entry.rel.starts_with(s)) {
            continue;
        }
        if skip(&entry.rel) {
            skipped.push(entry.rel.clone());
            continue;
        }
        let from = src.join(&entry.rel);
        let to = dest.join(&entry.rel);
        if entry.file_type.is_dir() {
            fs_err::create_dir_all(&to)?;
        } else if entry.file_type.is_symlink() {
            let target = crate::util::utf8(fs_err::read_link(&from)?)?;
            if target.is_relative() && !target.as_str().contains("..") {
                std::os::unix::fs::symlink(&target, &to)
                    .with_context(|| format!("creating the symlink {to}"))?;
            } else if from.is_file() {
                fs_err::copy(&from, &to)?;
            }
        } else if entry.file_type.is_file() {
            fs_err::copy(&from, &to)?;
        }
    }
    Ok(())
}

fn assemble_x86_64(
    root: &Utf8Path,
    host: &HostPython,
    progress: &crate::progress::Progress,
) -> Result<TreeMeta> {
    let xy = &host.xy;
    let exe = format!("python{xy}");
    fs_err::create_dir_all(root.join("bin"))?;
    fs_err::create_dir_all(root.join("lib"))?;
    // The real file, not pyenv's shim or a `python3` link.
    let real_exe = host.base_prefix.join("bin").join(&exe);
    let real_exe = if real_exe.is_file() {
        real_exe
    } else {
        host.executable.clone()
    };
    fs_err::copy(&real_exe, root.join("bin").join(&exe))?;
    for link in ["python3", "python"] {
        std::os::unix::fs::symlink(&exe, root.join("bin").join(link))?;
    }
    // libpython, when the interpreter is built with --enable-shared (pyenv's is).
    if host.ldlibrary.ends_with(".so") {
        for entry in fs_err::read_dir(&host.libdir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("libpython{xy}.so")) || name == "libpython3.so" {
                let from = host.libdir.join(&name);
                let to = root.join("lib").join(&name);
                match fs_err::read_link(&from) {
                    Ok(target) => std::os::unix::fs::symlink(target, &to)?,
                    Err(_) => {
                        fs_err::copy(&from, &to)?;
                    }
                }
            }
        }
    }
    progress.line(format!("copying the standard library from {}", host.stdlib));
    copy_tree(&host.stdlib, &root.join("lib").join(&exe), &skip_stdlib)?;
    fs_err::create_dir_all(root.join("lib").join(&exe).join("site-packages"))?;
    if host.include.is_dir() {
        copy_tree(&host.include, &root.join("include").join(&exe), &|_| false)?;
    }
    let search = vec![
        host.libdir.clone(),
        "/lib/x86_64-linux-gnu".into(),
        "/usr/lib/x86_64-linux-gnu".into(),
        "/lib64".into(),
        "/usr/lib64".into(),
    ];
    let notes = make_self_contained(root, xy, Arch::X86_64, &search, progress)?;
    Ok(TreeMeta {
        version: host.version.clone(),
        xy: xy.clone(),
        magic: host.magic.clone(),
        notes,
    })
}

fn assemble_arm64(
    root: &Utf8Path,
    sysroot: &Utf8Path,
    host: &HostPython,
    progress: &crate::progress::Progress,
) -> Result<TreeMeta> {
    let xy = "3.11";
    let exe = format!("python{xy}");
    fs_err::create_dir_all(root.join("bin"))?;
    fs_err::create_dir_all(root.join("lib"))?;
    fs_err::copy(
        sysroot.join("usr/bin").join(&exe),
        root.join("bin").join(&exe),
    )?;
    for link in ["python3", "python"] {
        std::os::unix::fs::symlink(&exe, root.join("bin").join(link))?;
    }
    let stdlib = root.join("lib").join(&exe);
    copy_tree(&sysroot.join("usr/lib").join(&exe), &stdlib, &skip_stdlib)?;
    // Debian patches site.py to search only `dist-packages` (and `site-packages` only in a
    // virtual environment), and sysconfig.py to install into `/usr/local`. The layer puts
    // wheels in `lib/python3.11/site-packages`, as PBS's stock CPython expects: take both
    // files from this machine's stock CPython 3.11 (pure Python; Debian changed nothing else).
    for file in ["site.py", "sysconfig.py"] {
        fs_err::copy(host.stdlib.join(file), stdlib.join(file)).with_context(|| {
            format!(
                "replacing Debian's {file} by the stock one of {}",
                host.executable
            )
        })?;
    }
    fs_err::create_dir_all(stdlib.join("site-packages"))?;
    // But CPython 3.11 runs a frozen copy of site.py compiled into the interpreter, which
    // is Debian's. That one does process `.pth` files in `lib/python3.11/dist-packages`:
    // one there adds `site-packages` as a full site folder (its own `.pth` files included).
    let dist = stdlib.join("dist-packages");
    fs_err::create_dir_all(&dist)?;
    fs_err::write(
        dist.join("zz-site-packages.pth"),
        "import os, site, sys; site.addsitedir(os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], 'site-packages'))\n",
    )?;
    let search = vec![
        sysroot.join("lib/aarch64-linux-gnu"),
        sysroot.join("usr/lib/aarch64-linux-gnu"),
    ];
    let mut notes = make_self_contained(root, xy, Arch::Arm64, &search, progress)?;
    notes.push(ARM64_EXPAT_NOTE.to_owned());

    // The version of the Debian package, `3.11.2-6+deb12u9` -> `3.11.2`.
    let version = fs_err::read_to_string(sysroot.join(".complete"))?
        .lines()
        .find_map(|l| l.strip_prefix("python3.11-minimal_"))
        .and_then(|rest| rest.split(['-', '_']).next())
        .map(|v| v.replace("%3a", ":"))
        .unwrap_or_else(|| xy.to_owned());
    // Every CPython 3.11 has the same bytecode magic number.
    Ok(TreeMeta {
        version,
        xy: xy.to_owned(),
        magic: host.magic.clone(),
        notes,
    })
}

/// libm functions whose `GLIBC_2.35` version differs from the architecture's first one only
/// in how errors are reported (glibc 2.35 dropped the SVID `matherr` wrapper; both set
/// `errno`): a file needing only these from `GLIBC_2.35` can be bound to the older version.
const REBINDABLE: &[&str] = &["hypot", "hypotf"];

/// The glibc version [`REBINDABLE`] symbols are bound to instead: the first one of the
/// architecture, which every glibc for it has.
fn baseline_glibc_version(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "GLIBC_2.2.5",
        Arch::Arm64 => "GLIBC_2.17",
    }
}

/// What [`rebind_glibc_2_35`] did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rebind {
    /// The file needs nothing from `GLIBC_2.35` of libm or libc.
    NotNeeded,
    /// Renamed: these symbols now need the baseline version.
    Rebound(Vec<String>),
    /// Left alone, and why.
    Refused(String),
}

/// The SysV ELF hash (`vna_hash`).
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// In the ELF file `bytes`, renames the `GLIBC_2.35` requirement on `libm.so.6` (or
/// `libc.so.6`) to `new_version` when every symbol bound to it is in [`REBINDABLE`]:
/// `vna_name` gets the offset of `new_version` in `.dynstr` (which must already hold it)
/// and `vna_hash` its hash. Nothing else moves, so the file stays valid.
fn rebind_glibc_2_35(bytes: &mut [u8], new_version: &str) -> Result<Rebind> {
    rebind_glibc_2_35_of(bytes, new_version, REBINDABLE)
}

fn rebind_glibc_2_35_of(bytes: &mut [u8], new_version: &str, allowed: &[&str]) -> Result<Rebind> {
    use goblin::elf::section_header::SHT_GNU_VERNEED;
    const OLD: &str = "GLIBC_2.35";

    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| anyhow::anyhow!("not ELF: {e}"))?;
    if !elf.little_endian {
        return Ok(Rebind::Refused(
            "big-endian ELF files are not handled".into(),
        ));
    }
    // The `vna_other` index and file offset of each GLIBC_2.35 entry to rename.
    let Some(shdr) = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == SHT_GNU_VERNEED)
    else {
        return Ok(Rebind::NotNeeded);
    };
    let verneed_start = shdr.sh_offset as usize;
    let verneed_end = verneed_start + shdr.sh_size as usize;
    let dynstr = elf
        .section_headers
        .get(shdr.sh_link as usize)
        .context("the link of .gnu.version_r is not a section")?;
    let (dynstr_start, dynstr_len) = (dynstr.sh_offset as usize, dynstr.sh_size as usize);
    if verneed_end > bytes.len() || dynstr_start + dynstr_len > bytes.len() {
        bail!("version sections lie outside the file");
    }
    let u16_at = |off: usize| u16::from_le_bytes([bytes[off], bytes[off + 1]]);
    let u32_at = |off: usize| {
        u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
    };
    let mut targets: Vec<(usize, u16)> = Vec::new();
    let mut need_off = verneed_start;
    loop {
        if need_off + 16 > verneed_end {
            bail!(".gnu.version_r is truncated");
        }
        let (cnt, file, aux, next) = (
            u16_at(need_off + 2),
            u32_at(need_off + 4),
            u32_at(need_off + 8),
            u32_at(need_off + 12),
        );
        let file = elf.dynstrtab.get_at(file as usize).unwrap_or("");
        let mut aux_off = need_off + aux as usize;
        for _ in 0..cnt {
            if aux_off + 16 > verneed_end {
                bail!(".gnu.version_r is truncated");
            }
            let (other, name, aux_next) = (
                u16_at(aux_off + 6),
                u32_at(aux_off + 8),
                u32_at(aux_off + 12),
            );
            if elf.dynstrtab.get_at(name as usize) == Some(OLD) {
                if !matches!(file, "libm.so.6" | "libc.so.6") {
                    return Ok(Rebind::Refused(format!("{OLD} is needed from {file}")));
                }
                targets.push((aux_off, other));
            }
            if aux_next == 0 {
                break;
            }
            aux_off += aux_next as usize;
        }
        if next == 0 {
            break;
        }
        need_off += next as usize;
    }
    if targets.is_empty() {
        return Ok(Rebind::NotNeeded);
    }

    // Every symbol bound to those entries must be one that may be rebound.
    let versym = elf
        .versym
        .as_ref()
        .context("version requirements but no .gnu.version")?;
    let mut symbols = BTreeSet::new();
    for (i, sym) in elf.dynsyms.iter().enumerate() {
        let Some(v) = versym.get_at(i) else { continue };
        if targets.iter().any(|&(_, other)| other == v.vs_val & 0x7fff) {
            let name = elf.dynstrtab.get_at(sym.st_name).unwrap_or("?");
            if !allowed.contains(&name) {
                return Ok(Rebind::Refused(format!(
                    "{name} needs {OLD}, and only {allowed:?} may be rebound"
                )));
            }
            symbols.insert(name.to_owned());
        }
    }

    // The new name, already in .dynstr (ending in a NUL; it may be the tail of a longer one).
    let needle = format!("{new_version}\0");
    let table = &bytes[dynstr_start..dynstr_start + dynstr_len];
    let Some(name_off) = table
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
    else {
        return Ok(Rebind::Refused(format!("{new_version} is not in .dynstr")));
    };
    if elf.dynstrtab.get_at(name_off) != Some(new_version) {
        return Ok(Rebind::Refused(
            ".dynstr and DT_STRTAB disagree; not patching".into(),
        ));
    }
    let hash = elf_hash(new_version.as_bytes());
    drop(elf);
    for (aux_off, _) in targets {
        bytes[aux_off..aux_off + 4].copy_from_slice(&hash.to_le_bytes());
        bytes[aux_off + 8..aux_off + 12].copy_from_slice(&(name_off as u32).to_le_bytes());
    }
    Ok(Rebind::Rebound(symbols.into_iter().collect()))
}

/// Applies [`rebind_glibc_2_35`] to the runtime's ELF files; returns notes for the summary.
fn rebind_tree(root: &Utf8Path, xy: &str, arch: Arch) -> Result<Vec<String>> {
    let new_version = baseline_glibc_version(arch);
    let mut rebound: BTreeMap<Vec<String>, Vec<Utf8PathBuf>> = BTreeMap::new();
    let mut notes = Vec::new();
    for (rel, _) in elf_files(root, xy)? {
        let path = root.join(&rel);
        let mut bytes = fs_err::read(&path)?;
        match rebind_glibc_2_35(&mut bytes, new_version).with_context(|| format!("{path}"))? {
            Rebind::NotNeeded => {}
            Rebind::Rebound(symbols) => {
                make_writable(&path)?;
                // In place: keeps the file's mode.
                fs_err::write(&path, &bytes)?;
                rebound.entry(symbols).or_default().push(rel);
            }
            Rebind::Refused(why) => {
                notes.push(format!("{rel} still needs GLIBC_2.35: {why}"));
            }
        }
    }
    for (symbols, files) in rebound {
        let files: Vec<&str> = files.iter().map(|f| f.as_str()).collect();
        notes.push(format!(
            "{} rebound from GLIBC_2.35 to {new_version} (same function; 2.35 only changed its errno handling) in {}",
            symbols.join(", "),
            files.join(", ")
        ));
    }
    Ok(notes)
}

/// glibc's own libraries: Lambda provides them, and they must match its loader.
fn is_glibc(soname: &str) -> bool {
    const GLIBC: &[&str] = &[
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libanl.so.1",
        "libmvec.so.1",
        "libBrokenLocale.so.1",
        "libthread_db.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    GLIBC.contains(&soname) || soname.starts_with("libnss_")
}

/// `DT_NEEDED` of an ELF file.
fn needed(path: &Utf8Path) -> Result<Vec<String>> {
    let bytes = fs_err::read(path)?;
    let elf = goblin::elf::Elf::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{path} is not a readable ELF file: {e}"))?;
    Ok(elf.libraries.iter().map(|s| (*s).to_owned()).collect())
}

/// The ELF files a runtime consists of, relative to `root`, with the RPATH each needs to
/// find `lib/`: the interpreter, `lib/*.so*` and the extension modules.
fn elf_files(root: &Utf8Path, xy: &str) -> Result<Vec<(Utf8PathBuf, &'static str)>> {
    let mut out = vec![(
        Utf8PathBuf::from(format!("bin/python{xy}")),
        "$ORIGIN/../lib",
    )];
    for entry in crate::util::walk(&root.join("lib"))? {
        let rel = Utf8Path::new("lib").join(&entry.rel);
        if !entry.file_type.is_file() {
            continue;
        }
        let name = entry.rel.file_name().unwrap_or("");
        if entry.rel.components().count() == 1 && name.contains(".so") {
            out.push((rel, "$ORIGIN"));
        } else if entry.rel.starts_with(format!("python{xy}/lib-dynload")) && name.ends_with(".so")
        {
            out.push((rel, "$ORIGIN/../.."));
        }
    }
    Ok(out)
}

/// Copies every non-glibc library the ELF files need (transitively) from `search` into
/// `lib/`, drops extension modules whose libraries are missing, strips debug info, points
/// RPATHs into the tree, and rebinds [`REBINDABLE`] symbols; returns notes for the summary.
fn make_self_contained(
    root: &Utf8Path,
    xy: &str,
    arch: Arch,
    search: &[Utf8PathBuf],
    progress: &crate::progress::Progress,
) -> Result<Vec<String>> {
    let lib = root.join("lib");
    // file (relative to root) -> its needed libraries
    let mut deps: BTreeMap<Utf8PathBuf, Vec<String>> = BTreeMap::new();
    let mut missing: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<Utf8PathBuf> = elf_files(root, xy)?
        .into_iter()
        .map(|(rel, _)| rel)
        .collect();
    while let Some(rel) = queue.pop() {
        if deps.contains_key(&rel) {
            continue;
        }
        let libs = needed(&root.join(&rel))?;
        for soname in &libs {
            if is_glibc(soname) || missing.contains(soname) {
                continue;
            }
            let vendored = lib.join(soname);
            if fs_err::symlink_metadata(&vendored).is_err() {
                match search.iter().map(|d| d.join(soname)).find(|p| p.exists()) {
                    // `copy` follows links: the vendored file is the real library.
                    Some(found) => {
                        fs_err::copy(&found, &vendored)?;
                        progress.line(format!("  vendoring {soname} from {found}"));
                    }
                    None => {
                        missing.insert(soname.clone());
                        continue;
                    }
                }
            }
            queue.push(Utf8Path::new("lib").join(soname));
        }
        deps.insert(rel, libs);
    }

    // A file works when every library it needs, transitively, was found.
    fn works(
        rel: &Utf8Path,
        deps: &BTreeMap<Utf8PathBuf, Vec<String>>,
        missing: &BTreeSet<String>,
        seen: &mut BTreeSet<Utf8PathBuf>,
    ) -> Option<String> {
        if !seen.insert(rel.to_owned()) {
            return None;
        }
        for soname in deps.get(rel).into_iter().flatten() {
            if missing.contains(soname) {
                return Some(soname.clone());
            }
            let vendored = Utf8Path::new("lib").join(soname);
            if deps.contains_key(&vendored) {
                if let Some(why) = works(&vendored, deps, missing, seen) {
                    return Some(why);
                }
            }
        }
        None
    }
    let files = elf_files(root, xy)?;
    for (rel, _) in &files {
        if let Some(soname) = works(rel, &deps, &missing, &mut BTreeSet::new()) {
            if rel.starts_with("lib") && rel.as_str().contains("lib-dynload") {
                progress.line(format!(
                    "  dropping {rel}: needs {soname}, which is not available"
                ));
                fs_err::remove_file(root.join(rel))?;
            } else {
                bail!("{rel} needs {soname}, which is in none of {search:?}");
            }
        }
    }

    // Strip first: patchelf's rewritten files are best left alone by strip afterwards.
    let files = elf_files(root, xy)?;
    let strip = match arch {
        Arch::X86_64 => "strip",
        Arch::Arm64 => "aarch64-linux-gnu-strip",
    };
    let mut cmd = Command::new(strip);
    cmd.arg("--strip-unneeded");
    for (rel, _) in &files {
        make_writable(&root.join(rel))?;
        cmd.arg(root.join(rel));
    }
    run(&mut cmd).context("stripping debug info")?;

    // A DT_RPATH (not RUNPATH): it wins over LD_LIBRARY_PATH, which Lambda sets to its
    // own /lib64, so the vendored libraries are the ones loaded, as with PBS's interpreter.
    let mut by_rpath: BTreeMap<&str, Vec<Utf8PathBuf>> = BTreeMap::new();
    for (rel, rpath) in &files {
        by_rpath.entry(rpath).or_default().push(root.join(rel));
    }
    for (rpath, paths) in by_rpath {
        run(Command::new("patchelf")
            .args(["--force-rpath", "--set-rpath", rpath])
            .args(&paths))
        .context("setting RPATHs with patchelf")?;
    }
    // Last: patchelf may move .dynstr.
    let notes = rebind_tree(root, xy, arch)?;
    for note in &notes {
        progress.line(format!("  {note}"));
    }
    Ok(notes)
}

fn make_writable(path: &Utf8Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(path)?.permissions().mode();
    if mode & 0o200 == 0 {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o200))?;
    }
    Ok(())
}

/// The newest glibc symbol version any ELF file under a tree needs.
#[derive(Debug, Default)]
struct GlibcNeeds {
    max: Option<Glibc>,
    /// Files needing more than Lambda's newest glibc, with the version.
    too_new: Vec<(Utf8PathBuf, Glibc)>,
}

fn glibc_needs(root: &Utf8Path) -> Result<GlibcNeeds> {
    let mut needs = GlibcNeeds::default();
    for entry in crate::util::walk(root)? {
        if !entry.file_type.is_file() || entry.len < 64 {
            continue;
        }
        let path = root.join(&entry.rel);
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            fs_err::File::open(&path)?.read_exact(&mut magic)?;
        }
        if &magic != b"\x7fELF" {
            continue;
        }
        let bytes = fs_err::read(&path)?;
        let Ok(elf) = goblin::elf::Elf::parse(&bytes) else {
            continue;
        };
        let mut file_max: Option<Glibc> = None;
        if let Some(verneed) = &elf.verneed {
            for need in verneed.iter() {
                for aux in need.iter() {
                    let name = elf.dynstrtab.get_at(aux.vna_name).unwrap_or("");
                    if let Some(v) = name
                        .strip_prefix("GLIBC_")
                        .and_then(|v| v.parse::<Glibc>().ok())
                    {
                        file_max = file_max.max(Some(v));
                    }
                }
            }
        }
        if let Some(v) = file_max {
            needs.max = needs.max.max(Some(v));
            if v > LAMBDA_GLIBC {
                needs.too_new.push((entry.rel.clone(), v));
            }
        }
    }
    Ok(needs)
}

/// Ensures the arm64 Debian sysroot exists (downloading the packages when needed) and
/// returns it. `verify` runs arm64 layers as `qemu-aarch64-static -L SYSROOT ...`.
pub fn arm64_sysroot() -> Result<Utf8PathBuf> {
    let base = crate::util::cache_dir().join("debian-arm64");
    // Keyed by the package list, so that adding a package makes a new sysroot.
    let key = crate::util::sha256_hex(ARM64_PACKAGES.join(" ").as_bytes());
    let sysroot = base.join(format!("sysroot-{}", &key[..16]));
    if sysroot.join(".complete").is_file() {
        return Ok(sysroot);
    }
    fs_err::create_dir_all(&base)?;
    let download = tempfile::Builder::new()
        .prefix(".debs.")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary folder in {base}"))?;
    let download_dir = crate::util::utf8(download.path().to_owned())?;
    let packages: Vec<String> = ARM64_PACKAGES
        .iter()
        .map(|p| format!("{p}:arm64"))
        .collect();
    let apt = || {
        let mut cmd = Command::new("apt-get");
        cmd.arg("download")
            .args(&packages)
            .current_dir(&download_dir);
        run(&mut cmd)
    };
    if let Err(err) = apt() {
        let foreign =
            run(Command::new("dpkg").arg("--print-foreign-architectures")).unwrap_or_default();
        if foreign.split_whitespace().any(|a| a == "arm64") {
            return Err(err.context("downloading Debian's arm64 packages with apt-get"));
        }
        let root = run(Command::new("id").arg("-u"))
            .map(|s| s.trim() == "0")
            .unwrap_or(false);
        if !root {
            bail!(
                "apt does not know the arm64 architecture yet; run as root:\n  dpkg --add-architecture arm64 && apt-get update\n({err:#})"
            );
        }
        eprintln!(
            "adding the arm64 architecture to apt: dpkg --add-architecture arm64 && apt-get update"
        );
        run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        run(Command::new("apt-get").args(["update", "-q"]))?;
        apt().context("downloading Debian's arm64 packages with apt-get")?;
    }

    let stage = tempfile::Builder::new()
        .prefix(".sysroot.")
        .tempdir_in(&base)
        .with_context(|| format!("creating a temporary folder in {base}"))?;
    let stage_dir = crate::util::utf8(stage.path().to_owned())?;
    let mut debs: Vec<String> = fs_err::read_dir(&download_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    debs.sort();
    for deb in &debs {
        run(Command::new("dpkg")
            .arg("-x")
            .arg(download_dir.join(deb))
            .arg(&stage_dir))
        .with_context(|| format!("unpacking {deb}"))?;
    }
    // The list of packages doubles as the cache key of the trees built from this sysroot.
    crate::util::write_bytes_atomic(
        &stage_dir.join(".complete"),
        (debs.join("\n") + "\n").as_bytes(),
    )?;
    let stage_dir = stage.keep();
    if let Err(err) = fs_err::rename(&stage_dir, &sysroot) {
        let _ = fs_err::remove_dir_all(&stage_dir);
        if !sysroot.join(".complete").is_file() {
            return Err(err.into());
        }
    }
    // Keep the packages next to the sysroot, for whoever wants to look at them.
    let debs_dir = base.join("debs");
    if !debs_dir.exists() {
        let _ = fs_err::rename(download.keep(), &debs_dir);
    }
    Ok(sysroot)
}

/// Extracts `archive` like a layer build would and runs its interpreter: `sys.prefix`
/// must be the unpacked folder and the usual native modules must import.
fn check(arch: Arch, archive: &Utf8Path, progress: &crate::progress::Progress) -> Result<String> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let dest = crate::util::utf8(tmp.path().to_owned())?;
    let info = crate::runtime::extract(archive, &dest, arch)?;
    let exe = info.root.join(&info.exe);
    let script = format!(
        "import sys, json, platform\nimport {CHECK_IMPORTS}\nprint(json.dumps({{'prefix': sys.prefix, 'machine': platform.machine(), 'version': platform.python_version(), 'openssl': ssl.OPENSSL_VERSION, 'site': [p for p in sys.path if p.endswith('site-packages')], 'libs': sorted({{l.split()[-1] for l in open('/proc/self/maps') if '.so' in l}})}}))"
    );
    let mut cmd = match arch {
        Arch::X86_64 => {
            // Like `env -i`: no PYTHONHOME, no PATH; the interpreter finds its home itself.
            let mut cmd = Command::new(&exe);
            cmd.env_clear().args(["-I", "-c", &script]);
            cmd
        }
        Arch::Arm64 => {
            if run(Command::new("qemu-aarch64-static").arg("--version")).is_err() {
                progress.line("check skipped: qemu-aarch64-static is not installed");
                return Ok("skipped (no qemu-aarch64-static)".to_owned());
            }
            let sysroot = arm64_sysroot()?;
            let mut cmd = Command::new("qemu-aarch64-static");
            cmd.env_clear()
                .arg("-L")
                .arg(&sysroot)
                .arg("-E")
                .arg(format!("PYTHONHOME={}", info.root))
                .arg(&exe)
                // Not `-I`: it would ignore PYTHONHOME, which is how the layer runs it.
                .args(["-s", "-c", &script]);
            cmd
        }
    };
    let stdout = run(&mut cmd).with_context(|| format!("running {exe}"))?;
    #[derive(Deserialize)]
    struct Answer {
        prefix: Utf8PathBuf,
        machine: String,
        version: String,
        openssl: String,
        site: Vec<String>,
        /// Shared objects mapped into the process.
        libs: Vec<String>,
    }
    let answer: Answer = serde_json::from_str(stdout.trim())
        .with_context(|| format!("{exe} printed bad JSON: {stdout}"))?;
    let want_prefix = fs_err::canonicalize(&info.root)?;
    if fs_err::canonicalize(&answer.prefix).ok() != Some(want_prefix.clone()) {
        bail!(
            "sys.prefix is {} but the runtime is in {}",
            answer.prefix,
            want_prefix.display()
        );
    }
    if answer.machine != arch.machine() {
        bail!(
            "platform.machine() is {} but the target is {}",
            answer.machine,
            arch.machine()
        );
    }
    let site = info
        .root
        .join(format!("lib/python{}/site-packages", info.xy));
    let site = fs_err::canonicalize(&site)?;
    if !answer
        .site
        .iter()
        .any(|p| std::fs::canonicalize(p).ok().as_ref() == Some(&site))
    {
        bail!(
            "{} is not on sys.path (site-packages on it: {:?})",
            site.display(),
            answer.site
        );
    }
    // Self-contained means: every library loaded from outside the tree is glibc's.
    let root = want_prefix.to_string_lossy().into_owned();
    let outside: Vec<&String> = answer
        .libs
        .iter()
        .filter(|l| !l.starts_with(&root) && !l.starts_with(info.root.as_str()))
        .filter(|l| !is_glibc(Utf8Path::new(l).file_name().unwrap_or("")))
        .collect();
    if !outside.is_empty() {
        bail!("the interpreter loaded libraries from outside the runtime: {outside:?}");
    }
    Ok(format!(
        "python {} on {} runs from {} (sys.prefix right, site-packages on sys.path, only glibc loaded from outside); imported {CHECK_IMPORTS} ({})",
        answer.version, answer.machine, info.root, answer.openssl
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdlib_skips() {
        for skipped in [
            "test",
            "test/test_os.py",
            "__pycache__",
            "json/__pycache__",
            "site-packages/pip",
            "idlelib",
            "config-3.11-x86_64-linux-gnu/libpython3.11.a",
            "lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so",
            "lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so",
            "lib-dynload/_crypt.cpython-311-aarch64-linux-gnu.so",
            "sitecustomize.py",
            "EXTERNALLY-MANAGED",
        ] {
            assert!(
                skip_stdlib(Utf8Path::new(skipped)),
                "{skipped} should be skipped"
            );
        }
        for kept in [
            "os.py",
            "site-packages",
            "json/__init__.py",
            "config-3.11-x86_64-linux-gnu/Makefile",
            "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
            "unittest/case.py",
            "testing.py",
            "crypt.py",
        ] {
            assert!(!skip_stdlib(Utf8Path::new(kept)), "{kept} should be kept");
        }
    }

    #[test]
    fn glibc_is_not_vendored() {
        assert!(
            is_glibc("libc.so.6")
                && is_glibc("ld-linux-aarch64.so.1")
                && is_glibc("libnss_dns.so.2")
        );
        assert!(!is_glibc("libcrypt.so.1") && !is_glibc("libssl.so.3") && !is_glibc("libz.so.1"));
    }

    #[test]
    fn python_json_has_the_keys() {
        let meta = TreeMeta {
            version: "3.11.7".into(),
            xy: "3.11".into(),
            magic: "a70d0d0a".into(),
            notes: vec![],
        };
        let glibc = GlibcNeeds {
            max: Some(Glibc {
                major: 2,
                minor: 34,
            }),
            too_new: vec![],
        };
        let v: serde_json::Value =
            serde_json::from_str(&python_json(Arch::Arm64, &meta, &glibc)).expect("json");
        assert_eq!(v["python_exe"], "install/bin/python3.11");
        assert_eq!(v["python_tag"], "cp311");
        assert_eq!(v["target_triple"], "aarch64-unknown-linux-gnu");
        assert_eq!(v["crt_features"][0], "glibc-max-symbol-version:2.34");
    }

    /// `(library, version, hash)` of every version requirement of an ELF file.
    fn requirements(bytes: &[u8]) -> Vec<(String, String, u32)> {
        let elf = goblin::elf::Elf::parse(bytes).expect("still parses");
        let mut out = Vec::new();
        for need in elf.verneed.as_ref().expect("verneed").iter() {
            let file = elf.dynstrtab.get_at(need.vn_file).expect("file").to_owned();
            for aux in need.iter() {
                let name = elf.dynstrtab.get_at(aux.vna_name).expect("name").to_owned();
                out.push((file.clone(), name, aux.vna_hash));
            }
        }
        out
    }

    const PYENV_LIBPYTHON: &str = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0";

    #[test]
    fn elf_hash_matches_the_linker() {
        // As `ld` wrote them into glibc's own files.
        assert_eq!(elf_hash(b"GLIBC_2.2.5"), 0x0969_1a75);
        assert_eq!(elf_hash(b"GLIBC_2.17"), 0x0696_9197);
        assert_eq!(elf_hash(b""), 0);
    }

    /// On a copy of a real libpython that needs `hypot@GLIBC_2.35`.
    #[test]
    fn rebinds_hypot_in_a_real_libpython() {
        let Ok(original) = fs_err::read(PYENV_LIBPYTHON) else {
            eprintln!("skipped: needs {PYENV_LIBPYTHON}");
            return;
        };
        let before = requirements(&original);
        if !before.iter().any(|(_, v, _)| v == "GLIBC_2.35") {
            eprintln!("skipped: {PYENV_LIBPYTHON} does not need GLIBC_2.35");
            return;
        }
        // The hash ld wrote for GLIBC_2.2.5 elsewhere in the file.
        let (_, _, ld_hash) = before
            .iter()
            .find(|(_, v, _)| v == "GLIBC_2.2.5")
            .expect("GLIBC_2.2.5")
            .clone();

        // Not allowed: left alone, byte for byte.
        let mut bytes = original.clone();
        let refused = rebind_glibc_2_35_of(&mut bytes, "GLIBC_2.2.5", &["hypotf"]).expect("ok");
        assert!(
            matches!(&refused, Rebind::Refused(why) if why.contains("hypot")),
            "{refused:?}"
        );
        assert!(bytes == original);
        // A version .dynstr does not hold: left alone.
        let refused = rebind_glibc_2_35(&mut bytes, "GLIBC_2.99").expect("ok");
        assert!(matches!(refused, Rebind::Refused(_)), "{refused:?}");
        assert!(bytes == original);

        let done = rebind_glibc_2_35(&mut bytes, "GLIBC_2.2.5").expect("rebind");
        assert_eq!(done, Rebind::Rebound(vec!["hypot".to_owned()]));
        assert_eq!(bytes.len(), original.len());
        let after = requirements(&bytes);
        assert!(
            !after.iter().any(|(_, v, _)| v == "GLIBC_2.35"),
            "{after:?}"
        );
        assert_eq!(after.len(), before.len());
        for ((lib_a, v_a, h_a), (lib_b, v_b, h_b)) in after.iter().zip(&before) {
            assert_eq!(lib_a, lib_b);
            if v_b == "GLIBC_2.35" {
                assert_eq!((v_a.as_str(), *h_a), ("GLIBC_2.2.5", ld_hash));
            } else {
                assert_eq!((v_a, h_a), (v_b, h_b));
            }
        }
        // Only the renamed entry's 8 bytes changed.
        let changed = bytes.iter().zip(&original).filter(|(a, b)| a != b).count();
        assert!((1..=8).contains(&changed), "{changed} bytes changed");
        // Once is enough.
        assert_eq!(
            rebind_glibc_2_35(&mut bytes, "GLIBC_2.2.5").expect("again"),
            Rebind::NotNeeded
        );
        // And glibc_needs agrees, on a tree holding it.
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        fs_err::write(root.join("libpython3.11.so.1.0"), &bytes).expect("write");
        let needs = glibc_needs(&root).expect("needs");
        assert!(needs.too_new.is_empty(), "{needs:?}");
        assert!(needs.max <= Some(LAMBDA_GLIBC), "{needs:?}");
    }

    /// Builds the real x86_64 fixture (tens of seconds the first time, cached after),
    /// twice: same bytes; then unpacks and runs it.
    #[test]
    fn x86_64_fixture_runs_and_is_reproducible() {
        if Arch::host() != Some(Arch::X86_64) || HostPython::find().is_err() {
            eprintln!("skipped: needs an x86_64 machine with CPython 3.11");
            return;
        }
        let progress = crate::progress::Progress::new();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        let a = dir.join("a.tar.gz");
        let b = dir.join("b.tar.gz");
        let built = build(Arch::X86_64, Flavour::InstallOnly, &a, &progress).expect("build a");
        // hypot rebound, _crypt left out: nothing needs more than Lambda's glibc.
        assert!(built.glibc.too_new.is_empty(), "{:?}", built.glibc);
        assert!(built.glibc.max <= Some(LAMBDA_GLIBC), "{:?}", built.glibc);
        build(Arch::X86_64, Flavour::InstallOnly, &b, &progress).expect("build b");
        assert_eq!(
            crate::util::sha256_file(&a).expect("a"),
            crate::util::sha256_file(&b).expect("b")
        );
        let report = check(Arch::X86_64, &a, &progress).expect("check");
        assert!(report.contains("x86_64"), "{report}");

        let full = dir.join("full.tar.zst");
        build(Arch::X86_64, Flavour::Full, &full, &progress).expect("build full");
        let dest = dir.join("unpacked");
        let info = crate::runtime::extract(&full, &dest, Arch::X86_64).expect("extract full");
        assert_eq!(info.exe, "bin/python3.11");
        assert!(info.version.starts_with("3.11."), "{}", info.version);
        let out = Command::new(info.root.join(&info.exe))
            .env_clear()
            .env("LD_BIND_NOW", "1")
            .args(["-c", REBOUND_CHECK])
            .output();
        assert_eq!(out.expect("run").stdout, b"ok\n");
        assert!(!dest.join("python/install/lib/libcrypt.so.1").exists());
    }

    /// Uses the rebound `hypot` (from libpython and from cmath); `crypt` is left out.
    const REBOUND_CHECK: &str = "import ssl, math, cmath\nassert math.hypot(3, 4) == 5.0\nassert cmath.polar(3+4j)[0] == 5.0\ntry:\n    import crypt\nexcept ImportError:\n    print('ok')";

    /// Builds the arm64 fixture from Debian's packages and runs it under qemu.
    #[test]
    fn arm64_fixture_runs_under_qemu() {
        if run(Command::new("qemu-aarch64-static").arg("--version")).is_err()
            || HostPython::find().is_err()
        {
            eprintln!("skipped: needs qemu-aarch64-static and CPython 3.11");
            return;
        }
        let progress = crate::progress::Progress::new();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).expect("utf8");
        let out = dir.join("arm64.tar.gz");
        let built = build(Arch::Arm64, Flavour::InstallOnly, &out, &progress).expect("build");
        // Only Debian's libexpat (needed by the interpreter itself) is left above 2.34.
        let too_new: Vec<&str> = built
            .glibc
            .too_new
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        assert!(
            too_new.is_empty() || too_new == ["lib/libexpat.so.1"],
            "{:?}",
            built.glibc
        );
        let report = check(Arch::Arm64, &out, &progress).expect("check");
        assert!(report.contains("aarch64"), "{report}");
        let dest = dir.join("unpacked");
        let info = crate::runtime::extract(&out, &dest, Arch::Arm64).expect("extract");
        let sysroot = arm64_sysroot().expect("sysroot");
        let out = Command::new("qemu-aarch64-static")
            .env_clear()
            .arg("-L")
            .arg(&sysroot)
            .arg("-E")
            .arg(format!("PYTHONHOME={}", info.root))
            .args(["-E", "LD_BIND_NOW=1"])
            .arg(info.root.join(&info.exe))
            .args(["-s", "-c", REBOUND_CHECK])
            .output()
            .expect("run");
        assert_eq!(
            out.stdout,
            b"ok\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
