//! `cargo xtask bench`: the plain way, the original guides' deletion rules and each profile of
//! this tool, built and verified side by side on this machine.
//!
//! Every variant is a layer zip checked by `verify` (the same sandbox, the same timings), so
//! the only difference between two rows is how the layer was made. Sizes come from the zips'
//! own entries; build times are wall-clock, with warm caches and (once) with empty ones.

use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::build::fetch::Fetcher;
use crate::python::{marker, pylock::PyLock};
use crate::spec::{Arch, Sha256Hex, Spec};
use crate::util::progress::Progress;
use crate::verify::{Check, Timings};

/// The benchmark builds the default spec for this machine's most common Lambda target.
const ARCH: Arch = Arch::X86_64;

/// The original optimization guide's twelve deletion categories (seed `000`, "Lambda Layer Size
/// Optimization Guide", sections 1 to 12), as its `find ... -delete` lines applied them: by
/// file or folder *name*, anywhere under site-packages. Kept verbatim, including the ones this
/// tool knows to be harmful (5: bytecode, 6: `dist-info`), because showing what they do is the
/// point of the comparison.
pub const GUIDE_RULES: &[GuideRule] = &[
    GuideRule {
        category: 1,
        name: "documentation files",
        applies_to: AppliesTo::Files,
        names: &[
            "*.md",
            "*.txt",
            "*.rst",
            "LICENSE*",
            "COPYING*",
            "AUTHORS*",
            "CHANGELOG*",
            "HISTORY*",
        ],
        top_level_only: false,
    },
    GuideRule {
        category: 2,
        name: "doc folders",
        applies_to: AppliesTo::Dirs,
        names: &["doc", "docs"],
        top_level_only: false,
    },
    GuideRule {
        category: 3,
        name: "test folders",
        applies_to: AppliesTo::Dirs,
        names: &["tests", "test", "testing"],
        top_level_only: false,
    },
    GuideRule {
        category: 4,
        name: "example folders",
        applies_to: AppliesTo::Dirs,
        names: &["examples", "example"],
        top_level_only: false,
    },
    GuideRule {
        category: 5,
        name: "compiled python caches",
        applies_to: AppliesTo::Both,
        names: &["__pycache__", "*.pyc", "*.pyo", "*.pyd"],
        top_level_only: false,
    },
    GuideRule {
        category: 6,
        name: "package metadata",
        applies_to: AppliesTo::Both,
        names: &["*.dist-info", "*.egg-info"],
        top_level_only: false,
    },
    GuideRule {
        category: 7,
        name: "type stubs",
        applies_to: AppliesTo::Files,
        names: &["*.pyi"],
        top_level_only: false,
    },
    GuideRule {
        category: 8,
        name: "build tools",
        applies_to: AppliesTo::Dirs,
        names: &["pip", "setuptools", "wheel", "_distutils_hack"],
        // The guide removed these packages, not every folder that happens to share the name.
        top_level_only: true,
    },
    GuideRule {
        category: 9,
        name: "c/c++ sources",
        applies_to: AppliesTo::Files,
        names: &["*.c", "*.h", "*.cpp", "*.cc"],
        top_level_only: false,
    },
    GuideRule {
        category: 10,
        name: "version control and config files",
        applies_to: AppliesTo::Files,
        names: &[
            ".git*",
            ".coveragerc",
            ".pylintrc",
            "*.cfg",
            "*.ini",
            "*.toml",
            "*.yaml",
            "*.yml",
        ],
        top_level_only: false,
    },
    GuideRule {
        category: 11,
        name: "benchmark code",
        applies_to: AppliesTo::Dirs,
        names: &["benchmark*"],
        top_level_only: false,
    },
    // Category 12 deletes nothing: `strip --strip-debug` on every `.so` (see `strip_guide`).
];

/// Which entries a guide rule deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    Files,
    Dirs,
    Both,
}

/// One deletion category of the guide.
#[derive(Debug)]
pub struct GuideRule {
    pub category: u8,
    pub name: &'static str,
    pub applies_to: AppliesTo,
    /// `find -name` patterns (only `*` as a wildcard).
    pub names: &'static [&'static str],
    /// Only entries directly in site-packages.
    pub top_level_only: bool,
}

/// `find -name`'s glob, restricted to the `*` the guide uses.
fn name_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    // Both checks before slicing: they make the cuts character boundaries.
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The guide category that deletes an entry of site-packages (`rel` relative to it), if any.
/// Pure: the executor decides nothing else.
pub fn guide_category(rel: &Utf8Path, is_dir: bool) -> Option<u8> {
    let name = rel.file_name()?;
    let top_level = rel.components().count() == 1;
    GUIDE_RULES
        .iter()
        .find(|r| {
            let kind_ok = match r.applies_to {
                AppliesTo::Files => !is_dir,
                AppliesTo::Dirs => is_dir,
                AppliesTo::Both => true,
            };
            kind_ok
                && (top_level || !r.top_level_only)
                && r.names.iter().any(|p| name_matches(p, name))
        })
        .map(|r| r.category)
}

