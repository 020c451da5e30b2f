//! `cargo xtask layer`: the build pipeline. A plan of stages, each in its own module:
//! runtime -> wheels -> layout -> (prune, bytecode, strip) -> package -> report.

pub mod fetch;
pub mod minimize;
pub mod report;
pub mod runtime;
pub mod slim;
pub mod zip;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::fetch::Fetcher;
use crate::core::Owners;
use crate::python::wheel::{self as wheels, Target};
use crate::python::{marker, pylock::PyLock};
use crate::spec::{Arch, Sha256Hex, Spec};
use crate::util::progress::Progress;

/// Everything a build needs, resolved from the flags and the spec.
pub struct BuildRequest {
    pub spec: Spec,
    pub arch: Arch,
    pub out: Utf8PathBuf,
    /// `--python-archive`: a path or URL in place of the spec's download.
    pub python_archive: Option<String>,
    /// `--python-sha256`: the hash the runtime archive must have, in place of the spec's.
    pub python_sha256: Option<Sha256Hex>,
    /// For a cross build: the build machine's CPython archive, to compile bytecode.
    pub host_python_archive: Option<(String, Sha256Hex)>,
    pub profile: Option<String>,
    pub offline: bool,
    /// `--minimize`: trace-driven minimization whatever the profile says.
    pub minimize: bool,
    /// `--trace`: a saved trace to minimize with, instead of running the workload.
    pub trace: Option<Utf8PathBuf>,
}

/// What a finished build produced.
pub struct Built {
    pub report: crate::build::report::Report,
}

impl crate::flags::Layer {
    pub fn run(self) -> Result<ExitCode> {
        let spec = Spec::load(&self.spec.spec)?;
        let arch = self.arch.unwrap_or(spec.layer.default_arch);
        let out = self
            .out
            .unwrap_or_else(|| crate::core::default_out_dir(arch));
        let python_sha256 = match self.python_sha256 {
            Some(h) => Some(
                h.parse()
                    .map_err(|e: String| anyhow::anyhow!("--python-sha256: {e}"))?,
            ),
            None => None,
        };
        let host_python_archive = match (self.host_python_archive, self.host_python_sha256) {
            (Some(a), Some(h)) => Some((
                a,
                h.parse()
                    .map_err(|e: String| anyhow::anyhow!("--host-python-sha256: {e}"))?,
            )),
            _ => None,
        };
        let request = BuildRequest {
            spec,
            arch,
            out,
            python_archive: self.python_archive,
            python_sha256,
            host_python_archive,
            profile: self.profile,
            offline: self.offline,
            minimize: self.minimize || self.trace.is_some(),
            trace: self.trace,
        };
        let built = build(&request)?;
        let report = &built.report;
        if self.json {
            println!("{}", serde_json::to_string(report)?);
        } else {
            print!("{}", report.to_text());
        }
        if report.over_budget.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!(
                "error: the layer does not fit: {}",
                report.over_budget.join("; ")
            );
            Ok(ExitCode::from(3))
        }
    }
}

