//! Checks that need no interpreter: every ELF file's machine, glibc symbol versions and
//! needed libraries; no `.so` inside a zip; sizes against Lambda's limits and the budget.

use std::collections::BTreeSet;
use std::io::Read;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use super::Check;
use crate::spec::{Arch, Glibc, Runtime, Spec};
use crate::util::elf::{self, ElfInfo};

/// `layer/lambda-base-libs.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseLibs {
    pub common: Vec<String>,
    #[serde(default)]
    pub al2: Vec<String>,
    #[serde(default)]
    pub al2023: Vec<String>,
}

impl BaseLibs {
    pub fn load(path: &Utf8Path) -> Result<BaseLibs> {
        let text =
            fs_err::read_to_string(path).context("reading the list of base-image libraries")?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path}: {}", crate::spec::format_toml_error(&text, &e)))
    }

    /// The libraries the target provides. With only `glibc` set, the runtime is unknown:
    /// only the libraries common to every base image count.
    pub fn for_runtime(&self, runtime: Option<Runtime>) -> BTreeSet<String> {
        let extra = match runtime {
            Some(Runtime::Al2) => &self.al2,
            Some(Runtime::Al2023) => &self.al2023,
            None => &self.common,
        };
        self.common.iter().chain(extra).cloned().collect()
    }
}

/// One ELF file of the layer, by its path relative to the layer root (`/opt`).
#[derive(Debug, Clone)]
pub struct ElfFile {
    pub rel: Utf8PathBuf,
    pub info: ElfInfo,
}

/// Reads every ELF file under `root`; a file that starts like ELF but does not parse is
/// reported as a problem rather than skipped.
pub fn scan_elf(root: &Utf8Path) -> Result<(Vec<ElfFile>, Vec<String>)> {
    let mut files = Vec::new();
    let mut broken = Vec::new();
    for entry in crate::util::walk(root)? {
        if !entry.file_type.is_file() || entry.len < 4 {
            continue;
        }
        let path = root.join(&entry.rel);
        let mut magic = [0u8; 4];
        fs_err::File::open(&path)?
            .read_exact(&mut magic)
            .with_context(|| format!("reading {path}"))?;
        if !elf::is_elf(&magic) {
            continue;
        }
        let bytes = fs_err::read(&path)?;
        match elf::inspect(&bytes) {
            Ok(info) => files.push(ElfFile {
                rel: entry.rel,
                info,
            }),
            Err(e) => broken.push(format!("{}: {e:#}", entry.rel)),
        }
    }
    Ok((files, broken))
}

/// Keeps a detail readable when hundreds of files fail the same way.
fn summarize(items: &[String], what_ok: String) -> (bool, String) {
    const SHOWN: usize = 12;
    if items.is_empty() {
        return (true, what_ok);
    }
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        s += &format!("; and {} more", items.len() - SHOWN);
    }
    (false, s)
}

