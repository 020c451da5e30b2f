//! `execute`: carries out a `BuildPlan`, one named step after another. Each step is a
//! function of its own; decisions that need the unpacked tree (which files a rule removes, what
//! the trace touched) are plans of their step, made and carried out there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::cache::StageCache;
use crate::build::fetch::Fetcher;
use crate::build::minimize::proof::prove;
use crate::build::minimize::stage::{minimize_stage, Minimized};
use crate::build::plan::{BuildPlan, ChosenWheel};
use crate::build::report::StepTime;
use crate::build::runtime::RuntimeInfo;
use crate::build::slim::{SlimContext, Slimmed};
use crate::build::Built;
use crate::core::{Owners, RemovedDistribution};
use crate::spec::Spec;
use crate::util::progress::Progress;
use crate::util::zipinfo::ZipStats;

/// Runs the plan: fetch, unpack the runtime, install, prune, bytecode, strip,
/// site-packages.zip, minimize, package, report; the report says how long each step took.
///
/// Long on purpose: the steps in the order they run, each timed where it is called.
pub fn execute(plan: &BuildPlan) -> Result<Built> {
    let progress = Progress::new();
    let mut clock = Stopwatch::default();
    let fingerprint = crate::build::cache::uptodate::fingerprint(plan)?;
    if let Some(report) = crate::build::cache::uptodate::check(plan, &fingerprint) {
        progress.line(format!(
            "up to date: {} (the plan, its inputs and the outputs are those of the last build; nothing rebuilt)",
            plan.paths.zip
        ));
        return Ok(Built { report });
    }
    fs_err::create_dir_all(&plan.paths.out)?;
    crate::build::cache::uptodate::forget(plan)?;
    let old_tree = remove_old_trees(&plan.paths.out, &plan.paths.tree)?;
    let fetcher = Fetcher::new(plan.offline, progress.clone())?;
    let cache = StageCache::new(&fetcher.cache);
    let archive = clock.time("fetch", || fetch_runtime(plan, &fetcher, &progress))?;
    // Renamed into the layer's tree at the end: a finished output, so not tempfile's 0700.
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .permissions(crate::util::new_dir_permissions())
        .tempdir_in(&plan.paths.out)
        .with_context(|| format!("creating a staging folder in {}", plan.paths.out))?;
    let stage = crate::util::utf8(staging.path().to_path_buf())?;
    let (runtime, runtime_note) = clock.time("unpack runtime", || {
        unpack_runtime(plan, &archive, &stage, &cache)
    })?;
    let site_rel = Utf8PathBuf::from(format!("python/lib/python{}/site-packages", runtime.xy));
    fs_err::create_dir_all(stage.join(&site_rel))?;
    let lock = plan.spec.lock_path();
    let wheels = clock.time("fetch", || {
        fetch_wheels(&fetcher, &plan.wheels, &lock, &progress)
    })?;
    let (owners, mut install_notes) = clock.time("install", || {
        let installed = install(plan, &wheels, &stage, &site_rel, &cache, &progress)?;
        write_sitecustomize(
            &plan.spec,
            &plan.env,
            &stage.join(format!("python/lib/python{}", runtime.xy)),
        )?;
        Ok(installed)
    })?;
    install_notes.extend(runtime_note);
    // Before prune and bytecode: those see the patched file, RECORD names its new hash.
    let patches = clock.time("patch", || {
        crate::build::patch::apply_all(&plan.patches, &stage, &owners)
    })?;

    let host_python = || crate::build::runtime::host_python(plan, &fetcher, &runtime, &stage);
    let ctx = SlimContext {
        spec: &plan.spec,
        arch: plan.arch,
        profile: &plan.profile,
        stage: &stage,
        runtime: &runtime,
        site_packages: &site_rel,
        owners: &owners,
        host_python: &host_python,
        progress: &progress,
        cache: Some(&cache),
    };
    let mut slimmed = crate::build::slim::start(&ctx);
    let slim = &mut slimmed;
    clock.time("prune", || crate::build::slim::prune_step(&ctx, slim))?;
    clock.time("bytecode", || crate::build::slim::bytecode_step(&ctx, slim))?;
    clock.time("strip", || crate::build::slim::strip_step(&ctx, slim))?;
    clock.time("site-packages zip", || {
        crate::build::slim::sitezip::site_packages_zip_step(&ctx, slim)
    })?;
    let minimized = clock.time("minimize", || {
        minimize(plan, &stage, &site_rel, &owners, &cache, &progress)
    })?;
    clock.time("clients", || {
        crate::build::clients::write(&stage, plan.clients_node)
    })?;

    let removed = removed_distributions(&slimmed, minimized.as_ref());
    let stats = clock.time("package", || {
        // The tree shares its linked files' bytes with the stage cache; an edit in place
        // there shows at the next build (`StageCache::link_file`, `linked_dir`).
        write_manifest(
            plan,
            &stage,
            &runtime,
            &owners,
            &removed,
            minimized.as_ref(),
            &patches,
        )?;
        crate::build::sbom::write(plan, &stage, &runtime, &owners, &wheels, &removed)?;
        package(plan, &stage, &cache, &progress)
    })?;
    // Timed as part of "package" (a step timed twice adds up).
    let stack = clock.time("package", || {
        crate::build::split::package_step(plan, &stage, &site_rel, Some(&cache), &progress)
    })?;
    let mut report = clock.time("report", || {
        let mut report = report(plan, &runtime, &stats, &owners, slimmed, install_notes);
        report.removed_distributions = removed;
        report.patches = patches.clone();
        if let Some(stack) = stack {
            report.set_split(stack);
        }
        if let Some(m) = &minimized {
            report.minimized = Some(m.summary.clone());
        }
        Ok(report)
    })?;

    // Keep the unpacked tree for `verify` and `analyze`.
    let tree = &plan.paths.tree;
    clock.time("replace tree", || {
        old_tree
            .join()
            .map_err(|_| anyhow::anyhow!("removing the last build's tree panicked"))?
    })?;
    let stage_path = staging.keep();
    fs_err::rename(&stage_path, tree)?;

    // A minimized layer must still pass verify and its workload; otherwise the build fails and
    // names the removal that broke it. The report is written only for a layer that passed. The
    // passing verify of the identical zip under the same inputs is reused, and the report says so.
    if let Some(m) = &minimized {
        let proof = clock.time("minimize", || {
            prove(plan, &plan.paths.zip, &site_rel, &m.plan, &cache, &progress)
        })?;
        if let Some(summary) = report.minimized.as_mut() {
            summary.proof = Some(proof);
        }
    }
    crate::build::split::drop_single_zip(plan)?;
    report.timings = clock.steps;
    report.cache = cache.counts();
    report.write(&plan.paths.out)?;
    crate::build::cache::uptodate::record(plan, &fingerprint)?;
    Ok(Built { report })
}

