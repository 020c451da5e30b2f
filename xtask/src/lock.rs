//! `cargo xtask lock`: resolves the spec's requirements with uv for every architecture and
//! writes one PEP 751 lock with the wheels of all of them.

mod platform;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use crate::python::pylock::{LockedWheel, PyLock};
use crate::spec::advisories::AdvisoriesFile;
use crate::spec::{Arch, Runtime, Spec};
use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::cmd;

/// Regenerates the lock of the spec at `spec_path` (`cargo xtask lock`).
pub fn run(spec_path: &Utf8Path) -> Result<ExitCode> {
    let spec = Spec::load(spec_path)?;
    let out = spec.lock_path();
    // Before resolving: the index may no longer serve an advised release at all, and uv
    // would then only say that no version satisfies the requirement.
    let advisories = AdvisoriesFile::for_spec(&spec)?;
    // Not used here (`bench` measures them), but a broken list is refused wherever it is read.
    crate::python::candidates::parse(
        &spec.requirements.import_candidates,
        &spec.requirements.constraints,
    )?;
    advisories.check_requirements(&spec.requirements.packages, "[requirements] packages")?;
    advisories.check_requirements(&spec.requirements.constraints, "[requirements] constraints")?;
    let (text, notes) = lock_with_uv(&spec)?;
    let lock = PyLock::parse(&text)
        .map_err(|e| anyhow::anyhow!("uv wrote a lock this tool cannot read: {e}"))?;
    advisories.check_locked(
        lock.packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_deref().unwrap_or_default())),
        &out,
    )?;
    for note in notes.into_iter().chain(check_yanked(&spec, &lock)?) {
        eprintln!("note: {note}");
    }
    crate::util::write_bytes_atomic(&out, text.as_bytes())?;
    eprintln!("wrote {out}");
    Ok(ExitCode::SUCCESS)
}

/// Resolves the spec's requirements with uv once per architecture and merges the results
/// into one lock with the wheels of both; also returns notes on how the architectures differ.
fn lock_with_uv(spec: &Spec) -> Result<(String, Vec<String>)> {
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
        let platform = platform::uv_platform(arch, spec.glibc())?;
        let python = spec.python_xy();
        let output = cmd!(
            sh,
            "{uv} pip compile {req} --python-version {python} --python-platform {platform} --only-binary :all: --constraint {constraints} --format pylock.toml --no-header --quiet -o {out}"
        )
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("could not start {uv}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if let Some(no_wheel) = platform::NoWheel::parse(&stderr) {
                bail!(refuse_no_wheel(spec, arch, &platform, &no_wheel));
            }
            bail!(
                "uv could not resolve {:?} for {platform} ({}): {}",
                spec.requirements.packages,
                output.status,
                stderr.trim()
            );
        }
        let lock = PyLock::load(&out)?;
        per_arch.push((arch, lock));
    }
    Ok((
        merge_locks(spec, &per_arch, uv_version.trim()),
        arch_differences(&per_arch),
    ))
}

/// The refusal when uv found no wheel of a requirement for `arch`, with what the index has.
fn refuse_no_wheel(
    spec: &Spec,
    arch: Arch,
    platform: &str,
    no_wheel: &platform::NoWheel,
) -> String {
    let py_minor = spec
        .python_xy()
        .split_once('.')
        .and_then(|(_, m)| m.parse().ok())
        .unwrap_or(11);
    let target = crate::python::wheel::Target {
        arch,
        glibc: spec.glibc(),
        py_minor,
    };
    let target_name = match (spec.target.glibc, spec.target.runtime) {
        (Some(g), _) => format!("[target] glibc = \"{g}\""),
        (None, Some(Runtime::Al2)) => "runtime al2".to_owned(),
        (None, _) => "runtime al2023".to_owned(),
    };
    let page = crate::python::index::fetch_page(&crate::python::index::index_url(), &no_wheel.name)
        .and_then(|json| crate::python::index::Page::parse(&json));
    no_wheel.refusal(page, &target, &spec.python.version, &target_name, platform)
}

/// One note per package whose locked version differs between the architectures (uv
/// backtracks on one when a newer release has no wheel for it).
fn arch_differences(per_arch: &[(Arch, PyLock)]) -> Vec<String> {
    let mut versions: BTreeMap<&str, Vec<(Arch, &str)>> = BTreeMap::new();
    for (arch, lock) in per_arch {
        for pkg in &lock.packages {
            versions
                .entry(pkg.name.as_str())
                .or_default()
                .push((*arch, pkg.version.as_deref().unwrap_or_default()));
        }
    }
    versions
        .into_iter()
        .filter(|(_, v)| v.len() == per_arch.len() && v.iter().any(|(_, x)| *x != v[0].1))
        .map(|(name, v)| {
            let each = v
                .iter()
                .map(|(a, x)| format!("{x} on {a}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("the architectures lock different versions of {name}: {each}")
        })
        .collect()
}

/// Asks the index, once per locked package, whether any of its locked files is yanked.
fn check_yanked(spec: &Spec, lock: &PyLock) -> Result<Vec<String>> {
    use crate::python::{index, yanked};
    let index = index::index_url();
    let mut found = Vec::new();
    for pkg in &lock.packages {
        let page = index::fetch_page(&index, &pkg.name)?;
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
