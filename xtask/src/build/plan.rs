//! `BuildPlan::resolve`: everything a build decides before a byte is downloaded.
//!
//! Resolving is pure: it reads the spec and the files the spec names (lock, profiles, rules,
//! accelerators) and nothing else: no downloads, no cache, no writes. `cargo xtask layer --plan`
//! prints the result; `execute` carries it out. Decisions that need the unpacked tree (which
//! files a rule removes, what the trace touched) stay plans of their step.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use serde::Serialize;

use crate::build::minimize::Accelerator;
use crate::build::LayerOptions;
use crate::core::{Glibc, LayerPaths};
use crate::python::wheel::{self as wheels, Target, WheelName};
use crate::python::{marker, pylock::PyLock};
use crate::spec::profiles::{Mode, Profile, ProfilesFile, DEFAULT_PROFILE};
use crate::spec::rules::{Level, RuleDef, RulesFile};
use crate::spec::{Arch, Flavour, Sha256Hex, Spec};

/// What a build will do, decided from the spec, its data files and the options.
#[derive(Debug, Clone, Serialize)]
pub struct BuildPlan {
    #[serde(skip)]
    pub spec: Spec,
    pub spec_path: Utf8PathBuf,
    pub layer: String,
    pub arch: Arch,
    pub python_version: String,
    pub glibc: Glibc,
    /// `--offline`: every download must already be in the cache.
    pub offline: bool,
    pub runtime: ArchiveSource,
    /// The interpreter that compiles bytecode (and lists start-up modules).
    pub host_python: HostPython,
    /// One wheel per locked package that applies to the target, in lock order.
    pub wheels: Vec<ChosenWheel>,
    pub profile: ProfilePlan,
    pub minimize: MinimizePlan,
    /// What `sitecustomize.py` sets unless already set: the spec's `[env]` plus the defaults
    /// of dropped accelerators.
    pub env: BTreeMap<String, String>,
    /// The spec's `[[patch]]` diffs, each with its sha256 (none unless the spec lists them).
    pub patches: Vec<crate::build::patch::PatchPlan>,
    /// Whether the Node.js client goes into `nodejs/node_modules/pythonexec/` (`[clients] node`);
    /// the worker protocol's `python/lib/pythonexec/worker.py` always does.
    pub clients_node: bool,
    pub paths: LayerPaths,
    /// `--split`: the layer as up to five stacked zips instead of one.
    pub split: Option<crate::build::split::SplitPlan>,
}

/// Where a CPython archive comes from.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSource {
    /// A URL or a path.
    pub location: String,
    /// The name it is cached under.
    pub file_name: String,
    pub sha256: Sha256Hex,
    /// The spec's flavour for its own download; for an explicit archive, what its name says
    /// (`None`: found out when it is unpacked).
    pub flavour: Option<Flavour>,
    pub origin: Origin,
}

/// Whose choice an archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The spec's pinned python-build-standalone download.
    Pinned,
    /// The spec's asset under `LAYER_PYTHON_MIRROR`.
    Mirror,
    /// `--python-archive` or `--host-python-archive`.
    Explicit,
}

/// The interpreter that runs on this machine and compiles bytecode for the layer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HostPython {
    /// The target runtime itself: the build machine has the layer's architecture.
    Runtime,
    /// A cross build: this archive of the build machine's architecture, unpacked in the cache.
    Archive(ArchiveSource),
    /// A cross build that cannot compile bytecode; an error only if a step needs it.
    Unavailable { why: String },
}

/// The wheel chosen for one locked package.
#[derive(Debug, Clone, Serialize)]
pub struct ChosenWheel {
    pub package: String,
    pub version: String,
    pub file: String,
    pub url: String,
    pub sha256: Sha256Hex,
    /// Every `py-abi-platform` tag of the file.
    pub tags: Vec<String>,
    /// Why this file won over the lock's other wheels of the package.
    pub why: String,
}

/// The profile's settings and the rules it applies.
#[derive(Debug, Clone, Serialize)]
pub struct ProfilePlan {
    pub name: String,
    pub description: String,
    pub levels: Vec<String>,
    pub bytecode: Mode,
    pub optimize: u8,
    pub debug_ranges: bool,
    pub strip: bool,
    pub site_packages_zip: bool,
    pub stdlib_zip: bool,
    /// The rules file and the profile file read.
    pub rules_file: Utf8PathBuf,
    pub profiles_file: Utf8PathBuf,
    /// Names of the rules applied, in order: the rules file's (less `[prune] disable`), then
    /// the spec's own, those of the profile's levels only.
    pub rules: Vec<String>,
    #[serde(skip)]
    pub settings: Profile,
    #[serde(skip)]
    pub rule_defs: Vec<RuleDef>,
    #[serde(skip)]
    pub rules_data: RulesFile,
}

