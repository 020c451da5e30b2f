//! The minimize step of a build: trace the staged layer (or read `--trace`), remove what the
//! trace never touched, and prove the result once it is packaged.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::cache::{Stage, StageCache};
use crate::build::plan::BuildPlan;
use crate::core::Owners;
use crate::util::progress::Progress;

/// What minimization did to the staged layer.
pub struct Minimized {
    pub plan: super::Plan,
    pub summary: super::Summary,
}

/// Traces the staged layer (or reads `--trace`), saves the trace beside the zip, removes what
/// it never touched.
pub fn minimize_stage(
    plan: &BuildPlan,
    stage: &Utf8Path,
    owners: &Owners,
    cache: Option<&StageCache>,
    progress: &Progress,
) -> Result<Minimized> {
    let spec = &plan.spec;
    let trace_path = plan.paths.trace.clone();
    let trace = obtain_trace(plan, stage, cache, progress)?;
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
    let needed = needed_files(stage, &lib, &files, &trace, &keep)?;
    let providers_path = spec.data_path("litellm-providers.toml");
    let folders = if providers_path.is_file() {
        crate::spec::ProvidersFile::load(&providers_path)?.code_folders
    } else {
        Default::default()
    };
    let plan = super::plan(&files, owners, &trace, &keep, &needed, &folders);
    super::execute(stage, &lib, &plan)?;
    let sum = |f: fn(&super::DistCount) -> u64| plan.per_dist.iter().map(f).sum();
    let summary = super::Summary {
        trace: trace_path,
        providers: trace.providers.clone(),
        kept_files: sum(|d| d.kept_files),
        kept_bytes: sum(|d| d.kept_bytes),
        removed_files: sum(|d| d.removed_files),
        removed_bytes: sum(|d| d.removed_bytes),
        distributions: plan.per_dist.clone(),
        removed_modules: plan.removed_modules.len(),
        dropped_accelerators: Vec::new(),
        proof: None,
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

/// The trace to minimize with: `--trace`, checked to be of this architecture, else the stage
/// cache's trace of this very tree (same content, workloads, providers, xtask), else a fresh
/// run of the spec's workloads on the staged layer (then kept in the stage cache).
fn obtain_trace(
    plan: &BuildPlan,
    stage: &Utf8Path,
    cache: Option<&StageCache>,
    progress: &Progress,
) -> Result<super::Trace> {
    let arch = plan.arch;
    let trace = match &plan.minimize.trace_given {
        Some(path) => {
            progress.line(format!("minimize: using the saved trace {path}"));
            let trace = super::Trace::load(path)?;
            if trace.arch != arch.as_str() {
                bail!(
                    "{path} traced a {} layer; this build is for {}: trace it again (leave out --trace)",
                    trace.arch,
                    arch
                );
            }
            trace
        }
        None => match cache {
            Some(cache) => {
                let key = trace_key(plan, stage)?;
                let cached = cache
                    .get_file(Stage::Trace, &key)
                    .and_then(|bytes| serde_json::from_slice::<super::Trace>(&bytes).ok());
                match cached {
                    Some(trace) => {
                        progress.line(
                            "minimize: reusing the trace of this same tree, workloads and providers (stage cache)",
                        );
                        trace
                    }
                    None => {
                        let trace = run_trace(plan, stage, progress)?;
                        cache.put_file(Stage::Trace, &key, &serde_json::to_vec(&trace)?)?;
                        trace
                    }
                }
            }
            None => run_trace(plan, stage, progress)?,
        },
    };
    Ok(trace)
}

/// The stage cache key of a trace: the staged tree's content, the workloads' sources, the
/// providers, the architecture and this xtask (whose hook does the tracing).
fn trace_key(plan: &BuildPlan, stage: &Utf8Path) -> Result<String> {
    let spec = &plan.spec;
    let tree = crate::build::cache::tree_hash(stage)?;
    let mut parts: Vec<Vec<u8>> = vec![
        tree.into_bytes(),
        plan.arch.as_str().as_bytes().to_vec(),
        spec.minimize.providers.join("\n").into_bytes(),
        crate::build::cache::exe_identity()?.into_bytes(),
    ];
    for w in super::workloads(spec)? {
        parts.push(w.name.into_bytes());
        parts.push(w.source.into_bytes());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(crate::build::cache::key(Stage::Trace, &refs))
}

/// Runs the spec's workloads on the staged layer under the tracing hook.
fn run_trace(plan: &BuildPlan, stage: &Utf8Path, progress: &Progress) -> Result<super::Trace> {
    let spec = &plan.spec;
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
    super::trace(spec, plan.arch, stage)
}

/// Layer paths the trace does not name but a kept file needs: what the interpreter and every
/// kept ELF file link against, and what a kept link points to.
fn needed_files(
    stage: &Utf8Path,
    lib: &Utf8Path,
    files: &[(Utf8PathBuf, u64)],
    trace: &super::Trace,
    keep: &globset::GlobSet,
) -> Result<BTreeSet<Utf8PathBuf>> {
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
    for (p, _) in files {
        if !(trace.files.contains(p) || keep.is_match(p.as_str())) {
            continue;
        }
        let mut link = p.clone();
        for _ in 0..8 {
            let Ok(target) = fs_err::read_link(stage.join(&link)) else {
                break;
            };
            let target = crate::util::utf8(target)?;
            let resolved = super::normalize(&link.parent().unwrap_or(lib).join(&target));
            needed.insert(resolved.clone());
            link = resolved;
        }
    }
    Ok(needed)
}

/// What a passing proof found: how many checks passed, and the findings that are the runtime's,
/// not minimization's (shown, not blamed).
pub struct Proven {
    pub checks_passed: usize,
    pub inherited: Vec<String>,
}

/// Runs `verify` on the minimized zip, the workload in the same sandbox run; on failure,
/// names the removed files that explain it.
pub fn prove_minimized(
    build: &BuildPlan,
    zip_path: &Utf8Path,
    site_rel: &Utf8Path,
    plan: &super::Plan,
    progress: &Progress,
) -> Result<Proven> {
    let spec = &build.spec;
    progress.line("minimize: verifying the minimized layer and running the workload on it");
    let report = crate::verify::verify(spec, &super::proof::verify_options(build, zip_path)?)?;
    // The workload's proof counts only the way Lambda runs it (as a separate run did before).
    if let crate::verify::Execution::Plain { why, .. } | crate::verify::Execution::NotRun { why } =
        &report.execution
    {
        bail!("the minimized layer {zip_path} could not be proven in the verify sandbox: {why}");
    }
    // Removing files cannot make an ELF file need a newer glibc or another machine: those
    // findings are the runtime's (the arm64 fixture's libexpat needs glibc 2.36), shown, not
    // blamed on minimization. `verify` on the zip reports them as it does for any profile.
    let (inherited, failed): (Vec<_>, Vec<_>) = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .partition(|c| c.name.starts_with("static: glibc") || c.name == "static: elf machine");
    let inherited: Vec<String> = inherited
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    for line in &inherited {
        progress.line(format!(
            "minimize: not caused by minimization, left to verify: {line}"
        ));
    }
    let failures: Vec<(String, String)> = failed
        .iter()
        .map(|c| (c.name.clone(), c.detail.clone()))
        .collect();
    if failures.is_empty() {
        return Ok(Proven {
            checks_passed: report.checks.iter().filter(|c| c.ok).count(),
            inherited,
        });
    }
    bail!(
        "the minimized layer {zip_path} does not work:\n  {}",
        super::explain(&failures, plan, site_rel)
    )
}
