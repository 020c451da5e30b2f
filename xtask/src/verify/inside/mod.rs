//! The supervisor: runs every runtime, package and workload check, each in a fresh
//! interpreter, next to the loopback server. Runs inside the sandbox (see `sandbox.rs`) or,
//! without bubblewrap, in-process on a plain folder.

mod checks;
mod process;
mod workload;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{Check, Timings};
use pythonexec::testing::MockOpenAi;

/// A workload script: the spec's [verify] workload, or one of `cargo xtask layer --minimize`
/// (run under the tracing hook).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// Its path as the spec names it (shown in tracebacks and errors).
    pub name: String,
    pub source: String,
}

/// Everything the supervisor needs; crosses the sandbox boundary as JSON on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The interpreter, as seen where the checks run (`/opt/python/bin/python3.11`).
    pub python: String,
    /// Put before the interpreter: the emulator and its arguments, or nothing.
    pub launcher: Vec<String>,
    /// The complete environment of every checked process.
    pub env: Vec<(String, String)>,
    /// `platform.machine()` the interpreter must report.
    pub machine: String,
    pub modules: Vec<String>,
    /// Modules not imported alone, with the spec's reason.
    pub skipped: BTreeMap<String, String>,
    /// Distributions `importlib.metadata.version()` must answer for.
    pub dists: Vec<String>,
    /// Fresh processes per timing.
    pub timing_runs: usize,
    /// Interpreters run at once.
    pub jobs: usize,
    /// Longest any one checked process may take.
    pub timeout_secs: u64,
    /// When not empty, the supervisor runs only these scripts, traced, instead of the checks
    /// (`cargo xtask layer --minimize`).
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// `LAYER_PROVIDERS` for the workloads: the LiteLLM providers the spec names.
    #[serde(default)]
    pub providers: Vec<String>,
    /// The spec's [verify] workload: named checks of what the payload must do.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// The spec's [verify] preload modules, whose import the timing runs time.
    #[serde(default)]
    pub preload: Vec<String>,
    /// `verify --memory`: the CPU quota to lift before each interpreter and apply at the end
    /// of its INIT (see `memory.rs`).
    #[serde(default)]
    pub cpu_quota: Option<crate::verify::memory::CpuQuota>,
    /// Only the timing runs (`bench`'s cold starts): no runtime, import, metadata or
    /// workload checks; the audit still watches the timing runs.
    #[serde(default)]
    pub timings_only: bool,
    /// The timing runs end INIT before the preload, not after it: a client that does not wait
    /// for the import at INIT, which then runs at the CPU share after INIT.
    #[serde(default)]
    pub import_after_init: bool,
}

/// What the supervisor found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub timings: Timings,
    /// Workload mode: what each workload touched (`py/trace.py`'s result), in order.
    #[serde(default)]
    pub traces: Vec<serde_json::Value>,
    /// CPU seconds of the supervisor and of every process it waited for. bubblewrap does not
    /// pass its children's CPU time on to its parent, so the build adds this to its own count
    /// (`util::cpu`).
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
}

/// `cargo xtask verify-inside`: reads a plan on stdin, prints an outcome on stdout.
pub fn main() -> Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the verify plan from stdin")?;
    let plan: Plan = serde_json::from_str(&text).context("parsing the verify plan")?;
    let mut outcome = run(&plan)?;
    outcome.cpu_seconds = crate::util::cpu::seconds();
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

/// `verify --memory`: the first of the spec's preload modules whose import check the OOM
/// killer ended.
fn preload_killed<'a>(plan: &'a Plan, audit: &checks::Audit) -> Option<&'a str> {
    plan.preload
        .iter()
        .find(|m| audit.memory_killed.contains(&format!("import {m}")))
        .map(String::as_str)
}

/// Runs every check of the plan (or, in workload mode, only the traced workloads).
pub fn run(plan: &Plan) -> Result<Outcome> {
    let mock = MockOpenAi::start().context("starting the loopback OpenAI-compatible server")?;
    if !plan.workloads.is_empty() {
        return Ok(workload::traced(plan, &mock));
    }
    let mut audit = checks::Audit::default();
    let mut all = Vec::new();
    let mut first_sample = None;
    if !plan.timings_only {
        all.extend(checks::runtime(plan, &mut audit));
        all.extend(checks::imports(plan, &mut audit));
        all.extend(checks::metadata(plan, &mut audit));
        if let Some(w) = &plan.workload {
            match preload_killed(plan, &audit) {
                // At 128 MB and 0.07 vCPU the doomed workload would import for minutes first.
                Some(module) => all.push(Check::new(
                    format!("workload: {}", w.name),
                    false,
                    format!(
                        "not run: its preload module {module} alone was killed at the memory \
                         limit (import: {module}), and the workload imports it too"
                    ),
                )),
                None => {
                    let (checks, sample) = workload::checks(plan, w, &mock, &mut audit);
                    all.extend(checks);
                    first_sample = sample;
                }
            }
        }
    }
    let mut timings = workload::timings(plan, &mock, &mut audit, first_sample);
    timings.peak_rss_bytes = audit.peak_rss_kb.map(|kb| kb << 10);
    all.extend(checks::audit_checks(&audit));
    Ok(Outcome {
        checks: all,
        timings,
        traces: Vec::new(),
        cpu_seconds: None,
    })
}
