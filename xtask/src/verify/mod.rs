//! `cargo xtask verify`: proves that a layer zip works the way Lambda will run it.
//!
//! The zip is unpacked; static checks read its ELF files, zips and sizes; then the layer's
//! own interpreter runs in a sandbox shaped like Lambda (see `sandbox.rs` for how, and why
//! the xtask runs itself inside it), under an audit hook, against a loopback
//! OpenAI-compatible server. An arm64 layer runs under `qemu-aarch64-static` with an arm64
//! sysroot. A layer that could not be executed is never reported as verified.

mod contents;
mod execute;
mod importtime;
pub mod inside;
pub mod memory;
mod modules;
pub mod pth;
mod render;
mod sandbox;
mod stack;
mod static_checks;
mod unpack;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::spec::{Arch, Spec};

pub use execute::run_workloads;
pub use importtime::{import_times, ImportTimeRequest};
pub use inside::{Plan, Workload};
pub use render::render;

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
    /// The spec's [verify] preload modules, whose import `import_seconds` times.
    #[serde(default)]
    pub preload: Vec<String>,
    /// Importing the preload modules (reports before the rename: `import_litellm_s`).
    #[serde(alias = "import_litellm_s")]
    pub import_seconds: Option<f64>,
    /// The same import's CPU time (user + system of the interpreter).
    #[serde(default)]
    pub import_cpu_seconds: Option<f64>,
    /// The [verify] workload's first timed call (before the rename: `first_completion_s`).
    #[serde(alias = "first_completion_s")]
    pub first_call_seconds: Option<f64>,
    /// Per run, the bare interpreter's start + the preload's import + the first call: process
    /// start to first answer, Lambda's INIT and first invocation (`bench`'s cold start).
    #[serde(default)]
    pub cold_start_seconds: Option<f64>,
    /// The largest peak RSS (VmHWM) of the workload's and the timing runs' interpreters.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
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
    /// The zip, or the folder of a split layer's `layers.json`, or its first part.
    pub layer: Utf8PathBuf,
    /// A split layer's parts, in the order they were stacked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<Utf8PathBuf>,
    pub arch: Arch,
    pub execution: Execution,
    pub warnings: Vec<String>,
    pub checks: Vec<Check>,
    pub timings: Timings,
    /// Why passing checks do not make this a verification (`--static-only`, `--timings-only`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_a_verification: Option<String>,
}

/// Exit codes: a failed check, and runtime checks that could not run.
const EXIT_FAILED: u8 = 1;
const EXIT_NOT_EXECUTED: u8 = 2;

/// What `verify` checks and how: everything but the spec, which is passed beside it.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The target architecture (default: the spec's, or with `layer` its interpreter's).
    pub arch: Option<Arch>,
    /// The layer zip, or a split layer's parts in stack order (several zips, or the folder of
    /// their `layers.json`); none: the last layer `cargo xtask layer` built for the
    /// architecture.
    pub layers: Vec<Utf8PathBuf>,
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
    /// Lambda's memory setting in MB: its CPU share and memory limit for the sandbox
    /// (`memory.rs`).
    pub memory_mb: Option<u32>,
    /// Minimization's workloads (and their providers), run in the same sandbox as the checks:
    /// a minimized layer is proven by one run, not two.
    pub workloads: Vec<inside::Workload>,
    pub providers: Vec<String>,
    /// Only the timing runs, no other runtime check (`bench`'s cold starts; static checks
    /// still run).
    pub timings_only: bool,
    /// With `memory_mb`: the timing runs import the preload after INIT, throttled, as a
    /// client that does not wait for it at INIT.
    pub import_after_init: bool,
}

