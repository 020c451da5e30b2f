//! Wheels: choosing the file that fits the target (PEP 425 tags) and installing it
//! into site-packages as PEP 427 says. No resolver and no sdist build ever runs here.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use crate::spec::{Arch, Glibc};

/// What a wheel must run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub arch: Arch,
    pub glibc: Glibc,
    /// CPython minor version, e.g. 11 for 3.11.
    pub py_minor: u32,
}

/// The parts of a wheel file name (`name-version[-build]-py-abi-platform.whl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelName {
    pub name: String,
    pub version: String,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

impl WheelName {
    pub fn parse(file: &str) -> Option<WheelName> {
        let stem = file.strip_suffix(".whl")?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, py, abi, plat) = match parts.as_slice() {
            [n, v, py, abi, plat] | [n, v, _, py, abi, plat] => (n, v, py, abi, plat),
            _ => return None,
        };
        let split = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        Some(WheelName {
            name: name.to_string(),
            version: version.to_string(),
            python: split(py),
            abi: split(abi),
            platform: split(plat),
        })
    }

    /// Every `py-abi-platform` triple this file carries.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = Vec::new();
        for py in &self.python {
            for abi in &self.abi {
                for plat in &self.platform {
                    tags.push(format!("{py}-{abi}-{plat}"));
                }
            }
        }
        tags
    }

    /// How well the wheel fits `target`: `None` when it cannot run there, else a score
    /// where higher is more specific (native beats abi3 beats pure; newer glibc baseline wins).
    pub fn score(&self, target: &Target) -> Option<u64> {
        let mut best: Option<u64> = None;
        for py in &self.python {
            for abi in &self.abi {
                let Some(interp) = interpreter_score(py, abi, target.py_minor) else {
                    continue;
                };
                for plat in &self.platform {
                    let Some(plat) = platform_score(plat, target) else {
                        continue;
                    };
                    let score = interp * 1_000_000 + plat;
                    best = Some(best.map_or(score, |b| b.max(score)));
                }
            }
        }
        best
    }
}

/// Scores the interpreter and ABI half of a tag for CPython 3.`minor`.
fn interpreter_score(py: &str, abi: &str, minor: u32) -> Option<u64> {
    let cp_minor = |tag: &str| -> Option<u32> { tag.strip_prefix("cp3")?.parse().ok() };
    let py_minor = |tag: &str| -> Option<u32> {
        let rest = tag.strip_prefix("py3")?;
        if rest.is_empty() {
            Some(0)
        } else {
            rest.parse().ok()
        }
    };
    match abi {
        _ if abi == format!("cp3{minor}") => (cp_minor(py) == Some(minor)).then_some(300),
        "abi3" => cp_minor(py)
            .filter(|m| *m <= minor)
            .map(|m| 200 + u64::from(m)),
        "none" => {
            if cp_minor(py) == Some(minor) {
                Some(150)
            } else {
                py_minor(py)
                    .filter(|m| *m <= minor)
                    .map(|m| 100 + u64::from(m))
            }
        }
        _ => None,
    }
}

/// Scores the platform half: `any`, or a manylinux tag for the target's machine whose
/// glibc baseline is no newer than the target's.
fn platform_score(plat: &str, target: &Target) -> Option<u64> {
    if plat == "any" {
        return Some(1);
    }
    let arch = target.arch.machine();
    let (major, minor) = if let Some(rest) = plat.strip_prefix("manylinux_") {
        let rest = rest.strip_suffix(arch)?.strip_suffix('_')?;
        let (ma, mi) = rest.split_once('_')?;
        (ma.parse::<u32>().ok()?, mi.parse::<u32>().ok()?)
    } else {
        let legacy = plat.strip_suffix(arch)?.strip_suffix('_')?;
        match legacy {
            "manylinux2014" => (2, 17),
            "manylinux2010" => (2, 12),
            "manylinux1" => (2, 5),
            _ => return None,
        }
    };
    let needs = Glibc { major, minor };
    (needs <= target.glibc).then_some(10 + u64::from(minor))
}