/// Machine, glibc and needed-library checks over the scanned ELF files.
pub fn elf_checks(
    files: &[ElfFile],
    broken: &[String],
    arch: Arch,
    glibc: Glibc,
    base: &BTreeSet<String>,
    layer_files: &BTreeSet<Utf8PathBuf>,
    interpreter: &Utf8Path,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let want = arch.elf_machine();
    let mut wrong: Vec<String> = broken
        .iter()
        .map(|b| format!("unreadable ELF {b}"))
        .collect();
    wrong.extend(files.iter().filter(|f| f.info.machine != want).map(|f| {
        format!(
            "{} is {}, not {}",
            f.rel,
            elf::machine_name(f.info.machine),
            elf::machine_name(want)
        )
    }));
    let (ok, detail) = summarize(
        &wrong,
        format!("{} ELF files, all {}", files.len(), elf::machine_name(want)),
    );
    checks.push(Check::new("static: elf machine", ok, detail));

    let mut newest: Option<(Glibc, &Utf8Path)> = None;
    let mut too_new = Vec::new();
    for f in files {
        if let Some(v) = f.info.max_glibc {
            if newest.is_none_or(|(n, _)| v > n) {
                newest = Some((v, &f.rel));
            }
            if v > glibc {
                too_new.push(format!("{} needs GLIBC_{v}", f.rel));
            }
        }
    }
    let ok_detail = match newest {
        Some((v, path)) => format!("newest needed GLIBC_{v} ({path})"),
        None => "no versioned glibc symbols".to_owned(),
    };
    let (ok, mut detail) = summarize(&too_new, ok_detail);
    if !ok {
        detail = format!("target glibc is {glibc}: {detail}");
    }
    checks.push(Check::new(format!("static: glibc <= {glibc}"), ok, detail));

    // The interpreter's own search path is where libraries that it, or an extension module
    // loaded into it, need are found in practice (the loader also reuses what is already
    // loaded). `/opt/lib` is on Lambda's LD_LIBRARY_PATH.
    let interp_dirs: Vec<Utf8PathBuf> = files
        .iter()
        .find(|f| f.rel == interpreter)
        .map(|f| expand_search_paths(&f.rel, &f.info.search_paths))
        .unwrap_or_default();
    let mut missing = Vec::new();
    for f in files {
        let mut dirs = expand_search_paths(&f.rel, &f.info.search_paths);
        dirs.extend(interp_dirs.iter().cloned());
        dirs.push(Utf8PathBuf::from("lib"));
        for lib in &f.info.needed {
            let in_layer = dirs.iter().any(|d| layer_files.contains(&d.join(lib)));
            if !in_layer && !base.contains(lib) {
                missing.push(format!("{} needs {lib}", f.rel));
            }
        }
    }
    let (ok, mut detail) = summarize(
        &missing,
        "every needed library is in the layer or in Lambda's base image".to_owned(),
    );
    if !ok {
        detail = format!("not in the layer nor in layer/lambda-base-libs.toml: {detail}");
    }
    checks.push(Check::new("static: needed libraries", ok, detail));
    checks
}

/// `$ORIGIN/../lib` of `python/bin/python3.11` -> `python/lib`, relative to the layer root.
/// Absolute paths outside `/opt` can hold nothing of the layer and are dropped.
pub fn expand_search_paths(file: &Utf8Path, paths: &[String]) -> Vec<Utf8PathBuf> {
    let origin = file.parent().unwrap_or(Utf8Path::new(""));
    let mut out = Vec::new();
    for p in paths {
        let joined = if let Some(rest) = p
            .strip_prefix("$ORIGIN")
            .or_else(|| p.strip_prefix("${ORIGIN}"))
        {
            format!("{origin}/{}", rest.trim_start_matches('/'))
        } else if let Some(rest) = p.strip_prefix("/opt/") {
            rest.to_owned()
        } else {
            continue;
        };
        let mut parts: Vec<&str> = Vec::new();
        for c in joined.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        out.push(Utf8PathBuf::from(parts.join("/")));
    }
    out
}

/// Every `.so` stored inside a zip in the layer: zipimport cannot load them.
pub fn so_in_zips(root: &Utf8Path) -> Result<Check> {
    let mut found = Vec::new();
    let mut zips = 0;
    for entry in crate::util::walk(root)? {
        if !entry.file_type.is_file() || !entry.rel.as_str().ends_with(".zip") {
            continue;
        }
        zips += 1;
        let path = root.join(&entry.rel);
        let archive = zip::ZipArchive::new(fs_err::File::open(&path)?)
            .with_context(|| format!("{path} is not a valid zip"))?;
        for name in archive.file_names() {
            let name = name.with_context(|| format!("reading the entries of {path}"))?;
            let base = name.rsplit('/').next().unwrap_or(&name);
            if base.ends_with(".so") || base.contains(".so.") {
                found.push(format!("{}!{name}", entry.rel));
            }
        }
    }
    let (ok, detail) = summarize(
        &found,
        if zips == 0 {
            "no zip in the layer".to_owned()
        } else {
            format!("{zips} zip(s), no .so inside")
        },
    );
    Ok(Check::new("static: no .so inside a zip", ok, detail))
}