/// Renames the last build's tree aside and removes it (with any left by an interrupted
/// build) in a thread of its own, while this build runs: deleting ten thousand files takes
/// seconds. The state file is already forgotten, so nothing claims the old zip is up to date.
fn remove_old_trees(
    out: &Utf8Path,
    tree: &Utf8Path,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    const ASIDE: &str = ".old-tree-";
    if tree.exists() {
        let aside = out.join(format!("{ASIDE}{}", std::process::id()));
        fs_err::rename(tree, &aside)?;
    }
    let mut old = Vec::new();
    for entry in fs_err::read_dir(out)? {
        let path = crate::util::utf8(entry?.path())?;
        if path.file_name().is_some_and(|n| n.starts_with(ASIDE)) {
            old.push(path);
        }
    }
    Ok(std::thread::spawn(move || {
        for path in old {
            fs_err::remove_dir_all(&path)?;
        }
        Ok(())
    }))
}

/// Seconds per named step; a step timed twice (fetch: the runtime, then the wheels) adds up.
#[derive(Default)]
struct Stopwatch {
    steps: Vec<StepTime>,
}

impl Stopwatch {
    fn time<T>(&mut self, step: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = std::time::Instant::now();
        let cpu_start = crate::util::cpu::seconds();
        let result = run();
        let seconds = start.elapsed().as_secs_f64();
        let cpu = cpu_start.zip(crate::util::cpu::seconds());
        self.add(step, seconds, cpu.map(|(a, b)| (b - a).max(0.0)));
        result
    }