/// What one guide category removed (or, for 12, saved by stripping).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuideOutcome {
    pub category: u8,
    pub name: String,
    pub entries: u64,
    pub bytes: u64,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub zip: Utf8PathBuf,
    pub zip_bytes: u64,
    pub unpacked_bytes: u64,
    pub files: u64,
    /// Against the plain way (1.0 for the plain way itself).
    pub zip_ratio: f64,
    pub unpacked_ratio: f64,
    /// `None` when verify itself could not run (the error is in `verify_error`).
    pub verify_ok: Option<bool>,
    pub verify_failed: Vec<Check>,
    pub verify_error: Option<String>,
    pub timings: Timings,
    pub build_warm_s: Option<f64>,
    pub build_cold_s: Option<f64>,
}

/// Where the figures came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub pip: String,
    pub uv: String,
    pub zip: String,
}

/// `--json` prints this; `bench.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub date: String,
    pub arch: Arch,
    pub machine: Machine,
    /// The CPython archive every variant was built from.
    pub runtime: String,
    pub timing_runs: usize,
    pub variants: Vec<Variant>,
    pub guide_rules: Vec<GuideOutcome>,
    pub notes: Vec<String>,
    /// `cargo bench -p pythonexec-rs --bench worker -- --json`, with `--worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<serde_json::Value>,
}

/// What `cargo xtask bench` was asked.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The layer spec.
    pub spec: Utf8PathBuf,
    /// Also print the results as JSON on stdout.
    pub json: bool,
    /// Where the variants, their caches and bench.json go; absolute, because `zip` runs from
    /// inside the tree it packs.
    pub out: Utf8PathBuf,
    /// A CPython archive (path or URL) instead of the spec's pinned download.
    pub python_archive: Option<String>,
    /// The sha256 the runtime archive must have (`--python-sha256`, not parsed yet).
    pub python_sha256: Option<String>,
    /// Fresh processes per timing (medians).
    pub runs: usize,
    /// Only these profiles (default: every profile of profiles.toml).
    pub profiles: Option<Vec<String>>,
    /// Skip the cold-cache builds.
    pub skip_cold: bool,
    /// Also run pythonexec-rs's worker benchmark.
    pub worker: bool,
}

impl BenchOptions {
    /// `dir` (default: target/bench/) made absolute.
    pub fn out_dir(dir: Option<&Utf8Path>) -> Result<Utf8PathBuf> {
        let dir = dir.map_or_else(
            || crate::core::target_dir().join("bench"),
            Utf8Path::to_owned,
        );
        let abs = std::path::absolute(&dir).with_context(|| format!("resolving {dir}"))?;
        crate::util::utf8(abs)
    }
}