/// The file of `files` that fits `target` best, or `None`.
pub fn select_wheel<'a>(files: &'a [String], target: &Target) -> Option<&'a String> {
    files
        .iter()
        .filter_map(|f| Some((WheelName::parse(f)?.score(target)?, f)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, f)| f)
}

/// A distribution installed into site-packages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub wheel: String,
    /// Every file written, relative to site-packages.
    pub files: Vec<Utf8PathBuf>,
    /// Files of the wheel's `.data/scripts`, `headers` and `data`, which a layer does not need.
    pub skipped: Vec<String>,
}

/// Normalizes a distribution name as PEP 503 says.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if c == '-' || c == '_' || c == '.' {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Rejects zip member names that would land outside the destination.
fn safe_member(name: &str) -> Result<Utf8PathBuf> {
    let path = Utf8Path::new(name);
    if name.starts_with('/')
        || name.contains('\\')
        || path
            .components()
            .any(|c| !matches!(c, camino::Utf8Component::Normal(_)))
    {
        bail!("unsafe path `{name}`");
    }
    Ok(path.to_owned())
}

/// Installs a wheel into `site_packages`, checking every file against the wheel's RECORD.
pub fn install_wheel(wheel: &Utf8Path, site_packages: &Utf8Path) -> Result<Installed> {
    let file_name = wheel.file_name().unwrap_or_default().to_owned();
    let parsed = WheelName::parse(&file_name)
        .with_context(|| format!("`{file_name}` is not a wheel file name"))?;
    let file = fs_err::File::open(wheel)?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{wheel} is not a valid zip"))?;

    // Locate `<name>-<version>.dist-info/` (its name need not match the file name's case).
    let mut dist_info: Option<String> = None;
    for i in 0..zip.len() {
        let name = zip.by_index_raw(i)?.name()?.to_string();
        if let Some((top, _)) = name.split_once('/') {
            if top.ends_with(".dist-info") && dist_info.as_deref().is_none_or(|d| d == top) {
                dist_info = Some(top.to_owned());
            } else if top.ends_with(".dist-info") {
                bail!(
                    "{file_name} has two .dist-info folders: {} and {top}",
                    dist_info.unwrap_or_default()
                );
            }
        }
    }
    let dist_info = dist_info.with_context(|| format!("{file_name} has no .dist-info folder"))?;
    let data_dir = format!("{}.data", dist_info.trim_end_matches(".dist-info"));

    let record = read_record(&mut zip, &format!("{dist_info}/RECORD"))
        .with_context(|| format!("reading the RECORD of {file_name}"))?;

    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry.name()?.to_string();
        if entry.is_dir() {
            continue;
        }
        let member = safe_member(&name).with_context(|| file_name.clone())?;
        let dest_rel = match member.strip_prefix(&data_dir) {
            Ok(rest) => {
                let mut comps = rest.components();
                let scheme = comps.next().map(|c| c.as_str()).unwrap_or_default();
                let rest: Utf8PathBuf = comps.collect();
                match scheme {
                    "purelib" | "platlib" => rest,
                    _ => {
                        skipped.push(name);
                        continue;
                    }
                }
            }
            Err(_) => member.clone(),
        };
        if dest_rel.as_str().is_empty() {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {name} from {file_name}"))?;
        match record.get(name.as_str()) {
            Some(Some(expected)) => {
                let actual =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&bytes));
                if &actual != expected {
                    bail!("{file_name}: {name} does not match its RECORD hash (sha256={expected}, file has sha256={actual})");
                }
            }
            Some(None) => {}
            None if name.starts_with(&format!("{dist_info}/")) => {}
            None => bail!("{file_name}: {name} is not listed in RECORD"),
        }
        let dest = site_packages.join(&dest_rel);
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if dest.symlink_metadata().is_ok() {
            bail!("{file_name}: {dest_rel} is already installed by another distribution");
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        fs_err::write(&dest, &bytes)?;
        if executable {
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
        }
        files.push(dest_rel);
    }

    // Mark who installed it, as installers do (PEP 376).
    let installer = Utf8PathBuf::from(&dist_info).join("INSTALLER");
    fs_err::write(site_packages.join(&installer), "cargo-xtask-layer\n")?;
    let record_path = site_packages.join(&dist_info).join("RECORD");
    let mut record_text = fs_err::read_to_string(&record_path)?;
    if !record_text.ends_with('\n') {
        record_text.push('\n');
    }
    record_text.push_str(&format!("{installer},,\n"));
    fs_err::write(&record_path, record_text)?;
    files.push(installer);

    let (name, version) = read_name_version(&site_packages.join(&dist_info).join("METADATA"))
        .unwrap_or((parsed.name.clone(), parsed.version.clone()));
    files.sort();
    Ok(Installed {
        name,
        version,
        wheel: file_name,
        files,
        skipped,
    })
}