    fn add(&mut self, step: &str, seconds: f64, cpu_seconds: Option<f64>) {
        match self.steps.iter_mut().find(|s| s.step == step) {
            Some(s) => {
                s.seconds = millis(s.seconds + seconds);
                s.cpu_seconds = match (s.cpu_seconds, cpu_seconds) {
                    (Some(a), Some(b)) => Some(millis(a + b)),
                    _ => None,
                };
            }
            None => self.steps.push(StepTime {
                step: step.to_owned(),
                seconds: millis(seconds),
                cpu_seconds: cpu_seconds.map(millis),
            }),
        }
    }
}

/// Milliseconds are plenty, and keep report.json short.
fn millis(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Step "fetch" (runtime): the CPython archive into the cache, its hash checked.
fn fetch_runtime(plan: &BuildPlan, fetcher: &Fetcher, progress: &Progress) -> Result<Utf8PathBuf> {
    let source = &plan.runtime;
    progress.line(format!("runtime: {}", source.location));
    fetcher
        .fetch(&source.location, &source.file_name, &source.sha256, "python")
        .with_context(|| {
            let hint = if source.origin != crate::build::plan::Origin::Explicit {
                " (where that host is out of reach, set LAYER_PYTHON_MIRROR or pass --python-archive with --python-sha256)"
            } else {
                ""
            };
            format!("fetching the CPython runtime for {}{hint}", plan.arch)
        })
}

/// Step "unpack runtime": the archive into the staging folder as `python/` (linked from the
/// stage cache's unpacked copy); its minor version must be the spec's.
fn unpack_runtime(
    plan: &BuildPlan,
    archive: &Utf8Path,
    stage: &Utf8Path,
    cache: &StageCache,
) -> Result<(RuntimeInfo, Option<String>)> {
    let (runtime, note) = crate::build::cache::runtime::unpack(
        cache,
        archive,
        plan.runtime.sha256.as_str(),
        plan.arch,
        stage,
    )?;
    if Some(runtime.xy.clone()) != plan.spec.python_minor() {
        bail!(
            "the runtime archive holds Python {} but the spec asks for {}: pass an archive of the same minor version",
            runtime.version,
            plan.spec.python.version
        );
    }
    Ok((runtime, note))
}

/// Step "install": every chosen wheel into site-packages (PEP 427); returns who owns which
/// file, and notes on the parts of wheels a layer does not use.
fn install(
    plan: &BuildPlan,
    downloaded: &[Utf8PathBuf],
    stage: &Utf8Path,
    site_rel: &Utf8Path,
    cache: &StageCache,
    progress: &Progress,
) -> Result<(Owners, Vec<String>)> {
    let site_packages = stage.join(site_rel);
    let mut owners = Owners::new(site_rel.to_owned());
    let mut notes = Vec::new();
    let bar = progress.bar(downloaded.len() as u64, "installing wheels", false);
    for (chosen, path) in plan.wheels.iter().zip(downloaded) {
        let (installed, changed) = crate::build::cache::install::install(
            cache,
            path,
            chosen.sha256.as_str(),
            site_rel,
            &site_packages,
        )
        .with_context(|| {
            format!(
                "installing {} {} from {}",
                chosen.package, chosen.version, chosen.file
            )
        })?;
        notes.extend(changed);
        owners.add(
            &installed.name,
            &installed.version,
            &installed.wheel,
            &installed.files,
        );
        if !installed.skipped.is_empty() {
            notes.push(format!(
                "{}: left out {} file(s) of the wheel's scripts, headers or data, which a layer does not use",
                installed.name,
                installed.skipped.len(),
            ));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    progress.line(format!(
        "installed {} distributions into {site_rel}",
        plan.wheels.len()
    ));
    Ok((owners, notes))
}

/// Step "minimize" (when the plan says so): drop the accelerators the spec names, trace,
/// remove what the trace never touched.
fn minimize(
    plan: &BuildPlan,
    stage: &Utf8Path,
    site_rel: &Utf8Path,
    owners: &Owners,
    cache: &StageCache,
    progress: &Progress,
) -> Result<Option<Minimized>> {
    if !plan.minimize.enabled {
        return Ok(None);
    }
    let dropped = &plan.minimize.accelerators;
    let dropped_files = crate::build::minimize::drop_accelerators(stage, site_rel, dropped)?;
    if !dropped.is_empty() {
        progress.line(format!(
            "minimize: left out the native accelerators of {} ({} files); the workload proves the fallbacks",
            plan.minimize.dropped_accelerators.join(", "),
            dropped_files.len()
        ));
    }
    let mut m = minimize_stage(plan, stage, owners, Some(cache), progress)?;
    m.summary.dropped_accelerators = plan.minimize.dropped_accelerators.clone();
    Ok(Some(m))
}

/// The distributions removed whole, by a rule or by minimization; one a rule already removed
/// has nothing left to trace, so each is listed once.
fn removed_distributions(
    slimmed: &Slimmed,
    minimized: Option<&Minimized>,
) -> Vec<RemovedDistribution> {
    let mut removed = slimmed.removed_distributions.clone();
    if let Some(m) = minimized {
        for r in &m.plan.removed_distributions {
            if !removed.iter().any(|d| d.name == r.name) {
                removed.push(r.clone());
            }
        }
        removed.sort_by(|a, b| a.name.cmp(&b.name));
    }
    removed
}

/// The layer describes itself: what it holds and what was removed on purpose.
fn write_manifest(
    plan: &BuildPlan,
    stage: &Utf8Path,
    runtime: &RuntimeInfo,
    owners: &Owners,
    removed: &[RemovedDistribution],
    minimized: Option<&Minimized>,
    patches: &[crate::core::AppliedPatch],
) -> Result<()> {
    let manifest = crate::core::Manifest {
        name: plan.spec.layer.name.clone(),
        arch: plan.arch.to_string(),
        profile: plan.profile.name.clone(),
        python_version: runtime.version.clone(),
        distributions: owners
            .dists
            .iter()
            .filter(|(name, _, _)| !removed.iter().any(|r| &r.name == name))
            .map(|(name, version, _)| (name.clone(), version.clone()))
            .collect(),
        removed_distributions: removed.to_vec(),
        removed_modules: minimized
            .map(|m| m.plan.removed_modules.clone())
            .unwrap_or_default(),
        patches: patches.to_vec(),
    };
    let manifest_path = stage.join(crate::core::MANIFEST);
    fs_err::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;
    Ok(())
}

/// Step "package": the staged tree into the layer zip.
fn package(
    plan: &BuildPlan,
    stage: &Utf8Path,
    cache: &StageCache,
    progress: &Progress,
) -> Result<ZipStats> {
    let zip_path = &plan.paths.zip;
    progress.line(format!("packaging {zip_path}"));
    crate::build::zip::write_zip_cached(stage, zip_path, 9, Some(cache))
}

/// Step "report": sizes per distribution, budgets, and what each step removed.
fn report(
    plan: &BuildPlan,
    runtime: &RuntimeInfo,
    stats: &ZipStats,
    owners: &Owners,
    slimmed: Slimmed,
    install_notes: Vec<String>,
) -> crate::build::report::Report {
    let report_stats = slimmed.stats_for_report(stats);
    let mut report = crate::build::report::build(
        &plan.spec,
        plan.arch,
        &runtime.version,
        &plan.paths.zip,
        stats,
        &report_stats.entries,
        owners,
    );
    report.notes.extend(install_notes);
    slimmed.fill(&mut report);
    report
}

/// Step "fetch" (wheels): the chosen wheels, in parallel, into the cache; returns their paths
/// in order. A wheel that is not the one locked names `lock`, which holds the expected hash.
fn fetch_wheels(
    fetcher: &Fetcher,
    chosen: &[ChosenWheel],
    lock: &Utf8Path,
    progress: &Progress,
) -> Result<Vec<Utf8PathBuf>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Utf8PathBuf>>>> =
        Mutex::new((0..chosen.len()).map(|_| None).collect());
    let bar = progress.bar(chosen.len() as u64, "fetching wheels", false);
    std::thread::scope(|s| {
        for _ in 0..4.min(chosen.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(wheel) = chosen.get(i) else { break };
                let result = fetcher
                    .fetch(&wheel.url, &wheel.file, &wheel.sha256, "wheels")
                    .map_err(|err| {
                        if err.is::<crate::build::fetch::HashMismatch>() {
                            err.context(format!(
                                "{} is not the wheel locked in {lock} (its sha256 differs from the lock's)",
                                wheel.file
                            ))
                        } else {
                            err
                        }
                    })
                    .with_context(|| {
                        format!(
                            "fetching {} {} ({})",
                            wheel.package, wheel.version, wheel.file
                        )
                    });
                bar.inc(1);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(result);
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a download thread panicked"))?;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| bail!("a download did not run")))
        .collect()
}

/// Writes `sitecustomize.py` (from `layer/sitecustomize.py`) with the spec's environment defaults.
fn write_sitecustomize(
    spec: &Spec,
    env: &BTreeMap<String, String>,
    stdlib: &Utf8Path,
) -> Result<()> {
    let template_path = spec.data_path("sitecustomize.py");
    let template =
        fs_err::read_to_string(&template_path).context("reading the sitecustomize template")?;
    let env = serde_json::to_string(env)?;
    let text = template.replace("__LAYER_ENV__", &env);
    // Debian's stdlib ships sitecustomize.py as a link into /etc: writing through it would
    // change the build machine, so whatever is there is replaced, never written through.
    let path = stdlib.join("sitecustomize.py");
    if path.symlink_metadata().is_ok() {
        fs_err::remove_file(&path)?;
    }
    fs_err::write(&path, text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_timed_twice_adds_up_in_first_run_order() {
        let mut clock = Stopwatch::default();
        clock.add("fetch", 0.25, Some(0.125));
        clock.add("unpack runtime", 1.0004, None);
        clock.add("fetch", 0.5, Some(0.25));
        let value: Result<u8> = clock.time("install", || Ok(7));
        assert_eq!(value.unwrap(), 7);
        let steps: Vec<(&str, f64)> = clock
            .steps
            .iter()
            .map(|s| (s.step.as_str(), s.seconds))
            .collect();
        assert_eq!(steps[..2], [("fetch", 0.75), ("unpack runtime", 1.0)]);
        assert_eq!(clock.steps[0].cpu_seconds, Some(0.375));
        assert_eq!(clock.steps[1].cpu_seconds, None, "not measured");
        assert_eq!(steps[2].0, "install");
        assert!(clock.steps[2].cpu_seconds.is_some(), "measured on Linux");
        assert!(clock
            .time("strip", || -> Result<()> { bail!("no") })
            .is_err());
        assert_eq!(clock.steps.len(), 4, "a failed step is timed too");
    }

    #[test]
    fn a_wheel_that_differs_from_the_lock_names_the_lock_and_both_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let wheel_path = dir.join("six-1.0-py3-none-any.whl");
        fs_err::write(&wheel_path, b"not the locked bytes").unwrap();
        let locked = crate::util::sha256_hex(b"the locked bytes");
        let chosen = ChosenWheel {
            package: "six".into(),
            version: "1.0".into(),
            file: "six-1.0-py3-none-any.whl".into(),
            url: wheel_path.to_string(),
            sha256: locked.parse().unwrap(),
            tags: vec!["py3-none-any".into()],
            why: String::new(),
        };
        let fetcher = Fetcher::with_cache(dir.join("cache"), false, Progress::new());
        let lock = dir.join("pylock.toml");
        let err = fetch_wheels(&fetcher, &[chosen], &lock, &Progress::new())
            .expect_err("the hash differs");
        let msg = format!("{err:#}");
        assert!(msg.contains(lock.as_str()), "{msg}");
        assert!(msg.contains(&locked), "{msg}");
        assert!(
            msg.contains(&crate::util::sha256_hex(b"not the locked bytes")),
            "{msg}"
        );
    }
}
