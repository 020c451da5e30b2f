//! `cargo xtask verify`: proves that a layer zip works the way Lambda will run it.
//!
//! The zip is unpacked; static checks read its ELF files, zips and sizes; then the layer's
//! own interpreter runs in a sandbox shaped like Lambda (see `sandbox.rs` for how, and why
//! the xtask runs itself inside it), under an audit hook, against a loopback
//! OpenAI-compatible server. An arm64 layer runs under `qemu-aarch64-static` with an arm64
//! sysroot. A layer that could not be executed is never reported as verified.

pub mod inside;
mod modules;
mod sandbox;
mod static_checks;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::spec::{Arch, Spec};

pub use inside::{Plan, Workload};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was found, or what broke: the module, the missing library, the symbol version.
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// Medians over fresh processes, in seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub runs: usize,
    pub interpreter_start_s: Option<f64>,
    pub import_litellm_s: Option<f64>,
    pub first_completion_s: Option<f64>,
}

/// How the runtime checks ran, if they did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    /// In bubblewrap, natively or under qemu.
    Sandboxed { emulator: Option<String> },
    /// Unsandboxed on a plain folder, because bubblewrap could not be used.
    Plain {
        emulator: Option<String>,
        why: String,
    },
    /// Not at all.
    NotRun { why: String },
}

/// `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub layer: Utf8PathBuf,
    pub arch: Arch,
    pub execution: Execution,
    pub warnings: Vec<String>,
    pub checks: Vec<Check>,
    pub timings: Timings,
}

/// Exit codes: a failed check, and runtime checks that could not run.
const EXIT_FAILED: u8 = 1;
const EXIT_NOT_EXECUTED: u8 = 2;

/// What `verify` checks and how: everything but the spec, which is passed beside it.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The target architecture (default: the spec's, or with `layer` its interpreter's).
    pub arch: Option<Arch>,
    /// The layer zip (default: the last one `cargo xtask layer` built for the architecture).
    pub layer: Option<Utf8PathBuf>,
    /// Only the checks that read files.
    pub static_only: bool,
    /// An arm64 sysroot for qemu (default: Debian's packages, fetched into the cache).
    pub sysroot: Option<Utf8PathBuf>,
    /// Fresh processes per timing (default 5, or 3 under emulation).
    pub timing_runs: Option<usize>,
    /// Interpreters run at once for the import checks (default: the number of cores).
    pub jobs: Option<usize>,
    /// Never use bubblewrap.
    pub no_sandbox: bool,
}

impl VerifyOptions {
    /// Every check on one layer zip, timings from `timing_runs` processes.
    pub fn of_layer(layer: &Utf8Path, arch: Arch, timing_runs: usize) -> VerifyOptions {
        VerifyOptions {
            arch: Some(arch),
            layer: Some(layer.to_owned()),
            timing_runs: Some(timing_runs),
            ..VerifyOptions::default()
        }
    }
}

/// `cargo xtask verify`: prints the report (text, or JSON with `json`); the exit code says
/// whether every check passed.
pub fn run(spec: &Utf8Path, options: &VerifyOptions, json: bool) -> Result<ExitCode> {
    let spec = Spec::load(spec)?;
    let report = verify(&spec, options)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(exit_code(&report))
}