/// Trace-driven minimization, when on.
#[derive(Debug, Clone, Serialize)]
pub struct MinimizePlan {
    pub enabled: bool,
    /// `--minimize` (or `--trace`) asked for it, whatever the profile says.
    pub forced: bool,
    /// `--trace`: a saved trace to use instead of running the workloads.
    pub trace_given: Option<Utf8PathBuf>,
    /// Where the trace used is saved (`paths.trace`), when enabled.
    pub trace_saved: Option<Utf8PathBuf>,
    pub workloads: Vec<String>,
    pub providers: Vec<String>,
    /// Globs relative to `python/` kept whatever the trace says.
    pub keep: Vec<String>,
    /// Distributions whose native accelerators are left out.
    pub dropped_accelerators: Vec<String>,
    #[serde(skip)]
    pub accelerators: Vec<(String, Accelerator)>,
}

impl BuildPlan {
    /// Decides everything that can be decided before a download; reads only the spec and the
    /// files it names.
    pub fn resolve(spec: Spec, options: &LayerOptions) -> Result<BuildPlan> {
        let arch = options.arch.unwrap_or(spec.layer.default_arch);
        let out = options
            .out
            .clone()
            .unwrap_or_else(|| crate::core::default_out_dir(arch));
        let paths = LayerPaths::new(&out, &spec.layer.name, arch);
        let wheels = choose_wheels(&spec, arch)?;
        let patches = crate::build::patch::resolve(&spec, &wheels)?;
        let runtime = archive_source(
            &spec,
            arch,
            options.python_archive.as_deref(),
            options.python_sha256.as_ref(),
        )?;
        let host_python = host_python(&spec, arch, options.host_python_archive.as_ref());
        let profile = profile_plan(&spec, options.profile.as_deref())?;
        let forced = options.minimize || options.trace.is_some();
        if forced && profile.site_packages_zip {
            bail!(
                "--minimize cannot minimize profile `{}`: it puts site-packages into a zip, which the trace sees as one file; use --profile minimal (or another profile without site-packages-zip)",
                profile.name
            );
        }
        let enabled = forced || profile.settings.minimize;
        // Accelerators a minimized layer leaves out come with the environment defaults that
        // make their packages take the pure-Python path without trying the extension.
        let accelerators = if enabled {
            crate::build::minimize::accelerators(&spec)?
        } else {
            Vec::new()
        };
        let mut env = spec.env.clone();
        for (_, acc) in &accelerators {
            for (k, v) in &acc.env {
                env.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let minimize = MinimizePlan {
            enabled,
            forced,
            trace_given: options.trace.clone(),
            trace_saved: enabled.then(|| paths.trace.clone()),
            workloads: spec
                .minimize
                .workloads
                .iter()
                .map(|w| w.to_string())
                .collect(),
            providers: spec.minimize.providers.clone(),
            keep: spec.minimize.keep.clone(),
            dropped_accelerators: accelerators.iter().map(|(n, _)| n.clone()).collect(),
            accelerators,
        };
        Ok(BuildPlan {
            spec_path: spec.path.clone(),
            layer: spec.layer.name.clone(),
            arch,
            python_version: spec.python.version.clone(),
            glibc: spec.glibc(),
            offline: options.offline,
            runtime,
            host_python,
            wheels,
            profile,
            minimize,
            env,
            patches,
            clients_node: spec.clients.node,
            split: options
                .split
                .then(|| crate::build::split::SplitPlan::new(&spec, &paths, arch)),
            paths,
            spec,
        })
    }

    /// The plan for people.
    pub fn to_text(&self) -> String {
        crate::build::plan_text::render(self)
    }
}

/// The runtime archive of `arch`: `explicit` (a path or URL) or the spec's download.
fn archive_source(
    spec: &Spec,
    arch: Arch,
    explicit: Option<&str>,
    sha256: Option<&Sha256Hex>,
) -> Result<ArchiveSource> {
    let (location, file_name) = spec.runtime_location(arch, explicit);
    let sha256 = match sha256 {
        Some(sha) => sha.clone(),
        None => spec.python_sha256(arch)?.clone(),
    };
    let (origin, flavour) = if explicit.is_some() {
        (Origin::Explicit, flavour_of_name(&file_name))
    } else if location == spec.python_url(arch, None) {
        (Origin::Pinned, Some(spec.python.flavour))
    } else {
        (Origin::Mirror, Some(spec.python.flavour))
    };
    Ok(ArchiveSource {
        location,
        file_name,
        sha256,
        flavour,
        origin,
    })
}

/// The flavour an archive's name claims, python-build-standalone style.
fn flavour_of_name(name: &str) -> Option<Flavour> {
    if name.contains("install_only_stripped") {
        Some(Flavour::InstallOnlyStripped)
    } else if name.contains("install_only") {
        Some(Flavour::InstallOnly)
    } else if name.contains("-full.") {
        Some(Flavour::Full)
    } else {
        None
    }
}

/// The interpreter that compiles bytecode: the target runtime when the architectures match,
/// else the host-architecture archive of the same release (`--host-python-archive` or the spec).
fn host_python(spec: &Spec, arch: Arch, explicit: Option<&(String, Sha256Hex)>) -> HostPython {
    let Some(host) = Arch::host() else {
        return HostPython::Unavailable {
            why: "this machine is neither x86_64 nor aarch64: cannot compile bytecode".into(),
        };
    };
    if host == arch {
        return HostPython::Runtime;
    }
    match archive_source(
        spec,
        host,
        explicit.map(|(s, _)| s.as_str()),
        explicit.map(|(_, h)| h),
    ) {
        Ok(source) => HostPython::Archive(source),
        Err(e) => HostPython::Unavailable {
            why: format!("{e:#}"),
        },
    }
}

/// The profile `name` (else the spec's, else the default) and the rules it applies.
fn profile_plan(spec: &Spec, name: Option<&str>) -> Result<ProfilePlan> {
    let name = name
        .or(spec.layer.profile.as_deref())
        .unwrap_or(DEFAULT_PROFILE);
    let profiles_file = spec.data_path(&spec.prune.profiles);
    let profiles = ProfilesFile::load(&profiles_file)?;
    let settings = profiles.get(name, &profiles_file)?.clone();
    let rules_file = spec.data_path(&spec.prune.rules);
    let rules_data = RulesFile::load(&rules_file)?;
    for d in &spec.prune.disable {
        if !rules_data.rules.iter().any(|r| &r.name == d) {
            bail!(
                "{}: [prune] disable names `{d}`, which {rules_file} does not define",
                spec.path
            );
        }
    }
    let rule_defs: Vec<RuleDef> = rules_data
        .rules
        .iter()
        .filter(|r| !spec.prune.disable.contains(&r.name))
        .chain(&spec.prune.rule)
        .filter(|r| settings.levels.contains(&r.level))
        .cloned()
        .collect();
    Ok(ProfilePlan {
        name: name.to_owned(),
        description: settings.description.clone(),
        levels: settings
            .levels
            .iter()
            .map(|l| level_name(*l).to_owned())
            .collect(),
        bytecode: settings.bytecode,
        optimize: settings.optimize,
        debug_ranges: settings.debug_ranges,
        strip: settings.strip,
        site_packages_zip: settings.site_packages_zip,
        stdlib_zip: settings.stdlib_zip,
        rules_file,
        profiles_file,
        rules: rule_defs.iter().map(|r| r.name.clone()).collect(),
        settings,
        rule_defs,
        rules_data,
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Safe => "safe",
        Level::Check => "check",
        Level::Risky => "risky",
    }
}

/// Picks a wheel for every locked package that applies to `arch`; names every package that
/// has none.
fn choose_wheels(spec: &Spec, arch: Arch) -> Result<Vec<ChosenWheel>> {
    let lock_path = spec.lock_path();
    let lock = PyLock::load(&lock_path)?;
    // Before anything else: a lock written by hand, by an older tool or from a mirror may
    // still carry a release known to be compromised.
    let advisories = crate::spec::advisories::AdvisoriesFile::for_spec(spec)?;
    advisories.check_requirements(&spec.requirements.packages, "[requirements] packages")?;
    advisories.check_locked(
        lock.packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_deref().unwrap_or_default())),
        &lock_path,
    )?;
    lock.check_fresh(spec, &lock_path)?;
    let xy = spec.python_xy();
    let py_minor: u32 = xy
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(11);
    let target = Target {
        arch,
        glibc: spec.glibc(),
        py_minor,
    };
    let env = marker::Env {
        machine: arch.machine().to_owned(),
        python_version: xy.clone(),
        python_full_version: spec.python.version.clone(),
    };
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for pkg in lock.packages_for(&env)? {
        let files: Vec<String> = pkg.wheels.iter().filter_map(|w| w.file_name()).collect();
        let Some(file) = wheels::select_wheel(&files, &target) else {
            let tags: Vec<String> = files
                .iter()
                .filter_map(|f| WheelName::parse(f))
                .flat_map(|w| w.tags())
                .collect();
            missing.push(format!(
                "{} {}: no wheel for CPython 3.{} on manylinux {} glibc <= {} (the lock has: {})",
                pkg.name,
                pkg.version.as_deref().unwrap_or("?"),
                target.py_minor,
                target.arch.machine(),
                target.glibc,
                if tags.is_empty() {
                    "no wheels".to_owned()
                } else {
                    tags.join(", ")
                }
            ));
            continue;
        };
        let wheel = pkg
            .wheels
            .iter()
            .find(|w| w.file_name().as_ref() == Some(file))
            .context("wheel vanished")?;
        chosen.push(ChosenWheel {
            package: pkg.name.clone(),
            version: pkg.version.clone().unwrap_or_default(),
            file: file.clone(),
            url: wheel
                .url
                .clone()
                .with_context(|| format!("{lock_path}: wheel {file} has no url"))?,
            sha256: wheel
                .sha256()
                .with_context(|| format!("{lock_path}: wheel {file} has no sha256"))?,
            tags: WheelName::parse(file).map(|w| w.tags()).unwrap_or_default(),
            why: why_chosen(file, &files, &target),
        });
    }
    if !missing.is_empty() {
        bail!(
            "{} package(s) cannot be installed for {}:\n  {}",
            missing.len(),
            target.arch,
            missing.join("\n  ")
        );
    }
    Ok(chosen)
}

/// Why `file` won among `files`: the only one, the only one that fits, or the best PEP 425
/// score (with the tag that earned it).
fn why_chosen(file: &str, files: &[String], target: &Target) -> String {
    if files.len() == 1 {
        return "the only wheel in the lock".to_owned();
    }
    let fitting = files
        .iter()
        .filter(|f| WheelName::parse(f).and_then(|w| w.score(target)).is_some())
        .count();
    if fitting == 1 {
        return format!(
            "the only one of {} wheels that fits the target",
            files.len()
        );
    }
    let score = WheelName::parse(file).and_then(|w| w.score(target));
    let best_tag = WheelName::parse(file)
        .map(|w| w.tags())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|tag| {
            let score = WheelName::parse(&format!("x-0-{tag}.whl"))?.score(target)?;
            Some((score, tag))
        })
        .max();
    match (score, best_tag) {
        (Some(score), Some((_, tag))) => {
            format!("best PEP 425 score {score} of {fitting} fitting wheels (tag {tag})")
        }
        _ => format!("best of {fitting} fitting wheels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8Path;

    fn spec() -> Spec {
        Spec::load(&crate::core::project_root().join("layer/layer.toml")).unwrap()
    }

    fn options() -> LayerOptions {
        LayerOptions {
            arch: Some(Arch::X86_64),
            out: Some(Utf8PathBuf::from("/nonexistent/out")),
            ..LayerOptions::default()
        }
    }

    #[test]
    fn resolves_the_repository_spec_without_touching_the_disk() {
        let plan = BuildPlan::resolve(spec(), &options()).unwrap();
        assert!(!Utf8Path::new("/nonexistent/out").exists());
        assert_eq!(
            plan.paths.zip,
            format!("/nonexistent/out/{}-x86_64.zip", plan.layer)
        );
        assert!(!plan.wheels.is_empty());
        assert!(plan
            .wheels
            .iter()
            .all(|w| !w.tags.is_empty() && !w.why.is_empty()));
        assert_eq!(plan.runtime.origin, Origin::Pinned);
        let json = serde_json::to_value(&plan).unwrap();
        assert!(json["wheels"][0]["sha256"].is_string());
        assert!(plan.to_text().contains(&plan.wheels[0].file));
    }

    #[test]
    fn an_explicit_archive_and_hash_replace_the_pinned_ones() {
        let sha: Sha256Hex = "ab".repeat(32).parse().unwrap();
        let plan = BuildPlan::resolve(
            spec(),
            &LayerOptions {
                python_archive: Some("/x/cpython-fixture-x86_64-install_only.tar.gz".into()),
                python_sha256: Some(sha.clone()),
                ..options()
            },
        )
        .unwrap();
        assert_eq!(plan.runtime.origin, Origin::Explicit);
        assert_eq!(plan.runtime.sha256, sha);
        assert_eq!(plan.runtime.flavour, Some(Flavour::InstallOnly));
        assert_eq!(
            plan.runtime.file_name,
            "cpython-fixture-x86_64-install_only.tar.gz"
        );
    }

    #[test]
    fn why_a_wheel_won() {
        let target = Target {
            arch: Arch::X86_64,
            glibc: "2.34".parse().unwrap(),
            py_minor: 11,
        };
        let files = vec![
            "a-1-cp311-cp311-manylinux_2_17_x86_64.whl".to_owned(),
            "a-1-py3-none-any.whl".to_owned(),
            "a-1-cp311-cp311-manylinux_2_17_aarch64.whl".to_owned(),
        ];
        let why = why_chosen(&files[0], &files, &target);
        assert!(why.contains("cp311-cp311-manylinux_2_17_x86_64"), "{why}");
        assert_eq!(
            why_chosen(&files[1], &files[1..2], &target),
            "the only wheel in the lock"
        );
        assert!(why_chosen(&files[1], &files[1..], &target).contains("only one of 2"));
    }
}
