//! `cargo xtask lock`: resolves the spec's requirements with uv for every architecture and
//! writes one PEP 751 lock with the wheels of all of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::python::pylock::{LockedWheel, PyLock};
use crate::spec::advisories::AdvisoriesFile;
use crate::spec::{Arch, Spec};
use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::cmd;

/// Regenerates the lock of the spec at `spec_path` (`cargo xtask lock`).
pub fn run(spec_path: &Utf8Path) -> Result<ExitCode> {
    let spec = Spec::load(spec_path)?;
    let out = spec.lock_path();
    // Before resolving: the index may no longer serve an advised release at all, and uv
    // would then only say that no version satisfies the requirement.
    let advisories = AdvisoriesFile::for_spec(&spec)?;
    advisories.check_requirements(&spec.requirements.packages, "[requirements] packages")?;
    advisories.check_requirements(&spec.requirements.constraints, "[requirements] constraints")?;
    let text = lock_with_uv(&spec)?;
    let lock = PyLock::parse(&text)
        .map_err(|e| anyhow::anyhow!("uv wrote a lock this tool cannot read: {e}"))?;
    advisories.check_locked(
        lock.packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_deref().unwrap_or_default())),
        &out,
    )?;
    for note in check_yanked(&spec, &lock)? {
        eprintln!("note: {note}");
    }
    crate::util::write_bytes_atomic(&out, text.as_bytes())?;
    eprintln!("wrote {out}");
    Ok(ExitCode::SUCCESS)
}

/// Resolves the spec's requirements with uv once per architecture and merges the results
/// into one lock with the wheels of both.
fn lock_with_uv(spec: &Spec) -> Result<String> {
    let uv = which_uv().context("`cargo xtask lock` needs uv: install it with `pip install uv`")?;
    // `uv 0.13.9 (x86_64-unknown-linux-gnu)`: the build machine's triple would make the lock differ by host.
    let sh = crate::util::shell()?;
    let uv_version = crate::util::run(cmd!(sh, "{uv} --version")).unwrap_or_default();
    let uv_version = uv_version.split(" (").next().unwrap_or_default().to_owned();
    let tmp = tempfile::tempdir()?;
    let tmp = crate::util::utf8(tmp.path().to_path_buf())?;
    let req = tmp.join("requirements.in");
    fs_err::write(&req, spec.requirements.packages.join("\n") + "\n")?;
    let constraints = tmp.join("constraints.txt");
    fs_err::write(
        &constraints,
        spec.requirements.constraints.join("\n") + "\n",
    )?;

    let mut per_arch: Vec<(Arch, PyLock)> = Vec::new();
    for arch in Arch::ALL {
        let out = tmp.join(format!("pylock.{}.toml", arch.as_str().replace('_', "")));
        let platform = format!(
            "{}-manylinux_{}_{}",
            arch.machine(),
            spec.glibc().major,
            spec.glibc().minor
        );
        let python = spec.python_xy();
        crate::util::run(cmd!(
            sh,
            "{uv} pip compile {req} --python-version {python} --python-platform {platform} --only-binary :all: --constraint {constraints} --format pylock.toml --no-header --quiet -o {out}"
        ))
        .with_context(|| {
            format!(
                "uv could not resolve {:?} for {platform}",
                spec.requirements.packages
            )
        })?;
        let lock = PyLock::load(&out)?;
        per_arch.push((arch, lock));
    }
    Ok(merge_locks(spec, &per_arch, uv_version.trim()))
}

/// Asks the index, once per locked package, whether any of its locked files is yanked.
fn check_yanked(spec: &Spec, lock: &PyLock) -> Result<Vec<String>> {
    use crate::python::yanked;
    let index = yanked::index_url();
    let mut found = Vec::new();
    for pkg in &lock.packages {
        let page = yanked::fetch_page(&index, &pkg.name)?;
        let yanked_here = yanked::yanked_files(&page)
            .with_context(|| format!("the index's page of {}", pkg.name))?;
        for file in pkg.wheels.iter().filter_map(|w| w.file_name()) {
            if let Some(reason) = yanked_here.get(&file) {
                found.push(yanked::YankedFile {
                    package: pkg.name.clone(),
                    version: pkg.version.clone().unwrap_or_default(),
                    file,
                    reason: reason.clone(),
                });
            }
        }
    }
    yanked::check(&found, &spec.requirements.allow_yanked)
}