/// Runs the whole pipeline.
pub fn build(req: &BuildRequest) -> Result<Built> {
    let spec = &req.spec;
    let arch = req.arch;
    let progress = Progress::new();
    let lock_path = spec.lock_path();
    let lock = PyLock::load(&lock_path)?;
    lock.check_fresh(spec, &lock_path)?;
    fs_err::create_dir_all(&req.out)?;
    let fetcher = Fetcher::new(req.offline, progress.clone())?;

    // Choosing wheels needs only the lock and the target: fail before any download.
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
    let chosen = choose_wheels(&lock, &env, &target, &lock_path)?;

    // 1. Runtime.
    let (source, file_name) = spec.runtime_location(arch, req.python_archive.as_deref());
    let sha = match &req.python_sha256 {
        Some(sha) => sha.clone(),
        None => spec.python_sha256(arch)?.clone(),
    };
    progress.line(format!("runtime: {source}"));
    let archive = fetcher
        .fetch(&source, &file_name, &sha, "python")
        .with_context(|| {
            let hint = if req.python_archive.is_none() {
                " (where that host is out of reach, set LAYER_PYTHON_MIRROR or pass --python-archive with --python-sha256)"
            } else {
                ""
            };
            format!("fetching the CPython runtime for {arch}{hint}")
        })?;

    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&req.out)
        .with_context(|| format!("creating a staging folder in {}", req.out))?;
    let stage = crate::util::utf8(staging.path().to_path_buf())?;
    let runtime = crate::build::runtime::extract(&archive, &stage, arch)?;
    if Some(runtime.xy.clone()) != spec.python_minor() {
        bail!(
            "the runtime archive holds Python {} but the spec asks for {}: pass an archive of the same minor version",
            runtime.version,
            spec.python.version
        );
    }
    let site_rel = Utf8PathBuf::from(format!("python/lib/python{}/site-packages", runtime.xy));
    let site_packages = stage.join(&site_rel);
    fs_err::create_dir_all(&site_packages)?;

    // 2. Dependencies.
    let downloaded = download_wheels(&fetcher, &chosen, &progress)?;
    let mut owners = Owners::new(site_rel.clone());
    let mut skipped_notes = Vec::new();
    let bar = progress.bar(downloaded.len() as u64, "installing wheels", false);
    for (wheel, path) in chosen.iter().zip(&downloaded) {
        let installed = wheels::install_wheel(path, &site_packages).with_context(|| {
            format!(
                "installing {} {} from {}",
                wheel.package, wheel.version, wheel.file
            )
        })?;
        owners.add(
            &installed.name,
            &installed.version,
            &installed.wheel,
            &installed.files,
        );
        if !installed.skipped.is_empty() {
            skipped_notes.push(format!(
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
        chosen.len()
    ));

    // 3. Layout. Accelerators a minimized layer leaves out come with the environment defaults
    // that make their packages take the pure-Python path without trying the extension.
    let minimizing =
        crate::build::slim::profile_minimizes(spec, req.profile.as_deref(), req.minimize)?;
    let dropped = if minimizing {
        crate::build::minimize::accelerators(spec)?
    } else {
        Vec::new()
    };
    let mut env = spec.env.clone();
    for (_, acc) in &dropped {
        for (k, v) in &acc.env {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    write_sitecustomize(
        spec,
        &env,
        &stage.join(format!("python/lib/python{}", runtime.xy)),
    )?;

    // 4. Slim: pruning, bytecode, stripping, site-packages.zip, as the profile says.
    let slimmed = crate::build::slim::apply(&crate::build::slim::SlimContext {
        spec,
        arch,
        profile: req.profile.as_deref(),
        stage: &stage,
        runtime: &runtime,
        site_packages: &site_rel,
        owners: &owners,
        host_python: &|| host_python(req, &fetcher, &runtime, &stage),
        progress: &progress,
    })?;

    // 4b. Minimization: keep only what the workload touched.
    let mut removed_distributions = slimmed.removed_distributions.clone();
    let minimized = if minimizing {
        let dropped_files = crate::build::minimize::drop_accelerators(&stage, &site_rel, &dropped)?;
        if !dropped.is_empty() {
            progress.line(format!(
                "minimize: left out the native accelerators of {} ({} files); the workload proves the fallbacks",
                dropped
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                dropped_files.len()
            ));
        }
        let mut m = minimize_stage(req, &stage, &owners, &progress)?;
        m.summary.dropped_accelerators = dropped.iter().map(|(n, _)| n.clone()).collect();
        // A distribution a rule already removed whole has nothing left to trace: listed once.
        for r in &m.plan.removed_distributions {
            if !removed_distributions.iter().any(|d| d.name == r.name) {
                removed_distributions.push(r.clone());
            }
        }
        removed_distributions.sort_by(|a, b| a.name.cmp(&b.name));
        Some(m)
    } else {
        None
    };

    // The layer describes itself: what it holds and what was removed on purpose.
    let manifest = crate::core::Manifest {
        name: spec.layer.name.clone(),
        arch: arch.to_string(),
        profile: slimmed.profile.clone(),
        python_version: runtime.version.clone(),
        distributions: owners
            .dists
            .iter()
            .filter(|(name, _, _)| !removed_distributions.iter().any(|r| &r.name == name))
            .map(|(name, version, _)| (name.clone(), version.clone()))
            .collect(),
        removed_distributions: removed_distributions.clone(),
        removed_modules: minimized
            .as_ref()
            .map(|m| m.plan.removed_modules.clone())
            .unwrap_or_default(),
    };
    let manifest_path = stage.join(crate::core::MANIFEST);
    fs_err::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;

    // 5. Package.
    let zip_path = req.out.join(format!("{}-{}.zip", spec.layer.name, arch));
    progress.line(format!("packaging {zip_path}"));
    let stats = crate::build::zip::write_zip(&stage, &zip_path, 9)?;

    // 6. Report.
    let report_stats = slimmed.stats_for_report(&stats);
    let mut report = crate::build::report::build(
        spec,
        arch,
        &runtime.version,
        &zip_path,
        &stats,
        &report_stats.entries,
        &owners,
    );
    report.notes.extend(skipped_notes);
    slimmed.fill(&mut report);
    report.removed_distributions = removed_distributions;
    if let Some(m) = &minimized {
        report.minimized = Some(m.summary.clone());
    }

    // Keep the unpacked tree for `verify` and `analyze`.
    let tree = req.out.join("tree");
    if tree.exists() {
        fs_err::remove_dir_all(&tree)?;
    }
    let stage_path = staging.keep();
    fs_err::rename(&stage_path, &tree)?;

    // A minimized layer must still pass verify and its workload; otherwise the build fails and
    // names the removal that broke it. The report is written only for a layer that passed.
    if let Some(m) = &minimized {
        prove_minimized(req, &zip_path, &tree, &site_rel, &m.plan, &progress)?;
    }
    report.write(&req.out)?;
    Ok(Built { report })
}

/// What minimization did to the staged layer.
struct Minimized {
    plan: crate::build::minimize::Plan,
    summary: crate::build::minimize::Summary,
}

/// Traces the staged layer (or reads `--trace`), saves the trace beside the zip, removes what
/// it never touched.
fn minimize_stage(
    req: &BuildRequest,
    stage: &Utf8Path,
    owners: &Owners,
    progress: &Progress,
) -> Result<Minimized> {
    let spec = &req.spec;
    let trace_path = req.out.join(format!("trace-{}.json", req.arch));
    let trace = match &req.trace {
        Some(path) => {
            progress.line(format!("minimize: using the saved trace {path}"));
            let trace = crate::build::minimize::Trace::load(path)?;
            if trace.arch != req.arch.as_str() {
                bail!(
                    "{path} traced a {} layer; this build is for {}: trace it again (leave out --trace)",
                    trace.arch,
                    req.arch
                );
            }
            trace
        }
        None => {
            progress.line(format!(
                "minimize: tracing {} with providers {} in the sandbox",
                spec.minimize
                    .workloads
                    .iter()
                    .map(|w| w.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.minimize.providers.join(", ")
            ));
            crate::build::minimize::trace(spec, req.arch, stage)?
        }
    };
    let tmp = trace_path.with_extension("json.tmp");
    fs_err::write(&tmp, serde_json::to_string_pretty(&trace)? + "\n")?;
    fs_err::rename(&tmp, &trace_path)?;

    // Candidates: everything under python/lib (standard library, lib-dynload, the runtime's
    // shared libraries, site-packages); the interpreter, headers and docs are the rules' job.
    let lib = Utf8PathBuf::from("python/lib");
    // A link to a folder is a folder to the import system: never the trace's to judge.
    let files: Vec<(Utf8PathBuf, u64)> = crate::util::walk(&stage.join(&lib))?
        .into_iter()
        .filter(|w| !w.file_type.is_dir())
        .filter(|w| !(w.file_type.is_symlink() && stage.join(&lib).join(&w.rel).is_dir()))
        .map(|w| (lib.join(&w.rel), w.len))
        .collect();
    // [minimize] keep is relative to python/, like [prune] keep; the plan matches layer paths.
    let keep = crate::build::slim::prune::glob_set(
        spec.minimize
            .keep
            .iter()
            .map(|g| format!("python/{}", g.trim_start_matches('/'))),
    )
    .with_context(|| format!("{}: [minimize] keep", spec.path))?;
    // What the interpreter and every ELF file the trace or a keep rule keeps link against.
    let mut roots: Vec<Utf8PathBuf> = crate::util::walk(&stage.join("python/bin"))?
        .into_iter()
        .filter(|w| w.file_type.is_file())
        .map(|w| Utf8PathBuf::from("python/bin").join(&w.rel))
        .collect();
    roots.extend(
        files
            .iter()
            .filter(|(p, _)| trace.files.contains(p) || keep.is_match(p.as_str()))
            .map(|(p, _)| p.clone()),
    );
    let mut needed = crate::util::elf::needed_closure(
        stage,
        Utf8Path::new("python/lib"),
        &roots,
        crate::util::elf::Depth::Transitive,
    )?;
    // A kept link keeps what it points to: the trace sees the name a file was opened by
    // (Debian's `_sysconfigdata__linux_<triple>.pyc` is a link to `_sysconfigdata__<triple>.pyc`).
    for (p, _) in &files {
        if !(trace.files.contains(p) || keep.is_match(p.as_str())) {
            continue;
        }
        let mut link = p.clone();
        for _ in 0..8 {
            let Ok(target) = fs_err::read_link(stage.join(&link)) else {
                break;
            };
            let target = crate::util::utf8(target)?;
            let resolved =
                crate::build::minimize::normalize(&link.parent().unwrap_or(&lib).join(&target));
            needed.insert(resolved.clone());
            link = resolved;
        }
    }
    let providers_path = spec.dir().join("litellm-providers.toml");
    let folders = if providers_path.is_file() {
        crate::spec::ProvidersFile::load(&providers_path)?.code_folders
    } else {
        Default::default()
    };
    let plan = crate::build::minimize::plan(&files, owners, &trace, &keep, &needed, &folders);
    crate::build::minimize::execute(stage, &lib, &plan)?;
    let sum = |f: fn(&crate::build::minimize::DistCount) -> u64| plan.per_dist.iter().map(f).sum();
    let summary = crate::build::minimize::Summary {
        trace: trace_path,
        providers: trace.providers.clone(),
        kept_files: sum(|d| d.kept_files),
        kept_bytes: sum(|d| d.kept_bytes),
        removed_files: sum(|d| d.removed_files),
        removed_bytes: sum(|d| d.removed_bytes),
        distributions: plan.per_dist.clone(),
        removed_modules: plan.removed_modules.len(),
        dropped_accelerators: Vec::new(),
    };
    progress.line(format!(
        "minimize: kept {} files of python/lib, removed {} ({:.1} MB), {} distribution(s) whole",
        summary.kept_files,
        summary.removed_files,
        summary.removed_bytes as f64 / 1e6,
        plan.removed_distributions.len()
    ));
    Ok(Minimized { plan, summary })
}

/// Runs `verify` on the minimized zip and the workload on its tree; on failure, names the
/// removed files that explain it.
fn prove_minimized(
    req: &BuildRequest,
    zip_path: &Utf8Path,
    tree: &Utf8Path,
    site_rel: &Utf8Path,
    plan: &crate::build::minimize::Plan,
    progress: &Progress,
) -> Result<()> {
    let spec = &req.spec;
    progress.line("minimize: verifying the minimized layer");
    let options = crate::verify::VerifyOptions::of_layer(zip_path, req.arch, 1);
    let report = crate::verify::verify(spec, &options)?;
    // Removing files cannot make an ELF file need a newer glibc or another machine: those
    // findings are the runtime's (the arm64 fixture's libexpat needs glibc 2.36), shown, not
    // blamed on minimization. `verify` on the zip reports them as it does for any profile.
    let (inherited, failed): (Vec<_>, Vec<_>) = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .partition(|c| c.name.starts_with("static: glibc") || c.name == "static: elf machine");
    for c in inherited {
        progress.line(format!(
            "minimize: not caused by minimization, left to verify: {}: {}",
            c.name, c.detail
        ));
    }
    let mut failures: Vec<(String, String)> = failed
        .iter()
        .map(|c| (c.name.clone(), c.detail.clone()))
        .collect();
    progress.line("minimize: running the workload again on the minimized layer");
    let again = crate::verify::run_workloads(
        spec,
        req.arch,
        tree,
        crate::build::minimize::workloads(spec)?,
        spec.minimize.providers.clone(),
    )?;
    failures.extend(
        again
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name.clone(), c.detail.clone())),
    );
    if failures.is_empty() {
        return Ok(());
    }
    bail!(
        "the minimized layer {zip_path} does not work:\n  {}",
        crate::build::minimize::explain(&failures, plan, site_rel)
    )
}

/// An interpreter that runs on this machine and has the target's minor version, to compile
/// bytecode: the target runtime itself when the architectures match, else the host-architecture
/// archive of the same release (from `--host-python-archive` or the spec), unpacked in the cache.
fn host_python(
    req: &BuildRequest,
    fetcher: &Fetcher,
    runtime: &crate::build::runtime::RuntimeInfo,
    stage: &Utf8Path,
) -> Result<Utf8PathBuf> {
    let host = Arch::host()
        .context("this machine is neither x86_64 nor aarch64: cannot compile bytecode")?;
    if host == req.arch {
        return Ok(stage.join("python").join(&runtime.exe));
    }
    let explicit = req.host_python_archive.as_ref();
    let (source, file_name) = req
        .spec
        .runtime_location(host, explicit.map(|(s, _)| s.as_str()));
    let sha = match explicit {
        Some((_, sha)) => sha.clone(),
        None => req.spec.python_sha256(host)?.clone(),
    };
    let archive = fetcher
        .fetch(&source, &file_name, &sha, "python")
        .with_context(|| {
            format!(
                "fetching the {host} CPython that compiles bytecode for the {} layer",
                req.arch
            )
        })?;
    // Unpacked once per archive hash; a finished folder is renamed into place, so a
    // concurrent build sees either nothing or a complete interpreter.
    let dir = crate::core::cache_dir()
        .join("host-python")
        .join(sha.as_str());
    if !dir.join("python").exists() {
        fs_err::create_dir_all(dir.parent().unwrap_or(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(dir.parent().unwrap_or(&dir))?;
        let tmp_path = crate::util::utf8(tmp.path().to_path_buf())?;
        crate::build::runtime::extract(&archive, &tmp_path, host)?;
        if let Err(e) = fs_err::rename(&tmp_path, &dir) {
            if !dir.join("python").exists() {
                return Err(e.into());
            }
        }
        let _ = tmp.keep();
    }
    let info = crate::build::runtime::RuntimeInfo {
        root: dir.join("python"),
        ..runtime.clone()
    };
    let exe = info.root.join(&runtime.exe);
    if !exe.exists() {
        bail!("{exe} is missing from the host runtime in the cache; delete {dir} and build again");
    }
    Ok(exe)
}

/// One wheel chosen for the target.
pub struct Chosen {
    pub package: String,
    pub version: String,
    pub file: String,
    pub url: String,
    pub sha256: Sha256Hex,
}

/// Picks a wheel for every locked package; names every package that has none.
fn choose_wheels(
    lock: &PyLock,
    env: &marker::Env,
    target: &Target,
    lock_path: &Utf8Path,
) -> Result<Vec<Chosen>> {
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for pkg in lock.packages_for(env)? {
        let files: Vec<String> = pkg.wheels.iter().filter_map(|w| w.file_name()).collect();
        let Some(file) = wheels::select_wheel(&files, target) else {
            let tags: Vec<String> = files
                .iter()
                .filter_map(|f| wheels::WheelName::parse(f))
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
        chosen.push(Chosen {
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

/// Downloads the chosen wheels in parallel into the cache; returns their paths in order.
fn download_wheels(
    fetcher: &Fetcher,
    chosen: &[Chosen],
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
    env: &std::collections::BTreeMap<String, String>,
    stdlib: &Utf8Path,
) -> Result<()> {
    let template_path = spec.dir().join("sitecustomize.py");
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