/// What to do with a zip over Lambda's 50 MB direct upload (verify cannot import build).
fn direct_upload_advice() -> String {
    format!(
        "over Lambda's {} direct upload: publish it from S3, or build with `--split`",
        crate::util::fmt::mb(crate::core::LAMBDA_ZIP_LIMIT)
    )
}

/// The layer zip's size and unpacked size against Lambda's limits and the spec's budget.
pub fn size_checks(spec: &Spec, zips: &[Utf8PathBuf]) -> Result<Vec<Check>> {
    use crate::core::{LAMBDA_UNPACKED_LIMIT, LAMBDA_ZIP_LIMIT};
    use crate::util::fmt::mb;
    let mut sizes = Vec::new();
    let mut unpacked = 0;
    for zip in zips {
        let stats = crate::util::zipinfo::read_stats(zip)?;
        unpacked += stats.entries.iter().map(|e| e.uncompressed).sum::<u64>();
        sizes.push((zip, stats.zip_bytes));
    }
    let one = |name: &str, value: u64, limits: &[(&str, Option<u64>)]| {
        let mut over = Vec::new();
        let mut parts = Vec::new();
        for (whose, limit) in limits {
            if let Some(limit) = limit {
                parts.push(format!("{whose} {}", mb(*limit)));
                if value > *limit {
                    over.push(format!("over {whose} {}", mb(*limit)));
                }
            }
        }
        if over.is_empty() {
            Check::new(
                name,
                true,
                format!("{} (within {})", mb(value), parts.join(", ")),
            )
        } else {
            Check::new(name, false, format!("{}: {}", mb(value), over.join(", ")))
        }
    };
    let zip_limits = [
        ("Lambda's direct upload", Some(LAMBDA_ZIP_LIMIT)),
        ("budget", spec.budget.zip_bytes),
    ];
    // A stack of layers: every part is one direct upload; the unpacked limit counts them all.
    let zip_check = match sizes.as_slice() {
        // One zip: Lambda's 50 MB limits a direct upload only (S3 takes more), so it fails the
        // check when the spec's budget asks for one direct upload and is said otherwise.
        [(_, bytes)] => {
            let mut check = one("size: zip", *bytes, &zip_limits[1..]);
            if *bytes > LAMBDA_ZIP_LIMIT && check.ok {
                check.detail = mb(*bytes) + ": " + &direct_upload_advice();
            }
            check
        }
        parts => {
            let checked: Vec<(String, Check)> = parts
                .iter()
                .map(|(zip, bytes)| {
                    let name = zip.file_name().unwrap_or(zip.as_str()).to_owned();
                    (name, one("size: zip", *bytes, &zip_limits))
                })
                .collect();
            let ok = checked.iter().all(|(_, c)| c.ok);
            let detail: Vec<String> = checked
                .iter()
                .filter(|(_, c)| ok || !c.ok)
                .map(|(name, c)| format!("{name} {}", c.detail))
                .collect();
            Check::new(
                "size: zip",
                ok,
                format!("{} layers: {}", parts.len(), detail.join("; ")),
            )
        }
    };
    Ok(vec![
        zip_check,
        one(
            "size: unpacked",
            unpacked,
            &[
                ("Lambda's", Some(LAMBDA_UNPACKED_LIMIT)),
                ("budget", spec.budget.unpacked_bytes),
            ],
        ),
    ])
}