/// RECORD as a map from path to its urlsafe-base64 sha256 (`None` when not hashed).
fn read_record(
    zip: &mut zip::ZipArchive<fs_err::File>,
    name: &str,
) -> Result<BTreeMap<String, Option<String>>> {
    let mut text = String::new();
    zip.by_name(name)
        .with_context(|| format!("{name} is missing"))?
        .read_to_string(&mut text)?;
    Ok(super::distinfo::parse_record(&text)
        .into_iter()
        .map(|e| (e.path, e.sha256))
        .collect())
}

/// `Name` and `Version` from a METADATA file.
pub fn read_name_version(metadata: &Utf8Path) -> Option<(String, String)> {
    super::distinfo::name_version(&std::fs::read_to_string(metadata).ok()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn target(arch: Arch, glibc: (u32, u32)) -> Target {
        Target {
            arch,
            glibc: Glibc {
                major: glibc.0,
                minor: glibc.1,
            },
            py_minor: 11,
        }
    }

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefers_native_then_abi3_then_pure() {
        let aiohttp = files(&[
            "aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
            "aiohttp-3.14.5-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.manylinux_2_28_aarch64.whl",
            "aiohttp-3.14.5-cp312-cp312-manylinux_2_17_x86_64.whl",
            "aiohttp-3.14.5-cp311-cp311-musllinux_1_2_x86_64.whl",
            "aiohttp-3.14.5-cp311-cp311-win_amd64.whl",
            "aiohttp-3.14.5-py3-none-any.whl",
        ]);
        let x86 = target(Arch::X86_64, (2, 34));
        assert!(select_wheel(&aiohttp, &x86)
            .unwrap()
            .contains("cp311-cp311-manylinux2014_x86_64"));
        let arm = target(Arch::Arm64, (2, 34));
        assert!(select_wheel(&aiohttp, &arm).unwrap().contains("aarch64"));
        let charset = files(&[
            "charset_normalizer-3.5.2-cp37-abi3-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl",
            "charset_normalizer-3.5.2-py3-none-any.whl",
        ]);
        assert!(select_wheel(&charset, &x86).unwrap().contains("abi3"));
    }

    #[test]
    fn respects_the_glibc_of_the_target() {
        let litellm_new = files(&[
            "litellm-1.109.1-cp39-abi3-manylinux_2_28_x86_64.whl",
            "litellm-1.109.1-cp39-abi3-manylinux_2_28_aarch64.whl",
        ]);
        // Amazon Linux 2 has glibc 2.26: a manylinux_2_28 wheel cannot run there.
        assert_eq!(
            select_wheel(&litellm_new, &target(Arch::X86_64, (2, 26))),
            None
        );
        assert!(select_wheel(&litellm_new, &target(Arch::X86_64, (2, 34))).is_some());
        // Among several baselines the newest that fits wins.
        let both = files(&[
            "x-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            "x-1-cp311-cp311-manylinux_2_34_x86_64.whl",
        ]);
        assert!(select_wheel(&both, &target(Arch::X86_64, (2, 34)))
            .unwrap()
            .contains("2_34"));
        assert!(select_wheel(&both, &target(Arch::X86_64, (2, 26)))
            .unwrap()
            .contains("2_17"));
    }

    #[test]
    fn refuses_other_pythons() {
        let t = target(Arch::X86_64, (2, 34));
        assert_eq!(
            select_wheel(&files(&["x-1-cp312-abi3-manylinux_2_17_x86_64.whl"]), &t),
            None
        );
        assert_eq!(select_wheel(&files(&["x-1-py2-none-any.whl"]), &t), None);
        assert_eq!(
            select_wheel(
                &files(&["x-1-pp310-pypy310_pp73-manylinux_2_17_x86_64.whl"]),
                &t
            ),
            None
        );
        assert_eq!(
            select_wheel(&files(&["x-1-cp311-cp311-linux_x86_64.whl"]), &t),
            None
        );
        assert!(select_wheel(&files(&["x-1-py311-none-any.whl"]), &t).is_some());
        assert!(select_wheel(&files(&["x-1-2-py3-none-any.whl"]), &t).is_some());
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("Charset_Normalizer"), "charset-normalizer");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a__b"), "a-b");
    }

    pub(crate) fn make_wheel(
        dir: &Utf8Path,
        entries: &[(&str, &[u8])],
        record_override: Option<&str>,
    ) -> Utf8PathBuf {
        use std::io::Write;
        let path = dir.join("demo-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        let mut record = String::new();
        for (name, bytes) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(bytes).unwrap();
            let hash =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes));
            record.push_str(&format!("{name},sha256={hash},{}\n", bytes.len()));
        }
        record.push_str("demo-1.0.dist-info/RECORD,,\n");
        zip.start_file("demo-1.0.dist-info/RECORD", opts).unwrap();
        zip.write_all(record_override.unwrap_or(&record).as_bytes())
            .unwrap();
        zip.finish().unwrap();
        path
    }

    #[test]
    fn installs_a_wheel_with_data_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = dir.join("site-packages");
        fs_err::create_dir_all(&sp).unwrap();
        let wheel = make_wheel(
            dir,
            &[
                ("demo/__init__.py", b"x = 1\n"),
                ("demo-1.0.data/platlib/demo_native.py", b"y = 2\n"),
                ("demo-1.0.data/scripts/demo", b"#!python\n"),
                (
                    "demo-1.0.dist-info/METADATA",
                    b"Metadata-Version: 2.1\nName: Demo\nVersion: 1.0\n\n",
                ),
            ],
            None,
        );
        let installed = install_wheel(&wheel, &sp).unwrap();
        assert_eq!(
            (installed.name.as_str(), installed.version.as_str()),
            ("Demo", "1.0")
        );
        assert!(sp.join("demo/__init__.py").is_file());
        assert!(sp.join("demo_native.py").is_file());
        assert!(!sp.join("demo-1.0.data").exists());
        assert_eq!(
            installed.skipped,
            vec!["demo-1.0.data/scripts/demo".to_owned()]
        );
        assert!(fs_err::read_to_string(sp.join("demo-1.0.dist-info/RECORD"))
            .unwrap()
            .contains("INSTALLER"));
    }

    #[test]
    fn refuses_a_tampered_wheel_and_unsafe_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let sp = dir.join("site-packages");
        fs_err::create_dir_all(&sp).unwrap();
        let tampered = make_wheel(
            dir,
            &[("demo/__init__.py", b"x = 1\n")],
            Some("demo/__init__.py,sha256=AAAA,6\ndemo-1.0.dist-info/RECORD,,\n"),
        );
        let err = format!("{:#}", install_wheel(&tampered, &sp).unwrap_err());
        assert!(err.contains("does not match its RECORD hash"), "{err}");

        let evil = make_wheel(dir, &[("../evil.py", b"boom\n")], None);
        let err = format!("{:#}", install_wheel(&evil, &sp).unwrap_err());
        assert!(err.contains("unsafe path `../evil.py`"), "{err}");
        assert!(!dir.join("evil.py").exists());
    }
}