fn exit_code(report: &VerifyReport) -> ExitCode {
    if report.ok {
        ExitCode::SUCCESS
    } else if report
        .checks
        .iter()
        .all(|c| c.ok || c.name == "runtime: executed")
    {
        ExitCode::from(EXIT_NOT_EXECUTED)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The zip `cargo xtask layer` writes for `arch`.
pub fn default_layer(spec: &Spec, arch: Arch) -> Utf8PathBuf {
    crate::core::LayerPaths::default_for(&spec.layer.name, arch).zip
}

/// Runs every check on the layer the options name.
pub fn verify(spec: &Spec, flags: &VerifyOptions) -> Result<VerifyReport> {
    let zip_path = match (&flags.layer, flags.arch) {
        (Some(p), _) => p.clone(),
        (None, arch) => default_layer(spec, arch.unwrap_or(spec.layer.default_arch)),
    };
    if !zip_path.is_file() {
        bail!(
            "no layer at {zip_path}: build one with `cargo xtask layer --arch {}` or pass --layer",
            flags.arch.unwrap_or(spec.layer.default_arch)
        );
    }
    let work_root = crate::core::target_dir().join("verify");
    fs_err::create_dir_all(&work_root)?;
    // Not under /tmp: a write into the layer must never look like a write into /tmp.
    let work = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(&work_root)
        .with_context(|| format!("creating a folder in {work_root}"))?;
    let root = crate::util::utf8(work.path().join("opt"))?;
    unzip(&zip_path, &root).with_context(|| format!("unpacking {zip_path}"))?;

    let xy = spec.python_xy();
    let interpreter = Utf8PathBuf::from(format!("python/bin/python{xy}"));
    let mut checks = Vec::new();
    let mut warnings = Vec::new();

    // Which architecture: the flag, else the interpreter's own ELF header, else the spec.
    let arch = match flags.arch {
        Some(a) => a,
        None if flags.layer.is_some() => {
            arch_of(&root.join(&interpreter)).unwrap_or(spec.layer.default_arch)
        }
        None => spec.layer.default_arch,
    };

    // Static checks.
    let base = static_checks::BaseLibs::load(&spec.dir().join("lambda-base-libs.toml"))?
        .for_runtime(spec.target.runtime);
    let (elf_files, broken) = static_checks::scan_elf(&root)?;
    let paths = static_checks::layer_paths(&root)?;
    checks.push(if paths.contains(&interpreter) {
        Check::new(
            "static: interpreter present",
            true,
            format!("/opt/{interpreter}"),
        )
    } else {
        Check::new(
            "static: interpreter present",
            false,
            format!("the layer has no {interpreter}"),
        )
    });
    checks.extend(static_checks::elf_checks(
        &elf_files,
        &broken,
        arch,
        spec.glibc(),
        &base,
        &paths,
        &interpreter,
    ));
    checks.push(static_checks::so_in_zips(&root)?);
    checks.extend(static_checks::size_checks(spec, &zip_path)?);

    // What the runtime checks will import and ask about.
    let site = root.join(format!("python/lib/python{xy}/site-packages"));
    let mut modules = site_modules(&site)?;
    for entry in crate::util::walk(&root)? {
        if entry.file_type.is_file() && entry.rel.file_name() == Some("site-packages.zip") {
            let path = root.join(&entry.rel);
            let zip = zip::ZipArchive::new(fs_err::File::open(&path)?)
                .with_context(|| format!("{path} is not a valid zip"))?;
            let names = zip
                .file_names()
                .map(|n| n.map(|n| n.into_owned()))
                .collect::<Result<Vec<String>, _>>()
                .with_context(|| format!("reading the entries of {path}"))?;
            modules.extend(modules::top_level_in_zip(names.iter().map(String::as_str)));
        }
    }
    // A layer this tool built says which distributions it holds (a profile may remove some
    // on purpose); for any other layer, every distribution the lock installs must answer.
    let manifest_path = root.join(crate::core::MANIFEST);
    let dists = if manifest_path.is_file() {
        let manifest: crate::core::Manifest =
            serde_json::from_str(&fs_err::read_to_string(&manifest_path)?)
                .with_context(|| format!("{manifest_path} is not a layer manifest"))?;
        for removed in &manifest.removed_distributions {
            warnings.push(format!(
                "{} {} was removed on purpose by rule `{}`: its metadata is not checked",
                removed.name, removed.version, removed.rule
            ));
        }
        manifest
            .distributions
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    } else {
        locked_dists(spec, arch)?
    };
    let unknown_skips: Vec<&String> = spec
        .verify
        .skip_imports
        .keys()
        .filter(|m| !modules.contains(*m))
        .collect();
    if !unknown_skips.is_empty() {
        warnings.push(format!(
            "[verify] skip-imports names modules this layer does not have: {}",
            unknown_skips
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // How to execute it.
    let (launcher_host, sysroot, emulator) =
        match emulation(arch, flags.sysroot.as_ref(), &mut warnings) {
            Ok(e) => e,
            Err(why) => {
                return finish(
                    flags,
                    zip_path,
                    arch,
                    Execution::NotRun { why },
                    warnings,
                    checks,
                    Timings::default(),
                )
            }
        };
    if flags.static_only {
        return finish(
            flags,
            zip_path,
            arch,
            Execution::NotRun {
                why: "--static-only".to_owned(),
            },
            warnings,
            checks,
            Timings::default(),
        );
    }

    let emulated = emulator.is_some();
    let skipped: BTreeMap<String, String> = spec
        .verify
        .skip_imports
        .iter()
        .filter(|(m, _)| modules.contains(*m))
        .map(|(m, r)| (m.clone(), r.clone()))
        .collect();
    let jobs = flags
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut plan = Plan {
        python: String::new(),
        launcher: Vec::new(),
        env: Vec::new(),
        machine: arch.machine().to_owned(),
        modules: modules.into_iter().collect(),
        skipped,
        dists,
        timing_runs: flags.timing_runs.unwrap_or(if emulated { 3 } else { 5 }),
        jobs,
        timeout_secs: if emulated { 600 } else { 120 },
        workloads: Vec::new(),
        providers: Vec::new(),
    };

    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let sandbox_spec = sandbox::SandboxSpec {
        layer: &root,
        exe: &exe,
        sysroot: sysroot.as_deref(),
        qemu: launcher_host.as_deref(),
    };
    let bwrap = if flags.no_sandbox {
        Err("--no-sandbox was given".to_owned())
    } else {
        sandbox::probe_bwrap(&sandbox_spec)
    };
    let (outcome, execution) = match bwrap {
        Ok(()) => {
            plan.python = format!("/opt/{interpreter}");
            plan.env = sandbox::lambda_env("/opt", &xy);
            if emulated {
                plan.launcher = vec![
                    sandbox::INSIDE_QEMU.to_owned(),
                    "-L".to_owned(),
                    sandbox::INSIDE_SYSROOT.to_owned(),
                ];
            }
            let outcome = run_sandboxed(&sandbox_spec, &plan)?;
            (
                outcome,
                Execution::Sandboxed {
                    emulator: emulator.clone(),
                },
            )
        }
        Err(why) => {
            warnings.push(format!(
                "NOT SANDBOXED: {why}. The layer ran from a plain folder ({root}) with this \
                 machine's network, files and Python visible; only the audit hook watched for \
                 egress and writes"
            ));
            plan.python = root.join(&interpreter).into_string();
            plan.env = sandbox::lambda_env(root.as_str(), &xy);
            if let (Some(q), Some(s)) = (&launcher_host, &sysroot) {
                plan.launcher = vec![q.to_string(), "-L".to_owned(), s.to_string()];
            }
            let outcome = inside::run(&plan)?;
            (
                outcome,
                Execution::Plain {
                    emulator: emulator.clone(),
                    why,
                },
            )
        }
    };
    let mut all = vec![Check::new(
        "runtime: executed",
        true,
        match &execution {
            Execution::Sandboxed { emulator: None } => {
                "in bubblewrap: /opt read-only, only /tmp writable, loopback-only network"
                    .to_owned()
            }
            Execution::Sandboxed { emulator: Some(e) } => format!(
                "in bubblewrap under {e}: /opt read-only, only /tmp writable, loopback-only network"
            ),
            Execution::Plain { .. } => "WITHOUT a sandbox, from a plain folder".to_owned(),
            Execution::NotRun { why } => why.clone(),
        },
    )];
    all.extend(outcome.checks);
    checks.extend(all);
    finish(
        flags,
        zip_path,
        arch,
        execution,
        warnings,
        checks,
        outcome.timings,
    )
}

/// How a layer of `arch` runs here: the emulator on this machine, the sysroot and the
/// emulator's name; all `None` natively. The error says why it cannot run at all.
type Emulation = (Option<Utf8PathBuf>, Option<Utf8PathBuf>, Option<String>);

fn emulation(
    arch: Arch,
    sysroot_flag: Option<&Utf8PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<Emulation, String> {
    if Some(arch) == Arch::host() {
        return Ok((None, None, None));
    }
    if arch != Arch::Arm64 {
        return Err(format!("nothing here can execute a {arch} layer"));
    }
    let qemu = crate::util::which("qemu-aarch64-static");
    // The flag, else the fixture runtime's Debian arm64 sysroot (cached download).
    let sysroot = match sysroot_flag {
        Some(s) => Some(s.clone()).filter(|s| s.is_dir()),
        None => crate::util::debian::arm64_sysroot()
            .map_err(|e| warnings.push(format!("no arm64 sysroot: {e:#}")))
            .ok(),
    };
    match (qemu, sysroot) {
        (Some(q), Some(s)) => Ok((Some(q), Some(s), Some("qemu-aarch64-static".to_owned()))),
        (q, s) => {
            let mut why = Vec::new();
            if q.is_none() {
                why.push("qemu-aarch64-static is not installed (Debian: qemu-user-static)");
            }
            if s.is_none() {
                why.push("no arm64 sysroot (pass --sysroot or set LAYER_ARM64_SYSROOT)");
            }
            Err(format!(
                "nothing here can execute an arm64 layer: {}",
                why.join("; ")
            ))
        }
    }
}

/// Runs `workloads` in the layer unpacked at `root` the way `verify` runs its checks (in the
/// sandbox, next to the loopback server, under qemu for arm64), each under the tracing hook
/// of `py/trace.py`. Used by `cargo xtask layer --minimize`.
pub fn run_workloads(
    spec: &Spec,
    arch: Arch,
    root: &Utf8Path,
    workloads: Vec<inside::Workload>,
    providers: Vec<String>,
) -> Result<inside::Outcome> {
    let mut warnings = Vec::new();
    let (launcher_host, sysroot, emulator) =
        emulation(arch, None, &mut warnings).map_err(|why| anyhow::anyhow!("{why}"))?;
    let xy = spec.python_xy();
    let interpreter = format!("python/bin/python{xy}");
    let mut plan = Plan {
        python: String::new(),
        launcher: Vec::new(),
        env: Vec::new(),
        machine: arch.machine().to_owned(),
        modules: Vec::new(),
        skipped: BTreeMap::new(),
        dists: Vec::new(),
        timing_runs: 0,
        jobs: 1,
        timeout_secs: if emulator.is_some() { 1200 } else { 300 },
        workloads,
        providers,
    };
    let exe = crate::util::utf8(std::env::current_exe().context("finding this xtask binary")?)?;
    let sandbox_spec = sandbox::SandboxSpec {
        layer: root,
        exe: &exe,
        sysroot: sysroot.as_deref(),
        qemu: launcher_host.as_deref(),
    };
    match sandbox::probe_bwrap(&sandbox_spec) {
        Ok(()) => {
            plan.python = format!("/opt/{interpreter}");
            plan.env = sandbox::lambda_env("/opt", &xy);
            if emulator.is_some() {
                plan.launcher = vec![
                    sandbox::INSIDE_QEMU.to_owned(),
                    "-L".to_owned(),
                    sandbox::INSIDE_SYSROOT.to_owned(),
                ];
            }
            run_sandboxed(&sandbox_spec, &plan)
        }
        // The trace's paths must be those of /opt: without the sandbox there is no /opt.
        Err(why) => bail!("the minimization workload runs only in the verify sandbox: {why}"),
    }
}

fn finish(
    flags: &VerifyOptions,
    layer: Utf8PathBuf,
    arch: Arch,
    execution: Execution,
    mut warnings: Vec<String>,
    mut checks: Vec<Check>,
    timings: Timings,
) -> Result<VerifyReport> {
    if let Execution::NotRun { why } = &execution {
        let detail = format!("the runtime, package and LiteLLM checks were NOT run: {why}");
        if flags.static_only {
            warnings.push(detail);
        } else {
            checks.insert(0, Check::new("runtime: executed", false, detail));
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    Ok(VerifyReport {
        ok,
        layer,
        arch,
        execution,
        warnings,
        checks,
        timings,
    })
}

/// Runs the supervisor (this binary) inside bubblewrap and reads its outcome.
fn run_sandboxed(s: &sandbox::SandboxSpec<'_>, plan: &Plan) -> Result<inside::Outcome> {
    let mut child = Command::new("bwrap")
        .args(sandbox::bwrap_args(s))
        .arg(sandbox::INSIDE_EXE)
        .arg("verify-inside")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bwrap")?;
    let input = serde_json::to_vec(plan)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .context("sending the plan to the sandboxed supervisor")?;
    }
    let out = child
        .wait_with_output()
        .context("waiting for the sandboxed supervisor")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the sandboxed supervisor failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| {
        format!(
            "the sandboxed supervisor printed no outcome; stderr: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The architecture of an ELF file, if it is one Lambda has.
fn arch_of(path: &Utf8Path) -> Option<Arch> {
    let bytes = fs_err::read(path).ok()?;
    let machine = crate::util::elf::inspect(&bytes).ok()?.machine;
    Arch::ALL.into_iter().find(|a| a.elf_machine() == machine)
}

/// Top-level modules of a site-packages folder on disk.
fn site_modules(site: &Utf8Path) -> Result<std::collections::BTreeSet<String>> {
    if !site.is_dir() {
        return Ok(Default::default());
    }
    let mut entries = Vec::new();
    for entry in fs_err::read_dir(site)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let children = if entry.file_type()?.is_dir() {
            let mut c = Vec::new();
            for child in fs_err::read_dir(entry.path())? {
                if let Ok(n) = child?.file_name().into_string() {
                    c.push(n);
                }
            }
            Some(c)
        } else {
            None
        };
        entries.push(modules::SiteEntry { name, children });
    }
    Ok(modules::top_level(&entries))
}

/// Names of the distributions the lock installs for `arch`.
fn locked_dists(spec: &Spec, arch: Arch) -> Result<Vec<String>> {
    let lock_path = spec.lock_path();
    let lock = crate::python::pylock::PyLock::load(&lock_path)?;
    let env = crate::python::marker::Env {
        machine: arch.machine().to_owned(),
        python_version: spec.python_xy(),
        python_full_version: spec.python.version.clone(),
    };
    Ok(lock
        .packages_for(&env)
        .with_context(|| format!("evaluating the markers of {lock_path}"))?
        .into_iter()
        .map(|p| p.name.clone())
        .collect())
}

/// Unpacks a layer zip as Lambda does: modes kept, links as links, nothing outside `dest`.
fn unzip(zip_path: &Utf8Path, dest: &Utf8Path) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut zip = zip::ZipArchive::new(fs_err::File::open(zip_path)?)
        .with_context(|| format!("{zip_path} is not a valid zip"))?;
    fs_err::create_dir_all(dest)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry
            .name()
            .with_context(|| format!("{zip_path}: entry {i} has no readable name"))?
            .into_owned();
        let rel = entry
            .enclosed_name()
            .with_context(|| format!("{zip_path}: entry {name} points outside the layer"))?;
        let rel = crate::util::utf8(rel)?;
        let path = dest.join(&rel);
        if entry.is_dir() {
            fs_err::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .with_context(|| format!("reading the link {name}"))?;
            let resolved = Utf8Path::new(rel.parent().map_or("", |p| p.as_str())).join(&target);
            let escapes = target.starts_with('/')
                || resolved
                    .components()
                    .try_fold(0i32, |depth, c| match c {
                        camino::Utf8Component::ParentDir if depth == 0 => None,
                        camino::Utf8Component::ParentDir => Some(depth - 1),
                        camino::Utf8Component::Normal(_) => Some(depth + 1),
                        _ => Some(depth),
                    })
                    .is_none();
            if escapes {
                bail!("{zip_path}: link {name} -> {target} points outside the layer");
            }
            std::os::unix::fs::symlink(&target, &path)
                .with_context(|| format!("creating the link {path}"))?;
            continue;
        }
        let mut out = fs_err::File::create(&path)?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("unpacking {name}"))?;
        let mode = entry.unix_mode().unwrap_or(0o644) & 0o777;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_owned(), |v| format!("{v:.3} s"))
}

/// The report for people: one line per check, then the timings.
pub fn render(r: &VerifyReport) -> String {
    let mut s = String::new();
    let how = match &r.execution {
        Execution::Sandboxed { emulator: None } => "bubblewrap sandbox".to_owned(),
        Execution::Sandboxed { emulator: Some(e) } => format!("bubblewrap sandbox, {e}"),
        Execution::Plain { .. } => "NO SANDBOX".to_owned(),
        Execution::NotRun { .. } => "NOT EXECUTED".to_owned(),
    };
    let _ = writeln!(s, "layer  {} ({}, {how})", r.layer, r.arch);
    for w in &r.warnings {
        let _ = writeln!(s, "WARNING: {w}");
    }
    let width = r
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(s, "\n{:<width$}  {:<4}  detail", "check", "ok");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "{:<width$}  {:<4}  {}",
            c.name,
            if c.ok { "pass" } else { "FAIL" },
            c.detail
        );
    }
    let t = &r.timings;
    if t.runs > 0 {
        let _ = writeln!(s, "\ntimings (median of {} fresh processes)", t.runs);
        let _ = writeln!(s, "  interpreter start  {:>9}", secs(t.interpreter_start_s));
        let _ = writeln!(s, "  import litellm     {:>9}", secs(t.import_litellm_s));
        let _ = writeln!(s, "  first completion   {:>9}", secs(t.first_completion_s));
    }
    let failed = r.checks.iter().filter(|c| !c.ok).count();
    let _ = writeln!(s);
    if r.ok {
        let _ = writeln!(s, "verified: all {} checks passed", r.checks.len());
    } else {
        let _ = writeln!(
            s,
            "NOT VERIFIED: {failed} of {} checks failed",
            r.checks.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>, execution: Execution) -> VerifyReport {
        VerifyReport {
            ok: checks.iter().all(|c| c.ok),
            layer: "l.zip".into(),
            arch: Arch::X86_64,
            execution,
            warnings: vec![],
            checks,
            timings: Timings {
                runs: 5,
                interpreter_start_s: Some(0.02),
                import_litellm_s: Some(2.5),
                first_completion_s: None,
            },
        }
    }

    #[test]
    fn table_names_what_broke() {
        let r = report(
            vec![
                Check::new("import: litellm", true, "2.1 s"),
                Check::new("static: needed libraries", false, "x.so needs libssl.so.3"),
            ],
            Execution::Sandboxed { emulator: None },
        );
        let text = render(&r);
        assert!(
            text.contains("import: litellm           pass  2.1 s"),
            "{text}"
        );
        assert!(text.contains("FAIL  x.so needs libssl.so.3"), "{text}");
        let line = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        assert_eq!(
            line("import litellm").as_deref(),
            Some("import litellm 2.500 s")
        );
        assert_eq!(
            line("first completion").as_deref(),
            Some("first completion -")
        );
        assert!(
            text.contains("NOT VERIFIED: 1 of 2 checks failed"),
            "{text}"
        );
    }

    #[test]
    fn json_shape() {
        let r = report(
            vec![Check::new("a", true, "")],
            Execution::NotRun { why: "x".into() },
        );
        let v: serde_json::Value = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["ok"], true);
        assert_eq!(v["checks"][0]["name"], "a");
        assert_eq!(v["timings"]["import_litellm_s"], 2.5);
        assert_eq!(v["execution"]["not-run"]["why"], "x");
    }

    #[test]
    fn not_executed_has_its_own_exit_code() {
        let r = report(
            vec![
                Check::new("runtime: executed", false, "no qemu"),
                Check::new("static: elf machine", true, ""),
            ],
            Execution::NotRun {
                why: "no qemu".into(),
            },
        );
        assert_eq!(exit_code(&r), ExitCode::from(EXIT_NOT_EXECUTED));
        let r = report(
            vec![
                Check::new("runtime: executed", false, "no qemu"),
                Check::new("static: elf machine", false, "aarch64"),
            ],
            Execution::NotRun {
                why: "no qemu".into(),
            },
        );
        assert_eq!(exit_code(&r), ExitCode::from(EXIT_FAILED));
    }
}