/// Builds and measures every variant, writes OUT/bench.json and prints the table.
pub fn run(options: &BenchOptions) -> Result<ExitCode> {
    let spec = Spec::load(&options.spec)?;
    let report = run_bench(&spec, options)?;
    let json = serde_json::to_string_pretty(&report)?;
    let path = options.out.join("bench.json");
    crate::util::write_bytes_atomic(&path, (json.clone() + "\n").as_bytes())?;
    if options.json {
        println!("{json}");
    } else {
        print!("{}", render(&report));
        println!("\nresults: {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a closure took, in seconds.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

fn run_bench(spec: &Spec, flags: &BenchOptions) -> Result<BenchReport> {
    if flags.runs == 0 {
        bail!("--runs must be at least 1: the timings are medians of that many processes");
    }
    if Arch::host() != Some(ARCH) {
        bail!("the bench builds and runs an {ARCH} layer and must run on an {ARCH} machine");
    }
    let out = flags.out.clone();
    fs_err::create_dir_all(&out)?;
    let progress = Progress::new();
    let mut notes = Vec::new();

    let profiles = profile_names(spec)?;
    let chosen: Vec<String> = match &flags.profiles {
        Some(list) => {
            for p in list {
                if !profiles.contains(p) {
                    bail!(
                        "--profiles names `{p}`, which {} does not define (it has: {})",
                        spec.dir().join(&spec.prune.profiles),
                        profiles.join(", ")
                    );
                }
            }
            list.clone()
        }
        None => profiles.clone(),
    };
    let default_profile = spec
        .layer
        .profile
        .clone()
        .unwrap_or_else(|| crate::spec::profiles::DEFAULT_PROFILE.to_owned());

    // The runtime every variant starts from.
    let (runtime_source, runtime_sha) = runtime_source(spec, flags)?;
    let pip_cache = out.join("cache/pip");
    let layer_cache = out.join("cache/layer");
    let fetcher = Fetcher::with_cache(layer_cache.clone(), false, progress.clone());
    let file_name = runtime_source
        .rsplit('/')
        .next()
        .unwrap_or("python.tar.gz")
        .replace("%2B", "+");
    let archive = fetcher
        .fetch(&runtime_source, &file_name, &runtime_sha, "python")
        .context("fetching the cpython runtime for the plain build")?;

    // 1. The plain way.
    let requirements = out.join("requirements.txt");
    fs_err::write(&requirements, requirements_txt(spec)?)?;
    let plain_dir = out.join("plain");
    let plain_zip = plain_dir.join("layer.zip");
    let mut plain_cold = None;
    if !flags.skip_cold {
        progress.line("bench: plain pip install --target, cold (empty pip cache)");
        reset_dir(&pip_cache)?;
        plain_cold = Some(build_plain(
            spec,
            &archive,
            &requirements,
            &pip_cache,
            &plain_dir,
        )?);
    } else if is_empty_dir(&pip_cache) {
        progress.line("bench: filling pip's cache (not timed)");
        build_plain(spec, &archive, &requirements, &pip_cache, &plain_dir)?;
    }
    progress.line("bench: plain pip install --target, warm");
    let plain_warm = build_plain(spec, &archive, &requirements, &pip_cache, &plain_dir)?;
    let plain_build = plain_warm.pip_s + plain_warm.extract_s;
    // Figures from another runtime than the spec's pinned one must say so wherever they go.
    let runtime_label = if flags.python_archive.is_some() {
        format!(
            "CPython {} from {runtime_source} (sha256 {runtime_sha}), given with --python-archive: NOT the spec's pinned python-build-standalone {}",
            plain_warm.python_version, spec.python.version
        )
    } else {
        format!(
            "CPython {} from {runtime_source} (sha256 {runtime_sha}), the spec's pinned download",
            plain_warm.python_version
        )
    };
    notes.push(format!(
        "plain: pip install {:.1} s, runtime unpack {:.1} s, `{}` {:.1} s (warm run)",
        plain_warm.pip_s, plain_warm.extract_s, plain_warm.zipper, plain_warm.zip_s
    ));

    // 2. The guide's rules on a copy of it.
    progress.line("bench: the guide's twelve categories on a copy of the plain tree");
    let guide_dir = out.join("guide");
    let (guide_rules, guide_s) = timed(|| apply_guide(&plain_dir.join("tree"), &guide_dir))?;
    let guide_zip = guide_dir.join("layer.zip");
    let (_, guide_zip_s) = timed(|| zip_tree(&guide_dir.join("tree"), &guide_zip))?;

    let mut variants = Vec::new();
    variants.push(measure(
        spec,
        flags,
        "plain: pip --target + zip -9",
        &plain_zip,
        Some(plain_build + plain_warm.zip_s),
        plain_cold.as_ref().map(|c| c.pip_s + c.extract_s + c.zip_s),
        &progress,
    )?);
    variants.push(measure(
        spec,
        flags,
        "guide: 12 deletion categories",
        &guide_zip,
        Some(plain_build + plain_warm.zip_s + guide_s + guide_zip_s),
        plain_cold
            .as_ref()
            .map(|c| c.pip_s + c.extract_s + c.zip_s + guide_s + guide_zip_s),
        &progress,
    )?);

    // 3. This tool's profiles. The spec's default profile goes first, so that its cold build
    // leaves the cache warm for the others.
    let mut ordered = chosen.clone();
    if let Some(i) = ordered.iter().position(|p| *p == default_profile) {
        let p = ordered.remove(i);
        ordered.insert(0, p);
    }
    for (i, profile) in ordered.iter().enumerate() {
        let dir = out.join("profiles").join(profile);
        let mut cold = None;
        if !flags.skip_cold && *profile == default_profile {
            progress.line(format!("bench: profile {profile}, cold (empty cache)"));
            reset_dir(&layer_cache)?;
            cold = Some(build_profile(spec, flags, profile, &dir, &layer_cache)?.1);
        } else if i == 0 && !layer_cache.join("wheels").is_dir() {
            progress.line("bench: filling the layer cache (not timed)");
            build_profile(spec, flags, profile, &dir, &layer_cache)?;
        }
        progress.line(format!("bench: profile {profile}, warm"));
        let (zip, warm) = build_profile(spec, flags, profile, &dir, &layer_cache)?;
        variants.push(measure(
            spec,
            flags,
            &format!("profile {profile}"),
            &zip,
            Some(warm),
            cold,
            &progress,
        )?);
    }
    // Rows in a reading order: plain, guide, then the profiles as profiles.toml lists them.
    variants[2..].sort_by_key(|v| {
        chosen
            .iter()
            .position(|p| v.name == format!("profile {p}"))
            .unwrap_or(usize::MAX)
    });
    fill_ratios(&mut variants);

    if !flags.skip_cold {
        let ours = if chosen.contains(&default_profile) {
            format!("and the default profile `{default_profile}` only")
        } else {
            "only (the default profile was not benched)".to_owned()
        };
        notes.push(format!(
            "cold builds (empty pip cache / empty LAYER_CACHE_DIR, wheels from PyPI) ran for the plain way {ours}; the guide's cold figure is the plain cold build plus its rules"
        ));
    }
    notes.push(
        "the guide's build time is the plain build plus applying its rules and zipping again"
            .to_owned(),
    );

    let worker = if flags.worker {
        progress.line("bench: cargo bench -p pythonexec-rs --bench worker -- --json");
        Some(worker_bench()?)
    } else {
        None
    };

    Ok(BenchReport {
        date: now_utc(),
        arch: ARCH,
        machine: machine(),
        runtime: runtime_label,
        timing_runs: flags.runs,
        variants,
        guide_rules,
        notes,
        worker,
    })
}

/// Profile names in the order `profiles.toml` lists them.
fn profile_names(spec: &Spec) -> Result<Vec<String>> {
    let path = spec.dir().join(&spec.prune.profiles);
    let file = crate::spec::profiles::ProfilesFile::load(&path)?;
    let text = fs_err::read_to_string(&path)?;
    let mut names: Vec<String> = file.profile.keys().cloned().collect();
    names.sort_by_key(|n| {
        text.find(&format!("[profile.{n}]"))
            .or_else(|| text.find(&format!("[profile.\"{n}\"]")))
            .unwrap_or(usize::MAX)
    });
    Ok(names)
}

/// The runtime archive and its hash: `--python-archive`, else the spec's download.
fn runtime_source(spec: &Spec, flags: &BenchOptions) -> Result<(String, Sha256Hex)> {
    let sha = match &flags.python_sha256 {
        Some(h) => h
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--python-sha256: {e}"))?,
        None => spec.python_sha256(ARCH)?.clone(),
    };
    let (source, _) = spec.runtime_location(ARCH, flags.python_archive.as_deref());
    Ok((source, sha))
}

/// `requirements.txt` for pip from the lock: every package for the target at its locked
/// version, with the sha256 of each of its wheels, so pip installs exactly what the tool does.
fn requirements_txt(spec: &Spec) -> Result<String> {
    let lock_path = spec.lock_path();
    let lock = PyLock::load(&lock_path)?;
    let env = marker::Env {
        machine: ARCH.machine().to_owned(),
        python_version: spec.python_xy(),
        python_full_version: spec.python.version.clone(),
    };
    let mut out = format!("# generated by `cargo xtask bench` from {lock_path} for {ARCH}\n");
    for pkg in lock.packages_for(&env)? {
        let version = pkg
            .version
            .as_deref()
            .with_context(|| format!("{lock_path}: package `{}` has no version", pkg.name))?;
        let _ = write!(out, "{}=={version}", pkg.name);
        let mut hashes: Vec<String> = pkg
            .wheels
            .iter()
            .filter_map(|w| w.sha256())
            .map(|h| h.as_str().to_owned())
            .collect();
        hashes.sort();
        hashes.dedup();
        if hashes.is_empty() {
            bail!("{lock_path}: package `{}` has no wheel hashes", pkg.name);
        }
        for h in hashes {
            let _ = write!(out, " \\\n    --hash=sha256:{h}");
        }
        out.push('\n');
    }
    Ok(out)
}

/// pip's `--platform` does not expand `manylinux_2_X` to older glibc versions, so a user
/// targeting glibc 2.34 lists every compatible tag, newest first.
fn pip_platforms(glibc_minor: u32) -> Vec<String> {
    let machine = ARCH.machine();
    let mut tags: Vec<String> = (17..=glibc_minor.max(17))
        .rev()
        .map(|m| format!("manylinux_2_{m}_{machine}"))
        .collect();
    for legacy in ["manylinux2014", "manylinux2010", "manylinux1"] {
        tags.push(format!("{legacy}_{machine}"));
    }
    tags
}

struct PlainBuild {
    python_version: String,
    extract_s: f64,
    pip_s: f64,
    zip_s: f64,
    zipper: String,
}

/// The plain way, as a user does it: the runtime unpacked, `pip install --target` into its
/// site-packages, the tree zipped at level 9. `dir/tree` keeps the tree, `dir/layer.zip` the zip.
fn build_plain(
    spec: &Spec,
    archive: &Utf8Path,
    requirements: &Utf8Path,
    pip_cache: &Utf8Path,
    dir: &Utf8Path,
) -> Result<PlainBuild> {
    let tree = dir.join("tree");
    reset_dir(&tree)?;
    let (runtime, extract_s) = timed(|| crate::build::runtime::extract(archive, &tree, ARCH))?;
    let site = tree.join(format!("python/lib/python{}/site-packages", runtime.xy));
    // pip's tags must not exceed the target's glibc, as the tool's own wheel choice does not.
    let glibc_minor = spec.glibc().minor;
    let mut args: Vec<String> = vec![
        "-m".into(),
        "pip".into(),
        "install".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "--quiet".into(),
        "--target".into(),
        site.to_string(),
    ];
    for p in pip_platforms(glibc_minor) {
        args.push("--platform".into());
        args.push(p);
    }
    args.extend(
        [
            "--implementation",
            "cp",
            "--python-version",
            runtime.xy.as_str(),
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            requirements.as_str(),
        ]
        .map(String::from),
    );
    fs_err::create_dir_all(pip_cache)?;
    let ((), pip_s) = timed(|| {
        let out = Command::new("python3")
            .args(&args)
            .env("PIP_CACHE_DIR", pip_cache)
            .stdin(Stdio::null())
            .output()
            .context("could not start `python3 -m pip` (the plain way needs pip)")?;
        if !out.status.success() {
            bail!(
                "`python3 {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })?;
    let zip = dir.join("layer.zip");
    let (zipper, zip_s) = timed(|| zip_tree(&tree, &zip))?;
    Ok(PlainBuild {
        python_version: runtime.version.clone(),
        extract_s,
        pip_s,
        zip_s,
        zipper,
    })
}

/// Zips `tree` (which holds `python/`) at level 9 the way users do, with the `zip` tool
/// (`-y`: links as links) when it is installed, else with this tool's writer. Returns which.
fn zip_tree(tree: &Utf8Path, zip: &Utf8Path) -> Result<String> {
    if crate::util::which("zip").is_some() {
        // zip updates an existing archive in place: start from nothing, and rename at the end.
        let tmp = zip.with_extension("zip.part");
        if tmp.exists() {
            fs_err::remove_file(&tmp)?;
        }
        let out = Command::new("zip")
            .args(["-qr9", "-y", tmp.as_str(), "python"])
            .current_dir(tree)
            .output()
            .context("could not start `zip`")?;
        if !out.status.success() {
            bail!(
                "`zip -qr9 -y` of {tree} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        fs_err::rename(&tmp, zip)?;
        Ok("zip -qr9 -y".to_owned())
    } else {
        crate::build::zip::write_zip(tree, zip, 9)?;
        Ok("package::write_zip at level 9 (no zip tool)".to_owned())
    }
}

/// Copies the plain tree to `dir/tree` and applies the guide's twelve categories to its
/// site-packages.
fn apply_guide(plain_tree: &Utf8Path, dir: &Utf8Path) -> Result<Vec<GuideOutcome>> {
    let tree = dir.join("tree");
    reset_dir(dir)?;
    // `cp -a` keeps links and modes, as the guide's shell script worked on the same folder.
    let status = Command::new("cp")
        .args(["-a", plain_tree.as_str(), tree.as_str()])
        .status()
        .context("could not start `cp -a`")?;
    if !status.success() {
        bail!("copying {plain_tree} to {tree} failed ({status})");
    }
    let site = find_site_packages(&tree)?;
    let mut outcomes: Vec<GuideOutcome> = GUIDE_RULES
        .iter()
        .map(|r| GuideOutcome {
            category: r.category,
            name: r.name.to_owned(),
            ..GuideOutcome::default()
        })
        .collect();
    let entries = crate::util::walk(&site)?;
    // Sorted by path: a folder comes before what it holds, so once it is gone its contents
    // are skipped (and counted with it).
    let mut removed: Vec<Utf8PathBuf> = Vec::new();
    for e in &entries {
        if removed.iter().any(|r| e.rel.starts_with(r)) {
            continue;
        }
        let is_dir = e.file_type.is_dir();
        let Some(category) = guide_category(&e.rel, is_dir) else {
            continue;
        };
        let path = site.join(&e.rel);
        let (count, bytes) = if is_dir {
            let inner = crate::util::walk(&path)?;
            let bytes = inner
                .iter()
                .filter(|i| i.file_type.is_file())
                .map(|i| i.len)
                .sum();
            fs_err::remove_dir_all(&path)?;
            removed.push(e.rel.clone());
            (inner.len() as u64 + 1, bytes)
        } else {
            fs_err::remove_file(&path)?;
            (1, e.len)
        };
        if let Some(o) = outcomes.iter_mut().find(|o| o.category == category) {
            o.entries += count;
            o.bytes += bytes;
        }
    }
    outcomes.push(strip_guide(&site)?);
    Ok(outcomes)
}

/// Category 12: `strip --strip-debug` on every `.so`, as the guide's script ran it, unchecked.
fn strip_guide(site: &Utf8Path) -> Result<GuideOutcome> {
    let mut outcome = GuideOutcome {
        category: 12,
        name: "strip --strip-debug on .so".to_owned(),
        ..GuideOutcome::default()
    };
    for e in crate::util::walk(site)? {
        let name = e.rel.file_name().unwrap_or("");
        if !e.file_type.is_file() || !(name.ends_with(".so") || name.contains(".so.")) {
            continue;
        }
        let path = site.join(&e.rel);
        let status = Command::new("strip")
            .args(["--strip-debug", path.as_str()])
            .stderr(Stdio::null())
            .status()
            .context("could not start `strip` (binutils)")?;
        // The guide ignored failures (`|| true`); so does its replay.
        if status.success() {
            let after = fs_err::metadata(&path)?.len();
            outcome.entries += 1;
            outcome.bytes += e.len.saturating_sub(after);
        }
    }
    Ok(outcome)
}

fn find_site_packages(tree: &Utf8Path) -> Result<Utf8PathBuf> {
    let lib = tree.join("python/lib");
    for entry in fs_err::read_dir(&lib)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let site = lib.join(&name).join("site-packages");
        if name.starts_with("python3") && site.is_dir() {
            return Ok(site);
        }
    }
    bail!("{lib} has no python3.X/site-packages")
}

/// Builds one profile with this tool (the real binary, as a user runs it) into `dir` with
/// `cache` as `LAYER_CACHE_DIR`; returns the zip and the wall-clock seconds.
fn build_profile(
    spec: &Spec,
    flags: &BenchOptions,
    profile: &str,
    dir: &Utf8Path,
    cache: &Utf8Path,
) -> Result<(Utf8PathBuf, f64)> {
    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let mut cmd = Command::new(exe.as_std_path());
    cmd.args([
        "layer",
        "--spec",
        spec.path.as_str(),
        "--arch",
        ARCH.as_str(),
    ])
    .args(["--out", dir.as_str(), "--profile", profile, "--json"])
    .env("LAYER_CACHE_DIR", cache)
    .env("CI", "true")
    .stdin(Stdio::null());
    if let Some(a) = &flags.python_archive {
        cmd.args(["--python-archive", a]);
    }
    if let Some(h) = &flags.python_sha256 {
        cmd.args(["--python-sha256", h]);
    }
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("could not start the layer build of profile {profile}"))?;
    let secs = start.elapsed().as_secs_f64();
    // 3: built, but over the spec's budget (the bigger profiles are over 50 MB); still a layer.
    if !(out.status.success() || out.status.code() == Some(3)) {
        bail!(
            "building profile {profile} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: crate::build::report::Report = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the layer build of profile {profile} printed no report"))?;
    Ok((report.zip_path, secs))
}

/// Sizes from the zip, then verify on it.
fn measure(
    spec: &Spec,
    flags: &BenchOptions,
    name: &str,
    zip: &Utf8Path,
    build_warm_s: Option<f64>,
    build_cold_s: Option<f64>,
    progress: &Progress,
) -> Result<Variant> {
    let stats = crate::util::zipinfo::read_stats(zip)?;
    let files = stats
        .entries
        .iter()
        .filter(|e| !e.path.as_str().ends_with('/'))
        .count() as u64;
    let unpacked_bytes = stats.entries.iter().map(|e| e.uncompressed).sum();
    progress.line(format!("bench: verify {name}"));
    let options = crate::verify::VerifyOptions::of_layer(zip, ARCH, flags.runs);
    let (verify_ok, verify_failed, verify_error, timings) =
        match crate::verify::verify(spec, &options) {
            Ok(r) => (
                Some(r.ok),
                r.checks.into_iter().filter(|c| !c.ok).collect(),
                None,
                r.timings,
            ),
            Err(e) => (None, Vec::new(), Some(format!("{e:#}")), Timings::default()),
        };
    Ok(Variant {
        name: name.to_owned(),
        zip: zip.to_owned(),
        zip_bytes: stats.zip_bytes,
        unpacked_bytes,
        files,
        zip_ratio: 1.0,
        unpacked_ratio: 1.0,
        verify_ok,
        verify_failed,
        verify_error,
        timings,
        build_warm_s,
        build_cold_s,
    })
}

/// Ratios against the first row, the plain way.
pub fn fill_ratios(variants: &mut [Variant]) {
    let Some(plain) = variants.first().cloned() else {
        return;
    };
    for v in variants.iter_mut() {
        v.zip_ratio = ratio(v.zip_bytes, plain.zip_bytes);
        v.unpacked_ratio = ratio(v.unpacked_bytes, plain.unpacked_bytes);
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} s"))
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1_000_000.0)
}

/// The markdown table (as pasted into BENCHMARKS.md), then what failed and the guide's figures.
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bench {} on {} ({} cores), {}; timings: medians of {} fresh processes\n",
        r.arch, r.machine.cpu, r.machine.nproc, r.date, r.timing_runs
    );
    s.push_str(&render_table(&r.variants));
    let failures: Vec<String> = r
        .variants
        .iter()
        .flat_map(|v| {
            // A few per variant: the guide's row fails one check per distribution.
            const SHOWN: usize = 4;
            let mut lines: Vec<String> = v
                .verify_failed
                .iter()
                .take(SHOWN)
                .map(|c| format!("- {}: `{}`: {}", v.name, c.name, one_line(&c.detail, 300)))
                .collect();
            if v.verify_failed.len() > SHOWN {
                lines.push(format!(
                    "- {}: ... and {} more failed checks (bench.json lists them)",
                    v.name,
                    v.verify_failed.len() - SHOWN
                ));
            }
            if let Some(e) = &v.verify_error {
                lines.push(format!(
                    "- {}: verify could not run: {}",
                    v.name,
                    one_line(e, 300)
                ));
            }
            lines
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\nverify failures:");
        for f in failures {
            let _ = writeln!(s, "{f}");
        }
    }
    if !r.guide_rules.is_empty() {
        let _ = writeln!(
            s,
            "\nthe guide's categories on the plain tree's site-packages:\n"
        );
        let _ = writeln!(s, "| # | category | entries | MB |");
        let _ = writeln!(s, "| ---: | --- | ---: | ---: |");
        for g in &r.guide_rules {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.category,
                g.name,
                g.entries,
                mb(g.bytes)
            );
        }
    }
    if let Some(w) = &r.worker {
        s.push_str(&render_worker(w));
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s);
        for n in &r.notes {
            let _ = writeln!(s, "note: {n}");
        }
    }
    s
}

/// pythonexec-rs's worker figures (`{"interpreter", "results": [{name, count, median_us,
/// p99_us, per_second}]}`); fields it lacks print as `?`.
fn render_worker(w: &serde_json::Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\npythonexec-rs worker (interpreter: {}):\n",
        w["interpreter"].as_str().unwrap_or("?")
    );
    let _ = writeln!(s, "| benchmark | n | median µs | p99 µs | req/s |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
    let num = |v: &serde_json::Value, digits: usize| {
        v.as_f64()
            .map_or_else(|| "?".to_owned(), |x| format!("{x:.digits$}"))
    };
    for row in w["results"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            row["name"].as_str().unwrap_or("?"),
            num(&row["count"], 0),
            num(&row["median_us"], 1),
            num(&row["p99_us"], 1),
            num(&row["per_second"], 0),
        );
    }
    s
}

/// One row per variant; sizes in decimal MB, ratios against the plain way (first row).
pub fn render_table(variants: &[Variant]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| variant | zip MB | unpacked MB | zip vs plain | unpacked vs plain | verify | start | import litellm | first completion | build warm | build cold |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for v in variants {
        let verify = verify_cell(v);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2}x | {:.2}x | {} | {} | {} | {} | {} | {} |",
            v.name,
            mb(v.zip_bytes),
            mb(v.unpacked_bytes),
            v.zip_ratio,
            v.unpacked_ratio,
            verify,
            secs(v.timings.interpreter_start_s),
            secs(v.timings.import_litellm_s),
            secs(v.timings.first_completion_s),
            secs(v.build_warm_s),
            secs(v.build_cold_s),
        );
    }
    s
}

