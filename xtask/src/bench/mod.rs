//! `cargo xtask bench`: the plain way, the original guides' deletion rules and each profile of
//! this tool, built and verified side by side on this machine.
//!
//! Every variant is a layer zip checked by `verify` (the same sandbox, the same timings), so
//! the only difference between two rows is how the layer was made. Sizes come from the zips'
//! own entries; build times are wall-clock, with warm caches and (once) with empty ones.

mod candidates;
mod coldstart;
mod guide;
mod machine;
mod measure;
mod plain;
mod render;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::build::fetch::Fetcher;
use crate::spec::{Arch, Sha256Hex, Spec};
use crate::util::progress::Progress;
use crate::verify::{Check, Timings};
use guide::{apply_guide, GuideOutcome};
use measure::{build_profile, measure};
use plain::{build_plain, requirements_txt, zip_tree, PlainBuild};
pub use render::render;
/// The benchmark builds the default spec for this machine's most common Lambda target.
const ARCH: Arch = Arch::X86_64;

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
    /// A rebuild with every download and the stage cache warm (inputs unchanged, but the
    /// last build's outputs forgotten, so that it builds).
    pub build_warm_s: Option<f64>,
    /// A rebuild with nothing changed: "up to date".
    pub build_unchanged_s: Option<f64>,
    pub build_cold_s: Option<f64>,
    /// Cold starts at 512 and 1,769 MB, with and without the INIT wait (`coldstart.rs`);
    /// empty when not measured (the notes say why).
    #[serde(default)]
    pub cold_start: Vec<coldstart::ColdStart>,
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
    /// `[requirements] import-candidates`: the spec's lock first, then each candidate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub import_candidates: Vec<candidates::CandidateResult>,
    pub notes: Vec<String>,
    /// `cargo bench -p pythonexec-rs --bench worker -- --json`, with `--worker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<serde_json::Value>,
}

/// What `cargo xtask bench` was asked.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The layer specs, benched one after the other.
    pub specs: Vec<Utf8PathBuf>,
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
    /// `--memory`: Lambda's limits for this size in the verify sandbox.
    pub memory_mb: Option<u32>,
    /// Which variants get the cold-start columns.
    pub cold_start: ColdStartScope,
}

/// `--cold-start`: the columns take minutes per variant (the import after INIT runs at a
/// fraction of a CPU), so by default only the plain way and the spec's own profile get them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColdStartScope {
    None,
    Default,
    All,
}