/// Every path of the layer (files and links), for library lookups.
pub fn layer_paths(root: &Utf8Path) -> Result<BTreeSet<Utf8PathBuf>> {
    Ok(crate::util::walk(root)?
        .into_iter()
        .filter(|e| !e.file_type.is_dir())
        .map(|e| e.rel)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::header::{EM_AARCH64, EM_X86_64};
    use std::collections::BTreeMap;

    fn file(rel: &str, machine: u16, needed: &[&str], rpath: &[&str], glibc: u32) -> ElfFile {
        ElfFile {
            rel: rel.into(),
            info: ElfInfo {
                machine,
                needed: needed.iter().map(|s| (*s).to_owned()).collect(),
                search_paths: rpath.iter().map(|s| (*s).to_owned()).collect(),
                max_glibc: Some(Glibc {
                    major: 2,
                    minor: glibc,
                }),
            },
        }
    }

    #[test]
    fn expands_origin() {
        assert_eq!(
            expand_search_paths(
                "python/bin/python3.11".into(),
                &[
                    "$ORIGIN/../lib".into(),
                    "/usr/lib".into(),
                    "/opt/lib64".into()
                ]
            ),
            vec![Utf8PathBuf::from("python/lib"), "lib64".into()]
        );
        assert_eq!(
            expand_search_paths(
                "sp/numpy/core/_m.so".into(),
                &["${ORIGIN}/../../numpy.libs".into()]
            ),
            vec![Utf8PathBuf::from("sp/numpy.libs")]
        );
    }

    #[test]
    fn names_each_kind_of_breakage() {
        let base: BTreeSet<String> = ["libc.so.6".to_owned()].into();
        let layer: BTreeSet<Utf8PathBuf> = [
            "python/bin/python3.11",
            "python/lib/libpython3.11.so.1.0",
            "sp/a.libs/libgfortran.so.5",
        ]
        .into_iter()
        .map(Utf8PathBuf::from)
        .collect();
        let files = vec![
            file(
                "python/bin/python3.11",
                EM_X86_64,
                &["libpython3.11.so.1.0", "libc.so.6"],
                &["$ORIGIN/../lib"],
                17,
            ),
            file(
                "sp/a/x.so",
                EM_X86_64,
                &["libgfortran.so.5"],
                &["$ORIGIN/../a.libs"],
                28,
            ),
            file("sp/b/y.so", EM_AARCH64, &["libc.so.6"], &[], 17),
            file("sp/c/z.so", EM_X86_64, &["libssl.so.3"], &[], 35),
        ];
        let checks = elf_checks(
            &files,
            &[],
            Arch::X86_64,
            Glibc {
                major: 2,
                minor: 34,
            },
            &base,
            &layer,
            "python/bin/python3.11".into(),
        );
        let by_name: BTreeMap<&str, &Check> = checks.iter().map(|c| (c.name.as_str(), c)).collect();
        let machine = by_name["static: elf machine"];
        assert!(
            !machine.ok && machine.detail.contains("sp/b/y.so is AArch64"),
            "{machine:?}"
        );
        let glibc = by_name["static: glibc <= 2.34"];
        assert!(
            !glibc.ok && glibc.detail.contains("sp/c/z.so needs GLIBC_2.35"),
            "{glibc:?}"
        );
        let needed = by_name["static: needed libraries"];
        assert!(
            !needed.ok && needed.detail.contains("sp/c/z.so needs libssl.so.3"),
            "{needed:?}"
        );
        assert!(!needed.detail.contains("libgfortran"), "{needed:?}");
        assert!(!needed.detail.contains("libpython"), "{needed:?}");
    }

    #[test]
    fn the_repository_base_list_parses() {
        let path = crate::core::project_root().join("layer/lambda-base-libs.toml");
        let libs = BaseLibs::load(&path).expect("layer/lambda-base-libs.toml parses");
        let al2023 = libs.for_runtime(Some(Runtime::Al2023));
        for lib in ["libc.so.6", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1"] {
            assert!(al2023.contains(lib), "{lib}");
        }
        assert!(!al2023.contains("libssl.so.3"));
        assert!(libs
            .for_runtime(Some(Runtime::Al2))
            .contains("libcrypt.so.1"));
    }
}
