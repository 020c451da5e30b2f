//! `cargo xtask layer`: the build pipeline. First a plan ([`plan::BuildPlan::resolve`], pure:
//! runtime, wheels, profile, rules, minimization, outputs), then its execution
//! ([`execute::execute`]: fetch, unpack runtime, install, prune, bytecode, strip,
//! site-packages zip, minimize, package, report), each step in its own function or module.

pub mod cache;
pub mod clients;
pub mod execute;
pub mod fetch;
pub mod minimize;
pub mod plan;
mod plan_text;
pub mod report;
pub mod runtime;
pub mod slim;
pub mod zip;

use std::process::ExitCode;

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::build::plan::BuildPlan;
use crate::spec::{Arch, Sha256Hex, Spec};

/// What `cargo xtask layer` was asked for, as plain options (flags.rs turns flags into these).
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    /// Target architecture; default: the spec's `default-arch`.
    pub arch: Option<Arch>,
    /// Output folder; default: `<target>/layer/<arch>/`.
    pub out: Option<Utf8PathBuf>,
    /// A path or URL in place of the spec's runtime download.
    pub python_archive: Option<String>,
    /// The hash the runtime archive must have, in place of the spec's.
    pub python_sha256: Option<Sha256Hex>,
    /// For a cross build: the build machine's CPython archive and its hash, to compile bytecode.
    pub host_python_archive: Option<(String, Sha256Hex)>,
    /// The profile; default: the spec's.
    pub profile: Option<String>,
    /// Never touch the network.
    pub offline: bool,
    /// Trace-driven minimization whatever the profile says.
    pub minimize: bool,
    /// A saved trace to minimize with, instead of running the workload (implies `minimize`).
    pub trace: Option<Utf8PathBuf>,
}

/// What a finished build produced.
pub struct Built {
    pub report: crate::build::report::Report,
}

/// `cargo xtask layer`: resolves the plan; with `plan_only` prints it and stops, else executes
/// it and prints the report. Exit code 3 when the layer is over a Lambda limit.
pub fn run(
    spec_path: &Utf8Path,
    options: LayerOptions,
    json: bool,
    plan_only: bool,
) -> Result<ExitCode> {
    let spec = Spec::load(spec_path)?;
    let plan = BuildPlan::resolve(spec, &options)?;
    if plan_only {
        if json {
            println!("{}", serde_json::to_string(&plan)?);
        } else {
            print!("{}", plan.to_text());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let built = execute::execute(&plan)?;
    let report = &built.report;
    if json {
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