impl BenchOptions {
    /// The specs given, or every maintained one: `layer/layer.toml` (today's payload) and each
    /// `layer/specs/NAME/layer.toml`, in name order.
    pub fn specs_or_maintained(given: &[Utf8PathBuf]) -> Result<Vec<Utf8PathBuf>> {
        if !given.is_empty() {
            return Ok(given.to_vec());
        }
        let layer = crate::core::project_root().join("layer");
        let mut specs = vec![layer.join("layer.toml")];
        let mut more = Vec::new();
        let dir = layer.join("specs");
        if dir.is_dir() {
            for entry in fs_err::read_dir(&dir)? {
                let path = crate::util::utf8(entry?.path())?.join("layer.toml");
                if path.is_file() {
                    more.push(path);
                }
            }
        }
        more.sort();
        specs.extend(more);
        Ok(specs)
    }

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

/// One spec's results in a run of several.
#[derive(Debug, Clone, Serialize)]
pub struct SpecBench {
    pub spec: Utf8PathBuf,
    /// What the spec requires (`litellm==1.110.2`), to tell the rows apart.
    pub requirements: Vec<String>,
    pub report: BenchReport,
}

/// Builds and measures every variant of every spec, writes OUT/bench.json (and each spec's
/// own OUT/NAME/bench.json when there are several) and prints the tables.
pub fn run(options: &BenchOptions) -> Result<ExitCode> {
    // Every spec is read before the first (long) build, so a typo fails at once.
    let specs: Vec<Spec> = options
        .specs
        .iter()
        .map(|p| Spec::load(p))
        .collect::<Result<_>>()?;
    for spec in &specs {
        let r = &spec.requirements;
        crate::python::candidates::parse(&r.import_candidates, &r.constraints)
            .with_context(|| spec.path.to_string())?;
    }
    if specs.len() == 1 {
        let report = run_bench(&specs[0], options)?;
        return write_and_print(options, &report, render(&report));
    }
    let mut runs = Vec::new();
    for spec in &specs {
        let mut one = options.clone();
        one.out = options.out.join(spec_label(spec));
        let report = run_bench(spec, &one)?;
        let json = serde_json::to_string_pretty(&report)?;
        crate::util::write_bytes_atomic(&one.out.join("bench.json"), (json + "\n").as_bytes())?;
        runs.push(SpecBench {
            spec: spec.path.clone(),
            requirements: spec.requirements.packages.clone(),
            report,
        });
    }
    let text = render::render_specs(&runs);
    write_and_print(options, &runs, text)
}

fn write_and_print(
    options: &BenchOptions,
    value: &impl Serialize,
    text: String,
) -> Result<ExitCode> {
    let json = serde_json::to_string_pretty(value)?;
    let path = options.out.join("bench.json");
    crate::util::write_bytes_atomic(&path, (json.clone() + "\n").as_bytes())?;
    if options.json {
        println!("{json}");
    } else {
        print!("{text}");
        println!("\nresults: {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A folder name for a spec's variants: `default` for layer/layer.toml, else its folder's name.
fn spec_label(spec: &Spec) -> String {
    let dir = spec.dir();
    match dir.file_name() {
        Some(name) if name != "layer" => name.to_owned(),
        _ => "default".to_owned(),
    }
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
    let out = &flags.out;
    fs_err::create_dir_all(out)?;
    let progress = Progress::new();
    let mut notes = Vec::new();
    let (chosen, default_profile) = chosen_profiles(spec, flags)?;

    // The runtime every variant starts from.
    let (runtime_source, runtime_file, runtime_sha) = runtime_source(spec, flags)?;
    let layer_cache = out.join("cache/layer");
    let fetcher = Fetcher::with_cache(layer_cache.clone(), false, progress.clone());
    let archive = fetcher
        .fetch(&runtime_source, &runtime_file, &runtime_sha, "python")
        .context("fetching the cpython runtime for the plain build")?;

    let (mut variants, guide_rules, python_version) =
        plain_and_guide(spec, flags, &archive, &mut notes, &progress)?;
    let runtime_label = runtime_label(spec, flags, &python_version, &runtime_source, &runtime_sha);

    // 3. This tool's profiles. The spec's default profile goes first, so that its cold build
    // leaves the cache warm for the others.
    let mut ordered = chosen.clone();
    if let Some(i) = ordered.iter().position(|p| *p == default_profile) {
        let p = ordered.remove(i);
        ordered.insert(0, p);
    }
    for (i, profile) in ordered.iter().enumerate() {
        let cold = !flags.skip_cold && *profile == default_profile;
        let fill = i == 0 && !layer_cache.join("wheels").is_dir();
        variants.push(bench_profile(
            spec,
            flags,
            profile,
            cold,
            fill,
            &layer_cache,
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
    let import_candidates = candidates::bench_candidates(
        spec,
        flags,
        &default_profile,
        &mut variants,
        &mut notes,
        &layer_cache,
        &progress,
    )?;
    fill_ratios(&mut variants);
    let measured = format!("profile {default_profile}");
    coldstart::cold_starts(spec, flags, &mut variants, &measured, &mut notes, &progress);

    notes.extend(closing_notes(flags, &chosen, &default_profile));

    let worker = if flags.worker {
        progress.line("bench: cargo bench -p pythonexec-rs --bench worker -- --json");
        Some(machine::worker_bench()?)
    } else {
        None
    };

    Ok(BenchReport {
        date: machine::now_utc(),
        arch: ARCH,
        machine: machine::machine(),
        runtime: runtime_label,
        timing_runs: flags.runs,
        variants,
        guide_rules,
        import_candidates,
        notes,
        worker,
    })
}

/// What the report says about the cold builds and the guide's build time.
fn closing_notes(flags: &BenchOptions, chosen: &[String], default_profile: &str) -> Vec<String> {
    let mut notes = Vec::new();
    if !flags.skip_cold {
        let ours = if chosen.iter().any(|p| p == default_profile) {
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

    notes
}

/// Where the runtime came from, for the report. Figures from another runtime than the
/// spec's pinned one must say so wherever they go.
fn runtime_label(
    spec: &Spec,
    flags: &BenchOptions,
    python_version: &str,
    source: &str,
    sha: &Sha256Hex,
) -> String {
    if flags.python_archive.is_some() {
        format!(
            "CPython {python_version} from {source} (sha256 {sha}), given with --python-archive: NOT the spec's pinned python-build-standalone {}",
            spec.python.version
        )
    } else {
        format!("CPython {python_version} from {source} (sha256 {sha}), the spec's pinned download")
    }
}

/// The profiles to bench (`--profiles`, checked, or all of them) and the spec's default one.
fn chosen_profiles(spec: &Spec, flags: &BenchOptions) -> Result<(Vec<String>, String)> {
    let profiles = profile_names(spec)?;
    let chosen: Vec<String> = match &flags.profiles {
        Some(list) => {
            for p in list {
                if !profiles.contains(p) {
                    bail!(
                        "--profiles names `{p}`, which {} does not define (it has: {})",
                        spec.data_path(&spec.prune.profiles),
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
    Ok((chosen, default_profile))
}

/// The first two rows: the plain way (cold once unless `--skip-cold`, then warm) and the
/// guide's rules on a copy of it, both measured; returns the rows, the guide's figures and
/// the runtime's Python version.
fn plain_and_guide(
    spec: &Spec,
    flags: &BenchOptions,
    archive: &Utf8Path,
    notes: &mut Vec<String>,
    progress: &Progress,
) -> Result<(Vec<Variant>, Vec<GuideOutcome>, String)> {
    let out = &flags.out;
    let pip_cache = out.join("cache/pip");
    let requirements = out.join("requirements.txt");
    fs_err::write(&requirements, requirements_txt(spec)?)?;
    let plain_dir = out.join("plain");
    let plain_zip = plain_dir.join("layer.zip");
    let build = || build_plain(spec, archive, &requirements, &pip_cache, &plain_dir);
    let mut plain_cold: Option<PlainBuild> = None;
    if !flags.skip_cold {
        progress.line("bench: plain pip install --target, cold (empty pip cache)");
        reset_dir(&pip_cache)?;
        plain_cold = Some(build()?);
    } else if is_empty_dir(&pip_cache) {
        progress.line("bench: filling pip's cache (not timed)");
        build()?;
    }
    progress.line("bench: plain pip install --target, warm");
    let plain_warm = build()?;
    let plain_build = plain_warm.pip_s + plain_warm.extract_s;
    notes.push(format!(
        "plain: pip install {:.1} s, runtime unpack {:.1} s, `{}` {:.1} s (warm run)",
        plain_warm.pip_s, plain_warm.extract_s, plain_warm.zipper, plain_warm.zip_s
    ));

    progress.line("bench: the guide's twelve categories on a copy of the plain tree");
    let guide_dir = out.join("guide");
    let (guide_rules, guide_s) = timed(|| apply_guide(&plain_dir.join("tree"), &guide_dir))?;
    let guide_zip = guide_dir.join("layer.zip");
    let (_, guide_zip_s) = timed(|| zip_tree(&guide_dir.join("tree"), &guide_zip))?;

    let plain_cold_s = plain_cold.as_ref().map(|c| c.pip_s + c.extract_s + c.zip_s);
    let variants = vec![
        measure(
            spec,
            flags,
            "plain: pip --target + zip -9",
            &plain_zip,
            Some(plain_build + plain_warm.zip_s),
            plain_cold_s,
            progress,
        )?,
        measure(
            spec,
            flags,
            "guide: 12 deletion categories",
            &guide_zip,
            Some(plain_build + plain_warm.zip_s + guide_s + guide_zip_s),
            plain_cold_s.map(|c| c + guide_s + guide_zip_s),
            progress,
        )?,
    ];
    Ok((variants, guide_rules, plain_warm.python_version))
}

/// One profile: built cold (empty cache) when `cold`, else once untimed to `fill` an empty
/// cache; then built warm and measured.
fn bench_profile(
    spec: &Spec,
    flags: &BenchOptions,
    profile: &str,
    cold: bool,
    fill: bool,
    layer_cache: &Utf8Path,
    progress: &Progress,
) -> Result<Variant> {
    let dir = flags.out.join("profiles").join(profile);
    let mut cold_s = None;
    if cold {
        progress.line(format!("bench: profile {profile}, cold (empty cache)"));
        reset_dir(layer_cache)?;
        cold_s = Some(build_profile(spec, flags, profile, &dir, layer_cache)?.1);
    } else if fill {
        progress.line("bench: filling the layer cache (not timed)");
        build_profile(spec, flags, profile, &dir, layer_cache)?;
    }
    progress.line(format!("bench: profile {profile}, warm"));
    // Without the last build's state the build runs (warm caches); with it, it is up to date.
    let state = dir.join(crate::build::cache::uptodate::STATE_FILE);
    if state.exists() {
        fs_err::remove_file(&state)?;
    }
    let (zip, warm) = build_profile(spec, flags, profile, &dir, layer_cache)?;
    progress.line(format!("bench: profile {profile}, nothing changed"));
    let (_, unchanged) = build_profile(spec, flags, profile, &dir, layer_cache)?;
    let mut variant = measure(
        spec,
        flags,
        &format!("profile {profile}"),
        &zip,
        Some(warm),
        cold_s,
        progress,
    )?;
    variant.build_unchanged_s = Some(unchanged);
    Ok(variant)
}

/// Profile names in the order `profiles.toml` lists them.
fn profile_names(spec: &Spec) -> Result<Vec<String>> {
    let path = spec.data_path(&spec.prune.profiles);
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

/// The runtime archive, its cache file name and its hash: `--python-archive`, else the
/// spec's download.
fn runtime_source(spec: &Spec, flags: &BenchOptions) -> Result<(String, String, Sha256Hex)> {
    let sha = match &flags.python_sha256 {
        Some(h) => h
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--python-sha256: {e}"))?,
        None => spec.python_sha256(ARCH)?.clone(),
    };
    let (source, file_name) = spec.runtime_location(ARCH, flags.python_archive.as_deref());
    Ok((source, file_name, sha))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_nothing_is_zero_not_nan() {
        assert_eq!(ratio(5, 0), 0.0);
        let mut empty: Vec<Variant> = vec![];
        fill_ratios(&mut empty);
    }
}