impl VerifyOptions {
    /// Every check on one layer zip, timings from `timing_runs` processes.
    pub fn of_layer(layer: &Utf8Path, arch: Arch, timing_runs: usize) -> VerifyOptions {
        VerifyOptions {
            arch: Some(arch),
            layers: vec![layer.to_owned()],
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
///
/// Long on purpose: it is the sequence of verify's steps (unpack, architecture, static
/// checks, contents, emulation, sandbox, runtime checks), each a call or a short block.
pub fn verify(spec: &Spec, flags: &VerifyOptions) -> Result<VerifyReport> {
    let layers = stack::resolve(
        spec,
        &flags.layers,
        flags.arch.unwrap_or(spec.layer.default_arch),
    )?;
    let work_root = crate::core::target_dir().join("verify");
    fs_err::create_dir_all(&work_root)?;
    // Not under /tmp: a write into the layer must never look like a write into /tmp.
    let work = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(&work_root)
        .with_context(|| format!("creating a folder in {work_root}"))?;
    let root = crate::util::utf8(work.path().join("opt"))?;
    let stack_checks = stack::unpack(&layers, &root)?;
    let interpreter = Utf8PathBuf::from(format!("python/bin/python{}", spec.python_xy()));

    // Which architecture: the flag, else the interpreter's own ELF header, else the spec.
    let arch = match flags.arch {
        Some(a) => a,
        None if !flags.layers.is_empty() => {
            unpack::arch_of(&root.join(&interpreter)).unwrap_or(spec.layer.default_arch)
        }
        None => spec.layer.default_arch,
    };
    let mut warnings = Vec::new();
    let mut checks = stack_checks;
    checks.extend(static_report(
        spec,
        &root,
        &layers.zips,
        arch,
        &interpreter,
    )?);
    let contents = contents::read(spec, &root, arch, &mut warnings)?;
    let done = |execution, warnings, checks, timings| {
        finish(flags, &layers, arch, execution, warnings, checks, timings)
    };
    let emulation = match execute::emulation(arch, flags.sysroot.as_ref(), &mut warnings) {
        Ok(e) => e,
        Err(why) => {
            return done(
                Execution::NotRun { why },
                warnings,
                checks,
                Timings::default(),
            )
        }
    };
    if flags.static_only {
        let why = "--static-only".to_owned();
        return done(
            Execution::NotRun { why },
            warnings,
            checks,
            Timings::default(),
        );
    }
    if flags.timings_only {
        warnings.push(
            "TIMINGS ONLY: the runtime, import, metadata and workload checks were not run; \
             this is a measurement, not a verification"
                .to_owned(),
        );
    }
    let mut plan = runtime_plan(spec, flags, arch, &emulation, contents)?;
    let lambda = flags.memory_mb.map(memory::lambda_group).transpose()?;
    let setup = execute::Setup::new(spec, &root, &emulation)?
        .in_group(lambda.as_ref().map(|(group, _)| group));
    if let Some((_, quota)) = &lambda {
        plan.cpu_quota = Some(quota.clone());
        // One interpreter at a time, as in a function: the limits are the group's.
        plan.jobs = 1;
    }
    let (outcome, execution) = match setup.probe(flags.no_sandbox) {
        Ok(()) => (
            setup.run_sandboxed(plan)?,
            Execution::Sandboxed {
                emulator: emulation.name.clone(),
            },
        ),
        Err(why) if flags.memory_mb.is_some() => {
            anyhow::bail!("--memory runs the layer only in the bubblewrap sandbox: {why}")
        }
        Err(why) => {
            warnings.push(format!(
                "NOT SANDBOXED: {why}. The layer ran from a plain folder ({root}) with this \
                 machine's network, files and Python visible; only the audit hook watched for \
                 egress and writes"
            ));
            let outcome = setup.run_plain(plan)?;
            let emulator = emulation.name.clone();
            (outcome, Execution::Plain { emulator, why })
        }
    };
    checks.push(Check::new(
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
    ));
    checks.extend(outcome.checks);
    if let (Some(mb), Some((group, _))) = (flags.memory_mb, &lambda) {
        let peak_rss = outcome.timings.peak_rss_bytes;
        let mut check = memory::check(mb, &group.stats(), peak_rss);
        if flags.timings_only {
            // The peak is the timing runs' (import and first call), not the whole workload's.
            check.detail += "; timing runs only: the workload's own peak was not measured";
        }
        checks.push(check);
    }
    done(execution, warnings, checks, outcome.timings)
}

/// The checks that read files: the interpreter, ELF files, zips and sizes.
fn static_report(
    spec: &Spec,
    root: &Utf8Path,
    zips: &[Utf8PathBuf],
    arch: Arch,
    interpreter: &Utf8Path,
) -> Result<Vec<Check>> {
    let base = static_checks::BaseLibs::load(&spec.data_path("lambda-base-libs.toml"))?
        .for_runtime(spec.target.runtime);
    let (elf_files, broken) = static_checks::scan_elf(root)?;
    let paths = static_checks::layer_paths(root)?;
    let mut checks = vec![if paths.contains(interpreter) {
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
    }];
    checks.extend(static_checks::elf_checks(
        &elf_files,
        &broken,
        arch,
        spec.glibc(),
        &base,
        &paths,
        interpreter,
    ));
    checks.push(static_checks::so_in_zips(root)?);
    checks.push(pth::check(spec, root)?);
    checks.extend(static_checks::size_checks(spec, zips)?);
    Ok(checks)
}

/// What the supervisor checks: the layer's modules and distributions, the spec's workload and
/// preload modules, and how many processes how long.
fn runtime_plan(
    spec: &Spec,
    flags: &VerifyOptions,
    arch: Arch,
    emulation: &execute::Emulation,
    contents: contents::Contents,
) -> Result<Plan> {
    // A workload may run as long as minimization's own runs of it may.
    let timeouts = if flags.workloads.is_empty() {
        (120, 600)
    } else {
        (300, 1200)
    };
    let mut plan = execute::plan(arch, emulation, timeouts);
    plan.workloads = flags.workloads.clone();
    plan.providers = flags.providers.clone();
    plan.skipped = spec
        .verify
        .skip_imports
        .iter()
        .filter(|(m, _)| contents.modules.contains(*m))
        .map(|(m, r)| (m.clone(), r.clone()))
        .collect::<BTreeMap<_, _>>();
    plan.modules = contents.modules.into_iter().collect();
    plan.dists = contents.dists;
    let emulated = emulation.qemu.is_some();
    plan.timing_runs = flags.timing_runs.unwrap_or(if emulated { 3 } else { 5 });
    plan.jobs = flags
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    plan.workload = match &spec.verify.workload {
        Some(rel) => {
            let path = spec.data_path(rel);
            let source = fs_err::read_to_string(&path)
                .with_context(|| format!("reading the [verify] workload {path}"))?;
            Some(Workload {
                name: rel.to_string(),
                source,
            })
        }
        None => None,
    };
    plan.preload = spec.verify.preload.clone();
    plan.timings_only = flags.timings_only;
    plan.import_after_init = flags.import_after_init;
    Ok(plan)
}

fn finish(
    flags: &VerifyOptions,
    layers: &stack::Layers,
    arch: Arch,
    execution: Execution,
    mut warnings: Vec<String>,
    mut checks: Vec<Check>,
    timings: Timings,
) -> Result<VerifyReport> {
    if let Execution::NotRun { why } = &execution {
        let detail = format!("the runtime, package and workload checks were NOT run: {why}");
        if flags.static_only {
            warnings.push(detail);
        } else {
            checks.insert(0, Check::new("runtime: executed", false, detail));
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    let not_a_verification = if flags.static_only {
        Some("--static-only: nothing was executed".to_owned())
    } else if flags.timings_only {
        Some(
            "--timings-only: the runtime, import, metadata and workload checks were not run"
                .to_owned(),
        )
    } else {
        None
    };
    Ok(VerifyReport {
        ok,
        layer: layers.label.clone(),
        stack: if layers.zips.len() > 1 {
            layers.zips.clone()
        } else {
            Vec::new()
        },
        arch,
        execution,
        warnings,
        checks,
        timings,
        not_a_verification,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>, execution: Execution) -> VerifyReport {
        VerifyReport {
            ok: checks.iter().all(|c| c.ok),
            layer: "l.zip".into(),
            stack: vec![],
            arch: Arch::X86_64,
            execution,
            warnings: vec![],
            checks,
            not_a_verification: None,
            timings: Timings {
                runs: 5,
                interpreter_start_s: Some(0.02),
                preload: vec!["litellm".to_owned()],
                import_seconds: Some(2.5),
                first_call_seconds: None,
                import_cpu_seconds: None,
                cold_start_seconds: None,
                peak_rss_bytes: None,
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
        assert_eq!(line("first call").as_deref(), Some("first call -"));
        assert!(
            text.contains("NOT VERIFIED: 1 of 2 checks failed"),
            "{text}"
        );
    }

    #[test]
    fn passing_checks_of_a_partial_run_are_not_called_verified() {
        let mut r = report(
            vec![Check::new("static: elf machine", true, "")],
            Execution::NotRun {
                why: "--static-only".to_owned(),
            },
        );
        assert!(render(&r).contains("verified: all 1 checks passed"));
        r.not_a_verification = Some("--timings-only: the checks were not run".to_owned());
        let text = render(&r);
        assert!(!text.contains("verified:"), "{text}");
        assert!(
            text.contains("NOT a verification: 1 checks passed, but --timings-only"),
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
        assert_eq!(v["timings"]["import_seconds"], 2.5);
        assert_eq!(v["timings"]["preload"][0], "litellm");
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
                Check::new("static: elf machine", false, "AArch64"),
            ],
            Execution::NotRun {
                why: "no qemu".into(),
            },
        );
        assert_eq!(exit_code(&r), ExitCode::from(EXIT_FAILED));
    }
}