/// `pass`, or what failed: up to three check names (a size check over Lambda's 50 MB
/// is a failure too, and the reader should see that it is only that).
fn verify_cell(v: &Variant) -> String {
    match v.verify_ok {
        Some(true) => "pass".to_owned(),
        None => "not run".to_owned(),
        Some(false) => {
            let names: Vec<&str> = v.verify_failed.iter().map(|c| c.name.as_str()).collect();
            match names.len() {
                0 => "FAIL".to_owned(),
                1..=3 => format!("FAIL: {}", names.join(", ")),
                n => format!("FAIL: {} checks ({}, ...)", n, names[..2].join(", ")),
            }
        }
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}...", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

fn reset_dir(dir: &Utf8Path) -> Result<()> {
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::create_dir_all(dir)?;
    Ok(())
}

fn is_empty_dir(dir: &Utf8Path) -> bool {
    fs_err::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// First line of a command's output, or `unknown`.
fn version_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> Machine {
    let cpuinfo = fs_err::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = fs_err::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    let kernel = fs_err::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        memory,
        kernel,
        rustc: version_of("rustc", &["--version"]),
        pip: version_of("python3", &["-m", "pip", "--version"]),
        uv: version_of("uv", &["--version"]),
        // `zip -v` opens with a copyright line; the version is on the next.
        zip: Command::new("zip")
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("This is ").map(str::to_owned))
            })
            .unwrap_or_else(|| "not installed".to_owned()),
    }
}