fn which_uv() -> Result<Utf8PathBuf> {
    if let Ok(uv) = std::env::var("UV") {
        return Ok(uv.into());
    }
    crate::util::which("uv").context("uv is not on PATH")
}

/// One lock holding, per package, the union of the wheels each architecture chose.
/// A package that only one architecture needs gets a `platform_machine` marker.
fn merge_locks(spec: &Spec, per_arch: &[(Arch, PyLock)], uv_version: &str) -> String {
    let merged = merge(per_arch);
    let mut out = String::new();
    out.push_str(
        "# Generated by `cargo xtask lock` from layer.toml; edit the spec, not this file.\n",
    );
    let _ = writeln!(out, "lock-version = \"1.0\"");
    let _ = writeln!(out, "created-by = \"cargo xtask lock ({uv_version})\"");
    let _ = writeln!(out, "requires-python = \"=={}.*\"", spec.python_xy());
    let _ = writeln!(
        out,
        "environments = [{}]",
        Arch::ALL
            .iter()
            .map(|a| format!(
                "\"sys_platform == 'linux' and platform_machine == '{}'\"",
                a.machine()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for ((name, _), m) in &merged {
        write_package(&mut out, name, m, m.archs.len() == per_arch.len());
    }
    out.push_str("\n[tool.lambda-layer]\n");
    let reqs = spec
        .requirements
        .packages
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "requirements = [{reqs}]");
    let _ = writeln!(out, "python = \"{}\"", spec.python_xy());
    let _ = writeln!(out, "glibc = \"{}\"", spec.glibc());
    out
}

/// One package of the merged lock: its version, marker, which architectures chose it and
/// the union of their wheels (by file name).
struct Merged {
    version: String,
    marker: Option<String>,
    archs: Vec<Arch>,
    wheels: BTreeMap<String, LockedWheel>,
}

/// The packages of every architecture's lock, by (name, version).
fn merge(per_arch: &[(Arch, PyLock)]) -> BTreeMap<(String, String), Merged> {
    let mut merged: BTreeMap<(String, String), Merged> = BTreeMap::new();
    for (arch, lock) in per_arch {
        for pkg in &lock.packages {
            let version = pkg.version.clone().unwrap_or_default();
            let entry = merged
                .entry((pkg.name.clone(), version.clone()))
                .or_insert_with(|| Merged {
                    version,
                    marker: pkg.marker.clone(),
                    archs: Vec::new(),
                    wheels: BTreeMap::new(),
                });
            entry.archs.push(*arch);
            for wheel in &pkg.wheels {
                if let Some(name) = wheel.file_name() {
                    entry.wheels.insert(name, wheel.clone());
                }
            }
        }
    }
    merged
}

/// Writes one `[[packages]]` table; `everywhere`: every architecture chose this package.
fn write_package(out: &mut String, name: &str, m: &Merged, everywhere: bool) {
    out.push_str("\n[[packages]]\n");
    let _ = writeln!(out, "name = \"{name}\"");
    let _ = writeln!(out, "version = \"{}\"", m.version);
    let marker = if everywhere {
        m.marker.clone()
    } else {
        let only = m
            .archs
            .iter()
            .map(|a| format!("platform_machine == '{}'", a.machine()))
            .collect::<Vec<_>>();
        let only = only.join(" or ");
        Some(match &m.marker {
            Some(existing) => format!("({existing}) and ({only})"),
            None => only,
        })
    };
    if let Some(marker) = marker {
        let _ = writeln!(out, "marker = \"{marker}\"");
    }
    out.push_str("wheels = [\n");
    for (file, wheel) in &m.wheels {
        let sha = wheel.hashes.get("sha256").cloned().unwrap_or_default();
        let url = wheel.url.clone().unwrap_or_default();
        let size = wheel
            .size
            .map(|s| format!(", size = {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "    {{ name = \"{file}\", url = \"{url}\"{size}, hashes = {{ sha256 = \"{sha}\" }} }},");
    }
    out.push_str("]\n");
}