fn now_utc() -> String {
    version_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

/// Runs pythonexec-rs's worker benchmark and returns its JSON.
fn worker_bench() -> Result<serde_json::Value> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "bench",
            "-p",
            "pythonexec-rs",
            "--bench",
            "worker",
            "--",
            "--json",
        ])
        .current_dir(crate::core::project_root())
        .stdin(Stdio::null())
        .output()
        .context("could not start `cargo bench -p pythonexec-rs --bench worker`")?;
    if !out.status.success() {
        bail!(
            "`cargo bench -p pythonexec-rs --bench worker` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the worker benchmark printed no JSON")?;
    serde_json::from_str(line).context("the worker benchmark printed bad JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_rules_match_what_the_guide_deleted() {
        let cases: &[(&str, bool, Option<u8>)] = &[
            ("litellm/README.md", false, Some(1)),
            ("certifi-2024.dist-info/LICENSE", false, Some(1)),
            ("yarl/LICENSE.txt", false, Some(1)),
            ("regex/CHANGELOG", false, Some(1)),
            ("numpy/doc", true, Some(2)),
            ("numpy/doc", false, None),
            ("aiohttp/tests", true, Some(3)),
            ("pydantic/testing", true, Some(3)),
            ("litellm/tests.py", false, None),
            ("pkg/examples", true, Some(4)),
            ("litellm/__pycache__", true, Some(5)),
            ("six.pyc", false, Some(5)),
            ("litellm-1.78.7.dist-info", true, Some(6)),
            ("foo.egg-info", false, Some(6)),
            ("yarl/__init__.pyi", false, Some(7)),
            ("pip", true, Some(8)),
            ("setuptools", true, Some(8)),
            ("litellm/wheel", true, None),
            ("multidict/_multidict.c", false, Some(9)),
            ("tokenizers/x.h", false, Some(9)),
            ("pkg/.gitignore", false, Some(10)),
            ("pkg/setup.cfg", false, Some(10)),
            ("litellm/proxy/config.yaml", false, Some(10)),
            ("pkg/benchmarks", true, Some(11)),
            ("pkg/benchmark_utils.py", false, None),
            ("litellm/main.py", false, None),
            ("tokenizers/tokenizers.abi3.so", false, None),
            ("litellm/model_prices.json", false, None),
        ];
        for &(path, is_dir, want) in cases {
            assert_eq!(
                guide_category(Utf8Path::new(path), is_dir),
                want,
                "{path} (dir: {is_dir})"
            );
        }
    }

    #[test]
    fn find_name_globs() {
        assert!(name_matches("*.md", "a.md"));
        assert!(!name_matches("*.md", "a.mdx"));
        assert!(name_matches("LICENSE*", "LICENSE"));
        assert!(name_matches("LICENSE*", "LICENSE.APACHE"));
        assert!(!name_matches("LICENSE*", "XLICENSE"));
        assert!(name_matches("*.dist-info", "a-1.0.dist-info"));
        assert!(name_matches("a*b*c", "aXbYc"));
        assert!(!name_matches("a*b*c", "aXc"));
        assert!(!name_matches("ab*ba", "aba"));
        assert!(name_matches("pip", "pip"));
        assert!(!name_matches("pip", "pipx"));
        assert!(!name_matches("*.md", "é"), "no panic on a multi-byte name");
        assert!(name_matches("*.txt", "naïve.txt"));
    }

    #[test]
    fn pip_platform_tags_cover_every_older_glibc() {
        let tags = pip_platforms(34);
        assert_eq!(
            tags.first().map(String::as_str),
            Some("manylinux_2_34_x86_64")
        );
        assert!(tags.contains(&"manylinux_2_17_x86_64".to_owned()));
        assert!(tags.contains(&"manylinux2014_x86_64".to_owned()));
        assert_eq!(tags.len(), 34 - 17 + 1 + 3);
    }

    fn variant(name: &str, zip: u64, unpacked: u64, ok: bool) -> Variant {
        Variant {
            name: name.to_owned(),
            zip: "x.zip".into(),
            zip_bytes: zip,
            unpacked_bytes: unpacked,
            files: 1,
            zip_ratio: 0.0,
            unpacked_ratio: 0.0,
            verify_ok: Some(ok),
            verify_failed: if ok {
                vec![]
            } else {
                vec![
                    Check::new("package: metadata", false, "PackageNotFoundError: httpx"),
                    Check::new("litellm: import", false, "no"),
                ]
            },
            verify_error: None,
            timings: Timings {
                runs: 5,
                interpreter_start_s: Some(0.0213),
                import_litellm_s: ok.then_some(2.5),
                first_completion_s: None,
            },
            build_warm_s: Some(12.345),
            build_cold_s: None,
        }
    }

    #[test]
    fn table_has_ratios_against_the_plain_way() {
        let mut v = vec![
            variant("plain", 50_000_000, 160_000_000, true),
            variant("guide", 25_000_000, 80_000_000, false),
        ];
        fill_ratios(&mut v);
        assert_eq!(v[0].zip_ratio, 1.0);
        assert_eq!(v[1].zip_ratio, 0.5);
        let table = render_table(&v);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[2],
            "| plain | 50.0 | 160.0 | 1.00x | 1.00x | pass | 0.02 s | 2.50 s | n/a | 12.35 s | n/a |"
        );
        assert_eq!(
            lines[3],
            "| guide | 25.0 | 80.0 | 0.50x | 0.50x | FAIL: package: metadata, litellm: import | 0.02 s | n/a | n/a | 12.35 s | n/a |"
        );
    }

    #[test]
    fn worker_figures_render_as_a_table() {
        let w = serde_json::json!({"interpreter": "python3", "results": [
            {"name": "worker ping (sequential)", "count": 2000, "median_us": 80.5,
             "p99_us": 218.0, "per_second": 9737.2}
        ]});
        let text = render_worker(&w);
        assert!(
            text.contains("| worker ping (sequential) | 2000 | 80.5 | 218.0 | 9737 |"),
            "{text}"
        );
    }

    #[test]
    fn ratio_of_nothing_is_zero_not_nan() {
        assert_eq!(ratio(5, 0), 0.0);
        let mut empty: Vec<Variant> = vec![];
        fill_ratios(&mut empty);
    }
}
